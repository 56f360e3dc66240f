//! The L1 node as the batcher sees it: the calls that send batcher
//! transactions and read them back (`L1BatcherRpc`), and what an L1 node's
//! refusal of a transaction means (`SendRefusal`), so that the batcher acts
//! on the reason, not on the text.
//!
//! Answers are checked as the follower's are (`rpc.rs`): a transaction
//! object without its sender, or of another block, is malformed.

use alloy_primitives::{Address, B256, Bytes};
use serde_json::{Value, json};

use crate::{
    L1Block, L1Error, L1JsonRpc, L1Rpc,
    rpc::{block_from_json, bytes, field, fixed, malformed, optional_quantity, quantity},
};

/// A transaction of an L1 block, the fields a batcher reads back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L1Transaction {
    pub hash: B256,
    pub from: Address,
    /// None for a contract creation.
    pub to: Option<Address>,
    pub input: Bytes,
    pub nonce: u64,
    pub gas: u64,
    /// The price paid per gas (a mined transaction's `gasPrice`); 0 if
    /// the node does not say.
    pub effective_gas_price_wei: u64,
    /// EIP-4844: the blobs' versioned hashes, in order (empty otherwise).
    pub blob_versioned_hashes: Vec<B256>,
}

/// Why an L1 node refused a transaction, from its error message (the
/// wording of geth's and reth's pools, which anvil shares).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendRefusal {
    /// The nonce was used: a transaction of this sender is included there.
    NonceTooLow,
    /// The pool holds this very transaction.
    AlreadyKnown,
    /// A transaction at this nonce is pooled and this one does not pay
    /// enough more to replace it, or the fee is below the pool's floor.
    Underpriced,
    /// The sender cannot pay for the gas.
    InsufficientFunds,
    /// Anything else, with the node's words.
    Other(String),
}

impl SendRefusal {
    /// The refusal a node's error message states.
    pub fn of(message: &str) -> Self {
        let lower = message.to_ascii_lowercase();
        if lower.contains("nonce too low") || lower.contains("nonce is too low") {
            SendRefusal::NonceTooLow
        } else if lower.contains("already known")
            || lower.contains("already imported")
            || lower.contains("known transaction")
        {
            SendRefusal::AlreadyKnown
        } else if lower.contains("underpriced")
            || lower.contains("fee too low")
            || lower.contains("max fee per gas less")
        {
            SendRefusal::Underpriced
        } else if lower.contains("insufficient funds") {
            SendRefusal::InsufficientFunds
        } else {
            SendRefusal::Other(message.to_string())
        }
    }
}

/// The batcher's calls to the L1 node.
pub trait L1BatcherRpc: L1Rpc {
    /// The L1's chain id (`eth_chainId`).
    fn chain_id(&self) -> Result<u64, L1Error>;
    /// The next nonce of `address`: counting pooled transactions
    /// (`pending`) or only included ones (`latest`).
    fn nonce(&self, address: Address, pending: bool) -> Result<u64, L1Error>;
    /// The tip the node suggests (`eth_maxPriorityFeePerGas`), in wei.
    fn suggested_tip_wei(&self) -> Result<u64, L1Error>;
    /// Sends a signed transaction: its hash, or the node's refusal
    /// (`Err(Ok(refusal))`) or no answer (`Err(Err(error))`).
    fn send_raw(&self, raw: &[u8]) -> Result<B256, Result<SendRefusal, L1Error>>;
    /// The canonical block `number` with its transactions; None past the head.
    fn block_with_txs(&self, number: u64) -> Result<Option<(L1Block, Vec<L1Transaction>)>, L1Error>;
    /// The number of the newest finalized block (the `finalized` tag); None
    /// if the node has none yet.
    fn finalized_number(&self) -> Result<Option<u64>, L1Error>;
}

impl L1BatcherRpc for L1JsonRpc {
    fn chain_id(&self) -> Result<u64, L1Error> {
        const METHOD: &str = "eth_chainId";
        quantity(&self.call(METHOD, json!([]))?, "result").map_err(|reason| malformed(METHOD, reason))
    }

    fn nonce(&self, address: Address, pending: bool) -> Result<u64, L1Error> {
        const METHOD: &str = "eth_getTransactionCount";
        let tag = if pending { "pending" } else { "latest" };
        quantity(&self.call(METHOD, json!([address, tag]))?, "result").map_err(|reason| malformed(METHOD, reason))
    }

    fn suggested_tip_wei(&self) -> Result<u64, L1Error> {
        const METHOD: &str = "eth_maxPriorityFeePerGas";
        quantity(&self.call(METHOD, json!([]))?, "result").map_err(|reason| malformed(METHOD, reason))
    }

    fn send_raw(&self, raw: &[u8]) -> Result<B256, Result<SendRefusal, L1Error>> {
        const METHOD: &str = "eth_sendRawTransaction";
        match self.call(METHOD, json!([Bytes::copy_from_slice(raw)])) {
            Ok(result) => {
                fixed::<32>(&result, "result").map(B256::from).map_err(|reason| Err(malformed(METHOD, reason)))
            }
            Err(L1Error::Refused { message, .. }) => Err(Ok(SendRefusal::of(&message))),
            Err(error) => Err(Err(error)),
        }
    }

