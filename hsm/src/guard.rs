//! The double-sign guard: a persisted high-water mark (height and block
//! hash) and the newest leader epoch seen. A block is signed only if it is
//! above the mark, or is exactly the marked block again, and only for a
//! leader epoch no older than the newest seen; the new state is fsync'd
//! before the signature leaves. A crash between persisting and releasing
//! leaves a mark for a block whose signature nobody saw: re-signing that same
//! block is allowed, any other block at that height never is.
//!
//! In a high-availability pair the guard also asks an `EpochFence` (etcd's
//! leader key) for the newest epoch before every block signature, so that a
//! deposed leader that has not noticed yet gets no signature; the fence also
//! records the height, so that no successor that lacks the block can lead.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use alloy_primitives::{Address, B256};

use crate::{Payload, SignError, Signature65, Signer};

/// The highest block signed, or about to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HighWaterMark {
    pub number: u64,
    pub hash: B256,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GuardError {
    #[error("block {number} is below the signed height {mark}")]
    BelowMark { number: u64, mark: u64 },
    #[error("block {number} {hash} conflicts with the signed block {signed} at that height")]
    DoubleSign { number: u64, hash: B256, signed: B256 },
    #[error("stale epoch: leader epoch {epoch} is older than epoch {newest}, the newest seen")]
    StaleEpoch { epoch: u64, newest: u64 },
    #[error("the epoch fence cannot tell the newest epoch: {0}")]
    Fence(#[from] FenceError),
    #[error("guard state {path}: {reason}")]
    State { path: PathBuf, reason: String },
    #[error("a rewind from the signed block {mark} to {number} is deeper than {REWIND_BLOCKS_MAX} blocks")]
    RewindTooDeep { number: u64, mark: u64 },
}

/// The most signed blocks one rewind abandons: an OP Stack chain's unsafe
/// blocks over the deepest L1 reorg the follower takes (64 L1 blocks of 12 s)
/// plus the 30-minute sequencer drift, at one block a second, is under 2,600.
pub const REWIND_BLOCKS_MAX: u64 = 4096;

/// Why an `EpochFence` cannot tell the newest epoch: the guard refuses the
/// block's signature.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum FenceError {
    /// The fence's store (etcd, in a pair) did not answer; its error.
    #[error("{0}")]
    Unreachable(String),
    /// The leader key is held by `key_epoch`, which is not newer than the
    /// block's `epoch`: this leader was deposed, and no successor to defer to.
    #[error("epoch {epoch} does not hold the leader key ({key_epoch})")]
    NotLeader { epoch: u64, key_epoch: u64 },
    /// No leader holds the lease: nobody may sign.
    #[error("no leader holds the lease in etcd")]
    NoLeader,
}

/// Where the newest leader epoch comes from (etcd, in a pair).
pub trait EpochFence: Send + Sync + std::fmt::Debug {
    /// Block `number` of the leader of `leader_epoch` is about to be signed:
    /// the newest epoch, asked for fresh. An error refuses the signature.
    fn admit_block(&self, number: u64, leader_epoch: u64) -> Result<u64, FenceError>;
}

#[derive(Clone, Copy, Debug, Default)]
struct GuardState {
    mark: Option<HighWaterMark>,
    epoch_seen: u64,
}

/// The guard, over its state file.
#[derive(Debug)]
pub struct SignGuard {
    path: PathBuf,
    state: Mutex<GuardState>,
}

/// How the state file says no block was signed yet (the genesis block is
/// never signed).
const NO_MARK: HighWaterMark = HighWaterMark { number: 0, hash: B256::ZERO };

/// number u64 | hash 32 | crc32c u32: the state before epochs.
const STATE_V1_BYTES: usize = 8 + 32 + 4;
/// number u64 | hash 32 | epoch u64 | crc32c u32.
const STATE_BYTES: usize = 8 + 32 + 8 + 4;

