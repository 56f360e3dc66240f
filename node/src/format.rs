//! Ethereum JSON-RPC shapes for blocks, transactions, receipts and logs.

use alloy_consensus::{Header, Transaction as _, Typed2718};
use alloy_primitives::{Address, B256, Log};
use serde_json::{Value, json};
use tephra_exec::VerifiedTx;

use crate::view::{OpBlockInfo, OpenBlock, StoredBlock, StoredTx};

pub fn qty(n: impl Into<u128>) -> String {
    format!("{:#x}", n.into())
}

/// Where a transaction sits, as RPC reports it: a sealed block has a hash,
/// the open (preconfirmed) block does not yet.
#[derive(Clone, Copy, Debug)]
pub struct Position {
    pub block_number: u64,
    pub block_hash: Option<B256>,
    pub index: usize,
}

pub fn transaction(tx: &StoredTx, at: Option<Position>) -> Value {
    // The price paid: for EIP-1559 types, base fee plus the capped tip.
    let mut value = transaction_object(&tx.envelope, tx.sender, tx.hash, at, tx.effective_gas_price);
    let object = value.as_object_mut().expect("a transaction is an object");
    // A deposit as op-geth shows it: its nonce from its receipt, the
    // receipt version from Canyon on, no mint when it mints nothing.
    if let Some(deposit) = tx.deposit {
        object.insert("nonce".into(), json!(qty(deposit.nonce)));
        if let Some(version) = deposit.version {
            object.insert("depositReceiptVersion".into(), json!(qty(version)));
        }
        if object.get("mint").and_then(Value::as_str) == Some("0x0") {
            object.remove("mint");
        }
    }
    value
}

/// A transaction waiting in the pool, as geth's txpool_content shows it:
/// no block, and its fee cap as its gas price.
pub fn pooled_transaction(tx: &VerifiedTx) -> Value {
    transaction_object(&tx.envelope, tx.sender, tx.hash, None, tx.envelope.max_fee_per_gas())
}

/// A signed transaction's fields, with who sent it, its hash, where it sits
/// (if anywhere yet) and the gas price to show.
fn transaction_object(
    envelope: &impl serde::Serialize,
    sender: Address,
    hash: B256,
    at: Option<Position>,
    gas_price: u128,
) -> Value {
    let mut value = serde_json::to_value(envelope).expect("transactions serialise");
    let object = value.as_object_mut().expect("a transaction is an object");
    object.insert("from".into(), json!(sender));
    object.insert("hash".into(), json!(hash));
    object.insert("blockHash".into(), json!(at.and_then(|p| p.block_hash)));
    object.insert("blockNumber".into(), json!(at.map(|p| qty(p.block_number))));
    object.insert("transactionIndex".into(), json!(at.map(|p| qty(p.index as u64))));
    object.insert("gasPrice".into(), json!(qty(gas_price)));
    value
}

pub fn log(log: &Log, tx: &StoredTx, at: Position, log_index: u64) -> Value {
    json!({
        "address": log.address,
        "topics": log.topics(),
        "data": log.data.data,
        "blockNumber": qty(at.block_number),
        "blockHash": at.block_hash,
        "transactionHash": tx.hash,
        "transactionIndex": qty(at.index as u64),
        "logIndex": qty(log_index),
        "removed": false,
    })
}

/// A receipt; on an OP Stack chain (`op`, the block's L1 side) with the
/// fields op-geth adds: a deposit's nonce and receipt version, a user
/// transaction's L1 data fee and what it was computed from.
pub fn receipt(tx: &StoredTx, at: Position, op: Option<&OpBlockInfo>) -> Value {
    let mut value = eth_receipt(tx, at);
    let object = value.as_object_mut().expect("a receipt is an object");
    if let Some(deposit) = tx.deposit {
        object.insert("depositNonce".into(), json!(qty(deposit.nonce)));
        if let Some(version) = deposit.version {
            object.insert("depositReceiptVersion".into(), json!(qty(version)));
        }
    } else if let Some((op, info)) = op.and_then(|op| Some((op, op.l1_block_info.as_ref()?))) {
        let encoded = alloy_eips::eip2718::Encodable2718::encoded_2718(&tx.envelope);
        let fees = tephra_exec::op_tx_fees(info, &encoded, tx.gas_used, op.spec);
        let fields = [
            ("l1Fee", Some(fees.l1_fee)),
            ("l1GasUsed", Some(fees.l1_gas_used)),
            ("l1GasPrice", Some(info.l1_base_fee)),
            ("l1BaseFeeScalar", Some(info.l1_base_fee_scalar)),
            ("l1BlobBaseFee", info.l1_blob_base_fee),
            ("l1BlobBaseFeeScalar", info.l1_blob_base_fee_scalar),
        ];
        // op-geth writes the operator fee fields only when one is set.
        let operator =
            [("operatorFeeScalar", info.operator_fee_scalar), ("operatorFeeConstant", info.operator_fee_constant)];
        let operator_set = operator.iter().any(|(_, v)| v.is_some_and(|v| !v.is_zero()));
        let fields = fields.into_iter().chain(operator.into_iter().filter(|_| operator_set));
        for (key, value) in fields {
            if let Some(value) = value {
                object.insert(key.into(), json!(format!("{value:#x}")));
            }
        }
    }
    value
}

