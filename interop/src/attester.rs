//! A validator's attesting half, whatever it reads the origin from (the
//! node's own view, or any chain over JSON-RPC): the hook's insertions taken
//! in order into the tree, each checkpoint signed by the validator key
//! (behind its guard), written to the checkpoint store, and the tree and the
//! reader's position kept across restarts.
//!
//! ```text
//! insertions (id, index), position ─> TreeFollower ─> checkpoint ─> Signer (ValidatorGuard) ─> SignedCheckpoint
//!   ─> CheckpointStore: {index}_with_id.json each, index.json once ─> state file: tree | position
//! ```
//!
//! Invariant: the state file never runs ahead of the checkpoints written; a
//! crash between them signs the same checkpoints again, which the guard
//! allows (same index, same root).

use std::path::{Path, PathBuf};

use alloy_primitives::{Address, B256};
use tephra_hsm::{Payload, SignError, Signer};

use crate::{
    checkpoint::{Announcement, CheckpointWithId, EthSignature, SignedCheckpoint},
    checkpoint_store::{CheckpointStore, StoreError},
    follower::{FollowError, TreeFollower},
    tree::{IncrementalTree, TREE_BYTES},
};

/// Where a reader of the origin has read to: block `block`'s first
/// `txs_read` transactions (0: none of it), and the hash that must still be
/// the chain's for the reader to go on from there (the last transaction
/// read in `block`, or the block before it), if any.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub block: u64,
    pub txs_read: u64,
    pub anchor: Option<B256>,
}

/// tree | block u64 | txs_read u64 | anchor 32 (zero: none) | crc32c u32.
const STATE_BYTES: usize = TREE_BYTES + 8 + 8 + 32 + 4;

#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error("the validator key: {0}")]
    Sign(#[from] SignError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The origin's insertions do not continue the tree: attesting stops.
    #[error(transparent)]
    Follow(#[from] FollowError),
    #[error("validator state {path}: {reason}")]
    State { path: PathBuf, reason: String },
}

/// See the module comment.
pub struct Attester {
    follower: TreeFollower,
    position: Position,
    store: CheckpointStore,
    signer: Box<dyn Signer>,
    state_path: PathBuf,
}

impl std::fmt::Debug for Attester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attester").field("count", &self.follower.count()).field("position", &self.position).finish()
    }
}

impl Attester {
    /// The attester of `origin`'s `merkle_tree_hook`, going on from its
    /// state file (or from `start` with an empty tree).
    pub fn open(
        origin: u32,
        merkle_tree_hook: Address,
        start: Position,
        store: CheckpointStore,
        signer: Box<dyn Signer>,
        state_path: &Path,
    ) -> Result<Self, AttestError> {
        let (tree, position) = read_state(state_path)?.unwrap_or((IncrementalTree::default(), start));
        let follower = TreeFollower::resume(origin, merkle_tree_hook.into_word(), tree);
        Ok(Self { follower, position, store, signer, state_path: state_path.to_path_buf() })
    }

    pub fn position(&self) -> Position {
        self.position
    }

    /// Leaves in the tree.
    pub fn count(&self) -> u64 {
        self.follower.count()
    }

    pub fn store(&self) -> &CheckpointStore {
        &self.store
    }

    /// Takes `insertions` (in the origin's order), signs and writes the
    /// checkpoint of each new leaf, and moves to `position`; the new
    /// checkpoints' count. A gap or a changed leaf is `Follow`, with
    /// nothing after it taken.
    pub fn attest(&mut self, insertions: &[(B256, u32)], position: Position) -> Result<usize, AttestError> {
        let mut signed = Vec::new();
        let mut stopped = None;
        for &(message_id, index) in insertions {
            match self.follower.take(message_id, index) {
                Ok(Some(checkpoint)) => signed.push(self.sign(&checkpoint)?),
                Ok(None) => {}
                Err(error) => {
                    stopped = Some(error);
                    break;
                }
            }
        }
        self.store.write_checkpoints(&signed)?;
        if let Some(error) = stopped {
            return Err(error.into());
        }
        if position != self.position || !signed.is_empty() {
            self.position = position;
            self.save_state()?;
        }
        Ok(signed.len())
    }

    fn sign(&self, checkpoint: &CheckpointWithId) -> Result<SignedCheckpoint, SignError> {
        let c = &checkpoint.checkpoint;
        let payload = Payload::HyperlaneCheckpoint {
            origin: c.origin,
            merkle_tree_hook: c.merkle_tree_hook,
            root: c.root,
            index: c.index,
            message_id: checkpoint.message_id,
        };
        Ok(SignedCheckpoint { value: *checkpoint, signature: eth_signature(&self.signer.sign(&payload)?) })
    }

    /// Signs this store's location for `mailbox` of the origin into
    /// announcement.json, with metadata_latest.json beside it, as
    /// Hyperlane's validator does at start; the announcement, whose
    /// signature `ValidatorAnnounce.announce` takes.
    pub fn announce(&self, mailbox: Address, agent: &str) -> Result<(Announcement, EthSignature), AttestError> {
        let announcement = Announcement {
            validator: self.signer.address(),
            mailbox_address: mailbox.into_word(),
            mailbox_domain: self.follower_origin(),
            storage_location: self.store.storage_location(),
        };
        let payload = Payload::HyperlaneAnnouncement {
            origin: announcement.mailbox_domain,
            mailbox: announcement.mailbox_address,
            storage_location: &announcement.storage_location,
        };
        let signature = eth_signature(&self.signer.sign(&payload)?);
        self.store.write_announcement(&announcement.signed_json(&signature))?;
        self.store.write_metadata(agent)?;
        Ok((announcement, signature))
    }

