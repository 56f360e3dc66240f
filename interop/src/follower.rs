//! A validator's view of its origin's tree: the MerkleTreeHook's insertions
//! taken in order, each giving the checkpoint to sign.
//!
//! Invariants: the tree holds exactly the insertions 0..count, in order; an
//! insertion seen again (a replayed block) is passed over if it is the same
//! (checked against the newest `LEAVES_KEPT_MAX` leaves), and one out of
//! order or changed stops the follower, naming both.

use std::collections::VecDeque;

use alloy_primitives::B256;

use crate::{
    checkpoint::{Checkpoint, CheckpointWithId},
    tree::{IncrementalTree, TreeFull},
};

/// Why an insertion cannot be taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FollowError {
    #[error("the hook inserted leaf {got}, but the tree holds {expected} leaves: an insertion was missed")]
    Gap { expected: u32, got: u32 },
    #[error("leaf {index} was {before} and is now {now}: the origin's chain changed under a signed checkpoint")]
    Changed { index: u32, before: B256, now: B256 },
    #[error(transparent)]
    Full(#[from] TreeFull),
}

/// The newest leaves a follower keeps, to tell a replayed insertion from a
/// changed one: a replay reaches back a few blocks, never this far.
pub const LEAVES_KEPT_MAX: usize = 1 << 16;

/// The tree of one origin's MerkleTreeHook, and its newest leaves.
#[derive(Clone, Debug)]
pub struct TreeFollower {
    origin: u32,
    merkle_tree_hook: B256,
    tree: IncrementalTree,
    /// The leaves from index `count - newest.len()` on.
    newest: VecDeque<B256>,
}

impl TreeFollower {
    pub fn new(origin: u32, merkle_tree_hook: B256) -> Self {
        Self { origin, merkle_tree_hook, tree: IncrementalTree::default(), newest: VecDeque::new() }
    }

    /// A follower that goes on from `tree` (kept across a restart): the
    /// leaves before it are passed over as replays.
    pub fn resume(origin: u32, merkle_tree_hook: B256, tree: IncrementalTree) -> Self {
        Self { origin, merkle_tree_hook, tree, newest: VecDeque::new() }
    }

    pub fn origin(&self) -> u32 {
        self.origin
    }

    pub fn tree(&self) -> &IncrementalTree {
        &self.tree
    }

    /// Leaves taken.
    pub fn count(&self) -> u64 {
        self.tree.count()
    }

    pub fn root(&self) -> B256 {
        self.tree.root()
    }

    /// The hook inserted `message_id` at `index`: the checkpoint to sign, or
    /// `None` for an insertion already taken.
    pub fn take(&mut self, message_id: B256, index: u32) -> Result<Option<CheckpointWithId>, FollowError> {
        let count = self.tree.count();
        let first_kept = count - self.newest.len() as u64;
        match u64::from(index) {
            i if i < first_kept => Ok(None),
            i if i < count => {
                let before = self.newest[usize::try_from(i - first_kept).expect("fewer than LEAVES_KEPT_MAX")];
                if before == message_id {
                    Ok(None)
                } else {
                    Err(FollowError::Changed { index, before, now: message_id })
                }
            }
            i if i > count => Err(FollowError::Gap { expected: u32::try_from(count).unwrap_or(u32::MAX), got: index }),
            _ => {
                self.tree.insert(message_id)?;
                self.newest.push_back(message_id);
                if self.newest.len() > LEAVES_KEPT_MAX {
                    self.newest.pop_front();
                }
                let checkpoint = Checkpoint {
                    merkle_tree_hook: self.merkle_tree_hook,
                    origin: self.origin,
                    root: self.tree.root(),
                    index,
                };
                Ok(Some(CheckpointWithId { checkpoint, message_id }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insertions_in_order_give_checkpoints_replays_nothing_and_gaps_or_changes_stop() {
        let hook = B256::repeat_byte(0x22);
        let mut follower = TreeFollower::new(1000, hook);
        let ids: Vec<B256> = (1..=3).map(B256::repeat_byte).collect();
        let mut tree = IncrementalTree::default();
        for (i, id) in ids.iter().enumerate() {
            let index = u32::try_from(i).unwrap();
            let checkpoint = follower.take(*id, index).unwrap().unwrap();
            tree.insert(*id).unwrap();
            assert_eq!(
                checkpoint.checkpoint,
                Checkpoint { merkle_tree_hook: hook, origin: 1000, root: tree.root(), index }
            );
            assert_eq!(checkpoint.message_id, *id);
        }
        assert_eq!(follower.take(ids[1], 1), Ok(None), "a replayed insertion");
        assert_eq!(
            follower.take(B256::repeat_byte(9), 1),
            Err(FollowError::Changed { index: 1, before: ids[1], now: B256::repeat_byte(9) })
        );
        assert_eq!(follower.take(B256::repeat_byte(9), 5), Err(FollowError::Gap { expected: 3, got: 5 }));
        assert_eq!(follower.count(), 3);
        assert_eq!(follower.root(), tree.root());
    }
}
