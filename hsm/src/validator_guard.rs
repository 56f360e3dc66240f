//! The Hyperlane validator key's guard, after tmkms's double-sign guard: the
//! key signs checkpoints of one origin's MerkleTreeHook and announcements of
//! one Mailbox, nothing else, and never two different roots for one leaf
//! index. The last signed (index, root) is persisted before the signature
//! is released, so that neither a restart nor a rewound chain can make the
//! key sign a conflicting checkpoint: a relayer holding both could convince
//! a destination ISM of a message the origin never kept.
//!
//! ```text
//! HyperlaneCheckpoint{origin, hook, root, index} ─> rules (origin, hook) ─> mark: index > last, or (index, root) = last
//!        ─> persist (index, root), fsync ─> inner signer
//! ```
//!
//! Invariant: for every index, at most one root is ever signed. An index
//! below the mark is refused even with the root signed then, since only the
//! last (index, root) is kept; the validator never signs backwards.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::Mutex,
};

use alloy_primitives::{Address, B256};

use crate::{Payload, SignError, Signature65, Signer};

/// What the validator key may sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidatorRules {
    /// The origin chain's Hyperlane domain.
    pub origin: u32,
    /// The origin's MerkleTreeHook, left-padded.
    pub merkle_tree_hook: B256,
    /// The origin's Mailbox, left-padded (announcements name it).
    pub mailbox: B256,
}

/// Why the validator guard refused a signature.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValidatorGuardError {
    #[error("the validator key signs only Hyperlane checkpoints and announcements, not a {0}")]
    NotACheckpoint(&'static str),
    #[error(
        "a checkpoint of domain {origin} and hook {hook}; this validator attests domain {rules_origin}'s {rules_hook}"
    )]
    OtherTree { origin: u32, hook: B256, rules_origin: u32, rules_hook: B256 },
    #[error("an announcement for domain {origin}'s Mailbox {mailbox}; this validator's is {rules_mailbox}")]
    OtherMailbox { origin: u32, mailbox: B256, rules_mailbox: B256 },
    #[error("checkpoint {index} is below the last signed, {mark}")]
    BelowMark { index: u32, mark: u32 },
    #[error("checkpoint {index} with root {root} conflicts with root {signed}, signed for that index")]
    DoubleSign { index: u32, root: B256, signed: B256 },
    #[error("validator guard state {path}: {reason}")]
    State { path: PathBuf, reason: String },
}

/// index u32 | root 32 | crc32c u32.
const STATE_BYTES: usize = 4 + 32 + 4;

/// A signer that signs only what `ValidatorRules` and the mark allow.
#[derive(Debug)]
pub struct ValidatorGuard<S> {
    inner: S,
    rules: ValidatorRules,
    path: PathBuf,
    /// The last signed (index, root); None before the first checkpoint.
    mark: Mutex<Option<(u32, B256)>>,
}

impl<S: Signer> ValidatorGuard<S> {
    /// The guard over `inner` with its state at `path` (created at the
    /// first checkpoint). A damaged state file is refused: guessing a mark
    /// could allow a double sign.
    pub fn open(inner: S, rules: ValidatorRules, path: &Path) -> Result<Self, ValidatorGuardError> {
        let state = |reason: String| ValidatorGuardError::State { path: path.to_path_buf(), reason };
        let mark = match fs::read(path) {
            Ok(bytes) if bytes.len() == STATE_BYTES => {
                let (body, crc) = bytes.split_at(STATE_BYTES - 4);
                if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
                    return Err(state("checksum mismatch".into()));
                }
                Some((u32::from_le_bytes(body[..4].try_into().expect("4 bytes")), B256::from_slice(&body[4..36])))
            }
            Ok(bytes) => return Err(state(format!("{} bytes, expected {STATE_BYTES}", bytes.len()))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(state(error.to_string())),
        };
        Ok(Self { inner, rules, path: path.to_path_buf(), mark: Mutex::new(mark) })
    }

    pub fn rules(&self) -> &ValidatorRules {
        &self.rules
    }

    /// The last signed (index, root).
    pub fn mark(&self) -> Option<(u32, B256)> {
        *self.mark.lock().expect("validator guard lock")
    }

    /// Signs checkpoint `payload` once its (index, root) is admitted and
    /// persisted; the lock is held throughout so that two racing requests
    /// for one index cannot both pass.
    fn sign_checkpoint(&self, payload: &Payload<'_>, index: u32, root: B256) -> Result<Signature65, SignError> {
        let mut mark = self.mark.lock().expect("validator guard lock");
        match *mark {
            Some((signed_index, _)) if index < signed_index => {
                return Err(ValidatorGuardError::BelowMark { index, mark: signed_index }.into());
            }
            Some((signed_index, signed)) if index == signed_index && root != signed => {
                return Err(ValidatorGuardError::DoubleSign { index, root, signed }.into());
            }
            Some(same) if same == (index, root) => {}
            _ => {
                self.persist(index, root)?;
                *mark = Some((index, root));
            }
        }
        self.inner.sign(payload)
    }

    fn persist(&self, index: u32, root: B256) -> Result<(), ValidatorGuardError> {
        let mut bytes = Vec::with_capacity(STATE_BYTES);
        bytes.extend_from_slice(&index.to_le_bytes());
        bytes.extend_from_slice(root.as_slice());
        bytes.extend_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
        tephra_types::durable::replace_file(&self.path, &bytes)
            .map_err(|e| ValidatorGuardError::State { path: self.path.clone(), reason: e.to_string() })
    }
}

