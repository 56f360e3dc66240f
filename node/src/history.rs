//! The state history in the node: the one owner of the history store
//! (`tephra-history`), of the sealed blocks' changes not yet stored, and of
//! the writer thread (`tephra-history`) that stores and prunes them off the
//! sequencer's path. Reads of the state at an earlier block go through
//! `StateAt`, four layers deep, newest last:
//!
//! ```text
//! ChainView::seal ─> sealed(B, changes): pending, under the view's lock ─> writer (SCHED_IDLE): store.append, pop
//!   (one block in DURABLE_EVERY_BLOCKS fsync'd; a crash loses at most those, re-executed at the next start)
//! state at N (view read-locked): store snapshot (blocks ..=S) ─> pending (S+1..=head) ─> the open block's
//!   writes so far ─> the state now (durable): the first layer that wrote a key after N has its value
//! ```
//!
//! Invariants: pending holds every sealed block above the store's last,
//! oldest first, without gaps; a block leaves pending only once stored; a
//! truncation (rewind) and an append never interleave (`write_lock`).

use std::{
    cell::RefCell,
    collections::VecDeque,
    path::Path,
    sync::{Arc, Condvar, Mutex},
    thread::JoinHandle,
};

use alloy_primitives::{Address, B256, U256};
use revm::{DatabaseRef, bytecode::Bytecode, state::AccountInfo};
use tephra_exec::{AccountBefore, BlockChanges, StateDb};
use tephra_history::{HistoryError, HistoryReader, HistoryStore, Stored};

use crate::chain_view::ChainView;

/// At most this many blocks are pruned in one transaction.
pub const PRUNE_BLOCKS_PER_COMMIT_MAX: u64 = 1024;

/// One stored block in this many is committed durably (fsync'd); the rest
/// are not, so that the store does not contend with the batch log's group
/// commits on the disk. A crash loses at most these last blocks of the
/// store, which the next start re-executes from the log.
pub const DURABLE_EVERY_BLOCKS: u64 = 16;

/// Sealed blocks waiting for the store, at most (about an hour of 1 s
/// blocks). Past it the store is not keeping up (its disk failing or
/// full): the history starts again from the head, older blocks answering
/// "outside the history", rather than memory growing without end.
pub const PENDING_BLOCKS_MAX: usize = 4096;

/// A sealed block not stored yet: its number and its changes.
type PendingBlock = (u64, Arc<BlockChanges>);

/// The history's owner; see the module comment.
#[derive(Debug)]
pub struct History {
    store: HistoryStore,
    pending: Mutex<VecDeque<PendingBlock>>,
    /// Wakes the writer: something is pending, or it should stop.
    wake: Condvar,
    stopping: Mutex<bool>,
    /// Held across an append and its pop, and across a truncation.
    write_lock: Mutex<()>,
    /// Blocks after this number must leave the store before the next append
    /// (a rewind; 0: pending overflowed). Done by the writer, so that the
    /// sequencer never waits for it.
    truncate: Mutex<Option<u64>>,
    /// Blocks kept; 0: every block.
    blocks_max: u64,
}

impl History {
    /// Opens the store at `path`; one of another layout (an older tephra's)
    /// is removed, and the start's replay fills it again from the log.
    pub fn open(path: &Path, blocks_max: u64, cache_bytes: usize) -> Result<Self, HistoryError> {
        let store = match HistoryStore::open(path, cache_bytes) {
            Err(HistoryError::Format { found, .. }) => {
                tracing::warn!(path = %path.display(), found, "state history of another layout: rebuilding it from the log");
                std::fs::remove_file(path).map_err(|e| HistoryError::Io { path: path.into(), source: e })?;
                HistoryStore::open(path, cache_bytes)?
            }
            opened => opened?,
        };
        Ok(Self {
            store,
            pending: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
            stopping: Mutex::new(false),
            write_lock: Mutex::new(()),
            truncate: Mutex::new(None),
            blocks_max,
        })
    }

    /// The blocks stored (not those pending).
    pub fn stored(&self) -> Result<Option<Stored>, HistoryError> {
        self.store.stored()
    }

    /// Block `number`'s changes as stored, if it is.
    pub fn record(&self, number: u64) -> Result<Option<BlockChanges>, HistoryError> {
        self.store.record(number)
    }

    /// Stores blocks replayed at start, in order, at once.
    pub fn append_now(&self, number: u64, changes: &BlockChanges, durable: bool) -> Result<(), HistoryError> {
        let _writing = self.write_lock.lock().expect("history write lock");
        self.store.append(number, changes, durable)
    }

