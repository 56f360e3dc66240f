//! Sending: the sealed blocks after those already taken go into the open
//! channel a run at a time; a closed channel's frames go out as calldata
//! transactions with consecutive nonces, at most `batcher.txs_in_flight_max`
//! not yet included; what is stuck is sent again with raised fees.
//!
//! ```text
//!  view's sealed blocks (taken+1..=head) ─copied under the read lock─> ChannelOut::add_blocks (no lock)
//!  close: compressed >= target, open batcher.channel_duration_max_l1_blocks, or the window's margin
//!  queue of closed channels ─> frame i ─> nonce ─> calldata_tx, or blob (kept in BlobStore) + blob_tx
//!             ─> sign ─> eth_sendRawTransaction
//!  each poll: L1 nonce (latest) ─> what is included; went back: sent again at once
//!             not included after resubmit_timeout: fees +10%, same nonce, same frame
//!             the L1's next nonce below all of ours for resubmit_timeout: again from it
//!             all included, not read back after NOT_READ_BACK_L1_BLOCKS, or the first included and
//!             the last not within the channel timeout less the margin: the channel is given up
//!  start again (a rewind, a channel given up, a nonce used elsewhere): from the posted head,
//!             a new channel id, nonces from the L1
//! ```

use std::{collections::VecDeque, io::Read, time::Instant};

use alloy_primitives::{B256, Bytes};
use tephra_batcher::{
    BatchBlock, Blob, CHANNEL_TIMEOUT_GRANITE_L1_BLOCKS, ChannelId, ChannelOut, ChannelOutError, ClosedChannel,
    FRAME_OVERHEAD_BYTES, Fees, blob_tx, calldata_tx, payload_of, sidecar_of, signed_blob_tx, signed_tx,
};
use tephra_hsm::{L1Tx, Payload, Signer};
use tephra_l1::{L1BatcherRpc, L1Rpc, SendRefusal};

use super::{BatcherError, Context, Posted, batch_blocks, blob_store::BlobStore};
use crate::config::DataAvailability;

/// Blocks in one span batch at most: a channel's size is checked after each run.
const RUN_BLOCKS_MAX: u64 = 64;

/// Closed channels waiting to be sent at most.
const QUEUED_CHANNELS_MAX: usize = 8;

/// L1 blocks after all of a channel's transactions are included within
/// which it must be read back; past them verifiers dropped it.
const NOT_READ_BACK_L1_BLOCKS: u64 = 4;

/// Doubled fees tried at once for one send the pool finds underpriced (a
/// transaction of an earlier run pooled at that nonce): 256 times the fee.
const UNDERPRICED_RETRIES_MAX: usize = 8;

#[derive(Debug)]
struct Open {
    channel: ChannelOut,
    opened_l1: u64,
}

#[derive(Debug)]
struct Outgoing {
    channel: ClosedChannel,
    txs: Vec<Option<Sent>>,
    /// The L1 head when all its transactions were first seen included.
    included_at_l1: Option<u64>,
    /// The L1 head when its first transaction was first seen included.
    first_included_at_l1: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct Sent {
    nonce: u64,
    fees: Fees,
    /// None: to be sent again at once (an L1 reorg took it out).
    sent_at: Option<Instant>,
}

/// See the module comment.
#[derive(Debug, Default)]
pub struct Sender {
    open: Option<Open>,
    queue: VecDeque<Outgoing>,
    /// The newest block taken into a channel, and its hash.
    taken: Option<(u64, B256)>,
    next_nonce: Option<u64>,
    /// The L1's `latest` nonce of the batcher, as last read.
    included_nonce: u64,
    /// Since when the L1's next nonce is below every nonce this run sent:
    /// transactions of an earlier run (or ones an L1 reorg dropped) hold
    /// ours back.
    gap_since: Option<Instant>,
}

impl Sender {
    /// One turn; see the module comment.
    pub fn step(
        &mut self,
        context: &Context,
        (signer, blobs): (&dyn Signer, &mut BlobStore),
        posted: Posted,
        l1_head: u64,
    ) -> Result<(), BatcherError> {
        while self.queue.front().is_some_and(|out| out.channel.last_block <= posted.l2) {
            self.queue.pop_front();
        }
        self.start_again_if_stale(context, posted);
        let included = context.rpc.nonce(context.batcher, false)?;
        if included < self.included_nonce {
            // An L1 reorg took included transactions out: sent again now.
            for sent in self.sent_mut().filter(|sent| sent.nonce >= included) {
                sent.sent_at = None;
            }
        }
        self.included_nonce = included;
        if self.nonce_gap(included, context) {
            context.metrics().channels_invalidated.inc_by(self.queue.len() as u64);
            tracing::warn!(included, "no transaction of ours at the L1's next nonce: sending again from it");
            self.start_again(posted);
            self.next_nonce = Some(included);
        }
        if self.given_up(l1_head, posted, context.config.sub_safety_margin_l1_blocks) {
            context.metrics().channels_invalidated.inc();
            tracing::warn!(
                posted = posted.l2,
                "a channel is included on L1 but not read back, or not whole within the channel timeout: sent again in a new channel"
            );
            self.start_again(posted);
        }
        self.fill(context, posted, l1_head)?;
        self.send(context, (signer, blobs), l1_head)?;
        let metrics = context.metrics();
        let pending: usize = self.open.iter().map(|o| o.channel.compressed_bytes()).sum::<usize>()
            + self.queue.iter().map(|out| out.channel.compressed_bytes).sum::<usize>();
        metrics.pending_bytes.set(i64::try_from(pending).unwrap_or(i64::MAX));
        metrics.channels_open.set(i64::try_from(self.queue.len() + usize::from(self.open.is_some())).unwrap_or(0));
        Ok(())
    }

