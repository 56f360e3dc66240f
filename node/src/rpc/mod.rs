//! Ethereum JSON-RPC over HTTP and WebSocket (one port): the methods wallets
//! and dapps use, with tephra's rejection codes in error data.
//!
//! `module` registers the methods, one group at a time; each group's work is
//! in the file named for it. `serve` runs the server (`server.rs`) with its
//! per-client limits (`limits.rs`).

mod blocks;
mod calls;
mod errors;
mod fees;
mod filters;
mod interop;
mod limits;
mod logs;
mod optimism;
mod otterscan;
mod params;
mod send;
mod server;
mod state;
mod subscriptions;
mod traces;
mod txpool;

use std::sync::Arc;

use jsonrpsee::{RpcModule, types::ErrorObjectOwned};
use serde_json::{Value, json};

pub(crate) use self::filters::follow_rewinds;
pub use self::server::serve;
use crate::{format::qty, shared::Shared};

type RpcResult = Result<Value, ErrorObjectOwned>;

const CLIENT_VERSION: &str = concat!("tephra/v", env!("CARGO_PKG_VERSION"));

/// Every method the node answers; any other answers -32601.
pub fn module(shared: Arc<Shared>) -> RpcModule<Shared> {
    let (chain_id, op_stack) = (shared.chain.chain_id(), shared.op.is_some());
    let mut m = RpcModule::from_arc(shared);
    register_chain(&mut m, chain_id);
    register_blocks_and_txs(&mut m);
    register_state(&mut m);
    register_calls(&mut m);
    register_fees(&mut m);
    register_send(&mut m);
    register_subscriptions(&mut m);
    register_filters(&mut m);
    register_txpool(&mut m);
    register_traces(&mut m);
    register_otterscan(&mut m);
    if op_stack {
        register_optimism(&mut m);
    }
    m
}

/// op-node's rollup RPC, for an OP Stack chain: the rollup config, the sync
/// status and output roots.
fn register_optimism(m: &mut RpcModule<Shared>) {
    m.register_method("optimism_rollupConfig", |_, s, _| optimism::rollup_config(s)).expect("unique");
    m.register_method("optimism_syncStatus", |_, s, _| optimism::sync_status(s)).expect("unique");
    m.register_method("optimism_outputAtBlock", |p, s, _| optimism::output_at_block(&p, s)).expect("unique");
}

/// What the node is: its chain, its version, its block key; fixed answers
/// for what a sequencer has not (accounts, syncing).
fn register_chain(m: &mut RpcModule<Shared>, chain_id: u64) {
    m.register_method("eth_chainId", move |_, _, _| -> RpcResult { Ok(json!(qty(chain_id))) }).expect("unique");
    m.register_method("net_version", move |_, _, _| -> RpcResult { Ok(json!(chain_id.to_string())) }).expect("unique");
    m.register_method("net_listening", |_, _, _| -> RpcResult { Ok(json!(true)) }).expect("unique");
    m.register_method("web3_clientVersion", |_, _, _| -> RpcResult { Ok(json!(CLIENT_VERSION)) }).expect("unique");
    m.register_method("eth_syncing", |_, _, _| -> RpcResult { Ok(json!(false)) }).expect("unique");
    m.register_method("eth_accounts", |_, _, _| -> RpcResult { Ok(json!([])) }).expect("unique");
    // A sequencer takes no peers: followers derive its chain from L1 or
    // read it over RPC.
    m.register_method("net_peerCount", |_, _, _| -> RpcResult { Ok(json!(qty(0u64))) }).expect("unique");
    m.register_method("web3_sha3", |p, _, _| -> RpcResult {
        let data: alloy_primitives::Bytes = params::param(&params::list(&p)?, 0, "data")?;
        Ok(json!(alloy_primitives::keccak256(&data)))
    })
    .expect("unique");
    // tephra's own: the address every block signature recovers to.
    m.register_method("tephra_latestCheckpoint", |_, s, _| interop::latest_checkpoint(s)).expect("unique");
    m.register_method("tephra_getCheckpoint", |p, s, _| interop::checkpoint(&p, s)).expect("unique");
    m.register_method("tephra_blockSigner", |_, s, _| -> RpcResult { Ok(json!(s.signer_address)) }).expect("unique");
}

