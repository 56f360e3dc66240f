//! A validator's checkpoints in a local directory, laid out as Hyperlane's
//! agents write and read them (hyperlane-base's `LocalStorage`), so that
//! Hyperlane's own relayer can use them: the storage location
//! `file://<dir>`.
//!
//! ```text
//! <dir>/{index}_with_id.json   a signed checkpoint (SignedCheckpoint::to_json)
//! <dir>/index.json             the newest index signed, a bare number (no newline: the agents parse it whole)
//! <dir>/announcement.json      the signed announcement of this location
//! <dir>/metadata_latest.json   {"git_sha": "..."}: who wrote it
//! ```
//!
//! Invariants: a checkpoint's file is whole on disk (written aside,
//! fsync'd, renamed, the directory fsync'd) before `index.json` names it;
//! `index.json` only moves forward.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use crate::checkpoint::{SignedCheckpoint, StoredError};

/// Why the store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("checkpoint store {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("checkpoint store {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// The directory; see the module comment.
#[derive(Debug)]
pub struct CheckpointStore {
    dir: PathBuf,
}

impl CheckpointStore {
    /// The store in `dir`, made if missing.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(dir).map_err(|source| StoreError::Io { path: dir.into(), source })?;
        let dir = fs::canonicalize(dir).map_err(|source| StoreError::Io { path: dir.into(), source })?;
        Ok(Self { dir })
    }

    /// Where relayers find it, as validators announce it.
    pub fn storage_location(&self) -> String {
        format!("file://{}", self.dir.display())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `checkpoint` durably, then moves `index.json` to it if it is
    /// newer.
    pub fn write_checkpoint(&self, checkpoint: &SignedCheckpoint) -> Result<(), StoreError> {
        self.write_checkpoints(std::slice::from_ref(checkpoint))
    }

    /// Writes each of `checkpoints` durably, then moves `index.json` once,
    /// to the newest of them if it is newer.
    pub fn write_checkpoints(&self, checkpoints: &[SignedCheckpoint]) -> Result<(), StoreError> {
        for checkpoint in checkpoints {
            let index = checkpoint.value.checkpoint.index;
            self.write_file(&format!("{index}_with_id.json"), checkpoint.to_json().as_bytes())?;
        }
        let Some(newest) = checkpoints.iter().map(|c| c.value.checkpoint.index).max() else { return Ok(()) };
        if self.latest_index()?.is_none_or(|latest| newest > latest) {
            self.write_file("index.json", newest.to_string().as_bytes())?;
        }
        Ok(())
    }

    /// The newest index signed, if any.
    pub fn latest_index(&self) -> Result<Option<u32>, StoreError> {
        let path = self.path("index.json");
        match fs::read_to_string(&path) {
            Ok(text) => text
                .parse()
                .map(Some)
                .map_err(|_| StoreError::Corrupt { path, reason: format!("{text:?} is not an index") }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// The checkpoint signed at `index`, if there is one.
    pub fn checkpoint(&self, index: u32) -> Result<Option<SignedCheckpoint>, StoreError> {
        let path = self.path(&format!("{index}_with_id.json"));
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        let corrupt = |e: StoredError| StoreError::Corrupt { path: path.clone(), reason: e.to_string() };
        let checkpoint = SignedCheckpoint::from_json(&text).map_err(corrupt)?;
        if checkpoint.value.checkpoint.index != index {
            let reason = format!("holds index {}", checkpoint.value.checkpoint.index);
            return Err(StoreError::Corrupt { path, reason });
        }
        Ok(Some(checkpoint))
    }

    /// Writes the signed announcement of this location (its JSON).
    pub fn write_announcement(&self, json: &str) -> Result<(), StoreError> {
        self.write_file("announcement.json", json.as_bytes())
    }

    /// Writes who keeps this store (`metadata_latest.json`).
    pub fn write_metadata(&self, git_sha: &str) -> Result<(), StoreError> {
        let json = serde_json::to_string_pretty(&serde_json::json!({ "git_sha": git_sha })).expect("JSON");
        self.write_file("metadata_latest.json", json.as_bytes())
    }

    /// `name` made `bytes` at once and durably.
    fn write_file(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(name);
        tephra_types::durable::replace_file(&path, bytes).map_err(|source| StoreError::Io { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> SignedCheckpoint {
        SignedCheckpoint::from_json(include_str!("../testdata/checkpoint_with_id.json")).unwrap()
    }

    #[test]
    fn checkpoints_are_written_as_the_agents_read_them_and_the_index_moves_forward() {
        let dir = tephra_testkit::fresh_dir("interop-store");
        let store = CheckpointStore::open(&dir).unwrap();
        assert!(store.storage_location().starts_with("file:///"), "{}", store.storage_location());
        assert_eq!(store.latest_index().unwrap(), None);
        let first = stored();
        store.write_checkpoint(&first).unwrap();
        assert_eq!(fs::read_to_string(dir.join("index.json")).unwrap(), "0", "a bare number, no newline");
        assert_eq!(store.checkpoint(0).unwrap(), Some(first));
        let mut later = first;
        later.value.checkpoint.index = 5;
        store.write_checkpoint(&later).unwrap();
        assert_eq!(store.latest_index().unwrap(), Some(5));
        // An older one written again (say, after a restart) leaves the index.
        store.write_checkpoint(&first).unwrap();
        assert_eq!(store.latest_index().unwrap(), Some(5));
        assert_eq!(store.checkpoint(3).unwrap(), None);
        store.write_metadata("abc").unwrap();
        let metadata: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(dir.join("metadata_latest.json")).unwrap()).unwrap();
        assert_eq!(metadata["git_sha"], "abc");
    }

    #[test]
    fn a_damaged_store_is_an_error_naming_the_file() {
        let dir = tephra_testkit::fresh_dir("interop-damaged");
        let store = CheckpointStore::open(&dir).unwrap();
        fs::write(dir.join("index.json"), "five").unwrap();
        assert!(matches!(store.latest_index(), Err(StoreError::Corrupt { .. })));
        fs::write(dir.join("2_with_id.json"), "{").unwrap();
        let error = store.checkpoint(2).unwrap_err();
        assert!(error.to_string().contains("2_with_id.json"), "{error}");
        // A checkpoint under another index's name.
        fs::write(dir.join("3_with_id.json"), stored().to_json()).unwrap();
        assert!(matches!(store.checkpoint(3), Err(StoreError::Corrupt { .. })));
    }
}
