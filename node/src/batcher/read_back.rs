//! The batcher's own batches read back from L1, as a verifier reads them:
//! canonical L1 blocks in order, the batcher's transactions to the inbox,
//! their frames assembled by Holocene's rules, each span batch compared
//! with tephra's blocks. A run of blocks counts as posted, in the L1 block
//! holding its channel's last frame, only if it is exactly tephra's and
//! starts at most one block after the posted head; anything else ends that
//! channel, as a verifier drops the rest of it.
//!
//! ```text
//!  L1 block n (parent = the last read?) ─> txs to the inbox from the batcher ─> frames
//!    ─> ChannelAssembler ─> channel ─> span batches ─> blocks first..=last
//!         last <= posted: past; first > posted + 1: a gap; not tephra's blocks: refused
//!         otherwise posted = last, landed in n
//!  the newest L1 block read no longer canonical ─> back to the newest still canonical,
//!    the runs that landed above it forgotten, reading again from the newest run's L1 block
//! ```
//!
//! Limits: `READ_L1_BLOCKS_KEPT` L1 blocks remembered for reorgs (deeper
//! reorgs read again from the checkpoint); `batcher.read_back_l1_blocks_per_poll_max`
//! L1 blocks read per poll; runs kept back to the newest finalized one.

use std::{collections::VecDeque, fs, path::Path};

use alloy_primitives::B256;
use tephra_batcher::{BatchBlock, ChannelAssembler, RawSpanBatch, parse_frames, span_batches_of};
use tephra_l1::{L1BatcherRpc, L1Rpc};

use super::{BatcherError, Context, batch_blocks, blob_store::BlobStore};
use crate::{config::BatcherConfig, metrics::DaLabel};

/// The read-back's restart point, in the data dir: the newest run of
/// blocks whose batch is in a finalized L1 block.
pub const CHECKPOINT_FILE: &str = "batcher.checkpoint";

/// L1 blocks remembered to find a reorg's fork point: twice the L1
/// follower's window, deeper than any reorg it takes.
const READ_L1_BLOCKS_KEPT: usize = 2 * tephra_l1::follower::WINDOW_BLOCKS_MAX;

/// A run of blocks read back from L1: its newest block and the L1 block
/// it landed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Posted {
    pub l2: u64,
    pub l2_hash: B256,
    pub l1: u64,
    pub l1_hash: B256,
}

/// The heads the read-back tells.
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub posted: Posted,
    pub safe: Posted,
    pub finalized: Posted,
}

/// See the module comment.
pub struct ReadBack {
    assembler: ChannelAssembler,
    /// L1 blocks read, oldest first.
    read: VecDeque<(u64, B256)>,
    next_l1: u64,
    /// Runs posted since `floor`, oldest first.
    runs: VecDeque<Posted>,
    /// Where reading started: the checkpoint or the rollup's genesis.
    floor: Posted,
}

impl ReadBack {
    /// Starts at the checkpoint, if it is still on the L1 and on tephra's
    /// chain, or at the rollup's genesis.
    pub fn open(context: &Context, checkpoint: &Path) -> Result<Self, BatcherError> {
        let genesis = &context.rollup.genesis;
        let mut floor =
            Posted { l2: genesis.l2.number, l2_hash: genesis.l2.hash, l1: genesis.l1.number, l1_hash: genesis.l1.hash };
        if let Some(saved) = read_checkpoint(checkpoint)? {
            let on_l1 = context.rpc.block_by_number(saved.l1)?.is_some_and(|b| b.hash == saved.l1_hash);
            // A block the view no longer keeps cannot be compared: the
            // checkpoint was written from a read-back that compared it.
            let on_l2 =
                context.shared.view.read().expect("view lock").block(saved.l2).is_none_or(|b| b.hash == saved.l2_hash);
            if on_l1 && on_l2 {
                floor = saved;
            } else {
                tracing::warn!(
                    ?saved,
                    on_l1,
                    on_l2,
                    "the batcher checkpoint is not on the chains: reading back from genesis"
                );
            }
        }
        let timeout = tephra_batcher::CHANNEL_TIMEOUT_GRANITE_L1_BLOCKS;
        tracing::info!(l2 = floor.l2, l1 = floor.l1, "batcher: reading back from L1");
        Ok(Self {
            assembler: ChannelAssembler::new(timeout),
            read: VecDeque::new(),
            next_l1: floor.l1,
            runs: VecDeque::new(),
            floor,
        })
    }

    /// The newest run posted.
    pub fn posted_head(&self) -> Posted {
        *self.runs.back().unwrap_or(&self.floor)
    }

    /// Whether every L1 block up to `l1_head` is read.
    pub fn caught_up(&self, l1_head: u64) -> bool {
        self.next_l1 > l1_head
    }