impl SignGuard {
    /// Opens the guard at `path` (created at the first signature). A damaged
    /// state file is refused: guessing a mark could allow a double sign.
    pub fn open(path: &Path) -> Result<Self, GuardError> {
        let state = |reason: String| GuardError::State { path: path.to_path_buf(), reason };
        let loaded = match fs::read(path) {
            Ok(bytes) => {
                if bytes.len() != STATE_BYTES && bytes.len() != STATE_V1_BYTES {
                    return Err(state(format!("{} bytes, expected {STATE_BYTES}", bytes.len())));
                }
                let (body, crc) = bytes.split_at(bytes.len() - 4);
                if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
                    return Err(state("checksum mismatch".into()));
                }
                let mark = HighWaterMark {
                    number: u64::from_le_bytes(body[..8].try_into().expect("8 bytes")),
                    hash: B256::from_slice(&body[8..40]),
                };
                GuardState {
                    // Written when only an epoch was seen: no block signed yet.
                    mark: Some(mark).filter(|m| *m != NO_MARK),
                    epoch_seen: body.get(40..48).map_or(0, |e| u64::from_le_bytes(e.try_into().expect("8 bytes"))),
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => GuardState::default(),
            Err(error) => return Err(state(error.to_string())),
        };
        Ok(Self { path: path.to_path_buf(), state: Mutex::new(loaded) })
    }

    pub fn mark(&self) -> Option<HighWaterMark> {
        self.state.lock().expect("guard lock").mark
    }

    /// The newest leader epoch this guard has seen.
    pub fn epoch_seen(&self) -> u64 {
        self.state.lock().expect("guard lock").epoch_seen
    }

    /// Admits block `number` with `hash` for signing by the leader of
    /// `leader_epoch`, persisting the new state durably first. Calls are
    /// serialised: two racing requests for one height cannot both pass.
    /// `newest_epoch` is what the fence says now, if there is one.
    pub fn admit(&self, number: u64, hash: B256, leader_epoch: u64, newest_epoch: u64) -> Result<(), GuardError> {
        let mut state = self.state.lock().expect("guard lock");
        let newest = state.epoch_seen.max(newest_epoch);
        let mut next = GuardState { mark: state.mark, epoch_seen: newest };
        let refusal = if leader_epoch < newest {
            Some(GuardError::StaleEpoch { epoch: leader_epoch, newest })
        } else {
            next.epoch_seen = leader_epoch;
            match state.mark {
                Some(m) if number < m.number => Some(GuardError::BelowMark { number, mark: m.number }),
                Some(m) if number == m.number && hash != m.hash => {
                    Some(GuardError::DoubleSign { number, hash, signed: m.hash })
                }
                _ => {
                    next.mark = Some(HighWaterMark { number, hash });
                    None
                }
            }
        };
        // A newer epoch is kept even when this request is refused.
        if next.mark != state.mark || next.epoch_seen != state.epoch_seen {
            self.persist(next)?;
            *state = next;
        }
        refusal.map_or(Ok(()), Err)
    }

    /// The blocks above `number` (`hash`) were abandoned (an OP Stack
    /// chain's L1 reorged below their origins): the mark comes down to it,
    /// durably, so that their heights can be signed again for the rebuilt
    /// blocks. At most `REWIND_BLOCKS_MAX` below the mark; a mark at or
    /// below `number` stays.
    pub fn rewind(&self, number: u64, hash: B256) -> Result<(), GuardError> {
        let mut state = self.state.lock().expect("guard lock");
        let Some(mark) = state.mark.filter(|mark| mark.number > number) else { return Ok(()) };
        if mark.number - number > REWIND_BLOCKS_MAX {
            return Err(GuardError::RewindTooDeep { number, mark: mark.number });
        }
        // Genesis is never signed: a rewind to it leaves no mark.
        let next = GuardState { mark: Some(HighWaterMark { number, hash }).filter(|m| m.number > 0), ..*state };
        self.persist(next)?;
        *state = next;
        Ok(())
    }

    fn persist(&self, next: GuardState) -> Result<(), GuardError> {
        let state = |reason: String| GuardError::State { path: self.path.clone(), reason };
        let mark = next.mark.unwrap_or(NO_MARK);
        let mut bytes = Vec::with_capacity(STATE_BYTES);
        bytes.extend_from_slice(&mark.number.to_le_bytes());
        bytes.extend_from_slice(mark.hash.as_slice());
        bytes.extend_from_slice(&next.epoch_seen.to_le_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
        tephra_types::durable::replace_file(&self.path, &bytes).map_err(|e| state(e.to_string()))
    }
}

/// A signer behind the guard: every sealed block passes `SignGuard::admit`
/// (after the fence, if any, says the newest epoch) before the inner signer
/// sees it.
#[derive(Debug)]
pub struct GuardedSigner<S> {
    inner: S,
    guard: SignGuard,
    fence: Option<Arc<dyn EpochFence>>,
}

impl<S: Signer> GuardedSigner<S> {
    pub fn new(inner: S, guard: SignGuard) -> Self {
        Self { inner, guard, fence: None }
    }

    /// Asks `fence` for the newest epoch before every block signature.
    pub fn with_fence(mut self, fence: Arc<dyn EpochFence>) -> Self {
        self.fence = Some(fence);
        self
    }

    pub fn guard(&self) -> &SignGuard {
        &self.guard
    }
}

impl<S: Signer> Signer for GuardedSigner<S> {
    fn public_key(&self) -> secp256k1::PublicKey {
        self.inner.public_key()
    }

    fn address(&self) -> Address {
        self.inner.address()
    }

    fn sign(&self, payload: &Payload<'_>) -> Result<Signature65, SignError> {
        match *payload {
            Payload::SealedBlock { number, block_hash, leader_epoch, .. } => {
                let newest = match &self.fence {
                    Some(fence) => fence.admit_block(number, leader_epoch).map_err(GuardError::Fence)?,
                    None => 0,
                };
                self.guard.admit(number, block_hash, leader_epoch, newest)?
            }
            Payload::SelfTest { .. } | Payload::Delegation { .. } => {}
            // The block key never signs preconfirmations: that is the hot key's job.
            Payload::PreconfBatch { .. } => {
                return Err(SignError::Key("the block key does not sign preconfirmation batches".into()));
            }
            // Nor L1 transactions: that is the batcher key's.
            Payload::L1Transaction(_) => {
                return Err(SignError::Key("the block key does not sign L1 transactions".into()));
            }
            // Nor interop checkpoints: that is a validator key's.
            Payload::HyperlaneCheckpoint { .. } | Payload::HyperlaneAnnouncement { .. } => {
                return Err(SignError::Key("the block key does not sign Hyperlane checkpoints".into()));
            }
        }
        self.inner.sign(payload)
    }

    fn rewind(&self, number: u64, hash: B256) -> Result<(), SignError> {
        Ok(self.guard.rewind(number, hash)?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::FileSigner;

    fn temp(name: &str) -> PathBuf {
        tephra_testkit::fresh_dir(&format!("guard-{name}"))
    }

    #[test]
    fn never_two_blocks_at_one_height_nor_below_the_mark_across_restarts() {
        let dir = temp("restart");
        let path = dir.join("guard");
        let guard = SignGuard::open(&path).unwrap();
        guard.admit(5, B256::repeat_byte(1), 0, 0).unwrap();
        guard.admit(5, B256::repeat_byte(1), 0, 0).unwrap();
        assert!(matches!(guard.admit(5, B256::repeat_byte(2), 0, 0), Err(GuardError::DoubleSign { .. })));
        drop(guard);
        let reopened = SignGuard::open(&path).unwrap();
        assert_eq!(reopened.mark(), Some(HighWaterMark { number: 5, hash: B256::repeat_byte(1) }));
        assert!(matches!(reopened.admit(5, B256::repeat_byte(2), 0, 0), Err(GuardError::DoubleSign { .. })));
        assert!(matches!(reopened.admit(4, B256::repeat_byte(3), 0, 0), Err(GuardError::BelowMark { .. })));
        reopened.admit(6, B256::repeat_byte(3), 0, 0).unwrap();
        // A damaged state file is refused, not guessed at.
        let mut bytes = fs::read(&path).unwrap();
        bytes[3] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(SignGuard::open(&path), Err(GuardError::State { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_rewind_lets_the_abandoned_heights_be_signed_again_within_its_bound() {
        let dir = temp("rewind");
        let path = dir.join("guard");
        let guard = SignGuard::open(&path).unwrap();
        for number in 1..=5u8 {
            guard.admit(u64::from(number), B256::repeat_byte(number), 0, 0).unwrap();
        }
        guard.rewind(3, B256::repeat_byte(3)).unwrap();
        drop(guard);
        let reopened = SignGuard::open(&path).unwrap();
        assert_eq!(reopened.mark(), Some(HighWaterMark { number: 3, hash: B256::repeat_byte(3) }));
        // The rebuilt block 4; block 3 stays as signed, and what is below it.
        reopened.admit(4, B256::repeat_byte(0x44), 0, 0).unwrap();
        assert!(matches!(reopened.admit(3, B256::repeat_byte(0x33), 0, 0), Err(GuardError::BelowMark { .. })));
        // A rewind above the mark changes nothing; one past the bound is refused.
        reopened.rewind(9, B256::ZERO).unwrap();
        assert_eq!(reopened.mark().unwrap().number, 4);
        reopened.admit(REWIND_BLOCKS_MAX + 10, B256::repeat_byte(1), 0, 0).unwrap();
        assert_eq!(
            reopened.rewind(9, B256::ZERO),
            Err(GuardError::RewindTooDeep { number: 9, mark: REWIND_BLOCKS_MAX + 10 })
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stale_epoch_is_refused_and_the_newest_survives_restarts() {
        let dir = temp("epoch");
        let path = dir.join("guard");
        // A refusal before any signature keeps the epoch, and no mark.
        let guard = SignGuard::open(&path).unwrap();
        assert!(matches!(guard.admit(1, B256::repeat_byte(1), 4, 5), Err(GuardError::StaleEpoch { .. })));
        drop(guard);
        let guard = SignGuard::open(&path).unwrap();
        assert_eq!((guard.mark(), guard.epoch_seen()), (None, 5));
        guard.admit(1, B256::repeat_byte(1), 5, 5).unwrap();
        // The fence says epoch 9 leads now: the leader of 5 is refused, even
        // for the next height, and the guard remembers 9.
        assert_eq!(guard.admit(2, B256::repeat_byte(2), 5, 9), Err(GuardError::StaleEpoch { epoch: 5, newest: 9 }));
        drop(guard);
        let reopened = SignGuard::open(&path).unwrap();
        assert_eq!(reopened.epoch_seen(), 9);
        assert_eq!(reopened.mark(), Some(HighWaterMark { number: 1, hash: B256::repeat_byte(1) }));
        assert!(matches!(reopened.admit(2, B256::repeat_byte(2), 5, 0), Err(GuardError::StaleEpoch { .. })));
        reopened.admit(2, B256::repeat_byte(3), 9, 9).unwrap();
        // A state file from before epochs reads as epoch 0.
        let v1 = dir.join("v1");
        let mut bytes = 4u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(B256::repeat_byte(4).as_slice());
        bytes.extend_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
        fs::write(&v1, &bytes).unwrap();
        let old = SignGuard::open(&v1).unwrap();
        assert_eq!((old.mark().unwrap().number, old.epoch_seen()), (4, 0));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A fence that answers as told.
    #[derive(Debug)]
    struct FixedFence(Result<u64, FenceError>);

    impl EpochFence for FixedFence {
        fn admit_block(&self, _number: u64, _leader_epoch: u64) -> Result<u64, FenceError> {
            self.0.clone()
        }
    }

    #[test]
    fn a_fence_refusal_refuses_the_signature_naming_why() {
        let dir = temp("fence");
        let block =
            |leader_epoch| Payload::SealedBlock { chain_id: 1, number: 1, block_hash: B256::ZERO, leader_epoch };
        let signer = |fence: Result<u64, FenceError>, name: &str| {
            GuardedSigner::new(FileSigner::from_bytes(&[7; 32]).unwrap(), SignGuard::open(&dir.join(name)).unwrap())
                .with_fence(Arc::new(FixedFence(fence)))
        };
        let refusals = [
            (FenceError::NotLeader { epoch: 3, key_epoch: 2 }, "epoch 3 does not hold the leader key (2)"),
            (FenceError::NoLeader, "no leader holds the lease in etcd"),
            (FenceError::Unreachable("etcd: no answer within 1s".into()), "etcd: no answer within 1s"),
        ];
        for (i, (refusal, reason)) in refusals.into_iter().enumerate() {
            let refused = signer(Err(refusal.clone()), &format!("guard-{i}")).sign(&block(3)).unwrap_err();
            assert_eq!(
                refused.to_string(),
                format!("refused by the signing guard: the epoch fence cannot tell the newest epoch: {reason}")
            );
            assert!(matches!(refused, SignError::Guard(GuardError::Fence(ref fence)) if *fence == refusal));
        }
        // A newer epoch from the fence is a stale-epoch refusal; the current one signs.
        assert!(matches!(
            signer(Ok(4), "guard-newer").sign(&block(3)),
            Err(SignError::Guard(GuardError::StaleEpoch { epoch: 3, newest: 4 }))
        ));
        signer(Ok(3), "guard-current").sign(&block(3)).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The child half of the kill test: persist a mark, then hang before
    /// releasing the signature, until killed.
    #[test]
    #[ignore = "the child half of kill_9_between_persisting_and_releasing_still_guards, which runs it"]
    fn child_persists_then_hangs() {
        let path =
            tephra_testkit::child::arg("TEPHRA_GUARD_CHILD", "kill_9_between_persisting_and_releasing_still_guards");
        let guard = SignGuard::open(Path::new(&path)).unwrap();
        guard.admit(7, B256::repeat_byte(0xaa), 0, 0).unwrap();
        fs::write(format!("{path}.persisted"), b"").unwrap();
        std::thread::sleep(std::time::Duration::from_secs(60));
    }

    #[test]
    fn kill_9_between_persisting_and_releasing_still_guards() {
        let dir = temp("kill");
        let path = dir.join("guard");
        let mut child = tephra_testkit::child::command("guard::tests::child_persists_then_hangs")
            .env("TEPHRA_GUARD_CHILD", &path)
            .spawn()
            .unwrap();
        let persisted = dir.join("guard.persisted");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !persisted.exists() {
            assert!(std::time::Instant::now() < deadline, "the child never persisted");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let guard = SignGuard::open(&path).unwrap();
        assert!(matches!(guard.admit(7, B256::repeat_byte(0xbb), 0, 0), Err(GuardError::DoubleSign { .. })));
        guard.admit(7, B256::repeat_byte(0xaa), 0, 0).expect("the same block may be signed again");
        fs::remove_dir_all(&dir).unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        /// Racing requests over a few heights and hashes: at most one hash is
        /// ever signed per height.
        #[test]
        fn concurrent_requests_never_double_sign(requests in proptest::collection::vec((0u64..6, 0u8..3), 1..60)) {
            let dir = temp("race");
            let signer = Arc::new(GuardedSigner::new(
                FileSigner::from_bytes(&[7; 32]).unwrap(),
                SignGuard::open(&dir.join("guard")).unwrap(),
            ));
            let signed = Arc::new(Mutex::new(Vec::new()));
            let threads: Vec<_> = requests
                .chunks(8)
                .map(|chunk| {
                    let (signer, signed, chunk) = (signer.clone(), signed.clone(), chunk.to_vec());
                    std::thread::spawn(move || {
                        for (number, h) in chunk {
                            let payload = Payload::SealedBlock { chain_id: 1, number, block_hash: B256::repeat_byte(h), leader_epoch: 0 };
                            if signer.sign(&payload).is_ok() {
                                signed.lock().unwrap().push((number, h));
                            }
                        }
                    })
                })
                .collect();
            for thread in threads {
                thread.join().unwrap();
            }
            let signed = signed.lock().unwrap();
            for (number, h) in signed.iter() {
                prop_assert!(signed.iter().all(|(n, other)| n != number || other == h), "two hashes at height {}", number);
            }
            fs::remove_dir_all(&dir).unwrap();
        }
    }
}
