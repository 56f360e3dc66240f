//! The deposit transaction, type 0x7E (OP Stack specs/protocol/deposits.md):
//! a transaction derived from L1, with no signature, that mints ETH. The L1
//! side derives it (tephra-l1), the execution core executes it (tephra-exec);
//! both speak this one type.

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_rlp::{EMPTY_STRING_CODE, Encodable, Header};

/// The EIP-2718 type byte of deposit transactions.
pub const DEPOSIT_TX_TYPE: u8 = 0x7e;

/// A deposit transaction (deposits.md, "The Deposited Transaction Type").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deposit {
    pub source_hash: B256,
    pub from: Address,
    /// None: a contract creation.
    pub to: Option<Address>,
    /// ETH minted to `from` on L2 (the L1 `msg.value`).
    pub mint: U256,
    pub value: U256,
    pub gas_limit: u64,
    /// Always false since Regolith.
    pub is_system_transaction: bool,
    pub data: Bytes,
}

impl Deposit {
    /// The transaction hash: keccak256 of the EIP-2718 encoding.
    pub fn tx_hash(&self) -> B256 {
        keccak256(self.encode_2718())
    }

    /// The EIP-2718 encoding: `0x7E ‖ rlp([sourceHash, from, to, mint, value,
    /// gas, isSystemTx, data])`, `to` the empty string for a creation, `mint`
    /// an RLP integer (zero is the empty string, as op-geth's nil mint).
    pub fn encode_2718(&self) -> Bytes {
        let header = Header { list: true, payload_length: self.fields_length() };
        let mut out = Vec::with_capacity(1 + header.length_with_payload());
        out.push(DEPOSIT_TX_TYPE);
        header.encode(&mut out);
        self.source_hash.encode(&mut out);
        self.from.encode(&mut out);
        match &self.to {
            Some(to) => to.encode(&mut out),
            None => out.push(EMPTY_STRING_CODE),
        }
        self.mint.encode(&mut out);
        self.value.encode(&mut out);
        self.gas_limit.encode(&mut out);
        self.is_system_transaction.encode(&mut out);
        self.data.encode(&mut out);
        out.into()
    }

    fn fields_length(&self) -> usize {
        self.source_hash.length()
            + self.from.length()
            + self.to.as_ref().map_or(1, Encodable::length)
            + self.mint.length()
            + self.value.length()
            + self.gas_limit.length()
            + self.is_system_transaction.length()
            + self.data.length()
    }
}
