//! This chain's Hyperlane validator (`[interop] validator = true`): it
//! follows the chain's own MerkleTreeHook as its insertions are
//! preconfirmed (or sealed and signed, `interop.attest`), keeps the same
//! depth-32 tree, and signs each checkpoint with the validator key into the
//! checkpoint syncer's directory that Hyperlane's relayers read.
//!
//! ```text
//!  view events (wake-ups only) ─> under the view's read lock, from the position (block, its
//!     transactions read) to the frontier (preconfirmed: the open block's last transaction;
//!     sealed: the newest block the block key signed): the hook's InsertedIntoTree(id, index)
//!  ─> tephra-interop's Attester: the tree (a gap or a changed leaf stops attesting),
//!     ValidatorGuard (this tree only; never two roots for one index) ─> audit log ─> validator key,
//!     the checkpoint store, the state file (tree and position)
//! ```
//!
//! Invariants: a checkpoint is signed only for an insertion the view holds
//! at or below the frontier, in index order; the position is anchored to
//! the hash of what it last read, so a chain that changed under it (a
//! rewind: an OP Stack chain's L1 reorged) is noticed, never read past. The
//! validator then goes back to the newest block it read that the chain
//! still has and reads on from there: a leaf it took again the same (a
//! transaction sequenced again) passes as a replay, a leaf that changed
//! stops attesting (Hold::Validator), since a signed checkpoint names a
//! message the chain no longer has, which only an operator can judge. The
//! guard never lets it sign a second root for an index in any case.
//!
//! Limits: `REWIND_BLOCKS_KEPT` blocks read remembered to go back to; the
//! view's kept blocks (`rpc.history_blocks_max`) bound how far behind the
//! validator may start or fall.

use std::{collections::VecDeque, sync::Arc, thread, time::Duration};

use alloy_primitives::B256;
use tephra_hsm::{AuditedSigner, SignError, ValidatorGuard, ValidatorRules};
use tephra_interop::{AttestError, Attester, CheckpointStore, Position, events::inserted_into_tree};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::{
    boot::{DataDir, open_key},
    chain_view::{ChainView, Event},
    config::{Attest, InteropConfig},
    health::Hold,
    node::NodeError,
    shared::Shared,
    view::StoredTx,
};

/// Sealed blocks read (number, hash) remembered, to go back to after a
/// rewind: as deep as the block key's guard lets a rewind go.
const REWIND_BLOCKS_KEPT: usize = 4096;
const _: () = assert!(REWIND_BLOCKS_KEPT as u64 == tephra_hsm::REWIND_BLOCKS_MAX);
/// How long the validator waits for an event before it looks anyway (a
/// signer that failed is tried again at this pace).
const IDLE_WAKE: Duration = Duration::from_millis(500);

/// The validator's checkpoints, as JSON-RPC serves them; the validator
/// thread is their one writer.
#[derive(Debug)]
pub struct ValidatorStatus {
    pub attest: Attest,
    pub store: CheckpointStore,
}

/// Why the validator stopped attesting.
#[derive(Debug, thiserror::Error)]
enum Stop {
    #[error("block {block} is no longer kept by the node (rpc.history_blocks_max): the validator fell behind")]
    NotKept { block: u64 },
    #[error("the chain changed under the validator at block {block}, below every block it remembers reading")]
    ChainChanged { block: u64 },
    #[error(transparent)]
    Attest(AttestError),
}

struct Validator {
    shared: Arc<Shared>,
    config: InteropConfig,
    data: DataDir,
    /// Opened at the first turn, and again after it failed to open.
    attester: Option<Attester>,
    /// Sealed blocks read (number, hash), newest last, to go back to.
    blocks_read: VecDeque<(u64, B256)>,
    stopped: bool,
}

