//! The oracle's own L2 chain: genesis state, kona's attributes for each next block, kona's
//! stateless executor, and the blocks it built (the only L2 data kona-derive is shown).

use crate::{Error, OracleError, block_on, genesis::GenesisState, l1::L1Rpc};
use alloy_consensus::{Block, BlockBody, Header, Sealed};
use alloy_eips::{BlockNumHash, eip2718::Decodable2718, eip4895::Withdrawals};
use alloy_op_evm::OpEvmFactory;
use alloy_primitives::{Address, B256, Bytes};
use alloy_trie::TrieAccount;
use async_trait::async_trait;
use kona_derive::{AttributesBuilder, L2ChainProvider, PipelineError, PipelineErrorKind, StatefulAttributesBuilder};
use kona_executor::{StatelessL2Builder, TrieDBProvider};
use kona_genesis::{RollupConfig, SystemConfig};
use kona_mpt::{NoopTrieHinter, TrieNode, TrieProvider};
use kona_protocol::{BatchValidationProvider, L2BlockInfo, to_system_config};
use op_alloy_consensus::{OpBlock, OpReceiptEnvelope, OpTxEnvelope};
use op_alloy_rpc_types_engine::OpPayloadAttributes;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

/// kona-derive retries temporary errors (an L1 block not mined yet: the pipeline is at the L1
/// head) and stops on critical ones.
impl From<OracleError> for PipelineErrorKind {
    fn from(e: OracleError) -> Self {
        if e.retry { PipelineError::Provider(e.message).temp() } else { PipelineError::Provider(e.message).crit() }
    }
}

/// Preimages and blocks: what the executor's `TrieDBProvider` and kona-derive's
/// `L2ChainProvider` read.
#[derive(Debug, Default)]
pub struct Store {
    nodes: HashMap<B256, Bytes>,
    code: HashMap<B256, Bytes>,
    headers: HashMap<B256, Header>,
    /// The oracle's blocks by number, genesis first.
    blocks: Vec<OpBlock>,
}

/// The executor's view of the [`Store`].
#[derive(Debug, Clone)]
pub struct Preimages(Arc<Mutex<Store>>);

impl TrieProvider for Preimages {
    type Error = String;

    fn trie_node_by_hash(&self, key: B256) -> Result<TrieNode, String> {
        let store = self.0.lock().unwrap();
        let rlp = store.nodes.get(&key).ok_or_else(|| format!("no trie node {key}"))?;
        alloy_rlp::Decodable::decode(&mut rlp.as_ref()).map_err(|e| format!("trie node {key}: {e}"))
    }
}

impl TrieDBProvider for Preimages {
    fn bytecode_by_hash(&self, code_hash: B256) -> Result<Bytes, String> {
        self.0.lock().unwrap().code.get(&code_hash).cloned().ok_or_else(|| format!("no code {code_hash}"))
    }

    fn header_by_hash(&self, hash: B256) -> Result<Header, String> {
        self.0.lock().unwrap().headers.get(&hash).cloned().ok_or_else(|| format!("no header {hash}"))
    }
}

/// kona-derive's view of the oracle's own L2 blocks.
#[derive(Debug, Clone)]
pub struct OwnBlocks {
    store: Arc<Mutex<Store>>,
    cfg: Arc<RollupConfig>,
}

impl OwnBlocks {
    fn block(&self, number: u64) -> Result<OpBlock, OracleError> {
        let store = self.store.lock().unwrap();
        let index = number
            .checked_sub(self.cfg.genesis.l2.number)
            .ok_or_else(|| OracleError::new(format!("L2 block {number} is before genesis")))?;
        store
            .blocks
            .get(index as usize)
            .cloned()
            .ok_or_else(|| OracleError::new(format!("the oracle has not built L2 block {number}")))
    }
}

#[async_trait]
impl BatchValidationProvider for OwnBlocks {
    type Error = OracleError;

