//! An OP Stack chain's rollup config: op-node's `rollup.json`, as op-deployer
//! writes it. What the sequencer and every verifier of the chain agree on:
//! the genesis blocks on L1 and L2, the block time, the sequencing window,
//! the hardfork times and the L1 addresses deposits and batches go through.
//!
//! Only the fields tephra acts on are typed; others (`alt_da`, `protocol_versions_address`)
//! are kept as they come, so that the file round-trips. Unknown fields are
//! ignored, as op-node ignores them.

use alloy_primitives::{Address, B64, B256};
use serde::{Deserialize, Serialize};

/// The largest rollup.json accepted: op-deployer's are about 1.5 KB.
pub const ROLLUP_CONFIG_BYTES_MAX: usize = 64 * 1024;

/// The last OP Stack hardfork tephra executes: a chain that schedules a later
/// one (Jovian) is refused at init rather than run under the wrong rules.
pub const LAST_SUPPORTED_HARDFORK: &str = "isthmus";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockId {
    pub hash: B256,
    pub number: u64,
}

/// The SystemConfig at the L2 genesis (its later values come from L1 logs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenesisSystemConfig {
    pub batcher_addr: Address,
    /// Pre-Ecotone fee overhead; zero since Ecotone.
    pub overhead: B256,
    /// Since Ecotone: version byte 0x01, then the blob base fee scalar and the
    /// base fee scalar in its last eight bytes.
    pub scalar: B256,
    pub gas_limit: u64,
    /// Holocene: EIP-1559 denominator and elasticity (u32 each); zero means
    /// the chain's `chain_op_config` values.
    #[serde(default)]
    pub eip1559_params: B64,
    /// Isthmus: operator fee scalar (u32) and constant (u64) in the last
    /// twelve bytes.
    #[serde(default)]
    pub operator_fee_params: B256,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupGenesis {
    pub l1: BlockId,
    pub l2: BlockId,
    pub l2_time: u64,
    pub system_config: GenesisSystemConfig,
}

/// EIP-1559 parameters of the chain (before Holocene, and when the
/// SystemConfig's are zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainOpConfig {
    pub eip1559_elasticity: u64,
    pub eip1559_denominator: u64,
    pub eip1559_denominator_canyon: u64,
}

/// op-node's rollup.json.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupConfig {
    pub genesis: RollupGenesis,
    pub block_time: u64,
    pub max_sequencer_drift: u64,
    pub seq_window_size: u64,
    pub channel_timeout: u64,
    pub l1_chain_id: u64,
    pub l2_chain_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regolith_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canyon_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecotone_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fjord_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granite_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holocene_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isthmus_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jovian_time: Option<u64>,
    pub batch_inbox_address: Address,
    pub deposit_contract_address: Address,
    pub l1_system_config_address: Address,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_versions_address: Option<Address>,
    pub chain_op_config: ChainOpConfig,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RollupConfigError {
    #[error("rollup config is {0} bytes, at most {ROLLUP_CONFIG_BYTES_MAX} are read")]
    TooLarge(usize),
    #[error("rollup config is not op-node's rollup.json: {0}")]
    Json(String),
    #[error("rollup config: {field} = {value}: {reason}")]
    Invalid { field: &'static str, value: String, reason: &'static str },
}

/// The OP Stack hardforks that a genesis file (op-geth) and a rollup config
/// (op-node) both schedule, in order: the rollup.json field, the genesis
/// config key. (Delta changed only the rollup node: op-geth has no time.)
pub const HARDFORK_FIELDS: [(&str, &str); 8] = [
    ("regolith_time", "regolithTime"),
    ("canyon_time", "canyonTime"),
    ("ecotone_time", "ecotoneTime"),
    ("fjord_time", "fjordTime"),
    ("granite_time", "graniteTime"),
    ("holocene_time", "holoceneTime"),
    ("isthmus_time", "isthmusTime"),
    ("jovian_time", "jovianTime"),
];

