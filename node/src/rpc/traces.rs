//! Traces and access lists: a kept block replayed, or a call executed, under
//! revm-inspectors' tracers (`tephra_exec::trace`), on a blocking thread of
//! its own. A replay reads the state before its block through the state
//! history one key at a time (`LongStateAt`), so the sequencer never waits
//! for a trace; so does a call, at the tip on the newest sealed block's
//! state (without the history, the preconfirmed state under the view's lock,
//! as eth_call does). Every request is bounded by `[trace]`:
//! requests at once, wall time, steps and recorded bytes.
//!
//! ```text
//! debug_traceTransaction / debug_traceBlockBy* ──> DebugInspector (geth's tracers)      ┐
//! trace_transaction / trace_block               ──> TracingInspector, parity's shapes  ├─> Bounds ─> replay_block
//! trace_replayBlockTransactions / ..Transaction ──> TracingInspector, parity's results ┘
//! debug_traceCall / eth_createAccessList        ──> the same, on one call                 ─> Bounds ─> inspect_call
//! ```

use std::{collections::HashSet, fmt::Display, time::Instant};

use alloy_primitives::{Address, B256, U256, map::DefaultHashBuilder};
use alloy_rpc_types_eth::TransactionInfo;
use alloy_rpc_types_trace::{
    geth::{GethDebugTracingCallOptions, GethDebugTracingOptions, TraceResult},
    parity::{TraceResultsWithTransactionHash, TraceType},
};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use revm::{
    DatabaseRef, bytecode::Bytecode, context_interface::result::ExecutionResult, database::CacheDB, state::AccountInfo,
};
use revm_inspectors::{
    access_list::AccessListInspector,
    tracing::{
        DebugInspector, TraceLimitBehavior, TraceLimits, TracingInspector, TracingInspectorConfig, TransactionContext,
    },
};
use serde_json::{Value, json};
use tephra_exec::{
    BlockParams, CallRequest, DurableState,
    trace::{BlockInspector, Bounds, Inspected, ReplayError, ReplayTx, inspect_call, replay_block},
};
use tokio::sync::SemaphorePermit;

use super::{
    RpcResult,
    errors::{LIMIT_EXCEEDED, SERVER_ERROR, error, invalid},
    params::{BlockTag, CallObject, StateRead, list, param, parse_tag, resolve, state_read},
};
use crate::{
    config::TraceConfig,
    format::qty,
    history::{LongReadError, LongStateAt},
    shared::Shared,
};

/// A kept block, ready to be replayed on the state before it.
pub(super) struct Replay {
    pub(super) number: u64,
    hash: B256,
    parent_hash: B256,
    params: BlockParams,
    pub(super) txs: Vec<ReplayTx>,
    pub(super) tx_hashes: Vec<B256>,
}

impl Replay {
    pub(super) fn of(shared: &Shared, number: u64) -> Result<Self, ErrorObjectOwned> {
        if number == 0 {
            return Err(error(SERVER_ERROR, "genesis is not traceable", None));
        }
        let view = shared.view.read().expect("view lock");
        let block = view
            .block(number)
            .ok_or_else(|| error(SERVER_ERROR, format!("block {number} is not kept (rpc.history_blocks_max)"), None))?;
        Ok(Self {
            number,
            hash: block.hash,
            parent_hash: block.header.parent_hash,
            params: BlockParams::of_header(&shared.chain, &block.header),
            txs: block.txs.iter().map(|tx| tx.replay()).collect(),
            tx_hashes: block.txs.iter().map(|tx| tx.hash).collect(),
        })
    }

    /// Replays the block, handing `visit` each transaction of `inspect`.
    pub(super) fn run<'s, I, V: Display>(
        &self,
        shared: &'s Shared,
        inspect: std::ops::Range<usize>,
        inspector: I,
        visit: impl FnMut(Inspected<'_, LongStateAt<'s>, I>) -> Result<(), V>,
    ) -> Result<(), ErrorObjectOwned>
    where
        I: BlockInspector<CacheDB<LongStateAt<'s>>>,
    {
        let state = LongStateAt::new(&shared.view, self.number - 1, self.parent_hash);
        replay_block(state, &self.params, &self.txs, inspect, inspector, visit).map_err(replay_error)
    }

    fn context(&self, index: usize) -> TransactionContext {
        TransactionContext { block_hash: Some(self.hash), tx_index: Some(index), tx_hash: Some(self.tx_hashes[index]) }
    }

    pub(super) fn info(&self, index: usize) -> TransactionInfo {
        TransactionInfo {
            hash: Some(self.tx_hashes[index]),
            index: Some(index as u64),
            block_hash: Some(self.hash),
            block_number: Some(self.number),
            base_fee: Some(self.params.base_fee_per_gas),
            block_timestamp: Some(self.params.timestamp),
        }
    }
}

