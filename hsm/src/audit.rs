//! The signing audit log: one line per signature, each carrying the hash of
//! the line before it, so that a removed, reordered or edited line breaks the
//! chain. Appended and fsync'd before the signature is released.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use alloy_primitives::{Address, B256, keccak256};

use crate::{Payload, SignError, Signature65, Signer};

/// One audited signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub sequence: u64,
    pub time_ms: u64,
    pub payload_type: &'static str,
    pub height: u64,
    pub payload_hash: B256,
    pub signature: Signature65,
    /// The signing key, by address.
    pub key: Address,
    pub previous: B256,
}

impl AuditEntry {
    /// The line without its own hash: what the hash covers.
    fn body(&self) -> String {
        format!(
            "{} {} {} {} {} 0x{} {} {}",
            self.sequence,
            self.time_ms,
            self.payload_type,
            self.height,
            self.payload_hash,
            hex::encode(self.signature.0),
            self.key,
            self.previous
        )
    }

    fn hash(&self) -> B256 {
        keccak256(self.body())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("audit log line {line}: {reason}")]
    Broken { line: u64, reason: String },
}

fn parse_line(line: &str, number: u64) -> Result<(AuditEntry, B256), AuditError> {
    let broken = |reason: &str| AuditError::Broken { line: number, reason: reason.into() };
    let fields: Vec<&str> = line.split(' ').collect();
    let [sequence, time_ms, payload_type, height, payload_hash, signature, key, previous, hash] = fields[..] else {
        return Err(broken("expected 9 fields"));
    };
    let payload_type = match payload_type {
        "sealed_block" => "sealed_block",
        "self_test" => "self_test",
        "delegation" => "delegation",
        "preconf_batch" => "preconf_batch",
        "l1_transaction" => "l1_transaction",
        "hyperlane_checkpoint" => "hyperlane_checkpoint",
        "hyperlane_announcement" => "hyperlane_announcement",
        _ => return Err(broken("unknown payload type")),
    };
    let signature: [u8; 65] = hex::decode(signature.trim_start_matches("0x"))
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| broken("bad signature"))?;
    let entry = AuditEntry {
        sequence: sequence.parse().map_err(|_| broken("bad sequence"))?,
        time_ms: time_ms.parse().map_err(|_| broken("bad time"))?,
        payload_type,
        height: height.parse().map_err(|_| broken("bad height"))?,
        payload_hash: payload_hash.parse().map_err(|_| broken("bad payload hash"))?,
        signature: Signature65(signature),
        key: key.parse().map_err(|_| broken("bad key"))?,
        previous: previous.parse().map_err(|_| broken("bad previous hash"))?,
    };
    let hash: B256 = hash.parse().map_err(|_| broken("bad hash"))?;
    Ok((entry, hash))
}

/// Checks the whole chain at `path`; returns the entries and the last hash.
pub fn verify(path: &Path) -> Result<(Vec<AuditEntry>, B256), AuditError> {
    let io = |source| AuditError::Io { path: path.to_path_buf(), source };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), B256::ZERO)),
        Err(error) => return Err(io(error)),
    };
    let mut entries = Vec::new();
    let mut last = B256::ZERO;
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let number = index as u64 + 1;
        let (entry, hash) = parse_line(&line.map_err(io)?, number)?;
        if entry.previous != last || entry.sequence != number - 1 {
            return Err(AuditError::Broken { line: number, reason: "does not follow the line before".into() });
        }
        if entry.hash() != hash {
            return Err(AuditError::Broken { line: number, reason: "hash does not match its contents".into() });
        }
        if crate::recover(&entry.signature, entry.payload_hash) != Some(entry.key) {
            return Err(AuditError::Broken { line: number, reason: "signature does not recover to the key".into() });
        }
        last = hash;
        entries.push(entry);
    }
    Ok((entries, last))
}

/// A signer whose every signature is appended to the audit log first.
#[derive(Debug)]
pub struct AuditedSigner<S> {
    inner: S,
    path: PathBuf,
    state: Mutex<(File, u64, B256)>,
}

impl<S: Signer> AuditedSigner<S> {
    /// Opens (or creates) the log at `path`, checking the chain so far. A
    /// last line cut short by a crash (no newline yet) is removed first: its
    /// signature was never released.
    pub fn open(inner: S, path: &Path) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io { path: path.to_path_buf(), source };
        if let Ok(bytes) = std::fs::read(path)
            && bytes.last().is_some_and(|&b| b != b'\n')
        {
            let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let file = OpenOptions::new().write(true).open(path).map_err(io)?;
            file.set_len(keep as u64).and_then(|()| file.sync_all()).map_err(io)?;
        }
        let (entries, last) = verify(path)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| AuditError::Io { path: path.to_path_buf(), source })?;
        Ok(Self { inner, path: path.to_path_buf(), state: Mutex::new((file, entries.len() as u64, last)) })
    }
}

