//! An OP Stack chain's sequencing inputs, in one place: the L1 follower's
//! thread and, for each new block, its L1 origin, its deposits and the OP
//! parameters op-node's payload attributes would carry.
//!
//! ```text
//!  L1 node ──HTTP/WS──> tephra-l1 thread: L1Follower::poll every l1.poll_interval_ms
//!                        │ copies its confirmed window (blocks from REORG_DEPTH_MAX below the origin,
//!                        │ deposits, status) and the blocks reorgs dropped; counts the reorgs
//!                        v
//!                    OpSequencing::window (RwLock; the L1 thread is its one writer)
//!                        │
//!  sequencer, at open: next_block(parent) ──> choose_origin ──> L1-info deposit
//!                        + the new epoch's user deposits ──> BlockParams + Vec<Deposit>
//!                      or OpHold (no origin may be taken, or it was dropped: /ready says why)
//!  sequencer, after a reorg: origin_status(an unsafe block's origin) ──> Canonical | Dropped | Unknown
//!                            (sequencer/rewind.rs rebuilds the blocks on dropped origins)
//! ```
//!
//! Invariants: an L2 block's timestamp is its parent's plus the rollup's
//! `block_time`; its origin is its parent's or that origin's child; user
//! deposits come only in an epoch's first block, all of the origin's, in log
//! order; a block whose origin holds a malformed deposit log is not built
//! (op-node refuses to derive it); nothing opens on an origin a reorg
//! dropped.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use alloy_primitives::B256;
use tephra_batchlog::{L1OriginRecord, OpOpenRecord};
use tephra_exec::{BlockChoice, BlockParams, ChainSpec, Eip1559Params, OpChoice, params::SEQUENCER_FEE_VAULT};
use tephra_l1::{
    BlockDeposits, FollowerConfig, L1Block, L1Event, L1Follower, L1InfoIsthmus, L1JsonRpc, L1Status, OriginChoice,
    SystemConfigValues, choose_origin, origin::max_sequencer_drift_s,
};
use tephra_types::{deposit::Deposit, rollup::RollupConfig};

use crate::{
    config::L1Config,
    health::Health,
    view::{OpBlockInfo, StoredBlock},
};

/// The L1 as the sequencer sees it: the follower thread's latest copy.
#[derive(Debug, Default)]
struct L1Window {
    blocks: BTreeMap<u64, L1Block>,
    deposits: HashMap<B256, BlockDeposits>,
    status: Option<L1Status>,
    /// The newest blocks L1 reorgs dropped, at most `DROPPED_L1_BLOCKS_MAX`:
    /// an L2 block whose origin is one of them is rebuilt.
    dropped: VecDeque<B256>,
}

impl L1Window {
    fn status_of(&self, origin: &L1Block) -> OriginStatus {
        // The window's block at that height is the word; a block reorged out
        // and back in is canonical again.
        match self.blocks.get(&origin.number) {
            Some(block) if block.hash == origin.hash => OriginStatus::Canonical,
            Some(_) => OriginStatus::Dropped,
            None if self.dropped.contains(&origin.hash) => OriginStatus::Dropped,
            // Below the window: deeper than any reorg the follower takes.
            None if self.blocks.first_key_value().is_some_and(|(first, _)| origin.number < *first) => {
                OriginStatus::Canonical
            }
            None => OriginStatus::Unknown,
        }
    }
}

/// The dropped L1 blocks remembered: as many as the follower's window holds.
const DROPPED_L1_BLOCKS_MAX: usize = tephra_l1::follower::WINDOW_BLOCKS_MAX;

/// An L2 block's L1 origin, as the follower's window tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OriginStatus {
    Canonical,
    /// An L1 reorg dropped it.
    Dropped,
    /// Not in the window yet (it is still being fetched).
    Unknown,
}

/// Why the next block cannot open yet (shown on /ready).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpHold {
    #[error("the L1 origin {number} of the chain's head is not known yet (L1: {l1})")]
    OriginUnknown { number: u64, l1: String },
    #[error("no L1 origin for the block at {l2_timestamp}: {reason} (L1: {l1})")]
    NoOrigin { l2_timestamp: u64, reason: String, l1: String },
    #[error("L1 block {number} has {malformed} malformed deposit logs: op-node would not derive its epoch")]
    MalformedDeposits { number: u64, malformed: usize },
    #[error("the block does not open: {0}")]
    Params(String),
    #[error("an L1 reorg dropped the head's L1 origin {number} {hash}: the blocks on it are rebuilt")]
    OriginDropped { number: u64, hash: B256 },
    /// The batcher's alarm: a block's batch is close to missing its
    /// sequencing window, and blocks past it could not be posted in time.
    #[error("{0}")]
    BatchWindow(String),
}