impl ValidatorRules {
    /// Whether the validator key may sign `payload` at all (the mark aside).
    pub fn admit(&self, payload: &Payload<'_>) -> Result<(), ValidatorGuardError> {
        match *payload {
            Payload::HyperlaneCheckpoint { origin, merkle_tree_hook, .. } => {
                if (origin, merkle_tree_hook) != (self.origin, self.merkle_tree_hook) {
                    return Err(ValidatorGuardError::OtherTree {
                        origin,
                        hook: merkle_tree_hook,
                        rules_origin: self.origin,
                        rules_hook: self.merkle_tree_hook,
                    });
                }
                Ok(())
            }
            Payload::HyperlaneAnnouncement { origin, mailbox, .. } => {
                if (origin, mailbox) != (self.origin, self.mailbox) {
                    return Err(ValidatorGuardError::OtherMailbox { origin, mailbox, rules_mailbox: self.mailbox });
                }
                Ok(())
            }
            Payload::SelfTest { .. } => Ok(()),
            Payload::SealedBlock { .. } => Err(ValidatorGuardError::NotACheckpoint("block")),
            Payload::Delegation { .. } => Err(ValidatorGuardError::NotACheckpoint("delegation")),
            Payload::PreconfBatch { .. } => Err(ValidatorGuardError::NotACheckpoint("preconfirmation")),
            Payload::L1Transaction(_) => Err(ValidatorGuardError::NotACheckpoint("transaction")),
        }
    }
}

impl<S: Signer> Signer for ValidatorGuard<S> {
    fn public_key(&self) -> secp256k1::PublicKey {
        self.inner.public_key()
    }

    fn address(&self) -> Address {
        self.inner.address()
    }

    fn sign(&self, payload: &Payload<'_>) -> Result<Signature65, SignError> {
        self.rules.admit(payload)?;
        match *payload {
            Payload::HyperlaneCheckpoint { index, root, .. } => self.sign_checkpoint(payload, index, root),
            _ => self.inner.sign(payload),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FileSigner, recover};

    const RULES: ValidatorRules =
        ValidatorRules { origin: 1000, merkle_tree_hook: B256::repeat_byte(0x11), mailbox: B256::repeat_byte(0x22) };

    fn checkpoint(index: u32, root: u8) -> Payload<'static> {
        Payload::HyperlaneCheckpoint {
            origin: RULES.origin,
            merkle_tree_hook: RULES.merkle_tree_hook,
            root: B256::repeat_byte(root),
            index,
            message_id: B256::repeat_byte(0x33),
        }
    }

    fn guard(path: &Path) -> ValidatorGuard<FileSigner> {
        ValidatorGuard::open(FileSigner::from_bytes(&[7; 32]).unwrap(), RULES, path).unwrap()
    }

    fn refusal(result: Result<Signature65, SignError>) -> ValidatorGuardError {
        match result {
            Err(SignError::Validator(error)) => error,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn never_two_roots_for_one_index_nor_backwards_across_restarts() {
        let dir = tephra_testkit::fresh_dir("validator-guard");
        let path = dir.join("validator-guard");
        let first = guard(&path);
        let signature = first.sign(&checkpoint(0, 0xa0)).unwrap();
        assert_eq!(recover(&signature, checkpoint(0, 0xa0).signing_hash()), Some(first.address()));
        // The same checkpoint again (a crash before its file was written): signed.
        first.sign(&checkpoint(0, 0xa0)).unwrap();
        first.sign(&checkpoint(3, 0xa3)).unwrap();
        drop(first);

        let reopened = guard(&path);
        assert_eq!(reopened.mark(), Some((3, B256::repeat_byte(0xa3))));
        let conflict = refusal(reopened.sign(&checkpoint(3, 0xb3)));
        assert!(matches!(conflict, ValidatorGuardError::DoubleSign { index: 3, .. }), "{conflict}");
        assert!(matches!(refusal(reopened.sign(&checkpoint(2, 0xa2))), ValidatorGuardError::BelowMark { .. }));
        reopened.sign(&checkpoint(4, 0xa4)).unwrap();

        // A damaged state is refused, not guessed.
        fs::write(&path, [0u8; STATE_BYTES]).unwrap();
        let damaged = ValidatorGuard::open(FileSigner::from_bytes(&[7; 32]).unwrap(), RULES, &path);
        assert!(matches!(damaged, Err(ValidatorGuardError::State { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_this_trees_checkpoints_and_this_mailboxs_announcements_are_signed() {
        let dir = tephra_testkit::fresh_dir("validator-guard-rules");
        let guard = guard(&dir.join("validator-guard"));
        let other_hook = Payload::HyperlaneCheckpoint {
            origin: RULES.origin,
            merkle_tree_hook: B256::repeat_byte(0x99),
            root: B256::ZERO,
            index: 0,
            message_id: B256::ZERO,
        };
        assert!(matches!(refusal(guard.sign(&other_hook)), ValidatorGuardError::OtherTree { .. }));
        let block = Payload::SealedBlock { chain_id: 1, number: 1, block_hash: B256::ZERO, leader_epoch: 0 };
        assert!(matches!(refusal(guard.sign(&block)), ValidatorGuardError::NotACheckpoint("block")));
        let announcement = Payload::HyperlaneAnnouncement {
            origin: RULES.origin,
            mailbox: RULES.mailbox,
            storage_location: "file:///v",
        };
        guard.sign(&announcement).unwrap();
        let elsewhere =
            Payload::HyperlaneAnnouncement { origin: RULES.origin, mailbox: B256::ZERO, storage_location: "file:///v" };
        assert!(matches!(refusal(guard.sign(&elsewhere)), ValidatorGuardError::OtherMailbox { .. }));
        assert_eq!(guard.mark(), None, "nothing but a checkpoint moves the mark");
        fs::remove_dir_all(&dir).unwrap();
    }
}
