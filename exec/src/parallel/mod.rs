//! exec shards: a batch executed on N cores with exactly the outcomes and
//! state of `SequentialExecutor`.
//!
//! Optimistic execution with in-order validation. Each window of the batch is
//! routed to shards by sender (a sender's nonce chain stays on one shard);
//! every shard executes its transactions in order against the window's
//! starting state plus its own writes, recording each value it reads. The
//! window then commits in sequence order on one core: a transaction whose
//! reads still hold on the committed state commits its writes unchanged;
//! any other is executed again, on the committed state, as the sequential
//! executor would. A `ConflictMonitor` runs windows sequentially while
//! speculation keeps failing, so a block of dependent transactions costs
//! little more than sequential execution.

mod shard;

use std::collections::VecDeque;

use alloy_primitives::map::AddressMap;
use revm::DatabaseCommit;

use crate::{
    block::BlockParams,
    evm,
    executor::{BlockGas, Executor, SequentialExecutor, TxOutcome},
    state::StateDb,
    verify::VerifiedTx,
};
use shard::{Speculation, speculate_shard};

/// Most shards an executor runs.
pub const SHARDS_MAX: usize = 64;
/// Fewer transactions than this in a window are executed sequentially: the
/// shards' start and join would cost more than they save.
pub const PARALLEL_TXS_MIN: usize = 8;
/// The largest window, and the first one after conflicts (a cheap probe).
pub const WINDOW_TXS_MAX: usize = 1024;
pub const WINDOW_TXS_PROBE: usize = 32;
/// Above this share of re-executed transactions a window counts as conflicting.
pub const CONFLICT_PERCENT_MAX: usize = 25;
/// After a conflicting window, this many transactions run sequentially before
/// the next probe; the count doubles while probes keep conflicting.
pub const BACKOFF_TXS_MIN: usize = 256;
pub const BACKOFF_TXS_MAX: usize = 16_384;

/// How the shards are placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardConfig {
    /// Shards, 1 or more; 1 is the sequential executor. Shard 0 runs on the
    /// calling thread, shards 1.. on worker threads.
    pub shards: usize,
    /// The core each worker shard (1..shards) is pinned to; empty: not pinned.
    pub worker_cores: Vec<usize>,
    /// Run small windows, and windows while speculation keeps failing,
    /// sequentially. Off: speculate every window (to test or measure
    /// speculation itself).
    pub adaptive: bool,
}

impl ShardConfig {
    /// `shards` unpinned shards that fall back to sequential on conflicts.
    pub fn unpinned(shards: usize) -> Self {
        Self { shards, worker_cores: Vec::new(), adaptive: true }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardConfigError {
    #[error("exec shards must be between 1 and {SHARDS_MAX}, not {0}")]
    ShardCount(usize),
    #[error("{cores} worker cores given for {workers} worker shards")]
    CoreCount { cores: usize, workers: usize },
    #[error("core {core} does not exist on this machine (it has cores {available:?})")]
    NoSuchCore { core: usize, available: Vec<usize> },
    #[error("cannot start the shard threads: {0}")]
    Threads(String),
}

/// Counters since the executor was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Transactions executed speculatively in parallel windows.
    pub speculated_txs: u64,
    /// Of those, executed again at commit because their reads had changed.
    pub reexecuted_txs: u64,
    /// Transactions run sequentially because speculation kept failing (or the
    /// window was too small).
    pub sequential_txs: u64,
}

/// Decides, window by window, between speculating and running sequentially.
#[derive(Debug)]
struct ConflictMonitor {
    adaptive: bool,
    window_txs: usize,
    sequential_txs_left: usize,
    backoff_txs: usize,
}

impl ConflictMonitor {
    fn new(adaptive: bool) -> Self {
        Self { adaptive, window_txs: WINDOW_TXS_PROBE, sequential_txs_left: 0, backoff_txs: BACKOFF_TXS_MIN }
    }

    /// The next window: its size and whether to speculate.
    fn next_window(&self, remaining: usize) -> (usize, bool) {
        if self.sequential_txs_left > 0 {
            return (self.sequential_txs_left.min(remaining), false);
        }
        let size = self.window_txs.min(remaining);
        (size, !self.adaptive || size >= PARALLEL_TXS_MIN)
    }

    fn ran_sequentially(&mut self, txs: usize) {
        self.sequential_txs_left = self.sequential_txs_left.saturating_sub(txs);
    }