impl<S: Signer> Signer for AuditedSigner<S> {
    fn public_key(&self) -> secp256k1::PublicKey {
        self.inner.public_key()
    }

    fn address(&self) -> Address {
        self.inner.address()
    }

    fn sign(&self, payload: &Payload<'_>) -> Result<Signature65, SignError> {
        let mut state = self.state.lock().expect("audit lock");
        let signature = self.inner.sign(payload)?;
        let (payload_type, height) = match *payload {
            Payload::SealedBlock { number, .. } => ("sealed_block", number),
            Payload::SelfTest { .. } => ("self_test", 0),
            Payload::Delegation { epoch, .. } => ("delegation", epoch),
            Payload::PreconfBatch { block_number, .. } => ("preconf_batch", block_number),
            Payload::L1Transaction(tx) => ("l1_transaction", tx.nonce()),
            Payload::HyperlaneCheckpoint { index, .. } => ("hyperlane_checkpoint", u64::from(index)),
            Payload::HyperlaneAnnouncement { .. } => ("hyperlane_announcement", 0),
        };
        let entry = AuditEntry {
            sequence: state.1,
            time_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            payload_type,
            height,
            payload_hash: payload.signing_hash(),
            signature,
            key: self.inner.address(),
            previous: state.2,
        };
        let hash = entry.hash();
        let line = format!("{} {hash}\n", entry.body());
        let (file, _, _) = &mut *state;
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| SignError::Device(format!("audit log {}: {e}", self.path.display())))?;
        state.1 += 1;
        state.2 = hash;
        Ok(signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileSigner;

    #[test]
    fn every_signature_is_chained_and_tampering_is_found() {
        let dir = tephra_testkit::fresh_dir("audit");
        let path = dir.join("audit.log");
        let signer = AuditedSigner::open(FileSigner::from_bytes(&[9; 32]).unwrap(), &path).unwrap();
        for number in 1..=3u8 {
            signer
                .sign(&Payload::SealedBlock {
                    chain_id: 1,
                    number: u64::from(number),
                    block_hash: B256::repeat_byte(number),
                    leader_epoch: 0,
                })
                .unwrap();
        }
        drop(signer);
        // Reopening continues the chain.
        let signer = AuditedSigner::open(FileSigner::from_bytes(&[9; 32]).unwrap(), &path).unwrap();
        signer.sign(&Payload::SelfTest { challenge: B256::repeat_byte(4) }).unwrap();
        let (entries, _) = verify(&path).unwrap();
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[2].height, 3);
        assert_eq!(entries[3].payload_type, "self_test");

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let removed = [lines[0], lines[2], lines[3]].join("\n") + "\n";
        std::fs::write(&path, removed).unwrap();
        assert!(matches!(verify(&path), Err(AuditError::Broken { line: 2, .. })));
        let edited = text.replacen(" 2 0x", " 9 0x", 1);
        std::fs::write(&path, edited).unwrap();
        assert!(verify(&path).is_err());

        // A line cut short by a crash is dropped when the log is reopened.
        std::fs::write(&path, &text[..text.len() - 20]).unwrap();
        let signer = AuditedSigner::open(FileSigner::from_bytes(&[9; 32]).unwrap(), &path).unwrap();
        signer.sign(&Payload::SelfTest { challenge: B256::repeat_byte(5) }).unwrap();
        assert_eq!(verify(&path).unwrap().0.len(), 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_validator_keys_entries_are_read_back() {
        let dir = tephra_testkit::fresh_dir("audit-validator");
        let path = dir.join("audit.log");
        let signer = AuditedSigner::open(FileSigner::from_bytes(&[9; 32]).unwrap(), &path).unwrap();
        let (hook, root, id) = (B256::repeat_byte(1), B256::repeat_byte(2), B256::repeat_byte(3));
        let origin = 1000;
        signer.sign(&Payload::HyperlaneAnnouncement { origin, mailbox: hook, storage_location: "file:///v" }).unwrap();
        signer
            .sign(&Payload::HyperlaneCheckpoint { origin, merkle_tree_hook: hook, root, index: 7, message_id: id })
            .unwrap();
        drop(signer);
        AuditedSigner::open(FileSigner::from_bytes(&[9; 32]).unwrap(), &path).expect("reopened");
        let (entries, _) = verify(&path).unwrap();
        let kinds: Vec<(&str, u64)> = entries.iter().map(|e| (e.payload_type, e.height)).collect();
        assert_eq!(kinds, [("hyperlane_announcement", 0), ("hyperlane_checkpoint", 7)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