    /// Reads the L1 up to `l1_head` (at most the per-poll bound).
    pub fn advance(&mut self, context: &Context, blobs: &BlobStore, l1_head: u64) -> Result<(), BatcherError> {
        if let Some(&(number, hash)) = self.read.back()
            && context.rpc.block_by_number(number)?.is_none_or(|b| b.hash != hash)
        {
            self.rewind(context)?;
        }
        let last = l1_head.min(self.next_l1 + context.config.read_back_l1_blocks_per_poll_max - 1);
        while self.next_l1 <= last {
            let number = self.next_l1;
            let Some((block, txs)) = context.rpc.block_with_txs(number)? else { break };
            if let Some(&(parent, parent_hash)) = self.read.back()
                && parent + 1 == number
                && block.parent_hash != parent_hash
            {
                // Reorged while reading: the next poll finds the fork.
                return Ok(());
            }
            let ours = |tx: &&tephra_l1::L1Transaction| {
                tx.to == Some(context.rollup.batch_inbox_address) && tx.from == context.batcher
            };
            for tx in txs.iter().filter(ours) {
                context.metrics().fees_gwei.inc_by(tx.gas.saturating_mul(tx.effective_gas_price_wei) / 1_000_000_000);
                for payload in payloads_of(context, blobs, tx) {
                    let Ok(frames) = parse_frames(&payload) else {
                        tracing::warn!(tx = %tx.hash, "a batcher payload whose frames do not parse: verifiers skip it");
                        continue;
                    };
                    for frame in &frames {
                        if let Some(channel) = self.assembler.add(number, frame) {
                            self.read_channel(context, number, block.hash, &channel[..]);
                        }
                    }
                }
            }
            self.read.push_back((number, block.hash));
            if self.read.len() > READ_L1_BLOCKS_KEPT {
                self.read.pop_front();
            }
            self.next_l1 = number + 1;
        }
        Ok(())
    }

    /// The runs of a completed channel, in order, posted while each is
    /// tephra's next.
    fn read_channel(&mut self, context: &Context, l1: u64, l1_hash: B256, channel: &[u8]) {
        let (spans, error) = span_batches_of(channel);
        for span in &spans {
            match self.read_span(context, l1, l1_hash, span) {
                Ok(()) => {}
                Err(reason) => {
                    tracing::warn!(
                        l1,
                        reason,
                        "a batch read back from L1 is not tephra's next: the rest of its channel is dropped"
                    );
                    return;
                }
            }
        }
        if let Some(error) = error {
            tracing::warn!(l1, %error, "a channel read back from L1 does not read to its end");
        }
    }

    fn read_span(&mut self, context: &Context, l1: u64, l1_hash: B256, span: &RawSpanBatch) -> Result<(), String> {
        let posted = self.posted_head();
        let first_time = context.rollup.genesis.l2_time.saturating_add(span.rel_timestamp);
        let first = context
            .number_at(first_time)
            .ok_or_else(|| format!("a span batch at time {first_time}, off the block times"))?;
        let count = span.block_tx_counts.len() as u64;
        let last = first
            .checked_add(count)
            .and_then(|end| end.checked_sub(1))
            .ok_or("a span batch of no blocks, or past u64")?;
        if last <= posted.l2 {
            return Ok(());
        }
        if first > posted.l2 + 1 {
            return Err(format!("blocks {first}..={last} leave a gap after the posted block {}", posted.l2));
        }
        let head = context.shared.view.read().expect("view lock").head().header.number;
        if last > head {
            return Err(format!("blocks {first}..={last} run past tephra's head {head}"));
        }
        let blocks = batch_blocks(context, first..=last, usize::MAX)
            .map_err(|n| format!("block {n} is not kept by the chain view"))?;
        let window_closes = blocks[0].0.origin_number + context.rollup.seq_window_size;
        if l1 > window_closes {
            return Err(format!(
                "blocks {first}..={last} landed in L1 block {l1}, past their sequencing window ({window_closes})"
            ));
        }
        let ours: Vec<BatchBlock> = blocks.iter().map(|(block, _)| block.clone()).collect();
        let expected = RawSpanBatch::from_blocks(context.rollup.genesis.l2_time, &ours).map_err(|e| e.to_string())?;
        if &expected != span {
            return Err(format!("blocks {first}..={last} are not tephra's blocks"));
        }
        let metrics = context.metrics();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        for (block, _) in blocks.iter().filter(|(b, _)| context.number_at(b.timestamp).is_some_and(|n| n > posted.l2)) {
            metrics.inclusion_delay_ms.observe(now_ms.saturating_sub(block.timestamp * 1000) as f64);
            metrics.user_txs_posted.inc_by(block.txs.len() as u64);
        }
        metrics.blocks_posted.inc_by(last - posted.l2);
        let l2_hash = blocks.last().expect("at least one block").1;
        self.runs.push_back(Posted { l2: last, l2_hash, l1, l1_hash });
        Ok(())
    }

