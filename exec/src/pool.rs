//! pack: the transaction pool and the mini-block cutter.
//!
//! Per sender, transactions wait in nonce order. Those that continue the
//! sender's nonce without a gap are *pending* (executable); the rest are
//! *queued* behind a gap, bounded in number and in time. Across senders the
//! order is first come, first served by arrival sequence: the next transaction
//! handed to execution is the pending head that arrived first.
//!
//! Limits: `capacity` in total, `per_sender_max` per sender, nonces at most
//! `nonce_gap_max` ahead. Eviction rule when full: a new pending transaction
//! evicts the newest queued one (queued transactions are the least likely to
//! ever execute, and the newest has waited least); a new queued transaction,
//! or a full pool with nothing queued, is refused with `PoolFull`.

use std::collections::{BTreeMap, BTreeSet};

use alloy_primitives::{
    Address,
    map::{AddressMap, B256Set},
};
use tephra_types::{Reject, RejectCode};

use crate::verify::VerifiedTx;

/// A replacement must raise both fee caps by at least this percentage.
pub const REPLACEMENT_BUMP_PERCENT: u128 = 10;

/// The pool's bounds and the mini-block cut rule: the node's `[pool]` config.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolLimits {
    pub capacity: usize,
    pub per_sender_max: usize,
    pub nonce_gap_max: u64,
    /// How long a queued (gapped) transaction waits for its gap to fill.
    pub queued_lifetime_ms: u64,
    /// Cut a mini-block once this many transactions are pending...
    pub mini_block_txs_max: usize,
    /// ...or their gas limits add up to this...
    pub mini_block_gas_max: u64,
    /// ...or the oldest pending head has waited this long.
    pub mini_block_wait_ms: u64,
}

impl Default for PoolLimits {
    fn default() -> Self {
        Self {
            capacity: 65_536,
            per_sender_max: 64,
            nonce_gap_max: 64,
            queued_lifetime_ms: 60_000,
            mini_block_txs_max: 256,
            mini_block_gas_max: 30_000_000,
            mini_block_wait_ms: 1,
        }
    }
}

/// How an accepted transaction entered the pool.
#[derive(Debug, Default)]
pub struct Admitted {
    /// Executable now, as opposed to queued behind a nonce gap.
    pub pending: bool,
    /// The transaction this one replaced (same sender and nonce).
    pub replaced: Option<VerifiedTx>,
    /// A queued transaction evicted to make room.
    pub evicted: Option<VerifiedTx>,
}

#[derive(Debug)]
struct Pooled {
    tx: VerifiedTx,
    seq: u64,
    arrived_ms: u64,
    pending: bool,
}

#[derive(Debug, Default)]
struct SenderQueue {
    txs: BTreeMap<u64, Pooled>,
    /// The nonce the next transaction handed to execution must have.
    next_nonce: u64,
    /// Handed to execution, outcome not yet settled.
    in_flight: u32,
}

/// The pool. Time is injected (`now_ms`) so that a run replays.
#[derive(Debug)]
pub struct Pool {
    limits: PoolLimits,
    senders: AddressMap<SenderQueue>,
    hashes: B256Set,
    /// Pending heads: (arrival sequence, sender). The first is handed out next.
    ready: BTreeSet<(u64, Address)>,
    /// Queued transactions by arrival: (sequence, sender, nonce).
    queued: BTreeSet<(u64, Address, u64)>,
    next_seq: u64,
    len: usize,
    pending_count: usize,
    pending_gas: u64,
    /// Transactions whose nonce the sender's account moved past outside the
    /// pool (an EIP-7702 authorization bumps the authority's nonce): removed,
    /// waiting for `drain_stale` so that their submitters are answered.
    stale: Vec<VerifiedTx>,
}

impl Pool {
    pub fn new(limits: PoolLimits) -> Self {
        Self {
            limits,
            senders: AddressMap::default(),
            hashes: B256Set::default(),
            ready: BTreeSet::new(),
            queued: BTreeSet::new(),
            next_seq: 0,
            len: 0,
            pending_count: 0,
            pending_gas: 0,
            stale: Vec::new(),
        }
    }

