//! Rebuilding the chain from the batch log: at start (from the latest
//! snapshot) and for `tephra log verify` (from genesis, every block
//! re-executed and every signature checked).

use std::{collections::VecDeque, sync::Arc};

use alloy_consensus::{Header, Transaction as _, TxEnvelope};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, B256, Bytes, keccak256};
use alloy_rlp::Decodable;
use tephra_batchlog::{OpOpenRecord, OpenRecord, ReceiptRecord, Record};
use tephra_exec::{
    BlockBuilder, BlockChanges, BlockChoice, BlockParams, ChainSpec, ExecutedDeposit, ExecutedTx, SequentialExecutor,
    StateDb, TxOutcome, VerifiedTx, Verifier, VerifyRules, snapshot::SnapshotMeta,
};
use tephra_hsm::{Payload, Signature65};
use tephra_types::deposit::Deposit;

use crate::{
    chain_view::ChainView,
    op::op_block_info,
    view::{OpBlockInfo, StoredBlock, StoredTx, op_envelope},
};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("batch log does not follow the chain at block {number}: {reason}")]
    Diverged { number: u64, reason: String },
}

fn diverged(number: u64, reason: impl Into<String>) -> ReplayError {
    ReplayError::Diverged { number, reason: reason.into() }
}

/// The open block left by the log: its builder and preconfirmed transactions
/// (an OP Stack block's deposits first).
#[derive(Debug)]
pub struct OpenReplay {
    pub builder: BlockBuilder,
    pub txs: Vec<StoredTx>,
    pub op: Option<Arc<OpBlockInfo>>,
}

/// The chain as the log leaves it.
#[derive(Debug)]
pub struct Replayed {
    pub state: StateDb,
    pub blocks: VecDeque<StoredBlock>,
    pub open: Option<OpenReplay>,
    /// Blocks re-executed (the rest were read back without executing).
    pub executed_blocks: u64,
    pub signatures_checked: u64,
    /// The epoch of the log's newest records (0 if no leader of a pair wrote any).
    pub epoch: u64,
    /// Re-executed blocks' changes, after `replay`'s `changes_after`.
    pub changes: Vec<(u64, BlockChanges)>,
}

#[derive(Debug)]
enum Current {
    Idle,
    /// Before the snapshot: read back, not executed.
    History {
        open: OpenRecord,
        txs: Vec<(Address, TxEnvelope)>,
    },
    /// After the snapshot: re-executed.
    Exec {
        builder: BlockBuilder,
        txs: Vec<StoredTx>,
        op: Option<Arc<OpBlockInfo>>,
    },
}

/// The parameters of the block `open` describes, checked against the chain's
/// rules for a child of `parent`.
pub fn params_of(chain: &ChainSpec, parent: &Header, open: &OpenRecord) -> Result<BlockParams, ReplayError> {
    let choice = BlockChoice {
        timestamp: open.timestamp,
        beneficiary: open.beneficiary,
        prevrandao: open.prevrandao,
        extra_data: open.extra_data.clone(),
        op: open.op.as_ref().map(|op| crate::op::op_choice_of(open.gas_limit, op)),
    };
    let params = BlockParams::child_of(chain, parent, choice).map_err(|e| diverged(open.number, e.to_string()))?;
    if params.number != open.number || params.parent_hash != open.parent_hash {
        return Err(diverged(open.number, "block does not extend the previous one"));
    }
    if params.base_fee_per_gas != open.base_fee_per_gas || params.gas_limit != open.gas_limit {
        return Err(diverged(open.number, "base fee or gas limit off the chain rules"));
    }
    Ok(params)
}

pub fn open_record(params: &BlockParams, op: Option<OpOpenRecord>) -> OpenRecord {
    OpenRecord {
        op,
        number: params.number,
        parent_hash: params.parent_hash,
        timestamp: params.timestamp,
        beneficiary: params.beneficiary,
        prevrandao: params.prevrandao,
        extra_data: params.extra_data.clone(),
        gas_limit: params.gas_limit,
        base_fee_per_gas: params.base_fee_per_gas,
    }
}

/// A verifier that accepts what the log holds: the transactions were checked
/// when they arrived; replay re-checks them against execution.
pub fn replay_verifier(chain: &ChainSpec, params: &BlockParams) -> Verifier {
    Verifier::new(VerifyRules {
        chain_id: chain.chain_id(),
        spec: params.spec,
        block_gas_limit: params.gas_limit,
        base_fee_per_gas: params.base_fee_per_gas,
        allow_unprotected: true,
    })
    .estimating_l1_data(chain.op().is_some())
}

