//! A chain as the interop roles see it: the calls `tephra interop deploy`,
//! the validator and the relayer make of any EVM chain (tephra or not), as
//! one small trait (`ChainRpc`) so that each role can be driven by a fake
//! chain in tests. The JSON-RPC implementation is tephra-l1's `L1JsonRpc`,
//! the client the OP Stack follower and batcher already use, with its
//! checks: every answer is read field by field, a malformed one is an
//! error, never a panic.

use alloy_primitives::{Address, B256, Bytes};
use alloy_sol_types::SolCall;
use serde_json::{Value, json};
use tephra_l1::{
    L1BatcherRpc, L1Error, L1JsonRpc, L1Log,
    rpc::{bytes, field, fixed, log_from_json, malformed, quantity},
};

/// The most blocks one `logs` call spans: public nodes refuse wider ranges
/// (10,000 is geth's and most providers' cap), and a role that is behind
/// catches up in steps of this size.
pub const LOG_RANGE_BLOCKS_MAX: u64 = 10_000;

/// A contract's view `call` on `chain` at the latest block, its return
/// decoded: the one way the roles read the contracts. An answer that is not
/// the function's ABI is malformed.
pub fn view<C: SolCall>(chain: &dyn ChainRpc, to: Address, call: &C) -> Result<C::Return, L1Error> {
    let answer = chain.call(to, &call.abi_encode())?;
    C::abi_decode_returns(&answer).map_err(|e| malformed("eth_call", format!("{to}: {e}")))
}

/// A mined transaction's outcome, the fields the roles read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub transaction_hash: B256,
    pub block_number: u64,
    pub succeeded: bool,
    pub gas_used: u64,
    /// A creation's new contract.
    pub contract_address: Option<Address>,
    pub logs: Vec<L1Log>,
}

/// The calls of an EVM chain the interop roles make, beyond the batcher's
/// (chain id, nonce, tip, send).
pub trait ChainRpc: L1BatcherRpc + Send + Sync {
    /// `eth_call` at the latest block: the returned bytes, or the node's
    /// refusal (a revert is `L1Error::Refused` with the reason in its message).
    fn call(&self, to: Address, data: &[u8]) -> Result<Bytes, L1Error>;
    /// `eth_estimateGas` of a transaction from `from`.
    fn estimate_gas(&self, from: Address, to: Option<Address>, data: &[u8]) -> Result<u64, L1Error>;
    /// The latest block's base fee per gas.
    fn base_fee_wei(&self) -> Result<u64, L1Error>;
    /// The receipt of `hash`, None while it is not mined.
    fn receipt(&self, hash: B256) -> Result<Option<Receipt>, L1Error>;
    /// The code at `address`, at the latest block.
    fn code(&self, address: Address) -> Result<Bytes, L1Error>;
    /// Logs of blocks `from..=to` (at most `LOG_RANGE_BLOCKS_MAX` of them)
    /// emitted by `address` with first topic `topic0`, in chain order, each
    /// with its block number.
    fn logs_in_range(&self, address: Address, topic0: B256, from: u64, to: u64) -> Result<Vec<(u64, L1Log)>, L1Error>;
}

impl ChainRpc for L1JsonRpc {
    fn call(&self, to: Address, data: &[u8]) -> Result<Bytes, L1Error> {
        const METHOD: &str = "eth_call";
        let result =
            L1JsonRpc::call(self, METHOD, json!([{"to": to, "data": Bytes::copy_from_slice(data)}, "latest"]))?;
        bytes(&result, "result").map_err(|reason| malformed(METHOD, reason))
    }

    fn estimate_gas(&self, from: Address, to: Option<Address>, data: &[u8]) -> Result<u64, L1Error> {
        const METHOD: &str = "eth_estimateGas";
        let mut request = json!({"from": from, "data": Bytes::copy_from_slice(data)});
        if let Some(to) = to {
            request["to"] = json!(to);
        }
        let result = L1JsonRpc::call(self, METHOD, json!([request]))?;
        quantity(&result, "result").map_err(|reason| malformed(METHOD, reason))
    }

    fn base_fee_wei(&self) -> Result<u64, L1Error> {
        const METHOD: &str = "eth_getBlockByNumber";
        let result = L1JsonRpc::call(self, METHOD, json!(["latest", false]))?;
        let object = result.as_object().ok_or_else(|| malformed(METHOD, "no latest block".into()))?;
        field(object, "baseFeePerGas")
            .and_then(|fee| quantity(fee, "baseFeePerGas"))
            .map_err(|reason| malformed(METHOD, reason))
    }