    fn follower_origin(&self) -> u32 {
        self.follower.origin()
    }

    fn save_state(&self) -> Result<(), AttestError> {
        let p = &self.position;
        let mut bytes = Vec::with_capacity(STATE_BYTES);
        bytes.extend_from_slice(&self.follower.tree().to_bytes());
        bytes.extend_from_slice(&p.block.to_le_bytes());
        bytes.extend_from_slice(&p.txs_read.to_le_bytes());
        bytes.extend_from_slice(p.anchor.unwrap_or_default().as_slice());
        bytes.extend_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
        tephra_types::durable::replace_file(&self.state_path, &bytes)
            .map_err(|e| AttestError::State { path: self.state_path.clone(), reason: e.to_string() })
    }
}

/// A signer's r ‖ s ‖ recovery id as Hyperlane's contracts take it (v 27 or 28).
pub fn eth_signature(signature: &tephra_hsm::Signature65) -> EthSignature {
    let compact: &[u8; 64] = signature.0[..64].try_into().expect("65 bytes hold 64");
    EthSignature::from_recoverable(compact, signature.0[64])
}

/// The state `save_state` wrote, if any. A damaged one is refused: the
/// position it held would be lost, and starting over signs nothing new.
fn read_state(path: &Path) -> Result<Option<(IncrementalTree, Position)>, AttestError> {
    let damaged = |reason: String| AttestError::State { path: path.to_path_buf(), reason };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(damaged(e.to_string())),
    };
    if bytes.len() != STATE_BYTES {
        return Err(damaged(format!("{} bytes, expected {STATE_BYTES}", bytes.len())));
    }
    let (body, crc) = bytes.split_at(STATE_BYTES - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(damaged("checksum mismatch".into()));
    }
    let tree = IncrementalTree::from_bytes(body[..TREE_BYTES].try_into().expect("the tree's bytes"))
        .ok_or_else(|| damaged("a tree past its bound".into()))?;
    let number = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    let anchor = B256::from_slice(&body[TREE_BYTES + 16..TREE_BYTES + 48]);
    let position = Position {
        block: number(TREE_BYTES),
        txs_read: number(TREE_BYTES + 8),
        anchor: Some(anchor).filter(|a| !a.is_zero()),
    };
    Ok(Some((tree, position)))
}

#[cfg(test)]
mod tests {
    use tephra_hsm::{FileSigner, ValidatorGuard, ValidatorRules};

    use super::*;
    use crate::tree::IncrementalTree;

    const ORIGIN: u32 = 1000;
    const HOOK: Address = Address::repeat_byte(0x11);

    fn attester(dir: &Path) -> Attester {
        let rules =
            ValidatorRules { origin: ORIGIN, merkle_tree_hook: HOOK.into_word(), mailbox: B256::repeat_byte(2) };
        let key = FileSigner::from_bytes(&[5; 32]).unwrap();
        let guard = ValidatorGuard::open(key, rules, &dir.join("guard")).unwrap();
        let store = CheckpointStore::open(&dir.join("checkpoints")).unwrap();
        let start = Position { block: 1, txs_read: 0, anchor: None };
        Attester::open(ORIGIN, HOOK, start, store, Box::new(guard), &dir.join("state")).unwrap()
    }

    #[test]
    fn checkpoints_are_signed_in_order_and_the_tree_and_position_survive_a_restart() {
        let dir = tephra_testkit::fresh_dir("attester");
        let ids: Vec<B256> = (1..=5).map(B256::repeat_byte).collect();
        let at = |block| Position { block, txs_read: 2, anchor: Some(B256::repeat_byte(0xee)) };
        let mut first = attester(&dir);
        assert_eq!(first.attest(&[(ids[0], 0), (ids[1], 1)], at(3)).unwrap(), 2);
        drop(first);

        let mut again = attester(&dir);
        assert_eq!((again.count(), again.position()), (2, at(3)));
        // A replay of what was taken is passed over; the next leaves are signed.
        assert_eq!(again.attest(&[(ids[1], 1), (ids[2], 2)], at(4)).unwrap(), 1);
        let mut tree = IncrementalTree::default();
        for id in &ids[..3] {
            tree.insert(*id).unwrap();
        }
        let latest = again.store().checkpoint(2).unwrap().unwrap();
        assert_eq!((latest.value.checkpoint.root, latest.value.message_id), (tree.root(), ids[2]));
        assert_eq!(latest.signer(), Some(FileSigner::from_bytes(&[5; 32]).unwrap().address()));
        assert_eq!(again.store().latest_index().unwrap(), Some(2));

        // A gap stops it, the position unmoved.
        assert!(matches!(again.attest(&[(ids[4], 4)], at(9)), Err(AttestError::Follow(FollowError::Gap { .. }))));
        assert_eq!(again.position(), at(4));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
