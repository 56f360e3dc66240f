//! Glue: the data directory, the chain, the signer, replay, and the threads
//! and servers of a running node.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread,
};

use alloy_primitives::Address;
use tephra_batchlog::{LogError, LogWriter, Record};
use tephra_dataplane::{
    Dataplane, DataplaneError,
    topology::{Machine, Placement, TopologyError, pin_current_thread},
};
use tephra_exec::{BlockBuilder, BlockParams, ChainSpec, snapshot};
use tephra_hsm::{
    AuditedSigner, FileSigner, GuardedSigner, Pkcs11Config, Pkcs11Signer, SignError, SignGuard, Signer,
    SigningPipeline, YubiConnector, YubiHsmConfig, YubiHsmSigner,
};

use crate::{
    config::{Config, SignerKind},
    delegation::Delegation,
    metrics::Metrics,
    replay::{self, OpenReplay},
    sequencer::{Sequencer, Shared, block_choice},
    view::{OpenBlock, StoredBlock, TxLocation, View},
};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("genesis {path}: {reason}")]
    Genesis { path: PathBuf, reason: String },
    #[error("data dir {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Replay(#[from] replay::ReplayError),
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error(transparent)]
    Signer(#[from] tephra_hsm::SignError),
    #[error("exec shards: {0}")]
    Shards(#[from] tephra_exec::parallel::ShardConfigError),
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error("data dir {0} is in use by another tephra process")]
    Locked(PathBuf),
    #[error("high availability: {0}")]
    Ha(String),
    #[error(
        "the chain's block gas limit {block_gas_limit} allows a sealed block's record of up to {record_bytes_max} \
         bytes, above the batch log's record limit of {record_size_max_bytes}: sealing a full block would stop the node"
    )]
    SealedRecordTooLarge { block_gas_limit: u64, record_bytes_max: u64, record_size_max_bytes: usize },
}

/// Holds the data dir for this process: two nodes (or a node and `log
/// verify`) on one batch log and one signing guard could fork the chain.
pub fn lock_data_dir(data: &DataDir) -> Result<fs::File, NodeError> {
    fs::create_dir_all(&data.0).map_err(io_error(&data.0))?;
    let path = data.0.join("LOCK");
    let file = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io_error(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(NodeError::Locked(data.0.clone())),
        Err(fs::TryLockError::Error(error)) => Err(NodeError::Io { path, source: error }),
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::Io { path: path.to_path_buf(), source }
}

/// The data directory's files.
#[derive(Clone, Debug)]
pub struct DataDir(pub PathBuf);

impl DataDir {
    pub fn genesis(&self) -> PathBuf {
        self.0.join("genesis.json")
    }
    pub fn log(&self) -> PathBuf {
        self.0.join("log")
    }
    pub fn snapshot(&self) -> PathBuf {
        self.0.join("snapshot.bin")
    }
}

/// The chain of a data dir: its genesis.json, written on first use from the
/// configured genesis (or the embedded dev one). A different genesis over an
/// existing data dir is refused.
pub fn chain_of(config: &Config, data: &DataDir) -> Result<ChainSpec, NodeError> {
    fs::create_dir_all(&data.0).map_err(io_error(&data.0))?;
    let configured = if config.node.genesis.as_os_str().is_empty() {
        None
    } else {
        Some(fs::read_to_string(&config.node.genesis).map_err(io_error(&config.node.genesis))?)
    };
    let stored_path = data.genesis();
    let json = match (fs::read_to_string(&stored_path).ok(), configured) {
        (Some(stored), Some(configured)) => {
            let (a, b) = (parse_chain(&stored, &stored_path)?, parse_chain(&configured, &config.node.genesis)?);
            if a.genesis_hash() != b.genesis_hash() {
                return Err(NodeError::Genesis {
                    path: config.node.genesis.clone(),
                    reason: format!("the data dir holds another chain (genesis {})", a.genesis_hash()),
                });
            }
            stored
        }
        (Some(stored), None) => stored,
        (None, configured) => {
            let json = configured.unwrap_or_else(|| tephra_exec::chainspec::DEV_GENESIS_JSON.to_string());
            parse_chain(&json, &stored_path)?;
            write_durably(&stored_path, json.as_bytes())?;
            json
        }
    };
    parse_chain(&json, &stored_path)
}

fn parse_chain(json: &str, path: &Path) -> Result<ChainSpec, NodeError> {
    ChainSpec::from_genesis_json(json)
        .map_err(|e| NodeError::Genesis { path: path.to_path_buf(), reason: e.to_string() })
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).map_err(io_error(&tmp))?;
    fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io_error(&tmp))?;
    fs::rename(&tmp, path).map_err(io_error(path))?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir).and_then(|f| f.sync_all()).map_err(io_error(dir))?;
    }
    Ok(())
}

