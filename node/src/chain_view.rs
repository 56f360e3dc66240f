//! The one owner of the chain as reads see it: the state, the pool, the open
//! block's preconfirmed transactions, the recent sealed blocks and the index
//! of every transaction in them. A leader's sequencer, a standby following
//! its leader and the start's replay change it only through `open`,
//! `preconfirm`, `seal` and `sign`, which keep the index consistent, publish
//! the events subscribers hear and set the chain's metrics.
//!
//! ```text
//!   open(params) ──> preconfirm(txs)* ──> seal(header, hash) ──> open(next) ...
//!                                              └── sign(number, hash, signature), later
//!   rewind(state, blocks, params): back to a rebuilt chain (an OP Stack chain's L1 reorged)
//! ```
//!
//! Invariants: every transaction in the open block or a kept sealed block is
//! in the index at its place, and no other is; at most `history_blocks_max`
//! sealed blocks are kept (genesis until then), oldest first, numbered
//! without gaps; a block seals the open block's transactions, in order.

use std::{
    collections::VecDeque,
    sync::{Arc, RwLock},
};

use alloy_consensus::Header;
use alloy_primitives::{Address, B256, map::B256Map};
use tephra_exec::{BlockChanges, BlockParams, StateDb, Verifier, pool::Pool};
use tephra_hsm::Signature65;
use tokio::sync::broadcast;

use crate::{
    history::History,
    log_index::LogIndex,
    metrics::Metrics,
    view::{OpBlockInfo, OpenBlock, StoredBlock, StoredTx, TxLocation},
};

/// Retired logs the log index forgets at each seal besides those it forgets
/// as mini-blocks come (`LogIndex`): a few hundred microseconds at most.
const LOGS_FORGOTTEN_PER_SEAL: usize = 2048;

/// What subscribers hear.
#[derive(Clone, Debug)]
pub enum Event {
    /// Transactions just preconfirmed into the open block `block_number`.
    Preconfirmed { block_number: u64, txs: Arc<Vec<StoredTx>> },
    /// A block sealed.
    Sealed(Arc<StoredBlock>),
    /// The sealed blocks `abandoned` (oldest first) and the open block's
    /// `open_txs` left the chain, whose head is block `number` again: an
    /// OP Stack chain's L1 reorged below their origins. Their user
    /// transactions are sequenced again.
    Rewound { number: u64, abandoned: Arc<Vec<StoredBlock>>, open_txs: Arc<Vec<StoredTx>> },
}

/// Where the view's changes are told: subscribers, metrics, and the rules
/// transactions are verified against (those of the open block).
#[derive(Clone, Debug)]
pub struct Outlets {
    pub events: broadcast::Sender<Event>,
    pub metrics: Arc<Metrics>,
    pub verifier: Arc<RwLock<Verifier>>,
}

/// The chain as reads see it; see the module comment.
#[derive(Debug)]
pub struct ChainView {
    state: StateDb,
    pool: Pool,
    /// Sealed blocks, oldest first, at most `history_blocks_max`.
    blocks: VecDeque<StoredBlock>,
    history_blocks_max: usize,
    tx_index: B256Map<TxLocation>,
    /// The kept blocks' (and the open block's) log addresses and topics,
    /// for eth_getLogs.
    log_index: LogIndex<Arc<Vec<StoredTx>>>,
    open: OpenBlock,
    outlets: Outlets,
    /// An OP Stack chain's batcher: the safe and finalized heads.
    batcher: Option<Arc<crate::batcher::BatcherStatus>>,
    /// The state history (`[history] enabled`): told each sealed block's changes.
    history: Option<Arc<History>>,
}