    /// An L1 reorg: back to the newest L1 block read that is still
    /// canonical; the runs that landed above it are not posted any more.
    fn rewind(&mut self, context: &Context) -> Result<(), BatcherError> {
        while let Some(&(number, hash)) = self.read.back() {
            if context.rpc.block_by_number(number)?.is_some_and(|b| b.hash == hash) {
                break;
            }
            self.read.pop_back();
        }
        let fork = self.read.back().map(|(number, _)| *number);
        let dropped = self.runs.iter().filter(|run| fork.is_none_or(|f| run.l1 > f)).count();
        self.runs.truncate(self.runs.len() - dropped);
        // Read again from the L1 block of the newest run kept: the next
        // channel may start in it.
        let from = self.posted_head().l1;
        self.read.retain(|(number, _)| *number < from);
        self.next_l1 = from;
        self.assembler.reset();
        tracing::warn!(fork, runs_dropped = dropped, read_from = from, "an L1 reorg: the batcher reads back again");
        Ok(())
    }

    /// The posted, safe and finalized heads at `l1_head`.
    pub fn heads(&self, l1_head: u64, finalized_l1: Option<u64>, config: &BatcherConfig) -> Heads {
        let newest = |deep_enough: &dyn Fn(&Posted) -> bool| {
            *self.runs.iter().rev().find(|run| deep_enough(run)).unwrap_or(&self.floor)
        };
        Heads {
            posted: self.posted_head(),
            safe: newest(&|run| run.l1 + config.safe_depth_l1_blocks <= l1_head),
            finalized: newest(&|run| finalized_l1.is_some_and(|f| run.l1 <= f)),
        }
    }

    /// Forgets the runs below the newest finalized one, which becomes the
    /// floor and the checkpoint a restart reads back from.
    pub fn prune_and_checkpoint(&mut self, finalized: Posted, path: &Path) -> Result<(), BatcherError> {
        if finalized == self.floor {
            return Ok(());
        }
        while self.runs.front().is_some_and(|run| run.l2 <= finalized.l2) {
            self.runs.pop_front();
        }
        self.floor = finalized;
        write_checkpoint(path, &finalized)
    }
}

/// A batcher transaction's payloads, as a verifier reads them: its calldata,
/// or each of its blobs (verifiers ignore a blob transaction's calldata).
/// A blob not in the store is missing here, and its blocks are sent again.
fn payloads_of(context: &Context, blobs: &BlobStore, tx: &tephra_l1::L1Transaction) -> Vec<Vec<u8>> {
    let metrics = context.metrics();
    if tx.blob_versioned_hashes.is_empty() {
        let calldata = DaLabel { kind: "calldata" };
        metrics.txs_posted.get_or_create(&calldata).inc();
        metrics.bytes_posted.get_or_create(&calldata).inc_by(tx.input.len() as u64);
        return vec![tx.input.to_vec()];
    }
    let blob = DaLabel { kind: "blob" };
    metrics.txs_posted.get_or_create(&blob).inc();
    tx.blob_versioned_hashes
        .iter()
        .filter_map(|hash| {
            let payload = blobs.get(hash);
            if payload.is_none() {
                tracing::warn!(tx = %tx.hash, blob = %hash, "a blob of the batcher's not in its store: its blocks are sent again");
            }
            payload
        })
        .inspect(|payload| {
            metrics.bytes_posted.get_or_create(&blob).inc_by(payload.len() as u64);
        })
        .collect()
}

fn checkpoint_error(path: &Path, reason: impl ToString) -> BatcherError {
    BatcherError::Checkpoint { path: path.to_path_buf(), reason: reason.to_string() }
}

/// `l2 l2_hash l1 l1_hash`, one line.
fn write_checkpoint(path: &Path, posted: &Posted) -> Result<(), BatcherError> {
    let text = format!("{} {} {} {}\n", posted.l2, posted.l2_hash, posted.l1, posted.l1_hash);
    tephra_types::durable::replace_file(path, text.as_bytes()).map_err(|e| checkpoint_error(path, e))
}

fn read_checkpoint(path: &Path) -> Result<Option<Posted>, BatcherError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(checkpoint_error(path, e)),
    };
    let fields: Vec<&str> = text.split_whitespace().collect();
    let parsed = match fields[..] {
        [l2, l2_hash, l1, l1_hash] => (|| {
            Some(Posted {
                l2: l2.parse().ok()?,
                l2_hash: l2_hash.parse().ok()?,
                l1: l1.parse().ok()?,
                l1_hash: l1_hash.parse().ok()?,
            })
        })(),
        _ => None,
    };
    parsed.map(Some).ok_or_else(|| checkpoint_error(path, "not `l2 l2_hash l1 l1_hash`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_survives_a_restart_and_a_damaged_one_is_refused() {
        let dir = tephra_testkit::fresh_dir("batcher-checkpoint");
        let path = dir.join(CHECKPOINT_FILE);
        assert!(read_checkpoint(&path).unwrap().is_none());
        let posted = Posted { l2: 42, l2_hash: B256::repeat_byte(1), l1: 7, l1_hash: B256::repeat_byte(2) };
        write_checkpoint(&path, &posted).unwrap();
        assert_eq!(read_checkpoint(&path).unwrap(), Some(posted));
        fs::write(&path, "42 nonsense").unwrap();
        assert!(matches!(read_checkpoint(&path), Err(BatcherError::Checkpoint { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }
}
