//! Ethereum JSON-RPC over HTTP and WebSocket (one port): the methods wallets
//! and dapps use, with tephra's rejection codes in error data.

use std::{collections::HashMap, net::IpAddr, sync::Arc, time::Duration};

use alloy_consensus::Transaction as _;
use alloy_eips::eip2930::AccessList;
use alloy_primitives::{Address, B256, Bytes, U256};
use jsonrpsee::{
    PendingSubscriptionSink, RpcModule, SubscriptionMessage,
    core::middleware::RpcServiceBuilder,
    server::{BatchRequestConfig, Server, ServerConfig, ServerHandle, serve_with_graceful_shutdown, stop_channel},
    types::{ErrorObjectOwned, Params},
};
use serde::Deserialize;
use serde_json::{Value, json};
use tephra_exec::{
    CallOutcome, CallRequest, EstimateError,
    call::{self, HaltReason},
};
use tephra_types::{Reject, RejectCode};
use tokio::sync::{broadcast::error::RecvError, oneshot};

use crate::{
    chain_view::{ChainView, Event},
    config::RpcConfig,
    format::{self, Position, qty},
    shared::{Shared, SubmitOutcome, SubmitStatus},
    view::StoredTx,
};

type RpcResult = Result<Value, ErrorObjectOwned>;

const CLIENT_VERSION: &str = concat!("tephra/v", env!("CARGO_PKG_VERSION"));
/// Most blocks one eth_feeHistory may span (geth's bound).
const FEE_HISTORY_BLOCKS_MAX: u64 = 1024;
/// Generic server error, as geth uses it for rejected transactions.
const SERVER_ERROR: i32 = -32000;
const INVALID_PARAMS: i32 = -32602;
/// EIP-7966: the transaction did not make it in time / the node is not ready.
const SYNC_TIMEOUT: i32 = 4;
const SYNC_NOT_READY: i32 = 5;
/// geth's code for a reverted eth_call / eth_estimateGas.
const EXECUTION_REVERTED: i32 = 3;

fn error(code: i32, message: impl Into<String>, data: Option<Value>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, message.into(), data)
}

fn invalid(message: impl Into<String>) -> ErrorObjectOwned {
    error(INVALID_PARAMS, message, None)
}

/// A rejection: geth's code and message style, tephra's stable code in data.
fn rejected(reject: &Reject) -> ErrorObjectOwned {
    error(
        SERVER_ERROR,
        format!("{}: {}", reject.code.text(), reject.detail),
        Some(json!({"code": reject.code.as_u16(), "reason": reject.code.text()})),
    )
}

/// A block named by a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlockTag {
    Number(u64),
    Hash(B256),
    Latest,
    Pending,
    /// safe and finalized: the newest block the block key has signed.
    Signed,
    Earliest,
}

fn parse_tag(value: Option<&Value>) -> Result<BlockTag, ErrorObjectOwned> {
    let Some(value) = value else { return Ok(BlockTag::Latest) };
    if let Some(object) = value.as_object() {
        if let Some(hash) = object.get("blockHash") {
            return serde_json::from_value(hash.clone()).map(BlockTag::Hash).map_err(|e| invalid(e.to_string()));
        }
        return parse_tag(object.get("blockNumber"));
    }
    if value.is_null() {
        return Ok(BlockTag::Latest);
    }
    match value.as_str() {
        Some("latest") => Ok(BlockTag::Latest),
        Some("pending") => Ok(BlockTag::Pending),
        Some("safe") | Some("finalized") => Ok(BlockTag::Signed),
        Some("earliest") => Ok(BlockTag::Earliest),
        Some(text) if text.len() == 66 => text.parse().map(BlockTag::Hash).map_err(|_| invalid("bad block hash")),
        Some(text) => parse_u64(text).map(BlockTag::Number),
        None => value.as_u64().map(BlockTag::Number).ok_or_else(|| invalid("bad block tag")),
    }
}

fn parse_u64(text: &str) -> Result<u64, ErrorObjectOwned> {
    let digits = text.strip_prefix("0x").ok_or_else(|| invalid(format!("{text}: hex quantity expected")))?;
    u64::from_str_radix(digits, 16).map_err(|_| invalid(format!("{text}: not a quantity")))
}

