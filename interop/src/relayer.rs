//! The relayer (`tephra relay`): carries messages between any configured
//! chains, tephra or not. A process of its own, not a role of the node: it
//! must outlive any one node's restart, serve chains no tephra runs, and
//! hold only a key that pays for gas.
//!
//! ```text
//! each origin, every poll: Dispatch + InsertedIntoTree logs of [cursor, head] ─> journal: queued, cursor
//! each queued message whose turn has come:
//!   destination not configured ─> reported once, journal: done (never retried)
//!   destination Mailbox.delivered(id) ─> journal: done
//!   ISM = recipientIsm(recipient); (validators, threshold) = ISM.validatorsAndThreshold(message)
//!   origin ValidatorAnnounce.getAnnouncedStorageLocations(validators) ─> file://<dir>/{leaf}_with_id.json
//!   metadata (signatures in the ISM's order) ─> Transactor: estimate (bounded) ─> Mailbox.process
//!   below threshold: wait; a revert or a failure: reported, retried with back-off
//! ```
//!
//! Invariants: a message is in the journal before the cursor passes it, so
//! a kill -9 loses none; nothing is delivered twice, since `delivered` is
//! asked before each attempt and the Mailbox itself refuses a second
//! delivery ("already delivered"), which counts as done.
//!
//! Limits: `QUEUE_MESSAGES_MAX` pending messages (past it, origins are not
//! read until the queue drains), `LOG_RANGE_BLOCKS_MAX` blocks per log
//! read, `config.gas_max` per transaction, back-off up to
//! `config.backoff_max_ms`.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use alloy_primitives::{Address, B256, Bytes};
use alloy_sol_types::SolCall;
use serde::{Deserialize, Serialize};
use tephra_hsm::Signer;
use tephra_l1::L1Error;

use crate::{
    chain::{self, ChainRpc, LOG_RANGE_BLOCKS_MAX},
    checkpoint::SignedCheckpoint,
    contracts::{IMailbox, IMultisigIsm, IValidatorAnnounce},
    deploy::Deployment,
    events::{self, DISPATCH_TOPIC, INSERTED_INTO_TREE_TOPIC},
    message::HyperlaneMessage,
    metadata::{MetadataError, message_id_multisig_metadata},
    transactor::{SendError, Transactor},
};

/// Messages queued at most; past it the origins wait.
pub const QUEUE_MESSAGES_MAX: usize = 100_000;
/// Journal lines past which it is rewritten with only what is pending.
const JOURNAL_LINES_MAX: usize = 100_000;
/// Tries without enough signatures after which the relayer says so (at
/// `backoff_initial_ms` apart: a minute at the default second).
const WAITS_REPORTED_AT: u32 = 60;
/// A checkpoint file read at most (a signed checkpoint is under 1 KiB).
const CHECKPOINT_FILE_BYTES_MAX: u64 = 64 << 10;

/// One chain the relayer reads from and delivers to.
pub struct RelayChain {
    pub name: String,
    pub rpc: Box<dyn ChainRpc>,
    pub deployment: Deployment,
    /// Blocks below the head before the relayer reads a dispatch: a chain
    /// that can reorg must be read where it no longer does (0 for tephra,
    /// whose preconfirmed blocks stand).
    pub confirmations: u64,
}

/// The relayer's settings (`tephra relay --config`).
#[derive(Clone, Debug)]
pub struct RelayerSettings {
    pub gas_max: u64,
    pub receipt_timeout: Duration,
    /// The first retry after a failure; each next one doubles, up to the max.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
}

/// Why the relayer cannot go on (its journal); a chain's failure is not one.
#[derive(Debug, thiserror::Error)]
pub enum RelayerError {
    #[error("relayer journal {path}: {reason}")]
    Journal { path: PathBuf, reason: String },
    #[error("two chains have domain {0}")]
    DuplicateDomain(u32),
}

/// One line of the journal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Entry {
    /// Origin `domain` is read up to block `block` (included).
    Cursor {
        domain: u32,
        block: u64,
    },
    Queued {
        message: Bytes,
        leaf_index: u32,
    },
    Done {
        id: B256,
        how: Outcome,
    },
}

/// How a message left the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Delivered (by this relayer or another).
    Delivered,
    /// Its destination domain is not one the relayer serves.
    UnknownDestination,
}