pub(super) fn replay_error<E: Display, V: Display>(e: ReplayError<E, V>) -> ErrorObjectOwned {
    match e {
        // revm-inspectors' byte budget names no key of tephra's; Bounds' do.
        ReplayError::Stopped(why) if why == RECORDED_BYTES_EXCEEDED => {
            error(LIMIT_EXCEEDED, "the trace passed its recorded bytes bound (trace.recorded_bytes_max)", None)
        }
        ReplayError::Stopped(why) => error(LIMIT_EXCEEDED, why, None),
        ReplayError::Diverged { .. } => {
            tracing::error!(error = %e, "a kept block replayed differently");
            error(SERVER_ERROR, e.to_string(), None)
        }
        e => error(SERVER_ERROR, e.to_string(), None),
    }
}

/// What revm-inspectors stops a recording with past its byte budget
/// (`TraceLimits`, with `TraceLimitBehavior::Halt`).
const RECORDED_BYTES_EXCEEDED: &str = "trace recorded byte limit exceeded";

/// A slot among `trace.concurrent_max`, held while a request runs.
pub(super) fn slot(shared: &Shared) -> Result<SemaphorePermit<'_>, ErrorObjectOwned> {
    shared
        .trace_slots
        .try_acquire()
        .map_err(|_| error(LIMIT_EXCEEDED, "busy: too many traces at once (trace.concurrent_max); try again", None))
}

/// `inner` within `[trace]`'s steps and time; `record_steps_max` cuts a
/// struct log (geth's `limit`).
pub(super) fn bounded<I>(inner: I, config: &TraceConfig, record_steps_max: u64) -> Bounds<I> {
    let deadline = Instant::now() + std::time::Duration::from_millis(config.timeout_ms);
    Bounds::new(inner, config.steps_max, record_steps_max, Box::new(move || Instant::now() >= deadline))
}

fn recording_limits(config: &TraceConfig) -> TraceLimits {
    let bytes = usize::try_from(config.recorded_bytes_max).unwrap_or(usize::MAX);
    TraceLimits::default().set_max_recorded_bytes(Some(bytes)).set_behavior(TraceLimitBehavior::Halt)
}

pub(super) fn tracing_inspector(config: TracingInspectorConfig, bounds: &TraceConfig) -> TracingInspector {
    TracingInspector::new(config).with_limits(recording_limits(bounds))
}

/// geth's tracer for `options`, its recording bounded.
fn debug_inspector(
    options: GethDebugTracingOptions,
    config: &TraceConfig,
) -> Result<Bounds<DebugInspector>, ErrorObjectOwned> {
    let record_steps_max = match options.config.limit {
        Some(limit) if options.tracer.is_none() && limit > 0 => limit,
        _ => u64::MAX,
    };
    let mut inspector = DebugInspector::new(options).map_err(|e| invalid(e.to_string()))?;
    let tracing = match &mut inspector {
        DebugInspector::CallTracer(tracing, _)
        | DebugInspector::PreStateTracer(tracing, _)
        | DebugInspector::FlatCallTracer(tracing)
        | DebugInspector::Erc7562Tracer(tracing, _)
        | DebugInspector::Default(tracing, _) => Some(tracing),
        // The others record little beyond what steps and time bound.
        _ => None,
    };
    if let Some(tracing) = tracing {
        let unbounded = std::mem::replace(tracing, TracingInspector::new(TracingInspectorConfig::none()));
        *tracing = unbounded.with_limits(recording_limits(config));
    }
    Ok(bounded(inspector, config, record_steps_max))
}

fn options(p: &[Value], index: usize) -> Result<GethDebugTracingOptions, ErrorObjectOwned> {
    match p.get(index) {
        None | Some(Value::Null) => Ok(GethDebugTracingOptions::default()),
        Some(_) => param(p, index, "tracing options"),
    }
}

/// The replay of the block of the kept transaction a request names first,
/// the transaction's index in it, and a trace slot, held while it runs.
pub(super) fn transaction_replay<'s>(
    p: &[Value],
    shared: &'s Shared,
) -> Result<(Replay, usize, SemaphorePermit<'s>), ErrorObjectOwned> {
    let hash: B256 = param(p, 0, "transaction hash")?;
    let slot = slot(shared)?;
    let (number, index) = locate(shared, &hash)?;
    Ok((Replay::of(shared, number)?, index, slot))
}

