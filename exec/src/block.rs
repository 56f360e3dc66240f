//! seal: the open block, from its parameters to a complete header. An OP
//! Stack block opens with its deposits (the L1-info deposit first), which
//! precede every sequenced transaction in both tries.

use alloy_consensus::{EMPTY_OMMER_ROOT_HASH, Header, ReceiptEnvelope, ReceiptWithBloom, TxType, Typed2718};
use alloy_eips::{eip2718::Encodable2718, eip7685::EMPTY_REQUESTS_HASH};
use alloy_primitives::{B256, Bloom};
use alloy_trie::{EMPTY_ROOT_HASH, HashBuilder, Nibbles};
use op_revm::{L1BlockInfo, OpSpecId};
use revm::primitives::hardfork::SpecId;
use tephra_types::{Reject, deposit::Deposit};

use crate::{
    chainspec::L2_TO_L1_MESSAGE_PASSER,
    commitment::Commitment,
    deposit::{ExecutedDeposit, execute_deposits},
    durable::BlockChanges,
    evm::apply_pre_block_system_calls,
    executor::{ExecutedTx, Executor, TxOutcome},
    params::BlockParams,
    state::StateDb,
    verify::VerifiedTx,
};

/// A transaction's receipt as the receipts trie holds it; its logs go into
/// the block's bloom.
fn receipt_leaf(tx: &ExecutedTx, bloom: &mut Bloom, out: &mut Vec<u8>) {
    let with_bloom = ReceiptWithBloom::from(tx.receipt.clone());
    *bloom |= with_bloom.logs_bloom;
    receipt_envelope(tx.tx.envelope.ty(), with_bloom).encode_2718(out);
}

/// The roots a block's header takes from the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealRoots {
    pub state_root: B256,
    /// The L2ToL1MessagePasser's storage root: an OP Stack header's
    /// withdrawals root from Isthmus on.
    pub message_passer_storage_root: B256,
}

impl SealRoots {
    /// The roots of the state `commitment` commits to.
    pub fn of(commitment: &mut Commitment) -> Self {
        Self {
            state_root: commitment.state_root(),
            message_passer_storage_root: commitment.storage_root(&alloy_primitives::keccak256(L2_TO_L1_MESSAGE_PASSER)),
        }
    }
}

/// A sealed block: its header, hash and the transactions with their receipts.
#[derive(Clone, Debug)]
pub struct SealedBlock {
    pub header: Header,
    pub hash: B256,
    /// An OP Stack block's deposits, which come first in the block.
    pub deposits: Vec<ExecutedDeposit>,
    pub transactions: Vec<ExecutedTx>,
    /// An OP Stack block's L1 fee parameters, as its L1-info deposit set them.
    pub l1_block_info: Option<L1BlockInfo>,
    /// What the block overwrote (its reverse changes), when the state keeps
    /// them (`StateDb::keep_block_changes`): the state history's input.
    pub changes: Option<BlockChanges>,
}

/// An ordered trie root (a block's transactions or receipts root) built as
/// the items arrive. Keys are RLP-encoded indices, whose order is 1..=127,
/// then 0, then 128 onwards; `add` feeds the streaming hash builder in that
/// order as far as the items known allow, so every finished subtree is
/// hashed once, early, and `root` only closes the last branches. The result
/// equals alloy-trie's `ordered_trie_root_with_encoder` over the same items.
#[derive(Clone, Debug, Default)]
pub struct OrderedRoot {
    builder: HashBuilder,
    /// Leaves added, in key order.
    added: usize,
    value: Vec<u8>,
}

impl OrderedRoot {
    /// Adds what can be added of the `len` items known; `done`: no more come.
    /// `encode(index, out)` writes item `index`'s leaf value; it is called
    /// once per index.
    pub fn add(&mut self, len: usize, done: bool, mut encode: impl FnMut(usize, &mut Vec<u8>)) {
        while self.added < len {
            let position = self.added;
            let index = match position {
                // Index 0 sorts after 127: at position 127, or last in a
                // shorter list, which only `done` tells.
                0..0x7f if position + 1 < len => position + 1,
                0..0x7f if done => 0,
                0..0x7f => return,
                0x7f => 0,
                _ => position,
            };
            self.value.clear();
            encode(index, &mut self.value);
            self.builder.add_leaf(Nibbles::unpack(alloy_rlp::encode_fixed_size(&index)), &self.value);
            self.added += 1;
        }
    }

    /// The root, once every item is added (`add` with `done`).
    pub fn root(&mut self) -> B256 {
        if self.added == 0 {
            return EMPTY_ROOT_HASH;
        }
        self.builder.root()
    }
}