/// A message waiting for delivery.
#[derive(Clone, Debug)]
struct Pending {
    message: HyperlaneMessage,
    leaf_index: u32,
    attempts: u32,
    /// Tries that found too few signatures; at `WAITS_REPORTED_AT`, said.
    waits: u32,
    next_try: Instant,
}

impl std::fmt::Debug for RelayChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayChain").field("name", &self.name).field("domain", &self.deployment.domain).finish()
    }
}

impl std::fmt::Debug for Relayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relayer").field("chains", &self.chains).field("pending", &self.pending.len()).finish()
    }
}

/// See the module comment.
pub struct Relayer {
    chains: Vec<RelayChain>,
    signer: Box<dyn Signer>,
    settings: RelayerSettings,
    journal_path: PathBuf,
    journal: File,
    journal_lines: usize,
    cursors: HashMap<u32, u64>,
    pending: BTreeMap<B256, Pending>,
}

/// What one poll did, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollReport {
    pub queued: usize,
    pub delivered: Vec<B256>,
    /// (message id, why), each failure once per attempt.
    pub failed: Vec<(B256, String)>,
    pub unknown_destination: Vec<B256>,
}

impl Relayer {
    /// The relayer over `chains`, going on from the journal in `dir`.
    pub fn open(
        chains: Vec<RelayChain>,
        signer: Box<dyn Signer>,
        settings: RelayerSettings,
        dir: &Path,
    ) -> Result<Self, RelayerError> {
        let mut domains = HashSet::new();
        if let Some(chain) = chains.iter().find(|chain| !domains.insert(chain.deployment.domain)) {
            return Err(RelayerError::DuplicateDomain(chain.deployment.domain));
        }
        let journal_path = dir.join("relayer.journal");
        let failed = |reason: String| RelayerError::Journal { path: journal_path.clone(), reason };
        std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
        let (cursors, pending, lines) = replay(&journal_path).map_err(failed)?;
        let journal =
            OpenOptions::new().create(true).append(true).open(&journal_path).map_err(|e| failed(e.to_string()))?;
        let now = Instant::now();
        let pending = pending
            .into_iter()
            .map(|(id, (message, leaf_index))| {
                (id, Pending { message, leaf_index, attempts: 0, waits: 0, next_try: now })
            })
            .collect();
        Ok(Self { chains, signer, settings, journal_path, journal, journal_lines: lines, cursors, pending })
    }

    /// Messages waiting.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Reads every origin, then tries each message whose turn has come.
    pub fn poll(&mut self) -> Result<PollReport, RelayerError> {
        let mut report = PollReport::default();
        for origin in 0..self.chains.len() {
            if self.pending.len() >= QUEUE_MESSAGES_MAX {
                break;
            }
            match self.read_origin(origin) {
                Ok(queued) => report.queued += queued,
                Err(ReadError::Chain(error)) => {
                    tracing::warn!(chain = self.chains[origin].name, %error, "cannot read the origin; next poll");
                }
                Err(ReadError::Journal(error)) => return Err(error),
            }
        }
        let now = Instant::now();
        let due: Vec<B256> = self.pending.iter().filter(|(_, p)| p.next_try <= now).map(|(id, _)| *id).collect();
        for id in due {
            self.try_deliver(id, &mut report)?;
        }
        self.compact_if_long()?;
        Ok(report)
    }

