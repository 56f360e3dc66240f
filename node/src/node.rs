//! The node: `start` opens the data dir, replays the log into the chain
//! view, and starts the threads and servers of a running node; `Running`
//! stops it. Boot (`boot`), leadership (`leadership`) and the pair's roles
//! (`ha`) are the steps it wires.

use std::{
    fs,
    path::Path,
    sync::{Arc, RwLock, mpsc},
    thread,
};

use alloy_consensus::Header;
use alloy_primitives::Address;
use tephra_batchlog::{LogWriter, Record};
use tephra_dataplane::{
    Dataplane,
    topology::{Placement, pin_current_thread},
};
use tephra_exec::{BlockBuilder, BlockChanges, ChainSpec, Verifier, VerifyRules};
use tephra_hsm::Signer;
use tephra_types::rollup::{BlockId, RollupConfig};
use tokio::sync::broadcast;

use crate::{
    boot::read_log,
    chain_view::{ChainView, Event, Outlets},
    config::Config,
    error::io_error,
    ha::{Ha, Resume, Role, epoch_table},
    health::Health,
    history::History,
    leadership::{LeadParts, OpenChain, next_block_params, open_sequencer},
    metrics::Metrics,
    op::OpSequencing,
    replay::{self, OpenReplay},
    shared::Shared,
    view::{OpenBlock, StoredTx},
};
pub use crate::{
    boot::{
        DataDir, chain_of, load_batcher_signer, load_key, load_signer, lock_data_dir, open_key, placement, rollup_of,
        verify_log, yubihsm_connector,
    },
    error::NodeError,
};

/// What the log leaves the sequencer (or a standby's role thread) to go on with.
struct Rest {
    log: LogWriter,
    /// The open block: a single node's, opened now if the log left none; a
    /// standby's only if the log left one.
    builder: Option<BlockBuilder>,
    open_logged: bool,
    epoch: u64,
    /// The log's epochs (records at which each leader's run starts).
    epochs: Vec<tephra_ha::EpochStart>,
    head: Header,
    /// A standby's replayer goes on with the open block from these.
    resume_txs: Vec<StoredTx>,
    /// Transactions a rewind abandoned that no block holds yet.
    rebuild: Vec<tephra_exec::VerifiedTx>,
}

