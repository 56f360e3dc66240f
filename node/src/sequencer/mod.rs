//! The sequencer: one thread that owns block production. It admits verified
//! transactions to the pool, executes mini-blocks into the open block, makes
//! each durable in the batch log (and, in a sync pair, on a standby) before
//! preconfirming it, seals a block every `block_time_s` (when the wall clock
//! reaches the open block's whole-second timestamp), and hands sealed blocks
//! to the signer thread.
//!
//! ```text
//!  submissions ─> admit ─> pool ─> mini_block: cut, execute, append ───────┐ (view write lock; old values kept)
//!                                                                         ├ fsync, replicate (no lock: reads see the old values)
//!                                  preconfirm: index, events, answers <───┘ (view write lock; old values dropped)
//!                                  state diff ─> hasher thread: state trie, hashed ahead every 2 ms
//!  at the block's timestamp ─> seal: roots (the hasher's), log + fsync ─> replicate ─> publish, open the next ─> signing pipeline
//!  holds (disk reserve, signer, replication) ─> Health: /ready, refusals
//! ```
//!
//! The stages, one file each: `admit`, `mini_block`, `seal` (and the block
//! signatures it collects), `hasher` (the state trie's thread), `holds`, and
//! `rewind` (an OP Stack chain's unsafe blocks rebuilt after an L1 reorg
//! below their origins).

mod admit;
mod hasher;
mod holds;
mod mini_block;
mod rewind;
mod seal;

use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{
        Arc,
        mpsc::{Receiver, RecvTimeoutError},
    },
    time::{Duration, Instant},
};

use alloy_primitives::{Address, map::B256Map};
use tephra_batchlog::{LogError, LogWriter};
use tephra_exec::{BlockBuilder, ParallelExecutor, VerifiedTx, parallel::ShardStats};
use tephra_hsm::SigningPipeline;
use tokio::sync::oneshot;

pub use self::seal::{block_choice, unix_ms, write_snapshot};
use crate::{
    delegation::Delegation,
    shared::{Shared, Submission, SubmitOutcome},
};

/// Submissions taken from the queue per loop turn, so that sealing is never
/// starved by a flood.
const ADMIT_BATCH_MAX: usize = 4096;
/// How soon a seal held back by the signer is tried again.
const SEAL_RETRY: Duration = Duration::from_millis(5);
/// The longest the loop sleeps with nothing pending (signatures may arrive).
const IDLE_WAKE: Duration = Duration::from_millis(20);
/// How soon an idle sequencer looks for a signature it waits for: a block's
/// signature is published only once the sequencer has logged it.
const SIGNATURE_POLL: Duration = Duration::from_millis(1);
/// How often, at most, the sequencer hashes the open block's transactions
/// and receipts ahead of the seal, idle or not (the state trie is the
/// hasher thread's). Each pass rehashes the tries' upper nodes again, so
/// passes after every mini-block would cost throughput under load; every
/// 10 ms leaves the seal at most that much to hash.
const HASH_AHEAD_INTERVAL: Duration = Duration::from_millis(10);