/// The stored form of the transactions `executed`, numbered from `first`.
pub fn stored_txs<'a>(
    executed: impl IntoIterator<Item = &'a ExecutedTx>,
    base_fee_per_gas: u64,
    mut first_log_index: u64,
) -> Vec<StoredTx> {
    executed
        .into_iter()
        .map(|t| {
            let stored = StoredTx::new(t, base_fee_per_gas, first_log_index);
            first_log_index += t.receipt.logs.len() as u64;
            stored
        })
        .collect()
}

pub fn genesis_block(chain: &ChainSpec) -> StoredBlock {
    StoredBlock {
        header: chain.genesis_header().clone(),
        hash: chain.genesis_hash(),
        txs: Arc::default(),
        signature: None,
        op: None,
    }
}

/// A block's extra data: in a high-availability pair the sealing leader's
/// epoch (8 bytes, big-endian) and then the configured bytes; a single node
/// (epoch 0) writes the configured bytes alone.
pub fn stamped_extra_data(epoch: u64, configured: &[u8]) -> Bytes {
    if epoch == 0 {
        return Bytes::copy_from_slice(configured);
    }
    [&epoch.to_be_bytes()[..], configured].concat().into()
}

/// The configured bytes of extra data stamped with `epoch`.
fn configured_extra_data(extra_data: &[u8], epoch: u64) -> &[u8] {
    if epoch == 0 { extra_data } else { extra_data.get(8..).unwrap_or_default() }
}

/// What one record did to the chain.
#[derive(Debug)]
pub enum Applied {
    Opened,
    /// Transactions from `first` on were added to the open block.
    Batch {
        first: usize,
    },
    /// With the block's changes when it was re-executed on a state that
    /// keeps them.
    Sealed(Box<StoredBlock>, Option<BlockChanges>),
    Signed {
        number: u64,
        hash: B256,
        signature: Signature65,
    },
    Epoch(u64),
}

/// Applies the log's records one at a time, to a state the caller owns:
/// the start's replay and a standby following its leader share it.
#[derive(Debug)]
pub struct Replayer<'c> {
    chain: &'c ChainSpec,
    current: Current,
    /// Blocks up to this one are read back, not executed (a snapshot holds them).
    base_number: u64,
    /// The newest sealed header: the next block's parent.
    head: Header,
    epoch: u64,
    executor: SequentialExecutor,
    pub executed_blocks: u64,
}

impl<'c> Replayer<'c> {
    pub fn new(chain: &'c ChainSpec, base_number: u64, head: Header) -> Self {
        Self {
            chain,
            current: Current::Idle,
            base_number,
            head,
            epoch: 0,
            executor: SequentialExecutor,
            executed_blocks: 0,
        }
    }

    /// Goes on from where a replay left the chain: `head` sealed last, `open`
    /// the block open after it, if any.
    pub fn resume(chain: &'c ChainSpec, head: Header, epoch: u64, open: Option<OpenReplay>) -> Self {
        let mut replayer = Self::new(chain, head.number, head);
        replayer.epoch = epoch;
        if let Some(OpenReplay { builder, txs, op }) = open {
            replayer.current = Current::Exec { builder, txs, op };
        }
        replayer
    }

    /// The newest sealed block's number.
    pub fn head_number(&self) -> u64 {
        self.head.number
    }

    /// The epoch of the records applied last (0 before any leader's).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The open block's preconfirmed transactions.
    pub fn open_txs(&self) -> &[StoredTx] {
        match &self.current {
            Current::Exec { txs, .. } => txs,
            _ => &[],
        }
    }

    pub fn open_builder(&self) -> Option<&BlockBuilder> {
        match &self.current {
            Current::Exec { builder, .. } => Some(builder),
            _ => None,
        }
    }

    /// The open OP Stack block's L1 side.
    pub fn open_op(&self) -> Option<Arc<OpBlockInfo>> {
        match &self.current {
            Current::Exec { op, .. } => op.clone(),
            _ => None,
        }
    }

    /// The open block as the log leaves it.
    pub fn finish(self) -> Result<Option<OpenReplay>, ReplayError> {
        match self.current {
            Current::Idle => Ok(None),
            Current::Exec { builder, txs, op } => Ok(Some(OpenReplay { builder, txs, op })),
            Current::History { open, .. } => Err(diverged(open.number, "the snapshot is ahead of its seal")),
        }
    }