    fn receipt(&self, hash: B256) -> Result<Option<Receipt>, L1Error> {
        const METHOD: &str = "eth_getTransactionReceipt";
        let result = L1JsonRpc::call(self, METHOD, json!([hash]))?;
        if result.is_null() {
            return Ok(None);
        }
        let receipt = receipt_from_json(&result).map_err(|reason| malformed(METHOD, reason))?;
        if receipt.transaction_hash != hash {
            return Err(malformed(METHOD, format!("asked for {hash}, got {}", receipt.transaction_hash)));
        }
        Ok(Some(receipt))
    }

    fn code(&self, address: Address) -> Result<Bytes, L1Error> {
        const METHOD: &str = "eth_getCode";
        let result = L1JsonRpc::call(self, METHOD, json!([address, "latest"]))?;
        bytes(&result, "result").map_err(|reason| malformed(METHOD, reason))
    }

    fn logs_in_range(&self, address: Address, topic0: B256, from: u64, to: u64) -> Result<Vec<(u64, L1Log)>, L1Error> {
        const METHOD: &str = "eth_getLogs";
        assert!(from <= to && to - from < LOG_RANGE_BLOCKS_MAX, "a log range of at most LOG_RANGE_BLOCKS_MAX blocks");
        let filter = json!({
            "fromBlock": format!("{from:#x}"), "toBlock": format!("{to:#x}"), "address": address, "topics": [topic0],
        });
        let result = L1JsonRpc::call(self, METHOD, json!([filter]))?;
        let logs = result.as_array().ok_or_else(|| malformed(METHOD, "result is not an array".into()))?;
        logs.iter()
            .map(|value| {
                let log = log_from_json(value).map_err(|reason| malformed(METHOD, reason))?;
                let number = value.get("blockNumber").ok_or_else(|| "no blockNumber".to_string());
                let number = number.and_then(|n| quantity(n, "blockNumber")).map_err(|r| malformed(METHOD, r))?;
                if log.address != address || log.topics.first() != Some(&topic0) || !(from..=to).contains(&number) {
                    return Err(malformed(
                        METHOD,
                        format!("log {} of block {number} is not the filter's", log.log_index),
                    ));
                }
                Ok((number, log))
            })
            .collect()
    }
}

/// A receipt object of `eth_getTransactionReceipt`, or why it is not one.
fn receipt_from_json(value: &Value) -> Result<Receipt, String> {
    let object = value.as_object().ok_or("receipt is not a JSON object")?;
    let contract_address = match object.get("contractAddress") {
        None | Some(Value::Null) => None,
        Some(address) => Some(fixed::<20>(address, "contractAddress")?.into()),
    };
    let logs = field(object, "logs")?.as_array().ok_or("logs is not an array")?;
    Ok(Receipt {
        transaction_hash: fixed::<32>(field(object, "transactionHash")?, "transactionHash")?.into(),
        block_number: quantity(field(object, "blockNumber")?, "blockNumber")?,
        succeeded: quantity(field(object, "status")?, "status")? == 1,
        gas_used: quantity(field(object, "gasUsed")?, "gasUsed")?,
        contract_address,
        logs: logs.iter().map(log_from_json).collect::<Result<_, _>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_is_read_and_a_bad_one_refused() {
        let receipt = json!({
            "transactionHash": format!("0x{}", "11".repeat(32)), "blockNumber": "0x7", "status": "0x1",
            "gasUsed": "0x5208", "contractAddress": null,
            "logs": [{"address": format!("0x{}", "22".repeat(20)), "topics": [format!("0x{}", "33".repeat(32))],
                      "data": "0x01", "blockHash": format!("0x{}", "44".repeat(32)), "logIndex": "0x0"}],
        });
        let read = receipt_from_json(&receipt).unwrap();
        assert_eq!((read.block_number, read.succeeded, read.gas_used, read.logs.len()), (7, true, 21_000, 1));
        let mut failed = receipt.clone();
        failed["status"] = json!("0x0");
        assert!(!receipt_from_json(&failed).unwrap().succeeded);
        let mut bad = receipt;
        bad["gasUsed"] = json!(5);
        assert!(receipt_from_json(&bad).unwrap_err().contains("gasUsed"));
    }
}