    /// Transactions removed because their sender's nonce moved past them.
    pub fn drain_stale(&mut self) -> std::vec::Drain<'_, VerifiedTx> {
        self.stale.drain(..)
    }

    /// Re-anchors `sender` at `state_nonce`: transactions below it can never
    /// execute and go to `stale`; the rest are pending from `state_nonce` on,
    /// or queued behind a gap.
    fn rebase(&mut self, sender: &Address, state_nonce: u64) {
        let Some(queue) = self.senders.get_mut(sender) else { return };
        let entries: Vec<(u64, u64, bool, u64)> =
            queue.txs.iter().map(|(&n, p)| (n, p.seq, p.pending, p.tx.gas_limit())).collect();
        queue.next_nonce = state_nonce;
        for (nonce, seq, pending, gas) in entries {
            if pending {
                self.ready.remove(&(seq, *sender));
                self.pending_count -= 1;
                self.pending_gas -= gas;
            } else {
                self.queued.remove(&(seq, *sender, nonce));
            }
            let queue = self.senders.get_mut(sender).expect("held");
            if nonce < state_nonce {
                let pooled = queue.txs.remove(&nonce).expect("listed");
                self.hashes.remove(&pooled.tx.hash);
                self.len -= 1;
                self.stale.push(pooled.tx);
            } else {
                queue.txs.get_mut(&nonce).expect("listed").pending = false;
                self.queued.insert((seq, *sender, nonce));
            }
        }
        self.promote(sender, state_nonce);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn pending_count(&self) -> usize {
        self.pending_count
    }

    pub fn queued_count(&self) -> usize {
        self.queued.len()
    }

    /// Every pooled transaction, by sender and nonce, and whether it is
    /// executable now (pending) or behind a nonce gap (queued).
    pub fn transactions(&self) -> impl Iterator<Item = (&VerifiedTx, bool)> {
        self.senders.values().flat_map(|queue| queue.txs.values().map(|pooled| (&pooled.tx, pooled.pending)))
    }

    /// The nonce a sender's next new transaction would take: what `pending`
    /// nonce queries answer.
    pub fn next_nonce(&self, sender: &Address, state_nonce: u64) -> u64 {
        let Some(queue) = self.senders.get(sender) else { return state_nonce };
        let base = queue.next_nonce.max(state_nonce);
        let mut nonce = base;
        while queue.txs.contains_key(&nonce) {
            nonce += 1;
        }
        nonce
    }

    /// Admits a verified transaction. `state_nonce` is the sender's account
    /// nonce in the latest executed state.
    pub fn insert(&mut self, tx: VerifiedTx, state_nonce: u64, now_ms: u64) -> Result<Admitted, Reject> {
        if self.hashes.contains(&tx.hash) {
            return Err(Reject::new(RejectCode::AlreadyKnown, format!("{} is already pooled", tx.hash)));
        }
        let (sender, nonce) = (tx.sender, tx.nonce());
        if self.senders.get(&sender).is_some_and(|q| state_nonce > q.next_nonce) {
            self.rebase(&sender, state_nonce);
        }
        let (next_nonce, sender_len, pending) = match self.senders.get(&sender) {
            Some(queue) => {
                let next = queue.next_nonce;
                let after_pending = nonce > next && queue.txs.get(&(nonce - 1)).is_some_and(|p| p.pending);
                if nonce >= next && queue.txs.contains_key(&nonce) {
                    return self.replace(tx).map(|replaced| Admitted {
                        pending: true,
                        replaced: Some(replaced),
                        evicted: None,
                    });
                }
                (next, queue.txs.len(), nonce == next || after_pending)
            }
            None => (state_nonce, 0, nonce == state_nonce),
        };
        if nonce < next_nonce {
            return Err(Reject::new(RejectCode::NonceTooLow, format!("nonce {nonce}, next is {next_nonce}")));
        }
        if nonce - next_nonce > self.limits.nonce_gap_max {
            return Err(Reject::new(
                RejectCode::NonceGapTooLarge,
                format!("nonce {nonce} is more than {} ahead of {next_nonce}", self.limits.nonce_gap_max),
            ));
        }
        if sender_len >= self.limits.per_sender_max {
            return Err(Reject::new(
                RejectCode::SenderQueueFull,
                format!("sender already has {sender_len} pooled transactions"),
            ));
        }
        let mut evicted = None;
        if self.len >= self.limits.capacity {
            match self.queued.last().copied() {
                Some((seq, victim_sender, victim_nonce)) if pending => {
                    self.queued.remove(&(seq, victim_sender, victim_nonce));
                    evicted = self.remove_queued(&victim_sender, victim_nonce);
                }
                _ => {
                    return Err(Reject::new(
                        RejectCode::PoolFull,
                        format!("{} transactions pooled, nothing evictable ranks below this one", self.len),
                    ));
                }
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.hashes.insert(tx.hash);
        self.len += 1;
        let queue = self.senders.entry(sender).or_default();
        queue.next_nonce = next_nonce;
        queue.txs.insert(nonce, Pooled { tx, seq, arrived_ms: now_ms, pending: false });
        if pending {
            self.promote(&sender, nonce);
        } else {
            self.queued.insert((seq, sender, nonce));
        }
        Ok(Admitted { pending, replaced: None, evicted })
    }

    /// Same sender and nonce: both fee caps must rise by the bump.
    fn replace(&mut self, tx: VerifiedTx) -> Result<VerifiedTx, Reject> {
        let queue = self.senders.get_mut(&tx.sender).expect("caller checked");
        let slot = queue.txs.get_mut(&tx.nonce()).expect("caller checked");
        let old = &slot.tx;
        let bumped =
            |old: u128, new: u128| new.saturating_mul(100) >= old.saturating_mul(100 + REPLACEMENT_BUMP_PERCENT);
        if !bumped(old.max_fee_per_gas(), tx.max_fee_per_gas())
            || !bumped(old.max_priority_fee_per_gas(), tx.max_priority_fee_per_gas())
        {
            return Err(Reject::new(
                RejectCode::ReplacementUnderpriced,
                format!("replacing needs both fee caps raised by {REPLACEMENT_BUMP_PERCENT}%"),
            ));
        }
        if slot.pending {
            self.pending_gas = self.pending_gas - old.gas_limit() + tx.gas_limit();
        }
        self.hashes.remove(&old.hash);
        self.hashes.insert(tx.hash);
        Ok(std::mem::replace(&mut slot.tx, tx))
    }

    /// Marks `nonce` and the queued run after it pending.
    fn promote(&mut self, sender: &Address, from_nonce: u64) {
        let queue = self.senders.get_mut(sender).expect("caller holds the sender");
        let mut nonce = from_nonce;
        while let Some(pooled) = queue.txs.get_mut(&nonce) {
            if !pooled.pending {
                pooled.pending = true;
                self.queued.remove(&(pooled.seq, *sender, nonce));
                self.pending_count += 1;
                self.pending_gas += pooled.tx.gas_limit();
            }
            nonce += 1;
        }
        if let Some((&head_nonce, head)) = queue.txs.first_key_value()
            && head_nonce == queue.next_nonce
        {
            self.ready.insert((head.seq, *sender));
        }
    }

    fn remove_queued(&mut self, sender: &Address, nonce: u64) -> Option<VerifiedTx> {
        let queue = self.senders.get_mut(sender)?;
        let pooled = queue.txs.remove(&nonce)?;
        debug_assert!(!pooled.pending, "only queued transactions are removed this way");
        self.hashes.remove(&pooled.tx.hash);
        self.len -= 1;
        self.drop_if_idle(sender);
        Some(pooled.tx)
    }

    fn drop_if_idle(&mut self, sender: &Address) {
        if self.senders.get(sender).is_some_and(|q| q.txs.is_empty() && q.in_flight == 0) {
            self.senders.remove(sender);
        }
    }

    /// Drops queued transactions that waited longer than `queued_lifetime_ms`.
    pub fn expire(&mut self, now_ms: u64, mut on_expired: impl FnMut(VerifiedTx)) {
        while let Some(&(seq, sender, nonce)) = self.queued.first() {
            let arrived_ms = self.senders[&sender].txs[&nonce].arrived_ms;
            if arrived_ms.saturating_add(self.limits.queued_lifetime_ms) > now_ms {
                break;
            }
            self.queued.remove(&(seq, sender, nonce));
            if let Some(tx) = self.remove_queued(&sender, nonce) {
                on_expired(tx);
            }
        }
    }

    /// Whether a mini-block is due: enough transactions, enough gas, or the
    /// oldest pending head has waited long enough.
    pub fn mini_block_due(&self, now_ms: u64) -> bool {
        if self.pending_count == 0 {
            return false;
        }
        if self.pending_count >= self.limits.mini_block_txs_max || self.pending_gas >= self.limits.mini_block_gas_max {
            return true;
        }
        let &(_, sender) = self.ready.first().expect("pending transactions have a ready head");
        let queue = &self.senders[&sender];
        let head = &queue.txs[&queue.next_nonce];
        now_ms.saturating_sub(head.arrived_ms) >= self.limits.mini_block_wait_ms
    }

    /// Hands out the next mini-block, first come first served, within the
    /// count and gas limits (at least one transaction if any is pending).
    pub fn cut_mini_block(&mut self, out: &mut Vec<VerifiedTx>) {
        let mut gas = 0u64;
        while out.len() < self.limits.mini_block_txs_max {
            let Some(&(seq, sender)) = self.ready.first() else { break };
            let queue = self.senders.get_mut(&sender).expect("ready senders are pooled");
            let head_gas = queue.txs[&queue.next_nonce].tx.gas_limit();
            if !out.is_empty() && gas.saturating_add(head_gas) > self.limits.mini_block_gas_max {
                break;
            }
            self.ready.remove(&(seq, sender));
            let pooled = queue.txs.remove(&queue.next_nonce).expect("the ready head exists");
            queue.next_nonce += 1;
            queue.in_flight += 1;
            if let Some(next) = queue.txs.get(&queue.next_nonce).filter(|p| p.pending) {
                self.ready.insert((next.seq, sender));
            }
            gas += head_gas;
            self.hashes.remove(&pooled.tx.hash);
            self.len -= 1;
            self.pending_count -= 1;
            self.pending_gas -= head_gas;
            out.push(pooled.tx);
        }
    }

    /// Reports the execution outcome of a handed-out transaction. When it was
    /// dropped, the sender's nonce falls back to `state_nonce` and its later
    /// transactions wait for the gap to fill again; when the account's nonce
    /// moved ahead of the pool, the pool follows it.
    pub fn settle(&mut self, sender: &Address, state_nonce: u64, dropped: bool) {
        let Some(queue) = self.senders.get_mut(sender) else { return };
        queue.in_flight = queue.in_flight.saturating_sub(1);
        let next = queue.next_nonce;
        if (dropped && state_nonce < next) || state_nonce > next {
            self.rebase(sender, state_nonce);
        }
        self.drop_if_idle(sender);
    }
}

#[cfg(test)]
mod tests {
    use alloy_consensus::{TxEip1559, TypedTransaction};
    use alloy_eips::eip2718::Encodable2718;
    use alloy_primitives::{TxKind, U256};
    use proptest::prelude::*;

    use super::*;
    use crate::dev::DevKey;

    const GWEI: u128 = 1_000_000_000;

    /// A pooled transaction from `sender` with the given nonce and fees. The
    /// signature is the dev key's; the pool only reads sender, nonce and fees.
    fn tx(sender: u8, nonce: u64, max_fee: u128, tip: u128) -> VerifiedTx {
        let envelope = DevKey::dev(0).sign(TypedTransaction::Eip1559(TxEip1559 {
            chain_id: 1,
            nonce,
            gas_limit: 21_000,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: tip,
            to: TxKind::Call(Address::ZERO),
            value: U256::from(sender),
            ..Default::default()
        }));
        VerifiedTx {
            hash: *envelope.tx_hash(),
            sender: Address::repeat_byte(sender),
            encoded: envelope.encoded_2718().into(),
            envelope,
            authorizations: Vec::new(),
            l1_estimated_size: None,
        }
    }

    fn cut_all(pool: &mut Pool) -> Vec<(u8, u64)> {
        let mut out = Vec::new();
        pool.cut_mini_block(&mut out);
        out.iter().map(|t| (t.sender.0[0], t.nonce())).collect()
    }

    fn limits() -> PoolLimits {
        PoolLimits { mini_block_txs_max: 1_000, ..PoolLimits::default() }
    }

    #[test]
    fn first_come_first_served_across_senders_nonce_order_within() {
        let mut pool = Pool::new(limits());
        pool.insert(tx(1, 0, GWEI, 0), 0, 0).unwrap();
        pool.insert(tx(2, 0, GWEI, 0), 0, 0).unwrap();
        // Sender 3 pays far more but arrived last: arrival order wins.
        pool.insert(tx(3, 0, 100 * GWEI, 50 * GWEI), 0, 0).unwrap();
        pool.insert(tx(1, 1, GWEI, 0), 0, 0).unwrap();
        assert_eq!(cut_all(&mut pool), vec![(1, 0), (2, 0), (3, 0), (1, 1)]);
        assert!(pool.is_empty());
    }

    #[test]
    fn gaps_are_queued_until_filled() {
        let mut pool = Pool::new(limits());
        assert!(!pool.insert(tx(1, 2, GWEI, 0), 0, 0).unwrap().pending);
        assert!(!pool.insert(tx(1, 1, GWEI, 0), 0, 0).unwrap().pending);
        assert_eq!((pool.pending_count(), pool.queued_count()), (0, 2));
        assert!(cut_all(&mut pool).is_empty());
        assert!(pool.insert(tx(1, 0, GWEI, 0), 0, 0).unwrap().pending);
        assert_eq!((pool.pending_count(), pool.queued_count()), (3, 0));
        assert_eq!(pool.next_nonce(&Address::repeat_byte(1), 0), 3);
        assert_eq!(cut_all(&mut pool), vec![(1, 0), (1, 1), (1, 2)]);
    }

    #[test]
    fn nonces_below_state_or_too_far_ahead_are_refused() {
        let mut pool = Pool::new(limits());
        assert_eq!(pool.insert(tx(1, 4, GWEI, 0), 5, 0).unwrap_err().code, RejectCode::NonceTooLow);
        let far = 5 + limits().nonce_gap_max + 1;
        assert_eq!(pool.insert(tx(1, far, GWEI, 0), 5, 0).unwrap_err().code, RejectCode::NonceGapTooLarge);
        assert!(pool.is_empty());
        pool.insert(tx(1, 5, GWEI, 0), 5, 0).unwrap();
        assert_eq!(pool.insert(tx(1, 5, GWEI, 0), 5, 0).unwrap_err().code, RejectCode::AlreadyKnown);
    }

    #[test]
    fn replacement_needs_a_ten_percent_bump_of_both_caps() {
        let mut pool = Pool::new(limits());
        pool.insert(tx(1, 0, 100, 10), 0, 0).unwrap();
        let underpriced = [tx(1, 0, 109, 11), tx(1, 0, 110, 10), tx(1, 0, 200, 10)];
        for t in underpriced {
            assert_eq!(pool.insert(t, 0, 0).unwrap_err().code, RejectCode::ReplacementUnderpriced);
        }
        let admitted = pool.insert(tx(1, 0, 110, 11), 0, 0).unwrap();
        assert_eq!(admitted.replaced.unwrap().max_fee_per_gas(), 100);
        assert_eq!(pool.len(), 1);
        let mut out = Vec::new();
        pool.cut_mini_block(&mut out);
        assert_eq!(out[0].max_fee_per_gas(), 110);
    }

    #[test]
    fn per_sender_and_total_bounds_hold_with_the_eviction_rule() {
        let mut pool = Pool::new(PoolLimits { capacity: 4, per_sender_max: 2, ..limits() });
        pool.insert(tx(1, 0, GWEI, 0), 0, 0).unwrap();
        pool.insert(tx(1, 1, GWEI, 0), 0, 0).unwrap();
        assert_eq!(pool.insert(tx(1, 2, GWEI, 0), 0, 0).unwrap_err().code, RejectCode::SenderQueueFull);
        pool.insert(tx(2, 5, GWEI, 0), 0, 1).unwrap(); // queued, older
        pool.insert(tx(3, 5, GWEI, 0), 0, 2).unwrap(); // queued, newest
        assert_eq!(pool.len(), 4);
        // Full: a queued newcomer is refused...
        assert_eq!(pool.insert(tx(4, 9, GWEI, 0), 0, 3).unwrap_err().code, RejectCode::PoolFull);
        // ...a pending one evicts the newest queued transaction.
        let admitted = pool.insert(tx(4, 0, GWEI, 0), 0, 3).unwrap();
        assert_eq!(admitted.evicted.unwrap().sender, Address::repeat_byte(3));
        assert_eq!(pool.len(), 4);
        pool.insert(tx(5, 0, GWEI, 0), 0, 4).unwrap();
        // Nothing queued is left to evict.
        assert_eq!(pool.insert(tx(6, 0, GWEI, 0), 0, 5).unwrap_err().code, RejectCode::PoolFull);
    }

    #[test]
    fn queued_transactions_expire() {
        let mut pool = Pool::new(PoolLimits { queued_lifetime_ms: 100, ..limits() });
        pool.insert(tx(1, 3, GWEI, 0), 0, 0).unwrap();
        pool.insert(tx(2, 3, GWEI, 0), 0, 50).unwrap();
        pool.insert(tx(3, 0, GWEI, 0), 0, 0).unwrap(); // pending: never expires
        let mut expired = Vec::new();
        pool.expire(99, |t| expired.push(t.sender));
        assert!(expired.is_empty());
        pool.expire(100, |t| expired.push(t.sender));
        assert_eq!(expired, vec![Address::repeat_byte(1)]);
        pool.expire(1_000, |t| expired.push(t.sender));
        assert_eq!(expired.len(), 2);
        assert_eq!(pool.len(), 1);
    }

    #[test]
    fn mini_blocks_are_cut_on_count_gas_or_time() {
        let mut pool = Pool::new(PoolLimits {
            mini_block_txs_max: 3,
            mini_block_gas_max: 1_000_000,
            mini_block_wait_ms: 10,
            ..limits()
        });
        pool.insert(tx(1, 0, GWEI, 0), 0, 100).unwrap();
        assert!(!pool.mini_block_due(105));
        assert!(pool.mini_block_due(110), "time");
        pool.insert(tx(2, 0, GWEI, 0), 0, 106).unwrap();
        pool.insert(tx(3, 0, GWEI, 0), 0, 106).unwrap();
        assert!(pool.mini_block_due(106), "count");
        pool.insert(tx(4, 0, GWEI, 0), 0, 106).unwrap();
        assert_eq!(cut_all(&mut pool).len(), 3, "a cut takes at most the count limit");
        let mut by_gas = Pool::new(PoolLimits { mini_block_gas_max: 42_000, mini_block_wait_ms: 1_000, ..limits() });
        by_gas.insert(tx(1, 0, GWEI, 0), 0, 0).unwrap();
        assert!(!by_gas.mini_block_due(0));
        by_gas.insert(tx(2, 0, GWEI, 0), 0, 0).unwrap();
        assert!(by_gas.mini_block_due(0), "gas");
        by_gas.insert(tx(3, 0, GWEI, 0), 0, 0).unwrap();
        assert_eq!(cut_all(&mut by_gas).len(), 2, "a cut takes at most the gas limit");
    }

    #[test]
    fn a_dropped_transaction_rewinds_its_sender() {
        let mut pool = Pool::new(limits());
        for nonce in 0..2 {
            pool.insert(tx(1, nonce, GWEI, 0), 0, 0).unwrap();
        }
        let mut out = Vec::new();
        pool.cut_mini_block(&mut out);
        pool.insert(tx(1, 2, GWEI, 0), 0, 0).unwrap();
        assert_eq!(pool.pending_count(), 1);
        // Nonce 0 executed, nonce 1 was dropped (say, out of funds): nonce 2 now waits on a gap.
        pool.settle(&Address::repeat_byte(1), 1, false);
        pool.settle(&Address::repeat_byte(1), 1, true);
        assert_eq!((pool.pending_count(), pool.queued_count()), (0, 1));
        pool.insert(tx(1, 1, GWEI, 0), 1, 0).unwrap();
        assert_eq!(cut_all(&mut pool), vec![(1, 1), (1, 2)]);
    }

    #[test]
    fn a_nonce_moved_outside_the_pool_makes_older_transactions_stale() {
        let mut pool = Pool::new(limits());
        pool.insert(tx(1, 5, GWEI, 0), 5, 0).unwrap();
        // An EIP-7702 authorization elsewhere took nonce 5: the account is at 6.
        assert!(pool.insert(tx(1, 7, GWEI, 0), 6, 1).is_ok());
        let stale: Vec<u64> = pool.drain_stale().map(|t| t.nonce()).collect();
        assert_eq!(stale, vec![5]);
        assert_eq!((pool.pending_count(), pool.queued_count()), (0, 1));
        assert!(!pool.mini_block_due(1_000));
        pool.insert(tx(1, 6, GWEI, 0), 6, 2).unwrap();
        assert_eq!(cut_all(&mut pool), vec![(1, 6), (1, 7)]);
        // The same when the move is seen at settlement.
        pool.insert(tx(2, 0, GWEI, 0), 0, 3).unwrap();
        pool.insert(tx(2, 2, GWEI, 0), 0, 3).unwrap();
        let mut out = Vec::new();
        pool.cut_mini_block(&mut out);
        pool.settle(&Address::repeat_byte(2), 3, false);
        assert_eq!(pool.drain_stale().map(|t| t.nonce()).collect::<Vec<_>>(), vec![2]);
        assert!(pool.is_empty());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert {
            sender: u8,
            nonce: u64,
            fee: u128,
        },
        Cut,
        Expire,
        /// The account's nonce moves on outside the pool (an EIP-7702 authorization).
        Bump {
            sender: u8,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u8..6, 0u64..8, 1u128..4).prop_map(|(sender, nonce, fee)| Op::Insert { sender, nonce, fee: fee * 100 }),
            2 => Just(Op::Cut),
            1 => Just(Op::Expire),
            1 => (0u8..6).prop_map(|sender| Op::Bump { sender }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Nothing is lost and nothing is duplicated: every admitted transaction
        /// is pooled, handed out once, replaced, evicted or expired; handed-out
        /// nonces are consecutive per sender; the bounds always hold.
        #[test]
        fn pool_conserves_transactions_and_bounds(ops in proptest::collection::vec(op(), 1..120)) {
            let limits = PoolLimits { capacity: 12, per_sender_max: 4, nonce_gap_max: 5, queued_lifetime_ms: 30, mini_block_txs_max: 5, ..PoolLimits::default() };
            let mut pool = Pool::new(limits.clone());
            let mut admitted = 0usize;
            let mut gone = 0usize;
            let mut handed: std::collections::HashMap<Address, u64> = Default::default();
            for (now, op) in ops.into_iter().enumerate() {
                let now = now as u64;
                match op {
                    Op::Insert { sender, nonce, fee } => {
                        let state_nonce = handed.get(&Address::repeat_byte(sender)).copied().unwrap_or(0);
                        if let Ok(result) = pool.insert(tx(sender, nonce, fee, 0), state_nonce, now) {
                            admitted += 1;
                            gone += usize::from(result.replaced.is_some()) + usize::from(result.evicted.is_some());
                        }
                    }
                    Op::Cut => {
                        let mut out = Vec::new();
                        pool.cut_mini_block(&mut out);
                        prop_assert!(out.len() <= limits.mini_block_txs_max);
                        for t in &out {
                            let next = handed.entry(t.sender).or_insert(0);
                            prop_assert_eq!(t.nonce(), *next, "handed-out nonces are consecutive");
                            *next += 1;
                            pool.settle(&t.sender, *next, false);
                        }
                        gone += out.len();
                    }
                    Op::Expire => pool.expire(now, |_| gone += 1),
                    Op::Bump { sender } => {
                        let next = handed.entry(Address::repeat_byte(sender)).or_insert(0);
                        *next += 1;
                        // The next submission from this sender brings the new state nonce.
                        let _ = pool.insert(tx(sender, *next + 100, 1, 0), *next, now).map(|_| admitted += 1);
                    }
                }
                gone += pool.drain_stale().count();
                prop_assert_eq!(admitted, gone + pool.len());
                prop_assert!(pool.len() <= limits.capacity);
                prop_assert_eq!(pool.pending_count() + pool.queued_count(), pool.len());
            }
        }
    }
}
