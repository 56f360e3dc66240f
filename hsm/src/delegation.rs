//! Delegated preconfirmation keys. A block key in an HSM takes 73-125 ms a
//! signature, far too slow to sign preconfirmations, so each epoch the node
//! makes an in-memory hot key and has the block key sign a certificate for
//! it (chain id, epoch, hot key, validity window in blocks). The hot key signs
//! once per mini-block: the Merkle root of its transaction hashes. Each client
//! gets its own transaction's proof under that root, so it can check its
//! preconfirmation back to the block key without trusting the node.

use alloy_primitives::{Address, B256, keccak256};
use tephra_types::wire;

use crate::{Payload, SignError, Signature65, Signer, recover};

/// The block key's statement that `hot_key` may sign preconfirmations for
/// blocks `valid_from_block..valid_until_block` of `chain_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Certificate {
    pub chain_id: u64,
    pub epoch: u64,
    pub hot_key: Address,
    pub valid_from_block: u64,
    pub valid_until_block: u64,
    /// By the block key, over `Payload::Delegation`.
    pub signature: Signature65,
}

impl Certificate {
    pub fn payload(&self) -> Payload<'static> {
        Payload::Delegation {
            chain_id: self.chain_id,
            epoch: self.epoch,
            hot_key: self.hot_key,
            valid_from_block: self.valid_from_block,
            valid_until_block: self.valid_until_block,
        }
    }
}

/// A mini-block's preconfirmations: the root of its transaction hashes,
/// signed by the hot key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedBatch {
    pub block_number: u64,
    pub first_index: u32,
    pub count: u32,
    pub root: B256,
    /// By the hot key, over `Payload::PreconfBatch`.
    pub signature: Signature65,
}

/// Everything a client needs to check its preconfirmation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preconfirmation {
    pub tx_hash: B256,
    /// The transaction's index in its block.
    pub index: u32,
    pub batch: SignedBatch,
    /// Siblings from the leaf up to the root.
    pub proof: Vec<B256>,
    pub certificate: Certificate,
}

/// The UDP proof datagram's flat form (docs/wire.md) of a preconfirmation.
impl From<&Preconfirmation> for wire::SignedPreconf {
    fn from(p: &Preconfirmation) -> Self {
        let (batch, certificate) = (&p.batch, &p.certificate);
        Self {
            tx_hash: p.tx_hash,
            block_number: batch.block_number,
            index: p.index,
            batch_first_index: batch.first_index,
            batch_count: batch.count,
            batch_root: batch.root,
            batch_signature: batch.signature.0,
            proof: p.proof.clone(),
            chain_id: certificate.chain_id,
            epoch: certificate.epoch,
            hot_key: certificate.hot_key,
            valid_from_block: certificate.valid_from_block,
            valid_until_block: certificate.valid_until_block,
            certificate_signature: certificate.signature.0,
        }
    }
}

