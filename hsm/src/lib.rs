//! Signers. The sequencer signs only typed payloads: a signer is handed a
//! `Payload`, never raw bytes, so nothing but a sealed block can be signed
//! with the block key.

mod audit;
mod batcher_guard;
mod delegation;
mod file;
mod guard;
mod pipeline;
mod pkcs11;
mod validator_guard;
mod yubi;

use alloy_consensus::{SignableTransaction, Transaction, TxEip1559, TxEip4844};
use alloy_primitives::{Address, B256, keccak256};
use secp256k1::ecdsa;

pub use audit::{AuditEntry, AuditError, AuditedSigner, verify as verify_audit_log};
pub use batcher_guard::{BatcherGuard, BatcherGuardError, BatcherRules};
pub use delegation::{
    Certificate, HotKey, MerkleTree, PreconfError, Preconfirmation, SignedBatch, certify, verify_preconfirmation,
    verify_proof,
};
pub use file::FileSigner;
pub use guard::{EpochFence, FenceError, GuardError, GuardedSigner, HighWaterMark, REWIND_BLOCKS_MAX, SignGuard};
pub use pipeline::{BacklogFull, SignedBlock, SignerHealth, SigningPipeline};
pub use pkcs11::{Pkcs11Config, Pkcs11Signer};
pub use validator_guard::{ValidatorGuard, ValidatorGuardError, ValidatorRules};
pub use yubi::{YubiConnector, YubiHsmConfig, YubiHsmSigner};

/// What a signer may sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload<'a> {
    /// A sealed block, signed with the OP Stack unsafe-block scheme over its
    /// hash (the payload hash is the block hash: keccak256 of the RLP header).
    /// `leader_epoch` is the asking leader's epoch, the fencing token of a
    /// high-availability pair (0 for a single node): the guard refuses one
    /// older than the newest it has seen. The block hash commits to it
    /// through the header's extra data, so it is not in the signed digest.
    SealedBlock { chain_id: u64, number: u64, block_hash: B256, leader_epoch: u64 },
    /// `tephra hsm selftest`: a random challenge under its own domain, so that
    /// it can never be a block signature.
    SelfTest { challenge: B256 },
    /// A certificate for an epoch's hot preconfirmation key (block key only).
    Delegation { chain_id: u64, epoch: u64, hot_key: Address, valid_from_block: u64, valid_until_block: u64 },
    /// The Merkle root of one mini-block's transaction hashes (hot key only).
    PreconfBatch { chain_id: u64, block_number: u64, first_index: u32, count: u32, root: B256 },
    /// An L1 transaction of the OP Stack batcher (batcher key only): the
    /// signer hashes the transaction itself, so that its guard
    /// (`BatcherGuard`) judges what is signed, not a digest.
    L1Transaction(L1Tx<'a>),
    /// A Hyperlane checkpoint (validator key only): the origin's
    /// MerkleTreeHook had `root` after its leaf `index`, the message
    /// `message_id`. Signed as Hyperlane's validators sign it
    /// (`CheckpointLib.digest`), so that MessageIdMultisigIsm recovers the
    /// key; the guard (`ValidatorGuard`) never signs two roots for one index.
    HyperlaneCheckpoint { origin: u32, merkle_tree_hook: B256, root: B256, index: u32, message_id: B256 },
    /// A Hyperlane validator's announcement of where its checkpoints are
    /// (validator key only; `ValidatorAnnounce.getAnnouncementDigest`).
    HyperlaneAnnouncement { origin: u32, mailbox: B256, storage_location: &'a str },
}

/// The L1 transactions a batcher sends: frames in calldata (EIP-1559) or
/// in blobs (EIP-4844, without the sidecar the signature does not cover).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L1Tx<'a> {
    Eip1559(&'a TxEip1559),
    Eip4844(&'a TxEip4844),
}

impl L1Tx<'_> {
    pub fn signing_hash(&self) -> B256 {
        match self {
            L1Tx::Eip1559(tx) => tx.signature_hash(),
            L1Tx::Eip4844(tx) => tx.signature_hash(),
        }
    }

    pub fn nonce(&self) -> u64 {
        match self {
            L1Tx::Eip1559(tx) => tx.nonce,
            L1Tx::Eip4844(tx) => tx.nonce,
        }
    }

    fn as_transaction(&self) -> &dyn Transaction {
        match self {
            L1Tx::Eip1559(tx) => *tx,
            L1Tx::Eip4844(tx) => *tx,
        }
    }
}
/// Domains of tephra's own payloads: each hashes a distinct prefix, so none
/// can be taken for another or for an OP Stack block signing hash.
const SELF_TEST_DOMAIN: &[u8] = b"tephra/hsm/selftest/v1";
const DELEGATION_DOMAIN: &[u8] = b"tephra/delegation/v1";
const PRECONF_DOMAIN: &[u8] = b"tephra/preconf/v1";

impl Payload<'_> {
    /// The 32-byte digest that is signed.
    pub fn signing_hash(&self) -> B256 {
        match *self {
            Payload::SealedBlock { chain_id, block_hash, .. } => block_signing_hash(chain_id, block_hash),
            Payload::SelfTest { challenge } => keccak256([SELF_TEST_DOMAIN, challenge.as_slice()].concat()),
            Payload::Delegation { chain_id, epoch, hot_key, valid_from_block, valid_until_block } => keccak256(
                [
                    DELEGATION_DOMAIN,
                    &chain_id.to_be_bytes(),
                    &epoch.to_be_bytes(),
                    hot_key.as_slice(),
                    &valid_from_block.to_be_bytes(),
                    &valid_until_block.to_be_bytes(),
                ]
                .concat(),
            ),
            Payload::PreconfBatch { chain_id, block_number, first_index, count, root } => keccak256(
                [
                    PRECONF_DOMAIN,
                    &chain_id.to_be_bytes(),
                    &block_number.to_be_bytes(),
                    &first_index.to_be_bytes(),
                    &count.to_be_bytes(),
                    root.as_slice(),
                ]
                .concat(),
            ),
            Payload::L1Transaction(tx) => tx.signing_hash(),
            Payload::HyperlaneCheckpoint { origin, merkle_tree_hook, root, index, message_id } => {
                tephra_types::hyperlane::checkpoint_digest(origin, merkle_tree_hook, root, index, message_id)
            }
            Payload::HyperlaneAnnouncement { origin, mailbox, storage_location } => {
                tephra_types::hyperlane::announcement_digest(origin, mailbox, storage_location)
            }
        }
    }
}

