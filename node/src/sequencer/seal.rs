//! The seal: the open block's roots and header, logged and made durable (and
//! held by a standby in a sync pair) before it is published or signed; then
//! the next block opens. And the block signatures coming back from the
//! signing pipeline, logged before anyone can read them.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use alloy_primitives::{Address, Bytes, keccak256};
use tephra_batchlog::{ReceiptRecord, Record};
use tephra_exec::{BlockBuilder, BlockChoice, BlockParams, SealedBlock, StateDb, snapshot};

use super::{Sequencer, SequencerError};
use crate::{chain_view::ChainView, config::Config, health::Hold, op::OpHold, replay::open_record, view::StoredBlock};

impl Sequencer {
    /// Seals the open block, logs it, publishes it and opens the next one.
    pub(super) fn seal(&mut self) -> Result<(), SequencerError> {
        let started = Instant::now();
        let sealed = self.seal_and_log()?;
        // A standby holds the block before it is published or signed, so
        // that no successor ever signs another block at its height.
        self.replicate()?;
        let block = self.publish_and_open_next(sealed)?;
        self.shared.metrics.seal_time_us.observe(started.elapsed().as_micros() as f64);
        self.shared.metrics.blocks_sealed.inc();
        // Room is certain: sealing waited for it.
        let queued = self.signing.submit(block.header.number, block.hash, self.epoch);
        debug_assert!(queued.is_ok(), "sealing checks the signing backlog first");
        self.export_signing_lag();
        Ok(())
    }

    /// The state's roots from the hasher (no lock held while it finishes),
    /// then under the view's lock: the header, its Sealed record (and its
    /// Open record if no mini-block logged it), fsync.
    fn seal_and_log(&mut self) -> Result<SealedBlock, SequencerError> {
        let shared = self.shared.clone();
        // This thread is the state's only writer: nothing changes it between
        // the last diff and the seal.
        let last_diff = shared.view.write().expect("view lock").state_mut().take_diff();
        let roots = self.hasher().roots(last_diff);
        let mut view = shared.view.write().expect("view lock");
        let builder = self.builder.take().expect("a block is always open outside seal");
        if !self.open_logged {
            // An OP Stack block logs its Open record when it opens.
            self.log.append(&Record::Open(open_record(builder.params(), None)))?;
        }
        let sealed = builder.seal_with(view.state_mut(), roots);
        let receipts = view
            .open_block()
            .txs
            .iter()
            .map(|tx| ReceiptRecord { deposit_nonce: tx.deposit.map(|d| d.nonce), ..ReceiptRecord::from(&tx.receipt) })
            .collect();
        let header_rlp = Bytes::from(alloy_rlp::encode(&sealed.header));
        self.log.append(&Record::Sealed { number: sealed.header.number, header_rlp, receipts })?;
        self.commit_timed()?;
        Ok(sealed)
    }

    /// Under the view's lock: the block published (every
    /// `snapshot_interval_blocks` a snapshot of the state after it), and the
    /// next block opened on it.
    fn publish_and_open_next(&mut self, sealed: SealedBlock) -> Result<Arc<StoredBlock>, SequencerError> {
        let shared = self.shared.clone();
        let mut view = shared.view.write().expect("view lock");
        let SealedBlock { header, hash, transactions, changes, .. } = sealed;
        self.hasher().free(transactions);
        let block = view.seal(header, hash, changes);
        if block.header.number.is_multiple_of(shared.config.block.snapshot_interval_blocks) {
            // Before the next block's system calls touch the state.
            write_snapshot(view.state(), &block, &self.snapshot_path);
        }
        self.open_next_in(&mut view)?;
        Ok(block)
    }

    /// Opens the block after the head: at once on an Ethereum-mode chain;
    /// on an OP Stack chain once its L1 origin may be taken, logging its
    /// Open record (with its deposits) durably before the view shows them.
    /// Whether a block is open.
    pub(super) fn open_next(&mut self) -> Result<bool, SequencerError> {
        let shared = self.shared.clone();
        let mut view = shared.view.write().expect("view lock");
        self.open_next_in(&mut view)
    }

    fn open_next_in(&mut self, view: &mut ChainView) -> Result<bool, SequencerError> {
        let shared = self.shared.clone();
        let head = view.head().clone();
        let Some(op) = &shared.op else {
            let choice = block_choice(&head, &shared.config, self.beneficiary, self.epoch);
            let params = BlockParams::child_of(&shared.chain, &head.header, choice)?;
            self.builder = Some(BlockBuilder::open(params.clone(), view.state_mut()));
            view.open(params, None);
            self.opened(false, false);
            return Ok(true);
        };
        let window = shared.batcher.as_ref().and_then(|b| b.window_hold()).map(OpHold::BatchWindow);
        let open = match window.map_or_else(|| op.next_block(&shared.chain, &head), Err) {
            Ok(open) => open,
            Err(hold) => {
                self.set_hold(Hold::L1, Some(hold.to_string()), "no L1 origin: the next block waits", "");
                // Reads see the block to come, with what its rules will be.
                if view.open_block().params.number != head.header.number + 1 {
                    let params = op.provisional_params(&shared.chain, &head).map_err(SequencerError::OpBlock)?;
                    view.open(params, None);
                }
                return Ok(false);
            }
        };
        self.set_hold(Hold::L1, None, "", "an L1 origin is known: blocks open again");
        let record = open.record();
        let (timestamp, deposits_only) = (open.params.timestamp, open.deposits_only);
        let builder = BlockBuilder::open_op(open.params.clone(), view.state_mut(), open.deposits)
            .map_err(|reject| SequencerError::OpBlock(format!("its deposits do not execute: {reject}")))?;
        self.log.append(&Record::Open(open_record(builder.params(), Some(record.clone()))))?;
        self.log.commit()?;
        let info = crate::op::op_block_info(&shared.chain, timestamp, &record, builder.l1_block_info().cloned());
        let deposits = crate::replay::stored_deposits(builder.deposits());
        view.open(open.params, Some((info, deposits, builder.gas_used())));
        self.builder = Some(builder);
        self.opened(true, deposits_only);
        Ok(true)
    }

