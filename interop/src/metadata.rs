//! The metadata MessageIdMultisigIsm verifies a message with
//! (`MessageIdMultisigIsmMetadata.sol`): the origin's MerkleTreeHook, the
//! signed root and index, then `threshold` signatures, 65 bytes each, in the
//! order of the ISM's validator list (`AbstractMultisigIsm.verify` walks the
//! list forward: any other order reverts `!threshold`).
//!
//! ```text
//! [0:32] merkle tree hook | [32:64] root | [64:68] index (uint32 BE) | [68:] r ‖ s ‖ v, ...
//! ```

use alloy_primitives::Address;

use crate::checkpoint::{CheckpointWithId, SignedCheckpoint};

/// Why no metadata can be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("{signed} of the validators signed checkpoint {index} for this message; the ISM needs {threshold}")]
    BelowThreshold { index: u32, signed: usize, threshold: usize },
    #[error("a threshold of {threshold} for {validators} validators: the ISM refuses it")]
    BadThreshold { threshold: usize, validators: usize },
}

/// The metadata for `checkpoint` from the checkpoints `signed` by
/// validators (each recovered here; one not by a validator of `validators`,
/// or over another checkpoint, is passed over), for an ISM of `validators`
/// (its on-chain order) and `threshold`.
pub fn message_id_multisig_metadata(
    checkpoint: &CheckpointWithId,
    signed: &[SignedCheckpoint],
    validators: &[Address],
    threshold: usize,
) -> Result<Vec<u8>, MetadataError> {
    if threshold == 0 || threshold > validators.len() {
        return Err(MetadataError::BadThreshold { threshold, validators: validators.len() });
    }
    let digest = checkpoint.digest();
    let mut by_validator: Vec<Option<&SignedCheckpoint>> = vec![None; validators.len()];
    for s in signed.iter().filter(|s| s.value == *checkpoint) {
        if let Some(position) = s.signature.signer(digest).and_then(|a| validators.iter().position(|v| *v == a)) {
            by_validator[position] = Some(s);
        }
    }
    let signatures: Vec<&SignedCheckpoint> = by_validator.into_iter().flatten().take(threshold).collect();
    let c = &checkpoint.checkpoint;
    if signatures.len() < threshold {
        return Err(MetadataError::BelowThreshold { index: c.index, signed: signatures.len(), threshold });
    }
    let mut metadata = Vec::with_capacity(68 + 65 * threshold);
    metadata.extend_from_slice(c.merkle_tree_hook.as_slice());
    metadata.extend_from_slice(c.root.as_slice());
    metadata.extend_from_slice(&c.index.to_be_bytes());
    for s in signatures {
        metadata.extend_from_slice(&s.signature.0);
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use alloy_primitives::B256;

    use super::*;
    use crate::checkpoint::EthSignature;

    fn stored() -> SignedCheckpoint {
        SignedCheckpoint::from_json(include_str!("../testdata/checkpoint_with_id.json")).unwrap()
    }

    fn signer() -> Address {
        include_str!("../testdata/checkpoint_signer.txt").trim().parse().unwrap()
    }

    #[test]
    fn metadata_is_hook_root_index_then_the_signatures_in_validator_order() {
        let signed = stored();
        let other = Address::with_last_byte(7);
        let metadata = message_id_multisig_metadata(&signed.value, &[signed], &[other, signer()], 1).unwrap();
        assert_eq!(metadata.len(), 68 + 65);
        assert_eq!(&metadata[..32], signed.value.checkpoint.merkle_tree_hook.as_slice());
        assert_eq!(&metadata[32..64], signed.value.checkpoint.root.as_slice());
        assert_eq!(&metadata[64..68], &0u32.to_be_bytes());
        assert_eq!(&metadata[68..], &signed.signature.0);
    }

    #[test]
    fn too_few_signers_a_stranger_or_another_checkpoint_are_refused() {
        let signed = stored();
        let (me, other) = (signer(), Address::with_last_byte(7));
        let below = message_id_multisig_metadata(&signed.value, &[signed], &[me, other], 2).unwrap_err();
        assert_eq!(below, MetadataError::BelowThreshold { index: 0, signed: 1, threshold: 2 });
        let stranger = message_id_multisig_metadata(&signed.value, &[signed], &[other], 1).unwrap_err();
        assert!(matches!(stranger, MetadataError::BelowThreshold { signed: 0, .. }));
        let mut elsewhere = signed.value;
        elsewhere.checkpoint.root = B256::repeat_byte(1);
        let moved = message_id_multisig_metadata(&elsewhere, &[signed], &[me], 1).unwrap_err();
        assert!(matches!(moved, MetadataError::BelowThreshold { signed: 0, .. }));
        let forged = SignedCheckpoint { signature: EthSignature([1; 65]), ..signed };
        assert!(message_id_multisig_metadata(&signed.value, &[forged], &[me], 1).is_err());
        assert!(matches!(
            message_id_multisig_metadata(&signed.value, &[signed], &[me], 0),
            Err(MetadataError::BadThreshold { .. })
        ));
    }
}
