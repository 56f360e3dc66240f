//! The chain: a geth-style genesis file, its fork schedule and its genesis block.
//!
//! The genesis header follows the fork schedule exactly as geth builds it, so
//! that the genesis state root and block hash of any geth-style genesis file
//! equal geth's; an OP Stack genesis (a `config.optimism` section) is built
//! as op-geth builds it, and checked against its op-node rollup config.

use alloy_consensus::{EMPTY_OMMER_ROOT_HASH, Header};
use alloy_eips::{
    eip1559::{BaseFeeParams, INITIAL_BASE_FEE},
    eip7685::EMPTY_REQUESTS_HASH,
};
use alloy_genesis::Genesis;
use alloy_primitives::{Address, B64, B256, address};
use alloy_trie::EMPTY_ROOT_HASH;
use op_revm::OpSpecId;
use revm::primitives::hardfork::SpecId;
use tephra_types::rollup::{ChainOpConfig, HARDFORK_FIELDS, RollupConfig};

use crate::{params::Eip1559Params, state::StateDb};

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
    #[error("genesis config.{key}: {reason}")]
    OpConfig { key: String, reason: String },
    #[error("genesis config.jovianTime: Jovian is not supported, tephra executes OP Stack chains up to Isthmus")]
    Jovian,
    #[error("the genesis file has no config.optimism section: it is not an OP Stack chain's")]
    NotOpStack,
    #[error("the rollup config and the genesis disagree on {field}: {rollup} in rollup.json, {genesis} in the genesis")]
    RollupMismatch { field: &'static str, rollup: String, genesis: String },
}

/// The OP Stack predeploy whose storage root an Isthmus header carries as
/// its withdrawals root.
pub const L2_TO_L1_MESSAGE_PASSER: Address = address!("4200000000000000000000000000000000000016");

/// The OP Stack side of a genesis file: op-geth's `config.optimism` and its
/// hardfork times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpGenesis {
    /// By `HARDFORK_FIELDS`, in its order.
    pub hardfork_times: [Option<u64>; HARDFORK_FIELDS.len()],
    pub eip1559: ChainOpConfig,
}

impl OpGenesis {
    /// The OP Stack part of `genesis`; `None` for an Ethereum genesis.
    fn of(genesis: &Genesis) -> Result<Option<Self>, ChainSpecError> {
        let extra = &genesis.config.extra_fields;
        let Some(optimism) = extra.get("optimism") else { return Ok(None) };
        let invalid = |key: &str, error: serde_json::Error| ChainSpecError::OpConfig {
            key: key.to_string(),
            reason: error.to_string(),
        };
        let eip1559 = serde_json::from_value(optimism.clone()).map_err(|e| invalid("optimism", e))?;
        let mut hardfork_times = [None; HARDFORK_FIELDS.len()];
        for (time, (_, key)) in hardfork_times.iter_mut().zip(HARDFORK_FIELDS) {
            *time =
                extra.get(key).map(|v| serde_json::from_value(v.clone())).transpose().map_err(|e| invalid(key, e))?;
        }
        let op = Self { hardfork_times, eip1559 };
        if op.time("jovian_time").is_some() {
            return Err(ChainSpecError::Jovian);
        }
        // A hardfork that activates after genesis starts with upgrade
        // transactions (Ecotone, Fjord, Isthmus) or a forced deployment
        // (Canyon) that tephra does not build: refused, not forked from.
        for (field, key) in HARDFORK_FIELDS {
            if op.time(field).is_some_and(|at| at > genesis.timestamp) {
                return Err(ChainSpecError::OpConfig {
                    key: key.to_string(),
                    reason: format!(
                        "activates after genesis (timestamp {}); tephra runs OP Stack chains whose hardforks are \
                         active at genesis or never, and builds no upgrade transactions",
                        genesis.timestamp
                    ),
                });
            }
        }
        Ok(Some(op))
    }

    /// The activation time of the hardfork whose rollup.json field is `field`.
    pub fn time(&self, field: &str) -> Option<u64> {
        let at = HARDFORK_FIELDS.iter().position(|(name, _)| *name == field)?;
        self.hardfork_times[at]
    }
}