    fn opened(&mut self, open_logged: bool, deposits_only: bool) {
        self.open_logged = open_logged;
        // Past the sequencer drift a block takes deposits only: as if full.
        self.block_full = deposits_only;
        // Opening ran the block's system calls (and deposits).
        self.unhashed = true;
        self.block_deadline = seal_deadline(self.builder().params().timestamp);
    }

    /// Logs the signatures the signing pipeline has made, durably, before
    /// the view shows them.
    pub(super) fn collect_signatures(&mut self) -> Result<(), SequencerError> {
        let signed = self.signing.collect();
        if signed.is_empty() {
            return Ok(());
        }
        for block in &signed {
            let record = Record::Signed { number: block.number, hash: block.hash, signature: block.signature.0 };
            self.log.append(&record)?;
        }
        // Durable before any client can read a signature.
        self.log.commit()?;
        let shared = self.shared.clone();
        let mut view = shared.view.write().expect("view lock");
        for block in signed {
            view.sign(block.number, block.hash, block.signature);
            let metrics = &self.shared.metrics;
            metrics.block_sign_time_us.observe(block.sign_time.as_micros() as f64);
            metrics.block_signed_latency_us.observe(block.queued.elapsed().as_micros() as f64);
        }
        drop(view);
        self.export_signing_lag();
        Ok(())
    }

    fn export_signing_lag(&self) {
        let lag = i64::try_from(self.signing.unsigned()).unwrap_or(i64::MAX);
        self.shared.metrics.signing_lag_blocks.set(lag);
    }
}

/// The choices for the child of `parent`, sealed by the leader of `epoch`.
pub fn block_choice(parent: &StoredBlock, config: &Config, beneficiary: Address, epoch: u64) -> BlockChoice {
    BlockChoice {
        timestamp: child_timestamp(parent.header.timestamp, config.block.block_time_s, unix_ms()),
        beneficiary,
        // Deterministic and public: replay needs it, and it is not a source of randomness.
        prevrandao: keccak256(parent.hash),
        extra_data: crate::replay::stamped_extra_data(epoch, config.block.extra_data.as_bytes()),
        op: None,
    }
}

/// The timestamp of a block opened at `now_ms` on a parent stamped
/// `parent_s`: `block_time_s` after the parent's, or the wall clock's next
/// second if that is later (after a pause, the first block does not stamp
/// the past). Whole seconds, strictly above the parent's; the block is
/// sealed when the wall clock reaches it (`seal_deadline`), never before.
pub fn child_timestamp(parent_s: u64, block_time_s: u64, now_ms: u64) -> u64 {
    parent_s.saturating_add(block_time_s).max(now_ms / 1000 + 1)
}

/// When a block stamped `timestamp_s` may be sealed: as the wall clock
/// reaches it. Kept as an `Instant` so that the wait does not follow the
/// wall clock if it is stepped while the block is open.
pub fn seal_deadline(timestamp_s: u64) -> Instant {
    let wait_ms = timestamp_s.saturating_mul(1000).saturating_sub(unix_ms());
    Instant::now() + Duration::from_millis(wait_ms)
}

/// Saves the state after `block` to `path`, the one before kept beside it
/// (a rewind may abandon the newest's block); a failure costs only replay
/// time.
pub fn write_snapshot(state: &StateDb, block: &StoredBlock, path: &std::path::Path) {
    let meta = snapshot::SnapshotMeta {
        block_number: block.header.number,
        block_hash: block.hash,
        state_root: block.header.state_root,
    };
    if path.exists()
        && let Err(error) = std::fs::rename(path, crate::boot::previous_snapshot(path))
    {
        tracing::warn!(%error, "the previous snapshot was not kept");
    }
    if let Err(error) = snapshot::save(state, &meta, path) {
        tracing::warn!(%error, "snapshot failed; restart will replay more of the log");
    }
}

pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::child_timestamp;

    #[test]
    fn a_child_is_stamped_block_time_after_its_parent_in_whole_seconds() {
        // Opened just after its parent's seal: exactly one block time later.
        assert_eq!(child_timestamp(100, 1, 100_004), 101);
        assert_eq!(child_timestamp(100, 2, 100_004), 102);
        // Opened late (a signer hold kept the parent open): never a stamp the
        // wall clock has passed, never a repeat of the parent's.
        assert_eq!(child_timestamp(100, 1, 101_500), 102);
        // After a pause of an hour: the wall clock's next second.
        assert_eq!(child_timestamp(100, 1, 3_700_250), 3_701);
        // A parent stamped ahead of this clock (another node's): still above it.
        assert_eq!(child_timestamp(5_000, 1, 3_000), 5_001);
    }
}