fn param<T: for<'de> Deserialize<'de>>(list: &[Value], index: usize, name: &str) -> Result<T, ErrorObjectOwned> {
    let value = list.get(index).ok_or_else(|| invalid(format!("missing parameter {name}")))?;
    serde_json::from_value(value.clone()).map_err(|e| invalid(format!("{name}: {e}")))
}

fn list(params: &Params<'_>) -> Result<Vec<Value>, ErrorObjectOwned> {
    if params.is_object() {
        return Err(invalid("positional parameters expected"));
    }
    Ok(params.parse::<Option<Vec<Value>>>().map_err(|e| invalid(e.to_string()))?.unwrap_or_default())
}

/// A block number for a tag; `None` for pending.
fn resolve(view: &ChainView, tag: BlockTag) -> Option<u64> {
    match tag {
        BlockTag::Number(n) => Some(n),
        BlockTag::Hash(hash) => view.block_by_hash(&hash).map(|b| b.header.number),
        BlockTag::Latest => Some(view.head().header.number),
        BlockTag::Pending => None,
        BlockTag::Signed => Some(view.newest_signed()),
        BlockTag::Earliest => Some(0),
    }
}

/// State reads are served from the preconfirmed tip: tephra keeps no
/// historical state.
fn check_state_tag(view: &ChainView, tag: BlockTag) -> Result<(), ErrorObjectOwned> {
    match tag {
        BlockTag::Latest | BlockTag::Pending | BlockTag::Signed => Ok(()),
        other => match resolve(view, other) {
            Some(n) if n >= view.head().header.number => Ok(()),
            Some(n) => Err(error(SERVER_ERROR, format!("state at block {n} is not kept; ask for latest"), None)),
            None => Err(error(SERVER_ERROR, "unknown block", None)),
        },
    }
}

/// The transaction call object eth_call and eth_estimateGas take, as JSON
/// gives it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CallObject {
    from: Option<Address>,
    to: Option<Address>,
    gas: Option<U256>,
    gas_price: Option<U256>,
    max_fee_per_gas: Option<U256>,
    max_priority_fee_per_gas: Option<U256>,
    value: Option<U256>,
    data: Option<Bytes>,
    input: Option<Bytes>,
    nonce: Option<U256>,
    access_list: Option<AccessList>,
}

impl CallObject {
    /// The call as exec takes it; a quantity too large for its field is
    /// invalid params.
    fn into_request(self) -> Result<CallRequest, ErrorObjectOwned> {
        let max_fee_per_gas = self.max_fee_per_gas.map(|v| u128_of(v, "gas price")).transpose()?;
        // Beside a max fee the legacy price counts for nothing, so it cannot
        // be too large either.
        let gas_price = match max_fee_per_gas {
            Some(_) => None,
            None => self.gas_price.map(|v| u128_of(v, "gas price")).transpose()?,
        };
        let gas_limit = self.gas.map(|g| u64_of(g, "gas")).transpose()?;
        let nonce = self.nonce.map(|n| u64_of(n, "nonce")).transpose()?;
        let max_priority_fee_per_gas = self.max_priority_fee_per_gas.map(|v| u128_of(v, "priority fee")).transpose()?;
        Ok(CallRequest {
            from: self.from.unwrap_or_default(),
            to: self.to,
            gas_limit,
            gas_price,
            max_fee_per_gas,
            max_priority_fee_per_gas,
            value: self.value.unwrap_or_default(),
            input: self.input.or(self.data).unwrap_or_default(),
            nonce,
            access_list: self.access_list,
        })
    }
}

fn u64_of(value: U256, name: &str) -> Result<u64, ErrorObjectOwned> {
    u64::try_from(value).map_err(|_| invalid(format!("{name} too large")))
}

fn u128_of(value: U256, name: &str) -> Result<u128, ErrorObjectOwned> {
    u128::try_from(value).map_err(|_| invalid(format!("{name} too large")))
}

