//! The chain's records as reads see them: transactions with their receipts
//! and signed preconfirmations, sealed blocks, the open block. `ChainView`
//! (chain_view.rs) owns them.

use std::sync::Arc;

use alloy_consensus::{Header, Receipt, Transaction as _, TxEnvelope};
use alloy_primitives::{Address, B256, Bloom, Log};
use tephra_exec::{BlockParams, ExecutedTx};
use tephra_hsm::{Certificate, MerkleTree, Signature65, SignedBatch};

/// A transaction in a sealed or open block, with its receipt.
#[derive(Clone, Debug)]
pub struct StoredTx {
    pub envelope: TxEnvelope,
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
            envelope: envelope.clone(),
            sender: executed.tx.sender,
            hash: executed.tx.hash,
            receipt: executed.receipt.clone(),
            gas_used: executed.gas_used,
            contract_address: executed.contract_address,
            effective_gas_price: envelope.effective_gas_price(Some(base_fee_per_gas)),
            first_log_index,
            preconf: None,
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
    pub txs: Vec<StoredTx>,
    pub signature: Option<Signature65>,
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
}
