//! `kona-oracle verify`: every L2 block 1..=N that tephra serves, checked against kona.

use crate::{
    Error,
    chain::{Built, Chain},
    genesis::{build_genesis, load_genesis, load_rollup},
    l1::L1Rpc,
    rpc::{Rpc, RpcError, quantity},
};
use alloy_consensus::{Header, Transaction};
use alloy_eips::eip2718::{Decodable2718, Encodable2718};
use alloy_primitives::{B256, Bytes, hex, keccak256};
use alloy_rlp::Decodable;
use kona_protocol::L1BlockInfoTx;
use op_alloy_consensus::{OpBlock, OpReceiptEnvelope};
use serde_json::{Value, json};
use std::{
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

#[derive(Debug, Clone)]
pub struct VerifyArgs {
    pub rollup: PathBuf,
    pub genesis: PathBuf,
    pub l1_rpc: String,
    pub l2_rpc: String,
    pub to: u64,
    pub output_roots: bool,
    /// How long to wait for a block tephra has not produced yet.
    pub timeout: Duration,
}

pub(crate) fn io(e: RpcError) -> Error {
    Error::Io(e.to_string())
}

pub(crate) fn parse_hex(value: &Value, what: &str) -> Result<Vec<u8>, Error> {
    value
        .as_str()
        .and_then(|s| hex::decode(s).ok())
        .ok_or_else(|| Error::Io(format!("{what}: not a 0x-hex string: {value}")))
}

pub(crate) fn hash_of(value: &Value, what: &str) -> Result<B256, Error> {
    value.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| Error::Io(format!("{what}: not a hash: {value}")))
}

/// The header fields that differ: `[{field, oracle, tephra}]`.
pub fn header_diff(oracle: &Header, tephra: &Header) -> Vec<Value> {
    let mut diff = Vec::new();
    macro_rules! fields {
        ($($name:ident),*) => {$(
            if oracle.$name != tephra.$name {
                diff.push(json!({"field": stringify!($name), "oracle": format!("{:?}", oracle.$name), "tephra": format!("{:?}", tephra.$name)}));
            }
        )*};
    }
    fields!(
        parent_hash,
        ommers_hash,
        beneficiary,
        state_root,
        transactions_root,
        receipts_root,
        logs_bloom,
        difficulty,
        number,
        gas_limit,
        gas_used,
        timestamp,
        extra_data,
        mix_hash,
        nonce,
        base_fee_per_gas,
        withdrawals_root,
        blob_gas_used,
        excess_blob_gas,
        parent_beacon_block_root,
        requests_hash
    );
    diff
}

fn receipt_json(receipt: &OpReceiptEnvelope) -> Value {
    json!({
        "type": receipt.tx_type() as u8,
        "status": receipt.status(),
        "cumulative_gas_used": receipt.cumulative_gas_used(),
        "logs": receipt.logs().len(),
        "deposit_nonce": receipt.as_deposit_receipt().and_then(|r| r.deposit_nonce),
        "deposit_receipt_version": receipt.as_deposit_receipt().and_then(|r| r.deposit_receipt_version),
    })
}

