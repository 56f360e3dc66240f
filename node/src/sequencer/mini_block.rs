//! A mini-block: cut from the pool and executed into the open block under
//! the view's lock, the state keeping what each write overwrote; made
//! durable with no lock held (the log's fsync; in a sync pair, a standby's
//! acknowledgement), reads meanwhile seeing the state as it was before it
//! (`StateDb::durable`), so that they neither wait for the disk nor see
//! state this node could lose; its state diff handed to the hasher; then
//! preconfirmed: the kept values dropped, indexed, published and answered.

use std::sync::Arc;

use alloy_primitives::{Address, B256, Bytes};
use tephra_batchlog::Record;
use tephra_exec::{StateDiff, TxOutcome, VerifiedTx};
use tephra_hsm::MerkleTree;
use tephra_types::{Reject, RejectCode};

use super::{Sequencer, SequencerError};
use crate::{
    chain_view::ChainView,
    delegation::Delegation,
    replay::{open_record, stored_txs},
    shared::{Preconf, SubmitOutcome, SubmitStatus},
    view::{PreconfRef, SignedMiniBlock, StoredTx},
};

/// A mini-block executed and logged, not yet preconfirmed.
struct Executed {
    number: u64,
    /// The open block's index of its first transaction among the sequenced
    /// ones (an OP Stack block's deposits come before them).
    first: usize,
    /// Every submitter's answer: preconfirmations (told only once durable)
    /// and rejections.
    answers: Vec<(B256, SubmitOutcome)>,
    /// A transaction found no room: the block is sealed next.
    block_full: bool,
    /// What it changed in the state, for the hasher.
    diff: StateDiff,
    /// Its records are appended to the log, not yet made durable.
    appended: bool,
}

/// How execution left each transaction's sender: its pool entry settles to
/// the new nonce (`dropped`: its transaction was not included).
struct Settled {
    senders: Vec<(Address, bool)>,
    deferred: Vec<VerifiedTx>,
}

impl Sequencer {
    /// Cuts a mini-block, executes it, makes it durable, then preconfirms it.
    pub(super) fn run_mini_block(&mut self) -> Result<(), SequencerError> {
        let Some(mut executed) = self.execute_and_log()? else { return Ok(()) };
        if executed.appended {
            // No lock held: reads see the state before the mini-block.
            self.commit_timed()?;
        }
        self.hasher().send(std::mem::take(&mut executed.diff));
        if self.builder().transactions().len() > executed.first {
            self.replicate()?;
        }
        self.preconfirm(executed);
        Ok(())
    }

    /// Under the view's lock: cut, execute (keeping what the writes
    /// overwrite), settle the pool, append to the log. `None` when the pool
    /// had nothing to cut.
    fn execute_and_log(&mut self) -> Result<Option<Executed>, SequencerError> {
        let shared = self.shared.clone();
        let mut view = shared.view.write().expect("view lock");
        self.batch.clear();
        // A rewind's abandoned transactions go first, in their order.
        self.cut_from_rebuild = !self.rebuild.is_empty();
        if self.cut_from_rebuild {
            let count = self.rebuild.len().min(self.shared.config.pool.mini_block_txs_max);
            self.batch.extend(self.rebuild.drain(..count));
        } else {
            view.state_and_pool_mut().1.cut_mini_block(&mut self.batch);
        }
        if self.batch.is_empty() {
            return Ok(None);
        }
        let mut executed = Executed {
            number: self.builder().params().number,
            first: self.builder().transactions().len(),
            answers: Vec::new(),
            block_full: false,
            diff: StateDiff::default(),
            appended: false,
        };
        view.state_mut().keep_pre_images();
        let settled = self.execute(&mut view, &mut executed);
        self.settle(&mut view, settled, &mut executed);
        executed.diff = view.state_mut().take_diff();
        executed.appended = self.append_mini_block(executed.first)?;
        Ok(Some(executed))
    }

    /// Executes the cut batch into the open block; each transaction's answer
    /// is kept for when the mini-block is durable.
    fn execute(&mut self, view: &mut ChainView, executed: &mut Executed) -> Settled {
        let mut settled = Settled { senders: Vec::new(), deferred: Vec::new() };
        let batch = std::mem::take(&mut self.batch);
        let number = executed.number;
        let builder = self.builder.as_mut().expect("a block is always open outside seal");
        builder.execute(&mut self.executor, view.state_mut(), batch, |index, outcome| match outcome {
            TxOutcome::Included(included) => {
                let index = index.expect("included transactions have an index");
                settled.senders.push((included.tx.sender, false));
                let preconf = Preconf {
                    hash: included.tx.hash,
                    block_number: number,
                    index,
                    success: included.receipt.status.coerce_status(),
                    gas_used: included.gas_used,
                    signed: None,
                };
                executed.answers.push((included.tx.hash, Ok(SubmitStatus::Preconfirmed(preconf))));
            }
            TxOutcome::Dropped { tx, reject } => {
                settled.senders.push((tx.sender, true));
                executed.answers.push((tx.hash, Err(reject.clone())));
            }
            TxOutcome::BlockFull(tx) => {
                settled.senders.push((tx.sender, true));
                // Rare: the block is full. Back to the pool, so a copy.
                settled.deferred.push(tx.clone());
            }
        });
        self.export_exec_stats();
        settled
    }

