//! The sequencer: one thread that owns block production. It admits verified
//! transactions to the pool, executes mini-blocks into the open block, makes
//! each durable in the batch log before preconfirming it, seals a block every
//! `block_time_ms`, and hands sealed blocks to the signer thread.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{Receiver, RecvTimeoutError, SyncSender},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use alloy_primitives::{Address, B256, Bytes, keccak256, map::B256Map};
use tephra_batchlog::{LogError, LogWriter, ReceiptRecord, Record};
use tephra_exec::{
    BlockBuilder, BlockChoice, BlockParams, ChainSpec, ParallelExecutor, StateDb, TxOutcome, VerifiedTx, Verifier,
    parallel::ShardStats,
    snapshot::{self, SnapshotMeta},
};
use tephra_hsm::{MerkleTree, SignerHealth, SigningPipeline};
use tephra_types::{Reject, RejectCode};
use tokio::sync::{broadcast, oneshot};

use crate::{
    config::Config,
    delegation::Delegation,
    metrics::{Metrics, ReasonLabel},
    replay::{open_record, stored_txs},
    view::{OpenBlock, PreconfRef, SignedMiniBlock, StoredBlock, StoredTx, TxLocation, View},
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
/// How often, at most, the sequencer hashes the open block's changes ahead
/// of the seal, idle or not. Each pass rehashes the trie's upper nodes again,
/// so passes after every mini-block would cost throughput under load; every
/// 10 ms leaves the seal at most that much to hash (25 passes a 250 ms block).
/// Hashing ahead only when idle left a loaded node's seal the whole block:
/// passes under load measured 3-5% more closed-loop throughput and a lower
/// preconfirmation p99 at 8,000 tx/s.
const HASH_AHEAD_INTERVAL: Duration = Duration::from_millis(10);
/// How long a sync leader waits for an acknowledgement before it looks at
/// its lease (and the watchdog's heartbeat) again.
const SYNC_WAIT_SLICE: Duration = Duration::from_millis(20);

/// A durable preconfirmation: where the transaction sits and how it ended.
#[derive(Clone, Debug)]
pub struct Preconf {
    pub hash: B256,
    pub block_number: u64,
    pub index: usize,
    pub success: bool,
    pub gas_used: u64,
    /// Its hot-key signature, proof and certificate (none without a
    /// certified hot key).
    pub signed: Option<PreconfRef>,
}

/// How far a submission got: admitted to the pool, or durably preconfirmed.
#[derive(Clone, Debug)]
pub enum SubmitStatus {
    Pooled,
    Preconfirmed(Preconf),
}

pub type SubmitOutcome = Result<SubmitStatus, Reject>;

/// A verified transaction on its way to the sequencer.
#[derive(Debug)]
pub struct Submission {
    pub tx: VerifiedTx,
    pub received: Instant,
    pub reply: Option<oneshot::Sender<SubmitOutcome>>,
    /// Answer at preconfirmation rather than at admission.
    pub wait_for_preconf: bool,
}

/// What subscribers hear.
#[derive(Clone, Debug)]
pub enum Event {
    /// Transactions just preconfirmed into the open block `block_number`.
    Preconfirmed { block_number: u64, txs: Arc<Vec<StoredTx>> },
    /// A block sealed.
    Sealed(Arc<StoredBlock>),
}

/// Everything the RPC side shares with the sequencer.
#[derive(Debug)]
pub struct Shared {
    pub chain: ChainSpec,
    pub config: Config,
    pub view: RwLock<View>,
    /// The rules for the open block; RPC handlers verify with it.
    pub verifier: RwLock<Verifier>,
    pub metrics: Arc<Metrics>,
    pub events: broadcast::Sender<Event>,
    pub submissions: SyncSender<Submission>,
    pub signer_address: Address,
    pub ready: Arc<AtomicBool>,
    /// Why the node is not ready although running (the signer failing, the
    /// batch log out of room).
    pub not_ready: Arc<Mutex<Option<String>>>,
    /// The batch log is out of room: new transactions are refused.
    pub log_paused: AtomicBool,
    pub shutdown: AtomicBool,
    /// Turns of the sequencer's loop, which wakes at least every IDLE_WAKE:
    /// the service watchdog is fed only while it moves.
    pub heartbeat: AtomicU64,
    /// Whether this node takes transactions: always a single node; in a pair
    /// only the leader.
    pub leading: AtomicBool,
    /// A standby's answer to transactions: where the leader is.
    pub leader_hint: Mutex<String>,
    /// Why this node stopped leading; the process exits with it, to rejoin
    /// as a standby.
    pub deposed: Mutex<Option<String>>,
}

impl Shared {
    /// Queues a verified transaction. The reply comes at admission, or with
    /// `wait_for_preconf` once the transaction is durably preconfirmed.
    pub fn submit(
        &self,
        tx: VerifiedTx,
        reply: Option<oneshot::Sender<SubmitOutcome>>,
        wait_for_preconf: bool,
    ) -> Result<(), Reject> {
        self.metrics.tx_received.inc();
        let hash = tx.hash;
        if !self.leading.load(Ordering::Acquire) {
            let hint = self.leader_hint.lock().expect("leader hint lock").clone();
            let reject =
                Reject::new(RejectCode::NotLeader, format!("{hash} not taken: this node is a standby; {hint}"));
            self.reject_metric(&reject);
            return Err(reject);
        }
        if self.log_paused.load(Ordering::Acquire) {
            let reason = self.not_ready.lock().expect("readiness lock").clone().unwrap_or_default();
            let reject = Reject::new(RejectCode::NotReady, format!("{hash} not taken: {reason}"));
            self.reject_metric(&reject);
            return Err(reject);
        }
        let submission = Submission { tx, received: Instant::now(), reply, wait_for_preconf };
        self.submissions.try_send(submission).map_err(|_| {
            self.metrics.tx_rejected.get_or_create(&ReasonLabel { code: RejectCode::Busy.as_u16() }).inc();
            Reject::new(RejectCode::Busy, format!("submission queue full, {hash} not taken"))
        })
    }

    pub fn reject_metric(&self, reject: &Reject) {
        self.metrics.tx_rejected.get_or_create(&ReasonLabel { code: reject.code.as_u16() }).inc();
    }
}

struct Waiter {
    reply: Option<oneshot::Sender<SubmitOutcome>>,
    received: Instant,
}

/// The sequencer thread's state.
pub struct Sequencer {
    shared: Arc<Shared>,
    submissions: Receiver<Submission>,
    log: LogWriter,
    signing: SigningPipeline,
    delegation: Delegation,
    executor: ParallelExecutor,
    /// The executor's counters as last exported to the metrics.
    exec_stats: ShardStats,
    /// The open block; taken only while it is sealed.
    builder: Option<BlockBuilder>,
    /// Whether the open block's Open record is in the log.
    open_logged: bool,
    waiting: B256Map<Waiter>,
    block_deadline: Instant,
    beneficiary: Address,
    snapshot_path: PathBuf,
    batch: Vec<VerifiedTx>,
    /// The open block had no room for a transaction: nothing more is cut
    /// into it, it is sealed as soon as the signer allows.
    block_full: bool,
    started: Instant,
    /// Why sealing is held: the signer failing.
    signer_blocked: Option<String>,
    /// Why nothing new is made durable: the log's disk below its reserve.
    disk_blocked: Option<String>,
    /// The open block changed state since the state trie last took it in.
    unhashed: bool,
    hashed_ahead_at: Instant,
    /// The leader's epoch (0 for a single node): stamped on every block it
    /// seals and carried by every signature request.
    epoch: u64,
    ha: Option<SequencerHa>,
    /// Why nothing is preconfirmed: sync replication without a standby's ack.
    replication_blocked: Option<String>,
}

/// What a leader of a pair adds to the sequencer.
#[derive(Debug)]
pub struct SequencerHa {
    pub feed: Arc<tephra_ha::Feed>,
    pub lease: Arc<tephra_ha::LeaseState>,
    pub mode: tephra_ha::ReplicationMode,
    pub sync_ack_timeout: Duration,
}

impl Sequencer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        shared: Arc<Shared>,
        submissions: Receiver<Submission>,
        log: LogWriter,
        signing: SigningPipeline,
        delegation: Delegation,
        executor: ParallelExecutor,
        builder: BlockBuilder,
        open_logged: bool,
        beneficiary: Address,
        snapshot_path: PathBuf,
        epoch: u64,
        ha: Option<SequencerHa>,
    ) -> Self {
        let block_time = Duration::from_millis(shared.config.block.block_time_ms);
        Self {
            shared,
            submissions,
            log,
            signing,
            delegation,
            executor,
            exec_stats: ShardStats::default(),
            builder: Some(builder),
            open_logged,
            waiting: B256Map::default(),
            block_deadline: Instant::now() + block_time,
            beneficiary,
            snapshot_path,
            batch: Vec::new(),
            block_full: false,
            started: Instant::now(),
            signer_blocked: None,
            disk_blocked: None,
            unhashed: false,
            hashed_ahead_at: Instant::now(),
            epoch,
            ha,
            replication_blocked: None,
        }
    }

    fn export_exec_stats(&mut self) {
        let (now, before) = (self.executor.stats(), self.exec_stats);
        let metrics = &self.shared.metrics;
        metrics.exec_speculated_txs.inc_by(now.speculated_txs - before.speculated_txs);
        metrics.exec_reexecuted_txs.inc_by(now.reexecuted_txs - before.reexecuted_txs);
        metrics.exec_sequential_txs.inc_by(now.sequential_txs - before.sequential_txs);
        self.exec_stats = now;
    }

    /// Runs until shutdown is requested or every submitter is gone.
    pub fn run(mut self) -> Result<(), LogError> {
        let tick = Duration::from_millis(self.shared.config.pool.mini_block_wait_ms.max(1));
        loop {
            self.shared.heartbeat.fetch_add(1, Ordering::Relaxed);
            if self.shared.shutdown.load(Ordering::Acquire) {
                return self.log.commit().map(|_| ());
            }
            if let Some(ha) = &self.ha
                && !ha.lease.leading()
            {
                let reason = ha.lease.reason().unwrap_or_else(|| "leadership lost".into());
                self.stop_leading(reason);
                return self.log.commit().map(|_| ());
            }
            let mut pending = self.shared.view.read().expect("view lock").pool.pending_count() > 0;
            if self.unhashed && self.hashed_ahead_at.elapsed() >= HASH_AHEAD_INTERVAL {
                self.hash_ahead();
                pending = self.shared.view.read().expect("view lock").pool.pending_count() > 0;
            }
            let now = Instant::now();
            // Past the deadline but held back by the signer: look again shortly.
            let until_seal = match self.block_deadline.saturating_duration_since(now) {
                wait if wait.is_zero() => SEAL_RETRY,
                wait => wait,
            };
            let idle_wake = if self.signing.unsigned() > 0 { SIGNATURE_POLL } else { IDLE_WAKE };
            let timeout = until_seal.min(if pending { tick } else { idle_wake });
            let mut arrivals = Vec::new();
            match self.submissions.recv_timeout(timeout) {
                Ok(first) => {
                    arrivals.push(first);
                    while arrivals.len() < ADMIT_BATCH_MAX {
                        match self.submissions.try_recv() {
                            Ok(next) => arrivals.push(next),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return self.log.commit().map(|_| ()),
            }
            if !arrivals.is_empty() {
                self.admit(arrivals);
            }
            self.collect_signatures().map_err(|e| self.fail(e))?;
            let now_ms = self.pool_ms();
            // A full block takes nothing more until it is sealed.
            let due = !self.block_full && self.shared.view.read().expect("view lock").pool.mini_block_due(now_ms);
            let seal_due = Instant::now() >= self.block_deadline;
            if (due || seal_due) && (!self.log_has_room() || !self.standby_connected()) {
                continue;
            }
            if due {
                self.run_mini_block().map_err(|e| self.fail(e))?;
            }
            if seal_due && self.signer_allows_sealing() {
                self.seal().map_err(|e| self.fail(e))?;
            }
        }
    }

    /// Folds what the open block has changed so far into the state trie, and
    /// its transactions and receipts into theirs, every
    /// `HASH_AHEAD_INTERVAL`, so that the seal, which holds up every
    /// preconfirmation, hashes only the rest. Roots are functions of the
    /// state and the transactions alone: hashing early changes no block.
    fn hash_ahead(&mut self) {
        self.shared.view.write().expect("view lock").state.state_root();
        if let Some(builder) = &mut self.builder {
            builder.hash_ahead();
        }
        self.unhashed = false;
        self.hashed_ahead_at = Instant::now();
    }

    fn admit(&mut self, arrivals: Vec<Submission>) {
        let now_ms = self.pool_ms();
        let shared = self.shared.clone();
        let mut view = shared.view.write().expect("view lock");
        let view = &mut *view;
        for Submission { tx, received, mut reply, wait_for_preconf } in arrivals {
            let hash = tx.hash;
            let state_nonce = view.state.nonce(&tx.sender);
            match view.pool.insert(tx, state_nonce, now_ms) {
                Ok(admitted) => {
                    self.shared.metrics.tx_accepted.inc();
                    for (gone, code) in
                        [(admitted.replaced, RejectCode::Replaced), (admitted.evicted, RejectCode::Evicted)]
                    {
                        if let Some(gone) = gone {
                            self.answer(&gone.hash, Err(Reject::new(code, format!("{} left the pool", gone.hash))));
                        }
                    }
                    if !wait_for_preconf && let Some(reply) = reply.take() {
                        let _ = reply.send(Ok(SubmitStatus::Pooled));
                    }
                    self.waiting.insert(hash, Waiter { reply, received });
                }
                Err(reject) => {
                    self.shared.reject_metric(&reject);
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(reject));
                    }
                }
            }
        }
        self.answer_stale(&mut view.pool);
        view.pool.expire(now_ms, |tx| {
            if let Some(waiter) = self.waiting.remove(&tx.hash)
                && let Some(reply) = waiter.reply
            {
                let _ = reply.send(Err(Reject::new(RejectCode::Expired, format!("{} expired", tx.hash))));
            }
        });
        self.shared.metrics.pool_size.set(i64::try_from(view.pool.len()).unwrap_or(i64::MAX));
    }

    /// Fails closed: no new block is sealed while the signer is failing or
    /// `unsigned_blocks_max` blocks already wait for it.
    fn signer_allows_sealing(&mut self) -> bool {
        let health = self.signing.health();
        let blocked = match &health {
            SignerHealth::Ok => None,
            SignerHealth::Backlogged { .. } => return false,
            SignerHealth::Failed(reason) => Some(reason.clone()),
        };
        if self.signer_blocked != blocked {
            match &blocked {
                Some(reason) => tracing::error!(reason, "signer failing: sealing stopped"),
                None => tracing::info!("signer answering again: sealing resumed"),
            }
            self.signer_blocked = blocked;
            self.publish_readiness();
        }
        health == SignerHealth::Ok
    }

    /// Whether the log's file system keeps its reserve, checked before
    /// anything new is made durable. Below it nothing is cut or sealed and new
    /// transactions are refused, so that no write meets a full disk with a
    /// mini-block executed but not durable; it resumes when space returns.
    fn log_has_room(&mut self) -> bool {
        let reserve = self.shared.config.log.disk_free_min_bytes;
        let blocked = match self.log.free_bytes() {
            Ok(free) => {
                self.shared.metrics.log_disk_free_bytes.set(i64::try_from(free).unwrap_or(i64::MAX));
                (free < reserve).then(|| {
                    format!("batch log disk full: {free} bytes free, below log.disk_free_min_bytes = {reserve}")
                })
            }
            Err(error) => Some(format!("batch log disk free space unknown: {error}")),
        };
        if self.disk_blocked != blocked {
            match &blocked {
                Some(reason) => tracing::error!(reason, "preconfirming stopped until space returns"),
                None => tracing::info!("batch log disk has room again: preconfirming resumed"),
            }
            self.shared.log_paused.store(blocked.is_some(), Ordering::Release);
            self.disk_blocked = blocked;
            self.publish_readiness();
        }
        self.disk_blocked.is_none()
    }

    /// /ready's reason: every cause that holds the node back, or none.
    fn publish_readiness(&self) {
        let reasons: Vec<&str> = [&self.disk_blocked, &self.signer_blocked, &self.replication_blocked]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        *self.shared.not_ready.lock().expect("readiness lock") = (!reasons.is_empty()).then(|| reasons.join("; "));
    }

    /// Answers the transactions whose sender's nonce moved past them.
    fn answer_stale(&mut self, pool: &mut tephra_exec::pool::Pool) {
        let stale: Vec<B256> = pool.drain_stale().map(|tx| tx.hash).collect();
        for hash in stale {
            let reject = Reject::new(RejectCode::NonceTooLow, "the account's nonce moved past it");
            self.shared.reject_metric(&reject);
            self.answer(&hash, Err(reject));
        }
    }

    fn answer(&mut self, hash: &B256, outcome: SubmitOutcome) {
        if let Some(waiter) = self.waiting.remove(hash) {
            if outcome.is_ok() {
                let latency = waiter.received.elapsed().as_micros() as f64;
                self.shared.metrics.preconf_latency_us.observe(latency);
            }
            if let Some(reply) = waiter.reply {
                let _ = reply.send(outcome);
            }
        }
    }

    /// Leadership ended: take nothing more and stop; the process exits and
    /// comes back as a standby.
    fn stop_leading(&self, reason: String) {
        self.shared.leading.store(false, Ordering::Release);
        *self.shared.not_ready.lock().expect("readiness lock") = Some(format!("not the leader: {reason}"));
        *self.shared.deposed.lock().expect("deposed lock") = Some(reason);
        self.shared.ready.store(false, Ordering::Release);
        self.shared.shutdown.store(true, Ordering::Release);
    }

    /// Sync replication without a connected standby: nothing is cut or
    /// sealed (the pool fills and refuses), so that the view's lock is never
    /// held waiting for an acknowledgement that cannot come; it resumes when
    /// a standby follows again.
    fn standby_connected(&mut self) -> bool {
        let Some(ha) = &self.ha else { return true };
        if ha.mode == tephra_ha::ReplicationMode::Async {
            return true;
        }
        let connected = ha.feed.standby_connected();
        let blocked = (!connected).then(|| "sync replication: no standby follows, nothing is preconfirmed".to_string());
        if self.replication_blocked.is_some() != blocked.is_some() {
            match &blocked {
                Some(reason) => tracing::warn!(reason, "preconfirming held until a standby follows"),
                None => tracing::info!("a standby follows: preconfirming resumed"),
            }
            self.replication_blocked = blocked;
            self.publish_readiness();
        }
        connected
    }

    /// Sync replication: holds until a standby has every record appended so
    /// far durably. False if leadership (or the node) ended first: then
    /// nothing of it may be told to anyone.
    fn replicated(&mut self) -> bool {
        let Some(ha) = &self.ha else { return true };
        if ha.mode == tephra_ha::ReplicationMode::Async {
            return true;
        }
        let (feed, lease, timeout) = (ha.feed.clone(), ha.lease.clone(), ha.sync_ack_timeout);
        let count = self.log.records();
        let started = Instant::now();
        loop {
            if feed.wait_replicated(count, SYNC_WAIT_SLICE) {
                self.shared.metrics.ha_sync_wait_us.observe(started.elapsed().as_micros() as f64);
                if self.replication_blocked.take().is_some() {
                    tracing::info!("a standby acknowledges again: preconfirming resumed");
                    self.publish_readiness();
                }
                return true;
            }
            self.shared.heartbeat.fetch_add(1, Ordering::Relaxed);
            if !lease.leading() || self.shared.shutdown.load(Ordering::Acquire) {
                return false;
            }
            if self.replication_blocked.is_none() && started.elapsed() >= timeout {
                let reason = format!(
                    "sync replication: no standby has acknowledged for {} ms, nothing is preconfirmed",
                    timeout.as_millis()
                );
                tracing::warn!(reason);
                self.replication_blocked = Some(reason);
                self.publish_readiness();
            }
        }
    }

    /// The batch log failed: stop answering as ready at once (the state may
    /// hold a mini-block that is not durable) and stop the node.
    fn fail(&self, error: LogError) -> LogError {
        tracing::error!(%error, "batch log write failed: stopping");
        *self.shared.not_ready.lock().expect("readiness lock") = Some(format!("batch log write failed: {error}"));
        self.shared.ready.store(false, Ordering::Release);
        self.shared.shutdown.store(true, Ordering::Release);
        error
    }

    /// The pool's clock: monotonic milliseconds, so that a wall clock stepped
    /// back cannot stall mini-block cuts or queued-transaction expiry.
    fn pool_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn builder(&mut self) -> &mut BlockBuilder {
        self.builder.as_mut().expect("a block is always open outside seal")
    }

    /// Cuts a mini-block, executes it, makes it durable, then preconfirms it.
    fn run_mini_block(&mut self) -> Result<(), LogError> {
        let mut answers: Vec<(B256, SubmitOutcome)> = Vec::new();
        let mut block_full = false;
        let now_ms = self.pool_ms();
        let preconfirmed;
        let shared = self.shared.clone();
        {
            let mut guard = shared.view.write().expect("view lock");
            let view = &mut *guard;
            self.batch.clear();
            view.pool.cut_mini_block(&mut self.batch);
            if self.batch.is_empty() {
                return Ok(());
            }
            let number = self.builder().params().number;
            let first = self.builder().transactions().len();
            let mut deferred = Vec::new();
            let mut settle = Vec::new();
            let batch = std::mem::take(&mut self.batch);
            let builder = self.builder.as_mut().expect("a block is always open outside seal");
            builder.execute(&mut self.executor, &mut view.state, batch, |index, outcome| match outcome {
                TxOutcome::Included(executed) => {
                    let index = index.expect("included transactions have an index");
                    settle.push((executed.tx.sender, false));
                    answers.push((
                        executed.tx.hash,
                        Ok(SubmitStatus::Preconfirmed(Preconf {
                            hash: executed.tx.hash,
                            block_number: number,
                            index,
                            success: executed.receipt.status.coerce_status(),
                            gas_used: executed.gas_used,
                            signed: None,
                        })),
                    ));
                }
                TxOutcome::Dropped { tx, reject } => {
                    settle.push((tx.sender, true));
                    answers.push((tx.hash, Err(reject.clone())));
                }
                TxOutcome::BlockFull(tx) => {
                    settle.push((tx.sender, true));
                    // Rare: the block is full. Back to the pool, so a copy.
                    deferred.push(tx.clone());
                }
            });
            self.export_exec_stats();
            for (sender, dropped) in settle {
                let nonce = view.state.nonce(&sender);
                view.pool.settle(&sender, nonce, dropped);
            }
            for tx in view.pool.drain_stale() {
                answers.push((tx.hash, Err(Reject::new(RejectCode::NonceTooLow, "the account's nonce moved past it"))));
            }
            for tx in deferred {
                // Back to the pool for the next block.
                block_full = true;
                let (hash, nonce) = (tx.hash, view.state.nonce(&tx.sender));
                if let Err(reject) = view.pool.insert(tx, nonce, now_ms) {
                    answers.push((hash, Err(reject)));
                }
            }
            let builder = self.builder.as_ref().expect("a block is always open outside seal");
            let included = &builder.transactions()[first..];
            if !included.is_empty() {
                if !self.open_logged {
                    self.log.append(&Record::Open(open_record(builder.params())))?;
                    self.open_logged = true;
                }
                let txs: Vec<(Address, Bytes)> = included.iter().map(|t| (t.tx.sender, t.tx.encoded.clone())).collect();
                self.log.append(&Record::Batch { number, txs })?;
                let synced = self.log.commit()?;
                self.shared.metrics.fsync_time_us.observe(synced.as_micros() as f64);
            }
            if !included.is_empty() && !self.replicated() {
                return Ok(());
            }
            let builder = self.builder.as_ref().expect("a block is always open outside seal");
            let included = &builder.transactions()[first..];
            // Durable: now visible.
            let first_log_index = view.open.txs.last().map_or(0, |t| t.first_log_index + t.receipt.logs.len() as u64);
            let mut stored = stored_txs(included, builder.params().base_fee_per_gas, first_log_index);
            sign_preconfirmations(&mut self.delegation, shared.chain.chain_id(), number, first, &mut stored);
            for (_, outcome) in &mut answers {
                if let Ok(SubmitStatus::Preconfirmed(p)) = outcome {
                    p.signed = p.index.checked_sub(first).and_then(|at| stored.get(at)?.preconf.clone());
                }
            }
            for (offset, tx) in stored.iter().enumerate() {
                view.tx_index.insert(tx.hash, TxLocation { block_number: number, index: first + offset });
            }
            view.open.txs.extend(stored.iter().cloned());
            view.open.gas_used = builder.gas_used();
            self.shared.metrics.pool_size.set(i64::try_from(view.pool.len()).unwrap_or(i64::MAX));
            preconfirmed = (number, stored);
        }
        self.shared.metrics.tx_preconfirmed.inc_by(preconfirmed.1.len() as u64);
        for (hash, outcome) in answers {
            if let Err(reject) = &outcome {
                self.shared.reject_metric(reject);
            }
            self.answer(&hash, outcome);
        }
        if !preconfirmed.1.is_empty() {
            self.unhashed = true;
            let _ = self
                .shared
                .events
                .send(Event::Preconfirmed { block_number: preconfirmed.0, txs: Arc::new(preconfirmed.1) });
        }
        if block_full {
            self.block_full = true;
            self.block_deadline = Instant::now();
        }
        Ok(())
    }

    /// Seals the open block, logs it, publishes it and opens the next one.
    fn seal(&mut self) -> Result<(), LogError> {
        let started = Instant::now();
        let block_time = Duration::from_millis(self.shared.config.block.block_time_ms);
        let sealed_block;
        let shared = self.shared.clone();
        {
            let mut guard = shared.view.write().expect("view lock");
            let view = &mut *guard;
            let builder = self.builder.take().expect("a block is always open outside seal");
            if !self.open_logged {
                self.log.append(&Record::Open(open_record(builder.params())))?;
            }
            let sealed = builder.seal(&mut view.state);
            let txs = std::mem::take(&mut view.open.txs);
            let receipts = txs.iter().map(|tx| ReceiptRecord::from(&tx.receipt)).collect();
            let header_rlp = Bytes::from(alloy_rlp::encode(&sealed.header));
            self.log.append(&Record::Sealed { number: sealed.header.number, header_rlp, receipts })?;
            let synced = self.log.commit()?;
            self.shared.metrics.fsync_time_us.observe(synced.as_micros() as f64);
            // A standby holds the block before it is published or signed, so
            // that no successor ever signs another block at its height.
            if !self.replicated() {
                return Ok(());
            }
            let block = StoredBlock { header: sealed.header, hash: sealed.hash, txs, signature: None };
            view.push_block(block.clone());
            sealed_block = Arc::new(block);
            if sealed_block.header.number.is_multiple_of(self.shared.config.block.snapshot_interval_blocks) {
                // Before the next block's system calls touch the state.
                self.write_snapshot(&view.state, &sealed_block);
            }

            let params =
                BlockParams::child_of(&self.shared.chain, &sealed_block.header, self.next_choice(&sealed_block))
                    .expect("a child of a sealed block opens");
            self.builder = Some(BlockBuilder::open(params.clone(), &mut view.state));
            self.open_logged = false;
            self.block_full = false;
            // Opening ran the block's system calls.
            self.unhashed = true;
            view.open = OpenBlock { params: params.clone(), txs: Vec::new(), gas_used: 0 };
            self.shared.verifier.write().expect("verifier lock").set_block(
                params.spec,
                params.gas_limit,
                params.base_fee_per_gas,
            );
        }
        let number = sealed_block.header.number;
        self.shared.metrics.seal_time_us.observe(started.elapsed().as_micros() as f64);
        self.shared.metrics.blocks_sealed.inc();
        self.shared.metrics.head_number.set(i64::try_from(number).unwrap_or(i64::MAX));
        // Room is certain: sealing waited for it.
        let queued = self.signing.submit(number, sealed_block.hash, self.epoch);
        debug_assert!(queued.is_ok(), "sealing checks the signing backlog first");
        self.shared.metrics.signing_lag_blocks.set(i64::try_from(self.signing.unsigned()).unwrap_or(i64::MAX));
        let _ = self.shared.events.send(Event::Sealed(sealed_block.clone()));
        self.block_deadline += block_time;
        if self.block_deadline < Instant::now() {
            self.block_deadline = Instant::now() + block_time;
        }
        Ok(())
    }

    fn next_choice(&self, parent: &StoredBlock) -> BlockChoice {
        block_choice(parent, &self.shared.config, self.beneficiary, self.epoch)
    }

    fn write_snapshot(&self, state: &StateDb, block: &StoredBlock) {
        write_snapshot(state, block, &self.snapshot_path);
    }

    fn collect_signatures(&mut self) -> Result<(), LogError> {
        let signed = self.signing.collect();
        if signed.is_empty() {
            return Ok(());
        }
        for block in &signed {
            self.log.append(&Record::Signed {
                number: block.number,
                hash: block.hash,
                signature: block.signature.0,
            })?;
        }
        // Durable before any client can read a signature.
        self.log.commit()?;
        let shared = self.shared.clone();
        let mut view = shared.view.write().expect("view lock");
        for block in signed {
            if let Some(stored) = view.blocks.iter_mut().rev().find(|b| b.header.number == block.number) {
                stored.signature = Some(block.signature);
            }
            let metrics = &self.shared.metrics;
            metrics.block_sign_time_us.observe(block.sign_time.as_micros() as f64);
            metrics.block_signed_latency_us.observe(block.queued.elapsed().as_micros() as f64);
        }
        self.shared.metrics.signing_lag_blocks.set(i64::try_from(self.signing.unsigned()).unwrap_or(i64::MAX));
        Ok(())
    }
}

