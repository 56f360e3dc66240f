//! exec shards: a batch executed on N cores with exactly the outcomes and
//! state of `SequentialExecutor`.
//!
//! Optimistic execution with in-order validation. Each window of the batch is
//! routed to shards by sender (a sender's nonce chain stays on one shard);
//! every shard executes its transactions in order against the window's
//! starting state plus its own writes, recording each value it reads. If no
//! shard read a key that another shard changed earlier in the window (and
//! none read the beneficiary, whose fees are credited at commit), every
//! speculation holds and their writes are disjoint: the shards commit them at
//! once, each into its own partitions of the state. Otherwise the window
//! commits in sequence order on one core: a speculation whose reads still
//! hold on the committed state commits unchanged; any other transaction is
//! executed again on that state, as the sequential executor would. A
//! `ConflictMonitor` runs windows sequentially while speculation keeps
//! failing, so a block of dependent transactions costs little more than
//! sequential execution.

mod shard;

use std::collections::VecDeque;

use alloy_primitives::{U256, map::AddressMap};
use revm::DatabaseCommit;

use crate::{
    evm,
    executor::{BlockGas, Executor, SequentialExecutor, TxOutcome},
    params::BlockParams,
    state::StateDb,
    verify::VerifiedTx,
};
use shard::{ShardWork, Speculation};