fn eth_receipt(tx: &StoredTx, at: Position) -> Value {
    let logs: Vec<Value> =
        tx.receipt.logs.iter().enumerate().map(|(i, l)| log(l, tx, at, tx.first_log_index + i as u64)).collect();
    json!({
        "transactionHash": tx.hash,
        "transactionIndex": qty(at.index as u64),
        "blockHash": at.block_hash,
        "blockNumber": qty(at.block_number),
        "from": tx.sender,
        "to": tx.envelope.to(),
        "cumulativeGasUsed": qty(tx.receipt.cumulative_gas_used),
        "gasUsed": qty(tx.gas_used),
        "effectiveGasPrice": qty(tx.effective_gas_price),
        "contractAddress": tx.contract_address,
        "logs": logs,
        "logsBloom": tx.logs_bloom(),
        "type": qty(u64::from(tx.envelope.ty())),
        "status": if tx.receipt.status.coerce_status() { "0x1" } else { "0x0" },
    })
}

fn signature_hex(signature: &tephra_hsm::Signature65) -> String {
    format!("0x{}", hex::encode(signature.0))
}

/// A transaction's signed preconfirmation with its Merkle proof and the
/// hot key's certificate: everything `tephra verify-preconf` needs.
pub fn preconfirmation(tx: &StoredTx, index: usize) -> Option<Value> {
    let p = tx.preconf.as_ref()?.preconfirmation(tx.hash, u32::try_from(index).ok()?);
    let (batch, cert) = (&p.batch, &p.certificate);
    Some(json!({
        "transactionHash": tx.hash,
        "blockNumber": qty(batch.block_number),
        "transactionIndex": qty(index as u64),
        "batch": {
            "firstIndex": qty(u64::from(batch.first_index)),
            "count": qty(u64::from(batch.count)),
            "root": batch.root,
            "signature": signature_hex(&batch.signature),
        },
        "proof": p.proof,
        "certificate": {
            "chainId": qty(cert.chain_id),
            "epoch": qty(cert.epoch),
            "hotKey": cert.hot_key,
            "validFromBlock": qty(cert.valid_from_block),
            "validUntilBlock": qty(cert.valid_until_block),
            "signature": signature_hex(&cert.signature),
        },
    }))
}

pub fn header(header: &Header, hash: Option<B256>) -> Value {
    let mut value = json!({
        "hash": hash,
        "parentHash": header.parent_hash,
        "sha3Uncles": header.ommers_hash,
        "miner": header.beneficiary,
        "stateRoot": header.state_root,
        "transactionsRoot": header.transactions_root,
        "receiptsRoot": header.receipts_root,
        "logsBloom": header.logs_bloom,
        "difficulty": qty(0u64),
        "totalDifficulty": qty(0u64),
        "number": qty(header.number),
        "gasLimit": qty(header.gas_limit),
        "gasUsed": qty(header.gas_used),
        "timestamp": qty(header.timestamp),
        "extraData": header.extra_data,
        "mixHash": header.mix_hash,
        "nonce": header.nonce,
    });
    let object = value.as_object_mut().expect("an object");
    let optional = [
        ("baseFeePerGas", header.base_fee_per_gas.map(|v| json!(qty(v)))),
        ("withdrawalsRoot", header.withdrawals_root.map(|v| json!(v))),
        ("blobGasUsed", header.blob_gas_used.map(|v| json!(qty(v)))),
        ("excessBlobGas", header.excess_blob_gas.map(|v| json!(qty(v)))),
        ("parentBeaconBlockRoot", header.parent_beacon_block_root.map(|v| json!(v))),
        ("requestsHash", header.requests_hash.map(|v| json!(v))),
    ];
    for (key, v) in optional {
        if let Some(v) = v {
            object.insert(key.into(), v);
        }
    }
    value
}

