//! Leadership through etcd: one leader key under `ha.etcd_prefix`, created
//! only if absent and bound to the creator's lease. Whoever created it leads;
//! its create revision is the leader's epoch, which only grows from one
//! leader to the next (etcd revisions never go back), so it fences: a block
//! carries its leader's epoch, and the signer refuses an epoch older than the
//! leader key's.
//!
//! A leader keeps its lease alive every third of the TTL and counts itself
//! leader only until 90% of the TTL after the last keep-alive it sent that
//! etcd answered: etcd cannot expire the lease (and let another node lead)
//! before then, so two leaders never overlap as long as clocks run at
//! roughly the same rate. It is deposed at once if the key goes (stepped
//! down, or deleted by an operator) or the lease is gone.
//!
//! Before each block signature the leader records the block's height under
//! `<prefix>/signed`, in one transaction with the check that it still holds
//! the key. A node campaigns only if it holds every block up to that height,
//! so no successor ever signs another block at a signed height, whatever the
//! replication mode.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity, TlsOptions, Txn, TxnOp,
    WatchOptions,
};
use serde::{Deserialize, Serialize};

/// What `record_signed` found.
#[derive(Debug)]
pub enum SignedRecord {
    Recorded,
    /// The epoch no longer leads: the leader now, if any.
    Deposed(Option<LeaderInfo>),
}

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd: {0}")]
    Client(#[from] etcd_client::Error),
    #[error("etcd: no answer within {0:?}")]
    Timeout(Duration),
    #[error("etcd TLS file {path}: {error}")]
    Tls { path: PathBuf, error: std::io::Error },
    #[error("etcd: the leader key holds something else than a leader: {0}")]
    Value(String),
}

/// How tephra reaches etcd: `[ha]`'s etcd slice.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    /// Keys live under this prefix: `<prefix>/leader`, `<prefix>/nodes/<id>`.
    pub prefix: String,
    /// TLS: the CA that signed etcd's certificate, and this node's client
    /// certificate and key (all PEM); empty for plain HTTP.
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub lease_ttl_s: u64,
    /// Every request's bound.
    pub request_timeout: Duration,
}

/// What the leader key says: who leads and where to follow it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderValue {
    pub node_id: String,
    /// The replication address standbys connect to.
    pub replication: String,
    /// The JSON-RPC address clients send transactions to.
    pub rpc: String,
    /// The block key's address: every member of a pair signs with the same key.
    pub block_key: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderInfo {
    pub epoch: u64,
    pub value: LeaderValue,
}