/// Opens the data dir, replays the log and starts everything. In a pair the
/// node first agrees with the current leader on the log, then follows it,
/// or leads.
pub async fn start(config: Config) -> Result<Running, NodeError> {
    let data = DataDir(config.node.data_dir.clone());
    let lock = lock_data_dir(&data)?;
    let chain = chain_of(&config, &data)?;
    let op = match rollup_of(&config, &data, &chain)? {
        Some(rollup) => Some(Arc::new(op_sequencing(&config, rollup)?)),
        None => None,
    };
    // Every block has the genesis gas limit: its fullest block must fit a record.
    crate::config::check_record_limits(chain.genesis_header().gas_limit)?;
    let ha = match config.ha.enabled {
        true => Some(Arc::new(Ha::connect(&config, &data).await?)),
        false => None,
    };
    let fence = ha.as_ref().map(|ha| ha.fence.clone() as Arc<dyn tephra_hsm::EpochFence>);
    let signer = load_signer(&config, &data, fence)?;
    if let Some(ha) = &ha {
        ha.set_block_key(signer.address());
    }
    let beneficiary = beneficiary(&config, &*signer);
    tracing::info!(chain_id = chain.chain_id(), genesis = %chain.genesis_hash(), signer = %signer.address(), "opening");
    let mut records = read_log(&data)?;
    let follower = match &ha {
        Some(ha) => ha.join(&data, &mut records).await?,
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    let (events, _) = broadcast::channel(config.rpc.subscription_buffer_max as usize);
    let (view, verifier, rest) = restore(
        &chain,
        &config,
        &data,
        records,
        (beneficiary, op.as_deref()),
        ha.is_some(),
        (events.clone(), metrics.clone()),
    )?;
    let l1_anchor = view.head().op.as_ref().map(|op| BlockId { hash: op.origin.hash, number: op.origin.number });
    let batcher = match (&op, config.batcher.enabled) {
        (Some(_), true) => Some(Arc::new(crate::batcher::BatcherStatus::default())),
        (None, true) => {
            return Err(NodeError::Config(crate::config::ConfigError::Invalid {
                key: "batcher.enabled",
                value: "true".into(),
                reason: "the batcher posts an OP Stack chain's blocks: set node.rollup_config",
            }));
        }
        (_, false) => None,
    };
    let mut view = view;
    if let Some(status) = &batcher {
        view.set_batcher(status.clone());
    }
    let (submit_tx, submit_rx) = mpsc::sync_channel(config.sequencer.submission_queue_depth);
    let filters = open_filters(&config, &data)?;
    let trace_slots = tokio::sync::Semaphore::new(config.trace.concurrent_max as usize);
    let shared = Arc::new(Shared {
        chain,
        config,
        view: RwLock::new(view),
        verifier,
        metrics,
        events,
        submissions: submit_tx,
        signer_address: signer.address(),
        health: Arc::new(Health::new(ha.is_none())),
        heartbeat: Default::default(),
        op,
        batcher,
        filters: std::sync::Mutex::new(filters),
        trace_slots,
        validator: std::sync::OnceLock::new(),
    });
    if let Some(op) = &shared.op {
        let anchor = l1_anchor.unwrap_or_else(|| op.rollup.genesis.l1.clone());
        op.spawn_follower(&shared.config.l1, anchor, shared.health.clone())
            .map_err(io_error(Path::new("the L1 follower thread")))?;
    }
    if let Some(status) = &shared.batcher {
        crate::batcher::spawn(shared.clone(), status.clone()).map_err(io_error(Path::new("the batcher thread")))?;
    }
    if shared.config.interop.validator {
        let status = crate::interop::spawn(shared.clone(), DataDir(shared.config.node.data_dir.clone()))?;
        shared.validator.set(status).expect("set once, at start");
    }
    let (machine, placement) = placement(&shared.config)?;
    let topology = crate::topology::Topology::of(&shared.config, &placement);
    tracing::info!("topology\n{topology}\n{}", placement.table(&machine));
    let sequencer_core = placement.sequencer;
    let lead = LeadParts { signer, beneficiary, placement: placement.clone(), submissions: submit_rx };
    let sequencer = spawn_role(&shared, ha, lead, rest, follower, sequencer_core)?;
    let rpc_runtime = RpcRuntime::start(&placement.rpc).map_err(io_error(Path::new("the JSON-RPC runtime")))?;
    let (rpc, rpc_methods, dataplane) = serve(&shared, &placement, &rpc_runtime).await?;
    shared.health.set_started();
    Ok(Running { shared, rpc, rpc_methods, rpc_runtime, sequencer, dataplane, _lock: lock })
}

/// The state history (`[history] enabled`), and its last stored block
/// (0 when empty: genesis has no changes).
fn open_history(config: &Config, data: &DataDir) -> Result<Option<(Arc<History>, u64)>, NodeError> {
    if !config.history.enabled {
        return Ok(None);
    }
    let history = History::open(&data.history(), config.history.blocks_max, config.history.cache_bytes)?;
    let last = history.stored()?.map_or(0, |stored| stored.last);
    let history = Arc::new(history);
    history.spawn_writer().map_err(io_error(Path::new("the state history thread")))?;
    Ok(Some((history, last)))
}

/// The history made to end at the replayed head, and verified against it:
/// blocks past it (the log holds less: a torn tail) dropped; each stored
/// block the replay re-executed compared with what it wrote, the store
/// rewritten from the first that differs (its chain is not the log's: a
/// standby's blocks its new leader replaced); re-executed blocks after its
/// last stored one appended.
fn catch_up_history(history: &History, head: u64, changes: Vec<(u64, BlockChanges)>) -> Result<(), NodeError> {
    history.truncate_now(head)?;
    if let Some(stored) = history.stored()? {
        for (number, replayed) in changes.iter().filter(|(n, _)| (stored.first..=stored.last).contains(n)) {
            if history.record(*number)?.as_ref() != Some(replayed) {
                tracing::error!(
                    number,
                    "state history: block {number} differs from the log's; rewriting it from there"
                );
                history.truncate_now(number - 1)?;
                break;
            }
        }
    }
    let last = history.stored()?.map(|stored| stored.last);
    let newest = changes.last().map(|(number, _)| *number);
    for (number, changes) in changes {
        if last.is_none_or(|last| number > last) {
            history.append_now(number, &changes, Some(number) == newest)?;
        }
    }
    Ok(())
}

/// The polling filters the data dir keeps, with new ids from fresh randomness.
fn open_filters(config: &Config, data: &DataDir) -> Result<crate::filters::Filters, NodeError> {
    let rpc = &config.rpc;
    let limits = crate::filters::FilterLimits {
        filters_max: rpc.filters_max,
        filters_per_client_max: rpc.filters_per_client_max,
        idle_timeout: std::time::Duration::from_secs(rpc.filter_idle_timeout_s),
    };
    let mut seed = [0; 32];
    getrandom::fill(&mut seed).map_err(|e| io_error(Path::new("getrandom"))(std::io::Error::other(e)))?;
    Ok(crate::filters::Filters::open(&data.filters(), limits, seed, std::time::Instant::now())?)
}

/// An OP Stack chain's sequencing inputs; what it needs that an
/// Ethereum-mode chain does not is checked here.
fn op_sequencing(config: &Config, rollup: RollupConfig) -> Result<OpSequencing, NodeError> {
    let refused = |reason: &str| NodeError::OpStack { l2_chain_id: rollup.l2_chain_id, reason: reason.to_string() };
    if config.l1.rpc.is_empty() {
        return Err(refused("l1.rpc must name the L1 execution node's JSON-RPC"));
    }
    if config.ha.enabled {
        return Err(refused("ha is not supported for OP Stack chains yet: run it without [ha]"));
    }
    let l2_chain_id = rollup.l2_chain_id;
    OpSequencing::new(rollup, &config.l1).map_err(|reason| NodeError::OpStack { l2_chain_id, reason })
}

/// Who the block fees go to: `block.beneficiary`, or the block key.
fn beneficiary(config: &Config, signer: &dyn Signer) -> Address {
    if config.block.beneficiary.is_empty() {
        signer.address()
    } else {
        config.block.beneficiary.parse::<Address>().expect("validated with the config")
    }
}

/// Replays `records` (from the snapshot, if any) into the chain view, and
/// opens the block a single node goes on with.
fn restore(
    chain: &ChainSpec,
    config: &Config,
    data: &DataDir,
    records: Vec<Record>,
    (beneficiary, op): (Address, Option<&OpSequencing>),
    in_pair: bool,
    (events, metrics): (broadcast::Sender<Event>, Arc<Metrics>),
) -> Result<(ChainView, Arc<RwLock<Verifier>>, Rest), NodeError> {
    let records_count = records.len() as u64;
    let epochs = epoch_table(&records);
    let log_chain = tephra_batchlog::chain_of(records)?;
    let history = open_history(config, data)?;
    // The history's blocks after its last stored one are re-executed.
    let history_last = history.as_ref().map(|(_, last)| *last);
    let start = crate::boot::usable_snapshot(&data.snapshot(), &log_chain, history_last)?;
    let from_block = start.as_ref().map_or(0, |(_, meta)| meta.block_number);
    let tephra_batchlog::Chain { records, abandoned, .. } = log_chain;
    let replayed = replay::replay(chain, records, start, None, config.rpc.history_blocks_max, history_last)?;
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
    // leader's Open record (opening runs system calls on the state); an OP
    // Stack chain's sequencer opens it once it has the L1 origin.
    let (builder, open_txs, open_logged, open_op) = match replayed.open {
        Some(OpenReplay { builder, txs, op }) => (Some(builder), txs, true, op),
        None if !in_pair && op.is_none() => {
            let params = next_block_params(chain, &head, config, beneficiary, 0)?;
            (Some(BlockBuilder::open(params, &mut state)), Vec::new(), false, None)
        }
        None => (None, Vec::new(), false, None),
    };
    let params = match (&builder, op) {
        (Some(builder), _) => builder.params().clone(),
        (None, Some(op)) => op.provisional_params(chain, &head).map_err(|reason| NodeError::OpStack {
            l2_chain_id: chain.chain_id(),
            reason: format!("the next block does not open: {reason}"),
        })?,
        (None, None) => next_block_params(chain, &head, config, beneficiary, epoch)?,
    };
    let verifier = Arc::new(RwLock::new(
        Verifier::new(VerifyRules {
            chain_id: chain.chain_id(),
            spec: params.spec,
            block_gas_limit: params.gas_limit,
            base_fee_per_gas: params.base_fee_per_gas,
            allow_unprotected: config.verify.allow_unprotected,
        })
        .estimating_l1_data(op.is_some()),
    ));
    let resume_txs = if in_pair { open_txs.clone() } else { Vec::new() };
    // What a rewind abandoned and no block holds yet goes first (a restart
    // between a Rewind record and the rebuilt blocks).
    let rebuild = replay::reverify_abandoned(chain, &params, abandoned);
    let gas_used = builder.as_ref().map_or(0, |b| b.gas_used());
    let open = OpenBlock { params, txs: open_txs, gas_used, op: open_op };
    let outlets = Outlets { events, metrics, verifier: verifier.clone() };
    let pool = tephra_exec::pool::Pool::new(config.pool.clone());
    let replayed_head = head.header.number;
    let mut view = ChainView::restore(state, pool, replayed.blocks, config.rpc.history_blocks_max, open, outlets);
    if let Some((history, _)) = history {
        catch_up_history(&history, replayed_head, replayed.changes)?;
        view.set_history(history);
    }
    let rest = Rest { log, builder, open_logged, epoch, epochs, head: head.header, resume_txs, rebuild };
    Ok((view, verifier, rest))
}

/// The thread that owns the view: a single node's sequencer, or a pair
/// member's role thread (follow, or lead).
fn spawn_role(
    shared: &Arc<Shared>,
    ha: Option<Arc<Ha>>,
    lead: LeadParts,
    rest: Rest,
    follower: Option<tephra_ha::Follower>,
    core: usize,
) -> Result<thread::JoinHandle<Result<(), NodeError>>, NodeError> {
    let data_dir = &shared.config.node.data_dir;
    let spawned = match ha {
        None => {
            let open = OpenChain { log: rest.log, builder: rest.builder, open_logged: rest.open_logged, epoch: 0 };
            let sequencer = open_sequencer(shared, lead, open, None)?.rebuilding(rest.rebuild);
            thread::Builder::new().name("tephra-sequencer".into()).spawn(move || {
                pin_current_thread(&[core]);
                sequencer.run().map_err(NodeError::from)
            })
        }
        Some(ha) => {
            let resume = Resume {
                builder: rest.builder,
                open_txs: rest.resume_txs,
                head: rest.head,
                epoch: rest.epoch,
                epochs: rest.epochs,
            };
            let role = Role::new(ha.clone(), shared.clone(), lead, rest.log, resume, follower);
            ha.spawn(ha.clone().publish_status(shared.clone()));
            thread::Builder::new().name("tephra-role".into()).spawn(move || {
                pin_current_thread(&[core]);
                role.run()
            })
        }
    };
    spawned.map_err(io_error(data_dir))
}

/// The metrics endpoint, JSON-RPC and the UDP dataplane.
async fn serve(
    shared: &Arc<Shared>,
    placement: &Placement,
    rpc_runtime: &RpcRuntime,
) -> Result<(jsonrpsee::server::ServerHandle, jsonrpsee::Methods, Dataplane), NodeError> {
    let config = &shared.config;
    let metrics_listener =
        tokio::net::TcpListener::bind(config.metrics.listen).await.map_err(io_error(Path::new("metrics.listen")))?;
    let metrics_address = metrics_listener.local_addr().map_err(io_error(Path::new("metrics.listen")))?;
    tokio::spawn(crate::metrics::serve(metrics_listener, shared.metrics.clone(), shared.health.clone()));
    let rpc_methods: jsonrpsee::Methods = crate::rpc::module(shared.clone()).into();
    tokio::spawn(crate::rpc::follow_rewinds(shared.clone()));
    // Bound on JSON-RPC's runtime, so that its connections are that
    // runtime's I/O and tasks.
    let serving =
        rpc_runtime.handle().spawn(crate::rpc::serve(config.rpc.clone(), rpc_methods.clone(), shared.metrics.clone()));
    // A join error is the bind's task panicking: an I/O failure to the caller.
    let bound = serving.await.unwrap_or_else(|panicked| Err(std::io::Error::other(panicked)));
    let (rpc_address, rpc) = bound.map_err(io_error(Path::new("rpc.listen")))?;
    if let Ok(address) = config.rpc.flashblocks_listen.parse::<std::net::SocketAddr>() {
        let listener =
            tokio::net::TcpListener::bind(address).await.map_err(io_error(Path::new("rpc.flashblocks_listen")))?;
        tokio::spawn(crate::flashblocks::serve(listener, shared.clone()));
    }
    let std::net::SocketAddr::V4(udp_listen) = config.udp.listen else { unreachable!("checked by Config::validate") };
    let wake = Arc::new(tokio::sync::Notify::new());
    let notify = wake.clone();
    let (dataplane, ingress, egress) =
        Dataplane::start(&config.net, udp_listen, placement.net, Box::new(move || notify.notify_one()))?;
    let udp_address = dataplane.local_addr;
    shared.metrics.watch_net(&dataplane);
    tokio::spawn(crate::udp::serve(ingress, egress, dataplane.pool.clone(), wake, shared.clone()));
    tracing::info!(
        rpc = %rpc_address,
        udp = %udp_address,
        metrics = %metrics_address,
        block_time_s = config.block.block_time_s,
        "ready"
    );
    Ok((rpc, rpc_methods, dataplane))
}

/// JSON-RPC's own runtime, a worker on each of `[topology] rpc`'s cores:
/// a read waits for a free worker of its own, never behind a UDP datagram's
/// recoveries on the verify runtime (a busy tokio worker looks for new I/O
/// only between tasks). Shut down, its tasks dropped, with the node; never
/// dropped in place, which tokio refuses inside a runtime.
struct RpcRuntime(Option<tokio::runtime::Runtime>);

impl RpcRuntime {
    fn start(cores: &[usize]) -> std::io::Result<Self> {
        let pinned = cores.to_vec();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores.len().max(1))
            .thread_name("tephra-rpc")
            .on_thread_start(move || tephra_dataplane::topology::pin_current_thread(&pinned))
            .enable_all()
            .build()?;
        Ok(Self(Some(runtime)))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("running until dropped").handle()
    }
}

