//! kona-derive's `ChainProvider` over an L1 JSON-RPC endpoint. Every header is rebuilt from
//! its JSON fields and must hash to the hash the node gave, so a field the oracle does not know
//! about fails loudly instead of deriving from a wrong header; a block's transactions must hash
//! to its header's transactions root.
//!
//! Errors: a block the L1 does not have (yet) and a node that does not answer are temporary
//! (`OracleError::retry`: kona-derive waits at the L1 head); data that does not check out is
//! critical.

use crate::{
    Error, OracleError,
    rpc::{Rpc, parse_u64, quantity},
};
use alloy_consensus::{Eip658Value, Header, Receipt, TxEnvelope, proofs};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, B64, B256, Bloom, Bytes, Log, U256, hex};
use async_trait::async_trait;
use kona_derive::ChainProvider;
use kona_protocol::BlockInfo;
use serde_json::{Value, json};
use std::{
    collections::HashMap,
    str::FromStr,
    sync::{Arc, Mutex},
};

/// The L1 over JSON-RPC, with a cache of the headers and receipts read.
#[derive(Debug, Clone)]
pub struct L1Rpc {
    rpc: Arc<Rpc>,
    headers: Arc<Mutex<HashMap<B256, Header>>>,
}

fn field<T: FromStr>(block: &Value, name: &str) -> Result<T, String> {
    block
        .get(name)
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("field {name} missing or malformed"))
}

fn opt_field<T: FromStr>(block: &Value, name: &str) -> Result<Option<T>, String> {
    match block.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => field(block, name).map(Some),
    }
}

fn number(block: &Value, name: &str) -> Result<u64, String> {
    block.get(name).and_then(parse_u64).ok_or_else(|| format!("field {name} missing or malformed"))
}

fn opt_number(block: &Value, name: &str) -> Result<Option<u64>, String> {
    match block.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => number(block, name).map(Some),
    }
}

/// An `eth_getBlockBy*` JSON block's header; its hash must be the `hash` the node gave.
pub fn header_from_json(block: &Value) -> Result<Header, String> {
    let header = Header {
        parent_hash: field(block, "parentHash")?,
        ommers_hash: field(block, "sha3Uncles")?,
        beneficiary: field(block, "miner")?,
        state_root: field(block, "stateRoot")?,
        transactions_root: field(block, "transactionsRoot")?,
        receipts_root: field(block, "receiptsRoot")?,
        logs_bloom: field::<Bloom>(block, "logsBloom")?,
        difficulty: field::<U256>(block, "difficulty")?,
        number: number(block, "number")?,
        gas_limit: number(block, "gasLimit")?,
        gas_used: number(block, "gasUsed")?,
        timestamp: number(block, "timestamp")?,
        extra_data: field::<Bytes>(block, "extraData")?,
        mix_hash: opt_field(block, "mixHash")?.unwrap_or_default(),
        nonce: opt_field::<B64>(block, "nonce")?.unwrap_or_default(),
        base_fee_per_gas: opt_number(block, "baseFeePerGas")?,
        withdrawals_root: opt_field(block, "withdrawalsRoot")?,
        blob_gas_used: opt_number(block, "blobGasUsed")?,
        excess_blob_gas: opt_number(block, "excessBlobGas")?,
        parent_beacon_block_root: opt_field(block, "parentBeaconBlockRoot")?,
        requests_hash: opt_field(block, "requestsHash")?,
    };
    let hash: B256 = field(block, "hash")?;
    if header.hash_slow() != hash {
        return Err(format!(
            "block {} rebuilt from its JSON hashes to {}, not {hash}: a header field the oracle does not know",
            header.number,
            header.hash_slow()
        ));
    }
    Ok(header)
}