/// A kept transaction's place: its block and index.
fn locate(shared: &Shared, hash: &B256) -> Result<(u64, usize), ErrorObjectOwned> {
    let view = shared.view.read().expect("view lock");
    match view.tx(hash) {
        Some((number, index, _)) if number <= view.head().header.number => Ok((number, index)),
        Some(_) => Err(error(SERVER_ERROR, "transaction is preconfirmed but its block is not sealed yet", None)),
        None => Err(error(SERVER_ERROR, "transaction not found", None)),
    }
}

/// A sealed block a request names; `None` for one the chain has not.
pub(super) fn sealed_block(shared: &Shared, tag: BlockTag) -> Result<Option<u64>, ErrorObjectOwned> {
    if tag == BlockTag::Pending {
        return Err(invalid("the pending block is not traceable: it is not sealed"));
    }
    let view = shared.view.read().expect("view lock");
    Ok(resolve(&view, tag).filter(|n| *n <= view.head().header.number))
}

pub(super) fn json_of(value: impl serde::Serialize) -> RpcResult {
    serde_json::to_value(value).map_err(|e| error(SERVER_ERROR, e.to_string(), None))
}

/// A result a visitor produced, or why it could not.
pub(super) fn taken<T>(value: Option<T>) -> Result<T, ErrorObjectOwned> {
    value.ok_or_else(|| error(SERVER_ERROR, "the trace produced nothing", None))
}

pub(super) fn debug_trace_transaction(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let inspector = debug_inspector(options(&p, 1)?, &shared.config.trace)?;
    let (replay, index, _slot) = transaction_replay(&p, shared)?;
    let mut trace = None;
    replay.run(shared, index..index + 1, inspector, |seen| {
        let context = Some(replay.context(seen.index));
        trace = Some(seen.inspector.inner.get_result(context, seen.tx, seen.block, seen.outcome, seen.state)?);
        Ok::<_, revm_inspectors::tracing::DebugInspectorError<_>>(())
    })?;
    json_of(taken(trace)?)
}

/// debug_traceBlockByNumber (`by_hash` false) and debug_traceBlockByHash.
pub(super) fn debug_trace_block(params: &Params<'_>, shared: &Shared, by_hash: bool) -> RpcResult {
    let p = list(params)?;
    let tag = if by_hash { BlockTag::Hash(param(&p, 0, "block hash")?) } else { parse_tag(p.first())? };
    let inspector = debug_inspector(options(&p, 1)?, &shared.config.trace)?;
    let _slot = slot(shared)?;
    let number = sealed_block(shared, tag)?.ok_or_else(|| error(SERVER_ERROR, "block not found", None))?;
    let replay = Replay::of(shared, number)?;
    let mut traces = Vec::with_capacity(replay.txs.len());
    replay.run(shared, 0..replay.txs.len(), inspector, |seen| {
        let context = Some(replay.context(seen.index));
        let inspector = &mut seen.inspector.inner;
        let result =
            inspector.get_result(context, seen.tx, seen.block, seen.outcome, seen.state).map_err(|e| e.to_string())?;
        traces.push(TraceResult::Success { result, tx_hash: Some(replay.tx_hashes[seen.index]) });
        seen.inspector.inner.fuse().map_err(|e| e.to_string())?;
        seen.inspector.reset();
        Ok::<_, String>(())
    })?;
    json_of(traces)
}

pub(super) fn debug_trace_call(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let request = param::<CallObject>(&p, 0, "transaction")?.into_request()?;
    let call_options: GethDebugTracingCallOptions = match p.get(2) {
        None | Some(Value::Null) => GethDebugTracingCallOptions::default(),
        Some(_) => param(&p, 2, "tracing options")?,
    };
    if call_options.state_overrides.is_some() || call_options.block_overrides.is_some() {
        return Err(invalid("stateOverrides and blockOverrides are not supported"));
    }
    let inspector = debug_inspector(call_options.tracing_options, &shared.config.trace)?;
    let _slot = slot(shared)?;
    let tag = parse_tag(p.get(1))?;
    let mut trace = None;
    with_call_state(shared, tag, |state, block| {
        inspect_call(state, block, &request, inspector, |seen| {
            trace = Some(seen.inspector.inner.get_result(None, seen.tx, seen.block, seen.outcome, seen.state)?);
            Ok::<_, revm_inspectors::tracing::DebugInspectorError<_>>(())
        })
        .map_err(replay_error)
    })?;
    json_of(taken(trace)?)
}

