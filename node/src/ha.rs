//! High-availability glue: a node of a pair joins through etcd, follows the
//! leader's batch log into its own log and view (serving reads), and takes
//! over when the leader's lease lapses, if it was caught up.
//!
//! ```text
//!  start ── join: leader in etcd? ── yes ─> agree on the common prefix, truncate, follow
//!                                  └─ no ──> wait one lease TTL, campaign
//!  follow: Records -> append, fsync, ack, apply to the view  (leader gone: find the next, or campaign)
//!  lead:   Epoch record, stamp the open block, serve replication, run the sequencer
//!  deposed (lease lapsed, key gone, fence): stop, exit; the restart rejoins as a standby
//! ```

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use alloy_consensus::Header;
use serde::Serialize;
use tephra_batchlog::{DiskLog, FRAME_BYTES_MAX, FrameSink, LogWriter, Record};
use tephra_exec::BlockBuilder;
use tephra_ha::{
    Election, EpochStart, Feed, Follower, LeaderConfig, LeaderValue, Leadership, LogSource, Message, Secret,
    SignedRecord,
};
use tokio::runtime::Handle;

use crate::{
    boot::DataDir,
    config::{Config, HaConfig},
    error::NodeError,
    leadership::{LeadParts, OpenChain, next_block_params, open_sequencer},
    replay::{Followed, Replayer, follow_record},
    sequencer::{SequencerHa, write_snapshot},
    shared::Shared,
};

/// Threads of the leadership and replication runtime.
pub(crate) const HA_THREADS: usize = 1;

/// The leader's replication feed as the batch log's sink: the log tells it
/// every frame it appends and every commit (a newtype, as neither the trait
/// nor the feed is this crate's).
#[derive(Debug)]
struct FeedSink(Arc<Feed>);

impl FrameSink for FeedSink {
    fn append(&self, frame: Vec<u8>) {
        self.0.append(frame);
    }

    fn commit(&self) {
        self.0.commit();
    }
}

/// The batch log on disk as the replication's source of the frames older
/// than the feed's in-memory window.
#[derive(Debug)]
struct DiskSource(DiskLog);

impl LogSource for DiskSource {
    fn read_frames(&self, first: u64, end: u64, bytes_max: usize, out: &mut Vec<u8>) -> std::io::Result<u64> {
        self.0.read_frames(first, end, bytes_max, out)
    }
}

/// The epochs of a log's records: epoch 0 from the first, then one entry
/// per Epoch record, at its index.
pub fn epoch_table(records: &[Record]) -> Vec<EpochStart> {
    let mut table = vec![EpochStart { epoch: 0, start: 0 }];
    for (index, record) in records.iter().enumerate() {
        if let Record::Epoch { epoch } = record {
            table.push(EpochStart { epoch: *epoch, start: index as u64 });
        }
    }
    table
}

fn ha_error(context: &str) -> impl FnOnce(tephra_ha::EtcdError) -> NodeError + '_ {
    move |error| NodeError::Ha(format!("{context}: {error}"))
}

/// The guard's epoch fence, asked before every block signature: a
/// connected standby gets the block first (in async mode too, where sealing
/// does not wait for it, so that it can take over), then etcd records the
/// signed height if this node's epoch still holds the leader key.
#[derive(Debug)]
pub struct NodeFence {
    election: Election,
    runtime: Handle,
    /// This node's epoch while it leads.
    epoch: AtomicU64,
    /// The longest a signature waits for a connected standby.
    replication_wait: Duration,
    feed: OnceLock<Arc<Feed>>,
    metrics: OnceLock<Arc<crate::metrics::Metrics>>,
}

impl NodeFence {
    /// A fence over `election`, whose requests run on `runtime`; the asking
    /// thread must not be one of the runtime's.
    pub fn new(election: Election, runtime: Handle, replication_wait: Duration) -> Self {
        Self {
            election,
            runtime,
            epoch: AtomicU64::new(0),
            replication_wait,
            feed: OnceLock::new(),
            metrics: OnceLock::new(),
        }
    }
}