    /// The next nonce to send at: the L1's pending nonce after a (re)start.
    fn nonce_to_send(&mut self, context: &Context) -> Result<u64, BatcherError> {
        match self.next_nonce {
            Some(nonce) => Ok(nonce),
            None => {
                let pending = context.rpc.nonce(context.batcher, true)?;
                self.next_nonce = Some(pending);
                Ok(pending)
            }
        }
    }

    fn sent_mut(&mut self) -> impl Iterator<Item = &mut Sent> {
        self.queue.iter_mut().flat_map(|out| out.txs.iter_mut().flatten())
    }

    /// The chain under the taken blocks changed (an L1 reorg rebuilt
    /// them), or the posted head passed them: start again from it.
    fn start_again_if_stale(&mut self, context: &Context, posted: Posted) {
        let Some((taken, hash)) = self.taken else {
            self.taken = Some((posted.l2, posted.l2_hash));
            return;
        };
        let rewound = context.shared.view.read().expect("view lock").block(taken).is_none_or(|b| b.hash != hash);
        if rewound || taken < posted.l2 {
            if rewound {
                context.metrics().channels_invalidated.inc_by(self.queue.len() as u64 + u64::from(self.open.is_some()));
                tracing::info!(
                    taken,
                    posted = posted.l2,
                    "the blocks taken into channels were rewound: batching again"
                );
            }
            self.start_again(posted);
        }
    }

    fn start_again(&mut self, posted: Posted) {
        self.open = None;
        self.queue.clear();
        self.taken = Some((posted.l2, posted.l2_hash));
        // Nonces from the L1 again: the channels given up may hold some.
        self.next_nonce = None;
        self.gap_since = None;
    }

    /// Whether the L1's next nonce has stayed below every nonce this run
    /// sent for a resubmission timeout: what would fill the gap is not
    /// ours to send again (an earlier run's, pooled and stuck, or taken out
    /// by an L1 reorg), so ours never land.
    fn nonce_gap(&mut self, included: u64, context: &Context) -> bool {
        let lowest = self.queue.iter().flat_map(|out| out.txs.iter().flatten()).map(|sent| sent.nonce).min();
        if lowest.is_none_or(|lowest| included >= lowest) {
            self.gap_since = None;
            return false;
        }
        let since = *self.gap_since.get_or_insert_with(Instant::now);
        since.elapsed() >= std::time::Duration::from_millis(context.config.resubmit_timeout_ms)
    }

