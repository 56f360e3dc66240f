//! An OP Stack chain's batcher: the sealed blocks of the chain view (what
//! the batch log holds) go to L1 as span batches in brotli channels, in
//! calldata transactions that the batcher key signs, and are read back from
//! L1 the way a verifier reads them, which tells the safe and finalized heads.
//!
//! ```text
//!  tephra-batcher thread, every batcher.poll_interval_ms:
//!   L1 head ─> read_back.rs: canonical L1 blocks since the last one read, the batcher's
//!              transactions to the inbox ─> frames ─> Holocene channel assembly ─> span batches
//!              ─> the same as tephra's blocks? ─> posted head and the L1 block it landed in
//!              ─> safe (that L1 block batcher.safe_depth_l1_blocks deep), finalized (L1 finalized)
//!              L1 reorg: back to the newest L1 block still canonical, what landed above it unposted
//!   ChainView's sealed blocks after those taken ─> send.rs: ChannelOut (a span batch per run of blocks)
//!              ─closed: size, duration, window─> frames ─> calldata txs, or blob txs (their payloads
//!              kept in blob_store.rs for the read-back), nonces in frame order
//!              ─> BatcherGuard (inbox only, fee caps) ─> audit log ─> batcher key ─> eth_sendRawTransaction
//!              stuck: fees +10% after batcher.resubmit_timeout_ms; the L1 nonce went back (reorg): sent again;
//!              included but not read back: the channel is given up, its blocks go into a new one
//!   window: the oldest block not posted has an origin whose sequencing window closes within
//!           batcher.sub_safety_margin_l1_blocks ─> alarm (metric, log, /ready) and no new block opens
//!   a poll that fails (L1 unreachable or refusing, the batcher key's HSM down) ─> Hold::Batcher,
//!           blocks and preconfirmations go on; the next poll tries again
//! ```
//!
//! Invariants: channels are sent in block order, each from the block after
//! the previous one's last, and their frames in nonce order, so that L1
//! holds them in Holocene's order; a block counts as posted only once read
//! back from L1 and equal to tephra's; what was not read back is sent again
//! after a restart (the read-back starts at the last finalized point,
//! `batcher.checkpoint`); the batcher key signs nothing but batcher
//! transactions.

mod blob_store;
mod read_back;
mod send;

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
    thread,
    time::{Duration, Instant},
};

use alloy_primitives::{Address, B256, Bytes};
use op_alloy_consensus::OpTxEnvelope;
use tephra_batcher::BatchBlock;
use tephra_hsm::Signer;
use tephra_l1::{L1BatcherRpc, L1Error, L1JsonRpc, L1Rpc};
use tephra_types::rollup::RollupConfig;

use crate::{chain_view::ChainView, config::BatcherConfig, health::Hold, shared::Shared, view::StoredBlock};

pub use read_back::{Heads, Posted};

/// The batcher's heads and its window alarm, as RPC and the sequencer read
/// them; the batcher thread is their one writer.
#[derive(Debug, Default)]
pub struct BatcherStatus {
    /// None until the first read-back: every head is genesis.
    heads: RwLock<Option<Heads>>,
    /// Why no block may open: a batch close to missing its window.
    window: RwLock<Option<String>>,
}

impl BatcherStatus {
    /// The posted head (read back from L1 at any depth), the safe head (in
    /// an L1 block `safe_depth_l1_blocks` deep) and the finalized head (in
    /// a finalized L1 block), each with the L1 block it landed in.
    pub fn heads(&self) -> Option<Heads> {
        *self.heads.read().expect("batcher heads lock")
    }

    pub fn safe(&self) -> u64 {
        self.heads().map_or(0, |h| h.safe.l2)
    }

    pub fn finalized(&self) -> u64 {
        self.heads().map_or(0, |h| h.finalized.l2)
    }

    /// Set while the next block must not open.
    pub fn window_hold(&self) -> Option<String> {
        self.window.read().expect("batcher window lock").clone()
    }
}

