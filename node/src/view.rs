//! The chain's records as reads see them: transactions with their receipts
//! and signed preconfirmations, sealed blocks, the open block. `ChainView`
//! (chain_view.rs) owns them.

use std::sync::Arc;

use alloy_consensus::{Header, Receipt, Sealed, Transaction as _, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bloom, Log, TxKind, U256};
use op_alloy_consensus::{OpTxEnvelope, TxDeposit};
use tephra_exec::{BlockParams, ExecutedDeposit, ExecutedTx, L1BlockInfo, OpSpecId, trace::ReplayTx};
use tephra_hsm::{Certificate, MerkleTree, Signature65, SignedBatch};
use tephra_l1::L1Block;
use tephra_types::deposit::Deposit;

/// A transaction in a sealed or open block, with its receipt. The OP
/// Stack's envelope holds every type tephra includes: Ethereum's signed
/// ones and, on an OP Stack chain, deposits.
#[derive(Clone, Debug)]
pub struct StoredTx {
    pub envelope: OpTxEnvelope,
    pub sender: Address,
    pub hash: B256,
    pub receipt: Receipt<Log>,
    pub gas_used: u64,
    pub contract_address: Option<Address>,
    pub effective_gas_price: u128,
    /// Index in the block of this transaction's first log.
    pub first_log_index: u64,
    /// Its signed preconfirmation (none for transactions replayed after a restart).
    pub preconf: Option<PreconfRef>,
    /// A deposit's receipt fields.
    pub deposit: Option<DepositReceipt>,
}

/// What a deposit's receipt adds (op-geth's `depositNonce`, `depositReceiptVersion`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepositReceipt {
    pub nonce: u64,
    /// Canyon on.
    pub version: Option<u64>,
}

/// An OP Stack block's L1 side: its origin, its place in the epoch and the
/// L1 fee parameters its receipts report.
#[derive(Clone, Debug)]
pub struct OpBlockInfo {
    pub origin: L1Block,
    pub sequence_number: u64,
    /// SystemConfig's EIP-1559 parameters the block was built with.
    pub eip1559_params: [u8; 8],
    /// What receipts report the L1 fee from: op-revm's reading of the
    /// L1Block predeploy once the L1-info deposit ran. None for a block the
    /// start's replay read back without executing (before its snapshot).
    pub l1_block_info: Option<L1BlockInfo>,
    pub spec: OpSpecId,
    /// Past the sequencer drift: deposits only, no user transactions.
    pub deposits_only: bool,
}

/// A mini-block whose transaction-hash root the hot key signed.
#[derive(Debug)]
pub struct SignedMiniBlock {
    pub batch: SignedBatch,
    pub certificate: Certificate,
    /// The mini-block's transaction-hash tree: proofs are looked up, not rebuilt.
    pub tree: MerkleTree,
}

/// A transaction's place in its signed mini-block.
#[derive(Clone, Debug)]
pub struct PreconfRef {
    pub mini_block: Arc<SignedMiniBlock>,
    pub position: usize,
}

impl PreconfRef {
    /// The transaction's signed preconfirmation, with its proof.
    pub fn preconfirmation(&self, tx_hash: B256, index: u32) -> tephra_hsm::Preconfirmation {
        tephra_hsm::Preconfirmation {
            tx_hash,
            index,
            batch: self.mini_block.batch,
            proof: self.mini_block.tree.proof(self.position),
            certificate: self.mini_block.certificate,
        }
    }
}

impl StoredTx {
    pub fn new(executed: &ExecutedTx, base_fee_per_gas: u64, first_log_index: u64) -> Self {
        let envelope = &executed.tx.envelope;
        Self {
            envelope: op_envelope(envelope),
            sender: executed.tx.sender,
            hash: executed.tx.hash,
            receipt: executed.receipt.clone(),
            gas_used: executed.gas_used,
            contract_address: executed.contract_address,
            effective_gas_price: envelope.effective_gas_price(Some(base_fee_per_gas)),
            first_log_index,
            preconf: None,
            deposit: None,
        }
    }

