//! Checkpoints: a validator's statement that the origin's tree had `root`
//! after its leaf `index`, which is `message_id`; the digests validators sign
//! (`CheckpointLib.sol`, `ValidatorAnnounce.sol`, the agents' `Signable`),
//! and a signed checkpoint as the checkpoint syncer stores it (the agents'
//! `SignedType` JSON).

use alloy_primitives::{Address, B256, U256};
use serde::{Deserialize, Serialize};

/// The tree of messages dispatched on `origin`, at `index` (its last leaf).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The MerkleTreeHook's address, left-padded.
    #[serde(rename = "merkle_tree_hook_address")]
    pub merkle_tree_hook: B256,
    #[serde(rename = "mailbox_domain")]
    pub origin: u32,
    pub root: B256,
    pub index: u32,
}

/// A checkpoint and the message id of its last leaf: what
/// MessageIdMultisigIsm's validators sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointWithId {
    pub checkpoint: Checkpoint,
    pub message_id: B256,
}

pub use tephra_types::hyperlane::{announcement_digest, domain_hash, eth_signed_message_hash};

impl CheckpointWithId {
    /// `keccak256(domainHash ‖ root ‖ uint32 index ‖ messageId)`.
    pub fn signing_hash(&self) -> B256 {
        let c = &self.checkpoint;
        tephra_types::hyperlane::checkpoint_signing_hash(c.origin, c.merkle_tree_hook, c.root, c.index, self.message_id)
    }

    /// What the validator's key signs and the ISM recovers from.
    pub fn digest(&self) -> B256 {
        eth_signed_message_hash(self.signing_hash())
    }
}

/// An Ethereum signature as Hyperlane's contracts take it: r ‖ s ‖ v, v 27 or 28.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthSignature(pub [u8; 65]);

impl EthSignature {
    /// From r ‖ s and a recovery id (0 or 1), as a signer gives them.
    pub fn from_recoverable(compact: &[u8; 64], recovery_id: u8) -> Self {
        let mut bytes = [0u8; 65];
        bytes[..64].copy_from_slice(compact);
        bytes[64] = 27 + (recovery_id & 1);
        Self(bytes)
    }

    /// The address that signed `digest`, if the signature recovers.
    pub fn signer(&self, digest: B256) -> Option<Address> {
        let compact: &[u8; 64] = self.0[..64].try_into().expect("65 bytes hold 64");
        let recovery_id = self.0[64].checked_sub(27).filter(|id| *id < 2)?;
        tephra_types::crypto::recover_address(digest, compact, recovery_id)
    }
}

/// A signed checkpoint, as the checkpoint syncer's `{index}_with_id.json`
/// holds it (see `Stored`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub value: CheckpointWithId,
    pub signature: EthSignature,
}

/// The agents' JSON of a signed value: the value, the signature as r, s
/// (minimal hex) and v, and the 65 bytes again (`serialized_signature`,
/// which readers ignore).
#[derive(Serialize, Deserialize)]
struct Stored<T> {
    value: T,
    signature: StoredSignature,
    #[serde(default, skip_deserializing)]
    serialized_signature: String,
}

#[derive(Serialize, Deserialize)]
struct StoredSignature {
    r: U256,
    s: U256,
    v: u64,
}

/// Why a stored signed checkpoint cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    #[error("not a signed checkpoint: {0}")]
    Json(#[from] serde_json::Error),
    #[error("signature v is {0}; 27 or 28 expected")]
    BadV(u64),
}

impl<T: Serialize> Stored<T> {
    fn new(value: T, signature: &EthSignature) -> Self {
        let sig = &signature.0;
        Stored {
            value,
            signature: StoredSignature {
                r: U256::from_be_slice(&sig[..32]),
                s: U256::from_be_slice(&sig[32..64]),
                v: u64::from(sig[64]),
            },
            serialized_signature: format!("0x{}", hex_of(sig)),
        }
    }

    /// The JSON the agents write (`serde_json::to_string_pretty` of their
    /// `SignedType`).
    fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a signed value serialises")
    }
}