    /// Applies one record: the open block's parameters, a mini-block of
    /// transactions, a seal, a signature or a new leader's epoch.
    pub fn apply(&mut self, record: Record, state: &mut StateDb) -> Result<Applied, ReplayError> {
        match record {
            Record::Open(open) => self.open(open, state),
            Record::Batch { number, txs } => self.batch(number, txs, state),
            Record::Sealed { number, header_rlp, receipts } => self.seal(number, &header_rlp, receipts, state),
            Record::Signed { number, hash, signature } => {
                Ok(Applied::Signed { number, hash, signature: Signature65(signature) })
            }
            Record::Epoch { epoch } => self.epoch_started(epoch),
            // `tephra_batchlog::chain_of` takes the rewinds out first.
            Record::Rewind { number, .. } => Err(diverged(number, "a rewind in records that should hold none")),
        }
    }

    /// Opens a block: read back at or below the snapshot, else re-executed
    /// on parameters checked against the chain's rules.
    fn open(&mut self, open: OpenRecord, state: &mut StateDb) -> Result<Applied, ReplayError> {
        if !matches!(self.current, Current::Idle) {
            return Err(diverged(open.number, "a block opened before the previous one sealed"));
        }
        if open.number <= self.base_number {
            self.current = Current::History { open, txs: Vec::new() };
            return Ok(Applied::Opened);
        }
        let params = params_of(self.chain, &self.head, &open)?;
        self.current = match &open.op {
            None => Current::Exec { builder: BlockBuilder::open(params, state), txs: Vec::new(), op: None },
            Some(record) => {
                let deposits = record
                    .deposits
                    .iter()
                    .map(|raw| Deposit::decode_2718(raw).map_err(|e| diverged(open.number, e.to_string())))
                    .collect::<Result<Vec<_>, _>>()?;
                let (timestamp, number) = (params.timestamp, params.number);
                let builder = BlockBuilder::open_op(params, state, deposits)
                    .map_err(|reject| diverged(number, format!("its deposits do not execute: {reject}")))?;
                let op = op_block_info(self.chain, timestamp, record, builder.l1_block_info().cloned());
                let txs = stored_deposits(builder.deposits());
                Current::Exec { builder, txs, op: Some(op) }
            }
        };
        Ok(Applied::Opened)
    }

    /// Adds a mini-block to the open block: decoded only in history,
    /// verified and re-executed after the snapshot.
    fn batch(
        &mut self,
        number: u64,
        batch: Vec<(Address, Bytes)>,
        state: &mut StateDb,
    ) -> Result<Applied, ReplayError> {
        let first = match &mut self.current {
            Current::History { txs, .. } => decode_batch(number, batch, txs)?,
            Current::Exec { builder, txs, .. } => {
                let verified = verify_batch(self.chain, builder.params(), number, batch)?;
                execute_batch(&mut self.executor, state, builder, txs, number, verified)?
            }
            Current::Idle => return Err(diverged(number, "a batch outside any block")),
        };
        Ok(Applied::Batch { first })
    }

    /// Seals the open block: a history block is rebuilt from the logged
    /// header and receipts, a re-executed one must hash as logged.
    fn seal(
        &mut self,
        number: u64,
        header_rlp: &[u8],
        receipts: Vec<ReceiptRecord>,
        state: &mut StateDb,
    ) -> Result<Applied, ReplayError> {
        let header = Header::decode(&mut &header_rlp[..]).map_err(|e| diverged(number, e.to_string()))?;
        let hash = keccak256(header_rlp);
        let (block, changes) = match std::mem::replace(&mut self.current, Current::Idle) {
            Current::History { open, txs } => (history_block(self.chain, header, open, txs, receipts)?, None),
            Current::Exec { builder, txs, op } => {
                let sealed = builder.seal(state);
                if sealed.hash != hash {
                    return Err(diverged(number, format!("re-executed hash {} , logged {hash}", sealed.hash)));
                }
                self.executed_blocks += 1;
                (StoredBlock { header: sealed.header, hash, txs: Arc::new(txs), signature: None, op }, sealed.changes)
            }
            Current::Idle => return Err(diverged(number, "a seal outside any block")),
        };
        self.head = block.header.clone();
        Ok(Applied::Sealed(Box::new(block), changes))
    }