    /// A deposit executed into an OP Stack block.
    pub fn from_deposit(executed: &ExecutedDeposit, first_log_index: u64) -> Self {
        let d = &executed.deposit;
        let deposit = TxDeposit {
            source_hash: d.source_hash,
            from: d.from,
            to: d.to.map_or(TxKind::Create, TxKind::Call),
            // L1 holds no more ether than u128 counts.
            mint: u128::try_from(d.mint).unwrap_or(u128::MAX),
            value: d.value,
            gas_limit: d.gas_limit,
            is_system_transaction: d.is_system_transaction,
            input: d.data.clone(),
        };
        Self {
            envelope: OpTxEnvelope::Deposit(Sealed::new_unchecked(deposit, executed.hash)),
            sender: d.from,
            hash: executed.hash,
            receipt: executed.receipt.clone(),
            gas_used: executed.gas_used,
            contract_address: executed.contract_address,
            effective_gas_price: 0,
            first_log_index,
            preconf: None,
            deposit: Some(DepositReceipt { nonce: executed.deposit_nonce, version: executed.receipt_version }),
        }
    }

    /// The transaction as a replay executes it again (`tephra_exec::trace`).
    pub fn replay(&self) -> ReplayTx {
        let user = |envelope: TxEnvelope| ReplayTx::User {
            encoded: envelope.encoded_2718().into(),
            envelope,
            sender: self.sender,
        };
        match &self.envelope {
            OpTxEnvelope::Legacy(tx) => user(TxEnvelope::Legacy(tx.clone())),
            OpTxEnvelope::Eip2930(tx) => user(TxEnvelope::Eip2930(tx.clone())),
            OpTxEnvelope::Eip1559(tx) => user(TxEnvelope::Eip1559(tx.clone())),
            OpTxEnvelope::Eip7702(tx) => user(TxEnvelope::Eip7702(tx.clone())),
            OpTxEnvelope::PostExec(_) => unreachable!("tephra builds no post-execution transactions"),
            OpTxEnvelope::Deposit(deposit) => ReplayTx::Deposit(Deposit {
                source_hash: deposit.source_hash,
                from: deposit.from,
                to: deposit.to.to().copied(),
                mint: U256::from(deposit.mint),
                value: deposit.value,
                gas_limit: deposit.gas_limit,
                is_system_transaction: deposit.is_system_transaction,
                data: deposit.input.clone(),
            }),
        }
    }

    pub fn logs_bloom(&self) -> Bloom {
        self.receipt.bloom_slow()
    }
}

/// A sealed block with its transactions, receipts and (once made) signature.
#[derive(Clone, Debug)]
pub struct StoredBlock {
    pub header: Header,
    pub hash: B256,
    /// Shared, not copied, between the view's history and the sealed block
    /// handed to subscribers and the signer: a seal copied every receipt.
    pub txs: Arc<Vec<StoredTx>>,
    pub signature: Option<Signature65>,
    /// An OP Stack block's L1 side.
    pub op: Option<Arc<OpBlockInfo>>,
}

/// Where a transaction sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxLocation {
    pub block_number: u64,
    pub index: usize,
}

/// The open block as RPC sees it: its parameters and what is preconfirmed.
#[derive(Clone, Debug)]
pub struct OpenBlock {
    pub params: BlockParams,
    pub txs: Vec<StoredTx>,
    pub gas_used: u64,
    /// An OP Stack block's L1 side.
    pub op: Option<Arc<OpBlockInfo>>,
}

/// A signed Ethereum transaction in the OP Stack's envelope, which has the
/// same variants but for blob transactions.
pub fn op_envelope(envelope: &TxEnvelope) -> OpTxEnvelope {
    match envelope.clone() {
        TxEnvelope::Legacy(tx) => OpTxEnvelope::Legacy(tx),
        TxEnvelope::Eip2930(tx) => OpTxEnvelope::Eip2930(tx),
        TxEnvelope::Eip1559(tx) => OpTxEnvelope::Eip1559(tx),
        TxEnvelope::Eip7702(tx) => OpTxEnvelope::Eip7702(tx),
        // verify refuses type 3 (code 103) before anything is stored.
        TxEnvelope::Eip4844(_) => unreachable!("blob transactions are refused at verify"),
    }
}