/// geth's shape for a revert: code 3, the reason decoded where it is an
/// `Error(string)`, the raw data attached.
fn revert_error(output: &Bytes) -> ErrorObjectOwned {
    let reason = (output.len() >= 68 && output[..4] == [0x08, 0xc3, 0x79, 0xa0])
        .then(|| {
            let len = usize::try_from(U256::from_be_slice(&output[36..68])).ok()?;
            output.get(68..68 + len).and_then(|s| std::str::from_utf8(s).ok()).map(str::to_owned)
        })
        .flatten();
    let message = reason.map_or("execution reverted".to_string(), |r| format!("execution reverted: {r}"));
    error(EXECUTION_REVERTED, message, Some(json!(output)))
}

fn halted_error(reason: &HaltReason) -> ErrorObjectOwned {
    error(SERVER_ERROR, format!("execution halted: {reason:?}"), None)
}

fn call_result(outcome: CallOutcome) -> RpcResult {
    match outcome {
        CallOutcome::Success { output, .. } => Ok(json!(output)),
        CallOutcome::Reverted(output) => Err(revert_error(&output)),
        CallOutcome::Halted(reason) => Err(halted_error(&reason)),
    }
}

/// Executes `request` on the preconfirmed state without committing.
fn call_on_view(shared: &Shared, request: &CallRequest) -> Result<CallOutcome, Reject> {
    let view = shared.view.read().expect("view lock");
    call::call(view.state(), &view.open_block().params, request)
}

fn estimate_gas(shared: &Shared, request: &CallRequest) -> RpcResult {
    let ceiling = call::gas_ceiling(&shared.view.read().expect("view lock").open_block().params, request);
    // Every try reads the view afresh: the sequencer waits for one call at a
    // time, never for the whole search.
    match call::estimate_gas(request, ceiling, |attempt| call_on_view(shared, attempt)) {
        Ok(gas_limit) => Ok(json!(qty(gas_limit))),
        Err(EstimateError::Rejected(reject)) => Err(rejected(&reject)),
        Err(EstimateError::Reverted(output)) => Err(revert_error(&output)),
        Err(EstimateError::Halted(reason)) => Err(halted_error(&reason)),
    }
}

fn submit(
    shared: &Shared,
    raw: &Bytes,
    wait: bool,
) -> Result<(B256, oneshot::Receiver<SubmitOutcome>), ErrorObjectOwned> {
    let verified = shared.verifier.read().expect("verifier lock").verify(raw).map_err(|reject| {
        shared.metrics.tx_received.inc();
        shared.reject_metric(&reject);
        rejected(&reject)
    })?;
    let hash = verified.hash;
    if shared.view.read().expect("view lock").holds_tx(&hash) {
        let reject = Reject::new(RejectCode::AlreadyKnown, format!("{hash} is already included"));
        shared.reject_metric(&reject);
        return Err(rejected(&reject));
    }
    let (reply, outcome) = oneshot::channel();
    shared.submit(verified, Some(reply), wait).map_err(|reject| rejected(&reject))?;
    Ok((hash, outcome))
}

fn receipt_of(view: &ChainView, hash: &B256, include_open: bool) -> Option<Value> {
    let (block_number, index, tx) = view.tx(hash)?;
    let block_hash = view.block(block_number).filter(|b| b.header.number == block_number).map(|b| b.hash);
    if block_hash.is_none() && !include_open {
        return None;
    }
    Some(format::receipt(tx, Position { block_number, block_hash, index }))
}

/// A log filter: addresses (any of) and topic positions (any of, or any).
#[derive(Debug, Default)]
struct LogFilter {
    addresses: Vec<Address>,
    topics: Vec<Vec<B256>>,
}