/// A chain: its genesis file, fork schedule and genesis block.
#[derive(Clone, Debug)]
pub struct ChainSpec {
    genesis: Genesis,
    /// Present for an OP Stack chain.
    op: Option<OpGenesis>,
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
        let op = OpGenesis::of(&genesis)?;
        let mut state = StateDb::from_genesis(&genesis);
        let state_root = state.state_root();
        let message_passer_root = state.storage_root_of(&L2_TO_L1_MESSAGE_PASSER);
        let mut spec = Self { genesis, op, genesis_header: Header::default(), genesis_hash: B256::ZERO };
        spec.genesis_header = spec.build_genesis_header(state_root, message_passer_root);
        spec.genesis_hash = spec.genesis_header.hash_slow();
        Ok(spec)
    }

    /// Refuses a rollup config that describes another chain than this
    /// genesis, naming the first field on which they disagree.
    pub fn check_rollup(&self, rollup: &RollupConfig) -> Result<(), ChainSpecError> {
        let op = self.op.as_ref().ok_or(ChainSpecError::NotOpStack)?;
        let header = &self.genesis_header;
        let same = |field, rollup: String, genesis: String| {
            if rollup == genesis { Ok(()) } else { Err(ChainSpecError::RollupMismatch { field, rollup, genesis }) }
        };
        same("l2_chain_id", rollup.l2_chain_id.to_string(), self.chain_id().to_string())?;
        same("genesis.l2.number", rollup.genesis.l2.number.to_string(), header.number.to_string())?;
        same("genesis.l2.hash", rollup.genesis.l2.hash.to_string(), self.genesis_hash.to_string())?;
        same("genesis.l2_time", rollup.genesis.l2_time.to_string(), header.timestamp.to_string())?;
        let gas_limit = rollup.genesis.system_config.gas_limit;
        same("genesis.system_config.gasLimit", gas_limit.to_string(), header.gas_limit.to_string())?;
        for (field, _) in HARDFORK_FIELDS {
            same(field, format!("{:?}", rollup.hardfork_time(field)), format!("{:?}", op.time(field)))?;
        }
        same("chain_op_config", format!("{:?}", rollup.chain_op_config), format!("{:?}", op.eip1559))
    }

    /// The OP Stack part of the chain; `None` for an Ethereum chain.
    pub fn op(&self) -> Option<&OpGenesis> {
        self.op.as_ref()
    }

    /// Whether the OP Stack hardfork of rollup.json field `field` is active at `timestamp`.
    pub fn is_op_active(&self, field: &str, timestamp: u64) -> bool {
        self.op.as_ref().is_some_and(|op| Self::time_active(op.time(field), timestamp))
    }

    /// The OP Stack rules in force at `timestamp`, which select op-revm;
    /// `None` on an Ethereum chain.
    pub fn op_spec_at(&self, timestamp: u64) -> Option<OpSpecId> {
        self.op.as_ref()?;
        let forks = [
            ("isthmus_time", OpSpecId::ISTHMUS),
            ("holocene_time", OpSpecId::HOLOCENE),
            ("granite_time", OpSpecId::GRANITE),
            ("fjord_time", OpSpecId::FJORD),
            ("ecotone_time", OpSpecId::ECOTONE),
            ("canyon_time", OpSpecId::CANYON),
            ("regolith_time", OpSpecId::REGOLITH),
        ];
        let active = forks.iter().find(|(field, _)| self.is_op_active(field, timestamp));
        Some(active.map_or(OpSpecId::BEDROCK, |&(_, spec)| spec))
    }

    /// The EIP-1559 parameters of the chain config (before Holocene): its
    /// elasticity, and its Canyon denominator once Canyon is active.
    pub fn op_chain_base_fee_params(&self, timestamp: u64) -> BaseFeeParams {
        let Some(op) = &self.op else { return BaseFeeParams::ethereum() };
        let denominator = if self.is_op_active("canyon_time", timestamp) {
            op.eip1559.eip1559_denominator_canyon
        } else {
            op.eip1559.eip1559_denominator
        };
        BaseFeeParams::new(u128::from(denominator), u128::from(op.eip1559.eip1559_elasticity))
    }

    /// The Canyon EIP-1559 parameters of the chain config, which a Holocene
    /// header carries when the system config sets none.
    pub fn op_canyon_eip1559_params(&self) -> Eip1559Params {
        let Some(op) = &self.op else { return Eip1559Params::default() };
        let narrow = |value: u64| u32::try_from(value).unwrap_or(u32::MAX);
        Eip1559Params {
            denominator: narrow(op.eip1559.eip1559_denominator_canyon),
            elasticity: narrow(op.eip1559.eip1559_elasticity),
        }
    }

    fn build_genesis_header(&self, state_root: B256, message_passer_root: B256) -> Header {
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
            withdrawals_root: self.withdrawals_root(timestamp, message_passer_root),
            blob_gas_used: cancun.then(|| g.blob_gas_used.unwrap_or(0)),
            excess_blob_gas: cancun.then(|| g.excess_blob_gas.unwrap_or(0)),
            parent_beacon_block_root: cancun.then_some(B256::ZERO),
            requests_hash: self.is_prague_active(timestamp).then_some(EMPTY_REQUESTS_HASH),
            block_access_list_hash: None,
            slot_number: None,
        }
    }

    /// A header's withdrawals root: empty from Shanghai on, and on an OP Stack
    /// chain from Isthmus on the L2ToL1MessagePasser's storage root.
    fn withdrawals_root(&self, timestamp: u64, message_passer_root: B256) -> Option<B256> {
        if self.is_op_active("isthmus_time", timestamp) {
            return Some(message_passer_root);
        }
        self.is_shanghai_active(timestamp).then_some(EMPTY_ROOT_HASH)
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

    /// op-deployer's genesis and rollup config of the Isthmus devnet 420110017
    /// (testdata/README.md).
    fn op_devnet() -> (serde_json::Value, RollupConfig) {
        let gz: &[u8] = include_bytes!("../../testdata/op/420110017-genesis-l2.json.gz");
        let mut json = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz), &mut json).unwrap();
        let rollup = RollupConfig::from_json(include_str!("../../testdata/op/420110017-rollup.json")).unwrap();
        (serde_json::from_str(&json).unwrap(), rollup)
    }

    #[test]
    fn an_op_stack_genesis_hashes_as_op_deployer_wrote_it_and_matches_its_rollup_config() {
        let (genesis, rollup) = op_devnet();
        let spec = ChainSpec::from_genesis(serde_json::from_value(genesis).unwrap()).unwrap();
        // The hash op-deployer wrote into rollup.json commits to every
        // predeploy's code and storage and to the Isthmus header rules.
        assert_eq!(spec.genesis_hash(), b256!("adfcd0337e984caa0c2ffb2beebd2a7aeac06752cd18eb498242597d13caf708"));
        assert_eq!(spec.genesis_hash(), rollup.genesis.l2.hash);
        spec.check_rollup(&rollup).unwrap();
        let h = spec.genesis_header();
        assert_ne!(h.withdrawals_root, Some(EMPTY_ROOT_HASH), "Isthmus: the message passer's storage root");
        assert!(spec.is_op_active("isthmus_time", h.timestamp));
        assert_eq!(spec.spec_at(0, h.timestamp), SpecId::PRAGUE);
        assert!(ChainSpec::dev().check_rollup(&rollup).is_err_and(|e| matches!(e, ChainSpecError::NotOpStack)));
    }

    #[test]
    fn a_rollup_config_and_a_genesis_that_disagree_are_refused_naming_the_field() {
        let (genesis, rollup) = op_devnet();
        let spec = ChainSpec::from_genesis(serde_json::from_value(genesis.clone()).unwrap()).unwrap();
        let mut edits: Vec<(&str, RollupConfig)> = Vec::new();
        let mut other = rollup.clone();
        other.l2_chain_id += 1;
        edits.push(("l2_chain_id", other));
        let mut other = rollup.clone();
        other.genesis.l2.hash = B256::repeat_byte(1);
        edits.push(("genesis.l2.hash", other));
        let mut other = rollup.clone();
        other.genesis.l2_time += 2;
        edits.push(("genesis.l2_time", other));
        let mut other = rollup.clone();
        other.holocene_time = Some(10);
        edits.push(("holocene_time", other));
        let mut other = rollup.clone();
        other.chain_op_config.eip1559_elasticity = 2;
        edits.push(("chain_op_config", other));
        for (field, other) in edits {
            let error = spec.check_rollup(&other).unwrap_err();
            assert!(matches!(error, ChainSpecError::RollupMismatch { field: f, .. } if f == field), "{field}: {error}");
        }
        // A genesis that schedules Jovian is refused before anything runs.
        let mut jovian = genesis;
        jovian["config"]["jovianTime"] = serde_json::json!(0);
        let refused = ChainSpec::from_genesis(serde_json::from_value(jovian.clone()).unwrap()).unwrap_err();
        assert!(matches!(refused, ChainSpecError::Jovian), "{refused}");
        // So is a hardfork that activates after genesis: its upgrade
        // transactions are not built.
        let mut later = jovian;
        later["config"].as_object_mut().unwrap().remove("jovianTime");
        later["config"]["isthmusTime"] = serde_json::json!(rollup.genesis.l2_time + 10);
        let refused = ChainSpec::from_genesis(serde_json::from_value(later).unwrap()).unwrap_err();
        assert!(matches!(&refused, ChainSpecError::OpConfig { key, .. } if key == "isthmusTime"), "{refused}");
    }

    #[test]
    fn bad_genesis_is_refused_with_a_reason() {
        assert!(matches!(ChainSpec::from_genesis_json("{"), Err(ChainSpecError::Json(_))));
        let long_extra = format!(r#"{{"config":{{"chainId":7}},"extraData":"0x{}","alloc":{{}}}}"#, "ab".repeat(33));
        assert!(matches!(ChainSpec::from_genesis_json(&long_extra), Err(ChainSpecError::ExtraDataTooLong(33))));
    }
}
