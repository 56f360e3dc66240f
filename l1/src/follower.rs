//! Follows the L1 chain for the sequencer: a window of recent canonical,
//! confirmed L1 blocks from an anchor (the rollup's genesis L1 block, or the
//! sequencer's current origin after a restart) on, each with its deposits,
//! through reorgs.
//!
//! Each `poll` reads the head, checks the window's tip is still canonical,
//! and appends the blocks confirmed since (up to `head - confirmation_depth`,
//! at most `FETCH_BLOCKS_PER_POLL_MAX`), each checked to be its
//! predecessor's child and its deposits read once, keyed by its hash. A
//! block that is not its predecessor's child, or a tip that left the chain,
//! makes the follower walk back to the common ancestor (at most
//! `REORG_DEPTH_MAX` blocks) and report `L1Event::Reorg`: the dropped
//! blocks' deposits go with them, their replacements' come with those.
//!
//! Deposits are never lost: a block enters the window only with its
//! deposits, and leaves it only in a reorg or once the sequencer's origin is
//! `REORG_DEPTH_MAX` blocks past it (`retain_from`); the window does not
//! fetch past `WINDOW_BLOCKS_MAX` blocks, so a sequencer far behind L1 holds
//! the follower back instead of losing blocks. Never duplicated: they are
//! keyed by block hash, and a block's hash is in the window at most once.

use std::collections::{HashMap, VecDeque};

use alloy_primitives::{Address, B256};
use tephra_types::rollup::{BlockId, RollupConfig};
use tracing::{debug, warn};

use crate::{
    Deposit, L1Block, L1Error, L1Rpc,
    deposit::{DEPOSIT_EVENT_TOPIC, decode_deposit_log},
};

/// The deepest reorg followed, in L1 blocks. Ethereum finalizes a block two
/// epochs (64 slots) after it; a fork below that is not a reorg but another
/// chain (or a broken node), and the follower stops instead of following it.
pub const REORG_DEPTH_MAX: u64 = 64;

/// The most L1 blocks the window holds: `REORG_DEPTH_MAX` below the
/// sequencer's origin and up to 192 ahead of it (38 minutes of L1, past the
/// 30-minute sequencer drift). Each block holds its deposits, at most about
/// 500 KB of data under OptimismPortal's per-block resource limit, so the
/// window stays in the tens of MB in practice and bounded under deposit
/// spam.
pub const WINDOW_BLOCKS_MAX: usize = 256;

/// The most blocks one poll appends (two calls each): a poll stays a few
/// seconds at worst, and catching up a day of L1 (7,200 blocks) takes a few
/// minutes of polls.
pub const FETCH_BLOCKS_PER_POLL_MAX: u64 = 32;

/// What the follower follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowerConfig {
    /// The first block of the window, trusted canonical: the rollup's
    /// genesis L1 block, or the sequencer's current L1 origin. Its own
    /// deposits are not read: its epoch has begun.
    pub anchor: BlockId,
    /// The rollup's OptimismPortal.
    pub deposit_contract: Address,
    /// Blocks below the head before a block is taken (op-node's sequencer
    /// `l1-confs`): 0 takes the head itself.
    pub confirmation_depth: u64,
}

impl FollowerConfig {
    /// Following the rollup from its genesis L1 block.
    pub fn from_rollup(rollup: &RollupConfig, confirmation_depth: u64) -> Self {
        Self {
            anchor: rollup.genesis.l1.clone(),
            deposit_contract: rollup.deposit_contract_address,
            confirmation_depth,
        }
    }
}

/// What a poll saw happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L1Event {
    /// A confirmed block joined the window with its deposits.
    Block { number: u64, hash: B256, deposits: usize },
    /// Blocks above `common_ancestor` left the chain, lowest first, and left
    /// the window with their deposits; their replacements come in later
    /// polls.
    Reorg { common_ancestor: u64, dropped: Vec<(u64, B256)> },
}

/// Whether the L1 node answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L1Status {
    /// The last poll succeeded; `head` is the node's head then.
    Reachable { head: u64 },
    /// No good answer since `since_ms` (the first failed poll of the streak,
    /// or the follower's creation); `reason` is the last error.
    Unreachable { since_ms: u64, reason: String },
}

