//! kona-derive's `BlobProvider` for blob batcher transactions, over anvil's JSON-RPC
//! `anvil_getBlobByHash` (anvil keeps the sidecars of mined blocks; it serves no beacon
//! `blob_sidecars` endpoint). Each blob must commit (KZG) to the versioned hash the L1
//! transaction names, so the node is not trusted for the blob's contents.
//!
//! Every failure is `BlobProviderError::Backend`, which kona-derive treats as temporary: the
//! derive loop retries until its timeout, then reports the last error.

use crate::l1::L1Rpc;
use alloy_eips::eip4844::{BYTES_PER_BLOB, Blob, IndexedBlobHash, kzg_to_versioned_hash};
use alloy_primitives::{B256, hex};
use async_trait::async_trait;
use kona_derive::{BlobProvider, BlobProviderError};
use kona_protocol::BlockInfo;
use serde_json::json;

/// Blobs from the L1 node (anvil), checked against their versioned hashes.
#[derive(Debug, Clone)]
pub struct L1Blobs {
    l1: L1Rpc,
}

/// The EIP-4844 versioned hash of a blob: `0x01 ‖ sha256(KZG commitment)[1..]`.
pub fn versioned_hash(blob: &Blob) -> Result<B256, String> {
    let blob = c_kzg::Blob::from_bytes(blob.as_slice()).map_err(|e| format!("not a blob: {e:?}"))?;
    let commitment = c_kzg::ethereum_kzg_settings(0)
        .blob_to_kzg_commitment(&blob)
        .map_err(|e| format!("no KZG commitment (a field element out of range?): {e:?}"))?;
    Ok(kzg_to_versioned_hash(commitment.to_bytes().as_slice()))
}

impl L1Blobs {
    pub fn new(l1: L1Rpc) -> Self {
        Self { l1 }
    }

    /// The blob with versioned hash `hash` (`anvil_getBlobByHash`), checked.
    pub fn blob(&self, hash: B256) -> Result<Box<Blob>, String> {
        let value = self.l1.rpc().call("anvil_getBlobByHash", json!([hash])).map_err(|e| format!("{e}"))?;
        if value.is_null() {
            return Err("the L1 node does not have it".into());
        }
        let bytes = value.as_str().and_then(|s| hex::decode(s).ok()).ok_or_else(|| "not 0x-hex".to_string())?;
        if bytes.len() != BYTES_PER_BLOB {
            return Err(format!("{} bytes, not {BYTES_PER_BLOB}", bytes.len()));
        }
        let blob = Box::new(Blob::from_slice(&bytes));
        let actual = versioned_hash(&blob)?;
        if actual != hash {
            return Err(format!("the blob served commits to {actual}"));
        }
        Ok(blob)
    }
}

#[async_trait]
impl BlobProvider for L1Blobs {
    type Error = BlobProviderError;

    async fn get_blobs(
        &mut self,
        block_ref: &BlockInfo,
        blob_hashes: &[IndexedBlobHash],
    ) -> Result<Vec<Box<Blob>>, BlobProviderError> {
        blob_hashes
            .iter()
            .map(|indexed| {
                self.blob(indexed.hash).map_err(|e| {
                    BlobProviderError::Backend(format!(
                        "L1 block {} ({}) blob {} ({}): anvil_getBlobByHash: {e}",
                        block_ref.number, block_ref.hash, indexed.index, indexed.hash
                    ))
                })
            })
            .collect()
    }
}
