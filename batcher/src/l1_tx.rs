//! Batcher transactions: a payload of frames sent to the batch inbox in
//! calldata (EIP-1559), their gas and their fees, with op-batcher's rules
//! (op-service/txmgr): a tip and a base fee of at least 1 gwei each, a fee
//! cap of the tip plus twice the base fee, and a replacement that raises
//! both by at least 10%, as an L1 node's pool requires.
//!
//! ```text
//!  payload (0x00 ‖ frame) ─> calldata_tx(nonce, fees) ─> signing hash ─> (the batcher key) ─> signed_tx ─> raw bytes
//!  stuck: bumped(old fees, suggested now) ─> same nonce, same payload
//! ```

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, Signature, TxKind, U256};

/// The least tip and base fee a fee is built from (op-batcher's
/// `MinTipCap` and `MinBaseFee`): a quiet L1's near-zero fees would make
/// transactions that never leave a busier node's pool.
pub const FEE_FLOOR_WEI: u128 = 1_000_000_000;

/// How much a replacement raises a fee, in percent (an L1 node's pool
/// refuses less).
pub const FEE_BUMP_PERCENT: u128 = 10;

/// How much a blob transaction's replacement raises each of its fees: an
/// L1 pool (geth's, reth's) takes nothing less than double.
pub const BLOB_FEE_BUMP_PERCENT: u128 = 100;

/// A transaction's cost: 21,000 for the transaction.
const TX_BASE_GAS: u64 = 21_000;

/// An EIP-1559 transaction's fees, in wei, and a blob transaction's blob
/// fee (0 for a calldata transaction).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fees {
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
    pub max_fee_per_blob_gas: u128,
}

impl Fees {
    /// The fees for an L1 whose latest base fee is `base_fee_wei` and
    /// whose suggested tip is `tip_wei`.
    pub fn suggested(base_fee_wei: u128, tip_wei: u128) -> Self {
        let tip = tip_wei.max(FEE_FLOOR_WEI);
        let base = base_fee_wei.max(FEE_FLOOR_WEI);
        Self {
            max_fee_per_gas: tip.saturating_add(base.saturating_mul(2)),
            max_priority_fee_per_gas: tip,
            max_fee_per_blob_gas: 0,
        }
    }

    /// With a blob fee for an L1 whose blob base fee is
    /// `blob_base_fee_wei`: twice it, and at least `FEE_FLOOR_WEI`
    /// (op-batcher's rule).
    pub fn with_blob_base_fee(self, blob_base_fee_wei: u128) -> Self {
        Self { max_fee_per_blob_gas: blob_base_fee_wei.saturating_mul(2).max(FEE_FLOOR_WEI), ..self }
    }

    /// The fees that replace a transaction sent with `self`: each at least
    /// `FEE_BUMP_PERCENT` above it (`BLOB_FEE_BUMP_PERCENT` for a blob
    /// transaction), rounded up, and never below `now`.
    pub fn bumped(self, now: Fees) -> Self {
        let percent = if self.max_fee_per_blob_gas > 0 { BLOB_FEE_BUMP_PERCENT } else { FEE_BUMP_PERCENT };
        let raise = |old: u128| old.saturating_mul(100 + percent).div_ceil(100);
        let tip = raise(self.max_priority_fee_per_gas).max(now.max_priority_fee_per_gas);
        let cap = raise(self.max_fee_per_gas).max(now.max_fee_per_gas).max(tip);
        let blob = match self.max_fee_per_blob_gas {
            0 => 0,
            blob => raise(blob).max(now.max_fee_per_blob_gas),
        };
        Self { max_fee_per_gas: cap, max_priority_fee_per_gas: tip, max_fee_per_blob_gas: blob }
    }
}

/// The gas a calldata transaction of `data` needs: the larger of its
/// intrinsic gas (4 per zero byte, 16 per other byte) and Prague's
/// calldata floor (EIP-7623: 10 per token, a zero byte one token and
/// another byte four).
pub fn calldata_gas(data: &[u8]) -> u64 {
    let zeros = u64::try_from(data.iter().filter(|b| **b == 0).count()).expect("fits");
    let others = u64::try_from(data.len()).expect("fits") - zeros;
    let intrinsic = TX_BASE_GAS + 4 * zeros + 16 * others;
    let floor = TX_BASE_GAS + 10 * (zeros + 4 * others);
    intrinsic.max(floor)
}

/// The transaction carrying `payload` to `inbox`.
pub fn calldata_tx(l1_chain_id: u64, nonce: u64, inbox: Address, payload: Bytes, fees: Fees) -> TxEip1559 {
    TxEip1559 {
        chain_id: l1_chain_id,
        nonce,
        gas_limit: calldata_gas(&payload),
        max_fee_per_gas: fees.max_fee_per_gas,
        max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
        to: TxKind::Call(inbox),
        value: U256::ZERO,
        access_list: Default::default(),
        input: payload,
    }
}