/// A block's deposits, in log order, and how many of its deposit contract's
/// logs derived none (skipped with a warning).
///
/// op-node refuses to derive an epoch with a malformed deposit log
/// (attributes.go: "deposits may never be ignored", a critical error): a
/// sequencer should not take a block with `malformed > 0` as an origin.
/// OptimismPortal never emits one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockDeposits {
    pub deposits: Vec<Deposit>,
    pub malformed: usize,
}

/// The L1 follower over `R`; time comes in as `now_ms` arguments.
#[derive(Debug)]
pub struct L1Follower<R> {
    rpc: R,
    config: FollowerConfig,
    /// Contiguous canonical blocks, each its predecessor's child, oldest first.
    window: VecDeque<L1Block>,
    /// Every window block's deposits but the anchor's, by block hash.
    deposits: HashMap<B256, BlockDeposits>,
    /// The sequencer needs blocks from here on (its origin).
    retain_from: u64,
    /// The head of the last poll, and the highest seen: a head more than
    /// `REORG_DEPTH_MAX` below that is not a reorg.
    head: u64,
    head_max: Option<u64>,
    malformed_deposits: u64,
    status: L1Status,
}

impl<R: L1Rpc> L1Follower<R> {
    pub fn new(rpc: R, config: FollowerConfig, now_ms: u64) -> Self {
        Self {
            rpc,
            retain_from: config.anchor.number,
            config,
            window: VecDeque::new(),
            deposits: HashMap::new(),
            head: 0,
            head_max: None,
            malformed_deposits: 0,
            status: L1Status::Unreachable { since_ms: now_ms, reason: "not polled yet".into() },
        }
    }

    /// Reads what changed on L1 since the last poll. An error leaves the
    /// window as it was (and the status unreachable), except for blocks
    /// already appended in this poll: then the poll ends early with them and
    /// the failing call is made again next poll.
    pub fn poll(&mut self, now_ms: u64) -> Result<Vec<L1Event>, L1Error> {
        let result = self.step();
        match &result {
            Ok(_) => self.status = L1Status::Reachable { head: self.head },
            Err(error) => self.mark_unreachable(now_ms, error),
        }
        result
    }

    pub fn status(&self) -> &L1Status {
        &self.status
    }

    /// The window's block `number`.
    pub fn block(&self, number: u64) -> Option<&L1Block> {
        let first = self.window.front()?.number;
        let index = usize::try_from(number.checked_sub(first)?).ok()?;
        self.window.get(index)
    }

    /// The newest block of the window.
    pub fn tip(&self) -> Option<&L1Block> {
        self.window.back()
    }

    /// The deposits of window block `hash`; None for a block not in the
    /// window (or the anchor, whose deposits are not read).
    pub fn deposits(&self, hash: B256) -> Option<&BlockDeposits> {
        self.deposits.get(&hash)
    }

    /// Deposit logs skipped as malformed since the follower started.
    pub fn malformed_deposits(&self) -> u64 {
        self.malformed_deposits
    }

    /// The sequencer's origin is now `number`: blocks more than
    /// `REORG_DEPTH_MAX` below it may leave the window.
    pub fn retain_from(&mut self, number: u64) {
        self.retain_from = self.retain_from.max(number);
        self.prune();
    }

    pub fn config(&self) -> &FollowerConfig {
        &self.config
    }

    pub fn rpc(&self) -> &R {
        &self.rpc
    }

    pub fn rpc_mut(&mut self) -> &mut R {
        &mut self.rpc
    }

    fn step(&mut self) -> Result<Vec<L1Event>, L1Error> {
        if self.window.is_empty()
            && let Some(reorg) = self.load_anchor()?
        {
            return Ok(vec![reorg]);
        }
        let head = self.read_head()?;
        let confirmed = head.saturating_sub(self.config.confirmation_depth);
        if let Some(reorg) = self.check_tip(confirmed)? {
            return Ok(vec![reorg]);
        }
        self.append_confirmed(confirmed)
    }

    /// The window's first block: the anchor. An anchor that left the chain
    /// (a restart's origin, reorged out while the sequencer was down) is
    /// reported dropped, and the window starts from the canonical block
    /// `REORG_DEPTH_MAX` below it (or the chain's first), so that the
    /// sequencer can find which of its blocks to rebuild.
    fn load_anchor(&mut self) -> Result<Option<L1Event>, L1Error> {
        let BlockId { hash, number } = self.config.anchor;
        let missing = L1Error::AnchorMissing { number, hash };
        match self.rpc.block_by_hash(hash)? {
            Some(block) if block.number == number => {
                self.window.push_back(block);
                Ok(None)
            }
            None if number > 0 => {
                let below = number.saturating_sub(REORG_DEPTH_MAX);
                let block = self.rpc.block_by_number(below)?.ok_or(missing)?;
                warn!(number, %hash, from = below, "the anchor left the L1 chain: following from below it");
                self.window.push_back(block);
                Ok(Some(L1Event::Reorg { common_ancestor: below, dropped: vec![(number, hash)] }))
            }
            _ => Err(missing),
        }
    }