impl LogFilter {
    fn parse(value: Option<&Value>) -> Result<Self, ErrorObjectOwned> {
        let mut filter = LogFilter::default();
        let Some(object) = value.and_then(Value::as_object) else { return Ok(filter) };
        match object.get("address") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                for a in list {
                    filter.addresses.push(serde_json::from_value(a.clone()).map_err(|e| invalid(e.to_string()))?);
                }
            }
            Some(one) => {
                filter.addresses.push(serde_json::from_value(one.clone()).map_err(|e| invalid(e.to_string()))?)
            }
        }
        if let Some(Value::Array(topics)) = object.get("topics") {
            if topics.len() > 4 {
                return Err(invalid("at most 4 topic positions"));
            }
            for position in topics {
                filter.topics.push(match position {
                    Value::Null => Vec::new(),
                    Value::Array(any) => any
                        .iter()
                        .map(|t| serde_json::from_value(t.clone()).map_err(|e| invalid(e.to_string())))
                        .collect::<Result<_, _>>()?,
                    one => vec![serde_json::from_value(one.clone()).map_err(|e| invalid(e.to_string()))?],
                });
            }
        }
        Ok(filter)
    }

    fn matches(&self, log: &alloy_primitives::Log) -> bool {
        if !self.addresses.is_empty() && !self.addresses.contains(&log.address) {
            return false;
        }
        self.topics
            .iter()
            .enumerate()
            .all(|(i, any)| any.is_empty() || log.topics().get(i).is_some_and(|t| any.contains(t)))
    }
}

fn matching_logs(filter: &LogFilter, txs: &[StoredTx], number: u64, hash: Option<B256>, out: &mut Vec<Value>) {
    for (index, tx) in txs.iter().enumerate() {
        for (i, l) in tx.receipt.logs.iter().enumerate() {
            if filter.matches(l) {
                let at = Position { block_number: number, block_hash: hash, index };
                out.push(format::log(l, tx, at, tx.first_log_index + i as u64));
            }
        }
    }
}

fn get_logs(shared: &Shared, request: Option<&Value>) -> RpcResult {
    let filter = LogFilter::parse(request)?;
    let view = shared.view.read().expect("view lock");
    let object = request.and_then(Value::as_object);
    let (from, to) = if let Some(hash) = object.and_then(|o| o.get("blockHash")) {
        let hash: B256 = serde_json::from_value(hash.clone()).map_err(|e| invalid(e.to_string()))?;
        let n = view.block_by_hash(&hash).ok_or_else(|| error(SERVER_ERROR, "unknown block", None))?.header.number;
        (n, n)
    } else {
        let head = view.head().header.number;
        let pick = |key: &str| -> Result<u64, ErrorObjectOwned> {
            let tag = parse_tag(object.and_then(|o| o.get(key)))?;
            Ok(resolve(&view, tag).unwrap_or(head).min(head))
        };
        (pick("fromBlock")?, pick("toBlock")?)
    };
    if from > to {
        return Ok(json!([]));
    }
    let limits = &shared.config.rpc;
    if to - from >= limits.get_logs_block_range_max {
        return Err(error(
            -32005,
            format!("query spans {} blocks, at most {} are allowed", to - from + 1, limits.get_logs_block_range_max),
            None,
        ));
    }
    let mut out = Vec::new();
    for n in from..=to {
        if let Some(block) = view.block(n) {
            matching_logs(&filter, &block.txs, n, Some(block.hash), &mut out);
            if out.len() > limits.get_logs_results_max {
                return Err(error(
                    -32005,
                    format!("more than {} logs match; narrow the query", limits.get_logs_results_max),
                    None,
                ));
            }
        }
    }
    Ok(Value::Array(out))
}

fn fee_history(shared: &Shared, params: &[Value]) -> RpcResult {
    let count = match params.first() {
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| invalid("blockCount"))?,
        Some(Value::String(s)) => parse_u64(s)?,
        _ => return Err(invalid("missing parameter blockCount")),
    }
    .clamp(1, FEE_HISTORY_BLOCKS_MAX);
    let view = shared.view.read().expect("view lock");
    let head = view.head().header.number;
    let newest = resolve(&view, parse_tag(params.get(1))?).unwrap_or(head).min(head);
    let oldest = (newest + 1).saturating_sub(count).max(view.blocks().next().map_or(0, |b| b.header.number));
    let percentiles: Vec<f64> = params.get(2).and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default();
    let mut base_fees = Vec::new();
    let mut ratios = Vec::new();
    let mut rewards = Vec::new();
    for n in oldest..=newest {
        let Some(block) = view.block(n) else { continue };
        let base_fee = block.header.base_fee_per_gas.unwrap_or(0);
        base_fees.push(qty(base_fee));
        ratios.push(block.header.gas_used as f64 / block.header.gas_limit.max(1) as f64);
        // Tips weighted by gas used, as geth computes them.
        let mut tips: Vec<(u128, u64)> =
            block.txs.iter().map(|t| (t.envelope.effective_tip_per_gas(base_fee).unwrap_or(0), t.gas_used)).collect();
        tips.sort_unstable();
        let total: u64 = tips.iter().map(|t| t.1).sum();
        rewards.push(
            percentiles
                .iter()
                .map(|p| {
                    let threshold = total as f64 * p / 100.0;
                    let mut acc = 0u64;
                    let tip = tips.iter().find(|(_, gas)| {
                        acc += gas;
                        acc as f64 >= threshold
                    });
                    qty(tip.or(tips.last()).map_or(0, |t| t.0))
                })
                .collect::<Vec<_>>(),
        );
    }
    // One more: the base fee of the block after the newest.
    let next = if newest == head {
        view.open_block().params.base_fee_per_gas
    } else {
        view.block(newest + 1).and_then(|b| b.header.base_fee_per_gas).unwrap_or(0)
    };
    base_fees.push(qty(next));
    let mut out = json!({"oldestBlock": qty(oldest), "baseFeePerGas": base_fees, "gasUsedRatio": ratios});
    if !percentiles.is_empty() {
        out["reward"] = json!(rewards);
    }
    Ok(out)
}