/// The open block: transactions are executed into it as they arrive.
#[derive(Debug)]
pub struct BlockBuilder {
    params: BlockParams,
    deposits: Vec<ExecutedDeposit>,
    l1_block_info: Option<L1BlockInfo>,
    transactions: Vec<ExecutedTx>,
    gas_used: u64,
    /// Reused across batches so that executing a batch does not allocate it.
    outcomes: Vec<TxOutcome>,
    transactions_root: OrderedRoot,
    receipts_root: OrderedRoot,
    logs_bloom: Bloom,
}

impl BlockBuilder {
    /// Opens an Ethereum-mode block on `state`: makes the system calls that
    /// precede its first transaction.
    pub fn open(params: BlockParams, state: &mut StateDb) -> Self {
        assert!(params.op_spec.is_none(), "an OP Stack block opens with its deposits");
        apply_pre_block_system_calls(state, &params);
        Self::opened(params, Vec::new(), None)
    }

    /// Opens an OP Stack block on `state`: the system calls, then its
    /// deposits in order, the L1-info deposit first (which every OP block
    /// has). A deposit that fails is still included, as a failed deposit.
    pub fn open_op(params: BlockParams, state: &mut StateDb, deposits: Vec<Deposit>) -> Result<Self, Reject> {
        let spec = params.op_spec.expect("an OP Stack block's parameters");
        assert!(!deposits.is_empty(), "an OP Stack block starts with its L1-info deposit");
        apply_pre_block_system_calls(state, &params);
        let deposits = execute_deposits(state, &params, deposits)?;
        let info = L1BlockInfo::try_fetch(state, alloy_primitives::U256::from(params.number), spec)
            .unwrap_or_else(|never| match never {});
        Ok(Self::opened(params, deposits, Some(info)))
    }

    fn opened(params: BlockParams, deposits: Vec<ExecutedDeposit>, l1_block_info: Option<L1BlockInfo>) -> Self {
        let gas_used = deposits.last().map_or(0, |d| d.receipt.cumulative_gas_used);
        Self {
            params,
            deposits,
            l1_block_info,
            transactions: Vec::new(),
            gas_used,
            outcomes: Vec::new(),
            transactions_root: OrderedRoot::default(),
            receipts_root: OrderedRoot::default(),
            logs_bloom: Bloom::ZERO,
        }
    }

    /// Hashes what it can of the transactions and receipts tries now (with
    /// time to spare), so that the seal has less left to do. Sealing gives
    /// the same header whether or not, and however often, this ran.
    pub fn hash_ahead(&mut self) {
        self.add_leaves(false);
    }

    fn add_leaves(&mut self, done: bool) {
        let (deposits, txs) = (&self.deposits, &self.transactions);
        let (first_tx, len) = (deposits.len(), deposits.len() + txs.len());
        self.transactions_root.add(len, done, |i, out| match i.checked_sub(first_tx) {
            None => out.extend_from_slice(&deposits[i].encoded),
            Some(i) => out.extend_from_slice(&txs[i].tx.encoded),
        });
        let bloom = &mut self.logs_bloom;
        self.receipts_root.add(len, done, |i, out| match i.checked_sub(first_tx) {
            None => deposits[i].receipt_leaf(bloom, out),
            Some(i) => receipt_leaf(&txs[i], bloom, out),
        });
    }

    pub fn params(&self) -> &BlockParams {
        &self.params
    }

    /// Replaces the extra data the seal writes. A new leader that takes over
    /// an open block stamps its own epoch on it; execution never reads it.
    /// An OP Stack block's extraData is its EIP-1559 parameters, which every
    /// verifier checks: it keeps them.
    pub fn set_extra_data(&mut self, extra_data: alloy_primitives::Bytes) {
        if self.params.op_spec.is_none() {
            self.params.extra_data = extra_data;
        }
    }

    pub fn gas_used(&self) -> u64 {
        self.gas_used
    }

    pub fn transactions(&self) -> &[ExecutedTx] {
        &self.transactions
    }

    /// An OP Stack block's deposits, which precede its transactions.
    pub fn deposits(&self) -> &[ExecutedDeposit] {
        &self.deposits
    }

    /// An OP Stack block's L1 fee parameters.
    pub fn l1_block_info(&self) -> Option<&L1BlockInfo> {
        self.l1_block_info.as_ref()
    }

    /// Executes a batch into the block. Included transactions join the block;
    /// `on_outcome` sees every outcome in order, by reference (nothing is
    /// copied per transaction), with the transaction's index in the block for
    /// included ones.
    pub fn execute(
        &mut self,
        executor: &mut dyn Executor,
        state: &mut StateDb,
        txs: Vec<VerifiedTx>,
        mut on_outcome: impl FnMut(Option<usize>, &TxOutcome),
    ) {
        self.outcomes.clear();
        executor.execute(state, &self.params, self.gas_used, txs, &mut self.outcomes);
        for outcome in self.outcomes.drain(..) {
            let next = self.deposits.len() + self.transactions.len();
            let index = matches!(outcome, TxOutcome::Included(_)).then_some(next);
            on_outcome(index, &outcome);
            if let TxOutcome::Included(executed) = outcome {
                self.gas_used = executed.receipt.cumulative_gas_used;
                self.transactions.push(executed);
            }
        }
    }

