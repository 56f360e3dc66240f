//! The chain: a geth-style genesis file, its fork schedule and its genesis block.
//!
//! The genesis header follows the fork schedule exactly as geth builds it, so
//! that the genesis state root and block hash of any geth-style genesis file
//! equal geth's.

use alloy_consensus::{EMPTY_OMMER_ROOT_HASH, Header};
use alloy_eips::{eip1559::INITIAL_BASE_FEE, eip7685::EMPTY_REQUESTS_HASH};
use alloy_genesis::Genesis;
use alloy_primitives::{B64, B256};
use alloy_trie::EMPTY_ROOT_HASH;
use revm::primitives::hardfork::SpecId;

use crate::state::StateDb;

/// Geth's default gas limit for a genesis that names none.
const GENESIS_GAS_LIMIT_DEFAULT: u64 = 5_000;

/// The embedded development genesis: chain id 31337, every fork through Osaka
/// active at genesis, the ten accounts of the standard dev mnemonic
/// (`test test ... junk`) funded with 10,000 ETH each, plus the EIP-2935
/// history contract and the deterministic CREATE2 deployer, as anvil has them.
pub const DEV_GENESIS_JSON: &str = include_str!("../genesis/dev.json");

#[derive(Debug, thiserror::Error)]
pub enum ChainSpecError {
    #[error("genesis file is not valid geth-style JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("genesis extraData is {0} bytes, at most 32 are allowed")]
    ExtraDataTooLong(usize),
    #[error("genesis chainId must not be 0")]
    ZeroChainId,
}

/// A chain: its genesis file, fork schedule and genesis block.
#[derive(Clone, Debug)]
pub struct ChainSpec {
    genesis: Genesis,
    genesis_header: Header,
    genesis_hash: B256,
}

impl ChainSpec {
    /// Parses a geth-style genesis file and builds its genesis block.
    pub fn from_genesis_json(json: &str) -> Result<Self, ChainSpecError> {
        let genesis: Genesis = serde_json::from_str(json)?;
        Self::from_genesis(genesis)
    }

    /// The embedded development chain.
    pub fn dev() -> Self {
        Self::from_genesis_json(DEV_GENESIS_JSON).expect("the embedded dev genesis is valid")
    }

    pub fn from_genesis(genesis: Genesis) -> Result<Self, ChainSpecError> {
        if genesis.extra_data.len() > tephra_types::limits::EXTRA_DATA_MAX_BYTES {
            return Err(ChainSpecError::ExtraDataTooLong(genesis.extra_data.len()));
        }
        if genesis.config.chain_id == 0 {
            return Err(ChainSpecError::ZeroChainId);
        }
        let state_root = StateDb::from_genesis(&genesis).state_root();
        let mut spec = Self { genesis, genesis_header: Header::default(), genesis_hash: B256::ZERO };
        spec.genesis_header = spec.build_genesis_header(state_root);
        spec.genesis_hash = spec.genesis_header.hash_slow();
        Ok(spec)
    }