    fn block_with_txs(&self, number: u64) -> Result<Option<(L1Block, Vec<L1Transaction>)>, L1Error> {
        const METHOD: &str = "eth_getBlockByNumber";
        let result = self.call(METHOD, json!([format!("{number:#x}"), true]))?;
        if result.is_null() {
            return Ok(None);
        }
        let block = block_from_json(&result).map_err(|reason| malformed(METHOD, reason))?;
        if block.number != number {
            return Err(malformed(METHOD, format!("asked for block {number}, got block {}", block.number)));
        }
        let txs = result.get("transactions").and_then(Value::as_array);
        let txs = txs.ok_or_else(|| malformed(METHOD, "no transactions array".into()))?;
        let txs = txs.iter().map(|tx| transaction_from_json(tx, &block)).collect::<Result<_, _>>();
        Ok(Some((block, txs.map_err(|reason| malformed(METHOD, reason))?)))
    }

    fn finalized_number(&self) -> Result<Option<u64>, L1Error> {
        const METHOD: &str = "eth_getBlockByNumber";
        let result = self.call(METHOD, json!(["finalized", false]))?;
        if result.is_null() {
            return Ok(None);
        }
        block_from_json(&result).map(|block| Some(block.number)).map_err(|reason| malformed(METHOD, reason))
    }
}

/// A transaction object of a block fetched with its transactions.
fn transaction_from_json(value: &Value, block: &L1Block) -> Result<L1Transaction, String> {
    let object = value.as_object().ok_or("a transaction is not a JSON object (asked for full transactions)")?;
    let block_hash: B256 = fixed::<32>(field(object, "blockHash")?, "blockHash")?.into();
    if block_hash != block.hash {
        return Err(format!("a transaction of block {block_hash} in block {}", block.hash));
    }
    let to = match object.get("to") {
        None | Some(Value::Null) => None,
        Some(to) => Some(fixed::<20>(to, "to")?.into()),
    };
    let blob_versioned_hashes = match object.get("blobVersionedHashes") {
        None | Some(Value::Null) => Vec::new(),
        Some(hashes) => hashes
            .as_array()
            .ok_or("blobVersionedHashes is not an array")?
            .iter()
            .map(|hash| fixed::<32>(hash, "blob versioned hash").map(B256::from))
            .collect::<Result<_, _>>()?,
    };
    Ok(L1Transaction {
        hash: fixed::<32>(field(object, "hash")?, "hash")?.into(),
        from: fixed::<20>(field(object, "from")?, "from")?.into(),
        to,
        input: bytes(field(object, "input")?, "input")?,
        nonce: quantity(field(object, "nonce")?, "nonce")?,
        gas: quantity(field(object, "gas")?, "gas")?,
        effective_gas_price_wei: optional_quantity(object, "gasPrice")?.unwrap_or(0),
        blob_versioned_hashes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_read_from_the_pools_words() {
        assert_eq!(SendRefusal::of("nonce too low: next nonce 5, tx nonce 4"), SendRefusal::NonceTooLow);
        assert_eq!(SendRefusal::of("replacement transaction underpriced"), SendRefusal::Underpriced);
        assert_eq!(SendRefusal::of("transaction underpriced"), SendRefusal::Underpriced);
        assert_eq!(SendRefusal::of("already known"), SendRefusal::AlreadyKnown);
        assert_eq!(SendRefusal::of("Insufficient funds for gas * price + value"), SendRefusal::InsufficientFunds);
        assert_eq!(SendRefusal::of("exceeds block gas limit"), SendRefusal::Other("exceeds block gas limit".into()));
    }

    #[test]
    fn a_transaction_object_is_read_and_one_of_another_block_refused() {
        let block = L1Block {
            number: 1,
            hash: B256::repeat_byte(1),
            parent_hash: B256::ZERO,
            timestamp: 0,
            base_fee_per_gas: 1,
            excess_blob_gas: None,
            blob_gas_used: None,
            mix_hash: B256::ZERO,
            parent_beacon_block_root: None,
        };
        let mut tx = json!({
            "blockHash": B256::repeat_byte(1),
            "hash": B256::repeat_byte(2),
            "from": Address::repeat_byte(3),
            "to": Address::repeat_byte(4),
            "input": "0x0001",
            "nonce": "0x7",
            "gas": "0x5208",
            "gasPrice": "0x3b9aca00",
        });
        let read = transaction_from_json(&tx, &block).unwrap();
        assert_eq!((read.from, read.to, read.nonce), (Address::repeat_byte(3), Some(Address::repeat_byte(4)), 7));
        assert_eq!(read.input, Bytes::from_static(&[0, 1]));
        assert_eq!((read.gas, read.effective_gas_price_wei), (21_000, 1_000_000_000));
        tx["blobVersionedHashes"] = json!([B256::repeat_byte(9)]);
        assert_eq!(transaction_from_json(&tx, &block).unwrap().blob_versioned_hashes, vec![B256::repeat_byte(9)]);
        tx["blockHash"] = json!(B256::repeat_byte(8));
        assert!(transaction_from_json(&tx, &block).unwrap_err().contains("of block"));
        assert!(transaction_from_json(&json!("0xab"), &block).unwrap_err().contains("full transactions"));
    }
}