    /// The node's head; one further back than a reorg is a broken node.
    fn read_head(&mut self) -> Result<u64, L1Error> {
        let head = self.rpc.head_number()?;
        if let Some(max) = self.head_max
            && head.saturating_add(REORG_DEPTH_MAX) < max
        {
            return Err(L1Error::HeadWentBack { from: max, to: head });
        }
        self.head_max = Some(self.head_max.map_or(head, |max| max.max(head)));
        self.head = head;
        Ok(head)
    }

    /// With no newer confirmed block, a reorg at the tip's height (or a
    /// shorter chain) has no child block to reveal it: the tip is checked.
    fn check_tip(&mut self, confirmed: u64) -> Result<Option<L1Event>, L1Error> {
        let Some(&L1Block { number, hash, .. }) = self.window.back() else { return Ok(None) };
        if confirmed > number {
            return Ok(None);
        }
        match self.rpc.block_by_number(number)? {
            Some(canonical) if canonical.hash == hash => Ok(None),
            _ => self.walk_back(),
        }
    }

    /// Appends the blocks confirmed since the tip, at most
    /// `FETCH_BLOCKS_PER_POLL_MAX` and as many as the window holds.
    fn append_confirmed(&mut self, confirmed: u64) -> Result<Vec<L1Event>, L1Error> {
        let mut events = Vec::new();
        let Some(tip) = self.window.back() else { return Ok(events) };
        let last = confirmed.min(tip.number.saturating_add(FETCH_BLOCKS_PER_POLL_MAX));
        for number in tip.number.saturating_add(1)..=last {
            self.prune();
            if self.window.len() >= WINDOW_BLOCKS_MAX {
                debug!(number, retain_from = self.retain_from, "L1 window full: waiting for the origin to advance");
                break;
            }
            match self.append(number) {
                Ok(Some(event)) => {
                    let reorg = matches!(event, L1Event::Reorg { .. });
                    events.push(event);
                    if reorg {
                        break;
                    }
                }
                Ok(None) => break,
                Err(error) if events.is_empty() => return Err(error),
                Err(error) => {
                    warn!(number, %error, "L1 poll ended early; the block is read again next poll");
                    break;
                }
            }
        }
        Ok(events)
    }

    /// Block `number` with its deposits, if the node has it and it is the
    /// tip's child; a reorg if it is not; None if the node has no such block
    /// yet.
    fn append(&mut self, number: u64) -> Result<Option<L1Event>, L1Error> {
        let Some(block) = self.rpc.block_by_number(number)? else { return Ok(None) };
        let parent = self.window.back().map(|tip| tip.hash);
        if Some(block.parent_hash) != parent {
            return self.walk_back();
        }
        let deposits = self.read_deposits(&block)?;
        let event = L1Event::Block { number, hash: block.hash, deposits: deposits.deposits.len() };
        self.deposits.insert(block.hash, deposits);
        self.window.push_back(block);
        Ok(Some(event))
    }

    /// The deposits of `block`; malformed deposit logs are skipped, counted
    /// and logged. A node that returns logs out of order is malformed.
    fn read_deposits(&mut self, block: &L1Block) -> Result<BlockDeposits, L1Error> {
        let logs = self.rpc.logs(block.hash, self.config.deposit_contract, DEPOSIT_EVENT_TOPIC)?;
        if let Some(pair) = logs.windows(2).find(|pair| pair[0].log_index >= pair[1].log_index) {
            return Err(L1Error::Malformed {
                method: "eth_getLogs",
                reason: format!("log {} follows log {}: not in log order", pair[1].log_index, pair[0].log_index),
            });
        }
        let mut deposits = BlockDeposits { deposits: Vec::with_capacity(logs.len()), malformed: 0 };
        for log in &logs {
            match decode_deposit_log(log) {
                Ok(deposit) => deposits.deposits.push(deposit),
                Err(error) => {
                    deposits.malformed += 1;
                    self.malformed_deposits += 1;
                    warn!(block = block.number, hash = %block.hash, log_index = log.log_index, %error, "malformed deposit log skipped");
                }
            }
        }
        Ok(deposits)
    }

