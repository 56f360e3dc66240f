//! The incremental Merkle tree of depth 32 that the origin's MerkleTreeHook
//! keeps of dispatched message ids (`Merkle.sol`; the agents'
//! `IncrementalMerkle`): a branch of 32 nodes and a count, a root computed
//! against the zero subtrees.
//!
//! Invariants: `count` leaves were inserted, at most `MAX_LEAVES`; the root
//! is the one the contract's `root()` gives after the same inserts.

use std::sync::OnceLock;

use alloy_primitives::{B256, keccak256};

pub const TREE_DEPTH: usize = 32;
/// The contract's bound: `2**32 - 1` leaves.
pub const MAX_LEAVES: u64 = (1 << TREE_DEPTH) - 1;
/// `IncrementalTree::to_bytes`: the count and the branch.
pub const TREE_BYTES: usize = 8 + 32 * TREE_DEPTH;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncrementalTree {
    branch: [B256; TREE_DEPTH],
    count: u64,
}

impl Default for IncrementalTree {
    fn default() -> Self {
        Self { branch: [B256::ZERO; TREE_DEPTH], count: 0 }
    }
}

/// The tree holds `MAX_LEAVES` already.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the merkle tree is full ({MAX_LEAVES} leaves)")]
pub struct TreeFull;

fn hash_pair(left: &B256, right: &B256) -> B256 {
    let mut both = [0u8; 64];
    both[..32].copy_from_slice(left.as_slice());
    both[32..].copy_from_slice(right.as_slice());
    keccak256(both)
}

/// The roots of empty subtrees: `Z[0] = 0`, `Z[i] = keccak(Z[i-1] ‖ Z[i-1])`.
pub fn zero_hashes() -> &'static [B256; TREE_DEPTH] {
    static ZEROS: OnceLock<[B256; TREE_DEPTH]> = OnceLock::new();
    ZEROS.get_or_init(|| {
        let mut zeros = [B256::ZERO; TREE_DEPTH];
        for i in 1..TREE_DEPTH {
            zeros[i] = hash_pair(&zeros[i - 1], &zeros[i - 1]);
        }
        zeros
    })
}

impl IncrementalTree {
    /// Leaves inserted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Inserts `leaf`; its index.
    pub fn insert(&mut self, leaf: B256) -> Result<u32, TreeFull> {
        if self.count >= MAX_LEAVES {
            return Err(TreeFull);
        }
        let index = u32::try_from(self.count).expect("below MAX_LEAVES");
        self.count += 1;
        let (mut size, mut node) = (self.count, leaf);
        for level in 0..TREE_DEPTH {
            if size & 1 == 1 {
                self.branch[level] = node;
                return Ok(index);
            }
            node = hash_pair(&self.branch[level], &node);
            size /= 2;
        }
        unreachable!("a count below 2**32 has a set bit in its first 32")
    }

    /// The tree as bytes, to keep across restarts: count (u64 LE), then
    /// the branch's 32 nodes.
    pub fn to_bytes(&self) -> [u8; TREE_BYTES] {
        let mut bytes = [0u8; TREE_BYTES];
        bytes[..8].copy_from_slice(&self.count.to_le_bytes());
        for (level, node) in self.branch.iter().enumerate() {
            bytes[8 + 32 * level..8 + 32 * (level + 1)].copy_from_slice(node.as_slice());
        }
        bytes
    }

    /// The tree `to_bytes` wrote; None for a count past `MAX_LEAVES`.
    pub fn from_bytes(bytes: &[u8; TREE_BYTES]) -> Option<Self> {
        let count = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        let mut branch = [B256::ZERO; TREE_DEPTH];
        for (level, node) in branch.iter_mut().enumerate() {
            *node = B256::from_slice(&bytes[8 + 32 * level..8 + 32 * (level + 1)]);
        }
        (count <= MAX_LEAVES).then_some(Self { branch, count })
    }

    pub fn root(&self) -> B256 {
        let zeros = zero_hashes();
        let mut current = B256::ZERO;
        for (level, zero) in zeros.iter().enumerate() {
            current = if (self.count >> level) & 1 == 1 {
                hash_pair(&self.branch[level], &current)
            } else {
                hash_pair(&current, zero)
            };
        }
        current
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    /// EIP-191's hash of a text, as Hyperlane's merkle vectors make leaves.
    fn hash_message(text: &str) -> B256 {
        let mut bytes = format!("\x19Ethereum Signed Message:\n{}", text.len()).into_bytes();
        bytes.extend_from_slice(text.as_bytes());
        keccak256(bytes)
    }

    /// Hyperlane's own vectors (`vectors/merkle.json` at the pinned release).
    #[test]
    fn the_hyperlane_vectors_give_their_roots() {
        let vectors: Vec<Value> = serde_json::from_str(include_str!("../testdata/merkle.json")).unwrap();
        assert_eq!(vectors.len(), 5);
        for v in vectors {
            let mut tree = IncrementalTree::default();
            for (i, leaf) in v["leaves"].as_array().unwrap().iter().enumerate() {
                assert_eq!(tree.insert(hash_message(leaf.as_str().unwrap())).unwrap(), u32::try_from(i).unwrap());
            }
            assert_eq!(tree.root(), v["expectedRoot"].as_str().unwrap().parse::<B256>().unwrap(), "{}", v["testName"]);
        }
    }

    /// The root the slow way: every level of the whole tree, the missing
    /// nodes being the zero subtrees'.
    fn full_tree_root(leaves: &[B256]) -> B256 {
        let zeros = zero_hashes();
        let mut level: Vec<B256> = leaves.to_vec();
        for zero in zeros {
            if level.len() % 2 == 1 {
                level.push(*zero);
            }
            level = level.chunks(2).map(|pair| hash_pair(&pair[0], &pair[1])).collect();
            if level.is_empty() {
                level.push(hash_pair(zero, zero));
            }
        }
        level[0]
    }

    proptest! {
        #[test]
        fn the_incremental_root_is_the_whole_trees(leaves in proptest::collection::vec(any::<[u8; 32]>(), 0..70)) {
            let leaves: Vec<B256> = leaves.into_iter().map(B256::from).collect();
            let mut tree = IncrementalTree::default();
            for (i, leaf) in leaves.iter().enumerate() {
                prop_assert_eq!(tree.insert(*leaf).unwrap() as usize, i);
                prop_assert_eq!(tree.root(), full_tree_root(&leaves[..=i]));
            }
            let kept = IncrementalTree::from_bytes(&tree.to_bytes()).unwrap();
            prop_assert_eq!(&kept, &tree);
        }
    }

    #[test]
    fn a_full_tree_refuses_a_leaf() {
        let mut tree = IncrementalTree { count: MAX_LEAVES, ..Default::default() };
        assert_eq!(tree.insert(B256::ZERO), Err(TreeFull));
        assert_eq!(tree.count(), MAX_LEAVES);
        let mut past = tree.to_bytes();
        past[..8].copy_from_slice(&(MAX_LEAVES + 1).to_le_bytes());
        assert_eq!(IncrementalTree::from_bytes(&past), None);
    }
}