    /// The pool catches up with execution: senders' nonces, stale
    /// transactions answered, a full block's leftovers back in for the next.
    fn settle(&mut self, view: &mut ChainView, settled: Settled, executed: &mut Executed) {
        let now_ms = self.pool_ms();
        let (state, pool) = view.state_and_pool_mut();
        for (sender, dropped) in settled.senders {
            pool.settle(&sender, state.nonce(&sender), dropped);
        }
        for tx in pool.drain_stale() {
            let reject = Reject::new(RejectCode::NonceTooLow, "the account's nonce moved past it");
            executed.answers.push((tx.hash, Err(reject)));
        }
        if self.cut_from_rebuild {
            // No room left in this block: they stay first, in order, for the next.
            executed.block_full |= !settled.deferred.is_empty();
            for tx in settled.deferred.into_iter().rev() {
                self.rebuild.push_front(tx);
            }
            return;
        }
        for tx in settled.deferred {
            executed.block_full = true;
            let (hash, nonce) = (tx.hash, state.nonce(&tx.sender));
            if let Err(reject) = pool.insert(tx, nonce, now_ms) {
                executed.answers.push((hash, Err(reject)));
            }
        }
        self.shared.metrics.pool_size.set(i64::try_from(pool.len()).unwrap_or(i64::MAX));
    }

    /// The mini-block's transactions from `first` on into the log (after the
    /// block's Open record, the first time), to be made durable together.
    /// False when it included none.
    fn append_mini_block(&mut self, first: usize) -> Result<bool, SequencerError> {
        let builder = self.builder.as_ref().expect("a block is always open outside seal");
        let included = &builder.transactions()[first..];
        if included.is_empty() {
            return Ok(false);
        }
        if !self.open_logged {
            // An OP Stack block logs its Open record when it opens.
            self.log.append(&Record::Open(open_record(builder.params(), None)))?;
            self.open_logged = true;
        }
        let txs: Vec<(Address, Bytes)> = included.iter().map(|t| (t.tx.sender, t.tx.encoded.clone())).collect();
        self.log.append(&Record::Batch { number: builder.params().number, txs })?;
        Ok(true)
    }

    /// Durable: the mini-block's transactions become visible (signed with
    /// the hot key where one is certified) and every submitter is answered.
    fn preconfirm(&mut self, executed: Executed) {
        let Executed { number, first, mut answers, block_full, .. } = executed;
        let builder = self.builder.as_ref().expect("a block is always open outside seal");
        let (included, gas_used, base_fee) =
            (&builder.transactions()[first..], builder.gas_used(), builder.params().base_fee_per_gas);
        let shared = self.shared.clone();
        // This thread is the view's only writer: what it reads stays true
        // until it writes, and the hot key signs with no lock held.
        let first_log_index = shared.view.read().expect("view lock").next_log_index();
        let mut stored = stored_txs(included, base_fee, first_log_index);
        // Indices in the block count an OP Stack block's deposits first.
        let first_in_block = first + builder.deposits().len();
        sign_preconfirmations(&mut self.delegation, shared.chain.chain_id(), number, first_in_block, &mut stored);
        for (_, outcome) in &mut answers {
            if let Ok(SubmitStatus::Preconfirmed(p)) = outcome {
                p.signed = p.index.checked_sub(first_in_block).and_then(|at| stored.get(at)?.preconf.clone());
            }
        }
        let preconfirmed = stored.len();
        let mut view = shared.view.write().expect("view lock");
        view.state_mut().release_pre_images();
        view.preconfirm(stored, gas_used);
        drop(view);
        for (hash, outcome) in answers {
            if let Err(reject) = &outcome {
                self.shared.reject_metric(reject);
            }
            self.answer(&hash, outcome);
        }
        self.unhashed |= preconfirmed > 0;
        // Sealed when the wall clock reaches its timestamp, as any other.
        self.block_full |= block_full;
    }
}

/// One hot-key signature over a mini-block's transaction-hash root; each
/// transaction keeps its place for its own proof.
fn sign_preconfirmations(
    delegation: &mut Delegation,
    chain_id: u64,
    number: u64,
    first: usize,
    stored: &mut [StoredTx],
) {
    if stored.is_empty() {
        return;
    }
    let Some((hot, certificate)) = delegation.key_for(number) else {
        tracing::warn!(block = number, "no certified preconfirmation key: preconfirmations go unsigned");
        return;
    };
    let tree = MerkleTree::new(&stored.iter().map(|t| t.hash).collect::<Vec<B256>>());
    let first_index = u32::try_from(first).expect("a block holds fewer than 2^32 transactions");
    let batch = hot.sign_batch(chain_id, number, first_index, &tree);
    let mini_block = Arc::new(SignedMiniBlock { batch, certificate: *certificate, tree });
    for (position, tx) in stored.iter_mut().enumerate() {
        tx.preconf = Some(PreconfRef { mini_block: mini_block.clone(), position });
    }
}