/// CPUs a Linux affinity mask (`cpu_set_t`) can name.
const CPU_SET_SIZE: usize = 1024;
/// Most shards an executor runs.
pub const SHARDS_MAX: usize = 64;
/// Fewer transactions than this in a window are executed sequentially: the
/// shards' start and join would cost more than they save.
pub const PARALLEL_TXS_MIN: usize = 8;
/// The largest window, and the first one after conflicts (a cheap probe).
pub const WINDOW_TXS_MAX: usize = 1024;
pub const WINDOW_TXS_PROBE: usize = 32;
/// Most contracts a shard keeps private copies of the code of; past it the
/// copies start again.
pub const SHARD_CODE_CACHE_MAX: usize = 4096;
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

    /// `shards` adaptive shards on the cores this thread may run on (see
    /// `pinned_on`).
    pub fn pinned(shards: usize) -> Self {
        let cores: Vec<usize> =
            core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|core| core.id).collect();
        Self::pinned_on(shards, &cores)
    }

    /// `shards` adaptive shards, worker shard `k` pinned to `cores[k % len]`
    /// (shard 0 runs wherever its caller does, usually `cores[0]`).
    pub fn pinned_on(shards: usize, cores: &[usize]) -> Self {
        let worker_cores =
            if cores.is_empty() { Vec::new() } else { (1..shards).map(|k| cores[k % cores.len()]).collect() };
        Self { shards, worker_cores, adaptive: true }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardConfigError {
    #[error("exec shards must be between 1 and {SHARDS_MAX}, not {0}")]
    ShardCount(usize),
    #[error("{cores} worker cores given for {workers} worker shards")]
    CoreCount { cores: usize, workers: usize },
    #[error("core {0} is beyond the {CPU_SET_SIZE} CPUs an affinity mask can name")]
    NoSuchCore(usize),
    #[error("a worker shard could not be pinned to core {core} (it may run on {allowed:?})")]
    NotPinned { core: usize, allowed: Vec<usize> },
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
    /// Speculated windows committed by the shards in parallel (no shard read
    /// what another changed), and those committed in order on one core.
    pub independent_windows: u64,
    pub ordered_windows: u64,
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

/// The parallel executor: `shards` revm instances, worker shards on pinned
/// threads.
#[derive(Debug)]
pub struct ParallelExecutor {
    workers: Option<rayon::ThreadPool>,
    monitor: ConflictMonitor,
    stats: ShardStats,
    work: Vec<ShardWork>,
    /// Per window, by position: each transaction's shard and its index
    /// there; and each sender's shard.
    order: Vec<(usize, usize)>,
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
        if let Some(&core) = config.worker_cores.iter().find(|&&core| core >= CPU_SET_SIZE) {
            return Err(ShardConfigError::NoSuchCore(core));
        }
        let pool = (workers > 0)
            .then(|| {
                let cores = config.worker_cores.clone();
                rayon::ThreadPoolBuilder::new()
                    .num_threads(workers)
                    .thread_name(|i| format!("tephra-exec-{}", i + 1))
                    .start_handler(move |i| {
                        if let Some(&id) = cores.get(i) {
                            // Checked below, once every worker has started.
                            core_affinity::set_for_current(core_affinity::CoreId { id });
                        }
                    })
                    .build()
                    .map_err(|error| ShardConfigError::Threads(error.to_string()))
            })
            .transpose()?;
        if let (Some(pool), false) = (&pool, config.worker_cores.is_empty()) {
            let placed: Vec<(usize, Vec<usize>)> = pool.broadcast(|context| {
                let allowed = core_affinity::get_core_ids().unwrap_or_default();
                (context.index(), allowed.into_iter().map(|core| core.id).collect())
            });
            for (worker, allowed) in placed {
                let core = config.worker_cores[worker];
                if allowed != [core] {
                    return Err(ShardConfigError::NotPinned { core, allowed });
                }
            }
        }
        Ok(Self {
            workers: pool,
            monitor: ConflictMonitor::new(config.adaptive),
            stats: ShardStats::default(),
            work: (0..config.shards).map(|_| ShardWork::default()).collect(),
            order: Vec::new(),
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
        self.order.clear();
        for work in &mut self.work {
            work.clear_positions();
        }
        for (position, tx) in txs.iter().take(count).enumerate() {
            let work = &self.work;
            let shard = *self.shard_of_sender.entry(tx.sender).or_insert_with(|| {
                (0..work.len()).min_by_key(|&shard| (work[shard].positions.len(), shard)).unwrap_or(0)
            });
            self.order.push((shard, self.work[shard].positions.len()));
            self.work[shard].positions.push(position);
        }
    }

    /// Runs `job` for every shard's work, shard 0 on this thread and the
    /// others on the workers, and returns when all are done.
    fn on_all_shards<T: Send>(workers: Option<&rayon::ThreadPool>, mut items: Vec<T>, job: impl Fn(T) + Sync) {
        let Some(workers) = workers else {
            items.into_iter().for_each(job);
            return;
        };
        let job = &job;
        let first = items.remove(0);
        workers.in_place_scope(|scope| {
            for item in items {
                scope.spawn(move |_| job(item));
            }
            job(first);
        });
    }

    /// Speculates the first `count` transactions on all shards, then commits
    /// them. Returns how many had to be executed again.
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
        Self::on_all_shards(self.workers.as_ref(), self.work.iter_mut().collect(), |work| {
            work.speculate(base, block, pending);
        });
        if self.commit_independent(state, block, gas, txs, outcomes) {
            self.stats.independent_windows += 1;
            return 0;
        }
        self.stats.ordered_windows += 1;
        self.commit_in_order(state, block, gas, txs, outcomes)
    }

    /// The window's speculations in sequence order.
    fn in_order(&mut self) -> impl Iterator<Item = &mut Speculation> + '_ {
        let mut speculations: Vec<_> = self.work.iter_mut().map(|work| work.speculations.iter_mut()).collect();
        self.order.iter().map(move |&(shard, _)| speculations[shard].next().expect("one per routed transaction"))
    }

    /// The common case: no shard read what another changed, nothing read the
    /// beneficiary, and everything fits in the block. Then every speculation
    /// holds, their writes are disjoint, and the shards commit them in
    /// parallel, each into its own partitions of the state. Returns false,
    /// committing nothing, when the window is not such a case.
    fn commit_independent(
        &mut self,
        state: &mut StateDb,
        block: &BlockParams,
        gas: &mut BlockGas,
        txs: &mut VecDeque<VerifiedTx>,
        outcomes: &mut Vec<TxOutcome>,
    ) -> bool {
        let gas_used = self.order.iter().zip(txs.iter()).map(|(&(shard, index), tx)| {
            let speculation = &self.work[shard].speculations[index];
            let result = speculation.result.as_ref().and_then(|result| result.as_ref().ok());
            (tx, result.map_or(0, |result| result.gas().tx_gas_used()))
        });
        if !gas.admits_all(gas_used) || !self.work.iter().all(|work| work.independent_of(&self.work)) {
            return false;
        }
        let changes = || self.work.iter().flat_map(|work| &work.speculations).flat_map(|s| &s.changes);
        for (_, change) in changes() {
            state.store_code(change);
        }
        let groups = state.partition_groups(self.work.len());
        Self::on_all_shards(self.workers.as_ref(), groups, |mut group| {
            for (address, change) in changes() {
                group.apply(*address, change);
            }
        });
        let fees = self.work.iter().flat_map(|work| &work.speculations).filter_map(|s| s.fee);
        if let Some(fee) = fees.reduce(U256::saturating_add) {
            state.credit(block.beneficiary, fee);
        }
        let count = self.order.len();
        for (tx, speculation) in txs.drain(..count).zip(self.in_order()) {
            let admitted = gas.admits(&tx);
            debug_assert!(admitted, "checked by admits_all");
            outcomes.push(gas.outcome(tx, speculation.take_result()));
        }
        true
    }

    /// Commits the window in sequence order on this thread: a speculation
    /// whose reads still hold on the committed state commits its writes; any
    /// other transaction is executed again, as the sequential executor would.
    fn commit_in_order(
        &mut self,
        state: &mut StateDb,
        block: &BlockParams,
        gas: &mut BlockGas,
        txs: &mut VecDeque<VerifiedTx>,
        outcomes: &mut Vec<TxOutcome>,
    ) -> usize {
        let count = self.order.len();
        let mut vm = evm::state_evm(state, block);
        let mut reexecuted = 0;
        for (tx, speculation) in txs.drain(..count).zip(self.in_order()) {
            if !gas.admits(&tx) {
                outcomes.push(TxOutcome::BlockFull(tx));
                continue;
            }
            let committed: &mut StateDb = evm::db_of::<&mut StateDb, _>(&mut vm);
            let result = if speculation.reads.holds_on(committed) {
                committed.commit(core::mem::take(&mut speculation.changes));
                if let Some(fee) = speculation.fee {
                    committed.credit(block.beneficiary, fee);
                }
                speculation.take_result()
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
        // OP Stack blocks run sequentially: every OP transaction pays three
        // fee vaults besides the beneficiary, which speculation would take
        // for conflicts (docs/op-stack.md, "Left").
        if block.op_spec.is_some() {
            let mut vm = evm::state_evm(state, block);
            SequentialExecutor::run(&mut vm, &mut gas, txs, outcomes);
            self.stats.sequential_txs += outcomes.len() as u64;
            return;
        }
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