impl ChainView {
    /// The chain as the start's replay left it: `blocks` sealed, oldest
    /// first (genesis at least), and the open block with what it holds.
    pub fn restore(
        state: StateDb,
        pool: Pool,
        blocks: impl IntoIterator<Item = StoredBlock>,
        history_blocks_max: usize,
        open: OpenBlock,
        outlets: Outlets,
    ) -> Self {
        let mut view = Self {
            state,
            pool,
            blocks: VecDeque::new(),
            history_blocks_max: history_blocks_max.max(1),
            batcher: None,
            history: None,
            tx_index: B256Map::default(),
            log_index: LogIndex::default(),
            open: OpenBlock { params: open.params.clone(), txs: Vec::new(), gas_used: 0, op: open.op.clone() },
            outlets,
        };
        for block in blocks {
            view.index(&block);
            view.keep(block);
        }
        assert!(!view.blocks.is_empty(), "a chain holds its genesis at least");
        view.index_open(open.txs);
        view.open.gas_used = open.gas_used;
        view.set_rules(&open.params);
        view.outlets.metrics.head_number.set(i64::try_from(view.head().header.number).unwrap_or(i64::MAX));
        view
    }

    // ---- reads ----

    pub fn state(&self) -> &StateDb {
        &self.state
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The open block: its parameters and what is preconfirmed in it.
    pub fn open_block(&self) -> &OpenBlock {
        &self.open
    }

    /// The newest sealed block.
    pub fn head(&self) -> &StoredBlock {
        self.blocks.back().expect("genesis is always kept")
    }

    /// The sealed blocks kept, oldest first.
    pub fn blocks(&self) -> impl DoubleEndedIterator<Item = &StoredBlock> {
        self.blocks.iter()
    }

    pub fn block(&self, number: u64) -> Option<&StoredBlock> {
        let first = self.blocks.front()?.header.number;
        self.blocks.get(usize::try_from(number.checked_sub(first)?).ok()?)
    }

    pub fn block_by_hash(&self, hash: &B256) -> Option<&StoredBlock> {
        // Recent blocks are asked for most: search from the head.
        self.blocks.iter().rev().find(|b| b.hash == *hash)
    }

    /// A sealed or preconfirmed transaction: its block number, index and itself.
    pub fn tx(&self, hash: &B256) -> Option<(u64, usize, &StoredTx)> {
        let at = *self.tx_index.get(hash)?;
        if at.block_number == self.open.params.number {
            return self.open.txs.get(at.index).map(|tx| (at.block_number, at.index, tx));
        }
        self.block(at.block_number)?.txs.get(at.index).map(|tx| (at.block_number, at.index, tx))
    }

    /// An OP Stack block's L1 side, for a kept or the open block.
    pub fn op_of(&self, number: u64) -> Option<&OpBlockInfo> {
        if number == self.open.params.number {
            return self.open.op.as_deref();
        }
        self.block(number)?.op.as_deref()
    }

    /// Whether a transaction is sealed or preconfirmed here.
    /// The kept blocks in `from..=to` that may hold a log of one of
    /// `addresses` with the topics asked (`LogIndex::candidates`); `None`
    /// when the filter names nothing to narrow by.
    pub fn log_candidates(&self, addresses: &[Address], topics: &[Vec<B256>], from: u64, to: u64) -> Option<Vec<u64>> {
        self.log_index.candidates(addresses, topics, from, to)
    }

    /// The kept blocks in `from..=to` whose logs or calls may mention
    /// `address` (`LogIndex::mentions`).
    pub fn blocks_mentioning(&self, address: &Address, from: u64, to: u64) -> Vec<u64> {
        self.log_index.mentions(address, from, to)
    }

    pub fn holds_tx(&self, hash: &B256) -> bool {
        self.tx_index.contains_key(hash)
    }

    /// Tells the safe and finalized heads from here on (an OP Stack chain
    /// with its batcher on).
    pub fn set_batcher(&mut self, status: Arc<crate::batcher::BatcherStatus>) {
        self.batcher = Some(status);
    }

    /// Keeps the state history from here on: the state keeps each block's
    /// changes, and each seal hands them over.
    pub fn set_history(&mut self, history: Arc<History>) {
        self.state.keep_block_changes();
        self.history = Some(history);
    }

    pub fn history(&self) -> Option<&Arc<History>> {
        self.history.as_ref()
    }

    /// Whether the safe and finalized heads are a batcher's.
    pub fn has_batcher(&self) -> bool {
        self.batcher.is_some()
    }

    /// The safe head: the batcher's (its batch on L1, deep enough), or
    /// without a batcher the newest signed block.
    pub fn safe_head(&self) -> u64 {
        self.batcher.as_ref().map_or_else(|| self.newest_signed(), |b| b.safe())
    }

    /// The finalized head: the batcher's (its batch in a finalized L1
    /// block), or without a batcher the newest signed block.
    pub fn finalized_head(&self) -> u64 {
        self.batcher.as_ref().map_or_else(|| self.newest_signed(), |b| b.finalized())
    }

    /// The newest block the block key has signed (0, genesis, if none kept is).
    pub fn newest_signed(&self) -> u64 {
        self.blocks.iter().rev().find(|b| b.signature.is_some()).map_or(0, |b| b.header.number)
    }

    /// The index in the open block of the next preconfirmed transaction's first log.
    pub fn next_log_index(&self) -> u64 {
        self.open.txs.last().map_or(0, |t| t.first_log_index + t.receipt.logs.len() as u64)
    }

    // ---- what execution changes: the state and the pool ----

    pub fn state_mut(&mut self) -> &mut StateDb {
        &mut self.state
    }

    /// The state and the pool, for a mini-block: executed against the one,
    /// settled in the other.
    pub fn state_and_pool_mut(&mut self) -> (&mut StateDb, &mut Pool) {
        (&mut self.state, &mut self.pool)
    }

    // ---- the chain's steps ----

    /// A new block opens with `params` (after the previous one sealed):
    /// nothing in it yet but, on an OP Stack chain, its deposits (`op`
    /// says where they come from); transactions are verified against its rules.
    pub fn open(&mut self, params: BlockParams, op: Option<(Arc<OpBlockInfo>, Vec<StoredTx>, u64)>) {
        debug_assert!(self.open.txs.is_empty(), "the previous block sealed its transactions");
        self.set_rules(&params);
        let (op, deposits, gas_used) = match op {
            Some((op, deposits, gas_used)) => (Some(op), deposits, gas_used),
            None => (None, Vec::new(), 0),
        };
        self.open = OpenBlock { params, txs: Vec::new(), gas_used: 0, op };
        self.preconfirm(deposits, gas_used);
    }

    /// `txs` are durably preconfirmed into the open block, after those
    /// already there; the block has used `gas_used` so far.
    pub fn preconfirm(&mut self, txs: Vec<StoredTx>, gas_used: u64) {
        if txs.is_empty() {
            return;
        }
        let txs = Arc::new(txs);
        self.index_open(txs.iter().cloned());
        self.open.gas_used = gas_used;
        self.outlets.metrics.tx_preconfirmed.inc_by(txs.len() as u64);
        let _ = self.outlets.events.send(Event::Preconfirmed { block_number: self.open.params.number, txs });
    }

    /// The open block sealed as `header` (whose hash is `hash`): its
    /// transactions become the block's, the oldest block past the history
    /// bound is forgotten, and subscribers hear of it.
    /// `changes`: what the block overwrote, when the state keeps them (the
    /// state history's input).
    pub fn seal(&mut self, header: Header, hash: B256, changes: Option<BlockChanges>) -> Arc<StoredBlock> {
        assert_eq!(header.number, self.open.params.number, "a block seals the open block");
        if let (Some(history), Some(changes)) = (&self.history, changes) {
            history.sealed(header.number, changes);
        }
        let txs = Arc::new(std::mem::take(&mut self.open.txs));
        let block = Arc::new(StoredBlock { header, hash, txs, signature: None, op: self.open.op.take() });
        // Not indexed again: `index_open` put each transaction where the
        // sealed block keeps it.
        self.keep(StoredBlock::clone(&block));
        let metrics = &self.outlets.metrics;
        metrics.head_number.set(i64::try_from(block.header.number).unwrap_or(i64::MAX));
        let _ = self.outlets.events.send(Event::Sealed(block.clone()));
        block
    }

    /// The blocks above the head of `blocks` were abandoned (an OP Stack
    /// chain's L1 reorged below their origins): the view becomes that chain
    /// and `state`, as replay rebuilt them from the log, with no block open
    /// yet (`params`: the rules of the one to come); the pool stays, and
    /// subscribers hear what went.
    pub fn rewind(&mut self, state: StateDb, blocks: impl IntoIterator<Item = StoredBlock>, params: BlockParams) {
        let blocks: VecDeque<StoredBlock> = blocks.into_iter().collect();
        let number = blocks.back().expect("a chain holds its genesis at least").header.number;
        let abandoned: Vec<StoredBlock> =
            std::mem::take(&mut self.blocks).into_iter().filter(|b| b.header.number > number).collect();
        let open_txs = std::mem::take(&mut self.open.txs);
        self.state = state;
        if let Some(history) = &self.history {
            // The kept blocks' changes are stored or pending already.
            history.truncate_after(number);
            self.state.keep_block_changes();
        }
        self.tx_index.clear();
        self.log_index.clear();
        for block in blocks {
            self.index(&block);
            self.keep(block);
        }
        self.set_rules(&params);
        self.open = OpenBlock { params, txs: Vec::new(), gas_used: 0, op: None };
        self.outlets.metrics.head_number.set(i64::try_from(number).unwrap_or(i64::MAX));
        let (abandoned, open_txs) = (Arc::new(abandoned), Arc::new(open_txs));
        let _ = self.outlets.events.send(Event::Rewound { number, abandoned, open_txs });
    }

    /// The block key's signature over block `number`, if that block (with
    /// that hash) is still kept; whether it was.
    pub fn sign(&mut self, number: u64, hash: B256, signature: Signature65) -> bool {
        let kept = self.blocks.iter_mut().rev().find(|b| b.header.number == number && b.hash == hash);
        kept.map(|block| block.signature = Some(signature)).is_some()
    }

    /// The blocks sealed but not signed yet, oldest first (not genesis).
    pub fn unsigned_blocks(&self) -> impl Iterator<Item = &StoredBlock> {
        self.blocks.iter().filter(|b| b.signature.is_none() && b.header.number > 0)
    }

    fn set_rules(&self, params: &BlockParams) {
        self.outlets.verifier.write().expect("verifier lock").set_block(
            params.spec,
            params.gas_limit,
            params.base_fee_per_gas,
        );
    }

    /// Indexes transactions preconfirmed into the open block, and their
    /// logs; forgets as many retired logs as it indexed (and a few more), so
    /// that the log index's work is spread over the mini-blocks.
    fn index_open(&mut self, txs: impl IntoIterator<Item = StoredTx>) {
        let number = self.open.params.number;
        let mut logs = 0;
        for tx in txs {
            let location = TxLocation { block_number: number, index: self.open.txs.len() };
            self.tx_index.insert(tx.hash, location);
            self.log_index.keep(number, &tx.receipt.logs);
            if let Some(to) = alloy_consensus::Transaction::to(&tx.envelope) {
                self.log_index.keep_recipient(number, &to);
            }
            logs += tx.receipt.logs.len() + 1;
            self.open.txs.push(tx);
        }
        self.log_index.forget_some(logs);
    }

    /// Indexes a sealed block's transactions and logs (one read from the
    /// log, not sealed here: `index_open` indexed those as they came).
    fn index(&mut self, block: &StoredBlock) {
        for (index, tx) in block.txs.iter().enumerate() {
            self.tx_index.insert(tx.hash, TxLocation { block_number: block.header.number, index });
        }
        let number = block.header.number;
        for tx in block.txs.iter() {
            self.log_index.keep(number, &tx.receipt.logs);
            if let Some(to) = alloy_consensus::Transaction::to(&tx.envelope) {
                self.log_index.keep_recipient(number, &to);
            }
        }
    }

    /// Keeps a sealed block, forgetting the oldest past the history bound.
    fn keep(&mut self, block: StoredBlock) {
        if let Some(head) = self.blocks.back() {
            assert_eq!(block.header.number, head.header.number + 1, "sealed blocks are kept without gaps");
        }
        self.blocks.push_back(block);
        while self.blocks.len() > self.history_blocks_max {
            if let Some(old) = self.blocks.pop_front() {
                for tx in old.txs.iter() {
                    self.tx_index.remove(&tx.hash);
                }
                self.log_index.retire(old.header.number, old.txs);
            }
        }
        // An idle chain still retires a block a block: forgotten here, a
        // bounded share at each seal.
        self.log_index.forget_some(LOGS_FORGOTTEN_PER_SEAL);
    }
}

#[cfg(test)]
mod tests {
    use alloy_eips::eip2718::Encodable2718;
    use alloy_primitives::{Address, Bytes, U256, keccak256};
    use tephra_batchlog::{ReceiptRecord, Record};
    use tephra_exec::{
        BlockBuilder, BlockChoice, ChainSpec, SequentialExecutor, TxOutcome, VerifyRules, dev::DevKey, pool::PoolLimits,
    };