/// One hot-key signature over a mini-block's transaction-hash root; each
/// transaction keeps its place for its own proof.
fn sign_preconfirmations(
    delegation: &mut Delegation,
    chain_id: u64,
    number: u64,
    first: usize,
    stored: &mut [StoredTx],
) {
    if stored.is_empty() {
        return;
    }
    let Some((hot, certificate)) = delegation.key_for(number) else {
        tracing::warn!(block = number, "no certified preconfirmation key: preconfirmations go unsigned");
        return;
    };
    let tree = MerkleTree::new(&stored.iter().map(|t| t.hash).collect::<Vec<B256>>());
    let first_index = u32::try_from(first).expect("a block holds fewer than 2^32 transactions");
    let batch = hot.sign_batch(chain_id, number, first_index, &tree);
    let mini_block = Arc::new(SignedMiniBlock { batch, certificate: *certificate, tree });
    for (position, tx) in stored.iter_mut().enumerate() {
        tx.preconf = Some(PreconfRef { mini_block: mini_block.clone(), position });
    }
}

/// The choices for the child of `parent`, sealed by the leader of `epoch`.
pub fn block_choice(parent: &StoredBlock, config: &Config, beneficiary: Address, epoch: u64) -> BlockChoice {
    BlockChoice {
        // Seconds never run backwards, and may repeat: blocks come faster than one a second.
        timestamp: (unix_ms() / 1000).max(parent.header.timestamp),
        beneficiary,
        // Deterministic and public: replay needs it, and it is not a source of randomness.
        prevrandao: keccak256(parent.hash),
        extra_data: crate::replay::stamped_extra_data(epoch, config.block.extra_data.as_bytes()),
    }
}

/// Saves the state after `block` to `path`; a failure costs only replay time.
pub fn write_snapshot(state: &StateDb, block: &StoredBlock, path: &std::path::Path) {
    let meta =
        SnapshotMeta { block_number: block.header.number, block_hash: block.hash, state_root: block.header.state_root };
    if let Err(error) = snapshot::save(state, &meta, path) {
        tracing::warn!(%error, "snapshot failed; restart will replay more of the log");
    }
}

pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