/// `tx` with its 65-byte signature (r ‖ s ‖ recovery id): its hash and
/// its raw bytes for `eth_sendRawTransaction`.
pub fn signed_tx(tx: TxEip1559, signature: &[u8; 65]) -> (B256, Bytes) {
    let r = U256::from_be_slice(&signature[..32]);
    let s = U256::from_be_slice(&signature[32..64]);
    let envelope = TxEnvelope::from(tx.into_signed(Signature::new(r, s, signature[64] == 1)));
    (*envelope.tx_hash(), Bytes::from(envelope.encoded_2718()))
}

#[cfg(test)]
mod tests {
    use alloy_eips::Decodable2718;
    use alloy_primitives::address;
    use secp256k1::{Message, SECP256K1, SecretKey};

    use super::*;

    #[test]
    fn fees_have_floors_and_replacements_raise_both_by_a_tenth() {
        let fees = |cap: u128, tip: u128, blob: u128| Fees {
            max_fee_per_gas: cap,
            max_priority_fee_per_gas: tip,
            max_fee_per_blob_gas: blob,
        };
        assert_eq!(Fees::suggested(0, 0), fees(3_000_000_000, 1_000_000_000, 0));
        let suggested = Fees::suggested(7_000_000_000, 2_000_000_000);
        assert_eq!(suggested, fees(16_000_000_000, 2_000_000_000, 0));
        assert_eq!(suggested.bumped(Fees::suggested(0, 0)), fees(17_600_000_000, 2_200_000_000, 0));
        // A blob transaction: a blob fee of twice the blob base fee (at
        // least 1 gwei), and every fee doubled to replace it.
        let blobs = suggested.with_blob_base_fee(3_000_000_000);
        assert_eq!(blobs, fees(16_000_000_000, 2_000_000_000, 6_000_000_000));
        assert_eq!(Fees::suggested(0, 0).with_blob_base_fee(1).max_fee_per_blob_gas, 1_000_000_000);
        assert_eq!(blobs.bumped(Fees::suggested(0, 0)), fees(32_000_000_000, 4_000_000_000, 12_000_000_000));
        let fees = suggested;
        // A risen L1 fee wins over the bump.
        let risen = Fees::suggested(20_000_000_000, 1);
        assert_eq!(fees.bumped(risen).max_fee_per_gas, risen.max_fee_per_gas);
        // Rounded up: 11 wei raised by 10% is 13, never 12.1 truncated to 12.
        let small =
            Fees { max_fee_per_gas: 11, max_priority_fee_per_gas: 11, max_fee_per_blob_gas: 0 }.bumped(Fees::default());
        assert_eq!(small.max_priority_fee_per_gas, 13);
    }

    #[test]
    fn calldata_gas_is_the_larger_of_intrinsic_gas_and_the_eip_7623_floor() {
        assert_eq!(calldata_gas(&[]), 21_000);
        // 1 zero, 2 others: intrinsic 21,036; floor 21,000 + 10 * 9 = 21,090.
        assert_eq!(calldata_gas(&[0, 1, 2]), 21_090);
    }

    #[test]
    fn a_signed_calldata_tx_decodes_and_recovers_to_its_signer() {
        let secret = SecretKey::from_byte_array([0x42; 32]).unwrap();
        let inbox = address!("ff00000000000000000000000000000000000901");
        let tx = calldata_tx(900, 3, inbox, Bytes::from_static(&[0, 9]), Fees::suggested(1, 1));
        let digest = Message::from_digest(tx.signature_hash().0);
        let (id, compact) = SECP256K1.sign_ecdsa_recoverable(digest, &secret).serialize_compact();
        let mut signature = [0u8; 65];
        signature[..64].copy_from_slice(&compact);
        signature[64] = u8::try_from(i32::from(id)).unwrap();
        let (hash, raw) = signed_tx(tx.clone(), &signature);
        let decoded = TxEnvelope::decode_2718(&mut raw.as_ref()).unwrap();
        assert_eq!(*decoded.tx_hash(), hash);
        let signed = decoded.as_eip1559().unwrap();
        assert_eq!(signed.tx(), &tx);
        let recovered = tephra_types::crypto::recover_address(
            signed.signature_hash(),
            signed.signature().as_bytes()[..64].try_into().unwrap(),
            u8::from(signed.signature().v()),
        );
        assert_eq!(recovered, Some(tephra_types::crypto::address_of(&secret.public_key(SECP256K1))));
    }
}