    /// Block `number` sealed with `changes`: pending until the writer stores
    /// it. Called under the view's write lock, so that reads see the block
    /// and its changes together.
    pub fn sealed(&self, number: u64, changes: BlockChanges) {
        let mut pending = self.pending.lock().expect("history pending lock");
        if pending.len() >= PENDING_BLOCKS_MAX {
            tracing::error!(number, "state history: the store fell {PENDING_BLOCKS_MAX} blocks behind; starting again");
            pending.clear();
            self.request_truncate(0);
        }
        pending.push_back((number, Arc::new(changes)));
        self.wake.notify_one();
    }

    /// Drops every block after `number`, pending or stored (the chain was
    /// rewound to `number`): pending at once, the store's by the writer
    /// before its next append. Until then the store is no layer of reads
    /// (it ends past the head: `window`).
    pub fn truncate_after(&self, number: u64) {
        self.pending.lock().expect("history pending lock").retain(|(n, _)| *n <= number);
        self.request_truncate(number);
        self.wake.notify_one();
    }

    fn request_truncate(&self, number: u64) {
        let mut request = self.truncate.lock().expect("history truncate lock");
        *request = Some(request.map_or(number, |earlier| earlier.min(number)));
    }

    /// `truncate_after`, done now (at start, before anything is sealed).
    pub fn truncate_now(&self, number: u64) -> Result<(), HistoryError> {
        let _writing = self.write_lock.lock().expect("history write lock");
        self.store.truncate_after(number).map(drop)
    }

    /// The first block whose state reads back, and whether the store is one
    /// of the layers: the blocks with changes kept must run without a gap
    /// up to the head (a store emptied after falling behind, or behind the
    /// pending blocks, is not used).
    pub(crate) fn window_of(stored: Option<Stored>, pending: &[PendingBlock], head: u64) -> (u64, bool) {
        let pending_first = pending.first().map(|(n, _)| *n);
        let covered_from = pending_first.unwrap_or(head + 1);
        match stored {
            Some(stored) if stored.last + 1 >= covered_from && stored.last <= head => {
                (stored.first.saturating_sub(1), true)
            }
            _ => (covered_from.saturating_sub(1).min(head), false),
        }
    }

    /// The store's snapshot and the pending blocks, taken together: the
    /// reader is begun while pending is held, so that a block the writer
    /// stores meanwhile is in one or the other (it pops only after storing).
    fn snapshot(&self) -> Result<(HistoryReader, Vec<PendingBlock>), HistoryError> {
        let pending = self.pending.lock().expect("history pending lock");
        let reader = self.store.reader()?;
        Ok((reader, pending.iter().cloned().collect()))
    }

    /// The earliest block whose state reads can be served now (the view
    /// read-locked).
    pub fn earliest(&self, view: &ChainView) -> Result<u64, HistoryError> {
        let (reader, pending) = self.snapshot()?;
        Ok(Self::window_of(reader.stored(), &pending, view.head().header.number).0)
    }

    /// The sealed blocks in `from..=to` that wrote `address` (its account or
    /// its storage), ascending, from the store and the pending blocks: the
    /// candidates of an address's history (ots_search*). The view must be
    /// read-locked.
    pub fn blocks_changing(&self, address: &Address, from: u64, to: u64) -> Result<Vec<u64>, HistoryError> {
        let (reader, pending) = self.snapshot()?;
        let mut blocks = reader.blocks_changing(address, from, to)?;
        blocks.extend(
            pending.iter().filter(|(n, changes)| (from..=to).contains(n) && changes.wrote(address)).map(|(n, _)| *n),
        );
        blocks.sort_unstable();
        blocks.dedup();
        Ok(blocks)
    }

