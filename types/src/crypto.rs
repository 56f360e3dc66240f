//! secp256k1 as Ethereum uses it, through libsecp256k1: the one place that
//! turns public keys and signatures into addresses.

use alloy_primitives::{Address, B256, keccak256};
use secp256k1::{
    Message, PublicKey, SECP256K1,
    ecdsa::{RecoverableSignature, RecoveryId},
};

/// The address of a public key: the last 20 bytes of keccak256 of its 64-byte body.
pub fn address_of(public_key: &PublicKey) -> Address {
    Address::from_slice(&keccak256(&public_key.serialize_uncompressed()[1..])[12..])
}

/// The address that signed `hash`, from r ‖ s and the recovery id (0 or 1).
/// Accepts any `s`: callers that enforce low `s` (EIP-2) check it first.
pub fn recover_address(hash: B256, compact: &[u8; 64], recovery_id: u8) -> Option<Address> {
    let recovery_id = RecoveryId::try_from(i32::from(recovery_id)).ok()?;
    let signature = RecoverableSignature::from_compact(compact, recovery_id).ok()?;
    let public_key = SECP256K1.recover_ecdsa(Message::from_digest(hash.0), &signature).ok()?;
    Some(address_of(&public_key))
}