/// The state a traced call reads: the preconfirmed tip, read under the
/// view's lock held by the caller (as eth_call; without the state history),
/// or the state after a sealed block, through the history one read at a time.
enum CallState<'a> {
    Tip(DurableState<'a>),
    At(LongStateAt<'a>),
}

impl DatabaseRef for CallState<'_> {
    type Error = LongReadError;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        match self {
            Self::Tip(state) => Ok(state.basic_ref(address).unwrap_or_else(|never| match never {})),
            Self::At(state) => state.basic_ref(address),
        }
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        match self {
            Self::Tip(state) => Ok(state.code_by_hash_ref(code_hash).unwrap_or_else(|never| match never {})),
            Self::At(state) => state.code_by_hash_ref(code_hash),
        }
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        match self {
            Self::Tip(state) => Ok(state.storage_ref(address, index).unwrap_or_else(|never| match never {})),
            Self::At(state) => state.storage_ref(address, index),
        }
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        match self {
            Self::Tip(state) => Ok(state.block_hash_ref(number).unwrap_or_else(|never| match never {})),
            Self::At(state) => state.block_hash_ref(number),
        }
    }
}

/// Runs `run` on the state a call at `tag` reads, in the block it runs in.
/// At the tip: with the state history, the newest sealed block's state, read
/// a key at a time, in the open block (so a long trace never holds the
/// sequencer back; the open block's preconfirmed transactions, at most one
/// block time old, are not seen); without it, the preconfirmed state under
/// the view's lock, as eth_call. At block N: N's state, in N's own header.
fn with_call_state<T>(
    shared: &Shared,
    tag: BlockTag,
    run: impl FnOnce(CallState<'_>, &BlockParams) -> Result<T, ErrorObjectOwned>,
) -> Result<T, ErrorObjectOwned> {
    let (read, open, head) = {
        let view = shared.view.read().expect("view lock");
        let head = view.history().is_some().then(|| (view.head().header.number, view.head().hash));
        (state_read(&view, tag)?, view.open_block().params.clone(), head)
    };
    match (read, head) {
        (StateRead::Tip, Some((number, hash))) => {
            run(CallState::At(LongStateAt::new(&shared.view, number, hash)), &open)
        }
        (StateRead::Tip, None) => {
            let view = shared.view.read().expect("view lock");
            run(CallState::Tip(view.state().durable()), &view.open_block().params)
        }
        (StateRead::At(n), _) => {
            let (hash, block) = {
                let view = shared.view.read().expect("view lock");
                let block = view.block(n).ok_or_else(|| {
                    error(SERVER_ERROR, format!("block {n} is not kept (rpc.history_blocks_max)"), None)
                })?;
                (block.hash, BlockParams::of_header(&shared.chain, &block.header))
            };
            run(CallState::At(LongStateAt::new(&shared.view, n, hash)), &block)
        }
    }
}

/// trace_transaction: parity's flat traces of one kept transaction.
pub(super) fn trace_transaction(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let (replay, index, _slot) = transaction_replay(&list(params)?, shared)?;
    let traces = parity_traces(shared, &replay, index..index + 1)?;
    json_of(traces)
}

/// trace_block: parity's flat traces of every transaction of a block; null
/// for a block the chain has not.
pub(super) fn trace_block(params: &Params<'_>, shared: &Shared) -> RpcResult {
    over_sealed_block(params, shared, |replay, _| json_of(parity_traces(shared, replay, 0..replay.txs.len())?))
}

/// Runs `trace` on the replay of the sealed block a trace_* request names
/// first (with the request's parameters), holding a trace slot: null for a
/// block the chain has not, an empty list for genesis (no transactions).
fn over_sealed_block(
    params: &Params<'_>,
    shared: &Shared,
    trace: impl FnOnce(&Replay, &[Value]) -> RpcResult,
) -> RpcResult {
    let p = list(params)?;
    let tag = parse_tag(p.first())?;
    let _slot = slot(shared)?;
    let Some(number) = sealed_block(shared, tag)? else { return Ok(Value::Null) };
    if number == 0 {
        return Ok(json!([]));
    }
    trace(&Replay::of(shared, number)?, &p)
}

/// Replays the transactions `inspect` of `replay` under parity's tracer set
/// up by `config`, handing each one's finished tracer, with what the replay
/// saw, to `take`.
pub(super) fn with_parity_tracer<'s, V: Display>(
    shared: &'s Shared,
    replay: &Replay,
    inspect: std::ops::Range<usize>,
    config: TracingInspectorConfig,
    mut take: impl FnMut(TracingInspector, &Inspected<'_, LongStateAt<'s>, Bounds<TracingInspector>>) -> Result<(), V>,
) -> Result<(), ErrorObjectOwned> {
    let bounds = &shared.config.trace;
    let fresh = || tracing_inspector(config, bounds);
    replay.run(shared, inspect, bounded(fresh(), bounds, u64::MAX), |seen| {
        let tracer = std::mem::replace(&mut seen.inspector.inner, fresh());
        seen.inspector.reset();
        take(tracer, &seen)
    })
}