fn block_by_tag(view: &ChainView, tag: BlockTag, full: bool) -> Value {
    if tag == BlockTag::Pending {
        return format::pending_block(view.open_block(), full);
    }
    let number = resolve(view, tag);
    number.and_then(|n| view.block(n)).map_or(Value::Null, |b| format::block(b, full))
}

pub fn module(shared: Arc<Shared>) -> RpcModule<Shared> {
    let chain_id = shared.chain.chain_id();
    let mut m = RpcModule::from_arc(shared);
    m.register_method("eth_chainId", move |_, _, _| -> RpcResult { Ok(json!(qty(chain_id))) }).expect("unique");
    m.register_method("net_version", move |_, _, _| -> RpcResult { Ok(json!(chain_id.to_string())) }).expect("unique");
    m.register_method("net_listening", |_, _, _| -> RpcResult { Ok(json!(true)) }).expect("unique");
    m.register_method("web3_clientVersion", |_, _, _| -> RpcResult { Ok(json!(CLIENT_VERSION)) }).expect("unique");
    m.register_method("eth_syncing", |_, _, _| -> RpcResult { Ok(json!(false)) }).expect("unique");
    // tephra's own: a transaction's signed preconfirmation, checkable back to the block key.
    m.register_method("tephra_getPreconfirmation", |p, s, _| -> RpcResult {
        let p = list(&p)?;
        let hash: B256 = param(&p, 0, "hash")?;
        let view = s.view.read().expect("view lock");
        Ok(view.tx(&hash).and_then(|(_, index, tx)| format::preconfirmation(tx, index)).unwrap_or(Value::Null))
    })
    .expect("unique");
    // tephra's own: the address every block signature recovers to.
    m.register_method("tephra_blockSigner", |_, s, _| -> RpcResult { Ok(json!(s.signer_address)) }).expect("unique");
    m.register_method("eth_accounts", |_, _, _| -> RpcResult { Ok(json!([])) }).expect("unique");
    m.register_method("eth_blockNumber", |_, s, _| -> RpcResult {
        Ok(json!(qty(s.view.read().expect("view lock").head().header.number)))
    })
    .expect("unique");
    m.register_method("eth_getBlockByNumber", |p, s, _| -> RpcResult {
        let p = list(&p)?;
        let tag = parse_tag(p.first())?;
        let full = p.get(1).and_then(Value::as_bool).unwrap_or(false);
        Ok(block_by_tag(&s.view.read().expect("view lock"), tag, full))
    })
    .expect("unique");
    m.register_method("eth_getBlockByHash", |p, s, _| -> RpcResult {
        let p = list(&p)?;
        let hash: B256 = param(&p, 0, "blockHash")?;
        let full = p.get(1).and_then(Value::as_bool).unwrap_or(false);
        let view = s.view.read().expect("view lock");
        Ok(view.block_by_hash(&hash).map_or(Value::Null, |b| format::block(b, full)))
    })
    .expect("unique");
    m.register_method("eth_getBalance", |p, s, _| -> RpcResult {
        let p = list(&p)?;
        let address: Address = param(&p, 0, "address")?;
        let view = s.view.read().expect("view lock");
        check_state_tag(&view, parse_tag(p.get(1))?)?;
        Ok(json!(format!("{:#x}", view.state().balance(&address))))
    })
    .expect("unique");
    m.register_method("eth_getTransactionCount", |p, s, _| -> RpcResult {
        let p = list(&p)?;
        let address: Address = param(&p, 0, "address")?;
        let tag = parse_tag(p.get(1))?;
        let view = s.view.read().expect("view lock");
        check_state_tag(&view, tag)?;
        let nonce = view.state().nonce(&address);
        let nonce = if tag == BlockTag::Pending { view.pool().next_nonce(&address, nonce) } else { nonce };
        Ok(json!(qty(nonce)))
    })
    .expect("unique");
    m.register_method("eth_getCode", |p, s, _| -> RpcResult {
        let p = list(&p)?;
        let address: Address = param(&p, 0, "address")?;
        let view = s.view.read().expect("view lock");
        check_state_tag(&view, parse_tag(p.get(1))?)?;
        let code = view
            .state()
            .account(&address)
            .and_then(|a| view.state().code(&a.code_hash))
            .map(|c| c.original_bytes())
            .unwrap_or_default();
        Ok(json!(code))
    })
    .expect("unique");
    m.register_method("eth_getStorageAt", |p, s, _| -> RpcResult {
        let p = list(&p)?;
        let address: Address = param(&p, 0, "address")?;
        let slot: U256 = param(&p, 1, "slot")?;
        let view = s.view.read().expect("view lock");
        check_state_tag(&view, parse_tag(p.get(2))?)?;
        Ok(json!(B256::from(view.state().storage_at(&address, slot))))
    })
    .expect("unique");
    m.register_method("eth_call", |p, s, _| -> RpcResult {
        let p = list(&p)?;
        let object: CallObject = param(&p, 0, "transaction")?;
        let tag = parse_tag(p.get(1))?;
        let view = s.view.read().expect("view lock");
        check_state_tag(&view, tag)?;
        let request = object.into_request()?;
        call_result(call::call(view.state(), &view.open_block().params, &request).map_err(|reject| rejected(&reject))?)
    })
    .expect("unique");
    m.register_method("eth_estimateGas", |p, s, _| -> RpcResult {
        let p = list(&p)?;
        let request = param::<CallObject>(&p, 0, "transaction")?.into_request()?;
        estimate_gas(s, &request)
    })
    .expect("unique");
    m.register_method("eth_gasPrice", |_, s, _| -> RpcResult {
        Ok(json!(qty(s.view.read().expect("view lock").open_block().params.base_fee_per_gas)))
    })
    .expect("unique");
    // Ordering is first come, first served: a tip buys nothing.
    m.register_method("eth_maxPriorityFeePerGas", |_, _, _| -> RpcResult { Ok(json!(qty(0u64))) }).expect("unique");
    m.register_method("eth_feeHistory", |p, s, _| -> RpcResult { fee_history(s, &list(&p)?) }).expect("unique");
    m.register_method("eth_getTransactionByHash", |p, s, _| -> RpcResult {
        let p = list(&p)?;
        let hash: B256 = param(&p, 0, "hash")?;
        let view = s.view.read().expect("view lock");
        Ok(view.tx(&hash).map_or(Value::Null, |(number, index, tx)| {
            let block_hash = view.block(number).map(|b| b.hash);
            format::transaction(tx, Some(Position { block_number: number, block_hash, index }))
        }))
    })
    .expect("unique");
    m.register_method("eth_getTransactionReceipt", |p, s, _| -> RpcResult {
        let p = list(&p)?;
        let hash: B256 = param(&p, 0, "hash")?;
        Ok(receipt_of(&s.view.read().expect("view lock"), &hash, false).unwrap_or(Value::Null))
    })
    .expect("unique");
    m.register_method("eth_getLogs", |p, s, _| -> RpcResult { get_logs(s, list(&p)?.first()) }).expect("unique");
    m.register_async_method("eth_sendRawTransaction", |p, s, _| async move {
        let p = list(&p)?;
        let raw: Bytes = param(&p, 0, "transaction")?;
        let (hash, outcome) = submit(&s, &raw, false)?;
        match outcome.await {
            Ok(Ok(_)) => Ok(json!(hash)),
            Ok(Err(reject)) => Err(rejected(&reject)),
            Err(_) => Err(error(SERVER_ERROR, "sequencer stopped", None)),
        }
    })
    .expect("unique");
    m.register_async_method("eth_sendRawTransactionSync", |p, s, _| async move {
        if !s.health.started() {
            return Err(error(SYNC_NOT_READY, "node is not ready", None));
        }
        let p = list(&p)?;
        let raw: Bytes = param(&p, 0, "transaction")?;
        let limits = &s.config.rpc;
        let timeout_ms = match p.get(1) {
            None | Some(Value::Null) => limits.send_raw_sync_timeout_ms_default,
            Some(Value::Number(n)) => n.as_u64().ok_or_else(|| invalid("timeout"))?,
            Some(Value::String(text)) => parse_u64(text)?,
            Some(_) => return Err(invalid("timeout must be milliseconds")),
        }
        .min(limits.send_raw_sync_timeout_ms_max);
        let (hash, outcome) = submit(&s, &raw, true)?;
        match tokio::time::timeout(Duration::from_millis(timeout_ms), outcome).await {
            Ok(Ok(Ok(SubmitStatus::Preconfirmed(_)))) => {
                let view = s.view.read().expect("view lock");
                let mut receipt = receipt_of(&view, &hash, true).unwrap_or(Value::Null);
                if let Some((_, index, tx)) = view.tx(&hash)
                    && let Some(preconf) = format::preconfirmation(tx, index)
                {
                    receipt["preconfirmation"] = preconf;
                }
                Ok(receipt)
            }
            Ok(Ok(Ok(SubmitStatus::Pooled))) => Err(error(SERVER_ERROR, "pooled without waiting", None)),
            Ok(Ok(Err(reject))) => Err(rejected(&reject)),
            Ok(Err(_)) => Err(error(SERVER_ERROR, "sequencer stopped", None)),
            Err(_) => Err(error(
                SYNC_TIMEOUT,
                format!("transaction {hash} was not preconfirmed within {timeout_ms} ms"),
                Some(json!(hash)),
            )),
        }
    })
    .expect("unique");
    m.register_subscription("eth_subscribe", "eth_subscription", "eth_unsubscribe", subscribe).expect("unique");
    m
}