impl RollupConfig {
    /// Parses and checks a rollup.json.
    pub fn from_json(json: &str) -> Result<Self, RollupConfigError> {
        if json.len() > ROLLUP_CONFIG_BYTES_MAX {
            return Err(RollupConfigError::TooLarge(json.len()));
        }
        let config: Self = serde_json::from_str(json).map_err(|e| RollupConfigError::Json(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), RollupConfigError> {
        let invalid =
            |field, value: u64, reason| Err(RollupConfigError::Invalid { field, value: value.to_string(), reason });
        if self.block_time == 0 {
            return invalid("block_time", 0, "must be at least 1 s");
        }
        if self.l2_chain_id == 0 {
            return invalid("l2_chain_id", 0, "must not be 0");
        }
        if self.seq_window_size == 0 {
            return invalid("seq_window_size", 0, "must be at least one L1 block");
        }
        if let Some(jovian) = self.jovian_time {
            return invalid("jovian_time", jovian, "Jovian is not supported: tephra executes up to Isthmus");
        }
        if self.isthmus_time.is_none() {
            return Err(RollupConfigError::Invalid {
                field: "isthmus_time",
                value: "unset".into(),
                reason: "tephra sequences OP Stack chains at Isthmus",
            });
        }
        Ok(())
    }

    /// The activation time of the hardfork whose rollup.json field is
    /// `field` (one of `HARDFORK_FIELDS`, or `delta_time`).
    pub fn hardfork_time(&self, field: &str) -> Option<u64> {
        match field {
            "regolith_time" => self.regolith_time,
            "canyon_time" => self.canyon_time,
            "delta_time" => self.delta_time,
            "ecotone_time" => self.ecotone_time,
            "fjord_time" => self.fjord_time,
            "granite_time" => self.granite_time,
            "holocene_time" => self.holocene_time,
            "isthmus_time" => self.isthmus_time,
            "jovian_time" => self.jovian_time,
            _ => None,
        }
    }

    /// Whether the hardfork of rollup.json field `field` is active at `timestamp`.
    pub fn is_active(&self, field: &str, timestamp: u64) -> bool {
        self.hardfork_time(field).is_some_and(|at| at <= timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// op-deployer's rollup.json of devnet 420110017 (testdata/README.md).
    const ROLLUP_JSON: &str = include_str!("../../testdata/op/420110017-rollup.json");

    #[test]
    fn op_deployers_rollup_json_parses() {
        let config = RollupConfig::from_json(ROLLUP_JSON).unwrap();
        assert_eq!(config.l2_chain_id, 420_110_017);
        assert_eq!(config.block_time, 2);
        assert_eq!(config.genesis.l2.number, 0);
        assert_eq!(config.genesis.system_config.gas_limit, 60_000_000);
        assert_eq!(config.chain_op_config.eip1559_denominator_canyon, 250);
        assert!(config.is_active("isthmus_time", config.genesis.l2_time));
        assert!(!config.is_active("jovian_time", u64::MAX));
    }

    #[test]
    fn jovian_a_zero_block_time_and_garbage_are_refused_naming_the_field() {
        let mut value: serde_json::Value = serde_json::from_str(ROLLUP_JSON).unwrap();
        value["jovian_time"] = serde_json::json!(0);
        let error = RollupConfig::from_json(&value.to_string()).unwrap_err().to_string();
        assert!(error.contains("jovian_time") && error.contains("Isthmus"), "{error}");
        let mut value: serde_json::Value = serde_json::from_str(ROLLUP_JSON).unwrap();
        value["block_time"] = serde_json::json!(0);
        assert!(RollupConfig::from_json(&value.to_string()).unwrap_err().to_string().contains("block_time"));
        assert!(matches!(RollupConfig::from_json("{\"genesis\": 7}"), Err(RollupConfigError::Json(_))));
        let huge = " ".repeat(ROLLUP_CONFIG_BYTES_MAX + 1);
        assert_eq!(RollupConfig::from_json(&huge), Err(RollupConfigError::TooLarge(ROLLUP_CONFIG_BYTES_MAX + 1)));
    }
}