/// The block key named by `[signer]`, without the guard (log verify reads only its address).
pub fn load_key(config: &Config, data: &DataDir) -> Result<Box<dyn Signer>, NodeError> {
    let c = &config.signer;
    Ok(match c.kind {
        SignerKind::File => {
            let path = data.0.join(&c.key_file);
            let (signer, created) = FileSigner::load_or_create(&path)?;
            if created {
                tracing::info!(address = %signer.address(), key_file = %path.display(), "created a dev block key");
            }
            Box::new(signer)
        }
        SignerKind::Pkcs11 => Box::new(Pkcs11Signer::open(&Pkcs11Config {
            module: c.pkcs11_module.clone(),
            token_label: c.pkcs11_token_label.clone(),
            pin_file: c.pkcs11_pin_file.clone(),
            key_label: c.pkcs11_key_label.clone(),
        })?),
        SignerKind::Yubihsm => {
            let connector =
                yubihsm_connector(&c.yubihsm_connector).map_err(|reason| NodeError::Signer(SignError::Key(reason)))?;
            Box::new(YubiHsmSigner::open(&YubiHsmConfig {
                connector,
                auth_key_id: c.yubihsm_auth_key_id,
                password_file: c.yubihsm_password_file.clone(),
                key_id: c.yubihsm_key_id,
            })?)
        }
    })
}

pub fn yubihsm_connector(text: &str) -> Result<YubiConnector, String> {
    #[cfg(feature = "yubihsm-usb")]
    if text == "usb" {
        return Ok(YubiConnector::Usb);
    }
    let rest = text
        .strip_prefix("http://")
        .ok_or_else(|| format!("signer.yubihsm_connector = {text}: expected http://HOST:PORT"))?;
    let (addr, port) = rest.rsplit_once(':').ok_or_else(|| format!("signer.yubihsm_connector = {text}: no port"))?;
    let port = port.parse().map_err(|_| format!("signer.yubihsm_connector = {text}: bad port"))?;
    Ok(YubiConnector::Http { addr: addr.to_string(), port })
}

/// Block signatures in the audit log, by signing hash.
fn audited_block_signatures(
    config: &Config,
    data: &DataDir,
) -> Result<alloy_primitives::map::B256Map<tephra_hsm::Signature65>, NodeError> {
    let (entries, _) = tephra_hsm::verify_audit_log(&data.0.join(&config.signer.audit_file))
        .map_err(|e| SignError::Device(e.to_string()))?;
    Ok(entries
        .into_iter()
        .filter(|e| e.payload_type == "sealed_block")
        .map(|e| (e.payload_hash, e.signature))
        .collect())
}

/// The block key, every signature audited, behind the double-sign guard
/// (asking `fence` for the newest leader epoch, in a pair).
pub fn load_signer(
    config: &Config,
    data: &DataDir,
    fence: Option<Arc<dyn tephra_hsm::EpochFence>>,
) -> Result<Arc<dyn Signer>, NodeError> {
    let key = AuditedSigner::open(load_key(config, data)?, &data.0.join(&config.signer.audit_file))
        .map_err(|e| SignError::Device(e.to_string()))?;
    let guard = SignGuard::open(&data.0.join(&config.signer.guard_file)).map_err(SignError::from)?;
    if let Some(mark) = guard.mark() {
        tracing::info!(number = mark.number, hash = %mark.hash, "signing guard high-water mark");
    }
    let guarded = GuardedSigner::new(key, guard);
    Ok(Arc::new(match fence {
        Some(fence) => guarded.with_fence(fence),
        None => guarded,
    }))
}