async fn subscribe(
    params: Params<'static>,
    pending: PendingSubscriptionSink,
    shared: Arc<Shared>,
    _: jsonrpsee::Extensions,
) -> jsonrpsee::core::SubscriptionResult {
    let p = list(&params)?;
    let kind: String = param(&p, 0, "subscription")?;
    let filter = match kind.as_str() {
        "newHeads" | "preconfirmations" => LogFilter::default(),
        "logs" => LogFilter::parse(p.get(1))?,
        other => {
            pending.reject(invalid(format!("unknown subscription {other}"))).await;
            return Ok(());
        }
    };
    let mut events = shared.events.subscribe();
    let sink = pending.accept().await?;
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            // A subscriber too slow for the buffer is dropped rather than
            // holding memory for it.
            Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return Ok(()),
        };
        let messages: Vec<Value> = match (&event, kind.as_str()) {
            (Event::Sealed(block), "newHeads") => vec![format::header(&block.header, Some(block.hash))],
            (Event::Sealed(block), "logs") => {
                let mut out = Vec::new();
                matching_logs(&filter, &block.txs, block.header.number, Some(block.hash), &mut out);
                out
            }
            (Event::Preconfirmed { block_number, txs }, "preconfirmations") => txs
                .iter()
                .map(|tx| {
                    json!({
                        "transactionHash": tx.hash,
                        "blockNumber": qty(*block_number),
                        "status": if tx.receipt.status.coerce_status() { "0x1" } else { "0x0" },
                        "gasUsed": qty(tx.gas_used),
                    })
                })
                .collect(),
            _ => Vec::new(),
        };
        for message in messages {
            let message = SubscriptionMessage::from(serde_json::value::to_raw_value(&message)?);
            if sink.send(message).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// Subscription ids as geth makes them: hex strings (viem matches on them).
#[derive(Debug)]
struct HexIds {
    next: std::sync::atomic::AtomicU64,
    salt: B256,
}

impl jsonrpsee::core::traits::IdProvider for HexIds {
    fn next_id(&self) -> jsonrpsee::types::SubscriptionId<'static> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut input = self.salt.to_vec();
        input.extend_from_slice(&n.to_be_bytes());
        let id = alloy_primitives::keccak256(input);
        jsonrpsee::types::SubscriptionId::Str(format!("0x{}", hex::encode(&id[..16])).into())
    }
}