    /// The state at block `at` (at most the view's head), read through the
    /// layers. The view must stay read-locked while it is used.
    pub fn state_at<'a>(&self, view: &'a ChainView, at: u64) -> Result<StateAt<'a>, HistoryWindowError> {
        let head = view.head().header.number;
        let (reader, pending) = self.snapshot().map_err(HistoryWindowError::Store)?;
        let (earliest, use_store) = Self::window_of(reader.stored(), &pending, head);
        if at < earliest || at > head {
            return Err(HistoryWindowError::Outside { at, earliest, head });
        }
        let reader = use_store.then_some(reader);
        Ok(StateAt { state: view.state(), view, reader, pending, at, failed: RefCell::new(None) })
    }

    /// The writer thread: stores pending blocks oldest first, then prunes
    /// below the window; stops when `stop` is called.
    pub fn spawn_writer(self: &Arc<Self>) -> std::io::Result<JoinHandle<()>> {
        let history = self.clone();
        std::thread::Builder::new().name("tephra-history".into()).spawn(move || history.write_until_stopped())
    }

    pub fn stop(&self) {
        *self.stopping.lock().expect("history stop lock") = true;
        self.wake.notify_all();
    }

    fn write_until_stopped(&self) {
        // SCHED_IDLE: the store takes the CPU the sequencer, verify and the
        // net tile leave, never theirs (its blocks wait in pending, where
        // reads see them).
        if let Err(error) = tephra_dataplane::topology::set_current_thread_idle_priority() {
            tracing::warn!(%error, "state history thread: SCHED_IDLE not set");
        }
        loop {
            match self.store_next() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(error) => {
                    // The store is derived data: the blocks stay pending (and
                    // are replayed at the next start); reads still see them.
                    tracing::error!(%error, "state history: a block could not be stored; retrying in 1 s");
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
            let stopping = self.stopping.lock().expect("history stop lock");
            if *stopping {
                return;
            }
            if self.pending.lock().expect("history pending lock").is_empty() {
                drop(self.wake.wait_timeout(stopping, std::time::Duration::from_millis(500)));
            }
        }
    }

    /// Stores the oldest pending block, or prunes; whether there was work.
    pub(crate) fn store_next(&self) -> Result<bool, HistoryError> {
        let _writing = self.write_lock.lock().expect("history write lock");
        let truncate = self.truncate.lock().expect("history truncate lock").take();
        if let Some(number) = truncate {
            self.store.truncate_after(number).inspect_err(|_| self.request_truncate(number))?;
        }
        let next = self.pending.lock().expect("history pending lock").front().cloned();
        let Some((number, changes)) = next else { return self.prune() };
        if self.store.stored()?.is_some_and(|stored| stored.last >= number) {
            // Stored already (replayed at start): only pop it.
        } else {
            self.store.append(number, &changes, number.is_multiple_of(DURABLE_EVERY_BLOCKS))?;
        }
        let mut pending = self.pending.lock().expect("history pending lock");
        if pending.front().is_some_and(|(n, _)| *n == number) {
            pending.pop_front();
        }
        Ok(true)
    }

    /// Prunes blocks below the window (`[history] blocks_max`), a bounded
    /// number at a time; whether any were.
    fn prune(&self) -> Result<bool, HistoryError> {
        let Some(stored) = self.store.stored()? else { return Ok(false) };
        if self.blocks_max == 0 || stored.last - stored.first < self.blocks_max {
            return Ok(false);
        }
        let below = stored.last + 1 - self.blocks_max;
        Ok(self.store.prune_below(below, PRUNE_BLOCKS_PER_COMMIT_MAX)? > 0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryWindowError {
    #[error(
        "state at block {at} is outside the state history: blocks {earliest}..={head} are kept ([history] blocks_max)"
    )]
    Outside { at: u64, earliest: u64, head: u64 },
    #[error(transparent)]
    Store(HistoryError),
}

/// The state at an earlier block; see the module comment. A store error
/// mid-read is kept (`failed`) and the read answers the current value: the
/// caller must check `failure` before trusting what it read.
pub struct StateAt<'a> {
    state: &'a StateDb,
    view: &'a ChainView,
    /// `None`: the store is not a layer (see `History::window`).
    reader: Option<HistoryReader>,
    pending: Vec<PendingBlock>,
    at: u64,
    failed: RefCell<Option<HistoryError>>,
}

impl std::fmt::Debug for StateAt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateAt").field("at", &self.at).finish_non_exhaustive()
    }
}