    /// A channel all of whose transactions are included, and which the
    /// read-back has not found within `NOT_READ_BACK_L1_BLOCKS`.
    ///
    /// Or one whose first transaction is included and whose last is not
    /// within the channel timeout (less the safety margin) after: verifiers
    /// drop a channel not complete within it.
    fn given_up(&mut self, l1_head: u64, posted: Posted, margin: u64) -> bool {
        let included_nonce = self.included_nonce;
        for out in &mut self.queue {
            let included = |tx: &Option<Sent>| tx.is_some_and(|sent| sent.nonce < included_nonce);
            if out.txs.iter().any(included) {
                let first = *out.first_included_at_l1.get_or_insert(l1_head);
                if !out.txs.iter().all(included) {
                    return l1_head + margin >= first + CHANNEL_TIMEOUT_GRANITE_L1_BLOCKS;
                }
            } else {
                return false;
            }
            let since = *out.included_at_l1.get_or_insert(l1_head);
            if l1_head >= since + NOT_READ_BACK_L1_BLOCKS && posted.l2 < out.channel.last_block {
                return true;
            }
        }
        false
    }

    /// The sealed blocks after those taken, into the open channel; closes
    /// it when it is full or has waited long enough.
    ///
    /// A run holds at most the channel's target in transaction bytes (at
    /// least one block): compressed, it cannot pass the target by more than
    /// a block. At most `QUEUED_CHANNELS_MAX` closed channels wait to be
    /// sent: while the L1 takes none, no more are made.
    fn fill(&mut self, context: &Context, posted: Posted, l1_head: u64) -> Result<(), BatcherError> {
        let config = &context.config;
        let target_bytes = config.channel_target_frames * (config.frame_size_max_bytes - FRAME_OVERHEAD_BYTES);
        while self.queue.len() < QUEUED_CHANNELS_MAX {
            let (taken, taken_hash) = self.taken.expect("set by start_again_if_stale");
            let Some(run) = Self::next_run(context, taken, target_bytes)? else { break };
            if run[0].0.parent_hash != taken_hash {
                // The chain was rewound under the blocks taken since the
                // turn began: nothing of it goes into a channel.
                tracing::info!(taken, "the chain changed under the blocks taken: batching again");
                self.start_again(posted);
                return Ok(());
            }
            let open = self.open.get_or_insert_with(|| Open {
                channel: ChannelOut::new(
                    channel_id(),
                    taken + 1,
                    context.rollup.genesis.l2_time,
                    config.compression_quality,
                ),
                opened_l1: l1_head,
            });
            let blocks: Vec<BatchBlock> = run.iter().map(|(block, _)| block.clone()).collect();
            match open.channel.add_blocks(taken + 1, &blocks) {
                Ok(()) => {}
                Err(ChannelOutError::ContentFull { .. }) if !open.channel.is_empty() => {
                    self.close(context)?;
                    continue;
                }
                Err(error) => return Err(error.into()),
            }
            let newest = run.last().expect("a run has blocks");
            self.taken = Some((taken + run.len() as u64, newest.1));
            if open.channel.compressed_bytes() >= target_bytes {
                self.close(context)?;
            }
        }
        if let Some(open) = &self.open {
            let duration = config.channel_duration_max_l1_blocks;
            let lasted = duration > 0 && l1_head >= open.opened_l1 + duration;
            let window = open.channel.oldest_origin().is_some_and(|origin| {
                l1_head + config.sub_safety_margin_l1_blocks >= origin + context.rollup.seq_window_size
            });
            if lasted || window {
                self.close(context)?;
            }
        }
        Ok(())
    }

    /// Up to `RUN_BLOCKS_MAX` sealed blocks after `taken` and about
    /// `bytes_max` of transactions, copied out of the view so that
    /// compressing them holds no lock.
    fn next_run(
        context: &Context,
        taken: u64,
        bytes_max: usize,
    ) -> Result<Option<Vec<(BatchBlock, B256)>>, BatcherError> {
        let head = context.shared.view.read().expect("view lock").head().header.number;
        if head <= taken {
            return Ok(None);
        }
        let run = batch_blocks(context, taken + 1..=head.min(taken + RUN_BLOCKS_MAX), bytes_max);
        run.map(Some).map_err(|number| BatcherError::NotKept { number })
    }

    fn close(&mut self, context: &Context) -> Result<(), BatcherError> {
        let Some(open) = self.open.take() else { return Ok(()) };
        let channel = open.channel.close(context.config.frame_size_max_bytes)?;
        tracing::debug!(
            first = channel.first_block,
            last = channel.last_block,
            frames = channel.frames.len(),
            bytes = channel.compressed_bytes,
            "channel closed"
        );
        let txs = vec![None; channel.frames.len()];
        self.queue.push_back(Outgoing { channel, txs, included_at_l1: None, first_included_at_l1: None });
        Ok(())
    }