/// The next OP Stack block: its parameters, its deposits (the L1-info one
/// first) and what the log keeps of them.
#[derive(Debug)]
pub struct OpOpen {
    pub params: BlockParams,
    pub deposits: Vec<Deposit>,
    pub origin: L1Block,
    pub sequence_number: u64,
    pub eip1559_params: [u8; 8],
    /// Past the sequencer drift: no user transaction may join it.
    pub deposits_only: bool,
}

impl OpOpen {
    /// What the batch log keeps so that replay needs no L1.
    pub fn record(&self) -> OpOpenRecord {
        OpOpenRecord {
            origin: origin_record(&self.origin),
            sequence_number: self.sequence_number,
            eip1559_params: self.eip1559_params,
            deposits_only: self.deposits_only,
            deposits: self.deposits.iter().map(Deposit::encode_2718).collect(),
        }
    }
}

pub fn origin_record(block: &L1Block) -> L1OriginRecord {
    L1OriginRecord {
        number: block.number,
        hash: block.hash,
        parent_hash: block.parent_hash,
        timestamp: block.timestamp,
        base_fee_per_gas: block.base_fee_per_gas,
        excess_blob_gas: block.excess_blob_gas,
        blob_gas_used: block.blob_gas_used,
        mix_hash: block.mix_hash,
        parent_beacon_block_root: block.parent_beacon_block_root,
    }
}

pub fn origin_of_record(record: &L1OriginRecord) -> L1Block {
    L1Block {
        number: record.number,
        hash: record.hash,
        parent_hash: record.parent_hash,
        timestamp: record.timestamp,
        base_fee_per_gas: record.base_fee_per_gas,
        excess_blob_gas: record.excess_blob_gas,
        blob_gas_used: record.blob_gas_used,
        mix_hash: record.mix_hash,
        parent_beacon_block_root: record.parent_beacon_block_root,
    }
}

/// An OP Stack chain's rollup config and L1 view; see the module comment.
#[derive(Debug)]
pub struct OpSequencing {
    pub rollup: RollupConfig,
    system_config: SystemConfigValues,
    blob_base_fee_update_fraction: u64,
    window: RwLock<L1Window>,
    /// The oldest L1 block the sequencer still needs (its current origin):
    /// the follower keeps blocks from here on.
    origin_floor: AtomicU64,
    /// L1 reorgs the follower has seen: the sequencer looks for unsafe
    /// blocks to rebuild when it changes.
    reorgs_seen: AtomicU64,
}

impl OpSequencing {
    pub fn new(rollup: RollupConfig, config: &L1Config) -> Result<Self, String> {
        // The L1-info deposit tephra builds is Isthmus's (setL1BlockValuesIsthmus).
        if !rollup.is_active("isthmus_time", rollup.genesis.l2_time) {
            return Err("isthmus_time must be at or before genesis: tephra builds Isthmus L1-info deposits".into());
        }
        let system_config =
            SystemConfigValues::from_genesis(&rollup.genesis.system_config).map_err(|e| e.to_string())?;
        Ok(Self {
            origin_floor: AtomicU64::new(rollup.genesis.l1.number),
            reorgs_seen: AtomicU64::new(0),
            rollup,
            system_config,
            blob_base_fee_update_fraction: config.blob_base_fee_update_fraction,
            window: RwLock::new(L1Window::default()),
        })
    }

    /// Starts the thread that follows the L1 from `anchor` (the head's L1
    /// origin) until `health` says the node stops.
    pub fn spawn_follower(
        self: &Arc<Self>,
        config: &L1Config,
        anchor: tephra_types::rollup::BlockId,
        health: Arc<Health>,
    ) -> std::io::Result<thread::JoinHandle<()>> {
        let rpc =
            L1JsonRpc::with_timeout_ms(config.rpc.clone(), config.request_timeout_ms).map_err(std::io::Error::other)?;
        // Until the first block opens, the sequencer needs blocks from its head's origin on.
        self.origin_floor.store(anchor.number, Ordering::Release);
        let follower_config = FollowerConfig {
            anchor,
            deposit_contract: self.rollup.deposit_contract_address,
            confirmation_depth: config.confirmation_depth,
        };
        let mut follower = L1Follower::new(rpc, follower_config, crate::sequencer::unix_ms());
        let (op, poll) = (self.clone(), Duration::from_millis(config.poll_interval_ms));
        thread::Builder::new().name("tephra-l1".into()).spawn(move || {
            while !health.shutting_down() {
                follower.retain_from(op.origin_floor.load(Ordering::Acquire));
                let events = follower.poll(crate::sequencer::unix_ms()).unwrap_or_else(|error| {
                    tracing::warn!(%error, "L1 poll failed");
                    Vec::new()
                });
                log_events(&events);
                op.publish(&follower, &events);
                thread::sleep(poll);
            }
        })
    }