    /// Queues the messages dispatched on `origin` since its cursor.
    fn read_origin(&mut self, origin: usize) -> Result<usize, ReadError> {
        let chain = &self.chains[origin];
        let deployment = &chain.deployment;
        let head = chain.rpc.head_number()?.saturating_sub(chain.confirmations);
        let from = self.cursors.get(&deployment.domain).map_or(deployment.deployed_block, |cursor| cursor + 1);
        if from > head {
            return Ok(0);
        }
        let to = head.min(from + LOG_RANGE_BLOCKS_MAX - 1);
        let dispatches = chain.rpc.logs_in_range(deployment.mailbox, DISPATCH_TOPIC, from, to)?;
        let inserted = chain.rpc.logs_in_range(deployment.merkle_tree_hook, INSERTED_INTO_TREE_TOPIC, from, to)?;
        let leaf_of: HashMap<B256, u32> = inserted
            .iter()
            .filter_map(|(_, log)| events::inserted_into_tree(&events::as_log(log), deployment.merkle_tree_hook)?.ok())
            .collect();
        let mut entries = Vec::new();
        for (_, log) in &dispatches {
            let Some(Ok(message)) = events::dispatched(&events::as_log(log), deployment.mailbox) else { continue };
            let id = message.id();
            if self.pending.contains_key(&id) {
                continue;
            }
            // Every dispatch passes the required MerkleTreeHook in the same
            // transaction: one without its leaf is another deployment's.
            let Some(&leaf_index) = leaf_of.get(&id) else {
                tracing::warn!(%id, "a dispatch with no insertion into the hook's tree: not relayed");
                continue;
            };
            entries.push(Entry::Queued { message: message.encode().into(), leaf_index });
            let next_try = Instant::now();
            self.pending.insert(id, Pending { message, leaf_index, attempts: 0, waits: 0, next_try });
        }
        let queued = entries.len();
        let domain = deployment.domain;
        entries.push(Entry::Cursor { domain, block: to });
        self.append(&entries).map_err(ReadError::Journal)?;
        self.cursors.insert(domain, to);
        Ok(queued)
    }

    fn try_deliver(&mut self, id: B256, report: &mut PollReport) -> Result<(), RelayerError> {
        let pending = self.pending[&id].clone();
        match self.deliver(&pending) {
            Ok(outcome) => {
                self.append(&[Entry::Done { id, how: outcome }])?;
                self.pending.remove(&id);
                match outcome {
                    Outcome::Delivered => report.delivered.push(id),
                    Outcome::UnknownDestination => {
                        tracing::error!(
                            %id, destination = pending.message.destination,
                            "a message for a domain this relayer does not serve: reported, not retried"
                        );
                        report.unknown_destination.push(id);
                    }
                }
            }
            Err(Attempt::NotYet(why)) => {
                let wait = self.backoff(0);
                let entry = self.pending.get_mut(&id).expect("pending");
                entry.next_try = Instant::now() + wait;
                entry.waits += 1;
                if entry.waits == WAITS_REPORTED_AT {
                    // Validators that are down, or an ISM of validators who
                    // do not attest this origin: said once, still awaited.
                    tracing::warn!(%id, why, "still not signed by enough of the ISM's validators");
                    report.failed.push((id, why));
                } else {
                    tracing::debug!(%id, why, "not deliverable yet");
                }
            }
            Err(Attempt::Failed(why)) => {
                let attempts = pending.attempts + 1;
                let wait = self.backoff(attempts);
                let entry = self.pending.get_mut(&id).expect("pending");
                (entry.attempts, entry.next_try) = (attempts, Instant::now() + wait);
                tracing::warn!(%id, attempts, retry_in = ?wait, why, "delivery failed");
                report.failed.push((id, why));
            }
        }
        Ok(())
    }

    /// The wait before the next try after `attempts` failures.
    fn backoff(&self, attempts: u32) -> Duration {
        let doubled = self.settings.backoff_initial_ms.saturating_mul(1u64 << attempts.saturating_sub(1).min(20));
        Duration::from_millis(if attempts == 0 { self.settings.backoff_initial_ms } else { doubled })
            .min(Duration::from_millis(self.settings.backoff_max_ms))
    }