    fn build_genesis_header(&self, state_root: B256) -> Header {
        let g = &self.genesis;
        let number = g.number.unwrap_or(0);
        let timestamp = g.timestamp;
        let gas_limit = if g.gas_limit == 0 { GENESIS_GAS_LIMIT_DEFAULT } else { g.gas_limit };
        let base_fee_per_gas = self
            .is_london_active(number)
            .then(|| g.base_fee_per_gas.map(|fee| u64::try_from(fee).unwrap_or(u64::MAX)).unwrap_or(INITIAL_BASE_FEE));
        let cancun = self.is_cancun_active(timestamp);
        Header {
            parent_hash: g.parent_hash.unwrap_or_default(),
            ommers_hash: EMPTY_OMMER_ROOT_HASH,
            beneficiary: g.coinbase,
            state_root,
            transactions_root: EMPTY_ROOT_HASH,
            receipts_root: EMPTY_ROOT_HASH,
            logs_bloom: Default::default(),
            difficulty: g.difficulty,
            number,
            gas_limit,
            gas_used: 0,
            timestamp,
            extra_data: g.extra_data.clone(),
            mix_hash: g.mix_hash,
            nonce: B64::from(g.nonce),
            base_fee_per_gas,
            withdrawals_root: self.is_shanghai_active(timestamp).then_some(EMPTY_ROOT_HASH),
            blob_gas_used: cancun.then(|| g.blob_gas_used.unwrap_or(0)),
            excess_blob_gas: cancun.then(|| g.excess_blob_gas.unwrap_or(0)),
            parent_beacon_block_root: cancun.then_some(B256::ZERO),
            requests_hash: self.is_prague_active(timestamp).then_some(EMPTY_REQUESTS_HASH),
            block_access_list_hash: None,
            slot_number: None,
        }
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    pub fn genesis_header(&self) -> &Header {
        &self.genesis_header
    }

    pub fn genesis_hash(&self) -> B256 {
        self.genesis_hash
    }

    pub fn chain_id(&self) -> u64 {
        self.genesis.config.chain_id
    }

    /// The genesis allocation as executable state.
    pub fn genesis_state(&self) -> StateDb {
        StateDb::from_genesis(&self.genesis)
    }

    fn block_active(fork: Option<u64>, number: u64) -> bool {
        fork.is_some_and(|at| at <= number)
    }

    fn time_active(fork: Option<u64>, timestamp: u64) -> bool {
        fork.is_some_and(|at| at <= timestamp)
    }

    pub fn is_london_active(&self, number: u64) -> bool {
        Self::block_active(self.genesis.config.london_block, number)
    }

    pub fn is_shanghai_active(&self, timestamp: u64) -> bool {
        Self::time_active(self.genesis.config.shanghai_time, timestamp)
    }

    pub fn is_cancun_active(&self, timestamp: u64) -> bool {
        Self::time_active(self.genesis.config.cancun_time, timestamp)
    }

    pub fn is_prague_active(&self, timestamp: u64) -> bool {
        Self::time_active(self.genesis.config.prague_time, timestamp)
    }

    /// Proof of stake from genesis on: a terminal total difficulty of zero, or
    /// one already passed, or a merge block at or below `number`.
    fn is_merged(&self, number: u64) -> bool {
        let c = &self.genesis.config;
        c.terminal_total_difficulty_passed
            || c.terminal_total_difficulty.is_some_and(|ttd| ttd.is_zero())
            || Self::block_active(c.merge_netsplit_block, number)
    }

    /// The EVM rules in force for a block at `number` and `timestamp`.
    pub fn spec_at(&self, number: u64, timestamp: u64) -> SpecId {
        let c = &self.genesis.config;
        let time_forks = [
            (c.osaka_time, SpecId::OSAKA),
            (c.prague_time, SpecId::PRAGUE),
            (c.cancun_time, SpecId::CANCUN),
            (c.shanghai_time, SpecId::SHANGHAI),
        ];
        if let Some(&(_, spec)) = time_forks.iter().find(|(at, _)| Self::time_active(*at, timestamp)) {
            return spec;
        }
        if self.is_merged(number) {
            return SpecId::MERGE;
        }
        let block_forks = [
            (c.london_block, SpecId::LONDON),
            (c.berlin_block, SpecId::BERLIN),
            (c.istanbul_block, SpecId::ISTANBUL),
            (c.petersburg_block, SpecId::PETERSBURG),
            // revm folds Constantinople into Petersburg: they activated together on
            // every public chain.
            (c.constantinople_block, SpecId::PETERSBURG),
            (c.byzantium_block, SpecId::BYZANTIUM),
            (c.eip158_block, SpecId::SPURIOUS_DRAGON),
            (c.eip150_block, SpecId::TANGERINE),
            (c.homestead_block, SpecId::HOMESTEAD),
        ];
        block_forks.iter().find(|(at, _)| Self::block_active(*at, number)).map_or(SpecId::FRONTIER, |&(_, spec)| spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::b256;

    const MAINNET_GENESIS_JSON: &str = include_str!("../../testdata/ethereum-mainnet-genesis.json");

    #[test]
    fn mainnet_genesis_matches_canonical_root_and_hash() {
        let spec = ChainSpec::from_genesis_json(MAINNET_GENESIS_JSON).unwrap();
        assert_eq!(
            spec.genesis_header().state_root,
            b256!("d7f8974fb5ac78d9ac099b9ad5018bedc2ce0a72dad1827a1709da30580f0544")
        );
        assert_eq!(spec.genesis_hash(), b256!("d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3"));
        assert_eq!(spec.genesis_header().base_fee_per_gas, None);
        assert_eq!(spec.spec_at(0, 0), SpecId::FRONTIER);
        assert_eq!(spec.spec_at(1_150_000, 0), SpecId::HOMESTEAD);
    }

    #[test]
    fn dev_genesis_starts_at_osaka_with_every_post_merge_field() {
        let spec = ChainSpec::dev();
        assert_eq!(spec.chain_id(), 31337);
        assert_eq!(spec.spec_at(0, 0), SpecId::OSAKA);
        let h = spec.genesis_header();
        assert_eq!(h.base_fee_per_gas, Some(1_000_000_000));
        assert_eq!(h.withdrawals_root, Some(EMPTY_ROOT_HASH));
        assert_eq!(h.blob_gas_used, Some(0));
        assert_eq!(h.parent_beacon_block_root, Some(B256::ZERO));
        assert_eq!(h.requests_hash, Some(EMPTY_REQUESTS_HASH));
        // The ten dev accounts, the EIP-2935 history contract and the CREATE2 deployer.
        assert_eq!(spec.genesis().alloc.len(), 12);
        assert!(spec.genesis().alloc.contains_key(&alloy_eips::eip2935::HISTORY_STORAGE_ADDRESS));
    }

    #[test]
    fn london_genesis_without_base_fee_gets_the_initial_one() {
        let json = r#"{"config":{"chainId":7,"londonBlock":0},"gasLimit":"0x0","difficulty":"0x1","alloc":{}}"#;
        let spec = ChainSpec::from_genesis_json(json).unwrap();
        assert_eq!(spec.genesis_header().base_fee_per_gas, Some(INITIAL_BASE_FEE));
        assert_eq!(spec.genesis_header().gas_limit, GENESIS_GAS_LIMIT_DEFAULT);
        assert_eq!(spec.genesis_header().withdrawals_root, None);
    }

    #[test]
    fn bad_genesis_is_refused_with_a_reason() {
        assert!(matches!(ChainSpec::from_genesis_json("{"), Err(ChainSpecError::Json(_))));
        let long_extra = format!(r#"{{"config":{{"chainId":7}},"extraData":"0x{}","alloc":{{}}}}"#, "ab".repeat(33));
        assert!(matches!(ChainSpec::from_genesis_json(&long_extra), Err(ChainSpecError::ExtraDataTooLong(33))));
    }
}