    fn speculated(&mut self, txs: usize, reexecuted: usize) {
        if self.adaptive && reexecuted * 100 > txs * CONFLICT_PERCENT_MAX {
            self.sequential_txs_left = self.backoff_txs;
            self.backoff_txs = (self.backoff_txs * 2).min(BACKOFF_TXS_MAX);
            self.window_txs = WINDOW_TXS_PROBE;
        } else {
            self.backoff_txs = BACKOFF_TXS_MIN;
            self.window_txs = (self.window_txs * 2).min(WINDOW_TXS_MAX);
        }
    }
}

/// One shard's share of a window.
#[derive(Debug, Default)]
struct ShardWork {
    /// Window positions of its transactions, in sequence order.
    indices: Vec<usize>,
    speculations: Vec<Speculation>,
}

/// The parallel executor: `shards` revm instances, worker shards on pinned
/// threads.
#[derive(Debug)]
pub struct ParallelExecutor {
    workers: Option<rayon::ThreadPool>,
    monitor: ConflictMonitor,
    stats: ShardStats,
    work: Vec<ShardWork>,
    /// Per window: each transaction's shard, and each sender's.
    shard_of_tx: Vec<usize>,
    shard_of_sender: AddressMap<usize>,
}

impl ParallelExecutor {
    pub fn new(config: &ShardConfig) -> Result<Self, ShardConfigError> {
        if config.shards == 0 || config.shards > SHARDS_MAX {
            return Err(ShardConfigError::ShardCount(config.shards));
        }
        let workers = config.shards - 1;
        if !config.worker_cores.is_empty() && config.worker_cores.len() != workers {
            return Err(ShardConfigError::CoreCount { cores: config.worker_cores.len(), workers });
        }
        let available: Vec<usize> =
            core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|core| core.id).collect();
        if let Some(&core) = config.worker_cores.iter().find(|core| !available.contains(core)) {
            return Err(ShardConfigError::NoSuchCore { core, available });
        }
        let pool = (workers > 0)
            .then(|| {
                let cores = config.worker_cores.clone();
                rayon::ThreadPoolBuilder::new()
                    .num_threads(workers)
                    .thread_name(|i| format!("tephra-exec-{}", i + 1))
                    .start_handler(move |i| {
                        if let Some(&id) = cores.get(i) {
                            // The core exists (checked above); pinning is best effort.
                            core_affinity::set_for_current(core_affinity::CoreId { id });
                        }
                    })
                    .build()
                    .map_err(|error| ShardConfigError::Threads(error.to_string()))
            })
            .transpose()?;
        Ok(Self {
            workers: pool,
            monitor: ConflictMonitor::new(config.adaptive),
            stats: ShardStats::default(),
            work: (0..config.shards).map(|_| ShardWork::default()).collect(),
            shard_of_tx: Vec::new(),
            shard_of_sender: AddressMap::default(),
        })
    }

    pub fn shards(&self) -> usize {
        self.work.len()
    }

    pub fn stats(&self) -> ShardStats {
        self.stats
    }

    /// Routes the first `count` transactions by sender: a new sender joins the
    /// shard with the fewest transactions so far, so shards stay balanced and
    /// each sender's transactions stay in order on one shard.
    fn route(&mut self, txs: &VecDeque<VerifiedTx>, count: usize) {
        self.shard_of_sender.clear();
        self.shard_of_tx.clear();
        for work in &mut self.work {
            work.indices.clear();
            work.speculations.clear();
        }
        for (index, tx) in txs.iter().take(count).enumerate() {
            let work = &self.work;
            let shard = *self.shard_of_sender.entry(tx.sender).or_insert_with(|| {
                (0..work.len()).min_by_key(|&shard| (work[shard].indices.len(), shard)).unwrap_or(0)
            });
            self.work[shard].indices.push(index);
            self.shard_of_tx.push(shard);
        }
    }

    /// Speculates the first `count` transactions on all shards, then commits
    /// them in order. Returns how many had to be executed again.
    fn speculate_and_commit(
        &mut self,
        state: &mut StateDb,
        block: &BlockParams,
        gas: &mut BlockGas,
        txs: &mut VecDeque<VerifiedTx>,
        count: usize,
        outcomes: &mut Vec<TxOutcome>,
    ) -> usize {
        self.route(txs, count);
        let base: &StateDb = state;
        let pending: &VecDeque<VerifiedTx> = txs;
        let (first, rest) = self.work.split_first_mut().expect("at least one shard");
        match &self.workers {
            Some(workers) => workers.in_place_scope(|scope| {
                for work in rest {
                    scope.spawn(move |_| speculate_shard(base, block, pending, &work.indices, &mut work.speculations));
                }
                speculate_shard(base, block, pending, &first.indices, &mut first.speculations);
            }),
            None => speculate_shard(base, block, pending, &first.indices, &mut first.speculations),
        }

        let mut speculations: Vec<_> = self.work.iter_mut().map(|work| work.speculations.drain(..)).collect();
        let mut vm = evm::state_evm(state, block);
        let mut reexecuted = 0;
        for &shard in &self.shard_of_tx {
            let tx = txs.pop_front().expect("routed transactions are pending");
            let speculation = speculations[shard].next().expect("one speculation per routed transaction");
            if !gas.admits(&tx) {
                outcomes.push(TxOutcome::BlockFull(tx));
                continue;
            }
            let committed: &mut StateDb = evm::db_of::<&mut StateDb>(&mut vm);
            let result = if speculation.reads.holds_on(committed) {
                committed.commit(speculation.changes);
                if let Some(fee) = speculation.fee {
                    committed.credit(block.beneficiary, fee);
                }
                speculation.result
            } else {
                reexecuted += 1;
                evm::transact_commit(&mut vm, &tx)
            };
            outcomes.push(gas.outcome(tx, result));
        }
        reexecuted
    }
}

impl Executor for ParallelExecutor {
    fn execute(
        &mut self,
        state: &mut StateDb,
        block: &BlockParams,
        block_gas_used: u64,
        txs: Vec<VerifiedTx>,
        outcomes: &mut Vec<TxOutcome>,
    ) {
        state.set_spec(block.spec);
        let mut gas = BlockGas::new(block, block_gas_used);
        let mut pending = VecDeque::from(txs);
        while !pending.is_empty() {
            let (count, speculate) = self.monitor.next_window(pending.len());
            if speculate && self.work.len() > 1 {
                let reexecuted = self.speculate_and_commit(state, block, &mut gas, &mut pending, count, outcomes);
                self.monitor.speculated(count, reexecuted);
                self.stats.speculated_txs += count as u64;
                self.stats.reexecuted_txs += reexecuted as u64;
            } else {
                let mut vm = evm::state_evm(state, block);
                SequentialExecutor::run(&mut vm, &mut gas, pending.drain(..count), outcomes);
                self.monitor.ran_sequentially(count);
                self.stats.sequential_txs += count as u64;
            }
        }
    }
}