/// A running node: its shared state and the handles to stop it.
pub struct Running {
    pub shared: Arc<Shared>,
    rpc: jsonrpsee::server::ServerHandle,
    rpc_methods: jsonrpsee::Methods,
    /// Released when the process exits.
    _lock: fs::File,
    sequencer: thread::JoinHandle<Result<(), NodeError>>,
    dataplane: Dataplane,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").finish_non_exhaustive()
    }
}

impl Running {
    /// The JSON-RPC methods the server answers, sorted.
    pub fn rpc_method_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.rpc_methods.method_names().collect();
        names.sort_unstable();
        names
    }

    /// Answers one JSON-RPC request in-process through the server's own
    /// methods (the fuzz target's way in); an error if the text is not a
    /// JSON-RPC request at all.
    pub async fn rpc_request(&self, request: &str) -> Result<String, serde_json::Error> {
        let buffer = self.shared.config.rpc.subscription_buffer_max as usize;
        let (response, _subscription) = self.rpc_methods.raw_json_request(request, buffer).await?;
        Ok(response.get().to_string())
    }

    /// Stops taking requests, lets the sequencer make everything durable, and waits.
    pub async fn stop(self) -> Result<(), NodeError> {
        let _ = self.rpc.stop();
        self.shared.shutdown.store(true, Ordering::Release);
        let (sequencer, dataplane) = (self.sequencer, self.dataplane);
        tokio::task::spawn_blocking(move || {
            dataplane.stop();
            sequencer.join()
        })
        .await
        .expect("join task")
        .expect("sequencer thread panicked")?;
        Ok(())
    }

    /// Whether the sequencer thread has ended (an error stops the node).
    pub fn sequencer_finished(&self) -> bool {
        self.sequencer.is_finished()
    }

    /// `None` when ready; otherwise why not, as /ready says it.
    pub fn not_ready(&self) -> Option<String> {
        crate::metrics::not_ready_reason(&self.shared.ready, &self.shared.not_ready)
    }

    /// Why this node stopped leading (or must restart to rejoin), if it did.
    pub fn deposed(&self) -> Option<String> {
        self.shared.deposed.lock().expect("deposed lock").clone()
    }

    /// The sequencer loop's turn count (see `Shared::heartbeat`).
    pub fn heartbeat(&self) -> u64 {
        self.shared.heartbeat.load(Ordering::Relaxed)
    }
}

/// Where each tile runs: `[topology]` against this machine.
pub fn placement(config: &Config) -> Result<(Machine, Placement), TopologyError> {
    let machine = Machine::discover()?;
    let placement = Placement::resolve(&config.topology, &machine, config.exec.shards - 1, config.net.busy_poll)?;
    Ok((machine, placement))
}

/// The parameters of the block after `parent`, as the leader of `epoch`
/// opens it.
pub(crate) fn next_block_params(
    chain: &ChainSpec,
    parent: &StoredBlock,
    config: &Config,
    beneficiary: Address,
    epoch: u64,
) -> Result<BlockParams, NodeError> {
    BlockParams::child_of(chain, &parent.header, block_choice(parent, config, beneficiary, epoch))
        .map_err(|e| NodeError::Genesis { path: config.node.genesis.clone(), reason: e.to_string() })
}

/// What a node needs to start sequencing, at start or when it takes over.
pub(crate) struct LeadParts {
    pub signer: Arc<dyn Signer>,
    pub beneficiary: Address,
    pub placement: Placement,
    pub submissions: mpsc::Receiver<crate::sequencer::Submission>,
}