impl From<&wire::SignedPreconf> for Preconfirmation {
    fn from(p: &wire::SignedPreconf) -> Self {
        Self {
            tx_hash: p.tx_hash,
            index: p.index,
            batch: SignedBatch {
                block_number: p.block_number,
                first_index: p.batch_first_index,
                count: p.batch_count,
                root: p.batch_root,
                signature: Signature65(p.batch_signature),
            },
            proof: p.proof.clone(),
            certificate: Certificate {
                chain_id: p.chain_id,
                epoch: p.epoch,
                hot_key: p.hot_key,
                valid_from_block: p.valid_from_block,
                valid_until_block: p.valid_until_block,
                signature: Signature65(p.certificate_signature),
            },
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PreconfError {
    #[error("the certificate is not signed by the block key {0}")]
    Certificate(Address),
    #[error("the batch is not signed by the certified hot key")]
    HotKey,
    #[error("block {0} is outside the certificate's window")]
    Window(u64),
    #[error("the transaction is not at its index under the signed root")]
    Proof,
}

fn node_hash(left: B256, right: B256) -> B256 {
    keccak256([left.as_slice(), right.as_slice()].concat())
}

/// A binary keccak Merkle tree over leaves in order; an odd node is carried
/// up unhashed. Every level is kept, so that each client's proof is a few
/// lookups: the tree is built once per mini-block, proofs are asked for per
/// transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleTree {
    /// `levels[0]` are the leaves, the last level is the root alone.
    levels: Vec<Vec<B256>>,
}

impl MerkleTree {
    pub fn new(leaves: &[B256]) -> Self {
        let mut levels = vec![leaves.to_vec()];
        while levels.last().is_some_and(|level| level.len() > 1) {
            let level = levels.last().expect("checked").chunks(2);
            let next = level.map(|pair| if pair.len() == 2 { node_hash(pair[0], pair[1]) } else { pair[0] }).collect();
            levels.push(next);
        }
        Self { levels }
    }

    /// The root; the root of one leaf is the leaf, of none the zero hash.
    pub fn root(&self) -> B256 {
        self.levels.last().and_then(|level| level.first()).copied().unwrap_or_default()
    }

    pub fn leaves(&self) -> &[B256] {
        &self.levels[0]
    }

    /// The siblings of leaf `index`, bottom up (levels where it has none skipped).
    pub fn proof(&self, mut index: usize) -> Vec<B256> {
        let mut proof = Vec::with_capacity(self.levels.len());
        for level in &self.levels[..self.levels.len() - 1] {
            if let Some(&sibling) = level.get(index ^ 1) {
                proof.push(sibling);
            }
            index /= 2;
        }
        proof
    }
}

/// Whether `leaf` sits at `index` of `count` leaves under `root`.
pub fn verify_proof(leaf: B256, mut index: usize, mut count: usize, proof: &[B256], root: B256) -> bool {
    let mut hash = leaf;
    let mut siblings = proof.iter();
    while count > 1 {
        let sibling = index ^ 1;
        if sibling < count {
            let Some(&other) = siblings.next() else { return false };
            hash = if index.is_multiple_of(2) { node_hash(hash, other) } else { node_hash(other, hash) };
        }
        index /= 2;
        count = count.div_ceil(2);
    }
    siblings.next().is_none() && hash == root
}

/// An in-memory hot key that signs preconfirmation batches and nothing else.
pub struct HotKey {
    key: crate::FileSigner,
}

impl core::fmt::Debug for HotKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HotKey").field("address", &self.key.address()).field("secret", &"REDACTED").finish()
    }
}

impl HotKey {
    /// A fresh random key; it never touches the disk.
    pub fn generate() -> Result<Self, SignError> {
        Ok(Self { key: crate::FileSigner::random()? })
    }

    pub fn address(&self) -> Address {
        self.key.address()
    }

    /// Signs the root of one mini-block's transaction-hash tree.
    pub fn sign_batch(&self, chain_id: u64, block_number: u64, first_index: u32, tree: &MerkleTree) -> SignedBatch {
        let count = u32::try_from(tree.leaves().len()).expect("a mini-block is bounded");
        let root = tree.root();
        let payload = Payload::PreconfBatch { chain_id, block_number, first_index, count, root };
        let signature = self.key.sign(&payload).expect("an in-memory key always signs");
        SignedBatch { block_number, first_index, count, root, signature }
    }
}

/// Has the block key certify `hot` for `epoch` (blocks `from..until`).
pub fn certify(
    block_key: &dyn Signer,
    chain_id: u64,
    epoch: u64,
    hot: &HotKey,
    valid_from_block: u64,
    valid_until_block: u64,
) -> Result<Certificate, SignError> {
    let payload = Payload::Delegation { chain_id, epoch, hot_key: hot.address(), valid_from_block, valid_until_block };
    let signature = block_key.sign(&payload)?;
    Ok(Certificate { chain_id, epoch, hot_key: hot.address(), valid_from_block, valid_until_block, signature })
}