impl tephra_hsm::EpochFence for NodeFence {
    fn admit_block(&self, number: u64, leader_epoch: u64) -> Result<u64, tephra_hsm::FenceError> {
        if let Some(feed) = self.feed.get()
            && feed.standby_connected()
            && !feed.wait_replicated(feed.committed(), self.replication_wait)
        {
            // Signing alone: a standby that lacks this block will not lead.
            tracing::debug!(number, "signing before the standby holds the block");
        }
        let recorded = self.runtime.block_on(self.election.record_signed(leader_epoch, number));
        match recorded.map_err(|e| tephra_hsm::FenceError::Unreachable(e.to_string()))? {
            SignedRecord::Recorded => Ok(leader_epoch),
            SignedRecord::Deposed(leader) => {
                if let Some(metrics) = self.metrics.get() {
                    metrics.ha_fencing_refusals.inc();
                }
                match leader {
                    Some(leader) if leader.epoch > leader_epoch => Ok(leader.epoch),
                    Some(leader) => {
                        Err(tephra_hsm::FenceError::NotLeader { epoch: leader_epoch, key_epoch: leader.epoch })
                    }
                    None => Err(tephra_hsm::FenceError::NoLeader),
                }
            }
        }
    }
}

/// This node's status as `tephra ha status` shows it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeStatus {
    pub role: &'static str,
    pub epoch: u64,
    pub records: u64,
    pub head: u64,
    /// A standby: records behind the leader when last heard.
    pub lag_records: u64,
    /// A leader: each standby's records behind, and whether it is connected.
    pub standbys: std::collections::BTreeMap<String, (u64, bool)>,
    pub updated_unix_ms: u64,
}

/// A pair member's connection to etcd and its peers.
#[derive(Debug)]
pub struct Ha {
    pub election: Election,
    pub config: HaConfig,
    pub fence: Arc<NodeFence>,
    secret: Arc<Secret>,
    runtime: Handle,
    replication: Mutex<Option<std::net::TcpListener>>,
    /// What the leader key says while this node leads; the block key is
    /// filled in once the signer is open.
    value: Mutex<LeaderValue>,
    status: Mutex<NodeStatus>,
    /// Where the leader found at join takes transactions.
    joined_leader: Mutex<String>,
}