    /// Copies the follower's window for the sequencer (down to the deepest
    /// reorg below the origin, so that the origins of the blocks a reorg
    /// reaches can be checked), with the blocks `events` dropped.
    fn publish<R: tephra_l1::L1Rpc>(&self, follower: &L1Follower<R>, events: &[L1Event]) {
        let mut dropped = std::mem::take(&mut self.window.write().expect("L1 window lock").dropped);
        let mut reorgs = 0;
        for event in events {
            if let L1Event::Reorg { dropped: blocks, .. } = event {
                dropped.extend(blocks.iter().map(|(_, hash)| *hash));
                reorgs += 1;
            }
        }
        while dropped.len() > DROPPED_L1_BLOCKS_MAX {
            dropped.pop_front();
        }
        let mut window = L1Window { status: Some(follower.status().clone()), dropped, ..L1Window::default() };
        let floor = self.origin_floor.load(Ordering::Acquire).saturating_sub(tephra_l1::follower::REORG_DEPTH_MAX);
        if let Some(tip) = follower.tip() {
            for number in floor..=tip.number {
                let Some(block) = follower.block(number) else { continue };
                if let Some(deposits) = follower.deposits(block.hash) {
                    window.deposits.insert(block.hash, deposits.clone());
                }
                window.blocks.insert(number, block.clone());
            }
        }
        *self.window.write().expect("L1 window lock") = window;
        // After the window: a sequencer that sees the count sees the blocks.
        self.reorgs_seen.fetch_add(reorgs, Ordering::Release);
    }

    /// L1 reorgs seen so far.
    pub fn reorgs_seen(&self) -> u64 {
        self.reorgs_seen.load(Ordering::Acquire)
    }

    /// Whether an L1 reorg dropped `origin` (an L2 block on it is rebuilt),
    /// as far as the window tells.
    pub fn origin_status(&self, origin: &L1Block) -> OriginStatus {
        self.window.read().expect("L1 window lock").status_of(origin)
    }

    /// The chain was rewound to a block on `origin`: the follower keeps L1
    /// blocks from there on again.
    pub fn rewound_to(&self, origin: &L1Block) {
        self.origin_floor.store(origin.number, Ordering::Release);
    }

    /// The newest confirmed L1 block the follower has.
    pub fn l1_tip(&self) -> Option<L1Block> {
        self.window.read().expect("L1 window lock").blocks.values().next_back().cloned()
    }

    /// The block after `parent`: the next L1 origin if it may move, the
    /// L1-info deposit, an epoch's user deposits, the OP parameters.
    pub fn next_block(&self, chain: &ChainSpec, parent: &StoredBlock) -> Result<OpOpen, OpHold> {
        let window = self.window.read().expect("L1 window lock");
        let l1 = || window.status.as_ref().map_or("not polled yet".into(), |s| format!("{s:?}"));
        let (current, sequence_number) = match &parent.op {
            Some(op) => (op.origin.clone(), op.sequence_number),
            // The genesis block's epoch is the rollup's genesis L1 block.
            None => {
                let genesis = &self.rollup.genesis.l1;
                let block = window.blocks.get(&genesis.number).filter(|b| b.hash == genesis.hash);
                let block = block.ok_or_else(|| OpHold::OriginUnknown { number: genesis.number, l1: l1() })?;
                (block.clone(), 0)
            }
        };
        if window.status_of(&current) == OriginStatus::Dropped {
            // Nothing opens on it: the sequencer rewinds past it.
            return Err(OpHold::OriginDropped { number: current.number, hash: current.hash });
        }
        let l2_timestamp = parent.header.timestamp.saturating_add(self.rollup.block_time);
        let next = window.blocks.get(&current.number.saturating_add(1));
        let drift_s = max_sequencer_drift_s(&self.rollup, current.timestamp);
        let (origin, sequence_number, user_deposits, deposits_only) =
            match choose_origin(&current, next, l2_timestamp, drift_s) {
                OriginChoice::Keep => (current, sequence_number + 1, Vec::new(), false),
                OriginChoice::KeepWithoutTransactions => (current, sequence_number + 1, Vec::new(), true),
                OriginChoice::Advance(next) => {
                    let deposits = window.deposits.get(&next.hash).cloned().unwrap_or_default();
                    if deposits.malformed > 0 {
                        return Err(OpHold::MalformedDeposits { number: next.number, malformed: deposits.malformed });
                    }
                    (next, 0, deposits.deposits, false)
                }
                OriginChoice::Hold { reason } => {
                    return Err(OpHold::NoOrigin { l2_timestamp, reason: format!("{reason:?}"), l1: l1() });
                }
            };
        drop(window);
        self.open(chain, parent, l2_timestamp, origin, sequence_number, user_deposits, deposits_only)
    }