/// The sequencer over `log` and the open block `builder`: blocks sealed but
/// unsigned get their signature from the audit log or the signer, the
/// signing pipeline and the delegation start, the shards come up.
pub(crate) fn make_sequencer(
    shared: &Arc<Shared>,
    lead: LeadParts,
    mut log: LogWriter,
    builder: BlockBuilder,
    open_logged: bool,
    epoch: u64,
    ha: Option<crate::sequencer::SequencerHa>,
) -> Result<Sequencer, NodeError> {
    let config = &shared.config;
    let data = DataDir(config.node.data_dir.clone());
    let chain = &shared.chain;
    // A block signed just before a crash may be in the audit log but not yet
    // in the batch log: take its signature from there rather than ask the
    // guard, which has moved past it, to sign it again.
    let audited = audited_block_signatures(config, &data)?;
    let mut unsigned: Vec<(u64, alloy_primitives::B256)> = Vec::new();
    {
        let mut view = shared.view.write().expect("view lock");
        for block in view.blocks.iter_mut().filter(|b| b.signature.is_none() && b.header.number > 0) {
            let payload = tephra_hsm::Payload::SealedBlock {
                chain_id: chain.chain_id(),
                number: block.header.number,
                block_hash: block.hash,
                leader_epoch: epoch,
            };
            match audited.get(&payload.signing_hash()) {
                Some(signature) => {
                    log.append(&Record::Signed {
                        number: block.header.number,
                        hash: block.hash,
                        signature: signature.0,
                    })?;
                    block.signature = Some(*signature);
                }
                None => unsigned.push((block.header.number, block.hash)),
            }
        }
    }
    log.commit()?;
    // Sealing stops at the bound, so a log never holds more unsigned blocks
    // than it allows; a bound lowered since is widened to fit them.
    let mut signing = SigningPipeline::start(
        lead.signer.clone(),
        chain.chain_id(),
        config.signer.unsigned_blocks_max.max(unsigned.len()),
        std::time::Duration::from_millis(config.signer.sign_timeout_ms),
        std::time::Duration::from_millis(config.signer.sign_retry_ms),
    )
    .map_err(io_error(&data.0))?;
    for (number, hash) in unsigned {
        signing.submit(number, hash, epoch).expect("the bound fits every unsigned block");
    }
    let number = builder.params().number;
    let delegation =
        Delegation::start(lead.signer.clone(), chain.chain_id(), config.signer.delegation_epoch_blocks, number)?;
    let executor = tephra_exec::ParallelExecutor::new(&config.exec.shard_config(&lead.placement))?;
    tracing::info!(shards = executor.shards(), pinned = config.exec.pin_shards, "execution shards");
    Ok(Sequencer::new(
        shared.clone(),
        lead.submissions,
        log,
        signing,
        delegation,
        executor,
        builder,
        open_logged,
        lead.beneficiary,
        data.snapshot(),
        epoch,
        ha,
    ))
}