    use super::*;
    use crate::replay::{self, Replayer, follow_record, genesis_block, open_record, stored_txs};

    /// Blocks kept: fewer than the leader seals, so that the oldest go.
    const HISTORY_BLOCKS: usize = 3;
    const SEALED_BLOCKS: u64 = 5;

    fn outlets(chain: &ChainSpec, params: &BlockParams) -> (Outlets, broadcast::Receiver<Event>) {
        let (events, heard) = broadcast::channel(1024);
        let verifier = Verifier::new(VerifyRules {
            chain_id: chain.chain_id(),
            spec: params.spec,
            block_gas_limit: params.gas_limit,
            base_fee_per_gas: params.base_fee_per_gas,
            allow_unprotected: false,
        });
        (Outlets { events, metrics: Arc::new(Metrics::new()), verifier: Arc::new(RwLock::new(verifier)) }, heard)
    }

    fn child_params(chain: &ChainSpec, parent: &StoredBlock) -> BlockParams {
        let choice = BlockChoice {
            timestamp: parent.header.timestamp + 1,
            beneficiary: Address::repeat_byte(0xbe),
            prevrandao: keccak256(parent.hash),
            extra_data: Bytes::from_static(b"tephra"),
            op: None,
        };
        BlockParams::child_of(chain, &parent.header, choice).expect("a child opens")
    }