    /// The next block's parameters as far as they do not depend on its L1
    /// origin (gas limit, base fee, rules): what transactions are verified
    /// against before the block opens.
    pub fn provisional_params(&self, chain: &ChainSpec, parent: &StoredBlock) -> Result<BlockParams, String> {
        let choice = BlockChoice {
            timestamp: parent.header.timestamp.saturating_add(self.rollup.block_time),
            beneficiary: SEQUENCER_FEE_VAULT,
            op: Some(OpChoice {
                gas_limit: self.rollup.genesis.system_config.gas_limit,
                eip1559: Eip1559Params::from_system_config(self.rollup.genesis.system_config.eip1559_params.0),
                parent_beacon_block_root: B256::ZERO,
            }),
            ..BlockChoice::default()
        };
        BlockParams::child_of(chain, &parent.header, choice).map_err(|e| e.to_string())
    }

    #[allow(clippy::too_many_arguments)]
    fn open(
        &self,
        chain: &ChainSpec,
        parent: &StoredBlock,
        l2_timestamp: u64,
        origin: L1Block,
        sequence_number: u64,
        user_deposits: Vec<Deposit>,
        deposits_only: bool,
    ) -> Result<OpOpen, OpHold> {
        let info =
            L1InfoIsthmus::new(&origin, sequence_number, &self.system_config, self.blob_base_fee_update_fraction);
        let deposits = std::iter::once(info.deposit()).chain(user_deposits).collect();
        let eip1559_params = self.rollup.genesis.system_config.eip1559_params.0;
        let choice = BlockChoice {
            timestamp: l2_timestamp,
            beneficiary: SEQUENCER_FEE_VAULT,
            prevrandao: origin.mix_hash,
            extra_data: Default::default(),
            op: Some(OpChoice {
                gas_limit: self.rollup.genesis.system_config.gas_limit,
                eip1559: Eip1559Params::from_system_config(eip1559_params),
                parent_beacon_block_root: origin.parent_beacon_block_root.unwrap_or_default(),
            }),
        };
        let params = BlockParams::child_of(chain, &parent.header, choice).map_err(|e| OpHold::Params(e.to_string()))?;
        self.origin_floor.store(origin.number, Ordering::Release);
        Ok(OpOpen { params, deposits, origin, sequence_number, eip1559_params, deposits_only })
    }
}

fn log_events(events: &[L1Event]) {
    for event in events {
        match event {
            L1Event::Block { number, deposits, .. } => tracing::debug!(number, deposits, "L1 block"),
            L1Event::Reorg { common_ancestor, dropped } => {
                tracing::warn!(common_ancestor, dropped = dropped.len(), "L1 reorg")
            }
        }
    }
}

/// The OP side of a block opened from `record` (live or replayed);
/// `l1_block_info` is what op-revm read from the L1Block predeploy after
/// the block's L1-info deposit (none for a block replay reads back
/// without executing it).
pub fn op_block_info(
    chain: &ChainSpec,
    timestamp: u64,
    record: &OpOpenRecord,
    l1_block_info: Option<tephra_exec::L1BlockInfo>,
) -> Arc<OpBlockInfo> {
    Arc::new(OpBlockInfo {
        origin: origin_of_record(&record.origin),
        sequence_number: record.sequence_number,
        eip1559_params: record.eip1559_params,
        l1_block_info,
        spec: chain.op_spec_at(timestamp).unwrap_or(tephra_exec::OpSpecId::ISTHMUS),
        deposits_only: record.deposits_only,
    })
}

/// The OP choices a logged block was opened with.
pub fn op_choice_of(gas_limit: u64, record: &OpOpenRecord) -> OpChoice {
    OpChoice {
        gas_limit,
        eip1559: Eip1559Params::from_system_config(record.eip1559_params),
        parent_beacon_block_root: record.origin.parent_beacon_block_root.unwrap_or_default(),
    }
}