/// The lease as the leader sees it; shared with the sequencer, which stops
/// at once when `leading` turns false.
#[derive(Debug)]
pub struct LeaseState {
    anchor: Instant,
    valid_until_ns: AtomicU64,
    deposed: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl LeaseState {
    fn new(valid_until: Instant) -> Self {
        let state = Self {
            anchor: Instant::now(),
            valid_until_ns: AtomicU64::new(0),
            deposed: AtomicBool::new(false),
            reason: Mutex::new(None),
        };
        state.extend(valid_until);
        state
    }

    fn extend(&self, until: Instant) {
        let ns = u64::try_from(until.saturating_duration_since(self.anchor).as_nanos()).unwrap_or(u64::MAX);
        self.valid_until_ns.fetch_max(ns, Ordering::AcqRel);
    }

    /// Whether this node may still act as leader.
    pub fn leading(&self) -> bool {
        if self.deposed.load(Ordering::Acquire) {
            return false;
        }
        let now = u64::try_from(self.anchor.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if now >= self.valid_until_ns.load(Ordering::Acquire) {
            self.depose("the lease lapsed: etcd did not answer a keep-alive in time");
            return false;
        }
        true
    }

    /// Ends this leadership for good.
    pub fn depose(&self, reason: &str) {
        let mut slot = self.reason.lock().expect("lease reason lock");
        if slot.is_none() {
            tracing::error!(reason, "leadership lost");
            *slot = Some(reason.to_string());
        }
        self.deposed.store(true, Ordering::Release);
    }

    /// Why leadership ended, once it has.
    pub fn reason(&self) -> Option<String> {
        self.reason.lock().expect("lease reason lock").clone()
    }
}

/// This node's leadership: the epoch and the tasks that keep it.
#[derive(Debug)]
pub struct Leadership {
    pub epoch: u64,
    pub lease: Arc<LeaseState>,
    lease_id: i64,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Leadership {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A connection to the etcd cluster.
#[derive(Clone)]
pub struct Election {
    client: Client,
    config: EtcdConfig,
}

impl std::fmt::Debug for Election {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Election").field("endpoints", &self.config.endpoints).finish_non_exhaustive()
    }
}

/// A share of the TTL kept back from the lease's end for clock-rate drift
/// between this node and etcd, in tenths.
const LEASE_SAFE_TENTHS: u32 = 9;
/// How often `wait_vacant` looks at the leader key.
const VACANT_POLL: Duration = Duration::from_millis(50);

impl Election {
    pub async fn connect(config: EtcdConfig) -> Result<Self, EtcdError> {
        let read = |path: &PathBuf| std::fs::read(path).map_err(|error| EtcdError::Tls { path: path.clone(), error });
        let ttl = Duration::from_secs(config.lease_ttl_s);
        // HTTP/2 pings find a connection that went silent (a partition)
        // well within the lease.
        let mut options = ConnectOptions::new()
            .with_timeout(config.request_timeout)
            .with_connect_timeout(config.request_timeout)
            .with_keep_alive(ttl / 4, ttl / 2)
            .with_keep_alive_while_idle(true);
        if let Some(ca) = &config.ca_file {
            let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read(ca)?));
            if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            options = options.with_tls(tls);
        }
        let client = bounded(config.request_timeout, Client::connect(&config.endpoints, Some(options))).await?;
        Ok(Self { client, config })
    }

    pub fn leader_key(&self) -> String {
        format!("{}/leader", self.config.prefix)
    }

    fn signed_key(&self) -> String {
        format!("{}/signed", self.config.prefix)
    }

    fn node_key(&self, node_id: &str) -> String {
        format!("{}/nodes/{node_id}", self.config.prefix)
    }

    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.config.lease_ttl_s)
    }

    /// The current leader (a linearizable read), or none.
    pub async fn leader(&self) -> Result<Option<LeaderInfo>, EtcdError> {
        let response = again(|| {
            let (mut kv, key) = (self.client.kv_client(), self.leader_key());
            async move { bounded(self.config.request_timeout, kv.get(key, None)).await }
        })
        .await?;
        response.kvs().first().map(leader_info).transpose()
    }

    /// One attempt to lead: the leadership if the key was free, else `None`.
    pub async fn campaign(&self, value: &LeaderValue) -> Result<Option<Leadership>, EtcdError> {
        let timeout = self.config.request_timeout;
        let ttl = self.lease_ttl();
        let mut lease = self.client.lease_client();
        let asked = Instant::now();
        let grant = bounded(timeout, lease.grant(self.config.lease_ttl_s as i64, None)).await?;
        let lease_id = grant.id();
        let key = self.leader_key();
        let json = serde_json::to_string(value).expect("a leader value serializes");
        let txn = Txn::new().when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)]).and_then([TxnOp::put(
            key,
            json,
            Some(etcd_client::PutOptions::new().with_lease(lease_id)),
        )]);
        let mut kv = self.client.kv_client();
        let response = match bounded(timeout, kv.txn(txn)).await {
            Ok(response) => response,
            Err(error) => {
                let _ = bounded(timeout, lease.revoke(lease_id)).await;
                return Err(error);
            }
        };
        if !response.succeeded() {
            let _ = bounded(timeout, lease.revoke(lease_id)).await;
            return Ok(None);
        }
        let epoch = response.header().map_or(0, |h| h.revision()) as u64;
        let state = Arc::new(LeaseState::new(asked + ttl * LEASE_SAFE_TENTHS / 10));
        let tasks = vec![
            tokio::spawn(keep_alive(self.clone(), lease_id, state.clone())),
            tokio::spawn(watch_key(self.clone(), epoch, state.clone())),
        ];
        tracing::info!(epoch, node = value.node_id, "elected leader");
        Ok(Some(Leadership { epoch, lease: state, lease_id, tasks }))
    }

    /// Gives leadership up: the key goes (only if it is still this
    /// epoch's) and the lease with it.
    pub async fn resign(&self, leadership: &Leadership) -> Result<(), EtcdError> {
        leadership.lease.depose("stepped down");
        let deleted = self.delete_leader(leadership.epoch).await;
        // The key is what matters; an unrevoked lease expires by itself.
        let mut lease = self.client.lease_client();
        let _ = bounded(self.config.request_timeout, lease.revoke(leadership.lease_id)).await;
        deleted.map(|_| ())
    }

    /// Deletes the leader key if it is still epoch `epoch`'s: `tephra ha
    /// step-down`, or a node clearing its own key left by a crash. Whether
    /// it was.
    pub async fn delete_leader(&self, epoch: u64) -> Result<bool, EtcdError> {
        let key = self.leader_key();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, epoch as i64)])
            .and_then([TxnOp::delete(key, None)]);
        let response = again(|| {
            let (mut kv, txn) = (self.client.kv_client(), txn.clone());
            async move { bounded(self.config.request_timeout, kv.txn(txn)).await }
        })
        .await?;
        Ok(response.succeeded())
    }

    /// Returns once no leader holds the key (true), or after `wait` (false).
    pub async fn wait_vacant(&self, wait: Duration) -> Result<bool, EtcdError> {
        let deadline = Instant::now() + wait;
        loop {
            if self.leader().await?.is_none() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(VACANT_POLL).await;
        }
    }

    /// Records that block `number` is about to be signed by the leader of
    /// `epoch`, if that leader still holds the key (one transaction).
    /// Otherwise the leader now, if any: its epoch refuses the signature.
    pub async fn record_signed(&self, epoch: u64, number: u64) -> Result<SignedRecord, EtcdError> {
        let key = self.leader_key();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, epoch as i64)])
            .and_then([TxnOp::put(self.signed_key(), number.to_string(), None)])
            .or_else([TxnOp::get(key, None)]);
        let response = again(|| {
            let (mut kv, txn) = (self.client.kv_client(), txn.clone());
            async move { bounded(self.config.request_timeout, kv.txn(txn)).await }
        })
        .await?;
        if response.succeeded() {
            return Ok(SignedRecord::Recorded);
        }
        let leader = response.op_responses().into_iter().find_map(|op| match op {
            etcd_client::TxnOpResponse::Get(range) => range.kvs().first().map(leader_info),
            _ => None,
        });
        Ok(SignedRecord::Deposed(leader.transpose()?))
    }

    /// The height of the newest block a leader has signed (or was about to),
    /// 0 before any.
    pub async fn signed_height(&self) -> Result<u64, EtcdError> {
        let response = again(|| {
            let (mut kv, key) = (self.client.kv_client(), self.signed_key());
            async move { bounded(self.config.request_timeout, kv.get(key, None)).await }
        })
        .await?;
        let Some(kv) = response.kvs().first() else { return Ok(0) };
        let text = kv.value_str().map_err(EtcdError::Client)?;
        text.parse().map_err(|_| EtcdError::Value(format!("the signed height is {text:?}")))
    }

    /// Publishes this node's status for `tephra ha status`.
    pub async fn publish_status(&self, node_id: &str, status_json: String) -> Result<(), EtcdError> {
        let mut kv = self.client.kv_client();
        bounded(self.config.request_timeout, kv.put(self.node_key(node_id), status_json, None)).await?;
        Ok(())
    }

    /// Every node's published status: (node id, JSON).
    pub async fn statuses(&self) -> Result<Vec<(String, String)>, EtcdError> {
        let prefix = self.node_key("");
        let mut kv = self.client.kv_client();
        let response =
            bounded(self.config.request_timeout, kv.get(prefix.clone(), Some(GetOptions::new().with_prefix()))).await?;
        Ok(response
            .kvs()
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key());
                (key.trim_start_matches(&prefix).to_string(), String::from_utf8_lossy(kv.value()).into_owned())
            })
            .collect())
    }
}