/// Why a poll of the batcher failed; the next poll tries again.
#[derive(Debug, thiserror::Error)]
pub enum BatcherError {
    #[error("L1: {0}")]
    L1(#[from] L1Error),
    #[error("the L1 refused a batcher transaction at nonce {nonce}: {reason}")]
    Refused { nonce: u64, reason: String },
    #[error("the batcher key: {0}")]
    Sign(#[from] tephra_hsm::SignError),
    #[error("the batcher key cannot be opened: {0}")]
    Key(String),
    #[error("L1 chain id {got}, but the rollup config's l1_chain_id is {expected}")]
    WrongL1 { got: u64, expected: u64 },
    #[error("block {number} is not kept by the chain view (rpc.history_blocks_max): it cannot be batched")]
    NotKept { number: u64 },
    #[error("channel: {0}")]
    Channel(#[from] tephra_batcher::ChannelOutError),
    #[error("batcher checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("blob: {0}")]
    Blob(String),
    #[error("a bug: {0} (the batcher starts again from its checkpoint)")]
    Panicked(String),
}

/// What every part of the batcher reads: the rollup, the config, the L1.
struct Context {
    shared: Arc<Shared>,
    rollup: RollupConfig,
    config: BatcherConfig,
    rpc: L1JsonRpc,
    batcher: Address,
}

impl Context {
    fn metrics(&self) -> &crate::metrics::BatcherMetrics {
        &self.shared.metrics.batcher
    }

    /// The L2 block number of a block at `timestamp`.
    fn number_at(&self, timestamp: u64) -> Option<u64> {
        let since = timestamp.checked_sub(self.rollup.genesis.l2_time)?;
        let blocks = since.is_multiple_of(self.rollup.block_time).then(|| since / self.rollup.block_time)?;
        self.rollup.genesis.l2.number.checked_add(blocks)
    }
}

/// Starts the batcher thread, which runs until the node stops.
pub fn spawn(shared: Arc<Shared>, status: Arc<BatcherStatus>) -> std::io::Result<()> {
    let op = shared.op.clone().expect("the batcher runs on an OP Stack chain");
    let config = shared.config.batcher.clone();
    let rpc = L1JsonRpc::with_timeout_ms(shared.config.l1.rpc.clone(), shared.config.l1.request_timeout_ms)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let checkpoint = shared.config.node.data_dir.join(read_back::CHECKPOINT_FILE);
    let batcher = op.rollup.genesis.system_config.batcher_addr;
    let context = Context { rollup: op.rollup.clone(), config, rpc, batcher, shared };
    thread::Builder::new().name("tephra-batcher".into()).spawn(move || {
        let mut batcher = Batcher {
            read_back: None,
            sender: send::Sender::default(),
            checkpoint,
            context,
            status,
            signer: None,
            blobs: None,
        };
        batcher.run();
    })?;
    Ok(())
}

struct Batcher {
    context: Context,
    status: Arc<BatcherStatus>,
    /// Opened at the first poll that sends, and again after it failed to
    /// open: an HSM that is down stops posting, not the node.
    signer: Option<Arc<dyn Signer>>,
    /// The blob payloads sent (data dir), opened at the first poll.
    blobs: Option<blob_store::BlobStore>,
    checkpoint: PathBuf,
    /// Opened at the first poll that reaches the L1.
    read_back: Option<read_back::ReadBack>,
    sender: send::Sender,
}

impl Batcher {
    fn run(&mut self) {
        let interval = Duration::from_millis(self.context.config.poll_interval_ms);
        let health = self.context.shared.health.clone();
        let mut failing = false;
        while !health.shutting_down() {
            let started = Instant::now();
            match self.guarded_poll() {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("the batcher posts again");
                    health.hold(Hold::Batcher, None);
                }
                Ok(()) => {}
                Err(error) => {
                    if !failing {
                        tracing::warn!(%error, "the batcher cannot post; blocks go on while the window allows");
                    }
                    failing = true;
                    health.hold(Hold::Batcher, Some(format!("batcher: {error}")));
                }
            }
            while started.elapsed() < interval && !health.shutting_down() {
                thread::sleep(Duration::from_millis(20).min(interval));
            }
        }
    }

    /// A poll; a panic in it (a bug) is an error like any other, and the
    /// next poll reads back and sends again from the checkpoint, since the
    /// state it left may be half changed.
    fn guarded_poll(&mut self) -> Result<(), BatcherError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.poll())).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|text| (*text).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(what, "the batcher panicked: starting again from its checkpoint");
            self.read_back = None;
            self.sender = send::Sender::default();
            Err(BatcherError::Panicked(what))
        })
    }

    fn poll(&mut self) -> Result<(), BatcherError> {
        let l1_head = self.context.rpc.head_number()?;
        // The window first, from the posted head last known: a poll that
        // fails further on still raises the alarm.
        let known = self.status.heads().map_or(self.context.rollup.genesis.l2.number, |h| h.posted.l2);
        self.check_window(known, l1_head);
        if self.read_back.is_none() {
            let got = self.context.rpc.chain_id()?;
            if got != self.context.rollup.l1_chain_id {
                return Err(BatcherError::WrongL1 { got, expected: self.context.rollup.l1_chain_id });
            }
            let data_dir = &self.context.shared.config.node.data_dir;
            let blobs =
                blob_store::BlobStore::open(data_dir).map_err(|e| BatcherError::Blob(format!("the store: {e}")))?;
            self.blobs = Some(blobs);
            self.read_back = Some(read_back::ReadBack::open(&self.context, &self.checkpoint)?);
        }
        let read_back = self.read_back.as_mut().expect("opened above");
        let blobs = self.blobs.as_mut().expect("opened with the read-back");
        read_back.advance(&self.context, blobs, l1_head)?;
        let finalized_l1 = self.context.rpc.finalized_number()?;
        let heads = read_back.heads(l1_head, finalized_l1, &self.context.config);
        read_back.prune_and_checkpoint(heads.finalized, &self.checkpoint)?;
        let posted = read_back.posted_head();
        let caught_up = read_back.caught_up(l1_head);
        self.publish(&heads);
        if self.check_window(posted.l2, l1_head) == Window::Closed {
            // Verifiers derive deposit-only blocks from there: what tephra
            // would post is not the chain any more.
            return Ok(());
        }
        if !caught_up {
            // What is on L1 beyond the blocks read is not known yet: sending
            // now could post blocks again that are there.
            return Ok(());
        }
        let signer = match &self.signer {
            Some(signer) => signer.clone(),
            None => {
                let shared = &self.context.shared;
                let data = crate::boot::DataDir(shared.config.node.data_dir.clone());
                let signer = crate::boot::load_batcher_signer(&shared.config, &data, &self.context.rollup)
                    .map_err(|e| BatcherError::Key(e.to_string()))?;
                tracing::info!(address = %signer.address(), "the batcher key is open");
                self.signer.insert(signer).clone()
            }
        };
        let blobs = self.blobs.as_mut().expect("opened with the read-back");
        self.sender.step(&self.context, (&*signer, blobs), posted, l1_head)
    }

    fn publish(&self, heads: &Heads) {
        *self.status.heads.write().expect("batcher heads lock") = Some(*heads);
        let metrics = self.context.metrics();
        for (gauge, value) in [
            (&metrics.posted_head, heads.posted.l2),
            (&metrics.safe_head, heads.safe.l2),
            (&metrics.finalized_head, heads.finalized.l2),
        ] {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }

    /// The alarm: the oldest block not posted must land on L1 before its
    /// origin's sequencing window closes, or verifiers replace it (and
    /// every block after it) with deposit-only blocks. Within the safety
    /// margin of that, no block opens until it is posted: the sequencer
    /// reads `window_hold` and shows the reason on /ready (`Hold::L1`).
    fn check_window(&self, posted: u64, l1_head: u64) -> Window {
        let next = posted + 1;
        let (origin, head) = {
            let view = self.context.shared.view.read().expect("view lock");
            (view.op_of(next).map(|op| op.origin.number), view.head().header.number)
        };
        let margin = self.context.config.sub_safety_margin_l1_blocks;
        let (window, reason) = match origin.map(|o| (o, o + self.context.rollup.seq_window_size)) {
            None if next <= head => (
                Window::Alarm,
                Some(format!(
                    "batch window: block {next} is not kept by the chain view (rpc.history_blocks_max): \
                     it cannot be posted; no new block"
                )),
            ),
            None => (Window::Open, None),
            Some((origin, closes)) if l1_head > closes => (
                Window::Closed,
                Some(format!(
                    "batch window closed: block {next} (L1 origin {origin}) was not on L1 by L1 block {closes}: \
                     verifiers derive deposit-only blocks from there; tephra holds (docs/operators.md)"
                )),
            ),
            Some((origin, closes)) if l1_head + margin >= closes => (
                Window::Alarm,
                Some(format!(
                    "batch window: block {next} (L1 origin {origin}) must be on L1 by L1 block {closes} and the L1 \
                     is at {l1_head}: no new block until it is posted"
                )),
            ),
            Some(_) => (Window::Open, None),
        };
        let mut held = self.status.window.write().expect("batcher window lock");
        if *held != reason {
            match &reason {
                Some(reason) => tracing::error!(reason, "sequencing window alarm"),
                None => tracing::info!("the sequencing window alarm is over"),
            }
            self.context.metrics().window_alarm.set(i64::from(reason.is_some()));
            *held = reason;
        }
        window
    }
}