impl Ha {
    /// Connects to etcd, reads the pair's secret and binds the replication
    /// listener (so that a port in use fails the start, not a takeover).
    pub async fn connect(config: &Config, data: &DataDir) -> Result<Self, NodeError> {
        let ha = config.ha.clone();
        let secret = Secret::from_file(&data.0.join(&ha.peer_secret_file))?;
        // Leadership and replication get a runtime of their own: RPC
        // handlers waiting on the view's lock (held across execution, and
        // a seal's fsync) must never starve the keep-alives or the acks. It
        // lives as long as the process.
        let runtime: &'static tokio::runtime::Runtime = Box::leak(Box::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(HA_THREADS)
                .thread_name("tephra-ha")
                .enable_all()
                .build()
                .map_err(|e| NodeError::Ha(format!("runtime: {e}")))?,
        ));
        let runtime = runtime.handle().clone();
        let etcd = ha.etcd();
        let election = runtime
            .spawn(Election::connect(etcd))
            .await
            .map_err(|e| NodeError::Ha(e.to_string()))?
            .map_err(ha_error("connecting"))?;
        let listener = std::net::TcpListener::bind(ha.replication_listen)
            .map_err(|e| NodeError::Ha(format!("ha.replication_listen {}: {e}", ha.replication_listen)))?;
        let bound: SocketAddr = listener.local_addr().map_err(|e| NodeError::Ha(e.to_string()))?;
        let advertise = |configured: &str, fallback: String| {
            if configured.is_empty() { fallback } else { configured.to_string() }
        };
        let value = LeaderValue {
            node_id: ha.node_id.clone(),
            replication: advertise(&ha.replication_advertise, bound.to_string()),
            rpc: advertise(&ha.rpc_advertise, format!("http://{}", config.rpc.listen)),
            block_key: String::new(),
        };
        let fence =
            Arc::new(NodeFence::new(election.clone(), runtime.clone(), Duration::from_millis(ha.sync_ack_timeout_ms)));
        tracing::info!(node = ha.node_id, replication = value.replication, "high availability: etcd connected");
        Ok(Self {
            election,
            config: ha,
            fence,
            secret: Arc::new(secret),
            runtime,
            replication: Mutex::new(Some(listener)),
            value: Mutex::new(value),
            status: Mutex::new(NodeStatus { role: "standby", ..NodeStatus::default() }),
            joined_leader: Mutex::new(String::new()),
        })
    }

    /// The block key this node signs with; a leader with another is refused.
    pub fn set_block_key(&self, address: alloy_primitives::Address) {
        self.value.lock().expect("leader value lock").block_key = address.to_string();
    }

    fn leader_value(&self) -> LeaderValue {
        self.value.lock().expect("leader value lock").clone()
    }

    /// Refuses to follow a leader that signs with another block key: the
    /// chain would carry two signers.
    fn check_block_key(&self, leader: &tephra_ha::LeaderInfo) -> Result<(), NodeError> {
        let ours = self.value.lock().expect("leader value lock").block_key.clone();
        if !leader.value.block_key.eq_ignore_ascii_case(&ours) {
            return Err(NodeError::Ha(format!(
                "the leader {} signs with block key {}, this node with {ours}: a pair shares one block key \
                 (one network HSM, or the same key in each)",
                leader.value.node_id, leader.value.block_key
            )));
        }
        Ok(())
    }

    fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.config.lease_ttl_s)
    }

    /// Connects to the leader at `address` as a standby, on this module's
    /// runtime (its socket belongs to that runtime's reactor).
    fn connect_follower(
        &self,
        address: &str,
        count: u64,
        epochs: Vec<EpochStart>,
    ) -> impl std::future::Future<Output = Result<Follower, String>> + Send + 'static {
        let (secret, node_id, address) = (self.secret.clone(), self.config.node_id.clone(), address.to_string());
        let message_bytes_max = self.config.replication_message_bytes_max;
        let connecting = self.runtime.spawn(async move {
            Follower::connect(&address, &secret, &node_id, count, epochs, message_bytes_max, FRAME_BYTES_MAX)
                .await
                .map_err(|e| e.to_string())
        });
        async move { connecting.await.map_err(|e| e.to_string())? }
    }

    /// Before replay: finds the leader, agrees with it on the common prefix
    /// of the two logs and cuts this one to it (what a deposed leader wrote
    /// and nobody received). `None` when no other node leads.
    pub async fn join(&self, data: &DataDir, records: &mut Vec<Record>) -> Result<Option<Follower>, NodeError> {
        loop {
            let leader = match self.election.leader().await {
                Ok(leader) => leader,
                Err(error) => {
                    tracing::warn!(%error, "etcd unreachable; retrying");
                    tokio::time::sleep(self.lease_ttl() / 2).await;
                    continue;
                }
            };
            let Some(leader) = leader else { return Ok(None) };
            if leader.value.node_id == self.config.node_id {
                // Left by this node before a crash or restart: this process
                // does not hold that lease, so give the key up at once.
                tracing::warn!(epoch = leader.epoch, "this node's leader key from before the restart: resigning it");
                self.election.delete_leader(leader.epoch).await.map_err(ha_error("resigning"))?;
                continue;
            }
            self.check_block_key(&leader)?;
            let count = records.len() as u64;
            match self.connect_follower(&leader.value.replication, count, epoch_table(records)).await {
                Ok(follower) => {
                    if follower.common < count {
                        let removed = tephra_batchlog::truncate(&data.log(), follower.common)?;
                        records.truncate(usize::try_from(follower.common).expect("below records.len()"));
                        // The snapshot may be of a block that went.
                        let _ = std::fs::remove_file(data.snapshot());
                        tracing::warn!(
                            removed,
                            kept = follower.common,
                            leader = leader.value.node_id,
                            "batch log truncated to what the leader holds: records this node wrote and never replicated"
                        );
                    }
                    tracing::info!(leader = leader.value.node_id, epoch = leader.epoch, "following");
                    *self.joined_leader.lock().expect("leader hint lock") = leader_hint(&leader);
                    return Ok(Some(follower));
                }
                Err(error) => {
                    tracing::warn!(leader = leader.value.node_id, %error, "cannot follow the leader yet; retrying");
                    tokio::time::sleep(self.lease_ttl() / 4).await;
                }
            }
        }
    }

    /// Publishes this node's status to etcd every `ha.status_interval_ms`.
    pub async fn publish_status(self: Arc<Self>, shared: Arc<Shared>) {
        let mut ticks = tokio::time::interval(Duration::from_millis(self.config.status_interval_ms));
        loop {
            ticks.tick().await;
            let mut status = self.status.lock().expect("status lock").clone();
            // Never the view's lock: this runtime must not wait behind execution.
            status.head = u64::try_from(shared.metrics.head_number.get()).unwrap_or(0);
            status.updated_unix_ms = crate::sequencer::unix_ms();
            if let Some(feed) = self.fence.feed.get() {
                let committed = feed.committed();
                status.standbys = feed
                    .standbys()
                    .into_iter()
                    .map(|(id, s)| (id, (committed.saturating_sub(s.durable), s.connected)))
                    .collect();
                let slowest = status.standbys.values().map(|(lag, _)| *lag).max().unwrap_or(0);
                shared.metrics.ha_replication_lag_records.set(i64::try_from(slowest).unwrap_or(i64::MAX));
            }
            let json = serde_json::to_string(&status).expect("a status serializes");
            if let Err(error) = self.election.publish_status(&self.config.node_id, json).await {
                tracing::debug!(%error, "status not published");
            }
        }
    }

    /// Runs `future` on the leadership and replication runtime.
    pub fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, future: F) {
        self.runtime.spawn(future);
    }

    /// Runs `future` on the leadership and replication runtime from a thread outside it, for at
    /// most `wait`.
    fn block_on_timeout<F: std::future::Future>(&self, wait: Duration, future: F) -> Option<F::Output> {
        self.runtime.block_on(async { tokio::time::timeout(wait, future).await.ok() })
    }

    fn set_status(&self, update: impl FnOnce(&mut NodeStatus)) {
        update(&mut self.status.lock().expect("status lock"));
    }
}