fn leader_info(kv: &etcd_client::KeyValue) -> Result<LeaderInfo, EtcdError> {
    let value = serde_json::from_slice(kv.value()).map_err(|e| EtcdError::Value(e.to_string()))?;
    Ok(LeaderInfo { epoch: kv.create_revision() as u64, value })
}

/// Runs `attempt` again once after a transport or gRPC failure: an etcd
/// connection may drop one request after a keep-alive stream ends, and every
/// request here is a read or a compare-and-set that is safe to repeat.
async fn again<T, F, Fut>(mut attempt: F) -> Result<T, EtcdError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, EtcdError>>,
{
    match attempt().await {
        Err(EtcdError::Client(error)) => {
            tracing::debug!(%error, "etcd request failed; trying once more");
            attempt().await
        }
        other => other,
    }
}

async fn bounded<T>(
    timeout: Duration,
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, EtcdError> {
    match tokio::time::timeout(timeout, request).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(EtcdError::Timeout(timeout)),
    }
}

/// Keeps the lease alive every third of the TTL; each answered keep-alive
/// extends leadership to 90% of the TTL after it was sent.
async fn keep_alive(election: Election, lease_id: i64, state: Arc<LeaseState>) {
    let ttl = election.lease_ttl();
    let mut ticks = tokio::time::interval(ttl / 3);
    let mut stream = None;
    while state.leading() {
        ticks.tick().await;
        if stream.is_none() {
            let mut lease = election.client.lease_client();
            match bounded(ttl / 3, lease.keep_alive(lease_id)).await {
                Ok(opened) => stream = Some(opened),
                Err(error) => tracing::warn!(%error, "etcd keep-alive stream not opened; retrying"),
            }
        }
        let Some((keeper, responses)) = stream.as_mut() else { continue };
        let sent = Instant::now();
        let answer = async {
            keeper.keep_alive().await?;
            responses.message().await
        };
        match tokio::time::timeout(ttl / 3, answer).await {
            Ok(Ok(Some(response))) if response.ttl() > 0 => state.extend(sent + ttl * LEASE_SAFE_TENTHS / 10),
            Ok(Ok(Some(_))) => state.depose("the lease expired in etcd"),
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                tracing::warn!("etcd keep-alive unanswered; retrying");
                stream = None;
            }
        }
    }
}

/// Deposes the leader as soon as its key is deleted or replaced.
async fn watch_key(election: Election, epoch: u64, state: Arc<LeaseState>) {
    let key = election.leader_key();
    while state.leading() {
        let mut watch = election.client.watch_client();
        let options = WatchOptions::new().with_start_revision(epoch as i64);
        let Ok(mut stream) = watch.watch(key.clone(), Some(options)).await else {
            tokio::time::sleep(election.lease_ttl() / 4).await;
            continue;
        };
        while let Ok(Some(response)) = stream.message().await {
            for event in response.events() {
                let gone = event.event_type() == EventType::Delete
                    || event.kv().is_some_and(|kv| kv.create_revision() as u64 != epoch);
                if gone {
                    state.depose("the leader key was deleted: stepped down, or the lease expired");
                    return;
                }
            }
        }
    }
}