impl Drop for RpcRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A running node: its shared state and the handles to stop it.
pub struct Running {
    pub shared: Arc<Shared>,
    rpc: jsonrpsee::server::ServerHandle,
    rpc_methods: jsonrpsee::Methods,
    rpc_runtime: RpcRuntime,
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
        self.shared.health.request_shutdown();
        let (sequencer, dataplane) = (self.sequencer, self.dataplane);
        tokio::task::spawn_blocking(move || {
            dataplane.stop();
            sequencer.join()
        })
        .await
        .expect("join task")
        .expect("sequencer thread panicked")?;
        // Only now: calls in flight got their answers as the sequencer
        // made its last records durable.
        drop(self.rpc_runtime);
        Ok(())
    }

    /// Whether the sequencer thread has ended (an error stops the node).
    pub fn sequencer_finished(&self) -> bool {
        self.sequencer.is_finished()
    }

    /// `None` when ready; otherwise why not, as /ready says it.
    pub fn not_ready(&self) -> Option<String> {
        self.shared.health.not_ready()
    }

    /// Why this node stopped leading (or must restart to rejoin), if it did.
    pub fn deposed(&self) -> Option<String> {
        self.shared.health.deposed()
    }

    /// The sequencer loop's turn count (see `Shared::heartbeat`).
    pub fn heartbeat(&self) -> u64 {
        self.shared.heartbeat.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::{Address, U256};
    use tephra_exec::{AccountBefore, BlockChanges};

    use super::catch_up_history;
    use crate::history::History;

    /// Block changes that say `address` had `balance` before the block.
    fn balance_before(address: u8, balance: u64) -> BlockChanges {
        let before = AccountBefore { nonce: 0, balance: U256::from(balance), code_hash: Default::default() };
        BlockChanges::from_parts(vec![(Address::with_last_byte(address), Some(before))], Vec::new())
    }

    #[test]
    fn a_stored_history_is_verified_against_the_replay_and_rewritten_where_it_differs() {
        let dir = tephra_testkit::fresh_dir("history-verify");
        let history = History::open(&dir.join("history.redb"), 0, 1 << 20).unwrap();
        let ours: Vec<_> = (1..=4).map(|n| (n, balance_before(1, n))).collect();
        for (n, changes) in &ours {
            history.append_now(*n, changes, true).unwrap();
        }
        // The log's chain agrees up to block 2, then holds other blocks (a
        // standby's tail its new leader replaced), and one more.
        let log: Vec<_> =
            (2..=5).map(|n| (n, if n <= 2 { balance_before(1, n) } else { balance_before(2, 10 * n) })).collect();
        catch_up_history(&history, 5, log.clone()).unwrap();
        let stored = history.stored().unwrap().unwrap();
        assert_eq!((stored.first, stored.last), (1, 5));
        assert_eq!(history.record(1).unwrap().as_ref(), Some(&ours[0].1), "before the replay: kept");
        for (n, changes) in &log {
            assert_eq!(history.record(*n).unwrap().as_ref(), Some(changes), "block {n}");
        }
        // Agreeing, nothing is rewritten: a second start finds it so.
        catch_up_history(&history, 5, log.clone()).unwrap();
        assert_eq!(history.record(3).unwrap().as_ref(), Some(&log[1].1));
    }
}