    /// Closes the block: roots, bloom and a complete header. Records the hash
    /// in `state` for BLOCKHASH.
    pub fn seal(self, state: &mut StateDb) -> SealedBlock {
        let roots = SealRoots::of(state.commitment_up_to_date());
        self.seal_with(state, roots)
    }

    /// `seal`, with the state's roots from a commitment held elsewhere (a
    /// hasher thread's, fed every change of `state`).
    pub fn seal_with(mut self, state: &mut StateDb, roots: SealRoots) -> SealedBlock {
        self.add_leaves(true);
        let (transactions_root, receipts_root) = (self.transactions_root.root(), self.receipts_root.root());
        let (logs_bloom, p) = (self.logs_bloom, self.params);
        let cancun = p.excess_blob_gas.is_some();
        let withdrawals_root = match p.op_spec {
            Some(spec) if spec.is_enabled_in(OpSpecId::ISTHMUS) => Some(roots.message_passer_storage_root),
            _ => p.spec.is_enabled_in(SpecId::SHANGHAI).then_some(EMPTY_ROOT_HASH),
        };
        let header = Header {
            parent_hash: p.parent_hash,
            ommers_hash: EMPTY_OMMER_ROOT_HASH,
            beneficiary: p.beneficiary,
            state_root: roots.state_root,
            transactions_root,
            receipts_root,
            logs_bloom,
            difficulty: Default::default(),
            number: p.number,
            gas_limit: p.gas_limit,
            gas_used: self.gas_used,
            timestamp: p.timestamp,
            extra_data: p.extra_data,
            mix_hash: p.prevrandao,
            nonce: Default::default(),
            base_fee_per_gas: Some(p.base_fee_per_gas),
            withdrawals_root,
            blob_gas_used: cancun.then_some(0),
            excess_blob_gas: p.excess_blob_gas,
            parent_beacon_block_root: cancun.then_some(p.parent_beacon_block_root),
            requests_hash: p.spec.is_enabled_in(SpecId::PRAGUE).then_some(EMPTY_REQUESTS_HASH),
            block_access_list_hash: None,
            slot_number: None,
        };
        let hash = header.hash_slow();
        state.push_block_hash(header.number, hash);
        SealedBlock {
            header,
            hash,
            deposits: self.deposits,
            transactions: self.transactions,
            l1_block_info: self.l1_block_info,
            // Everything this block wrote is in: the next block's writes,
            // from its system calls on, are the next block's.
            changes: state.take_block_changes(),
        }
    }
}

/// A receipt in the envelope of its transaction's type.
pub fn receipt_envelope(tx_type: u8, receipt: ReceiptWithBloom) -> ReceiptEnvelope {
    match TxType::try_from(tx_type).unwrap_or(TxType::Legacy) {
        TxType::Legacy => ReceiptEnvelope::Legacy(receipt),
        TxType::Eip2930 => ReceiptEnvelope::Eip2930(receipt),
        TxType::Eip1559 => ReceiptEnvelope::Eip1559(receipt),
        TxType::Eip4844 => ReceiptEnvelope::Eip4844(receipt),
        TxType::Eip7702 => ReceiptEnvelope::Eip7702(receipt),
    }
}

#[cfg(test)]
mod tests {
    use alloy_trie::root::ordered_trie_root_with_encoder;

    use super::*;
    use crate::dev::SplitMix64;

    /// Built in steps of any size (and with any number of early additions),
    /// the root equals alloy-trie's over the whole list, around every place
    /// where the key order turns (index 0 after 127, two-byte keys from 128).
    #[test]
    fn ordered_root_built_in_steps_equals_the_whole_list_root() {
        let mut rng = SplitMix64(0x0b1d);
        for len in (0..=300).chain([1000, 4097]) {
            let items: Vec<Vec<u8>> = (0..len).map(|i| vec![u8::try_from(i % 251).unwrap(); 1 + i % 40]).collect();
            let expected = ordered_trie_root_with_encoder(&items, |item, out| out.extend_from_slice(item));
            let mut root = OrderedRoot::default();
            let mut known = 0;
            while known < len {
                known = (known + 1 + rng.pick(9)).min(len);
                root.add(known, false, |i, out| {
                    assert!(i < known, "index {i} of {known} known");
                    out.extend_from_slice(&items[i]);
                });
            }
            root.add(len, true, |i, out| out.extend_from_slice(&items[i]));
            assert_eq!(root.root(), expected, "{len} items");
        }
    }
}