    fn deliver(&self, pending: &Pending) -> Result<Outcome, Attempt> {
        let message = &pending.message;
        let Some(destination) = self.chains.iter().find(|c| c.deployment.domain == message.destination) else {
            return Ok(Outcome::UnknownDestination);
        };
        // Messages are read from the chains served only, but the journal may
        // hold one from a chain since taken out of the config: kept, and said.
        let Some(origin) = self.chains.iter().find(|c| c.deployment.domain == message.origin) else {
            return Err(Attempt::Failed(format!("its origin {} is no chain of this relayer", message.origin)));
        };
        let id = message.id();
        let mailbox = destination.deployment.mailbox;
        let rpc = destination.rpc.as_ref();
        if view(rpc, mailbox, IMailbox::deliveredCall { _id: id })? {
            return Ok(Outcome::Delivered);
        }
        let ism = view(rpc, mailbox, IMailbox::recipientIsmCall { _recipient: message.recipient_address() })?;
        let encoded = Bytes::from(message.encode());
        let set = view(rpc, ism, IMultisigIsm::validatorsAndThresholdCall { _message: encoded.clone() })?;
        let signed = checkpoints_of(origin, &set.validators, pending.leaf_index)?;
        let below = |signed: usize| {
            let validators: Vec<String> = set.validators.iter().map(ToString::to_string).collect();
            let (validators, leaf) = (validators.join(", "), pending.leaf_index);
            Attempt::NotYet(format!(
                "{signed} of the ISM's validators [{validators}] signed leaf {leaf}; it needs {}",
                set.threshold
            ))
        };
        let Some(checkpoint) = signed.iter().map(|s| s.value).find(|value| value.message_id == id) else {
            return Err(below(0));
        };
        let metadata = match message_id_multisig_metadata(&checkpoint, &signed, &set.validators, set.threshold.into()) {
            Ok(metadata) => metadata,
            Err(MetadataError::BelowThreshold { signed, .. }) => return Err(below(signed)),
            Err(error) => return Err(Attempt::Failed(error.to_string())),
        };
        let process = IMailbox::processCall { _metadata: metadata.into(), _message: encoded };
        let transactor = Transactor {
            chain: rpc,
            signer: self.signer.as_ref(),
            chain_id: destination.deployment.chain_id,
            gas_max: self.settings.gas_max,
            receipt_timeout: self.settings.receipt_timeout,
        };
        match transactor.send(Some(mailbox), process.abi_encode().into()) {
            Ok(_) => Ok(Outcome::Delivered),
            // Another relayer (or an earlier attempt of this one) was first.
            Err(SendError::WouldRevert(reason)) if reason.contains("already delivered") => Ok(Outcome::Delivered),
            Err(error) => Err(Attempt::Failed(format!("Mailbox.process on {}: {error}", destination.name))),
        }
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), RelayerError> {
        let mut text = String::new();
        for entry in entries {
            text.push_str(&serde_json::to_string(entry).expect("an entry serialises"));
            text.push('\n');
        }
        let failed =
            |e: std::io::Error| RelayerError::Journal { path: self.journal_path.clone(), reason: e.to_string() };
        self.journal.write_all(text.as_bytes()).and_then(|()| self.journal.sync_data()).map_err(failed)?;
        self.journal_lines += entries.len();
        Ok(())
    }

    /// Rewrites the journal with the cursors and what is pending, once it is long.
    fn compact_if_long(&mut self) -> Result<(), RelayerError> {
        if self.journal_lines <= JOURNAL_LINES_MAX.max(2 * (self.pending.len() + self.cursors.len())) {
            return Ok(());
        }
        let failed =
            |e: std::io::Error| RelayerError::Journal { path: self.journal_path.clone(), reason: e.to_string() };
        let mut entries: Vec<Entry> =
            self.cursors.iter().map(|(domain, block)| Entry::Cursor { domain: *domain, block: *block }).collect();
        entries.extend(
            self.pending
                .values()
                .map(|p| Entry::Queued { message: p.message.encode().into(), leaf_index: p.leaf_index }),
        );
        let text: String =
            entries.iter().map(|e| serde_json::to_string(e).expect("an entry serialises") + "\n").collect();
        tephra_types::durable::replace_file(&self.journal_path, text.as_bytes()).map_err(failed)?;
        self.journal = OpenOptions::new().append(true).open(&self.journal_path).map_err(failed)?;
        self.journal_lines = entries.len();
        Ok(())
    }
}

enum ReadError {
    Chain(L1Error),
    Journal(RelayerError),
}

impl From<L1Error> for ReadError {
    fn from(error: L1Error) -> Self {
        ReadError::Chain(error)
    }
}

/// Why a delivery did not happen this time.
enum Attempt {
    /// Waiting on validators: tried again soon, not counted as a failure.
    NotYet(String),
    /// A chain, the ISM or the gas bound refused: reported, backed off.
    Failed(String),
}

impl From<L1Error> for Attempt {
    fn from(error: L1Error) -> Self {
        Attempt::Failed(error.to_string())
    }
}

fn view<C: SolCall>(rpc: &dyn ChainRpc, to: Address, call: C) -> Result<C::Return, Attempt> {
    Ok(chain::view(rpc, to, &call)?)
}