impl<T: serde::de::DeserializeOwned> Stored<T> {
    /// The value and its signature from the agents' JSON.
    fn from_json(text: &str) -> Result<(T, EthSignature), StoredError> {
        let stored: Stored<T> = serde_json::from_str(text)?;
        let v = u8::try_from(stored.signature.v)
            .ok()
            .filter(|v| *v == 27 || *v == 28)
            .ok_or(StoredError::BadV(stored.signature.v))?;
        let mut bytes = [0u8; 65];
        bytes[..32].copy_from_slice(&stored.signature.r.to_be_bytes::<32>());
        bytes[32..64].copy_from_slice(&stored.signature.s.to_be_bytes::<32>());
        bytes[64] = v;
        Ok((stored.value, EthSignature(bytes)))
    }
}

/// A validator's announcement of where its checkpoints are: the agents'
/// `Announcement`, as `announcement.json` holds it signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    pub validator: Address,
    /// The origin's Mailbox, left-padded.
    pub mailbox_address: B256,
    pub mailbox_domain: u32,
    pub storage_location: String,
}

impl Announcement {
    /// What the validator key signs (`ValidatorAnnounce.getAnnouncementDigest`).
    pub fn digest(&self) -> B256 {
        announcement_digest(self.mailbox_domain, self.mailbox_address, &self.storage_location)
    }

    /// `announcement.json`: the announcement signed with `signature`.
    pub fn signed_json(&self, signature: &EthSignature) -> String {
        Stored::new(self.clone(), signature).to_json()
    }

    /// The announcement and its signature from `announcement.json`.
    pub fn from_signed_json(text: &str) -> Result<(Self, EthSignature), StoredError> {
        Stored::from_json(text)
    }
}

impl SignedCheckpoint {
    /// The JSON the agents write (`serde_json::to_string_pretty` of their
    /// `SignedType`).
    pub fn to_json(&self) -> String {
        Stored::new(self.value, &self.signature).to_json()
    }

    pub fn from_json(text: &str) -> Result<Self, StoredError> {
        let (value, signature) = Stored::<CheckpointWithId>::from_json(text)?;
        Ok(Self { value, signature })
    }

    /// The validator that signed it, if the signature recovers.
    pub fn signer(&self) -> Option<Address> {
        self.signature.signer(self.value.digest())
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// Hyperlane's own vectors (`vectors/domainHash.json` at the pinned
    /// release; its `mailbox` field is the hook's place in the hash).
    #[test]
    fn the_hyperlane_domain_hashes() {
        let vectors: Vec<Value> = serde_json::from_str(include_str!("../testdata/domainHash.json")).unwrap();
        for v in vectors {
            let origin = u32::try_from(v["domain"].as_u64().unwrap()).unwrap();
            let hook: B256 = v["mailbox"].as_str().unwrap().parse().unwrap();
            assert_eq!(domain_hash(origin, hook), v["expectedDomainHash"].as_str().unwrap().parse::<B256>().unwrap());
        }
    }

    /// A checkpoint the agents wrote (Hyperlane's relayer read it and the
    /// ISM accepted its signature): its JSON reads back, writes back the
    /// same, and recovers to its validator.
    #[test]
    fn a_stored_checkpoint_reads_back_and_recovers_to_its_signer() {
        let text = include_str!("../testdata/checkpoint_with_id.json");
        let signed = SignedCheckpoint::from_json(text).unwrap();
        assert_eq!(signed.value.checkpoint.index, 0);
        assert_eq!(signed.value.checkpoint.origin, 1000);
        let again = SignedCheckpoint::from_json(&signed.to_json()).unwrap();
        assert_eq!(again, signed);
        let expected: Value = serde_json::from_str(text).unwrap();
        let written: Value = serde_json::from_str(&signed.to_json()).unwrap();
        assert_eq!(written, expected, "the agents' JSON, field for field");
        let signer: Address = include_str!("../testdata/checkpoint_signer.txt").trim().parse().unwrap();
        assert_eq!(signed.signer(), Some(signer));
    }

    #[test]
    fn a_bad_v_or_bad_json_is_refused() {
        assert!(matches!(SignedCheckpoint::from_json("{}"), Err(StoredError::Json(_))));
        let text = include_str!("../testdata/checkpoint_with_id.json").replace("\"v\": 28", "\"v\": 29");
        assert!(matches!(SignedCheckpoint::from_json(&text), Err(StoredError::BadV(29))));
    }
}