/// Checks a preconfirmation back to the block key's address.
pub fn verify_preconfirmation(p: &Preconfirmation, block_key: Address) -> Result<(), PreconfError> {
    let cert = &p.certificate;
    if recover(&cert.signature, cert.payload().signing_hash()) != Some(block_key) {
        return Err(PreconfError::Certificate(block_key));
    }
    let batch = &p.batch;
    if !(cert.valid_from_block..cert.valid_until_block).contains(&batch.block_number) {
        return Err(PreconfError::Window(batch.block_number));
    }
    let payload = Payload::PreconfBatch {
        chain_id: cert.chain_id,
        block_number: batch.block_number,
        first_index: batch.first_index,
        count: batch.count,
        root: batch.root,
    };
    if recover(&batch.signature, payload.signing_hash()) != Some(cert.hot_key) {
        return Err(PreconfError::HotKey);
    }
    let position = p.index.checked_sub(batch.first_index).ok_or(PreconfError::Proof)? as usize;
    if position >= batch.count as usize
        || !verify_proof(p.tx_hash, position, batch.count as usize, &p.proof, batch.root)
    {
        return Err(PreconfError::Proof);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::FileSigner;

    #[test]
    fn a_preconfirmation_checks_back_to_the_block_key_and_forgeries_fail() {
        let block_key = FileSigner::from_bytes(&[1; 32]).unwrap();
        let hot = HotKey::generate().unwrap();
        let certificate = certify(&block_key, 31337, 3, &hot, 300, 400).unwrap();
        let hashes: Vec<B256> = (0..5u8).map(B256::repeat_byte).collect();
        let tree = MerkleTree::new(&hashes);
        let batch = hot.sign_batch(31337, 321, 10, &tree);
        let preconf = |i: usize| Preconfirmation {
            tx_hash: hashes[i],
            index: 10 + u32::try_from(i).unwrap(),
            batch,
            proof: tree.proof(i),
            certificate,
        };
        for i in 0..hashes.len() {
            assert_eq!(verify_preconfirmation(&preconf(i), block_key.address()), Ok(()));
            // And as a UDP proof datagram carries it.
            let mut datagram = Vec::new();
            wire::encode_proof(7, &wire::SignedPreconf::from(&preconf(i)), &mut datagram);
            let (_, received) = wire::decode_proof(&datagram).unwrap();
            assert_eq!(Preconfirmation::from(&received), preconf(i));
        }
        let other_key = FileSigner::from_bytes(&[2; 32]).unwrap();
        assert!(matches!(verify_preconfirmation(&preconf(0), other_key.address()), Err(PreconfError::Certificate(_))));
        let mut moved = preconf(1);
        moved.index = 12;
        assert_eq!(verify_preconfirmation(&moved, block_key.address()), Err(PreconfError::Proof));
        let mut swapped = preconf(2);
        swapped.tx_hash = B256::repeat_byte(9);
        assert_eq!(verify_preconfirmation(&swapped, block_key.address()), Err(PreconfError::Proof));
        let rogue = HotKey::generate().unwrap();
        let mut rogue_batch = preconf(0);
        rogue_batch.batch = rogue.sign_batch(31337, 321, 10, &tree);
        assert_eq!(verify_preconfirmation(&rogue_batch, block_key.address()), Err(PreconfError::HotKey));
        let late = Preconfirmation { batch: hot.sign_batch(31337, 400, 0, &tree), index: 0, ..preconf(0) };
        assert_eq!(verify_preconfirmation(&late, block_key.address()), Err(PreconfError::Window(400)));
    }

    proptest! {
        #[test]
        fn every_leaf_proves_and_no_other_position_does(count in 1usize..70, pick in 0usize..70, wrong in 0usize..70) {
            let leaves: Vec<B256> = (0..count).map(|i| keccak256(i.to_be_bytes())).collect();
            let tree = MerkleTree::new(&leaves);
            let root = tree.root();
            let index = pick % count;
            let proof = tree.proof(index);
            prop_assert!(verify_proof(leaves[index], index, count, &proof, root));
            let other = wrong % count;
            if other != index {
                prop_assert!(!verify_proof(leaves[index], other, count, &proof, root));
            }
        }
    }
}