/// Which receipts differ: tephra's from `debug_getRawReceipts`, else `eth_getBlockReceipts`
/// (status, cumulative gas, log count).
pub(crate) fn receipt_diff(l2: &Rpc, number: u64, built: &Built) -> Value {
    let hashes: Vec<B256> = built.transactions.iter().map(keccak256).collect();
    match l2.call("debug_getRawReceipts", json!([quantity(number)])) {
        Ok(Value::Array(raw)) => {
            let mut diff = Vec::new();
            for i in 0..raw.len().max(built.receipts.len()) {
                let tephra = raw.get(i).and_then(Value::as_str).and_then(|s| hex::decode(s).ok());
                let ours = built.receipts.get(i).map(|r| r.encoded_2718());
                if tephra.as_deref() != ours.as_deref() {
                    let decoded = tephra.as_ref().and_then(|t| OpReceiptEnvelope::decode_2718(&mut t.as_slice()).ok());
                    diff.push(json!({
                        "index": i,
                        "tx_hash": hashes.get(i),
                        "oracle": built.receipts.get(i).map(receipt_json),
                        "tephra": decoded.as_ref().map(receipt_json),
                    }));
                }
            }
            Value::Array(diff)
        }
        raw => match l2.call("eth_getBlockReceipts", json!([quantity(number)])) {
            Ok(Value::Array(list)) => {
                let mut diff = Vec::new();
                for i in 0..list.len().max(built.receipts.len()) {
                    let tephra = list.get(i).map(|r| {
                        json!({
                            "status": r.get("status").and_then(crate::rpc::parse_u64).map(|s| s == 1),
                            "cumulative_gas_used": r.get("cumulativeGasUsed").and_then(crate::rpc::parse_u64),
                            "logs": r.get("logs").and_then(Value::as_array).map(Vec::len),
                        })
                    });
                    let ours = built.receipts.get(i).map(|r| {
                        json!({"status": r.status(), "cumulative_gas_used": r.cumulative_gas_used(), "logs": r.logs().len()})
                    });
                    if tephra != ours {
                        diff.push(json!({"index": i, "tx_hash": hashes.get(i), "oracle": ours, "tephra": tephra}));
                    }
                }
                Value::Array(diff)
            }
            other => json!(format!(
                "tephra's receipts unavailable: debug_getRawReceipts {:?}, eth_getBlockReceipts {:?}",
                raw.err(),
                other.err()
            )),
        },
    }
}

