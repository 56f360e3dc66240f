//! The digests a Hyperlane validator signs, from `CheckpointLib.sol` and
//! `ValidatorAnnounce.sol` at `@hyperlane-xyz/core` 12.1.0: here, below
//! both the signer (which computes what it signs from typed fields,
//! tephra-hsm) and the interop crate (which builds and checks them).

use alloy_primitives::{B256, keccak256};

/// `keccak256(abi.encodePacked(uint32 origin, bytes32 merkleTreeHook, "HYPERLANE"))`.
pub fn domain_hash(origin: u32, merkle_tree_hook: B256) -> B256 {
    keccak256([&origin.to_be_bytes()[..], merkle_tree_hook.as_slice(), b"HYPERLANE"].concat())
}

/// EIP-191's hash of a 32-byte hash: what `ECDSA.toEthSignedMessageHash` gives.
pub fn eth_signed_message_hash(hash: B256) -> B256 {
    keccak256([&b"\x19Ethereum Signed Message:\n32"[..], hash.as_slice()].concat())
}

/// `keccak256(domainHash ‖ root ‖ uint32 index ‖ messageId)`: the agents'
/// signing hash of a checkpoint with its message id.
pub fn checkpoint_signing_hash(origin: u32, merkle_tree_hook: B256, root: B256, index: u32, message_id: B256) -> B256 {
    let domain = domain_hash(origin, merkle_tree_hook);
    keccak256([domain.as_slice(), root.as_slice(), &index.to_be_bytes(), message_id.as_slice()].concat())
}

/// What a validator's key signs for a checkpoint, and what
/// MessageIdMultisigIsm recovers its signers from (`CheckpointLib.digest`).
pub fn checkpoint_digest(origin: u32, merkle_tree_hook: B256, root: B256, index: u32, message_id: B256) -> B256 {
    eth_signed_message_hash(checkpoint_signing_hash(origin, merkle_tree_hook, root, index, message_id))
}

/// What a validator signs to announce where its checkpoints are
/// (`ValidatorAnnounce.getAnnouncementDigest`): the origin's domain and
/// Mailbox, and the storage location.
pub fn announcement_digest(origin: u32, mailbox: B256, storage_location: &str) -> B256 {
    let domain = keccak256([&origin.to_be_bytes()[..], mailbox.as_slice(), b"HYPERLANE_ANNOUNCEMENT"].concat());
    eth_signed_message_hash(keccak256([domain.as_slice(), storage_location.as_bytes()].concat()))
}