    /// Walks down from the tip to the newest window block still canonical,
    /// drops the ones above it with their deposits, and reports them. The
    /// window changes only once the ancestor is found.
    fn walk_back(&mut self) -> Result<Option<L1Event>, L1Error> {
        let tip = self.window.back().map_or(0, |tip| tip.number);
        let mut dropped = 0usize;
        let mut ancestor = None;
        for block in self.window.iter().rev() {
            if dropped as u64 > REORG_DEPTH_MAX {
                break;
            }
            match self.rpc.block_by_number(block.number)? {
                Some(canonical) if canonical.hash == block.hash => {
                    ancestor = Some(block.number);
                    break;
                }
                _ => dropped += 1,
            }
        }
        let Some(common_ancestor) = ancestor else {
            // Every block down to the anchor left the chain: the anchor did.
            let anchor = &self.config.anchor;
            if dropped == self.window.len() && self.window.front().is_some_and(|front| front.hash == anchor.hash) {
                return Err(L1Error::AnchorMissing { number: anchor.number, hash: anchor.hash });
            }
            return Err(L1Error::ReorgTooDeep { tip, searched: dropped as u64 });
        };
        if dropped == 0 {
            return Ok(None);
        }
        let keep = self.window.len() - dropped;
        let dropped: Vec<(u64, B256)> = self.window.drain(keep..).map(|block| (block.number, block.hash)).collect();
        for (_, hash) in &dropped {
            self.deposits.remove(hash);
        }
        warn!(common_ancestor, dropped = dropped.len(), "L1 reorg");
        Ok(Some(L1Event::Reorg { common_ancestor, dropped }))
    }

    /// Drops blocks more than `REORG_DEPTH_MAX` below the sequencer's origin
    /// (never the tip).
    fn prune(&mut self) {
        let floor = self.retain_from.saturating_sub(REORG_DEPTH_MAX);
        while self.window.len() > 1 && self.window.front().is_some_and(|block| block.number < floor) {
            if let Some(block) = self.window.pop_front() {
                self.deposits.remove(&block.hash);
            }
        }
    }