/// Waits (polling) until tephra has block `number`: its `eth_getBlockByNumber` hash.
pub(crate) fn wait_for_block(l2: &Rpc, number: u64, timeout: Duration) -> Result<B256, Error> {
    let start = Instant::now();
    loop {
        // A node not answering yet (starting) is waited for like a block not produced yet.
        let (block, transport) = match l2.call("eth_getBlockByNumber", json!([quantity(number), false])) {
            Ok(block) => (block, None),
            Err(e @ RpcError::Transport(_)) => (Value::Null, Some(e)),
            Err(e) => return Err(io(e)),
        };
        if !block.is_null() {
            return hash_of(&block["hash"], &format!("L2 eth_getBlockByNumber({number}).hash"));
        }
        if start.elapsed() >= timeout {
            let why = transport.map_or(String::new(), |e| format!(" (last error: {e})"));
            return Err(Error::Io(format!(
                "L2 block {number} was not produced within {} s{why}",
                timeout.as_secs_f64()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The oracle's side built from the rollup config and genesis at `paths` over the L1 at
/// `l1_rpc` (`build`: a chain, or a derivation pipeline), and tephra at `l2_rpc`, whose
/// genesis must be the oracle's (waited for up to `timeout`): the built side, the L1, tephra,
/// and the genesis block's number. A genesis that differs is a mismatch.
pub(crate) fn open_chains<T>(
    (rollup, genesis): (&PathBuf, &PathBuf),
    l1_rpc: &str,
    l2_rpc: &str,
    timeout: Duration,
    build: impl FnOnce(kona_genesis::RollupConfig, crate::genesis::GenesisState, L1Rpc) -> Result<T, Error>,
) -> Result<(T, L1Rpc, Rpc, u64), Error> {
    let cfg = load_rollup(rollup)?;
    let genesis = build_genesis(&load_genesis(genesis)?, &cfg)?;
    let l1 = L1Rpc::new(l1_rpc)?;
    let l2 = Rpc::new(l2_rpc).map_err(io)?;
    let genesis_hash = genesis.header.hash();
    let genesis_number = genesis.header.number;
    let genesis_mismatch = |error: String| mismatch(json!({"block": genesis_number, "ok": false, "error": error}));
    let built = build(cfg, genesis, l1.clone()).map_err(|e| match e {
        Error::Mismatch(e) => genesis_mismatch(e),
        e => e,
    })?;
    let tephra_genesis = wait_for_block(&l2, genesis_number, timeout)?;
    if tephra_genesis != genesis_hash {
        return Err(genesis_mismatch(format!(
            "tephra's genesis block is {tephra_genesis}, the oracle's {genesis_hash}"
        )));
    }
    Ok((built, l1, l2, genesis_number))
}

/// Runs `verify`, one JSON line per block on `out`.
pub fn verify(args: &VerifyArgs, out: &mut dyn Write) -> Result<(), Error> {
    let paths = (&args.rollup, &args.genesis);
    let (mut chain, l1, l2, genesis_number) = open_chains(paths, &args.l1_rpc, &args.l2_rpc, args.timeout, Chain::new)?;
    let mut checked = 0;
    for number in genesis_number + 1..=args.to {
        let line = verify_block(&mut chain, &l1, &l2, number, args)?;
        writeln!(out, "{line}").map_err(|e| Error::Io(e.to_string()))?;
        checked += 1;
    }
    let head = chain.head();
    writeln!(out, "{}", json!({"result": "ok", "blocks": checked, "to": args.to, "head": head.hash_slow()}))
        .map_err(|e| Error::Io(e.to_string()))?;
    Ok(())
}

pub(crate) fn mismatch(out: Value) -> Error {
    Error::Mismatch(out.to_string())
}

fn verify_block(chain: &mut Chain, l1: &L1Rpc, l2: &Rpc, number: u64, args: &VerifyArgs) -> Result<Value, Error> {
    let fail = |error: String| mismatch(json!({"block": number, "ok": false, "error": error}));
    let tephra_hash = wait_for_block(l2, number, args.timeout)?;
    let raw = parse_hex(&l2.call("debug_getRawBlock", json!([quantity(number)])).map_err(io)?, "debug_getRawBlock")?;
    let mut slice = raw.as_slice();
    let block = OpBlock::decode(&mut slice)
        .map_err(|e| fail(format!("debug_getRawBlock does not decode as an OP block: {e}")))?;
    if !slice.is_empty() {
        return Err(fail(format!("debug_getRawBlock has {} trailing bytes", slice.len())));
    }
    if block.header.hash_slow() != tephra_hash {
        return Err(fail(format!(
            "debug_getRawBlock's header hashes to {}, eth_getBlockByNumber says {tephra_hash}",
            block.header.hash_slow()
        )));
    }
    if block.header.number != number {
        return Err(fail(format!("debug_getRawBlock({number}) is block {}", block.header.number)));
    }

    // The L1 origin tephra's L1-info deposit names.
    let Some(first) = block.body.transactions.first().and_then(|tx| tx.as_deposit()) else {
        return Err(fail("the first transaction is not a deposit (the L1-info transaction)".into()));
    };
    let info = L1BlockInfoTx::decode_calldata(first.input())
        .map_err(|e| fail(format!("the L1-info transaction's calldata does not decode: {e}")))?;
    let epoch = info.id();
    let origin = l1
        .header_by_number(epoch.number)
        .map_err(|e| Error::Io(e.message))?
        .ok_or_else(|| fail(format!("the L1 origin {} does not exist on the L1", epoch.number)))?;
    if origin.hash_slow() != epoch.hash {
        return Err(fail(format!(
            "L1 block {} is {}, tephra's L1-info names {}",
            epoch.number,
            origin.hash_slow(),
            epoch.hash
        )));
    }

    // Derivation rules (op-node's, as kona checks batches): the next timestamp, the origin the
    // parent's or its successor, not ahead of L2 time, the sequencer drift.
    let cfg = chain.config().clone();
    let parent = chain.head_info().map_err(|e| Error::Io(e.message))?;
    let user_transactions: Vec<Bytes> =
        block.body.transactions.iter().filter(|tx| !tx.is_deposit()).map(|tx| tx.encoded_2718().into()).collect();
    let mut violations = Vec::new();
    let timestamp = block.header.timestamp;
    if timestamp != parent.block_info.timestamp + cfg.block_time {
        violations.push(format!(
            "timestamp {timestamp} != parent's {} + block_time {}",
            parent.block_info.timestamp, cfg.block_time
        ));
    }
    if epoch.number != parent.l1_origin.number && epoch.number != parent.l1_origin.number + 1 {
        violations.push(format!(
            "L1 origin {} is neither the parent's ({}) nor its successor",
            epoch.number, parent.l1_origin.number
        ));
    }
    if timestamp < origin.timestamp {
        violations.push(format!("timestamp {timestamp} is before the L1 origin's {}", origin.timestamp));
    }
    let max_drift = cfg.max_sequencer_drift(origin.timestamp);
    if timestamp > origin.timestamp + max_drift {
        if !user_transactions.is_empty() {
            violations.push(format!(
                "timestamp {timestamp} is past the origin's {} + max sequencer drift {max_drift} and the block has user transactions",
                origin.timestamp
            ));
        }
        if let Some(next) = l1.header_by_number(epoch.number + 1).map_err(|e| Error::Io(e.message))? {
            if next.timestamp <= timestamp {
                violations.push(format!(
                    "timestamp {timestamp} is past the max sequencer drift and the next L1 origin {} (time {}) was eligible",
                    next.number, next.timestamp
                ));
            }
        }
    }
    if !violations.is_empty() {
        return Err(fail(violations.join("; ")));
    }

    // kona's attributes, then tephra's user transactions in order.
    let mut attrs = chain.attributes(epoch).map_err(|e| fail(e.message))?;
    let derived: Vec<Bytes> = attrs.transactions.clone().unwrap_or_default();
    let tephra_deposits: Vec<Bytes> =
        block.body.transactions.iter().filter(|tx| tx.is_deposit()).map(|tx| tx.encoded_2718().into()).collect();
    let mut transaction_diff = Vec::new();
    for i in 0..derived.len().max(tephra_deposits.len()) {
        if derived.get(i) != tephra_deposits.get(i) {
            transaction_diff.push(json!({
                "deposit_index": i,
                "oracle": derived.get(i).map(keccak256),
                "tephra": tephra_deposits.get(i).map(keccak256),
            }));
        }
    }
    let deposits_first = block.body.transactions.iter().take(tephra_deposits.len()).all(|tx| tx.is_deposit());
    if !deposits_first {
        transaction_diff.push(json!("tephra's block has a deposit after a user transaction"));
    }
    let derived_count = derived.len();
    let transactions = attrs.transactions.get_or_insert_with(Vec::new);
    transactions.extend(user_transactions.iter().cloned());
    attrs.no_tx_pool = Some(user_transactions.is_empty());
    let built = match chain.execute(attrs, derived_count, args.output_roots) {
        Ok(built) => built,
        Err(e) => {
            return Err(mismatch(json!({
                "block": number, "ok": false, "error": e.message, "tephra_hash": tephra_hash, "transaction_diff": transaction_diff,
            })));
        }
    };
    if built.header.hash() != tephra_hash || !transaction_diff.is_empty() {
        let error = if built.header.hash() != tephra_hash {
            "block hash differs"
        } else {
            "tephra's block body is not the transactions its header commits to: deposits differ from kona's"
        };
        return Err(mismatch(json!({
            "block": number,
            "ok": false,
            "error": error,
            "oracle_hash": built.header.hash(),
            "tephra_hash": tephra_hash,
            "header_diff": header_diff(built.header.inner(), &block.header),
            "transaction_diff": transaction_diff,
            "receipt_diff": receipt_diff(l2, number, &built),
        })));
    }

    let mut line = json!({
        "block": number,
        "ok": true,
        "hash": tephra_hash,
        "l1_origin": epoch.number,
        "l1_origin_hash": epoch.hash,
        "sequence_number": built.sequence_number,
        "timestamp": timestamp,
        "transactions": built.transactions.len(),
        "deposits": derived_count,
        "user_transactions": user_transactions.len(),
        "gas_used": built.header.gas_used,
        "state_root": built.header.state_root,
    });
    if let Some(ours) = built.output_root {
        let output = l2.call("optimism_outputAtBlock", json!([quantity(number)])).map_err(io)?;
        let theirs = hash_of(&output["outputRoot"], "optimism_outputAtBlock.outputRoot")?;
        if theirs != ours {
            return Err(mismatch(json!({
                "block": number,
                "ok": false,
                "error": "output root differs",
                "oracle_output_root": ours,
                "tephra_output_root": theirs,
                "oracle_state_root": built.header.state_root,
                "tephra_state_root": output.get("stateRoot"),
                "oracle_withdrawal_storage_root": built.header.withdrawals_root,
                "tephra_withdrawal_storage_root": output.get("withdrawalStorageRoot"),
            })));
        }
        line["output_root"] = json!(ours);
    }
    Ok(line)
}