/// Opens the data dir, replays the log and starts everything. In a pair the
/// node first agrees with the current leader on the log, then follows it,
/// or leads.
pub async fn start(config: Config) -> Result<Running, NodeError> {
    let data = DataDir(config.node.data_dir.clone());
    let lock = lock_data_dir(&data)?;
    let chain = chain_of(&config, &data)?;
    // Every block has the genesis gas limit. The embedded dev chain's (10^9)
    // is above what a record holds: development warns, production refuses.
    if let Err(error) = crate::config::check_record_limits(chain.genesis_header().gas_limit) {
        match config.node.profile {
            crate::config::Profile::Production => return Err(error),
            crate::config::Profile::Development => tracing::warn!(%error, "a full block of logs would stop the node"),
        }
    }
    let ha = match config.ha.enabled {
        true => Some(Arc::new(crate::ha::Ha::connect(&config, &data).await?)),
        false => None,
    };
    let fence = ha.as_ref().map(|ha| ha.fence.clone() as Arc<dyn tephra_hsm::EpochFence>);
    let signer = load_signer(&config, &data, fence)?;
    if let Some(ha) = &ha {
        ha.set_block_key(signer.address());
    }
    let beneficiary = if config.block.beneficiary.is_empty() {
        signer.address()
    } else {
        config.block.beneficiary.parse::<Address>().expect("validated with the config")
    };
    tracing::info!(chain_id = chain.chain_id(), genesis = %chain.genesis_hash(), signer = %signer.address(), "opening");

    fs::create_dir_all(data.log()).map_err(io_error(&data.log()))?;
    let mut records = tephra_batchlog::read_all(&data.log(), |segment, offset, reason| {
        tracing::warn!(segment = %segment.display(), offset, %reason, "torn batch log tail truncated");
    })?;
    let follower = match &ha {
        Some(ha) => ha.join(&data, &mut records).await?,
        None => None,
    };
    let records_count = records.len() as u64;
    let epochs = crate::ha::epoch_table(&records);
    let start = if data.snapshot().exists() { Some(snapshot::load(&data.snapshot())?) } else { None };
    let from_block = start.as_ref().map_or(0, |(_, meta)| meta.block_number);
    let replayed = replay::replay(&chain, records, start, None, config.rpc.history_blocks_max)?;
    tracing::info!(
        from_snapshot_block = from_block,
        re_executed_blocks = replayed.executed_blocks,
        head = replayed.blocks.back().map_or(0, |b| b.header.number),
        epoch = replayed.epoch,
        "batch log replayed"
    );
    let log = LogWriter::open(&data.log(), config.log.segment_size_max_bytes, records_count)?;

    let mut state = replayed.state;
    let epoch = replayed.epoch;
    let head = replayed.blocks.back().expect("genesis").clone();
    // A single node opens the next block now; a standby leaves it to the
    // leader's Open record (opening runs system calls on the state).
    let (builder, open_txs, open_logged) = match replayed.open {
        Some(OpenReplay { builder, txs }) => (Some(builder), txs, true),
        None if ha.is_none() => {
            let params = next_block_params(&chain, &head, &config, beneficiary, 0)?;
            (Some(BlockBuilder::open(params, &mut state)), Vec::new(), false)
        }
        None => (None, Vec::new(), false),
    };
    let params = match &builder {
        Some(builder) => builder.params().clone(),
        None => next_block_params(&chain, &head, &config, beneficiary, epoch)?,
    };
    let verifier = tephra_exec::Verifier::new(tephra_exec::VerifyRules {
        chain_id: chain.chain_id(),
        spec: params.spec,
        block_gas_limit: params.gas_limit,
        base_fee_per_gas: params.base_fee_per_gas,
        allow_unprotected: config.verify.allow_unprotected,
    });
    let mut view = View {
        state,
        pool: tephra_exec::pool::Pool::new(config.pool.clone()),
        blocks: Default::default(),
        history_blocks_max: config.rpc.history_blocks_max,
        tx_index: Default::default(),
        open: OpenBlock {
            params: params.clone(),
            txs: Vec::new(),
            gas_used: builder.as_ref().map_or(0, |b| b.gas_used()),
        },
    };
    for block in replayed.blocks {
        view.push_block(block);
    }
    for (index, tx) in open_txs.iter().enumerate() {
        view.tx_index.insert(tx.hash, TxLocation { block_number: params.number, index });
    }
    // A standby's replayer goes on with the open block from its transactions.
    let resume_txs = if ha.is_some() { open_txs.clone() } else { Vec::new() };
    view.open.txs = open_txs;

    let metrics = Arc::new(Metrics::new());
    metrics.head_number.set(i64::try_from(view.head().header.number).unwrap_or(i64::MAX));
    let (submit_tx, submit_rx) = mpsc::sync_channel(config.sequencer.submission_queue_depth);
    let (events, _) = tokio::sync::broadcast::channel(config.rpc.subscription_buffer_max as usize);
    let ready = Arc::new(AtomicBool::new(false));
    let not_ready = Arc::new(std::sync::Mutex::new(None));
    let shared = Arc::new(Shared {
        chain: chain.clone(),
        config: config.clone(),
        view: RwLock::new(view),
        verifier: RwLock::new(verifier),
        metrics: metrics.clone(),
        events,
        submissions: submit_tx,
        signer_address: signer.address(),
        ready: ready.clone(),
        not_ready: not_ready.clone(),
        log_paused: AtomicBool::new(false),
        shutdown: AtomicBool::new(false),
        heartbeat: AtomicU64::new(0),
        leading: AtomicBool::new(ha.is_none()),
        leader_hint: std::sync::Mutex::new(String::new()),
        deposed: std::sync::Mutex::new(None),
    });

    let (machine, placement) = placement(&config)?;
    tracing::info!("tile placement\n{}", placement.table(&machine));
    let sequencer_core = placement.sequencer;
    let lead = LeadParts { signer, beneficiary, placement: placement.clone(), submissions: submit_rx };
    let sequencer = match &ha {
        None => {
            let builder = builder.expect("a single node opened its block");
            let sequencer = make_sequencer(&shared, lead, log, builder, open_logged, 0, None)?;
            thread::Builder::new()
                .name("tephra-sequencer".into())
                .spawn(move || {
                    pin_current_thread(&[sequencer_core]);
                    sequencer.run().map_err(NodeError::from)
                })
                .map_err(io_error(&data.0))?
        }
        Some(ha) => {
            let role = crate::ha::Role::new(
                ha.clone(),
                shared.clone(),
                lead,
                log,
                crate::ha::Resume { builder, open_txs: resume_txs, head: head.header.clone(), epoch, epochs },
                follower,
            );
            ha.spawn(ha.clone().publish_status(shared.clone()));
            thread::Builder::new()
                .name("tephra-role".into())
                .spawn(move || {
                    pin_current_thread(&[sequencer_core]);
                    role.run()
                })
                .map_err(io_error(&data.0))?
        }
    };

    let metrics_listener =
        tokio::net::TcpListener::bind(config.metrics.listen).await.map_err(io_error(Path::new("metrics.listen")))?;
    let metrics_address = metrics_listener.local_addr().map_err(io_error(Path::new("metrics.listen")))?;
    tokio::spawn(crate::metrics::serve(metrics_listener, metrics, ready.clone(), not_ready));
    let rpc_methods: jsonrpsee::Methods = crate::rpc::module(shared.clone()).into();
    let (rpc_address, rpc) = crate::rpc::serve(&config.rpc, rpc_methods.clone(), shared.metrics.clone())
        .await
        .map_err(io_error(Path::new("rpc.listen")))?;
    let std::net::SocketAddr::V4(udp_listen) = config.udp.listen else { unreachable!("checked by Config::validate") };
    let wake = Arc::new(tokio::sync::Notify::new());
    let notify = wake.clone();
    let (dataplane, ingress, egress) =
        Dataplane::start(&config.net, udp_listen, placement.net, Box::new(move || notify.notify_one()))?;
    let udp_address = dataplane.local_addr;
    shared.metrics.watch_net(&dataplane);
    tokio::spawn(crate::udp::serve(ingress, egress, dataplane.pool.clone(), wake, shared.clone()));
    ready.store(true, Ordering::Release);
    tracing::info!(
        rpc = %rpc_address,
        udp = %udp_address,
        metrics = %metrics_address,
        block_time_ms = config.block.block_time_ms,
        "ready"
    );
    Ok(Running { shared, rpc, rpc_methods, sequencer, dataplane, _lock: lock })
}

/// Blocks `log verify` keeps while it replays: a signature is logged within
/// a few blocks of its seal.
const VERIFY_HISTORY_BLOCKS: usize = 1024;

/// `tephra log verify`: re-executes the whole log from genesis and checks
/// every root, hash and signature.
pub fn verify_log(config: &Config) -> Result<replay::Replayed, NodeError> {
    let data = DataDir(config.node.data_dir.clone());
    let _lock = lock_data_dir(&data)?;
    let chain = chain_of(config, &data)?;
    let signer = load_key(config, &data)?;
    let records = tephra_batchlog::read_all(&data.log(), |segment, offset, reason| {
        tracing::warn!(segment = %segment.display(), offset, %reason, "torn batch log tail truncated");
    })?;
    // Verification keeps only what a signature may still refer to.
    Ok(replay::replay(&chain, records, None, Some(signer.address()), VERIFY_HISTORY_BLOCKS)?)
}