    /// Sends what is due: new frames while fewer than
    /// `batcher.txs_in_flight_max` are pending, and stuck ones again.
    fn send(
        &mut self,
        context: &Context,
        (signer, blobs): (&dyn Signer, &mut BlobStore),
        l1_head: u64,
    ) -> Result<(), BatcherError> {
        let included = self.included_nonce;
        let mut in_flight =
            self.queue.iter().flat_map(|out| out.txs.iter().flatten()).filter(|s| s.nonce >= included).count();
        let mut fees_now = None;
        let resubmit_after = std::time::Duration::from_millis(context.config.resubmit_timeout_ms);
        for index in 0..self.queue.len() {
            for frame in 0..self.queue[index].txs.len() {
                let sent = self.queue[index].txs[frame];
                let (nonce, fees) = match sent {
                    Some(sent) if sent.nonce < included => continue,
                    Some(sent) if sent.sent_at.is_none_or(|at| at.elapsed() >= resubmit_after) => {
                        context.metrics().resubmissions.inc();
                        (sent.nonce, sent.fees.bumped(*quote(context, l1_head, &mut fees_now)?))
                    }
                    Some(_) => continue,
                    None if in_flight >= context.config.txs_in_flight_max => return Ok(()),
                    None => (self.nonce_to_send(context)?, *quote(context, l1_head, &mut fees_now)?),
                };
                let payload = Bytes::from(payload_of([&self.queue[index].channel.frames[frame]]));
                match send_one(context, (signer, &mut *blobs), nonce, payload, fees)? {
                    Some(fees) => {
                        if sent.is_none() {
                            self.next_nonce = Some(nonce + 1);
                            in_flight += 1;
                        }
                        self.queue[index].txs[frame] = Some(Sent { nonce, fees, sent_at: Some(Instant::now()) });
                    }
                    None if sent.is_some() => {
                        // Included meanwhile: the next poll's nonce says so.
                    }
                    None => {
                        // A nonce this run did not know was used: start
                        // again from the posted head with the L1's nonces.
                        tracing::warn!(nonce, "nonce too low: the batcher starts its channels again");
                        let posted = self.queue.front().map(|out| out.channel.first_block - 1);
                        self.restart_before(context, posted);
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// Starts again from the block before the oldest queued channel.
    fn restart_before(&mut self, context: &Context, newest_kept: Option<u64>) {
        let Some(number) = newest_kept else { return };
        let hash = context.shared.view.read().expect("view lock").block(number).map(|b| b.hash);
        context.metrics().channels_invalidated.inc_by(self.queue.len() as u64);
        match hash {
            Some(hash) => self.start_again(Posted { l2: number, l2_hash: hash, l1: 0, l1_hash: B256::ZERO }),
            None => self.taken = None,
        }
    }
}

/// The fees to pay now, read once per turn: with a blob fee when the
/// frames go in blobs.
fn quote<'a>(context: &Context, l1_head: u64, fees: &'a mut Option<Fees>) -> Result<&'a Fees, BatcherError> {
    if fees.is_none() {
        let latest = context.rpc.block_by_number(l1_head)?;
        let base_fee = latest.as_ref().map_or(0, |b| b.base_fee_per_gas);
        let tip = context.rpc.suggested_tip_wei()?;
        let mut quoted = Fees::suggested(u128::from(base_fee), u128::from(tip));
        if context.config.data_availability == DataAvailability::Blobs {
            let fraction = context.shared.config.l1.blob_base_fee_update_fraction;
            let blob_base_fee = latest.map_or(alloy_primitives::U256::from(1), |b| b.blob_base_fee(fraction));
            quoted = quoted.with_blob_base_fee(u128::try_from(blob_base_fee).unwrap_or(u128::MAX));
        }
        *fees = Some(quoted);
    }
    Ok(fees.as_ref().expect("set above"))
}

/// What carries a payload: its calldata, or its blob and sidecar.
enum Carrier {
    Calldata(Bytes),
    Blob { sidecar: alloy_eips::eip7594::BlobTransactionSidecarEip7594, hash: B256 },
}

impl Carrier {
    /// The carrier of `payload` under `context`'s data availability; a
    /// blob's payload is kept in `blobs` before anything is sent.
    fn of(context: &Context, blobs: &mut BlobStore, payload: Bytes) -> Result<Self, BatcherError> {
        if context.config.data_availability == DataAvailability::Calldata {
            return Ok(Carrier::Calldata(payload));
        }
        let blob = Blob::encode(&payload).map_err(|e| BatcherError::Blob(e.to_string()))?;
        let (sidecar, hashes) =
            sidecar_of(std::slice::from_ref(&blob)).map_err(|e| BatcherError::Blob(e.to_string()))?;
        blobs.put(hashes[0], &payload).map_err(|e| BatcherError::Blob(format!("keeping the blob: {e}")))?;
        Ok(Carrier::Blob { sidecar, hash: hashes[0] })
    }

    /// Signed at `nonce` with `fees`: its hash and raw bytes.
    fn signed(
        &self,
        context: &Context,
        signer: &dyn Signer,
        nonce: u64,
        fees: Fees,
    ) -> Result<(B256, Bytes), BatcherError> {
        let (chain_id, inbox) = (context.rollup.l1_chain_id, context.rollup.batch_inbox_address);
        Ok(match self {
            Carrier::Calldata(payload) => {
                let tx = calldata_tx(chain_id, nonce, inbox, payload.clone(), fees);
                let signature = signer.sign(&Payload::L1Transaction(L1Tx::Eip1559(&tx)))?;
                signed_tx(tx, &signature.0)
            }
            Carrier::Blob { sidecar, hash } => {
                let tx = blob_tx(chain_id, nonce, inbox, vec![*hash], fees);
                let signature = signer.sign(&Payload::L1Transaction(L1Tx::Eip4844(&tx)))?;
                signed_blob_tx(tx, sidecar.clone(), &signature.0)
            }
        })
    }
}

/// Signs and sends `payload` at `nonce`: the fees it went out with, or
/// None if the nonce is used already.
fn send_one(
    context: &Context,
    (signer, blobs): (&dyn Signer, &mut BlobStore),
    nonce: u64,
    payload: Bytes,
    mut fees: Fees,
) -> Result<Option<Fees>, BatcherError> {
    let carrier = Carrier::of(context, blobs, payload)?;
    for _ in 0..=UNDERPRICED_RETRIES_MAX {
        let (hash, raw) = carrier.signed(context, signer, nonce, fees)?;
        match context.rpc.send_raw(&raw) {
            Ok(_) | Err(Ok(SendRefusal::AlreadyKnown)) => {
                tracing::debug!(nonce, %hash, "batcher transaction sent");
                return Ok(Some(fees));
            }
            Err(Ok(SendRefusal::NonceTooLow)) => return Ok(None),
            // A pooled transaction at this nonce pays an unknown fee:
            // doubled until it is replaced (the guard's cap ends it).
            Err(Ok(SendRefusal::Underpriced)) => {
                let doubled = Fees {
                    max_fee_per_gas: fees.max_fee_per_gas.saturating_mul(2),
                    max_priority_fee_per_gas: fees.max_priority_fee_per_gas.saturating_mul(2),
                    max_fee_per_blob_gas: fees.max_fee_per_blob_gas.saturating_mul(2),
                };
                fees = fees.bumped(doubled);
            }
            Err(Ok(SendRefusal::InsufficientFunds)) => {
                let reason = format!("insufficient funds: fund the batcher address {}", context.batcher);
                return Err(BatcherError::Refused { nonce, reason });
            }
            Err(Ok(SendRefusal::Other(reason))) => return Err(BatcherError::Refused { nonce, reason }),
            Err(Err(error)) => return Err(error.into()),
        }
    }
    Err(BatcherError::Refused { nonce, reason: format!("underpriced after {UNDERPRICED_RETRIES_MAX} raises") })
}

/// 16 random bytes: a channel id is never reused.
fn channel_id() -> ChannelId {
    let mut id = [0u8; 16];
    if let Err(error) = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut id)) {
        // Without the kernel's randomness, the clock still makes ids that
        // do not repeat across channels of this process.
        tracing::warn!(%error, "no /dev/urandom for a channel id");
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        id = nanos.to_be_bytes();
    }
    id
}
