//! The blob payloads the batcher sent, by versioned hash, in the data dir:
//! the L1 execution node the batcher talks to keeps no blobs (they live on
//! the beacon chain for 18 days), so the read-back takes a blob
//! transaction's payloads from here. What the L1 commits to is checked: a
//! payload is used only if blob-encoding it gives the versioned hash the
//! transaction carries (its KZG commitment's), so a damaged file is refused,
//! never read as a batch.
//!
//! ```text
//!  send: payload ─> Blob ─> versioned hash ─> <data_dir>/batcher-blobs/<seq>-<hash> (fsync'd, then sent)
//!  read back: versioned hash ─> file ─> payload ─> Blob ─> same versioned hash? ─> frames
//! ```
//!
//! Limits: `BLOB_STORE_FILES_MAX` files, the oldest removed first.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    path::{Path, PathBuf},
};

use alloy_primitives::B256;
use tephra_batcher::{Blob, versioned_hash_of};

/// The blobs kept: 2,048 of at most 130 KB (266 MB), over four hours of a
/// blob every 12 s L1 block after their read-back.
pub const BLOB_STORE_FILES_MAX: usize = 2048;

const DIR: &str = "batcher-blobs";

/// See the module comment.
#[derive(Debug)]
pub struct BlobStore {
    dir: PathBuf,
    next_seq: u64,
    by_hash: HashMap<B256, PathBuf>,
    by_seq: BTreeMap<u64, B256>,
}

impl BlobStore {
    /// The store in `data_dir`, created if need be, its files indexed.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let dir = data_dir.join(DIR);
        fs::create_dir_all(&dir)?;
        let mut store = Self { dir, next_seq: 0, by_hash: HashMap::new(), by_seq: BTreeMap::new() };
        for entry in fs::read_dir(&store.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let parsed = name.to_str().and_then(|name| {
                let (seq, hash) = name.split_once('-')?;
                Some((seq.parse::<u64>().ok()?, hash.parse::<B256>().ok()?))
            });
            match parsed {
                Some((seq, hash)) => {
                    store.next_seq = store.next_seq.max(seq + 1);
                    store.by_hash.insert(hash, entry.path());
                    store.by_seq.insert(seq, hash);
                }
                // A write cut by a crash (its temporary name): never sent.
                None => fs::remove_file(entry.path())?,
            }
        }
        Ok(store)
    }

    /// Keeps `payload`, whose blob has `hash`, durably; the oldest go past
    /// the limit.
    pub fn put(&mut self, hash: B256, payload: &[u8]) -> std::io::Result<()> {
        if self.by_hash.contains_key(&hash) {
            return Ok(());
        }
        let path = self.dir.join(format!("{:016}-{hash}", self.next_seq));
        tephra_types::durable::replace_file(&path, payload)?;
        self.by_hash.insert(hash, path);
        self.by_seq.insert(self.next_seq, hash);
        self.next_seq += 1;
        while self.by_seq.len() > BLOB_STORE_FILES_MAX {
            let (_, oldest) = self.by_seq.pop_first().expect("over the limit");
            if let Some(path) = self.by_hash.remove(&oldest) {
                fs::remove_file(path)?;
            }
        }
        Ok(())
    }

    /// The payload of the blob `hash`, if kept and still what the hash
    /// commits to.
    pub fn get(&self, hash: &B256) -> Option<Vec<u8>> {
        let payload = fs::read(self.by_hash.get(hash)?).ok()?;
        let blob = Blob::encode(&payload).ok()?;
        match versioned_hash_of(&blob) {
            Ok(found) if found == *hash => Some(payload),
            _ => {
                tracing::warn!(%hash, "a kept blob payload is not what its versioned hash commits to: not read");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_come_back_by_versioned_hash_across_a_reopen_and_damage_is_refused() {
        let dir = tephra_testkit::fresh_dir("blob-store");
        let payload = b"\x00a frame".to_vec();
        let hash = versioned_hash_of(&Blob::encode(&payload).unwrap()).unwrap();
        let mut store = BlobStore::open(&dir).unwrap();
        store.put(hash, &payload).unwrap();
        assert_eq!(store.get(&hash), Some(payload.clone()));
        assert_eq!(store.get(&B256::repeat_byte(1)), None);
        fs::write(dir.join(DIR).join(format!("{hash}.tmp")), b"cut").unwrap();
        let store = BlobStore::open(&dir).unwrap();
        assert_eq!(store.get(&hash), Some(payload));
        assert!(!dir.join(DIR).join(format!("{hash}.tmp")).exists(), "a cut write is removed");
        fs::write(store.by_hash[&hash].clone(), b"\x00another frame").unwrap();
        assert_eq!(store.get(&hash), None, "what the hash does not commit to is refused");
        fs::remove_dir_all(&dir).unwrap();
    }
}