/// Open connections per client address: taken at accept, given back when the
/// connection ends. Holds only addresses with a connection open, so it is
/// bounded by `rpc.connections_max`.
#[derive(Debug, Default)]
struct ConnectionsPerClient(std::sync::Mutex<HashMap<IpAddr, u32>>);

impl ConnectionsPerClient {
    fn take(&self, client: IpAddr, max: u32) -> bool {
        let mut open = self.0.lock().expect("connections lock");
        let count = open.entry(client).or_insert(0);
        if *count >= max {
            return false;
        }
        *count += 1;
        true
    }

    fn give_back(&self, client: IpAddr) {
        let mut open = self.0.lock().expect("connections lock");
        if let Some(count) = open.get_mut(&client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&client);
            }
        }
    }
}

/// A client's connection, holding its place in `ConnectionsPerClient` until
/// the stream is dropped: after a WebSocket upgrade the stream lives on in
/// the upgraded connection, so the place is held as long as it is open.
struct CountedStream {
    stream: tokio::net::TcpStream,
    open: Arc<ConnectionsPerClient>,
    client: IpAddr,
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        self.open.give_back(self.client);
    }
}

impl tokio::io::AsyncRead for CountedStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for CountedStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Starts the JSON-RPC server (HTTP and WebSocket on one port) on `methods`.
/// Its own accept loop refuses a client address past
/// `rpc.connections_per_client_max` open connections, so that one client
/// cannot hold every connection `rpc.connections_max` allows, and gives each
/// connection its address's rate limit (`rpc_limit`).
pub async fn serve(
    limits: &RpcConfig,
    methods: jsonrpsee::Methods,
    metrics: Arc<crate::metrics::Metrics>,
) -> std::io::Result<(std::net::SocketAddr, ServerHandle)> {
    let config = ServerConfig::builder()
        .max_request_body_size(limits.request_size_max_bytes)
        .max_response_body_size(limits.response_size_max_bytes)
        .max_connections(limits.connections_max)
        .set_message_buffer_capacity(limits.subscription_buffer_max)
        .set_batch_request_config(BatchRequestConfig::Limit(limits.batch_size_max))
        .set_id_provider(HexIds {
            next: std::sync::atomic::AtomicU64::new(0),
            salt: alloy_primitives::keccak256(crate::sequencer::unix_ms().to_be_bytes()),
        })
        .build();
    let listener = tokio::net::TcpListener::bind(limits.listen).await?;
    let address = listener.local_addr()?;
    let (stop, handle) = stop_channel();
    let service = Server::builder().set_config(config).to_service_builder();
    let per_client_max = limits.connections_per_client_max;
    let open = Arc::new(ConnectionsPerClient::default());
    let buckets = crate::rpc_limit::ClientBuckets::new(limits, metrics.rpc_rate_limited.clone());
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = stop.clone().shutdown() => return,
            };
            // Out of file descriptors, say: the loop goes on with the next.
            let Ok((stream, client)) = accepted else { continue };
            if !open.take(client.ip(), per_client_max) {
                metrics.rpc_connections_refused.inc();
                continue;
            }
            let stream = CountedStream { stream, open: open.clone(), client: client.ip() };
            let buckets = buckets.clone();
            let limit = RpcServiceBuilder::new().layer_fn(move |inner| buckets.layer(client.ip(), inner));
            let service = service.clone().set_rpc_middleware(limit).build(methods.clone(), stop.clone());
            tokio::spawn(serve_with_graceful_shutdown(stream, service, stop.clone().shutdown()));
        }
    });
    Ok((address, handle))
}