/// Where the oldest block not posted stands against its sequencing window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Window {
    Open,
    /// Within the safety margin of its end, or the block cannot be posted.
    Alarm,
    /// Past its end: verifiers replaced it.
    Closed,
}

/// Blocks `numbers` of the view as batches hold them, with their hashes,
/// up to `bytes_max` of transactions (at least one block); the first
/// number not kept as the error. Under the view's read lock only the
/// transactions are copied (their bytes are shared); they are encoded after
/// it is let go, so that the sequencer's writes do not wait on it.
fn batch_blocks(
    context: &Context,
    numbers: std::ops::RangeInclusive<u64>,
    bytes_max: usize,
) -> Result<Vec<(BatchBlock, B256)>, u64> {
    let copied = {
        let view = context.shared.view.read().expect("view lock");
        let mut copied = Vec::new();
        let mut bytes = 0;
        for number in numbers {
            if !copied.is_empty() && bytes >= bytes_max {
                break;
            }
            let block = copy_block(&view, number).ok_or(number)?;
            bytes += block.1.iter().map(alloy_eips::Encodable2718::encode_2718_len).sum::<usize>();
            copied.push(block);
        }
        copied
    };
    Ok(copied
        .into_iter()
        .map(|(mut batch, txs, hash)| {
            batch.txs = txs.iter().map(|tx| Bytes::from(alloy_eips::Encodable2718::encoded_2718(tx))).collect();
            (batch, hash)
        })
        .collect())
}

/// Block `number` of the view: its batch fields (no transactions yet), its
/// user transactions (deposits left out) and its hash.
fn copy_block(view: &ChainView, number: u64) -> Option<(BatchBlock, Vec<OpTxEnvelope>, B256)> {
    let block: &StoredBlock = view.block(number)?;
    let op = block.op.as_ref()?;
    let txs = block
        .txs
        .iter()
        .filter(|tx| !matches!(tx.envelope, OpTxEnvelope::Deposit(_)))
        .map(|tx| tx.envelope.clone())
        .collect();
    let batch = BatchBlock {
        timestamp: block.header.timestamp,
        parent_hash: block.header.parent_hash,
        origin_number: op.origin.number,
        origin_hash: op.origin.hash,
        sequence_number: op.sequence_number,
        txs: Vec::new(),
    };
    Some((batch, txs, block.hash))
}