/// A standby's answer to a transaction: where the leader takes it.
fn leader_hint(leader: &tephra_ha::LeaderInfo) -> String {
    format!("send it to the leader {} at {}", leader.value.node_id, leader.value.rpc)
}

/// Where the start's replay left the chain, for the role thread.
#[derive(Debug)]
pub struct Resume {
    pub builder: Option<BlockBuilder>,
    pub open_txs: Vec<crate::view::StoredTx>,
    pub head: Header,
    pub epoch: u64,
    pub epochs: Vec<EpochStart>,
}

/// The role thread: follows while another node leads, leads when elected.
pub struct Role {
    ha: Arc<Ha>,
    shared: Arc<Shared>,
    lead: LeadParts,
    log: LogWriter,
    resume: Resume,
    follower: Option<Follower>,
    /// Records behind the leader when last heard.
    lag: u64,
    /// Why this node last did not campaign, once said.
    held_back_for: Option<String>,
    campaign_not_before: Instant,
}

impl std::fmt::Debug for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Role").field("records", &self.log.records()).finish_non_exhaustive()
    }
}

impl Role {
    pub(crate) fn new(
        ha: Arc<Ha>,
        shared: Arc<Shared>,
        lead: LeadParts,
        log: LogWriter,
        resume: Resume,
        follower: Option<Follower>,
    ) -> Self {
        let _ = ha.fence.metrics.set(shared.metrics.clone());
        shared.health.set_leader_hint(ha.joined_leader.lock().expect("leader hint lock").clone());
        shared.metrics.ha_role.set(1);
        // With nobody to follow, wait one lease first: a leader that just
        // stepped down (and restarted) lets its caught-up standby win.
        let campaign_not_before = Instant::now() + if follower.is_none() { ha.lease_ttl() } else { Duration::ZERO };
        // Behind from the leader's first word: it may die before sending more.
        let lag = follower.as_ref().map_or(0, |f| f.leader_count.saturating_sub(log.records()));
        Self { ha, shared, lead, log, resume, follower, lag, held_back_for: None, campaign_not_before }
    }

