//! The double-sign guard: a persisted high-water mark (height and block
//! hash). A block is signed only if it is above the mark, or is exactly the
//! marked block again; the new mark is fsync'd before the signature leaves.
//! A crash between persisting and releasing leaves a mark for a block whose
//! signature nobody saw: re-signing that same block is allowed, any other
//! block at that height never is.

use std::{
    fs::{self, File},
    io::Write,
    path::{Path, PathBuf},
    sync::Mutex,
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
    #[error("guard state {path}: {reason}")]
    State { path: PathBuf, reason: String },
}

/// The guard, over its state file.
#[derive(Debug)]
pub struct SignGuard {
    path: PathBuf,
    mark: Mutex<Option<HighWaterMark>>,
}

const STATE_BYTES: usize = 8 + 32 + 4;

impl SignGuard {
    /// Opens the guard at `path` (created at the first signature). A damaged
    /// state file is refused: guessing a mark could allow a double sign.
    pub fn open(path: &Path) -> Result<Self, GuardError> {
        let state = |reason: String| GuardError::State { path: path.to_path_buf(), reason };
        let mark = match fs::read(path) {
            Ok(bytes) => {
                if bytes.len() != STATE_BYTES {
                    return Err(state(format!("{} bytes, expected {STATE_BYTES}", bytes.len())));
                }
                let crc = u32::from_le_bytes(bytes[40..].try_into().expect("4 bytes"));
                if crc32c::crc32c(&bytes[..40]) != crc {
                    return Err(state("checksum mismatch".into()));
                }
                Some(HighWaterMark {
                    number: u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")),
                    hash: B256::from_slice(&bytes[8..40]),
                })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(state(error.to_string())),
        };
        Ok(Self { path: path.to_path_buf(), mark: Mutex::new(mark) })
    }

    pub fn mark(&self) -> Option<HighWaterMark> {
        *self.mark.lock().expect("guard lock")
    }

    /// Admits block `number` with `hash` for signing, persisting the new mark
    /// durably first. Calls are serialised: two racing requests for one
    /// height cannot both pass.
    pub fn admit(&self, number: u64, hash: B256) -> Result<(), GuardError> {
        let mut mark = self.mark.lock().expect("guard lock");
        match *mark {
            Some(m) if number < m.number => return Err(GuardError::BelowMark { number, mark: m.number }),
            Some(m) if number == m.number && hash != m.hash => {
                return Err(GuardError::DoubleSign { number, hash, signed: m.hash });
            }
            Some(m) if number == m.number => return Ok(()),
            _ => {}
        }
        let next = HighWaterMark { number, hash };
        self.persist(next)?;
        *mark = Some(next);
        Ok(())
    }

    fn persist(&self, mark: HighWaterMark) -> Result<(), GuardError> {
        let state = |reason: String| GuardError::State { path: self.path.clone(), reason };
        let mut bytes = Vec::with_capacity(STATE_BYTES);
        bytes.extend_from_slice(&mark.number.to_le_bytes());
        bytes.extend_from_slice(mark.hash.as_slice());
        bytes.extend_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
        let tmp = self.path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| state(e.to_string()))
    }
}

/// A signer behind the guard: every sealed block passes `SignGuard::admit`
/// before the inner signer sees it.
#[derive(Debug)]
pub struct GuardedSigner<S> {
    inner: S,
    guard: SignGuard,
}

impl<S: Signer> GuardedSigner<S> {
    pub fn new(inner: S, guard: SignGuard) -> Self {
        Self { inner, guard }
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

    fn sign(&self, payload: &Payload) -> Result<Signature65, SignError> {
        match *payload {
            Payload::SealedBlock { number, block_hash, .. } => self.guard.admit(number, block_hash)?,
            Payload::SelfTest { .. } | Payload::Delegation { .. } => {}
            // The block key never signs preconfirmations: that is the hot key's job.
            Payload::PreconfBatch { .. } => {
                return Err(SignError::Key("the block key does not sign preconfirmation batches".into()));
            }
        }
        self.inner.sign(payload)
    }
}

#[cfg(test)]
mod tests {
    use std::{process::Command, sync::Arc};

    use proptest::prelude::*;

    use super::*;
    use crate::FileSigner;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tephra-guard-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn never_two_blocks_at_one_height_nor_below_the_mark_across_restarts() {
        let dir = temp("restart");
        let path = dir.join("guard");
        let guard = SignGuard::open(&path).unwrap();
        guard.admit(5, B256::repeat_byte(1)).unwrap();
        guard.admit(5, B256::repeat_byte(1)).unwrap();
        assert!(matches!(guard.admit(5, B256::repeat_byte(2)), Err(GuardError::DoubleSign { .. })));
        drop(guard);
        let reopened = SignGuard::open(&path).unwrap();
        assert_eq!(reopened.mark(), Some(HighWaterMark { number: 5, hash: B256::repeat_byte(1) }));
        assert!(matches!(reopened.admit(5, B256::repeat_byte(2)), Err(GuardError::DoubleSign { .. })));
        assert!(matches!(reopened.admit(4, B256::repeat_byte(3)), Err(GuardError::BelowMark { .. })));
        reopened.admit(6, B256::repeat_byte(3)).unwrap();
        // A damaged state file is refused, not guessed at.
        let mut bytes = fs::read(&path).unwrap();
        bytes[3] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(SignGuard::open(&path), Err(GuardError::State { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The child half of the kill test: persist a mark, then hang before
    /// releasing the signature, until killed.
    #[test]
    fn child_persists_then_hangs() {
        let Ok(path) = std::env::var("TEPHRA_GUARD_CHILD") else { return };
        let guard = SignGuard::open(Path::new(&path)).unwrap();
        guard.admit(7, B256::repeat_byte(0xaa)).unwrap();
        fs::write(format!("{path}.persisted"), b"").unwrap();
        std::thread::sleep(std::time::Duration::from_secs(60));
    }

    #[test]
    fn kill_9_between_persisting_and_releasing_still_guards() {
        let dir = temp("kill");
        let path = dir.join("guard");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "guard::tests::child_persists_then_hangs", "--nocapture"])
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
        assert!(matches!(guard.admit(7, B256::repeat_byte(0xbb)), Err(GuardError::DoubleSign { .. })));
        guard.admit(7, B256::repeat_byte(0xaa)).expect("the same block may be signed again");
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
                            let payload = Payload::SealedBlock { chain_id: 1, number, block_hash: B256::repeat_byte(h) };
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