fn register_blocks_and_txs(m: &mut RpcModule<Shared>) {
    m.register_method("eth_blockNumber", |_, s, _| blocks::block_number(s)).expect("unique");
    m.register_method("eth_getBlockByNumber", |p, s, _| blocks::block_by_number(&p, s)).expect("unique");
    m.register_method("eth_getBlockByHash", |p, s, _| blocks::block_by_hash(&p, s)).expect("unique");
    m.register_method("eth_getTransactionByHash", |p, s, _| blocks::transaction_by_hash(&p, s)).expect("unique");
    m.register_method("eth_getTransactionReceipt", |p, s, _| blocks::transaction_receipt(&p, s)).expect("unique");
    m.register_method("eth_getBlockReceipts", |p, s, _| blocks::block_receipts(&p, s)).expect("unique");
    m.register_method("eth_getBlockTransactionCountByNumber", |p, s, _| blocks::transaction_count(&p, s, false))
        .expect("unique");
    m.register_method("eth_getBlockTransactionCountByHash", |p, s, _| blocks::transaction_count(&p, s, true))
        .expect("unique");
    m.register_method("eth_getTransactionByBlockNumberAndIndex", |p, s, _| blocks::transaction_at(&p, s, false))
        .expect("unique");
    m.register_method("eth_getTransactionByBlockHashAndIndex", |p, s, _| blocks::transaction_at(&p, s, true))
        .expect("unique");
    m.register_method("eth_getUncleCountByBlockNumber", |p, s, _| blocks::uncle_count(&p, s, false)).expect("unique");
    m.register_method("eth_getUncleCountByBlockHash", |p, s, _| blocks::uncle_count(&p, s, true)).expect("unique");
    m.register_method("tephra_getPreconfirmation", |p, s, _| blocks::preconfirmation(&p, s)).expect("unique");
    m.register_method("eth_getLogs", |p, s, _| logs::get_logs(&p, s)).expect("unique");
    m.register_method("debug_getRawBlock", |p, s, _| blocks::raw_block(&p, s)).expect("unique");
    m.register_method("debug_getRawTransaction", |p, s, _| blocks::raw_transaction(&p, s)).expect("unique");
}

/// State reads, served at the preconfirmed tip.
fn register_state(m: &mut RpcModule<Shared>) {
    m.register_method("eth_getBalance", |p, s, _| state::balance(&p, s)).expect("unique");
    m.register_method("eth_getTransactionCount", |p, s, _| state::transaction_count(&p, s)).expect("unique");
    m.register_method("eth_getCode", |p, s, _| state::code(&p, s)).expect("unique");
    m.register_method("eth_getStorageAt", |p, s, _| state::storage_at(&p, s)).expect("unique");
}

fn register_calls(m: &mut RpcModule<Shared>) {
    m.register_method("eth_call", |p, s, _| calls::eth_call(&p, s)).expect("unique");
    m.register_method("eth_estimateGas", |p, s, _| calls::eth_estimate_gas(&p, s)).expect("unique");
}

fn register_fees(m: &mut RpcModule<Shared>) {
    m.register_method("eth_gasPrice", |_, s, _| fees::gas_price(s)).expect("unique");
    m.register_method("eth_maxPriorityFeePerGas", |_, _, _| fees::max_priority_fee()).expect("unique");
    m.register_method("eth_feeHistory", |p, s, _| fees::fee_history(&p, s)).expect("unique");
    m.register_method("eth_blobBaseFee", |_, s, _| fees::blob_base_fee(s)).expect("unique");
}

fn register_send(m: &mut RpcModule<Shared>) {
    m.register_async_method("eth_sendRawTransaction", |p, s, _| send::send_raw_transaction(p, s)).expect("unique");
    m.register_async_method("eth_sendRawTransactionSync", |p, s, _| send::send_raw_transaction_sync(p, s))
        .expect("unique");
}

/// Polling filters, for clients without subscriptions (ethers' and web3.py's
/// event listeners over HTTP).
fn register_filters(m: &mut RpcModule<Shared>) {
    // Blocking threads: each change waits for the journal's fdatasync.
    m.register_blocking_method("eth_newFilter", |p, s, e| filters::new_filter(&p, &s, &e)).expect("unique");
    m.register_blocking_method("eth_newBlockFilter", |_, s, e| filters::new_block_filter(&s, &e)).expect("unique");
    m.register_blocking_method("eth_newPendingTransactionFilter", |_, s, e| {
        filters::new_pending_transaction_filter(&s, &e)
    })
    .expect("unique");
    m.register_blocking_method("eth_getFilterChanges", |p, s, _| filters::filter_changes(&p, &s)).expect("unique");
    m.register_blocking_method("eth_getFilterLogs", |p, s, _| filters::filter_logs(&p, &s)).expect("unique");
    m.register_blocking_method("eth_uninstallFilter", |p, s, _| filters::uninstall_filter(&p, &s)).expect("unique");
}