/// OP Stack unsafe-block signing hash:
/// keccak256(domain (32 zero bytes) ‖ chain id as 32 big-endian bytes ‖ payload hash).
pub fn block_signing_hash(chain_id: u64, payload_hash: B256) -> B256 {
    let mut message = [0u8; 96];
    message[56..64].copy_from_slice(&chain_id.to_be_bytes());
    message[64..].copy_from_slice(payload_hash.as_slice());
    keccak256(message)
}

/// A 65-byte signature: r ‖ s ‖ v, `s` in the lower half of the curve order
/// and `v` the recovery id (0 or 1).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature65(pub [u8; 65]);

impl core::fmt::Debug for Signature65 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("signer key: {0}")]
    Key(String),
    #[error("signer I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("HSM: {0}")]
    Device(String),
    /// The token refused the PIN: never offered again without a restart,
    /// since each try counts towards locking the user out.
    #[error("the token refused the PIN: {0}")]
    PinRefused(String),
    #[error("refused by the signing guard: {0}")]
    Guard(#[from] GuardError),
    #[error("refused by the validator guard: {0}")]
    Validator(#[from] ValidatorGuardError),
}

/// Turns an HSM's r ‖ s into an Ethereum signature: `s` normalised into the
/// lower half of the curve order (HSMs do not), and the recovery id found by
/// trial recovery against the key's address.
pub fn ethereum_signature(hash: B256, compact: &[u8; 64], address: Address) -> Result<Signature65, SignError> {
    let mut signature =
        ecdsa::Signature::from_compact(compact).map_err(|e| SignError::Device(format!("bad signature: {e}")))?;
    signature.normalize_s();
    let compact = signature.serialize_compact();
    for recovery_id in 0..2u8 {
        if tephra_types::crypto::recover_address(hash, &compact, recovery_id) == Some(address) {
            let mut out = [0u8; 65];
            out[..64].copy_from_slice(&compact);
            out[64] = recovery_id;
            return Ok(Signature65(out));
        }
    }
    Err(SignError::Device("the signature does not recover to the key's address".into()))
}

/// A key that signs typed payloads.
pub trait Signer: Send + Sync {
    /// The signing key's public key.
    fn public_key(&self) -> secp256k1::PublicKey;
    /// The Ethereum address of the signing key.
    fn address(&self) -> Address {
        tephra_types::crypto::address_of(&self.public_key())
    }
    /// Signs `payload`; the signature recovers to `address()`.
    fn sign(&self, payload: &Payload<'_>) -> Result<Signature65, SignError>;
    /// The blocks above `number` (hash `hash`) were abandoned: an OP Stack
    /// chain rebuilds them on a reorged L1, as op-node rebuilds and signs
    /// unsafe blocks again. Only a signer with a double-sign guard keeps
    /// anything to lower.
    fn rewind(&self, number: u64, hash: B256) -> Result<(), SignError> {
        let _ = (number, hash);
        Ok(())
    }
}

impl<S: Signer + ?Sized> Signer for Box<S> {
    fn public_key(&self) -> secp256k1::PublicKey {
        (**self).public_key()
    }

    fn address(&self) -> Address {
        (**self).address()
    }

    fn sign(&self, payload: &Payload<'_>) -> Result<Signature65, SignError> {
        (**self).sign(payload)
    }

    fn rewind(&self, number: u64, hash: B256) -> Result<(), SignError> {
        (**self).rewind(number, hash)
    }
}

/// The address that signed `hash` with `signature`, if it recovers.
pub fn recover(signature: &Signature65, hash: B256) -> Option<Address> {
    let compact: &[u8; 64] = signature.0[..64].try_into().expect("65 bytes hold 64");
    tephra_types::crypto::recover_address(hash, compact, signature.0[64])
}

#[cfg(test)]
mod tests {
    use alloy_primitives::b256;

    use super::*;

    #[test]
    fn op_stack_golden_vector() {
        let payload_hash = keccak256([0x99u8; 32]);
        assert_eq!(
            block_signing_hash(10, payload_hash),
            b256!("44a0e2b1aba1aae1771eddae1dcd2ad18a8cdac8891517153f03253e49d3f206")
        );
    }

    #[test]
    fn another_chain_id_changes_the_hash() {
        let payload_hash = keccak256([0x99u8; 32]);
        assert_ne!(block_signing_hash(10, payload_hash), block_signing_hash(11, payload_hash));
        assert_ne!(block_signing_hash(10, payload_hash), block_signing_hash(10, keccak256([0x98u8; 32])));
    }
}