pub(super) fn parity_traces(
    shared: &Shared,
    replay: &Replay,
    inspect: std::ops::Range<usize>,
) -> Result<Vec<alloy_rpc_types_trace::parity::LocalizedTransactionTrace>, ErrorObjectOwned> {
    let mut traces = Vec::new();
    with_parity_tracer(shared, replay, inspect, TracingInspectorConfig::default_parity(), |tracer, seen| {
        traces.extend(tracer.into_parity_builder().into_localized_transaction_traces(replay.info(seen.index)));
        Ok::<_, std::convert::Infallible>(())
    })?;
    Ok(traces)
}

fn trace_types(p: &[Value], index: usize) -> Result<HashSet<TraceType, DefaultHashBuilder>, ErrorObjectOwned> {
    param(p, index, "trace types")
}

/// trace_replayBlockTransactions: parity's trace, vmTrace and stateDiff
/// of each transaction of a block, as asked.
pub(super) fn trace_replay_block_transactions(params: &Params<'_>, shared: &Shared) -> RpcResult {
    over_sealed_block(params, shared, |replay, p| {
        json_of(replayed(shared, replay, 0..replay.txs.len(), &trace_types(p, 1)?)?)
    })
}

/// trace_replayTransaction: the same for one kept transaction.
pub(super) fn trace_replay_transaction(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let types = trace_types(&p, 1)?;
    let (replay, index, _slot) = transaction_replay(&p, shared)?;
    let mut results = replayed(shared, &replay, index..index + 1, &types)?;
    json_of(taken(results.pop())?.full_trace)
}

fn replayed(
    shared: &Shared,
    replay: &Replay,
    inspect: std::ops::Range<usize>,
    types: &HashSet<TraceType, DefaultHashBuilder>,
) -> Result<Vec<TraceResultsWithTransactionHash>, ErrorObjectOwned> {
    let mut results = Vec::new();
    with_parity_tracer(shared, replay, inspect, TracingInspectorConfig::from_parity_config(types), |tracer, seen| {
        let full_trace =
            tracer.into_parity_builder().into_trace_results_with_state(seen.outcome, types, &*seen.state)?;
        results.push(TraceResultsWithTransactionHash { full_trace, transaction_hash: replay.tx_hashes[seen.index] });
        Ok::<_, crate::history::LongReadError>(())
    })?;
    Ok(results)
}

/// eth_createAccessList: the storage a call touches, as an access list, and
/// the gas the call uses with it: two executions, as anvil and reth do.
pub(super) fn create_access_list(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let request: CallRequest = param::<CallObject>(&p, 0, "transaction")?.into_request()?;
    let tag = parse_tag(p.get(1))?;
    let config = &shared.config.trace;
    let _slot = slot(shared)?;
    let given = request.access_list.clone().unwrap_or_default();
    let access_list = with_call_state(shared, tag, |state, block| {
        let mut list = None;
        let inspector = bounded(AccessListInspector::new(given), config, u64::MAX);
        inspect_call(state, block, &request, inspector, |seen| {
            // A set, in a stable order: by address, each one's keys sorted.
            let mut access_list = seen.inspector.inner.access_list();
            access_list.0.sort_by_key(|item| item.address);
            list = Some(access_list);
            Ok::<_, std::convert::Infallible>(())
        })
        .map_err(replay_error)?;
        taken(list)
    })?;
    let with_list = CallRequest { access_list: Some(access_list.clone()), ..request };
    let (gas_used, failure) = with_call_state(shared, tag, |state, block| {
        let mut used = None;
        let inspector = bounded(AccessListInspector::new(access_list.clone()), config, u64::MAX);
        inspect_call(state, block, &with_list, inspector, |seen| {
            let result = &seen.outcome.result;
            let failure = (!result.is_success()).then(|| match result {
                ExecutionResult::Revert { .. } => "execution reverted".to_string(),
                ExecutionResult::Halt { reason, .. } => format!("{reason:?}"),
                ExecutionResult::Success { .. } => unreachable!("a failure"),
            });
            used = Some((result.tx_gas_used(), failure));
            Ok::<_, std::convert::Infallible>(())
        })
        .map_err(replay_error)?;
        taken(used)
    })?;
    let mut answer = json!({"accessList": access_list, "gasUsed": qty(gas_used)});
    if let Some(failure) = failure {
        answer["error"] = json!(failure);
    }
    Ok(answer)
}