/// The checkpoints of leaf `index` that `validators` wrote where they
/// announced on the origin; those not found (yet) are left out.
fn checkpoints_of(origin: &RelayChain, validators: &[Address], index: u32) -> Result<Vec<SignedCheckpoint>, Attempt> {
    let announce = origin.deployment.validator_announce;
    let call = IValidatorAnnounce::getAnnouncedStorageLocationsCall { _validators: validators.to_vec() };
    let locations = view(origin.rpc.as_ref(), announce, call)?;
    let mut signed = Vec::new();
    for (validator, locations) in validators.iter().zip(locations) {
        // The newest announcement is where the validator writes now.
        let Some(location) = locations.last() else { continue };
        let Some(dir) = location.strip_prefix("file://") else {
            tracing::warn!(%validator, location, "a checkpoint location other than file:// is not read");
            continue;
        };
        if let Some(checkpoint) = read_checkpoint(Path::new(dir), index) {
            signed.push(checkpoint);
        }
    }
    Ok(signed)
}

fn read_checkpoint(dir: &Path, index: u32) -> Option<SignedCheckpoint> {
    let file = File::open(dir.join(format!("{index}_with_id.json"))).ok()?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, CHECKPOINT_FILE_BYTES_MAX), &mut text).ok()?;
    SignedCheckpoint::from_json(&text).ok().filter(|c| c.value.checkpoint.index == index)
}

type Replayed = (HashMap<u32, u64>, BTreeMap<B256, (HyperlaneMessage, u32)>, usize);

/// The journal's cursors and pending messages. A last line cut by a crash
/// (no newline yet) is cut off the file; any other bad line refuses it.
fn replay(path: &Path) -> Result<Replayed, String> {
    let (mut cursors, mut pending, mut lines) = (HashMap::new(), BTreeMap::new(), 0);
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((cursors, pending, 0)),
        Err(e) => return Err(e.to_string()),
    };
    let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |at| at + 1);
    if whole < bytes.len() {
        let file = OpenOptions::new().write(true).open(path).map_err(|e| e.to_string())?;
        file.set_len(whole as u64).and_then(|()| file.sync_all()).map_err(|e| e.to_string())?;
    }
    let text = std::str::from_utf8(&bytes[..whole]).map_err(|e| e.to_string())?;
    for (number, line) in text.lines().enumerate() {
        let entry: Entry = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", number + 1))?;
        lines += 1;
        match entry {
            Entry::Cursor { domain, block } => {
                cursors.insert(domain, block);
            }
            Entry::Queued { message, leaf_index } => {
                let message = HyperlaneMessage::decode(&message).map_err(|e| format!("line {}: {e}", number + 1))?;
                pending.insert(message.id(), (message, leaf_index));
            }
            Entry::Done { id, .. } => {
                pending.remove(&id);
            }
        }
    }
    Ok((cursors, pending, lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(nonce: u32) -> HyperlaneMessage {
        HyperlaneMessage {
            version: 3,
            nonce,
            origin: 1000,
            sender: B256::repeat_byte(1),
            destination: 2000,
            recipient: B256::repeat_byte(2),
            body: Bytes::from_static(b"hi"),
        }
    }

    fn line(entry: &Entry) -> String {
        serde_json::to_string(entry).unwrap() + "\n"
    }

    #[test]
    fn the_journal_gives_back_cursors_and_pending_and_a_cut_last_line_is_cut_off() {
        let dir = tephra_testkit::fresh_dir("relayer-journal");
        let path = dir.join("relayer.journal");
        let (first, second) = (message(0), message(1));
        let mut text = line(&Entry::Queued { message: first.encode().into(), leaf_index: 0 });
        text += &line(&Entry::Queued { message: second.encode().into(), leaf_index: 1 });
        text += &line(&Entry::Cursor { domain: 1000, block: 42 });
        text += &line(&Entry::Done { id: first.id(), how: Outcome::Delivered });
        let whole = text.len();
        text += "{\"cursor\":{\"domain\":1000,\"blo";
        std::fs::write(&path, &text).unwrap();
        let (cursors, pending, lines) = replay(&path).unwrap();
        assert_eq!((cursors[&1000], lines), (42, 4));
        assert_eq!(pending.keys().copied().collect::<Vec<_>>(), vec![second.id()]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole as u64, "the cut line is gone");

        // A bad line before the end is not a crash's: refused.
        std::fs::write(&path, format!("not json\n{}", line(&Entry::Cursor { domain: 1, block: 1 }))).unwrap();
        assert!(replay(&path).unwrap_err().contains("line 1"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
