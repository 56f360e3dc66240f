//! Batcher transactions carrying frames in blobs (EIP-4844, type 3): each
//! blob holds one payload (`0x00 ‖ frame`, blob-encoded), the transaction
//! goes to the batch inbox with no calldata, and the blobs travel in an
//! EIP-7594 sidecar (the commitments and the cell proofs an L1 pool takes
//! since Osaka), computed with the KZG trusted setup.
//!
//! ```text
//!  payloads ─> Blob::encode ─> sidecar_of (commitments, cell proofs) ─> versioned hashes
//!          ─> blob_tx(nonce, versioned hashes, Fees with a blob fee) ─> (the batcher key) ─> signed_blob_tx
//! ```

use alloy_consensus::{SignableTransaction, TxEip4844, TxEip4844Variant, TxEip4844WithSidecar, TxEnvelope};
use alloy_eips::{
    Encodable2718,
    eip4844::kzg_to_versioned_hash,
    eip7594::{BlobTransactionSidecarEip7594, BlobTransactionSidecarVariant},
};
use alloy_primitives::{Address, B256, Bytes, Signature, U256};

use crate::{Blob, Fees};

/// A blob transaction's gas: the transaction's 21,000 (no calldata).
const BLOB_TX_GAS: u64 = 21_000;

/// Why a sidecar could not be computed.
#[derive(Debug, thiserror::Error)]
#[error("KZG: {0}")]
pub struct KzgError(String);

/// The EIP-7594 sidecar of `blobs` and their versioned hashes, in order.
pub fn sidecar_of(blobs: &[Blob]) -> Result<(BlobTransactionSidecarEip7594, Vec<B256>), KzgError> {
    let blobs: Vec<alloy_eips::eip4844::Blob> =
        blobs.iter().map(|blob| alloy_eips::eip4844::Blob::from(*blob.0)).collect();
    let sidecar = BlobTransactionSidecarEip7594::try_from_blobs(blobs).map_err(|e| KzgError(e.to_string()))?;
    let hashes = sidecar.commitments.iter().map(|commitment| kzg_to_versioned_hash(commitment.as_slice())).collect();
    Ok((sidecar, hashes))
}

/// The versioned hash of `blob`: what an L1 transaction commits to.
pub fn versioned_hash_of(blob: &Blob) -> Result<B256, KzgError> {
    let settings = alloy_eips::eip4844::env_settings::EnvKzgSettings::Default;
    let blob = c_kzg::Blob::new(*blob.0);
    let commitment = settings.get().blob_to_kzg_commitment(&blob).map_err(|e| KzgError(e.to_string()))?;
    Ok(kzg_to_versioned_hash(commitment.to_bytes().as_slice()))
}

/// The transaction carrying the blobs of `versioned_hashes` to `inbox`.
pub fn blob_tx(l1_chain_id: u64, nonce: u64, inbox: Address, versioned_hashes: Vec<B256>, fees: Fees) -> TxEip4844 {
    TxEip4844 {
        chain_id: l1_chain_id,
        nonce,
        gas_limit: BLOB_TX_GAS,
        max_fee_per_gas: fees.max_fee_per_gas,
        max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
        to: inbox,
        value: U256::ZERO,
        access_list: Default::default(),
        blob_versioned_hashes: versioned_hashes,
        max_fee_per_blob_gas: fees.max_fee_per_blob_gas,
        input: Bytes::new(),
    }
}

/// `tx` signed (r ‖ s ‖ recovery id) with its sidecar: its hash and the
/// raw bytes `eth_sendRawTransaction` takes (the sidecar included).
pub fn signed_blob_tx(tx: TxEip4844, sidecar: BlobTransactionSidecarEip7594, signature: &[u8; 65]) -> (B256, Bytes) {
    let r = U256::from_be_slice(&signature[..32]);
    let s = U256::from_be_slice(&signature[32..64]);
    let signature = Signature::new(r, s, signature[64] == 1);
    let hash = *tx.clone().into_signed(signature).hash();
    let with_sidecar = TxEip4844WithSidecar::from_tx_and_sidecar(tx, BlobTransactionSidecarVariant::Eip7594(sidecar));
    let envelope = TxEnvelope::Eip4844(TxEip4844Variant::TxEip4844WithSidecar(with_sidecar).into_signed(signature));
    (hash, Bytes::from(envelope.encoded_2718()))
}

#[cfg(test)]
mod tests {
    use alloy_eips::Decodable2718;
    use alloy_primitives::address;
    use secp256k1::{Message, SECP256K1, SecretKey};

    use super::*;

    #[test]
    fn a_blob_tx_carries_its_sidecar_and_decodes_to_the_signed_transaction() {
        let payload = [0u8, 1, 2, 3].repeat(100);
        let blob = Blob::encode(&payload).unwrap();
        let (sidecar, hashes) = sidecar_of(std::slice::from_ref(&blob)).unwrap();
        assert_eq!(hashes, vec![versioned_hash_of(&blob).unwrap()]);
        assert_eq!(hashes[0][0], 0x01, "a KZG versioned hash");
        assert_eq!(sidecar.cell_proofs.len(), 128, "EIP-7594: a proof per cell of the extended blob");
        let inbox = address!("ff00000000000000000000000000000000000901");
        let fees = Fees::suggested(1, 1).with_blob_base_fee(1);
        let tx = blob_tx(900, 4, inbox, hashes.clone(), fees);
        let secret = SecretKey::from_byte_array([0x42; 32]).unwrap();
        let digest = Message::from_digest(tx.signature_hash().0);
        let (id, compact) = SECP256K1.sign_ecdsa_recoverable(digest, &secret).serialize_compact();
        let mut signature = [0u8; 65];
        signature[..64].copy_from_slice(&compact);
        signature[64] = u8::try_from(i32::from(id)).unwrap();
        let (hash, raw) = signed_blob_tx(tx.clone(), sidecar, &signature);
        let decoded = TxEnvelope::decode_2718(&mut raw.as_ref()).unwrap();
        assert_eq!(*decoded.tx_hash(), hash, "the hash does not cover the sidecar");
        let TxEnvelope::Eip4844(signed) = decoded else { panic!("a blob transaction") };
        let TxEip4844Variant::TxEip4844WithSidecar(with_sidecar) = signed.tx() else { panic!("with its sidecar") };
        assert_eq!(with_sidecar.tx, tx);
        assert_eq!(with_sidecar.sidecar.blobs()[0].as_slice(), blob.0.as_slice());
        assert_eq!(Blob(Box::new(with_sidecar.sidecar.blobs()[0].0)).decode().unwrap(), payload);
    }
}