    async fn l2_block_info_by_number(&mut self, number: u64) -> Result<L2BlockInfo, OracleError> {
        L2BlockInfo::from_block_and_genesis(&self.block(number)?, &self.cfg.genesis)
            .map_err(|e| OracleError::new(format!("L2 block {number}: {e}")))
    }

    async fn block_by_number(&mut self, number: u64) -> Result<OpBlock, OracleError> {
        self.block(number)
    }
}

#[async_trait]
impl L2ChainProvider for OwnBlocks {
    type Error = OracleError;

    async fn system_config_by_number(
        &mut self,
        number: u64,
        cfg: Arc<RollupConfig>,
    ) -> Result<SystemConfig, OracleError> {
        to_system_config(&self.block(number)?, &cfg)
            .map_err(|e| OracleError::new(format!("system config of L2 block {number}: {e}")))
    }
}

/// A block the oracle built.
#[derive(Debug, Clone)]
pub struct Built {
    pub header: Sealed<Header>,
    pub receipts: Vec<OpReceiptEnvelope>,
    /// EIP-2718 transactions, in order.
    pub transactions: Vec<Bytes>,
    /// How many of them kona derived (L1 info, user deposits, upgrade transactions).
    pub derived: usize,
    pub l1_origin: BlockNumHash,
    pub sequence_number: u64,
    /// Output root v0, when asked for.
    pub output_root: Option<B256>,
}

/// The oracle's L2 chain.
pub struct Chain {
    cfg: &'static RollupConfig,
    store: Arc<Mutex<Store>>,
    builder: StatelessL2Builder<'static, Preimages, NoopTrieHinter, OpEvmFactory>,
    attributes: StatefulAttributesBuilder<L1Rpc, OwnBlocks>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain").field("head", &self.head().number).finish()
    }
}

impl Chain {
    /// A chain at `genesis` (checked against rollup.json first).
    pub fn new(cfg: RollupConfig, genesis: GenesisState, l1: L1Rpc) -> Result<Self, Error> {
        crate::genesis::check_genesis(&genesis, &cfg).map_err(Error::Mismatch)?;
        // The builder borrows the config for its lifetime; the process keeps one chain.
        let cfg: &'static RollupConfig = Box::leak(Box::new(cfg));
        let withdrawals = cfg.is_canyon_active(genesis.header.timestamp).then(Withdrawals::default);
        let genesis_block = Block {
            header: genesis.header.inner().clone(),
            body: BlockBody { transactions: vec![], ommers: vec![], withdrawals },
        };
        let store = Arc::new(Mutex::new(Store {
            nodes: genesis.nodes,
            code: genesis.code,
            headers: HashMap::from([(genesis.header.hash(), genesis.header.inner().clone())]),
            blocks: vec![genesis_block],
        }));
        let builder = StatelessL2Builder::new(
            cfg,
            OpEvmFactory::default(),
            Preimages(store.clone()),
            NoopTrieHinter,
            genesis.header,
        );
        let own = OwnBlocks { store: store.clone(), cfg: Arc::new(cfg.clone()) };
        let attributes = StatefulAttributesBuilder::new(Arc::new(cfg.clone()), own, l1);
        Ok(Self { cfg, store, builder, attributes })
    }

    pub fn config(&self) -> &RollupConfig {
        self.cfg
    }

    /// kona-derive's view of this chain's blocks (its `L2ChainProvider`), for a pipeline.
    pub fn own_blocks(&self) -> OwnBlocks {
        OwnBlocks { store: self.store.clone(), cfg: Arc::new(self.cfg.clone()) }
    }

    /// The head's header.
    pub fn head(&self) -> Header {
        self.store.lock().unwrap().blocks.last().expect("genesis").header.clone()
    }

    pub fn head_info(&self) -> Result<L2BlockInfo, OracleError> {
        let store = self.store.lock().unwrap();
        L2BlockInfo::from_block_and_genesis(store.blocks.last().expect("genesis"), &self.cfg.genesis)
            .map_err(|e| OracleError::new(format!("head: {e}")))
    }

