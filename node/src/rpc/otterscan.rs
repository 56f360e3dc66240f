//! Otterscan's `ots_*` methods at its API level 8, so that Otterscan runs
//! against tephra alone. What needs execution replays kept blocks
//! (`traces.rs`, the same `[trace]` bounds); what needs an address's past
//! reads the state history and the log index.
//!
//! ```text
//! ots_traceTransaction, ots_getInternalOperations, ots_getTransactionError ──> replay of the tx's block
//! ots_getTransactionBySenderAndNonce ──> binary search of the sender's nonce over the history ──> one block
//! ots_getContractCreator             ──> binary search of the code over the history ──> that block's traces
//! ots_searchTransactionsBefore/After ──> candidate blocks: the history (blocks that wrote the address)
//!        ∪ the log index (its logs, topics naming it, calls to it) ──> each candidate's traces, exactly
//! ```
//!
//! The address search covers the history's window, and finds every
//! transaction whose calls name the address (from, to, a creation by or of
//! it), as anvil's and Erigon's do, provided the block wrote the address,
//! logged it, or called it at the top: a call into a contract from another
//! contract that changes nothing of it and logs nothing is not found.

use alloy_primitives::{Address, B256, U256};
use alloy_rpc_types_trace::{
    otterscan::{ContractCreator, InternalOperation, OperationType, TraceEntry},
    parity::{Action, LocalizedTransactionTrace, TraceOutput},
};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use revm::{context_interface::result::ExecutionResult, inspector::NoOpInspector};
use revm_inspectors::tracing::{
    TracingInspectorConfig,
    types::{CallKind, CallTraceNode},
};
use serde_json::{Value, json};

use super::{
    RpcResult,
    blocks::receipt_of,
    errors::{LIMIT_EXCEEDED, SERVER_ERROR, error, invalid},
    params::{BlockTag, list, param},
    state::with_state_at,
    traces::{
        Replay, bounded, json_of, parity_traces, sealed_block, slot, taken, transaction_replay, with_parity_tracer,
    },
};
use crate::{chain_view::ChainView, format, shared::Shared};

/// The API level Otterscan 2 asks for at least.
const API_LEVEL: u64 = 8;

/// The most transactions one search page may ask for.
const SEARCH_PAGE_SIZE_MAX: usize = 100;

pub(super) fn api_level() -> RpcResult {
    Ok(json!(API_LEVEL))
}

/// ots_hasCode: whether the address holds code at the block.
pub(super) fn has_code(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let code = super::state::code(params, shared)?;
    Ok(json!(code.as_str().is_some_and(|hex| hex.len() > 2)))
}

/// ots_getTransactionError: a failed transaction's revert data (`0x` for
/// one that succeeded, or halted without any).
pub(super) fn transaction_error(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let (replay, index, _slot) = transaction_replay(&list(params)?, shared)?;
    let mut output = None;
    replay.run(shared, index..index + 1, bounded(NoOpInspector, &shared.config.trace, u64::MAX), |seen| {
        output = Some(match &seen.outcome.result {
            ExecutionResult::Revert { output, .. } => output.clone(),
            _ => Default::default(),
        });
        Ok::<_, std::convert::Infallible>(())
    })?;
    Ok(json!(taken(output)?))
}

/// The frames of a kept transaction, in the order they ran.
fn frames(params: &Params<'_>, shared: &Shared) -> Result<Vec<CallTraceNode>, ErrorObjectOwned> {
    let (replay, index, _slot) = transaction_replay(&list(params)?, shared)?;
    let mut frames = None;
    with_parity_tracer(shared, &replay, index..index + 1, TracingInspectorConfig::default_parity(), |tracer, _| {
        frames = Some(tracer.into_traces().into_nodes());
        Ok::<_, std::convert::Infallible>(())
    })?;
    taken(frames)
}