    /// The chain at genesis, the first block's rules in force but not opened.
    fn at_genesis(chain: &ChainSpec) -> (ChainView, broadcast::Receiver<Event>) {
        let genesis = genesis_block(chain);
        let params = child_params(chain, &genesis);
        let (outlets, heard) = outlets(chain, &params);
        let open = OpenBlock { params, txs: Vec::new(), gas_used: 0, op: None };
        let view = ChainView::restore(
            chain.genesis_state(),
            Pool::new(PoolLimits::default()),
            [genesis],
            HISTORY_BLOCKS,
            open,
            outlets,
        );
        (view, heard)
    }

    /// The leader's steps, as the sequencer takes them, with the records it
    /// logs: blocks of two mini-blocks of transfers, each sealed and signed,
    /// and one more block left open with one mini-block in it.
    fn lead(chain: &ChainSpec) -> (ChainView, broadcast::Receiver<Event>, Vec<Record>) {
        lead_with(chain, None)
    }

    /// `lead`, with the state history kept in `history` from genesis.
    fn lead_with(
        chain: &ChainSpec,
        history: Option<Arc<History>>,
    ) -> (ChainView, broadcast::Receiver<Event>, Vec<Record>) {
        let (mut view, heard) = at_genesis(chain);
        if let Some(history) = history {
            view.set_history(history);
        }
        let mut records = Vec::new();
        let mut nonces = [0u64; 4];
        for number in 1..=SEALED_BLOCKS + 1 {
            let params = child_params(chain, view.head());
            let mut builder = BlockBuilder::open(params.clone(), view.state_mut());
            view.open(params.clone(), None);
            records.push(Record::Open(open_record(&params, None)));
            for mini_block in 0..2 {
                let verifier = view.outlets.verifier.read().unwrap().clone();
                let txs = (0..3)
                    .map(|k| {
                        let sender = (k + mini_block) % nonces.len();
                        let to = DevKey::dev(9).address();
                        let tx = DevKey::dev(sender).transfer(chain.chain_id(), nonces[sender], to, U256::from(number));
                        nonces[sender] += 1;
                        verifier.verify(&tx.encoded_2718()).expect("a valid transfer")
                    })
                    .collect();
                let first = builder.transactions().len();
                builder.execute(&mut SequentialExecutor, view.state_mut(), txs, |_, outcome| {
                    assert!(matches!(outcome, TxOutcome::Included(_)), "{outcome:?}");
                });
                let included = &builder.transactions()[first..];
                let logged = included.iter().map(|t| (t.tx.sender, t.tx.encoded.clone())).collect();
                records.push(Record::Batch { number, txs: logged });
                let stored = stored_txs(included, params.base_fee_per_gas, view.next_log_index());
                view.preconfirm(stored, builder.gas_used());
                if number > SEALED_BLOCKS {
                    return (view, heard, records);
                }
            }
            let sealed = builder.seal(view.state_mut());
            let receipts = view.open_block().txs.iter().map(|tx| ReceiptRecord::from(&tx.receipt)).collect();
            let header_rlp = Bytes::from(alloy_rlp::encode(&sealed.header));
            records.push(Record::Sealed { number, header_rlp, receipts });
            let block = view.seal(sealed.header, sealed.hash, sealed.changes);
            records.push(Record::Signed { number, hash: block.hash, signature: [7; 65] });
            assert!(view.sign(number, block.hash, Signature65([7; 65])));
        }
        unreachable!("the last block is left open")
    }