/// Why the sequencer stopped short of a step.
#[derive(Debug, thiserror::Error)]
pub enum SequencerError {
    #[error(transparent)]
    Log(#[from] LogError),
    /// Leadership (or the node) ended before a standby held what was
    /// logged: nothing of it may be told to anyone.
    #[error("stopped before a standby held the records")]
    Stopped,
    #[error("the next block does not open: {0}")]
    NextBlock(#[from] tephra_exec::OpenBlockError),
    #[error("the next OP Stack block does not open: {0}")]
    OpBlock(String),
    #[error("the chain does not rewind after an L1 reorg: {0}")]
    Rewind(String),
}

pub use hasher::HASHER_QUEUE_DIFFS_MAX;
use hasher::StateHasher;

struct Waiter {
    reply: Option<oneshot::Sender<SubmitOutcome>>,
    received: Instant,
}

/// What a leader of a pair adds to the sequencer.
#[derive(Debug)]
pub struct SequencerHa {
    pub feed: Arc<tephra_ha::Feed>,
    pub lease: Arc<tephra_ha::LeaseState>,
    pub mode: tephra_ha::ReplicationMode,
    pub sync_ack_timeout: Duration,
}

/// What the sequencer runs with, besides the shared state.
pub struct SequencerParts {
    pub submissions: Receiver<Submission>,
    pub log: LogWriter,
    pub signing: SigningPipeline,
    pub delegation: Delegation,
    pub executor: ParallelExecutor,
    /// The open block (None: an OP Stack chain's waits for its L1 origin),
    /// and whether its Open record is in the log.
    pub builder: Option<BlockBuilder>,
    pub open_logged: bool,
    pub beneficiary: Address,
    pub snapshot_path: PathBuf,
    /// The leader's epoch (0 for a single node).
    pub epoch: u64,
    pub ha: Option<SequencerHa>,
    /// Where the state hasher runs (none: where the sequencer is started).
    pub hasher_cores: Vec<usize>,
}

/// The sequencer thread's state.
pub struct Sequencer {
    shared: Arc<Shared>,
    submissions: Receiver<Submission>,
    log: LogWriter,
    signing: SigningPipeline,
    delegation: Delegation,
    executor: ParallelExecutor,
    /// The state trie's thread; taken back into the view's state when the
    /// sequencer stops.
    hasher: Option<StateHasher>,
    /// The executor's counters as last exported to the metrics.
    exec_stats: ShardStats,
    /// The open block; taken while it is sealed, and absent while an OP
    /// Stack chain's next block has no L1 origin it may take.
    builder: Option<BlockBuilder>,
    /// Whether the open block's Open record is in the log.
    open_logged: bool,
    waiting: B256Map<Waiter>,
    /// When the wall clock reaches the open block's timestamp.
    block_deadline: Instant,
    beneficiary: Address,
    snapshot_path: PathBuf,
    batch: Vec<VerifiedTx>,
    /// The open block had no room for a transaction: nothing more is cut
    /// into it until it is sealed, at its timestamp as every block is.
    block_full: bool,
    started: Instant,
    /// The open block has transactions its tries have not taken in.
    unhashed: bool,
    hashed_ahead_at: Instant,
    /// The leader's epoch (0 for a single node): stamped on every block it
    /// seals and carried by every signature request.
    epoch: u64,
    ha: Option<SequencerHa>,
    /// Transactions of blocks abandoned by a rewind, sequenced again before
    /// the pool's, in their order.
    rebuild: VecDeque<VerifiedTx>,
    /// The mini-block being executed was cut from `rebuild`.
    cut_from_rebuild: bool,
    /// The L1 follower's reorg count the chain has followed.
    l1_reorgs_handled: u64,
}

impl Sequencer {
    /// The sequencer of the view's chain; its state trie goes to a hasher
    /// thread, which fails to start only if the OS refuses a thread.
    pub fn new(shared: Arc<Shared>, parts: SequencerParts) -> std::io::Result<Self> {
        let block_deadline =
            parts.builder.as_ref().map_or_else(Instant::now, |b| seal::seal_deadline(b.params().timestamp));
        let hasher = StateHasher::start(shared.view.write().expect("view lock").state_mut(), parts.hasher_cores)?;
        Ok(Self {
            shared,
            submissions: parts.submissions,
            log: parts.log,
            signing: parts.signing,
            delegation: parts.delegation,
            executor: parts.executor,
            hasher: Some(hasher),
            exec_stats: ShardStats::default(),
            builder: parts.builder,
            open_logged: parts.open_logged,
            waiting: B256Map::default(),
            block_deadline,
            beneficiary: parts.beneficiary,
            snapshot_path: parts.snapshot_path,
            batch: Vec::new(),
            block_full: false,
            started: Instant::now(),
            unhashed: false,
            hashed_ahead_at: Instant::now(),
            epoch: parts.epoch,
            ha: parts.ha,
            rebuild: VecDeque::new(),
            cut_from_rebuild: false,
            l1_reorgs_handled: 0,
        })
    }

    /// Runs until shutdown is requested, leadership ends or every submitter
    /// is gone; a log failure stops the node. The view's state gets its
    /// commitment back (a deposed leader follows as a standby).
    pub fn run(mut self) -> Result<(), LogError> {
        let result = self.run_turns();
        if let Some(hasher) = self.hasher.take() {
            hasher.stop(self.shared.view.write().expect("view lock").state_mut());
        }
        result
    }

    fn run_turns(&mut self) -> Result<(), LogError> {
        loop {
            match self.turn() {
                Ok(true) => {}
                Ok(false) | Err(SequencerError::Stopped) => return self.log.commit().map(|_| ()),
                Err(SequencerError::Log(error)) => return Err(self.fail(error)),
                Err(
                    error @ (SequencerError::NextBlock(_) | SequencerError::OpBlock(_) | SequencerError::Rewind(_)),
                ) => {
                    tracing::error!(%error, "stopping");
                    self.shared.health.log_failed(error.to_string());
                    return self.log.commit().map(|_| ());
                }
            }
        }
    }

    /// One turn of the loop: wait for submissions (or a deadline), admit
    /// them, log signatures, cut a mini-block and seal when due. False when
    /// the loop ends.
    fn turn(&mut self) -> Result<bool, SequencerError> {
        self.shared.beat();
        if self.shared.health.shutting_down() {
            return Ok(false);
        }
        if !self.still_leading() {
            return Ok(false);
        }
        if self.unhashed && self.hashed_ahead_at.elapsed() >= HASH_AHEAD_INTERVAL {
            self.hash_ahead();
        }
        let Some(arrivals) = self.receive() else { return Ok(false) };
        if !arrivals.is_empty() {
            self.admit(arrivals);
        }
        self.collect_signatures()?;
        self.follow_l1_reorgs()?;
        // An OP Stack block waiting for its L1 origin: nothing to cut or seal.
        if self.builder.is_none() && !self.open_next()? {
            return Ok(true);
        }
        // A full block takes nothing more until it is sealed.
        let now_ms = self.pool_ms();
        let due = !self.block_full
            && (!self.rebuild.is_empty() || self.shared.view.read().expect("view lock").pool().mini_block_due(now_ms));
        let seal_due = Instant::now() >= self.block_deadline;
        if (due || seal_due) && (!self.log_has_room() || !self.standby_connected()) {
            return Ok(true);
        }
        if due {
            self.run_mini_block()?;
        }
        if seal_due && self.signer_allows_sealing() {
            self.seal()?;
        }
        Ok(true)
    }

    /// Waits for submissions until the next thing due; `None` when every
    /// submitter is gone.
    fn receive(&mut self) -> Option<Vec<Submission>> {
        let pending = self.shared.view.read().expect("view lock").pool().pending_count() > 0;
        let tick = Duration::from_millis(self.shared.config.pool.mini_block_wait_ms.max(1));
        // Past the deadline but held back by the signer: look again shortly.
        let until_seal = match self.block_deadline.saturating_duration_since(Instant::now()) {
            wait if wait.is_zero() => SEAL_RETRY,
            wait => wait,
        };
        let idle_wake = if self.signing.unsigned() > 0 { SIGNATURE_POLL } else { IDLE_WAKE };
        let timeout = until_seal.min(if pending { tick } else { idle_wake });
        let mut arrivals = Vec::new();
        match self.submissions.recv_timeout(timeout) {
            Ok(first) => arrivals.push(first),
            Err(RecvTimeoutError::Timeout) => return Some(arrivals),
            Err(RecvTimeoutError::Disconnected) => return None,
        }
        while arrivals.len() < ADMIT_BATCH_MAX {
            match self.submissions.try_recv() {
                Ok(next) => arrivals.push(next),
                Err(_) => break,
            }
        }
        Some(arrivals)
    }

    /// Folds the open block's transactions and receipts into their tries
    /// every `HASH_AHEAD_INTERVAL`, so that the seal, which holds up every
    /// preconfirmation, hashes only the rest. Roots are functions of the
    /// transactions alone: hashing early changes no block.
    fn hash_ahead(&mut self) {
        if let Some(builder) = &mut self.builder {
            builder.hash_ahead();
        }
        self.unhashed = false;
        self.hashed_ahead_at = Instant::now();
    }

    /// Makes what was appended durable (a group commit: fdatasync), into
    /// the fsync histogram; a mini-block's and a seal's.
    fn commit_timed(&mut self) -> Result<(), SequencerError> {
        let synced = self.log.commit()?;
        self.shared.metrics.fsync_time_us.observe(synced.as_micros() as f64);
        Ok(())
    }

    fn export_exec_stats(&mut self) {
        let (now, before) = (self.executor.stats(), self.exec_stats);
        let metrics = &self.shared.metrics;
        metrics.exec_speculated_txs.inc_by(now.speculated_txs - before.speculated_txs);
        metrics.exec_reexecuted_txs.inc_by(now.reexecuted_txs - before.reexecuted_txs);
        metrics.exec_sequential_txs.inc_by(now.sequential_txs - before.sequential_txs);
        self.exec_stats = now;
    }

    /// The batch log failed: stop answering as ready at once (the state may
    /// hold a mini-block that is not durable) and stop the node.
    fn fail(&self, error: LogError) -> LogError {
        tracing::error!(%error, "batch log write failed: stopping");
        self.shared.health.log_failed(format!("batch log write failed: {error}"));
        error
    }

    /// The pool's clock: monotonic milliseconds, so that a wall clock stepped
    /// back cannot stall mini-block cuts or queued-transaction expiry.
    fn pool_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn builder(&self) -> &BlockBuilder {
        self.builder.as_ref().expect("a block is always open outside seal")
    }

    fn hasher(&self) -> &StateHasher {
        self.hasher.as_ref().expect("the hasher runs until the sequencer stops")
    }
}