/// ots_getInternalOperations: the value a transaction moved, in the order
/// it ran: calls with value (its own included), every creation, and
/// self-destructs, as Erigon and anvil list them.
pub(super) fn internal_operations(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let mut operations = Vec::new();
    for node in frames(params, shared)? {
        let trace = &node.trace;
        let kind = match trace.kind {
            CallKind::Create => Some(OperationType::OpCreate),
            CallKind::Create2 => Some(OperationType::OpCreate2),
            CallKind::Call if !trace.value.is_zero() => Some(OperationType::OpTransfer),
            _ => None,
        };
        if let Some(r#type) = kind {
            operations.push(InternalOperation { r#type, from: trace.caller, to: trace.address, value: trace.value });
        }
        if let Some(contract) = trace.selfdestruct_address {
            operations.push(InternalOperation {
                r#type: OperationType::OpSelfDestruct,
                from: contract,
                to: trace.selfdestruct_refund_target.unwrap_or_default(),
                value: trace.selfdestruct_transferred_value.unwrap_or_default(),
            });
        }
    }
    json_of(operations)
}

/// ots_traceTransaction: every frame of a transaction, depth first, with
/// its kind, depth, value (none for static and delegate calls), input and
/// output; a self-destruct as a frame below the one that ran it.
pub(super) fn trace_transaction(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let mut entries = Vec::new();
    for node in frames(params, shared)? {
        let trace = &node.trace;
        let value = (!matches!(trace.kind, CallKind::StaticCall | CallKind::DelegateCall)).then_some(trace.value);
        entries.push(TraceEntry {
            r#type: trace.kind.to_string(),
            depth: u32::try_from(trace.depth).unwrap_or(u32::MAX),
            from: trace.caller,
            to: trace.address,
            value,
            input: trace.data.clone(),
            output: trace.output.clone(),
        });
        if let Some(contract) = trace.selfdestruct_address {
            entries.push(TraceEntry {
                r#type: "SELFDESTRUCT".to_string(),
                depth: u32::try_from(trace.depth + 1).unwrap_or(u32::MAX),
                from: contract,
                to: trace.selfdestruct_refund_target.unwrap_or_default(),
                value: trace.selfdestruct_transferred_value,
                input: Default::default(),
                output: Default::default(),
            });
        }
    }
    json_of(entries)
}

/// A sealed block the request names by number (`by_hash` false) or hash.
fn named_block(p: &[Value], shared: &Shared, by_hash: bool) -> Result<u64, ErrorObjectOwned> {
    let tag = if by_hash {
        BlockTag::Hash(param(p, 0, "block hash")?)
    } else {
        BlockTag::Number(param::<U256>(p, 0, "block number")?.saturating_to())
    };
    sealed_block(shared, tag)?.ok_or_else(|| error(SERVER_ERROR, "block not found", None))
}

/// ots_getBlockDetails / ByHash: the block without its transactions, with
/// their count, its fees, and no issuance (none since the merge).
pub(super) fn block_details(params: &Params<'_>, shared: &Shared, by_hash: bool) -> RpcResult {
    let p = list(params)?;
    let number = named_block(&p, shared, by_hash)?;
    let view = shared.view.read().expect("view lock");
    let block = view.block(number).ok_or_else(|| error(SERVER_ERROR, "block not found", None))?;
    let mut details = format::block(block, false);
    let object = details.as_object_mut().expect("a block is an object");
    object.remove("transactions");
    object.insert("transactionCount".into(), json!(block.txs.len()));
    let fees: U256 = block.txs.iter().map(|tx| U256::from(tx.gas_used) * U256::from(tx.effective_gas_price)).sum();
    Ok(json!({
        "block": details,
        "issuance": {"blockReward": "0x0", "uncleReward": "0x0", "issuance": "0x0"},
        "totalFees": fees,
    }))
}

/// ots_getBlockTransactions: a page of a block's transactions (page 0 the
/// first), with their receipts and the block's time.
pub(super) fn block_transactions(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let number = named_block(&p, shared, false)?;
    let page: usize = param(&p, 1, "page number")?;
    let page_size: usize = param(&p, 2, "page size")?;
    if page_size == 0 || page_size > SEARCH_PAGE_SIZE_MAX {
        return Err(invalid(format!("page size: from 1 to {SEARCH_PAGE_SIZE_MAX}")));
    }
    let view = shared.view.read().expect("view lock");
    let block = view.block(number).ok_or_else(|| error(SERVER_ERROR, "block not found", None))?;
    let mut full = format::block(block, true);
    let object = full.as_object_mut().expect("a block is an object");
    // Each input cut to its selector, as Erigon does: a list shows the
    // method called, and a page stays small.
    let page_txs: Vec<Value> = object["transactions"]
        .as_array()
        .expect("a full block lists its transactions")
        .iter()
        .skip(page.saturating_mul(page_size))
        .take(page_size)
        .map(|tx| {
            let mut tx = tx.clone();
            if let Some(input) = tx["input"].as_str() {
                tx["input"] = json!(input.chars().take(2 + 8).collect::<String>());
            }
            tx
        })
        .collect();
    let receipts = page_txs
        .iter()
        .map(|tx| {
            let hash: B256 = serde_json::from_value(tx["hash"].clone()).expect("a transaction's hash");
            timed_receipt(&view, &hash)
        })
        .collect::<Result<Vec<_>, _>>()?;
    object.insert("transactions".into(), Value::Array(page_txs));
    object.insert("transactionCount".into(), json!(block.txs.len()));
    Ok(json!({"fullblock": full, "receipts": receipts}))
}

/// A sealed transaction's receipt with its block's time, as Otterscan's
/// lists show them.
fn timed_receipt(view: &ChainView, hash: &B256) -> Result<Value, ErrorObjectOwned> {
    let (number, _, _) = view.tx(hash).ok_or_else(|| error(SERVER_ERROR, "transaction not found", None))?;
    let mut receipt = receipt_of(view, hash, false).ok_or_else(|| error(SERVER_ERROR, "receipt not found", None))?;
    let timestamp = view.block(number).map(|b| b.header.timestamp).unwrap_or_default();
    receipt["timestamp"] = json!(format::qty(timestamp));
    Ok(receipt)
}

/// ots_getTransactionBySenderAndNonce: the hash of the sender's transaction
/// with that nonce, or null. The sender's nonce over the history finds its
/// block (a binary search); that block's transactions find it.
pub(super) fn transaction_by_sender_and_nonce(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let sender: Address = param(&p, 0, "sender")?;
    let nonce: u64 = param::<U256>(&p, 1, "nonce")?.saturating_to();
    let view = shared.view.read().expect("view lock");
    let nonce_at = |n: u64| with_state_at(&view, n, |state| state.account(&sender).map_or(0, |a| a.nonce));
    let (earliest, head) = history_window(&view)?;
    if nonce_at(head)? <= nonce {
        return Ok(Value::Null);
    }
    if nonce_at(earliest)? > nonce {
        return Err(before_window(earliest));
    }
    // The first block after which the sender's nonce is past `nonce`.
    let (mut low, mut high) = (earliest, head);
    while low + 1 < high {
        let mid = low + (high - low) / 2;
        if nonce_at(mid)? > nonce { high = mid } else { low = mid }
    }
    let block = view.block(high).ok_or_else(|| error(SERVER_ERROR, format!("block {high} is not kept"), None))?;
    let found =
        block.txs.iter().find(|tx| tx.sender == sender && alloy_consensus::Transaction::nonce(&tx.envelope) == nonce);
    Ok(found.map_or(Value::Null, |tx| json!(tx.hash)))
}

/// The history's window: its earliest block and the head.
fn history_window(view: &ChainView) -> Result<(u64, u64), ErrorObjectOwned> {
    let history = view.history().ok_or_else(|| error(SERVER_ERROR, "the state history is off", None))?;
    let head = view.head().header.number;
    Ok((history.earliest(view).map_err(|e| error(SERVER_ERROR, e.to_string(), None))?, head))
}

fn before_window(earliest: u64) -> ErrorObjectOwned {
    error(SERVER_ERROR, format!("it happened before block {earliest}, the earliest of the state history"), None)
}

/// ots_getContractCreator: the transaction that made the contract and the
/// address that made it (a contract, for a factory's), or null for an
/// address without code. The code over the history finds the block (a
/// binary search); that block's traces find the creation.
pub(super) fn contract_creator(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let address: Address = param(&p, 0, "address")?;
    let block = {
        let view = shared.view.read().expect("view lock");
        let has_code = |n: u64| with_state_at(&view, n, |state| !state.code(&address).original_bytes().is_empty());
        let (earliest, head) = history_window(&view)?;
        if !has_code(head)? {
            return Ok(Value::Null);
        }
        if has_code(earliest)? {
            return Err(before_window(earliest));
        }
        let (mut low, mut high) = (earliest, head);
        while low + 1 < high {
            let mid = low + (high - low) / 2;
            if has_code(mid)? { high = mid } else { low = mid }
        }
        high
    };
    let _slot = slot(shared)?;
    let replay = Replay::of(shared, block)?;
    let traces = parity_traces(shared, &replay, 0..replay.txs.len())?;
    let creator = traces.iter().find_map(|t| match (&t.trace.action, &t.trace.result) {
        (Action::Create(create), Some(TraceOutput::Create(made))) if made.address == address => {
            Some(ContractCreator { hash: t.transaction_hash?, creator: create.from })
        }
        _ => None,
    });
    json_of(creator)
}

/// ots_searchTransactionsBefore (`before`) and ots_searchTransactionsAfter:
/// a page of the transactions whose calls name the address, newest first,
/// in whole blocks from the one asked (0: from the head, or from genesis
/// after), until at least `pageSize`.
pub(super) fn search(params: &Params<'_>, shared: &Shared, before: bool) -> RpcResult {
    let p = list(params)?;
    let address: Address = param(&p, 0, "address")?;
    let from_block: u64 = param(&p, 1, "block number")?;
    let page_size: usize = param(&p, 2, "page size")?;
    if page_size == 0 || page_size > SEARCH_PAGE_SIZE_MAX {
        return Err(invalid(format!("page size: from 1 to {SEARCH_PAGE_SIZE_MAX}")));
    }
    let _slot = slot(shared)?;
    let candidates = {
        let view = shared.view.read().expect("view lock");
        let (earliest, head) = history_window(&view)?;
        let (low, high) = match (before, from_block) {
            (true, 0) => (earliest.max(1), head),
            (true, n) => (earliest.max(1), n.saturating_sub(1).min(head)),
            (false, 0) => (earliest.max(1), head),
            (false, n) => (n.saturating_add(1).max(earliest), head),
        };
        let history = view.history().ok_or_else(|| error(SERVER_ERROR, "the state history is off", None))?;
        let mut blocks = history
            .blocks_changing(&address, low, high)
            .map_err(|e| error(SERVER_ERROR, format!("the state history could not be read: {e}"), None))?;
        blocks.extend(view.blocks_mentioning(&address, low, high));
        blocks.sort_unstable();
        blocks.dedup();
        if before {
            blocks.reverse();
        }
        blocks
    };
    let mut hashes = Vec::new();
    let mut scanned = 0;
    // One time bound for the whole search: each block's replay has its own.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(shared.config.trace.timeout_ms);
    for &number in &candidates {
        if hashes.len() >= page_size {
            break;
        }
        if std::time::Instant::now() >= deadline {
            return Err(error(
                LIMIT_EXCEEDED,
                "the search passed its time bound (trace.timeout_ms); ask from a later block or for a smaller page",
                None,
            ));
        }
        scanned += 1;
        let replay = Replay::of(shared, number)?;
        let traces = parity_traces(shared, &replay, 0..replay.txs.len())?;
        // Newest first within the block, each transaction once.
        let mut seen = std::collections::HashSet::new();
        hashes.extend(traces.iter().rev().filter_map(|t| mentions(t, &address)).filter(|hash| seen.insert(*hash)));
    }
    let exhausted = scanned == candidates.len();
    if !before {
        hashes.reverse();
    }
    let view = shared.view.read().expect("view lock");
    let txs = hashes
        .iter()
        .map(|hash| {
            let (number, index, tx) =
                view.tx(hash).ok_or_else(|| error(SERVER_ERROR, "transaction not found", None))?;
            let hash_of_block = view.block(number).map(|b| b.hash);
            Ok(format::transaction(
                tx,
                Some(format::Position { block_number: number, block_hash: hash_of_block, index }),
            ))
        })
        .collect::<Result<Vec<_>, ErrorObjectOwned>>()?;
    let receipts = hashes.iter().map(|hash| timed_receipt(&view, hash)).collect::<Result<Vec<_>, _>>()?;
    let (first_page, last_page) = if before { (from_block == 0, exhausted) } else { (exhausted, from_block == 0) };
    Ok(json!({"txs": txs, "receipts": receipts, "firstPage": first_page, "lastPage": last_page}))
}

/// The transaction a parity trace belongs to, if its call names `address`:
/// the caller or callee of a call, the creator or the made contract of a
/// creation (anvil's and Erigon's rule).
fn mentions(trace: &LocalizedTransactionTrace, address: &Address) -> Option<B256> {
    let named = match (&trace.trace.action, &trace.trace.result) {
        (Action::Call(call), _) => call.from == *address || call.to == *address,
        (Action::Create(create), result) => {
            create.from == *address || matches!(result, Some(TraceOutput::Create(made)) if made.address == *address)
        }
        _ => false,
    };
    named.then_some(trace.transaction_hash).flatten()
}