    /// The state after each sealed block reads back through each of the
    /// history's layers: blocks pending (no writer thread here), stored in
    /// part, stored whole; the open block's writes so far never show.
    #[test]
    fn the_state_at_each_block_reads_through_the_store_the_pending_blocks_and_the_open_block() {
        let chain = ChainSpec::dev();
        let dir = tephra_testkit::fresh_dir("chain-view-history");
        let history = Arc::new(History::open(&dir.join("history.redb"), 0, 1 << 20).unwrap());
        let (view, _, _) = lead_with(&chain, Some(history.clone()));
        let recipient = DevKey::dev(9).address();
        let genesis_balance = chain.genesis_state().balance(&recipient);
        // Block b sent six transfers of b wei to the recipient; the open
        // block holds three more, and a nonce more for each of three senders.
        let expected = |at: u64| genesis_balance + U256::from((1..=at).map(|b| 6 * b).sum::<u64>());
        let check = |what: &str| {
            for at in 0..=SEALED_BLOCKS {
                let state = history.state_at(&view, at).unwrap();
                let balance = state.account(&recipient).map(|a| a.balance).unwrap_or_default();
                assert_eq!(balance, expected(at), "{what}: block {at}");
                let nonces: u64 = (0..4).map(|k| state.account(&DevKey::dev(k).address()).unwrap().nonce).sum();
                assert_eq!(nonces, 6 * at, "{what}: block {at}");
                assert!(state.failure().is_none());
            }
        };
        check("all pending");
        for _ in 0..2 {
            assert!(history.store_next().unwrap());
        }
        check("two stored, the rest pending");
        while history.store_next().unwrap() {}
        check("all stored");
        assert_eq!(history.stored().unwrap().map(|s| s.last), Some(SEALED_BLOCKS));
        let outside = history.state_at(&view, SEALED_BLOCKS + 1).unwrap_err();
        assert!(matches!(outside, crate::history::HistoryWindowError::Outside { .. }), "{outside}");

        // A rewind to block 2: the store, holding abandoned blocks until the
        // writer drops them, is no layer of reads; then it ends at 2.
        history.truncate_after(2);
        assert_eq!(crate::history::History::window_of(history.stored().unwrap(), &[], 2), (2, false));
        history.store_next().unwrap();
        assert_eq!(history.stored().unwrap().map(|s| s.last), Some(2));
        assert_eq!(crate::history::History::window_of(history.stored().unwrap(), &[], 2), (0, true));
    }