/// Opens the validator's store and starts its thread. The key is opened by
/// the thread: an HSM that is down holds attestation, not the node.
pub fn spawn(shared: Arc<Shared>, data: DataDir) -> Result<Arc<ValidatorStatus>, NodeError> {
    let config = shared.config.interop.clone();
    let store = open_store(&config, &data)?;
    let status = Arc::new(ValidatorStatus { attest: config.attest, store });
    let runtime = tokio::runtime::Handle::current();
    let mut validator =
        Validator { attester: None, blocks_read: VecDeque::new(), stopped: false, shared, config, data };
    thread::Builder::new()
        .name("tephra-validator".into())
        .spawn(move || {
            let health = validator.shared.health.clone();
            let run = std::panic::AssertUnwindSafe(|| validator.run(&runtime));
            if std::panic::catch_unwind(run).is_err() {
                // A bug: attesting stops where it is, said on /ready; the state
                // file and the guard keep what was signed.
                health.hold(Hold::Validator, Some("Hyperlane validator stopped: its thread panicked".into()));
            }
        })
        .map_err(|e| NodeError::Interop(format!("the validator thread: {e}")))?;
    Ok(status)
}

fn open_store(config: &InteropConfig, data: &DataDir) -> Result<CheckpointStore, NodeError> {
    CheckpointStore::open(&data.0.join(&config.checkpoint_dir)).map_err(|e| NodeError::Interop(e.to_string()))
}

impl Validator {
    fn run(&mut self, runtime: &tokio::runtime::Handle) {
        let mut events = self.shared.events.subscribe();
        let health = self.shared.health.clone();
        tracing::info!(attest = self.config.attest.as_str(), "the Hyperlane validator starts");
        while !health.shutting_down() {
            match self.turn() {
                // The hold's lock is taken only to lift one (a turn runs at
                // every mini-block).
                Ok(()) if !self.stopped && health.holds(Hold::Validator) => {
                    health.hold(Hold::Validator, None);
                }
                Ok(()) => {}
                Err(error) => {
                    tracing::warn!(%error, "the Hyperlane validator cannot attest now; it tries again");
                    health.hold(Hold::Validator, Some(format!("Hyperlane validator: {error}")));
                }
            }
            // Events only wake the validator; what it reads is the view
            // (a rewind shows there as an anchor that no longer holds).
            wait(runtime, &mut events);
        }
    }

    /// Reads what is new and attests it.
    fn turn(&mut self) -> Result<(), AttestError> {
        if self.stopped {
            return Ok(());
        }
        if self.attester.is_none() {
            self.attester = Some(self.open_attester()?);
        }
        let collected = {
            let shared = self.shared.clone();
            let view = shared.view.read().expect("view lock");
            let position = self.attester.as_ref().expect("opened above").position();
            match self.collect(&view, position) {
                Err(Stop::ChainChanged { block }) => {
                    self.go_back(&view, block).and_then(|back| self.collect(&view, back))
                }
                collected => collected,
            }
        };
        let result = collected.and_then(|(insertions, position)| {
            let attester = self.attester.as_mut().expect("opened above");
            attester.attest(&insertions, position).map_err(Stop::Attest)
        });
        match result {
            Ok(_) => Ok(()),
            // The key, the store or the state file failed: tried again.
            Err(Stop::Attest(error @ (AttestError::Sign(_) | AttestError::Store(_) | AttestError::State { .. }))) => {
                Err(error)
            }
            // The tree does not go on: only an operator can judge.
            Err(stop) => {
                self.stop(&stop);
                Ok(())
            }
        }
    }

    /// The hook's insertions from the attester's position to the frontier,
    /// and the position after them.
    fn collect(&mut self, view: &ChainView, from: Position) -> Result<(Vec<(B256, u32)>, Position), Stop> {
        let frontier = match self.config.attest {
            Attest::Preconfirmed => view.head().header.number,
            Attest::Sealed => view.newest_signed(),
        };
        let mut position = from;
        let mut insertions = Vec::new();
        while position.block <= frontier {
            let block = view.block(position.block).ok_or(Stop::NotKept { block: position.block })?;
            if position.txs_read == 0 && position.anchor.is_some_and(|anchor| anchor != block.header.parent_hash) {
                return Err(Stop::ChainChanged { block: position.block });
            }
            self.read_txs(&block.txs, &mut position, &mut insertions)?;
            self.blocks_read.push_back((block.header.number, block.hash));
            if self.blocks_read.len() > REWIND_BLOCKS_KEPT {
                self.blocks_read.pop_front();
            }
            position = Position { block: position.block + 1, txs_read: 0, anchor: Some(block.hash) };
        }
        let open = view.open_block();
        if self.config.attest == Attest::Preconfirmed && open.params.number == position.block {
            self.read_txs(&open.txs, &mut position, &mut insertions)?;
        }
        Ok((insertions, position))
    }