    pub fn run(mut self) -> Result<(), NodeError> {
        let shared = self.shared.clone();
        let open = self.resume.builder.take().map(|builder| crate::replay::OpenReplay {
            builder,
            txs: std::mem::take(&mut self.resume.open_txs),
            // A pair runs Ethereum-mode chains only (node::start refuses OP with ha).
            op: None,
        });
        let mut replayer = Replayer::resume(&shared.chain, self.resume.head.clone(), self.resume.epoch, open);
        loop {
            if self.shared.health.shutting_down() {
                self.log.commit()?;
                return Ok(());
            }
            if let Some(mut follower) = self.follower.take() {
                self.follow(&mut follower, &mut replayer)?;
                tracing::warn!(leader = follower.leader_id, lag = self.lag, "the leader is gone");
                continue;
            }
            match self.ha.runtime.block_on(self.ha.election.leader()) {
                Ok(Some(leader)) if leader.value.node_id != self.ha.config.node_id => self.try_to_follow(&leader)?,
                Ok(Some(_)) => self.pause(),
                Ok(None) if Instant::now() < self.campaign_not_before => std::thread::sleep(Duration::from_millis(50)),
                Ok(None) if self.held_back(replayer.head_number()) => self.pause(),
                Ok(None) => match self.ha.runtime.block_on(self.ha.election.campaign(&self.ha.leader_value())) {
                    Ok(Some(leadership)) => return self.lead(leadership, replayer),
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(%error, "campaign failed");
                        self.pause();
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "etcd unreachable");
                    self.pause();
                }
            }
            self.shared.beat();
        }
    }

    /// Connects to `leader` as its standby, briefly (a leader that is
    /// paused but still in etcd accepts and never answers). A log holding
    /// records the leader lacks makes the process exit, to truncate them at
    /// its restart.
    fn try_to_follow(&mut self, leader: &tephra_ha::LeaderInfo) -> Result<(), NodeError> {
        self.ha.check_block_key(leader)?;
        self.shared.health.set_leader_hint(leader_hint(leader));
        let count = self.log.records();
        let attempt = self.ha.connect_follower(&leader.value.replication, count, self.resume.epochs.clone());
        let connected = self
            .ha
            .block_on_timeout(self.ha.lease_ttl() / 4, attempt)
            .unwrap_or_else(|| Err("the leader does not answer".into()));
        match connected {
            Ok(follower) if follower.common < count => {
                self.exit(format!(
                    "this log holds {} records the new leader {} does not: restarting to truncate them",
                    count - follower.common,
                    leader.value.node_id
                ));
            }
            Ok(follower) => {
                // Behind from the leader's first word: it may die before sending more.
                self.lag = follower.leader_count.saturating_sub(count);
                self.ha.set_status(|s| s.epoch = leader.epoch);
                self.shared.metrics.ha_epoch.set(i64::try_from(leader.epoch).unwrap_or(i64::MAX));
                self.follower = Some(follower);
            }
            Err(error) => {
                tracing::debug!(%error, "cannot follow yet");
                self.pause();
            }
        }
        Ok(())
    }

    /// Whether this node must not campaign now (said once per reason): it
    /// is behind, and a caught-up node should lead; or a leader signed a
    /// block it does not hold, and it would sign another at that height.
    /// `head`: the newest block it holds.
    fn held_back(&mut self, head: u64) -> bool {
        let max = self.ha.config.campaign_lag_records_max;
        let reason = if self.lag > max {
            Some(format!(
                "{} records behind the leader when last heard (at most {max} may lead): waiting for a caught-up node",
                self.lag
            ))
        } else {
            match self.ha.runtime.block_on(self.ha.election.signed_height()) {
                Ok(signed) if signed > head => Some(format!(
                    "a leader signed blocks up to {signed}, this node holds up to {head}: \
                     waiting for a node that holds them"
                )),
                Ok(_) => None,
                Err(error) => Some(format!("etcd unreachable: {error}")),
            }
        };
        if reason.is_some() && reason != self.held_back_for {
            tracing::warn!(reason = reason.as_deref().unwrap_or_default(), "not campaigning");
        }
        self.held_back_for = reason;
        self.held_back_for.is_some()
    }

    /// Between attempts to find, follow or become the leader: an eighth of
    /// the lease, so that a takeover costs little more than the lease itself.
    fn pause(&self) {
        std::thread::sleep(self.ha.lease_ttl() / 8);
    }

    /// Stops the node so that its restart rejoins (and truncates) afresh.
    fn exit(&self, reason: String) {
        tracing::warn!(reason);
        self.shared.health.depose(reason);
    }

    /// Follows until the leader goes quiet for half a lease TTL (it sends
    /// at least a heartbeat every `ha.heartbeat_ms`) or the session breaks;
    /// the records are durable here before they are acknowledged, and
    /// visible to reads only then.
    fn follow(&mut self, follower: &mut Follower, replayer: &mut Replayer<'_>) -> Result<(), NodeError> {
        let silence_max = self.ha.lease_ttl() / 2;
        loop {
            self.shared.beat();
            if self.shared.health.shutting_down() {
                return Ok(());
            }
            let message = match self.ha.block_on_timeout(silence_max, follower.next()) {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    tracing::warn!(%error, "replication session ended");
                    return Ok(());
                }
                None => return Ok(()),
            };
            let committed = match message {
                Message::Records { first, committed, frames } => {
                    if !self.take_records(follower, replayer, first, &frames)? {
                        return Ok(());
                    }
                    committed
                }
                Message::Heartbeat { committed } => committed,
                other => {
                    tracing::warn!(?other, "unexpected replication message: reconnecting");
                    return Ok(());
                }
            };
            self.lag = committed.saturating_sub(self.log.records());
            self.shared.metrics.ha_replication_lag_records.set(i64::try_from(self.lag).unwrap_or(i64::MAX));
            let (records, lag) = (self.log.records(), self.lag);
            self.ha.set_status(|s| {
                s.records = records;
                s.lag_records = lag;
            });
        }
    }

    /// The leader's records from `first` on: appended verbatim, durable,
    /// acknowledged, then applied to the view. False when the session must
    /// start again (records out of order or damaged).
    fn take_records(
        &mut self,
        follower: &mut Follower,
        replayer: &mut Replayer<'_>,
        first: u64,
        frames: &[u8],
    ) -> Result<bool, NodeError> {
        if first != self.log.records() {
            tracing::warn!(first, held = self.log.records(), "records out of order: reconnecting");
            return Ok(false);
        }
        let records = match tephra_batchlog::split_frames(frames) {
            Ok(records) => records,
            Err(reason) => {
                tracing::warn!(%reason, "damaged records from the leader: reconnecting");
                return Ok(false);
            }
        };
        for (frame, _) in &records {
            self.log.append_frame(frame)?;
        }
        self.log.commit()?;
        if let Err(error) = self.ha.runtime.block_on(follower.ack(self.log.records())) {
            tracing::warn!(%error, "acknowledgement not sent: reconnecting");
        }
        let first_index = self.log.records() - records.len() as u64;
        for (offset, (_, record)) in records.into_iter().enumerate() {
            if let Record::Epoch { epoch } = record {
                self.resume.epochs.push(EpochStart { epoch, start: first_index + offset as u64 });
            }
            self.apply(replayer, record)?;
        }
        Ok(true)
    }

    /// One replicated record into the view that reads see.
    fn apply(&self, replayer: &mut Replayer<'_>, record: Record) -> Result<(), NodeError> {
        let shared = &self.shared;
        let mut view = shared.view.write().expect("view lock");
        match follow_record(&mut view, replayer, record)? {
            Followed::Sealed(block)
                if block.header.number.is_multiple_of(shared.config.block.snapshot_interval_blocks) =>
            {
                write_snapshot(view.state(), &block, &DataDir(shared.config.node.data_dir.clone()).snapshot());
            }
            Followed::Epoch(epoch) => {
                shared.metrics.ha_epoch.set(i64::try_from(epoch).unwrap_or(i64::MAX));
            }
            Followed::Sealed(_) | Followed::Applied => {}
        }
        Ok(())
    }

    /// Takes over: an Epoch record opens this leader's run in the log (and
    /// stamps the open block), standbys may follow, the sequencer runs.
    fn lead(mut self, leadership: Leadership, mut replayer: Replayer<'_>) -> Result<(), NodeError> {
        let epoch = leadership.epoch;
        let shared = self.shared.clone();
        let config = &shared.config;
        let feed = self.start_epoch(epoch, &mut replayer)?;
        let (builder, open_logged) = self.block_to_lead(replayer, epoch)?;
        let replication = self.serve_replication(feed.clone());
        self.announce_leading(epoch, &feed);
        let ha_parts = SequencerHa {
            feed,
            lease: leadership.lease.clone(),
            mode: config.ha.replication,
            sync_ack_timeout: Duration::from_millis(config.ha.sync_ack_timeout_ms),
        };
        let open = OpenChain { log: self.log, builder: Some(builder), open_logged, epoch };
        let sequencer = open_sequencer(&shared, self.lead, open, Some(ha_parts))?;
        shared.health.set_leading();
        shared.metrics.ha_role.set(2);
        tracing::info!(epoch, mode = ?config.ha.replication, "leading");
        let result = sequencer.run().map_err(NodeError::from);
        replication.abort();
        if shared.health.deposed().is_none() {
            // A clean stop hands over at once rather than after the lease.
            if let Err(error) = self.ha.runtime.block_on(self.ha.election.resign(&leadership)) {
                tracing::warn!(%error, "resigning failed: the standby takes over when the lease lapses");
            }
        }
        result
    }

    /// The replication feed from here on, and the Epoch record that opens
    /// this leader's run, durable and applied (it stamps the open block).
    fn start_epoch(&mut self, epoch: u64, replayer: &mut Replayer<'_>) -> Result<Arc<Feed>, NodeError> {
        let window_bytes_max = self.shared.config.ha.replication_window_bytes_max;
        let feed = Arc::new(Feed::new(self.log.records(), self.resume.epochs.clone(), window_bytes_max));
        feed.start_epoch(epoch);
        self.log.set_sink(Arc::new(FeedSink(feed.clone())));
        self.log.append(&Record::Epoch { epoch })?;
        self.log.commit()?;
        let mut view = self.shared.view.write().expect("view lock");
        replayer.apply(Record::Epoch { epoch }, view.state_mut())?;
        Ok(feed)
    }

    /// The block this leader goes on with: the one the log left open, or the
    /// next one, opened now. And whether its Open record is logged.
    fn block_to_lead(&self, replayer: Replayer<'_>, epoch: u64) -> Result<(BlockBuilder, bool), NodeError> {
        if let Some(open) = replayer.finish()? {
            return Ok((open.builder, true));
        }
        let shared = &self.shared;
        let mut view = shared.view.write().expect("view lock");
        let head = view.head().clone();
        let params = next_block_params(&shared.chain, &head, &shared.config, self.lead.beneficiary, epoch)?;
        let builder = BlockBuilder::open(params.clone(), view.state_mut());
        view.open(params, None);
        Ok((builder, false))
    }

    /// Serves the standbys from `feed` (and the log on disk behind it) on the
    /// listener bound at start, on the HA runtime.
    fn serve_replication(&self, feed: Arc<Feed>) -> tokio::task::JoinHandle<()> {
        let config = &self.shared.config;
        let listener = self.ha.replication.lock().expect("listener lock").take().expect("bound at start");
        let source = Arc::new(DiskSource(DiskLog::new(&DataDir(config.node.data_dir.clone()).log())));
        let leader_config = Arc::new(LeaderConfig {
            node_id: config.ha.node_id.clone(),
            peers: config.ha.peers.clone(),
            secret: self.ha.secret.clone(),
            standbys_max: config.ha.standbys_max,
            heartbeat: Duration::from_millis(config.ha.heartbeat_ms),
            message_bytes_max: config.ha.replication_message_bytes_max,
            frame_bytes_max: FRAME_BYTES_MAX,
        });
        self.ha.runtime.spawn(async move {
            let _ = listener.set_nonblocking(true);
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => tephra_ha::replication::serve(listener, feed, source, leader_config).await,
                Err(error) => tracing::error!(%error, "replication listener unusable"),
            }
        })
    }

    /// The fence, the published status and the metrics learn that this
    /// node leads in `epoch`.
    fn announce_leading(&self, epoch: u64, feed: &Arc<Feed>) {
        let _ = self.ha.fence.feed.set(feed.clone());
        self.ha.fence.epoch.store(epoch, Ordering::Release);
        let records = self.log.records();
        self.ha.set_status(|s| {
            s.role = "leader";
            s.epoch = epoch;
            s.records = records;
            s.lag_records = 0;
        });
        self.shared.metrics.ha_epoch.set(i64::try_from(epoch).unwrap_or(i64::MAX));
        self.shared.metrics.ha_elections_won.inc();
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::{Address, Bytes};

    use super::*;

    #[test]
    fn the_epoch_table_starts_at_zero_and_marks_each_epoch_record() {
        let record = |i: u64| match i % 50 {
            0 if i > 0 => Record::Epoch { epoch: i },
            _ => Record::Batch { number: i, txs: vec![(Address::ZERO, Bytes::from(vec![i.to_le_bytes()[0]; 300]))] },
        };
        let records: Vec<Record> = (0..200).map(record).collect();
        let table = epoch_table(&records);
        assert_eq!(
            table.iter().map(|e| (e.epoch, e.start)).collect::<Vec<_>>(),
            [(0, 0), (50, 50), (100, 100), (150, 150)]
        );
    }
}