fn receipt_from_json(receipt: &Value) -> Result<Receipt, String> {
    let status = number(receipt, "status")?;
    let logs = receipt
        .get("logs")
        .and_then(Value::as_array)
        .ok_or("receipt without logs")?
        .iter()
        .map(|log| {
            let topics = log
                .get("topics")
                .and_then(Value::as_array)
                .ok_or("log without topics")?
                .iter()
                .map(|t| t.as_str().and_then(|t| t.parse().ok()).ok_or("bad topic"))
                .collect::<Result<Vec<B256>, _>>()?;
            Ok(Log::new_unchecked(field::<Address>(log, "address")?, topics, field::<Bytes>(log, "data")?))
        })
        .collect::<Result<Vec<Log>, String>>()?;
    Ok(Receipt {
        status: Eip658Value::Eip658(status == 1),
        cumulative_gas_used: number(receipt, "cumulativeGasUsed")?,
        logs,
    })
}

impl L1Rpc {
    pub fn new(url: &str) -> Result<Self, Error> {
        Ok(Self { rpc: Arc::new(Rpc::new(url).map_err(|e| Error::Io(e.to_string()))?), headers: Default::default() })
    }

    pub fn rpc(&self) -> &Rpc {
        &self.rpc
    }

    fn call(&self, method: &str, params: Value) -> Result<Value, OracleError> {
        self.rpc.call(method, params).map_err(|e| OracleError::retry(format!("L1 {method}: {e}")))
    }

    /// The header of L1 block `number`, `None` if the L1 does not have it (yet).
    pub fn header_by_number(&self, number: u64) -> Result<Option<Header>, OracleError> {
        let block = self.call("eth_getBlockByNumber", json!([quantity(number), false]))?;
        if block.is_null() {
            return Ok(None);
        }
        let header = header_from_json(&block).map_err(|e| OracleError::new(format!("L1 block {number}: {e}")))?;
        self.headers.lock().unwrap().insert(header.hash_slow(), header.clone());
        Ok(Some(header))
    }

    /// Block `hash` as `eth_getBlockByHash` serves it (transactions as hashes) and its header,
    /// which must hash to `hash`; not there yet is a retry.
    fn block_by_hash(&self, hash: B256) -> Result<(Value, Header), OracleError> {
        let block = self.call("eth_getBlockByHash", json!([hash, false]))?;
        if block.is_null() {
            return Err(OracleError::retry(format!("L1 has no block {hash}")));
        }
        let header = header_from_json(&block).map_err(|e| OracleError::new(format!("L1 block {hash}: {e}")))?;
        if header.hash_slow() != hash {
            return Err(OracleError::new(format!(
                "L1 eth_getBlockByHash({hash}) answered block {}",
                header.hash_slow()
            )));
        }
        Ok((block, header))
    }

    pub fn header(&self, hash: B256) -> Result<Header, OracleError> {
        if let Some(header) = self.headers.lock().unwrap().get(&hash) {
            return Ok(header.clone());
        }
        let (_, header) = self.block_by_hash(hash)?;
        self.headers.lock().unwrap().insert(hash, header.clone());
        Ok(header)
    }

    /// The receipts of an L1 block: `eth_getBlockReceipts`, else one `eth_getTransactionReceipt`
    /// per transaction.
    pub fn receipts(&self, hash: B256) -> Result<Vec<Receipt>, OracleError> {
        let list = match self.rpc.call("eth_getBlockReceipts", json!([hash])) {
            Ok(Value::Array(list)) => list,
            _ => {
                let block = self.call("eth_getBlockByHash", json!([hash, false]))?;
                if block.is_null() {
                    return Err(OracleError::retry(format!("L1 has no block {hash}")));
                }
                let txs = block.get("transactions").and_then(Value::as_array).cloned().unwrap_or_default();
                txs.iter().map(|tx| self.call("eth_getTransactionReceipt", json!([tx]))).collect::<Result<_, _>>()?
            }
        };
        list.iter()
            .map(|r| receipt_from_json(r).map_err(|e| OracleError::new(format!("L1 receipts of {hash}: {e}"))))
            .collect()
    }