    /// Everything reads can see of a view.
    fn assert_same(a: &mut ChainView, b: &mut ChainView, what: &str) {
        let blocks =
            |v: &ChainView| v.blocks().map(|b| (b.header.number, b.hash, b.signature, b.txs.len())).collect::<Vec<_>>();
        assert_eq!(blocks(a), blocks(b), "{what}: sealed blocks");
        assert_eq!(a.tx_index, b.tx_index, "{what}: the transaction index");
        let open = |v: &ChainView| {
            let o = v.open_block();
            (o.params.clone(), o.gas_used, o.txs.iter().map(|t| (t.hash, t.first_log_index)).collect::<Vec<_>>())
        };
        assert_eq!(open(a), open(b), "{what}: the open block");
        assert_eq!(a.state_mut().state_root(), b.state_mut().state_root(), "{what}: the state");
        for (hash, _) in a.tx_index.iter() {
            let (x, y) = (a.tx(hash).unwrap(), b.tx(hash).unwrap());
            assert_eq!((x.0, x.1, &x.2.receipt), (y.0, y.1, &y.2.receipt), "{what}: transaction {hash}");
        }
    }

    fn heard(events: &mut broadcast::Receiver<Event>) -> Vec<(u64, usize)> {
        std::iter::from_fn(|| events.try_recv().ok())
            .map(|event| match event {
                Event::Preconfirmed { block_number, txs } => (block_number, txs.len()),
                Event::Sealed(block) => (block.header.number, usize::MAX),
                Event::Rewound { number, .. } => (number, 0),
            })
            .collect()
    }

