//! The deposit transaction, type 0x7E (OP Stack specs/protocol/deposits.md):
//! a transaction derived from L1, with no signature, that mints ETH. The L1
//! side derives it (tephra-l1), the execution core executes it (tephra-exec);
//! both speak this one type.

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_rlp::{Decodable, EMPTY_STRING_CODE, Encodable, Header};

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

    /// The deposit an EIP-2718 encoding holds, all of it and nothing more.
    pub fn decode_2718(encoded: &[u8]) -> Result<Self, DepositDecodeError> {
        let (&ty, mut rest) = encoded.split_first().ok_or(DepositDecodeError::Empty)?;
        if ty != DEPOSIT_TX_TYPE {
            return Err(DepositDecodeError::NotADeposit(ty));
        }
        let header = Header::decode(&mut rest)?;
        if !header.list || header.payload_length != rest.len() {
            return Err(DepositDecodeError::Rlp(alloy_rlp::Error::UnexpectedLength));
        }
        let source_hash = B256::decode(&mut rest)?;
        let from = Address::decode(&mut rest)?;
        let to = match rest.first() {
            Some(&EMPTY_STRING_CODE) => {
                rest = &rest[1..];
                None
            }
            _ => Some(Address::decode(&mut rest)?),
        };
        let deposit = Self {
            source_hash,
            from,
            to,
            mint: U256::decode(&mut rest)?,
            value: U256::decode(&mut rest)?,
            gas_limit: u64::decode(&mut rest)?,
            is_system_transaction: bool::decode(&mut rest)?,
            data: Bytes::decode(&mut rest)?,
        };
        if !rest.is_empty() {
            return Err(DepositDecodeError::Rlp(alloy_rlp::Error::UnexpectedLength));
        }
        Ok(deposit)
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

/// Why bytes are not a deposit transaction.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DepositDecodeError {
    #[error("no bytes")]
    Empty,
    #[error("type {0:#04x} is not a deposit (0x7e)")]
    NotADeposit(u8),
    #[error("deposit RLP: {0}")]
    Rlp(#[from] alloy_rlp::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(to: Option<Address>, mint: u64) -> Deposit {
        Deposit {
            source_hash: B256::repeat_byte(7),
            from: Address::repeat_byte(1),
            to,
            mint: U256::from(mint),
            value: U256::from(3),
            gas_limit: 100_000,
            is_system_transaction: false,
            data: Bytes::from_static(&[1, 2, 3]),
        }
    }

    #[test]
    fn a_deposit_decodes_from_its_encoding_and_nothing_else_does() {
        for deposit in [sample(Some(Address::repeat_byte(2)), 0), sample(None, 5)] {
            let encoded = deposit.encode_2718();
            assert_eq!(Deposit::decode_2718(&encoded), Ok(deposit));
            for cut in 0..encoded.len() {
                assert!(Deposit::decode_2718(&encoded[..cut]).is_err(), "{cut} bytes");
            }
            let mut longer = encoded.to_vec();
            longer.push(0);
            assert!(Deposit::decode_2718(&longer).is_err());
            let mut other_type = encoded.to_vec();
            other_type[0] = 2;
            assert_eq!(Deposit::decode_2718(&other_type), Err(DepositDecodeError::NotADeposit(2)));
        }
    }
}