    /// A new leader's run: epochs only grow.
    fn epoch_started(&mut self, epoch: u64) -> Result<Applied, ReplayError> {
        if epoch <= self.epoch {
            return Err(diverged(self.head.number, format!("epoch {epoch} after epoch {}", self.epoch)));
        }
        // The new leader seals the block it found open under its own epoch.
        if let Current::Exec { builder, .. } = &mut self.current {
            let configured = configured_extra_data(&builder.params().extra_data, self.epoch).to_vec();
            builder.set_extra_data(stamped_extra_data(epoch, &configured));
        }
        self.epoch = epoch;
        Ok(Applied::Epoch(epoch))
    }
}

/// Decodes a history block's mini-block onto `txs`; the index of its first.
fn decode_batch(
    number: u64,
    batch: Vec<(Address, Bytes)>,
    txs: &mut Vec<(Address, TxEnvelope)>,
) -> Result<usize, ReplayError> {
    let first = txs.len();
    for (sender, raw) in batch {
        let envelope = TxEnvelope::decode_2718_exact(&raw).map_err(|e| diverged(number, e.to_string()))?;
        txs.push((sender, envelope));
    }
    Ok(first)
}

/// The stored form of an OP Stack block's deposits, which open it.
pub fn stored_deposits(deposits: &[ExecutedDeposit]) -> Vec<StoredTx> {
    let mut first_log_index = 0;
    deposits
        .iter()
        .map(|d| {
            let stored = StoredTx::from_deposit(d, first_log_index);
            first_log_index += d.receipt.logs.len() as u64;
            stored
        })
        .collect()
}

/// Verifies a logged mini-block again: each transaction must recover to the
/// sender the log names.
fn verify_batch(
    chain: &ChainSpec,
    params: &BlockParams,
    number: u64,
    batch: Vec<(Address, Bytes)>,
) -> Result<Vec<VerifiedTx>, ReplayError> {
    let verifier = replay_verifier(chain, params);
    let mut verified = Vec::with_capacity(batch.len());
    for (sender, raw) in batch {
        let tx = verifier.verify(&raw).map_err(|e| diverged(number, e.to_string()))?;
        if tx.sender != sender {
            return Err(diverged(number, format!("{} recovers to another sender", tx.hash)));
        }
        verified.push(tx);
    }
    Ok(verified)
}

/// The user transactions a rewind abandoned, verified again against the
/// rules of the block they go into first (`params`); one that no longer
/// verifies is left out with a warning, as any invalid submission is.
pub fn reverify_abandoned(chain: &ChainSpec, params: &BlockParams, txs: Vec<(Address, Bytes)>) -> Vec<VerifiedTx> {
    let verifier = replay_verifier(chain, params);
    txs.into_iter()
        .filter_map(|(sender, raw)| match verifier.verify(&raw) {
            Ok(tx) if tx.sender == sender => Some(tx),
            Ok(tx) => {
                tracing::warn!(hash = %tx.hash, "an abandoned transaction recovers to another sender: left out");
                None
            }
            Err(reject) => {
                tracing::warn!(%reject, "an abandoned transaction no longer verifies: left out");
                None
            }
        })
        .collect()
}

/// Re-executes a mini-block into the open block, every transaction included
/// again, and keeps their stored form on `txs`; the index of its first.
fn execute_batch(
    executor: &mut SequentialExecutor,
    state: &mut StateDb,
    builder: &mut BlockBuilder,
    txs: &mut Vec<StoredTx>,
    number: u64,
    verified: Vec<VerifiedTx>,
) -> Result<usize, ReplayError> {
    let first = txs.len();
    let first_executed = builder.transactions().len();
    let mut failure = None;
    builder.execute(executor, state, verified, |_, outcome| {
        if !matches!(outcome, TxOutcome::Included(_)) && failure.is_none() {
            failure = Some(format!("a logged transaction was not included again: {outcome:?}"));
        }
    });
    if let Some(reason) = failure {
        return Err(diverged(number, reason));
    }
    let first_log_index = txs.last().map_or(0, |t| t.first_log_index + t.receipt.logs.len() as u64);
    let base_fee = builder.params().base_fee_per_gas;
    txs.extend(stored_txs(&builder.transactions()[first_executed..], base_fee, first_log_index));
    Ok(first)
}

/// What following one record did, as far as its caller cares.
#[derive(Debug)]
pub enum Followed {
    /// A block sealed (the caller may snapshot the state after it).
    Sealed(std::sync::Arc<StoredBlock>),
    /// A leader's run started.
    Epoch(u64),
    Applied,
}