    fn mark_unreachable(&mut self, now_ms: u64, error: &L1Error) {
        let since_ms = match self.status {
            L1Status::Unreachable { since_ms, .. } => since_ms,
            L1Status::Reachable { .. } => now_ms,
        };
        warn!(%error, since_ms, "L1 node unreachable");
        self.status = L1Status::Unreachable { since_ms, reason: error.to_string() };
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use alloy_primitives::{Bytes, U256, keccak256};

    use super::*;
    use crate::{L1Log, deposit::tests::deposit_log};

    const PORTAL: Address = Address::repeat_byte(0xd0);

    /// An in-memory L1: a chain to reorg, a switch to make it unreachable, a
    /// switch to make it answer garbage, and a count of log reads per block.
    #[derive(Debug, Default)]
    struct FakeL1 {
        chain: Vec<L1Block>,
        logs: HashMap<B256, Vec<L1Log>>,
        head_override: Option<u64>,
        unreachable: bool,
        garbage: bool,
        log_reads: RefCell<HashMap<B256, usize>>,
    }

    impl FakeL1 {
        /// Blocks 0..=last, the `fork` tag making a distinct branch.
        fn new(last: u64) -> Self {
            let mut l1 = Self::default();
            l1.extend(last, 0);
            l1
        }

        /// Replaces blocks above `keep` with a branch `fork` up to `last`.
        fn reorg(&mut self, keep: u64, last: u64, fork: u8) {
            self.chain.truncate(usize::try_from(keep + 1).unwrap());
            self.extend(last, fork);
        }

        fn extend(&mut self, last: u64, fork: u8) {
            while self.chain.len() as u64 <= last {
                let number = self.chain.len() as u64;
                let parent_hash = self.chain.last().map_or(B256::ZERO, |parent| parent.hash);
                let hash = keccak256([&number.to_be_bytes()[..], &[fork]].concat());
                self.chain.push(L1Block {
                    number,
                    hash,
                    parent_hash,
                    timestamp: 1000 + 12 * number,
                    base_fee_per_gas: 7,
                    excess_blob_gas: Some(0),
                    blob_gas_used: Some(0),
                    mix_hash: B256::ZERO,
                    parent_beacon_block_root: None,
                });
            }
        }

        fn hash(&self, number: u64) -> B256 {
            self.chain[usize::try_from(number).unwrap()].hash
        }

        /// A deposit of `wei` from `from` in block `number` at `log_index`.
        fn deposit(&mut self, number: u64, log_index: u64, from: u8, wei: u64) -> Deposit {
            let hash = self.hash(number);
            let deposit = Deposit {
                source_hash: crate::deposit::user_deposit_source_hash(hash, log_index),
                from: Address::repeat_byte(from),
                to: Some(Address::repeat_byte(0xb0)),
                mint: U256::from(wei),
                value: U256::from(wei),
                gas_limit: 100_000,
                is_system_transaction: false,
                data: Bytes::new(),
            };
            let mut log = deposit_log(hash, log_index, &deposit);
            log.address = PORTAL;
            self.logs.entry(hash).or_default().push(log);
            deposit
        }

        fn check(&self) -> Result<(), L1Error> {
            if self.unreachable {
                return Err(L1Error::Unreachable { reason: "connection refused".into() });
            }
            if self.garbage {
                return Err(L1Error::Malformed { method: "eth_getBlockByNumber", reason: "not JSON".into() });
            }
            Ok(())
        }
    }

    impl L1Rpc for FakeL1 {
        fn head_number(&self) -> Result<u64, L1Error> {
            self.check()?;
            Ok(self.head_override.unwrap_or(self.chain.len() as u64 - 1))
        }

        fn block_by_number(&self, number: u64) -> Result<Option<L1Block>, L1Error> {
            self.check()?;
            Ok(usize::try_from(number).ok().and_then(|i| self.chain.get(i)).cloned())
        }

        fn block_by_hash(&self, hash: B256) -> Result<Option<L1Block>, L1Error> {
            self.check()?;
            Ok(self.chain.iter().find(|block| block.hash == hash).cloned())
        }

        fn logs(&self, block_hash: B256, address: Address, topic0: B256) -> Result<Vec<L1Log>, L1Error> {
            self.check()?;
            *self.log_reads.borrow_mut().entry(block_hash).or_default() += 1;
            let logs = self.logs.get(&block_hash).cloned().unwrap_or_default();
            Ok(logs.into_iter().filter(|log| log.address == address && log.topics.first() == Some(&topic0)).collect())
        }
    }

    fn new_follower(l1: FakeL1, confirmation_depth: u64) -> L1Follower<FakeL1> {
        let anchor = BlockId { hash: l1.hash(0), number: 0 };
        L1Follower::new(l1, FollowerConfig { anchor, deposit_contract: PORTAL, confirmation_depth }, 0)
    }

    fn poll_until_quiet(follower: &mut L1Follower<FakeL1>, now_ms: u64) -> Vec<L1Event> {
        let mut events = Vec::new();
        for _ in 0..100 {
            let new = follower.poll(now_ms).unwrap();
            if new.is_empty() {
                return events;
            }
            events.extend(new);
        }
        panic!("the follower never caught up");
    }

    #[test]
    fn follows_confirmed_blocks_and_reads_each_blocks_deposits_once() {
        let mut l1 = FakeL1::new(10);
        let first = l1.deposit(3, 0, 0xa1, 5);
        let second = l1.deposit(3, 4, 0xa2, 6);
        let late = l1.deposit(9, 1, 0xa3, 7);
        let mut follower = new_follower(l1, 2);
        assert!(matches!(follower.status(), L1Status::Unreachable { since_ms: 0, .. }));
        let events = poll_until_quiet(&mut follower, 1);
        assert_eq!(events.len(), 8, "blocks 1..=8: head 10, two confirmations");
        assert_eq!(follower.tip().map(|tip| tip.number), Some(8));
        assert_eq!(follower.status(), &L1Status::Reachable { head: 10 });
        let hash3 = follower.rpc().hash(3);
        assert_eq!(follower.deposits(hash3).unwrap().deposits, vec![first, second]);
        assert_eq!(follower.deposits(follower.rpc().hash(9)), None, "not confirmed yet");
        assert_eq!(follower.deposits(follower.rpc().hash(0)), None, "the anchor's are not read");
        follower.rpc_mut().extend(11, 0);
        assert_eq!(
            follower.poll(2).unwrap(),
            vec![L1Event::Block { number: 9, hash: follower.rpc().hash(9), deposits: 1 }]
        );
        assert_eq!(follower.deposits(follower.rpc().hash(9)).unwrap().deposits, vec![late]);
        poll_until_quiet(&mut follower, 3);
        let reads = follower.rpc().log_reads.borrow();
        assert_eq!(reads.len(), 9);
        assert!(reads.values().all(|&count| count == 1), "{reads:?}");
    }

    #[test]
    fn a_poll_appends_at_most_its_bound() {
        let mut follower = new_follower(FakeL1::new(100), 0);
        let events = follower.poll(1).unwrap();
        assert_eq!(events.len() as u64, FETCH_BLOCKS_PER_POLL_MAX);
        assert_eq!(follower.tip().unwrap().number, FETCH_BLOCKS_PER_POLL_MAX);
        assert_eq!(follower.block(5).unwrap().number, 5);
        assert_eq!(follower.block(FETCH_BLOCKS_PER_POLL_MAX + 1), None);
    }

    #[test]
    fn a_reorg_at_the_same_height_drops_the_blocks_and_their_deposits_and_brings_the_new_ones() {
        let mut l1 = FakeL1::new(8);
        let kept = l1.deposit(5, 0, 0xa1, 1);
        let dropped_deposit = l1.deposit(7, 0, 0xa2, 2);
        let mut follower = new_follower(l1, 0);
        poll_until_quiet(&mut follower, 1);
        let old: Vec<(u64, B256)> = (6..=8).map(|n| (n, follower.rpc().hash(n))).collect();
        // Blocks 6..=8 replaced at the same height; block 7' deposits anew.
        follower.rpc_mut().reorg(5, 8, 1);
        let replacement = follower.rpc_mut().deposit(7, 0, 0xa2, 2);
        assert_eq!(follower.poll(2).unwrap(), vec![L1Event::Reorg { common_ancestor: 5, dropped: old.clone() }]);
        assert_eq!(follower.tip().unwrap().number, 5);
        assert!(old.iter().all(|(_, hash)| follower.deposits(*hash).is_none()));
        let events = poll_until_quiet(&mut follower, 3);
        assert_eq!(events.len(), 3);
        assert_eq!(follower.deposits(follower.rpc().hash(7)).unwrap().deposits, vec![replacement.clone()]);
        assert_ne!(replacement.source_hash, dropped_deposit.source_hash, "a new block, a new source hash");
        let all = all_deposits(&follower);
        assert_eq!(all, vec![kept, replacement], "never lost, never twice");
    }

    fn all_deposits(follower: &L1Follower<FakeL1>) -> Vec<Deposit> {
        let tip = follower.tip().unwrap().number;
        (0..=tip)
            .filter_map(|n| follower.block(n))
            .filter_map(|block| follower.deposits(block.hash))
            .flat_map(|deposits| deposits.deposits.clone())
            .collect()
    }

    #[test]
    fn a_reorg_is_found_by_the_parent_hash_when_the_chain_grows_past_it() {
        let mut follower = new_follower(FakeL1::new(6), 0);
        poll_until_quiet(&mut follower, 1);
        let dropped: Vec<(u64, B256)> = (5..=6).map(|n| (n, follower.rpc().hash(n))).collect();
        follower.rpc_mut().reorg(4, 9, 2);
        // Newer blocks are confirmed, so the tip is not checked: block 7's
        // parent is not the tip, and the walk back finds block 4.
        assert_eq!(follower.poll(2).unwrap(), vec![L1Event::Reorg { common_ancestor: 4, dropped }]);
        poll_until_quiet(&mut follower, 3);
        assert_eq!(follower.tip().unwrap().hash, follower.rpc().hash(9));
        for n in 1..=9 {
            assert_eq!(follower.block(n).unwrap().parent_hash, follower.block(n - 1).unwrap().hash);
        }
    }

    #[test]
    fn a_mismatched_parent_mid_append_walks_back() {
        let mut follower = new_follower(FakeL1::new(3), 2);
        poll_until_quiet(&mut follower, 1);
        assert_eq!(follower.tip().unwrap().number, 1);
        // Blocks 1 and up replaced and the chain grown: the tip (1) is below
        // the confirmed head, so only block 2's parent hash reveals it.
        let old1 = follower.rpc().hash(1);
        follower.rpc_mut().reorg(0, 6, 3);
        assert_eq!(follower.poll(2).unwrap(), vec![L1Event::Reorg { common_ancestor: 0, dropped: vec![(1, old1)] }]);
        poll_until_quiet(&mut follower, 3);
        assert_eq!(follower.tip().unwrap().hash, follower.rpc().hash(4));
    }

    #[test]
    fn a_shorter_chain_is_a_reorg_and_a_head_far_back_is_unreachable() {
        let mut follower = new_follower(FakeL1::new(10), 0);
        poll_until_quiet(&mut follower, 1);
        let dropped: Vec<(u64, B256)> = (9..=10).map(|n| (n, follower.rpc().hash(n))).collect();
        follower.rpc_mut().chain.truncate(9);
        assert_eq!(follower.poll(2).unwrap(), vec![L1Event::Reorg { common_ancestor: 8, dropped }]);
        // A head further back than any reorg: a resyncing node, not L1.
        follower.rpc_mut().extend(100, 0);
        poll_until_quiet(&mut follower, 3);
        follower.rpc_mut().head_override = Some(100 - REORG_DEPTH_MAX - 1);
        assert_eq!(follower.poll(4), Err(L1Error::HeadWentBack { from: 100, to: 100 - REORG_DEPTH_MAX - 1 }));
        assert!(matches!(follower.status(), L1Status::Unreachable { since_ms: 4, .. }));
        follower.rpc_mut().head_override = None;
        assert_eq!(follower.poll(5), Ok(vec![]));
        assert_eq!(follower.status(), &L1Status::Reachable { head: 100 });
    }

    #[test]
    fn a_reorg_deeper_than_the_limit_is_refused_and_the_window_kept() {
        let last = REORG_DEPTH_MAX + 10;
        let mut follower = new_follower(FakeL1::new(last), 0);
        poll_until_quiet(&mut follower, 1);
        let before = follower.tip().cloned();
        follower.rpc_mut().reorg(last - REORG_DEPTH_MAX - 2, last, 4);
        let error = follower.poll(2).unwrap_err();
        assert_eq!(error, L1Error::ReorgTooDeep { tip: last, searched: REORG_DEPTH_MAX + 1 });
        assert_eq!(follower.tip().cloned(), before);
        assert!(
            matches!(follower.status(), L1Status::Unreachable { since_ms: 2, reason } if reason.contains("reorg deeper"))
        );
        // Exactly the limit is followed.
        let mut follower = new_follower(FakeL1::new(last), 0);
        poll_until_quiet(&mut follower, 1);
        follower.rpc_mut().reorg(last - REORG_DEPTH_MAX, last, 4);
        let events = follower.poll(2).unwrap();
        assert!(matches!(&events[..], [L1Event::Reorg { dropped, .. }] if dropped.len() as u64 == REORG_DEPTH_MAX));
    }

    #[test]
    fn unreachable_and_garbage_hold_the_status_since_the_first_failure() {
        let mut follower = new_follower(FakeL1::new(4), 0);
        poll_until_quiet(&mut follower, 10);
        follower.rpc_mut().unreachable = true;
        assert!(matches!(follower.poll(20), Err(L1Error::Unreachable { .. })));
        follower.rpc_mut().unreachable = false;
        follower.rpc_mut().garbage = true;
        assert!(matches!(follower.poll(30), Err(L1Error::Malformed { .. })));
        match follower.status() {
            L1Status::Unreachable { since_ms, reason } => {
                assert!(*since_ms == 20 && reason.contains("malformed"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        follower.rpc_mut().garbage = false;
        assert_eq!(follower.poll(40), Ok(vec![]));
        assert_eq!(follower.status(), &L1Status::Reachable { head: 4 });
        assert_eq!(follower.tip().unwrap().number, 4, "nothing lost or added while down");
    }

    #[test]
    fn a_missing_anchor_is_an_error_naming_it() {
        let l1 = FakeL1::new(3);
        let config = FollowerConfig {
            anchor: BlockId { hash: B256::repeat_byte(0x99), number: 0 },
            deposit_contract: PORTAL,
            confirmation_depth: 0,
        };
        let mut follower = L1Follower::new(l1, config, 0);
        assert_eq!(follower.poll(1), Err(L1Error::AnchorMissing { number: 0, hash: B256::repeat_byte(0x99) }));
        assert_eq!(follower.tip(), None);
        // An anchor that leaves the chain later (a restart's origin, reorged
        // out) is named too, not reported as a reorg.
        let mut follower = new_follower(FakeL1::new(2), 0);
        poll_until_quiet(&mut follower, 1);
        let anchor = follower.rpc().hash(0);
        follower.rpc_mut().chain.clear();
        follower.rpc_mut().extend(2, 5);
        assert_eq!(follower.poll(2), Err(L1Error::AnchorMissing { number: 0, hash: anchor }));
    }

    #[test]
    fn an_anchor_reorged_out_before_the_start_is_reported_dropped_and_followed_from_below() {
        // (anchor, the newest block the reorg keeps, where the window starts):
        // REORG_DEPTH_MAX below the anchor, or the chain's first block.
        let d = REORG_DEPTH_MAX;
        for (number, keep, from) in [(d + 5, d + 3, 5), (3, 1, 0)] {
            let mut l1 = FakeL1::new(number + 5);
            let anchor = BlockId { number, hash: l1.hash(number) };
            l1.reorg(keep, number + 5, 7);
            let config = FollowerConfig { anchor: anchor.clone(), deposit_contract: PORTAL, confirmation_depth: 0 };
            let mut follower = L1Follower::new(l1, config, 0);
            let reported = L1Event::Reorg { common_ancestor: from, dropped: vec![(number, anchor.hash)] };
            assert_eq!(follower.poll(1), Ok(vec![reported]));
            poll_until_quiet(&mut follower, 2);
            let canonical = follower.rpc().hash(number);
            assert_ne!(canonical, anchor.hash);
            assert_eq!(follower.block(number).map(|b| b.hash), Some(canonical), "anchor {number}");
            assert_eq!(follower.block(from).map(|b| b.number), Some(from), "anchor {number}: followed from {from}");
        }
    }

    #[test]
    fn malformed_deposit_logs_are_skipped_counted_and_marked_on_their_block() {
        let mut l1 = FakeL1::new(3);
        let good = l1.deposit(2, 3, 0xa1, 1);
        let hash2 = l1.hash(2);
        let mut bad = l1.logs[&hash2][0].clone();
        bad.log_index = 5;
        bad.topics[3] = B256::with_last_byte(1);
        l1.logs.get_mut(&hash2).unwrap().push(bad);
        let mut follower = new_follower(l1, 0);
        poll_until_quiet(&mut follower, 1);
        assert_eq!(follower.deposits(hash2), Some(&BlockDeposits { deposits: vec![good], malformed: 1 }));
        assert_eq!(follower.malformed_deposits(), 1);
        assert_eq!(follower.status(), &L1Status::Reachable { head: 3 });
    }

    #[test]
    fn logs_out_of_order_are_a_malformed_answer_and_the_block_waits() {
        let mut l1 = FakeL1::new(2);
        l1.deposit(1, 4, 0xa1, 1);
        l1.deposit(1, 2, 0xa2, 1);
        let mut follower = new_follower(l1, 0);
        assert!(matches!(follower.poll(1), Err(L1Error::Malformed { method: "eth_getLogs", .. })));
        assert_eq!(follower.tip().unwrap().number, 0);
        let hash1 = follower.rpc().hash(1);
        follower.rpc_mut().logs.get_mut(&hash1).unwrap().reverse();
        poll_until_quiet(&mut follower, 2);
        assert_eq!(follower.deposits(hash1).unwrap().deposits.len(), 2);
    }

    #[test]
    fn the_window_waits_for_the_origin_instead_of_dropping_blocks() {
        let last = WINDOW_BLOCKS_MAX as u64 + 100;
        let mut l1 = FakeL1::new(last);
        let early = l1.deposit(1, 0, 0xa1, 1);
        let mut follower = new_follower(l1, 0);
        poll_until_quiet(&mut follower, 1);
        assert_eq!(follower.tip().unwrap().number, WINDOW_BLOCKS_MAX as u64 - 1, "full: anchor and 255 more");
        assert_eq!(follower.deposits(follower.rpc().hash(1)).unwrap().deposits, vec![early]);
        // The origin moves to 150: blocks below 150 - 64 may go.
        follower.retain_from(150);
        assert_eq!(follower.block(150 - REORG_DEPTH_MAX - 1), None);
        assert!(follower.block(150 - REORG_DEPTH_MAX).is_some());
        assert_eq!(follower.deposits(follower.rpc().hash(1)), None);
        poll_until_quiet(&mut follower, 2);
        assert_eq!(follower.tip().unwrap().number, 150 - REORG_DEPTH_MAX + WINDOW_BLOCKS_MAX as u64 - 1);
        follower.retain_from(last);
        poll_until_quiet(&mut follower, 3);
        assert_eq!(follower.tip().unwrap().number, last);
    }
}
