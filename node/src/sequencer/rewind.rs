//! An L1 reorg below the origin of unsafe blocks (OP Stack chains): the
//! blocks on dropped origins are abandoned and rebuilt on the new L1 chain,
//! their user transactions sequenced again first, in their order.
//!
//! ```text
//!  L1 follower saw a reorg ─> the newest L2 block whose origin is still canonical (target)
//!    ─> signer's guard rewound (queued after the blocks before it)
//!    ─> Rewind record, fsync ─> the log's chain replayed (snapshot the chain still holds)
//!    ─> view: that chain, subscribers told (removed logs) ─> abandoned txs first in the next blocks
//! ```
//!
//! Invariants: the Rewind record is durable before anything else changes,
//! and a restart replays the same chain from it (`boot::read_chain`), with
//! the same abandoned transactions to sequence again; deposits come only
//! from the new L1 chain (the abandoned blocks' go with their L1 blocks);
//! no more than the view's kept history is rewound (else the chain holds
//! with the reason on /ready).

use std::collections::VecDeque;

use alloy_primitives::B256;
use tephra_batchlog::Record;

use super::{Sequencer, SequencerError};
use crate::{
    chain_view::ChainView,
    health::Hold,
    op::{OpSequencing, OriginStatus},
};

impl Sequencer {
    /// After the L1 follower saw a reorg: rebuilds the unsafe blocks whose
    /// origins it dropped, if any.
    pub(super) fn follow_l1_reorgs(&mut self) -> Result<(), SequencerError> {
        let Some(op) = self.shared.op.clone() else { return Ok(()) };
        let reorgs = op.reorgs_seen();
        if reorgs == self.l1_reorgs_handled {
            return Ok(());
        }
        let target = rewind_target(&self.shared.view.read().expect("view lock"), &op, self.open_origin());
        match target {
            Target::None => {}
            // The window is still fetching the blocks that tell: next turn.
            Target::Wait => return Ok(()),
            Target::Block { number, hash } => {
                if self.signing.rewind(number, hash).is_err() {
                    // The signing queue is full: next turn.
                    return Ok(());
                }
                self.rewind(&op, number, hash)?;
            }
            Target::TooDeep(reason) => self.set_hold(Hold::L1, Some(reason), "an L1 reorg cannot be followed", ""),
        }
        self.l1_reorgs_handled = reorgs;
        Ok(())
    }

    /// The open block's L1 origin, if one is open.
    fn open_origin(&self) -> Option<tephra_l1::L1Block> {
        let view = self.shared.view.read().expect("view lock");
        let open = view.open_block();
        self.builder.as_ref().and(open.op.as_ref()).map(|op| op.origin.clone())
    }

    /// Abandons the blocks above `number` (`hash`) durably, and goes on
    /// from the chain the log then holds.
    fn rewind(&mut self, op: &OpSequencing, number: u64, hash: B256) -> Result<(), SequencerError> {
        let head = self.shared.view.read().expect("view lock").head().header.number;
        tracing::warn!(from = head, to = number, %hash, "L1 reorg below unsafe blocks: rebuilding them");
        self.log.append(&Record::Rewind { number, hash })?;
        self.log.commit()?;
        let rebuilt = |e: crate::error::NodeError| SequencerError::Rewind(e.to_string());
        let log_chain = crate::boot::read_chain(self.log.dir()).map_err(rebuilt)?;
        let start = crate::boot::usable_snapshot(&self.snapshot_path, &log_chain, None).map_err(rebuilt)?;
        let tephra_batchlog::Chain { records, abandoned, .. } = log_chain;
        let history = self.shared.config.rpc.history_blocks_max;
        let replayed = crate::replay::replay(&self.shared.chain, records, start, None, history, None)
            .map_err(|e| SequencerError::Rewind(e.to_string()))?;
        let new_head = replayed.blocks.back().expect("genesis at least");
        if (new_head.header.number, new_head.hash) != (number, hash) || replayed.open.is_some() {
            return Err(SequencerError::Rewind(format!("the log's chain does not end at block {number} {hash}")));
        }
        let params = op.provisional_params(&self.shared.chain, new_head).map_err(SequencerError::OpBlock)?;
        if let Some(origin) = new_head.op.as_ref().map(|o| &o.origin) {
            op.rewound_to(origin);
        }
        self.rebuild = crate::replay::reverify_abandoned(&self.shared.chain, &params, abandoned).into();
        let mut view = self.shared.view.write().expect("view lock");
        view.rewind(replayed.state, replayed.blocks, params);
        // The state was replaced: its commitment goes to a new hasher.
        let hasher = self.hasher.take().expect("the hasher runs until the sequencer stops");
        let restarted = hasher.restart(view.state_mut());
        drop(view);
        self.hasher = Some(restarted.map_err(|e| SequencerError::Rewind(format!("the state hasher: {e}")))?);
        self.shared.metrics.l1_reorg_rebuilt_blocks.inc_by(head - number);
        self.builder = None;
        self.open_logged = false;
        self.block_full = false;
        Ok(())
    }

    /// Transactions of abandoned blocks to sequence again, before any new
    /// one (a restart's, from the log's rewinds).
    pub fn rebuilding(mut self, txs: Vec<tephra_exec::VerifiedTx>) -> Self {
        self.rebuild = VecDeque::from(txs);
        self
    }
}

/// Where the chain goes back to after an L1 reorg.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// No unsafe block's origin was dropped.
    None,
    /// The newest block whose origin the reorg left canonical.
    Block { number: u64, hash: B256 },
    /// An origin the window does not hold yet decides.
    Wait,
    /// The kept blocks do not reach one.
    TooDeep(String),
}

/// Where to rewind to if the open block's origin (`open_origin`) or a
/// sealed block's was dropped: a block's origin is its parent's or that
/// one's child, so the head's (and the open block's) tell for all.
fn rewind_target(view: &ChainView, op: &OpSequencing, open_origin: Option<tephra_l1::L1Block>) -> Target {
    let head = view.head();
    let dropped = |origin: &tephra_l1::L1Block| op.origin_status(origin) == OriginStatus::Dropped;
    if !head.op.as_ref().is_some_and(|o| dropped(&o.origin)) && !open_origin.is_some_and(|o| dropped(&o)) {
        return Target::None;
    }
    for block in view.blocks().rev() {
        match block.op.as_ref().map(|info| op.origin_status(&info.origin)) {
            Some(OriginStatus::Dropped) => continue,
            Some(OriginStatus::Unknown) => return Target::Wait,
            // Genesis (no L1 side) is on the rollup's genesis L1 block, which is final.
            Some(OriginStatus::Canonical) | None => {
                return Target::Block { number: block.header.number, hash: block.hash };
            }
        }
    }
    Target::TooDeep(format!(
        "the L1 reorged below the origin of every block kept (from block {}): raise rpc.history_blocks_max or \
         restore from a snapshot",
        view.blocks().next().map_or(0, |b| b.header.number)
    ))
}