impl StateAt<'_> {
    /// The store error a read met, if any.
    pub fn failure(&self) -> Option<HistoryError> {
        self.failed.borrow_mut().take()
    }

    fn fail<T>(&self, result: Result<T, HistoryError>) -> Option<T> {
        result.map_err(|error| *self.failed.borrow_mut() = Some(error)).ok()
    }

    fn pending_after(&self) -> impl Iterator<Item = &BlockChanges> {
        self.pending.iter().filter(|(n, _)| *n > self.at).map(|(_, changes)| &**changes)
    }

    pub fn account(&self, address: &Address) -> Option<AccountBefore> {
        let stored = self.reader.as_ref().and_then(|r| self.fail(r.account_after(address, self.at))).flatten();
        stored
            .or_else(|| self.pending_after().find_map(|changes| changes.account(address)))
            .or_else(|| self.state.open_block_account_before(address))
            .unwrap_or_else(|| {
                let durable = self.state.durable();
                durable.basic_ref(*address).unwrap_or_else(|never| match never {}).map(|info| AccountBefore {
                    nonce: info.nonce,
                    balance: info.balance,
                    code_hash: info.code_hash,
                })
            })
    }

    pub fn storage(&self, address: &Address, slot: U256) -> U256 {
        let stored = self.reader.as_ref().and_then(|r| self.fail(r.slot_after(address, slot, self.at))).flatten();
        stored
            .or_else(|| self.pending_after().find_map(|changes| changes.slot(address, slot)))
            .or_else(|| self.state.open_block_slot_before(address, slot))
            .unwrap_or_else(|| self.state.durable().storage_at(address, slot))
    }

    pub fn code(&self, address: &Address) -> Bytecode {
        let hash = self.account(address).map(|a| a.code_hash).unwrap_or_default();
        self.state.code_by_hash_ref(hash).unwrap_or_else(|never| match never {})
    }
}

impl DatabaseRef for StateAt<'_> {
    type Error = core::convert::Infallible;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        Ok(self.account(&address).map(|a| AccountInfo {
            balance: a.balance,
            nonce: a.nonce,
            code_hash: a.code_hash,
            code: None,
            account_id: None,
        }))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        self.state.code_by_hash_ref(code_hash)
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        Ok(self.storage(&address, index))
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        // BLOCKHASH at block `at` sees the 256 blocks before it.
        let kept = number < self.at && self.at - number <= 256;
        Ok(kept.then(|| self.view.block(number).map(|b| b.hash)).flatten().unwrap_or_default())
    }
}

/// Why a long read of an earlier state stopped.
#[derive(Debug, thiserror::Error)]
pub enum LongReadError {
    #[error("the state history is off ([history] enabled)")]
    Off,
    #[error(transparent)]
    Window(#[from] HistoryWindowError),
    #[error("the state history could not be read: {0}")]
    Store(#[from] HistoryError),
    /// The chain was rewound below the block read (an OP Stack chain's L1
    /// reorged): what was read belongs to a block no longer in the chain.
    #[error("block {at} left the chain while it was read")]
    Rewound { at: u64 },
}

impl revm::database::DBErrorMarker for LongReadError {}

/// The state after block `at` for a long read (a trace): each read takes
/// the view's read lock on its own, so the sequencer waits for one read,
/// never for the whole trace. Each read sees block `at` as it was sealed
/// (`StateAt`); one that finds block `at` gone or replaced fails.
pub struct LongStateAt<'a> {
    view: &'a std::sync::RwLock<ChainView>,
    at: u64,
    hash: B256,
}

impl std::fmt::Debug for LongStateAt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LongStateAt").field("at", &self.at).field("hash", &self.hash).finish_non_exhaustive()
    }
}

impl<'a> LongStateAt<'a> {
    /// The state after block `at`, which must be the block `hash`.
    pub fn new(view: &'a std::sync::RwLock<ChainView>, at: u64, hash: B256) -> Self {
        Self { view, at, hash }
    }

    fn read<T>(&self, read: impl FnOnce(&StateAt<'_>) -> T) -> Result<T, LongReadError> {
        let view = self.view.read().expect("view lock");
        // A rewind past `at` leaves another block there, or none (then
        // `state_at` finds `at` above the head).
        if view.block(self.at).is_some_and(|block| block.hash != self.hash) {
            return Err(LongReadError::Rewound { at: self.at });
        }
        let state = view.history().ok_or(LongReadError::Off)?.state_at(&view, self.at)?;
        let value = read(&state);
        state.failure().map_or(Ok(value), |failure| Err(failure.into()))
    }
}

impl DatabaseRef for LongStateAt<'_> {
    type Error = LongReadError;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        self.read(|state| state.basic_ref(address).unwrap_or_else(|never| match never {}))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        // Code is kept by its hash: no block changes it.
        let view = self.view.read().expect("view lock");
        Ok(view.state().code_by_hash_ref(code_hash).unwrap_or_else(|never| match never {}))
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        self.read(|state| state.storage(&address, index))
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        // The EVM asks only for the 256 blocks before the one it executes.
        let view = self.view.read().expect("view lock");
        Ok(view.block(number).map(|block| block.hash).unwrap_or_default())
    }
}