    /// The oracle's block `number`.
    pub fn block(&self, number: u64) -> Option<OpBlock> {
        let store = self.store.lock().unwrap();
        store.blocks.get(number.checked_sub(self.cfg.genesis.l2.number)? as usize).cloned()
    }

    /// kona-derive's payload attributes for the block after the head with L1 origin `epoch`.
    pub fn attributes(&mut self, epoch: BlockNumHash) -> Result<OpPayloadAttributes, OracleError> {
        let parent = self.head_info()?;
        block_on(self.attributes.prepare_payload_attributes(parent, epoch)).map_err(|e| {
            OracleError::new(format!("kona-derive attributes for origin {} ({}): {e}", epoch.number, epoch.hash))
        })
    }

    /// Executes `attrs` (kona's, plus the user transactions appended) on the head and makes the
    /// block the new head.
    pub fn execute(
        &mut self,
        attrs: OpPayloadAttributes,
        derived: usize,
        output_root: bool,
    ) -> Result<Built, OracleError> {
        let transactions: Vec<Bytes> = attrs.transactions.clone().unwrap_or_default();
        let decoded = transactions
            .iter()
            .map(|tx| OpTxEnvelope::decode_2718(&mut tx.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| OracleError::new(format!("a transaction does not decode: {e}")))?;
        let withdrawals = attrs.payload_attributes.withdrawals.clone().map(Withdrawals::new);
        let outcome = self.builder.build_block(attrs).map_err(|e| OracleError::new(format!("kona-executor: {e}")))?;
        let output_root = if output_root {
            Some(self.builder.compute_output_root().map_err(|e| OracleError::new(format!("output root: {e}")))?)
        } else {
            None
        };
        let new_code = self.builder.take_new_code();
        let header = outcome.header;
        let block = Block {
            header: header.inner().clone(),
            body: BlockBody { transactions: decoded, ommers: vec![], withdrawals },
        };
        let info = L2BlockInfo::from_block_and_genesis(&block, &self.cfg.genesis)
            .map_err(|e| OracleError::new(format!("built block: {e}")))?;
        let mut store = self.store.lock().unwrap();
        store.code.extend(new_code);
        store.headers.insert(header.hash(), header.inner().clone());
        store.blocks.push(block);
        Ok(Built {
            header,
            receipts: outcome.execution_result.receipts,
            transactions,
            derived,
            l1_origin: info.l1_origin,
            sequence_number: info.seq_num,
            output_root,
        })
    }

    /// Builds the next block with origin `epoch`: kona's attributes, then `user_transactions`.
    pub fn build_next(
        &mut self,
        epoch: BlockNumHash,
        user_transactions: Vec<Bytes>,
        output_root: bool,
    ) -> Result<Built, OracleError> {
        let mut attrs = self.attributes(epoch)?;
        let transactions = attrs.transactions.get_or_insert_with(Vec::new);
        let derived = transactions.len();
        transactions.extend(user_transactions);
        attrs.no_tx_pool = Some(derived == transactions.len());
        self.execute(attrs, derived, output_root)
    }

    /// A storage slot of the head state.
    pub fn storage(
        &mut self,
        address: Address,
        slot: alloy_primitives::U256,
    ) -> Result<alloy_primitives::U256, OracleError> {
        use revm::Database;
        let db = self.builder.trie_db();
        db.basic(address).map_err(|e| OracleError::new(format!("account {address}: {e}")))?;
        db.storage(address, slot).map_err(|e| OracleError::new(format!("storage {address} {slot}: {e}")))
    }

    /// An account of the head state (`None`: it does not exist).
    pub fn account(&mut self, address: Address) -> Result<Option<TrieAccount>, OracleError> {
        let number = self.head().number;
        self.builder
            .trie_db()
            .get_trie_account(&address, number)
            .map_err(|e| OracleError::new(format!("account {address}: {e}")))
    }
}