/// geth's txpool namespace: what waits in the pool (not yet preconfirmed).
fn register_txpool(m: &mut RpcModule<Shared>) {
    m.register_method("txpool_status", |_, s, _| txpool::status(s)).expect("unique");
    m.register_method("txpool_content", |_, s, _| txpool::content(s)).expect("unique");
    m.register_method("txpool_inspect", |_, s, _| txpool::inspect(s)).expect("unique");
}

/// Traces and access lists: on blocking threads, `[trace]`-bounded.
fn register_traces(m: &mut RpcModule<Shared>) {
    m.register_blocking_method("debug_traceTransaction", |p, s, _| traces::debug_trace_transaction(&p, &s))
        .expect("unique");
    m.register_blocking_method("debug_traceBlockByNumber", |p, s, _| traces::debug_trace_block(&p, &s, false))
        .expect("unique");
    m.register_blocking_method("debug_traceBlockByHash", |p, s, _| traces::debug_trace_block(&p, &s, true))
        .expect("unique");
    m.register_blocking_method("debug_traceCall", |p, s, _| traces::debug_trace_call(&p, &s)).expect("unique");
    m.register_blocking_method("trace_transaction", |p, s, _| traces::trace_transaction(&p, &s)).expect("unique");
    m.register_blocking_method("trace_block", |p, s, _| traces::trace_block(&p, &s)).expect("unique");
    m.register_blocking_method("trace_replayBlockTransactions", |p, s, _| {
        traces::trace_replay_block_transactions(&p, &s)
    })
    .expect("unique");
    m.register_blocking_method("trace_replayTransaction", |p, s, _| traces::trace_replay_transaction(&p, &s))
        .expect("unique");
    m.register_blocking_method("eth_createAccessList", |p, s, _| traces::create_access_list(&p, &s)).expect("unique");
}

/// Otterscan's methods (API level 8); those that execute or search on
/// blocking threads, `[trace]`-bounded.
fn register_otterscan(m: &mut RpcModule<Shared>) {
    m.register_method("ots_getApiLevel", |_, _, _| otterscan::api_level()).expect("unique");
    m.register_method("ots_hasCode", |p, s, _| otterscan::has_code(&p, s)).expect("unique");
    m.register_method("ots_getBlockDetails", |p, s, _| otterscan::block_details(&p, s, false)).expect("unique");
    m.register_method("ots_getBlockDetailsByHash", |p, s, _| otterscan::block_details(&p, s, true)).expect("unique");
    m.register_method("ots_getBlockTransactions", |p, s, _| otterscan::block_transactions(&p, s)).expect("unique");
    m.register_blocking_method("ots_getTransactionError", |p, s, _| otterscan::transaction_error(&p, &s))
        .expect("unique");
    m.register_blocking_method("ots_getInternalOperations", |p, s, _| otterscan::internal_operations(&p, &s))
        .expect("unique");
    m.register_blocking_method("ots_traceTransaction", |p, s, _| otterscan::trace_transaction(&p, &s)).expect("unique");
    m.register_blocking_method("ots_getTransactionBySenderAndNonce", |p, s, _| {
        otterscan::transaction_by_sender_and_nonce(&p, &s)
    })
    .expect("unique");
    m.register_blocking_method("ots_getContractCreator", |p, s, _| otterscan::contract_creator(&p, &s))
        .expect("unique");
    m.register_blocking_method("ots_searchTransactionsBefore", |p, s, _| otterscan::search(&p, &s, true))
        .expect("unique");
    m.register_blocking_method("ots_searchTransactionsAfter", |p, s, _| otterscan::search(&p, &s, false))
        .expect("unique");
    // Otterscan reads headers through Erigon's method.
    m.register_method("erigon_getHeaderByNumber", |p, s, _| blocks::header_by_number(&p, s)).expect("unique");
}

fn register_subscriptions(m: &mut RpcModule<Shared>) {
    m.register_subscription("eth_subscribe", "eth_subscription", "eth_unsubscribe", subscriptions::subscribe)
        .expect("unique");
}