    /// The header and the transactions of an L1 block: `eth_getBlockByHash` and
    /// `eth_getRawTransactionByBlockHashAndIndex` for each transaction, EIP-2718 decoded (blob
    /// transactions without their sidecar). They must hash to the header's transactions root:
    /// in their block form, or as served (anvil 1.7.1 roots blob transactions in their network
    /// form, with the sidecar; the header commits to the bytes served either way).
    pub fn transactions(&self, hash: B256) -> Result<(Header, Vec<TxEnvelope>), OracleError> {
        let (block, header) = self.block_by_hash(hash)?;
        let count = block
            .get("transactions")
            .and_then(Value::as_array)
            .ok_or_else(|| OracleError::new(format!("L1 block {hash}: no transactions list")))?
            .len();
        let mut transactions = Vec::with_capacity(count);
        let mut served = Vec::with_capacity(count);
        for index in 0..count {
            let raw = self.call("eth_getRawTransactionByBlockHashAndIndex", json!([hash, quantity(index as u64)]))?;
            if raw.is_null() {
                return Err(OracleError::retry(format!("L1 block {hash} has no transaction {index}")));
            }
            let bad = |e: String| OracleError::new(format!("L1 block {hash} transaction {index}: {e}"));
            let bytes = raw.as_str().and_then(|s| hex::decode(s).ok()).ok_or_else(|| bad(format!("not hex: {raw}")))?;
            let form = block_form(&bytes).map_err(|e| bad(format!("not RLP: {e}")))?;
            let mut slice = form.as_slice();
            let tx = TxEnvelope::decode_2718(&mut slice).map_err(|e| bad(format!("does not decode: {e}")))?;
            if !slice.is_empty() {
                return Err(bad(format!("{} trailing bytes", slice.len())));
            }
            transactions.push(tx);
            served.push(bytes);
        }
        let root = proofs::calculate_transaction_root(&transactions);
        let as_served =
            || proofs::ordered_trie_root_with_encoder(&served, |raw: &Vec<u8>, out| out.extend_from_slice(raw));
        if root != header.transactions_root && as_served() != header.transactions_root {
            return Err(OracleError::new(format!(
                "L1 block {hash}: its {count} transactions hash to the root {root}, the header says {}",
                header.transactions_root
            )));
        }
        self.headers.lock().unwrap().insert(hash, header.clone());
        Ok((header, transactions))
    }
}

/// A raw transaction in its block form. A node may return a blob transaction in its network
/// form, `0x03 ‖ rlp([tx, …sidecar])` (an EIP-4844 or EIP-7594 sidecar): the block form is
/// `0x03 ‖ tx`, the list's first item. In the block form that item is the chain id, a string.
pub fn block_form(raw: &[u8]) -> Result<Vec<u8>, alloy_rlp::Error> {
    let Some((&0x03, body)) = raw.split_first() else { return Ok(raw.to_vec()) };
    let mut payload = body;
    if !alloy_rlp::Header::decode(&mut payload)?.list {
        return Ok(raw.to_vec());
    }
    let mut item = payload;
    let inner = alloy_rlp::Header::decode(&mut item)?;
    if !inner.list {
        return Ok(raw.to_vec());
    }
    let length = payload.len() - item.len() + inner.payload_length;
    let tx = payload.get(..length).ok_or(alloy_rlp::Error::InputTooShort)?;
    Ok([&[0x03], tx].concat())
}

#[async_trait]
impl ChainProvider for L1Rpc {
    type Error = OracleError;

    async fn header_by_hash(&mut self, hash: B256) -> Result<Header, Self::Error> {
        self.header(hash)
    }

    async fn block_info_by_number(&mut self, number: u64) -> Result<BlockInfo, Self::Error> {
        let header = self
            .header_by_number(number)?
            .ok_or_else(|| OracleError::retry(format!("L1 has no block {number} yet")))?;
        Ok(BlockInfo::new(header.hash_slow(), header.number, header.parent_hash, header.timestamp))
    }

    async fn receipts_by_hash(&mut self, hash: B256) -> Result<Vec<Receipt>, Self::Error> {
        self.receipts(hash)
    }

    async fn block_info_and_transactions_by_hash(
        &mut self,
        hash: B256,
    ) -> Result<(BlockInfo, Vec<TxEnvelope>), Self::Error> {
        let (header, transactions) = self.transactions(hash)?;
        Ok((BlockInfo::new(hash, header.number, header.parent_hash, header.timestamp), transactions))
    }
}