/// A record a standby received from its leader, applied by `replayer` to
/// `view`'s state and kept by the view as the leader kept it: opened,
/// preconfirmed, sealed or signed.
pub fn follow_record(
    view: &mut ChainView,
    replayer: &mut Replayer<'_>,
    record: Record,
) -> Result<Followed, ReplayError> {
    match replayer.apply(record, view.state_mut())? {
        Applied::Opened => {
            let builder = replayer.open_builder().expect("just opened");
            let (params, gas_used) = (builder.params().clone(), builder.gas_used());
            let op = replayer.open_op().map(|op| (op, replayer.open_txs().to_vec(), gas_used));
            view.open(params, op);
        }
        Applied::Batch { first } => {
            let gas_used = replayer.open_builder().map_or(0, |b| b.gas_used());
            view.preconfirm(replayer.open_txs()[first..].to_vec(), gas_used);
        }
        Applied::Sealed(block, changes) => {
            debug_assert_eq!(
                block.txs.len(),
                view.open_block().txs.len(),
                "the view preconfirmed what the block holds"
            );
            return Ok(Followed::Sealed(view.seal(block.header, block.hash, changes)));
        }
        Applied::Signed { number, hash, signature } => {
            view.sign(number, hash, signature);
        }
        Applied::Epoch(epoch) => return Ok(Followed::Epoch(epoch)),
    }
    Ok(Followed::Applied)
}

/// Replays `records` onto `start` (a snapshot, or genesis when `None`),
/// keeping the newest `history_blocks_max` blocks. With `signer`, every
/// signature must recover to it. With `changes_after`, the state keeps
/// each re-executed block's changes, and those of blocks after that
/// number are returned (`Replayed::changes`) for the state history.
pub fn replay(
    chain: &ChainSpec,
    records: Vec<Record>,
    start: Option<(StateDb, SnapshotMeta)>,
    signer: Option<Address>,
    history_blocks_max: usize,
    changes_after: Option<u64>,
) -> Result<Replayed, ReplayError> {
    let (mut state, base_number, base_hash) = starting_state(chain, start);
    let mut changes = Vec::new();
    if changes_after.is_some() {
        state.keep_block_changes();
    }
    let mut blocks = VecDeque::from([genesis_block(chain)]);
    let mut snapshot_block_seen = base_number == 0;
    let mut signatures_checked = 0;
    let mut replayer = Replayer::new(chain, base_number, chain.genesis_header().clone());
    for record in records {
        match replayer.apply(record, &mut state)? {
            Applied::Sealed(block, block_changes) => {
                // A snapshot carries the block hashes before it; sealing records the rest.
                snapshot_block_seen |= block.header.number == base_number && block.hash == base_hash;
                if let (Some(after), Some(block_changes)) = (changes_after, block_changes)
                    && block.header.number > after
                {
                    changes.push((block.header.number, block_changes));
                }
                keep(&mut blocks, *block, history_blocks_max);
            }
            Applied::Signed { number, hash, signature } => {
                let block = signed_block(&mut blocks, number, hash)?;
                if let Some(expected) = signer {
                    check_signature(chain, number, hash, &signature, expected)?;
                    signatures_checked += 1;
                }
                block.signature = Some(signature);
            }
            Applied::Opened | Applied::Batch { .. } | Applied::Epoch(_) => {}
        }
    }
    // The snapshot's block must be in the log: a log cut short behind a
    // snapshot would re-seal heights already sealed and signed.
    if !snapshot_block_seen {
        return Err(diverged(base_number, "the snapshot's block is not in the batch log"));
    }
    let executed_blocks = replayer.executed_blocks;
    let epoch = replayer.epoch();
    let open = replayer.finish()?;
    Ok(Replayed { state, blocks, open, executed_blocks, signatures_checked, epoch, changes })
}

/// The state replay starts from, with its block's number and hash: the
/// snapshot's, or genesis.
fn starting_state(chain: &ChainSpec, start: Option<(StateDb, SnapshotMeta)>) -> (StateDb, u64, B256) {
    match start {
        Some((state, meta)) => (state, meta.block_number, meta.block_hash),
        None => {
            let mut state = chain.genesis_state();
            // Builds the state trie now, while the node is not yet ready: left
            // to the first seal, a large genesis (50,000 accounts: about
            // 150 ms) would stall the first block's preconfirmations.
            let root = state.state_root();
            debug_assert_eq!(root, chain.genesis_header().state_root);
            (state, 0, chain.genesis_hash())
        }
    }
}

