//! What RPC reads: the state, the pool, the open block's preconfirmed
//! transactions and the recent sealed blocks. The sequencer is its only writer.

use std::{collections::VecDeque, sync::Arc};

use alloy_consensus::{Header, Receipt, Transaction as _, TxEnvelope};
use alloy_primitives::{Address, B256, Bloom, Log, map::B256Map};
use tephra_exec::{BlockParams, ExecutedTx, StateDb, pool::Pool};
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

#[derive(Debug)]
pub struct View {
    pub state: StateDb,
    pub pool: Pool,
    /// Sealed blocks, oldest first, at most `history_blocks_max`.
    pub blocks: VecDeque<StoredBlock>,
    pub history_blocks_max: usize,
    /// Sealed and preconfirmed transactions still in `blocks` or `open`.
    pub tx_index: B256Map<TxLocation>,
    pub open: OpenBlock,
}

impl View {
    pub fn head(&self) -> &StoredBlock {
        self.blocks.back().expect("genesis is always kept")
    }

    pub fn block(&self, number: u64) -> Option<&StoredBlock> {
        let first = self.blocks.front()?.header.number;
        self.blocks.get(usize::try_from(number.checked_sub(first)?).ok()?)
    }

    pub fn block_by_hash(&self, hash: &B256) -> Option<&StoredBlock> {
        // Recent blocks are asked for most: search from the head.
        self.blocks.iter().rev().find(|b| b.hash == *hash)
    }

    /// A sealed or preconfirmed transaction and its block number.
    pub fn tx(&self, hash: &B256) -> Option<(u64, usize, &StoredTx)> {
        let at = *self.tx_index.get(hash)?;
        if at.block_number == self.open.params.number {
            return self.open.txs.get(at.index).map(|tx| (at.block_number, at.index, tx));
        }
        self.block(at.block_number)?.txs.get(at.index).map(|tx| (at.block_number, at.index, tx))
    }

    /// Adds a sealed block, forgetting the oldest past the history bound.
    pub fn push_block(&mut self, block: StoredBlock) {
        for (index, tx) in block.txs.iter().enumerate() {
            self.tx_index.insert(tx.hash, TxLocation { block_number: block.header.number, index });
        }
        self.blocks.push_back(block);
        while self.blocks.len() > self.history_blocks_max {
            if let Some(old) = self.blocks.pop_front() {
                for tx in &old.txs {
                    self.tx_index.remove(&tx.hash);
                }
            }
        }
    }
}