    /// The insertions of `txs` past the position's, which it moves to
    /// their end.
    fn read_txs(&self, txs: &[StoredTx], position: &mut Position, out: &mut Vec<(B256, u32)>) -> Result<(), Stop> {
        let read = usize::try_from(position.txs_read).expect("a block's transactions fit usize");
        if read > 0 && txs.get(read - 1).map(|tx| tx.hash) != position.anchor {
            return Err(Stop::ChainChanged { block: position.block });
        }
        let Some(last) = txs.last().filter(|_| txs.len() > read) else { return Ok(()) };
        let hook = self.config.merkle_tree_hook;
        for tx in &txs[read..] {
            // A malformed log at the hook's address would be the contract's
            // bug: passed over like any other log.
            out.extend(tx.receipt.logs.iter().filter_map(|log| inserted_into_tree(log, hook)?.ok()));
        }
        *position = Position { txs_read: txs.len() as u64, anchor: Some(last.hash), ..*position };
        Ok(())
    }

    /// The chain changed under the position at `block`: the position just
    /// after the newest block read that the chain still has, to read on
    /// from (the follower passes the leaves it took again the same as
    /// replays, and stops at one that changed). The attester persists it
    /// with what follows, once the view's lock is let go.
    fn go_back(&mut self, view: &ChainView, block: u64) -> Result<Position, Stop> {
        let still = |(number, hash): &(u64, B256)| view.block(*number).is_some_and(|b| b.hash == *hash);
        while self.blocks_read.back().is_some_and(|read| !still(read)) {
            self.blocks_read.pop_back();
        }
        let Some(&(number, hash)) = self.blocks_read.back() else { return Err(Stop::ChainChanged { block }) };
        tracing::info!(block, from = number + 1, "the chain changed under the validator; it reads again");
        Ok(Position { block: number + 1, txs_read: 0, anchor: Some(hash) })
    }

    fn stop(&mut self, stop: &Stop) {
        tracing::error!(%stop, "the Hyperlane validator stops attesting");
        self.shared.health.hold(Hold::Validator, Some(format!("Hyperlane validator stopped: {stop}")));
        self.stopped = true;
    }

    /// The validator key behind its audit log and guard, and the attester.
    fn open_attester(&self) -> Result<Attester, AttestError> {
        let config = &self.config;
        let key =
            open_key(&config.key, &self.data, "Hyperlane validator").map_err(|e| SignError::Key(e.to_string()))?;
        let audited = AuditedSigner::open(key, &self.data.0.join(&config.audit_file))
            .map_err(|e| SignError::Device(e.to_string()))?;
        let rules = ValidatorRules {
            origin: config.domain,
            merkle_tree_hook: config.merkle_tree_hook.into_word(),
            mailbox: config.mailbox.into_word(),
        };
        let guard =
            ValidatorGuard::open(audited, rules, &self.data.0.join(&config.guard_file)).map_err(SignError::from)?;
        let store = open_store(config, &self.data).map_err(|e| SignError::Key(e.to_string()))?;
        let start = Position { block: config.start_block.max(1), txs_read: 0, anchor: None };
        let attester = Attester::open(
            config.domain,
            config.merkle_tree_hook,
            start,
            store,
            Box::new(guard),
            &self.data.0.join(&config.state_file),
        )?;
        attester.announce(config.mailbox, concat!("tephra-", env!("CARGO_PKG_VERSION")))?;
        Ok(attester)
    }
}

/// Until the next event, `IDLE_WAKE` or a lag (missed events are not
/// needed: the view is read, not the events).
fn wait(runtime: &tokio::runtime::Handle, events: &mut broadcast::Receiver<Event>) {
    // The timer is made inside the runtime: it needs its time driver.
    let woken = runtime.block_on(async { tokio::time::timeout(IDLE_WAKE, events.recv()).await });
    if let Ok(Err(RecvError::Closed)) = woken {
        thread::sleep(IDLE_WAKE);
    }
}