/// Keeps `block`, and at most `history_blocks_max` (at least one) blocks.
fn keep(blocks: &mut VecDeque<StoredBlock>, block: StoredBlock, history_blocks_max: usize) {
    blocks.push_back(block);
    while blocks.len() > history_blocks_max.max(1) {
        blocks.pop_front();
    }
}

/// The kept block a signature is for: it must be kept, with that hash.
fn signed_block(blocks: &mut VecDeque<StoredBlock>, number: u64, hash: B256) -> Result<&mut StoredBlock, ReplayError> {
    let block = blocks
        .iter_mut()
        .rev()
        .find(|b| b.header.number == number)
        .ok_or_else(|| diverged(number, "a signature for an unknown block"))?;
    if block.hash != hash {
        return Err(diverged(number, "a signature over another block hash"));
    }
    Ok(block)
}

/// A block signature must recover to the block key's address `expected`.
fn check_signature(
    chain: &ChainSpec,
    number: u64,
    hash: B256,
    signature: &Signature65,
    expected: Address,
) -> Result<(), ReplayError> {
    let payload = Payload::SealedBlock { chain_id: chain.chain_id(), number, block_hash: hash, leader_epoch: 0 };
    if tephra_hsm::recover(signature, payload.signing_hash()) != Some(expected) {
        return Err(diverged(number, format!("signature does not recover to {expected}")));
    }
    Ok(())
}

/// A block read back from its records without executing it: an OP Stack
/// block's deposits (from its Open record) come first, then its batches.
fn history_block(
    chain: &ChainSpec,
    header: Header,
    open: OpenRecord,
    txs: Vec<(Address, TxEnvelope)>,
    mut receipts: Vec<ReceiptRecord>,
) -> Result<StoredBlock, ReplayError> {
    let deposits = open.op.as_ref().map_or(&[][..], |op| &op.deposits[..]);
    if deposits.len() + txs.len() != receipts.len() || header.number != open.number {
        return Err(diverged(open.number, "transactions and receipts disagree"));
    }
    let hash = header.hash_slow();
    let mut previous_gas = 0;
    let mut first_log_index = 0;
    let user_receipts = receipts.split_off(deposits.len());
    let canyon = chain.is_op_active("canyon_time", header.timestamp);
    let mut stored = Vec::with_capacity(receipts.len() + user_receipts.len());
    for (raw, r) in deposits.iter().zip(receipts) {
        let deposit = Deposit::decode_2718(raw).map_err(|e| diverged(open.number, e.to_string()))?;
        let gas_used = r.cumulative_gas_used.saturating_sub(previous_gas);
        previous_gas = r.cumulative_gas_used;
        let executed = ExecutedDeposit {
            hash: keccak256(raw),
            encoded: raw.clone(),
            contract_address: deposit.to.is_none().then(|| deposit.from.create(r.deposit_nonce.unwrap_or(0))),
            deposit_nonce: r.deposit_nonce.unwrap_or(0),
            receipt_version: canyon.then_some(tephra_exec::deposit::DEPOSIT_RECEIPT_VERSION),
            gas_used,
            deposit,
            receipt: r.into_receipt(),
        };
        let tx = StoredTx::from_deposit(&executed, first_log_index);
        first_log_index += executed.receipt.logs.len() as u64;
        stored.push(tx);
    }
    let op = open.op.as_ref().map(|record| op_block_info(chain, header.timestamp, record, None));
    let users = txs.into_iter().zip(user_receipts).map(|((sender, envelope), r)| {
        let gas_used = r.cumulative_gas_used.saturating_sub(previous_gas);
        previous_gas = r.cumulative_gas_used;
        let log_count = r.logs.len() as u64;
        let tx = StoredTx {
            hash: *envelope.tx_hash(),
            contract_address: envelope.is_create().then(|| sender.create(envelope.nonce())),
            effective_gas_price: envelope.effective_gas_price(Some(open.base_fee_per_gas)),
            receipt: r.into_receipt(),
            envelope: op_envelope(&envelope),
            sender,
            gas_used,
            first_log_index,
            preconf: None,
            deposit: None,
        };
        first_log_index += log_count;
        tx
    });
    stored.extend(users);
    Ok(StoredBlock { header, hash, txs: Arc::new(stored), signature: None, op })
}