    #[test]
    fn a_leader_a_standby_and_a_restart_fed_the_same_records_see_the_same_chain() {
        let chain = ChainSpec::dev();
        let (mut leader, mut leader_heard, records) = lead(&chain);

        let (mut standby, mut standby_heard) = at_genesis(&chain);
        let mut replayer = Replayer::new(&chain, 0, chain.genesis_header().clone());
        for record in records.clone() {
            follow_record(&mut standby, &mut replayer, record).expect("the leader's records follow");
        }
        assert_same(&mut leader, &mut standby, "standby");
        assert_eq!(heard(&mut leader_heard), heard(&mut standby_heard), "subscribers hear the same");

        let replayed = replay::replay(&chain, records, None, None, HISTORY_BLOCKS, None).expect("the log replays");
        let open = replayed.open.expect("a block is open");
        let open_block = OpenBlock {
            params: open.builder.params().clone(),
            txs: open.txs,
            gas_used: open.builder.gas_used(),
            op: open.op,
        };
        let (outlets, _) = outlets(&chain, &open_block.params);
        let pool = Pool::new(PoolLimits::default());
        let mut restarted =
            ChainView::restore(replayed.state, pool, replayed.blocks, HISTORY_BLOCKS, open_block, outlets);
        assert_same(&mut leader, &mut restarted, "restart");
    }