fn transactions(txs: &[StoredTx], full: bool, number: u64, hash: Option<B256>) -> Value {
    Value::Array(
        txs.iter()
            .enumerate()
            .map(|(index, tx)| {
                if full {
                    transaction(tx, Some(Position { block_number: number, block_hash: hash, index }))
                } else {
                    json!(tx.hash)
                }
            })
            .collect(),
    )
}

pub fn block(block: &StoredBlock, full: bool) -> Value {
    let mut value = header(&block.header, Some(block.hash));
    let object = value.as_object_mut().expect("an object");
    let size = alloy_rlp::Encodable::length(&block.header)
        + block.txs.iter().map(|t| alloy_eips::eip2718::Encodable2718::encode_2718_len(&t.envelope)).sum::<usize>()
        + 8;
    object.insert("size".into(), json!(qty(size as u64)));
    object.insert("transactions".into(), transactions(&block.txs, full, block.header.number, Some(block.hash)));
    object.insert("uncles".into(), json!([]));
    if block.header.withdrawals_root.is_some() {
        object.insert("withdrawals".into(), json!([]));
    }
    insert_signature(object, block);
    value
}

/// A kept block's header alone (erigon_getHeaderByNumber), with its signature.
pub fn signed_header(block: &StoredBlock) -> Value {
    let mut value = header(&block.header, Some(block.hash));
    insert_signature(value.as_object_mut().expect("an object"), block);
    value
}

/// tephra's own field: the block key's signature, once made (null before).
fn insert_signature(object: &mut serde_json::Map<String, Value>, block: &StoredBlock) {
    object.insert("signature".into(), json!(block.signature.as_ref().map(signature_hex)));
}

/// The open block: numbered, parented and timed, its hash and roots not yet known.
pub fn pending_block(open: &OpenBlock, full: bool) -> Value {
    let p = &open.params;
    json!({
        "hash": null,
        "parentHash": p.parent_hash,
        "sha3Uncles": alloy_consensus::EMPTY_OMMER_ROOT_HASH,
        "miner": p.beneficiary,
        "stateRoot": B256::ZERO,
        "transactionsRoot": B256::ZERO,
        "receiptsRoot": B256::ZERO,
        "logsBloom": alloy_primitives::Bloom::ZERO,
        "difficulty": qty(0u64),
        "totalDifficulty": qty(0u64),
        "number": qty(p.number),
        "gasLimit": qty(p.gas_limit),
        "gasUsed": qty(open.gas_used),
        "timestamp": qty(p.timestamp),
        "extraData": p.extra_data,
        "mixHash": p.prevrandao,
        "nonce": null,
        "baseFeePerGas": qty(p.base_fee_per_gas),
        "size": qty(0u64),
        "transactions": transactions(&open.txs, full, p.number, None),
        "uncles": [],
    })
}

/// A block as RLP: `[header, [tx...], [], withdrawals?]`, each transaction
/// as the transactions trie holds it (a typed one as an RLP string of its
/// EIP-2718 bytes).
pub fn block_rlp(block: &StoredBlock) -> Vec<u8> {
    use alloy_eips::eip2718::Encodable2718;
    use alloy_rlp::Encodable;
    let mut txs = Vec::new();
    for tx in block.txs.iter() {
        tx.envelope.network_encode(&mut txs);
    }
    let txs_header = alloy_rlp::Header { list: true, payload_length: txs.len() };
    let withdrawals: &[u8] = if block.header.withdrawals_root.is_some() { &[alloy_rlp::EMPTY_LIST_CODE] } else { &[] };
    let payload_length = block.header.length() + txs_header.length_with_payload() + 1 + withdrawals.len();
    let mut out = Vec::with_capacity(payload_length + 9);
    alloy_rlp::Header { list: true, payload_length }.encode(&mut out);
    block.header.encode(&mut out);
    txs_header.encode(&mut out);
    out.extend_from_slice(&txs);
    out.push(alloy_rlp::EMPTY_LIST_CODE);
    out.extend_from_slice(withdrawals);
    out
}