    #[test]
    fn a_rewind_shows_the_logs_chain_and_tells_what_was_abandoned() {
        let chain = ChainSpec::dev();
        let (mut leader, mut heard_by_leader, mut records) = lead(&chain);
        let _ = heard(&mut heard_by_leader);
        let target = leader.block(SEALED_BLOCKS - 2).expect("kept").clone();
        let abandoned_sealed: Vec<B256> =
            leader.blocks().filter(|b| b.header.number > target.header.number).map(|b| b.hash).collect();
        let abandoned_txs: Vec<B256> = leader
            .blocks()
            .filter(|b| b.header.number > target.header.number)
            .flat_map(|b| b.txs.iter().map(|t| t.hash))
            .chain(leader.open_block().txs.iter().map(|t| t.hash))
            .collect();
        records.push(Record::Rewind { number: target.header.number, hash: target.hash });
        let log_chain = tephra_batchlog::chain_of(records.clone()).expect("the rewind names a kept block");
        let abandoned: Vec<B256> = log_chain.abandoned.iter().map(|(_, raw)| keccak256(raw)).collect();
        assert_eq!(abandoned, abandoned_txs, "every abandoned transaction, in order");
        let replayed =
            replay::replay(&chain, log_chain.records, None, None, HISTORY_BLOCKS, None).expect("the chain replays");
        assert!(replayed.open.is_none());
        let params = child_params(&chain, &target);
        leader.rewind(replayed.state, replayed.blocks, params.clone());

        // As a restart from the records up to the target's signature sees it.
        let upto =
            records.iter().position(|r| matches!(r, Record::Signed { number, .. } if *number == target.header.number));
        let kept = records[..=upto.expect("the target was signed")].to_vec();
        let replayed = replay::replay(&chain, kept, None, None, HISTORY_BLOCKS, None).expect("the log replays");
        let open = OpenBlock { params, txs: Vec::new(), gas_used: 0, op: None };
        let (outlets, _) = outlets(&chain, &open.params);
        let pool = Pool::new(PoolLimits::default());
        let mut restarted = ChainView::restore(replayed.state, pool, replayed.blocks, HISTORY_BLOCKS, open, outlets);
        assert_same(&mut leader, &mut restarted, "rewound");
        for hash in &abandoned_txs {
            assert!(leader.tx(hash).is_none(), "an abandoned transaction is not served");
        }
        match heard_by_leader.try_recv() {
            Ok(Event::Rewound { number, abandoned, open_txs }) => {
                assert_eq!(number, target.header.number);
                assert_eq!(abandoned.iter().map(|b| b.hash).collect::<Vec<_>>(), abandoned_sealed);
                assert_eq!(open_txs.len(), 3, "the open block's one mini-block");
            }
            other => panic!("subscribers hear the rewind, not {other:?}"),
        }
    }

    #[test]
    fn the_index_holds_exactly_the_kept_and_open_transactions() {
        let chain = ChainSpec::dev();
        let (view, _, _) = lead(&chain);
        assert_eq!(view.blocks().count(), HISTORY_BLOCKS);
        let kept: usize = view.blocks().map(|b| b.txs.len()).sum::<usize>() + view.open_block().txs.len();
        assert_eq!(view.tx_index.len(), kept, "forgotten blocks' transactions leave the index");
        for block in view.blocks() {
            for (index, tx) in block.txs.iter().enumerate() {
                assert_eq!(view.tx(&tx.hash).map(|(n, i, _)| (n, i)), Some((block.header.number, index)));
            }
        }
        let number = view.open_block().params.number;
        for (index, tx) in view.open_block().txs.iter().enumerate() {
            assert_eq!(view.tx(&tx.hash).map(|(n, i, _)| (n, i)), Some((number, index)));
        }
        assert_eq!(view.newest_signed(), SEALED_BLOCKS);
        assert_eq!(view.unsigned_blocks().count(), 0);
    }
}
