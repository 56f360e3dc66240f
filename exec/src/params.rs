//! The parameters of a block, fixed when it opens, and the chain rules that
//! derive a child's from its parent (gas limit, base fee, blob gas; on an OP
//! Stack chain also the EIP-1559 parameters of extraData). Imports neither
//! the EVM nor the block builder: both take these as given.

use alloy_consensus::Header;
use alloy_eips::{
    eip1559::{BaseFeeParams, INITIAL_BASE_FEE, calc_next_block_base_fee},
    eip7840::BlobParams,
};
use alloy_primitives::{Address, B256, Bytes};
use op_revm::OpSpecId;
use revm::primitives::hardfork::SpecId;
use tephra_types::limits::EXTRA_DATA_MAX_BYTES;

use crate::chainspec::ChainSpec;

/// Everything about a block that is fixed when it opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockParams {
    pub chain_id: u64,
    pub spec: SpecId,
    pub parent_hash: B256,
    pub number: u64,
    pub timestamp: u64,
    pub beneficiary: Address,
    pub gas_limit: u64,
    pub base_fee_per_gas: u64,
    /// The header's mix hash, PREVRANDAO to the EVM.
    pub prevrandao: B256,
    pub extra_data: Bytes,
    /// Cancun on: the header's excess blob gas.
    pub excess_blob_gas: Option<u64>,
    /// Cancun on: the root EIP-4788 stores and the header carries. Zero on
    /// an Ethereum-mode chain (no beacon chain stands behind it); on an OP
    /// Stack chain the L1 origin's.
    pub parent_beacon_block_root: B256,
    /// An OP Stack chain's block: its OP hardfork, which selects op-revm.
    pub op_spec: Option<OpSpecId>,
}

/// The SequencerFeeVault predeploy: every OP Stack block's fee recipient.
pub const SEQUENCER_FEE_VAULT: Address = alloy_primitives::address!("4200000000000000000000000000000000000011");

/// What an OP Stack block takes from its L1 origin and the system config,
/// as op-node's payload attributes fix them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpChoice {
    /// The system config's gas limit.
    pub gas_limit: u64,
    /// The system config's EIP-1559 parameters; zero for the chain's Canyon ones.
    pub eip1559: Eip1559Params,
    /// The L1 origin's parent beacon block root.
    pub parent_beacon_block_root: B256,
}

/// Holocene's EIP-1559 parameters, as SystemConfig's `eip1559Params` and a
/// Holocene header's extraData carry them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Eip1559Params {
    pub denominator: u32,
    pub elasticity: u32,
}

/// A Holocene header's extraData: version 0, denominator, elasticity (u32s, big endian).
pub const HOLOCENE_EXTRA_DATA_BYTES: usize = 9;

impl Eip1559Params {
    /// From SystemConfig's 8 bytes: denominator then elasticity.
    pub fn from_system_config(params: [u8; 8]) -> Self {
        let (denominator, elasticity) = params.split_at(4);
        Self {
            denominator: u32::from_be_bytes(denominator.try_into().unwrap_or_default()),
            elasticity: u32::from_be_bytes(elasticity.try_into().unwrap_or_default()),
        }
    }

    /// The parameters a Holocene header's extraData carries, if it is one.
    pub fn from_extra_data(extra_data: &[u8]) -> Option<Self> {
        if extra_data.len() != HOLOCENE_EXTRA_DATA_BYTES || extra_data[0] != 0 {
            return None;
        }
        let mut params = [0u8; 8];
        params.copy_from_slice(&extra_data[1..]);
        Some(Self::from_system_config(params))
    }

    pub fn extra_data(self) -> Bytes {
        let mut out = Vec::with_capacity(HOLOCENE_EXTRA_DATA_BYTES);
        out.push(0);
        out.extend_from_slice(&self.denominator.to_be_bytes());
        out.extend_from_slice(&self.elasticity.to_be_bytes());
        out.into()
    }

    fn base_fee_params(self) -> BaseFeeParams {
        BaseFeeParams::new(u128::from(self.denominator), u128::from(self.elasticity))
    }
}

/// What the sequencer chooses for a new block; the rest follows from the parent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockChoice {
    pub timestamp: u64,
    pub beneficiary: Address,
    pub prevrandao: B256,
    pub extra_data: Bytes,
    /// Required on an OP Stack chain, refused on an Ethereum one.
    pub op: Option<OpChoice>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenBlockError {
    #[error("block {number} would be sealed under {spec:?}; tephra seals post-merge blocks only")]
    PreMerge { number: u64, spec: SpecId },
    #[error("timestamp {timestamp} is not after the parent's {parent}")]
    TimestampNotAfterParent { timestamp: u64, parent: u64 },
    #[error("extra data of {0} bytes, at most 32 are allowed")]
    ExtraDataTooLong(usize),
    #[error("an OP Stack block needs its L1 origin's and system config's parameters")]
    OpChoiceMissing,
    #[error("an Ethereum-mode block takes no OP Stack parameters")]
    OpChoiceOnEthereum,
    #[error("parent {number} has no Holocene extraData (9 bytes, version 0): {extra_data}")]
    ParentExtraData { number: u64, extra_data: Bytes },
    #[error("EIP-1559 parameters with a zero denominator or elasticity: {0:?}")]
    Eip1559Params(Eip1559Params),
}

impl BlockParams {
    /// The parameters a sealed block was built with, read back from its
    /// header: what a call "at" that block runs with.
    pub fn of_header(chain: &ChainSpec, header: &Header) -> Self {
        Self {
            chain_id: chain.chain_id(),
            spec: chain.spec_at(header.number, header.timestamp),
            parent_hash: header.parent_hash,
            number: header.number,
            timestamp: header.timestamp,
            beneficiary: header.beneficiary,
            gas_limit: header.gas_limit,
            base_fee_per_gas: header.base_fee_per_gas.unwrap_or_default(),
            prevrandao: header.mix_hash,
            extra_data: header.extra_data.clone(),
            excess_blob_gas: header.excess_blob_gas,
            parent_beacon_block_root: header.parent_beacon_block_root.unwrap_or_default(),
            op_spec: chain.op_spec_at(header.timestamp),
        }
    }

    /// The price of a unit of blob gas in this block (EIP-4844's blob base
    /// fee, BLOBBASEFEE); none before Cancun.
    pub fn blob_base_fee(&self) -> Option<u128> {
        let fraction = u64::try_from(blob_params(self.spec).update_fraction).unwrap_or(u64::MAX);
        self.excess_blob_gas.map(|excess| revm::context_interface::block::calc_blob_gasprice(excess, fraction))
    }

    /// The parameters of the child of `parent`. Its timestamp is strictly
    /// above the parent's, as every Ethereum and OP Stack follower checks.
    pub fn child_of(chain: &ChainSpec, parent: &Header, choice: BlockChoice) -> Result<Self, OpenBlockError> {
        let number = parent.number + 1;
        let spec = chain.spec_at(number, choice.timestamp);
        if !spec.is_enabled_in(SpecId::MERGE) {
            return Err(OpenBlockError::PreMerge { number, spec });
        }
        if choice.timestamp <= parent.timestamp {
            return Err(OpenBlockError::TimestampNotAfterParent {
                timestamp: choice.timestamp,
                parent: parent.timestamp,
            });
        }
        if choice.extra_data.len() > EXTRA_DATA_MAX_BYTES {
            return Err(OpenBlockError::ExtraDataTooLong(choice.extra_data.len()));
        }
        let op_spec = chain.op_spec_at(choice.timestamp);
        let (gas_limit, base_fee_per_gas, extra_data, parent_beacon_block_root) = match (op_spec, &choice.op) {
            (None, None) => {
                (parent.gas_limit, next_base_fee(parent, BaseFeeParams::ethereum())?, choice.extra_data, B256::ZERO)
            }
            (Some(_), Some(op)) => {
                let base_fee = next_base_fee(parent, op_base_fee_params(chain, parent, choice.timestamp)?)?;
                let extra_data = op_extra_data(chain, op, choice.timestamp)?;
                (op.gas_limit, base_fee, extra_data, op.parent_beacon_block_root)
            }
            (Some(_), None) => return Err(OpenBlockError::OpChoiceMissing),
            (None, Some(_)) => return Err(OpenBlockError::OpChoiceOnEthereum),
        };
        // An OP Stack chain carries no blobs: its excess stays zero.
        let excess_blob_gas = chain.is_cancun_active(choice.timestamp).then(|| {
            blob_params(spec).next_block_excess_blob_gas_osaka(
                parent.excess_blob_gas.unwrap_or(0),
                parent.blob_gas_used.unwrap_or(0),
                parent.base_fee_per_gas.unwrap_or(0),
            )
        });
        Ok(Self {
            chain_id: chain.chain_id(),
            spec,
            parent_hash: parent.hash_slow(),
            number,
            timestamp: choice.timestamp,
            beneficiary: choice.beneficiary,
            gas_limit,
            base_fee_per_gas,
            prevrandao: choice.prevrandao,
            extra_data,
            excess_blob_gas,
            parent_beacon_block_root,
            op_spec,
        })
    }
}

/// The base fee after `parent` under `params`; London's initial one after a
/// pre-London parent.
fn next_base_fee(parent: &Header, params: BaseFeeParams) -> Result<u64, OpenBlockError> {
    Ok(match parent.base_fee_per_gas {
        Some(parent_base_fee) => calc_next_block_base_fee(parent.gas_used, parent.gas_limit, parent_base_fee, params),
        None => INITIAL_BASE_FEE,
    })
}

/// An OP Stack chain's EIP-1559 parameters for the child of `parent`, as
/// op-geth's `CalcBaseFee`: from Holocene on (at the parent) those the
/// parent's extraData carries; before, the chain config's, with Canyon's
/// denominator once Canyon is active at the child.
fn op_base_fee_params(chain: &ChainSpec, parent: &Header, timestamp: u64) -> Result<BaseFeeParams, OpenBlockError> {
    if chain.is_op_active("holocene_time", parent.timestamp) {
        let params = Eip1559Params::from_extra_data(&parent.extra_data).ok_or_else(|| {
            OpenBlockError::ParentExtraData { number: parent.number, extra_data: parent.extra_data.clone() }
        })?;
        if params.denominator == 0 || params.elasticity == 0 {
            return Err(OpenBlockError::Eip1559Params(params));
        }
        return Ok(params.base_fee_params());
    }
    Ok(chain.op_chain_base_fee_params(timestamp))
}

/// The child's extraData: from Holocene on the EIP-1559 parameters it was
/// built with (the system config's, or the chain's Canyon ones when those
/// are zero, as op-geth's miner writes them); empty before.
fn op_extra_data(chain: &ChainSpec, op: &OpChoice, timestamp: u64) -> Result<Bytes, OpenBlockError> {
    if !chain.is_op_active("holocene_time", timestamp) {
        return Ok(Bytes::new());
    }
    let params = match op.eip1559 {
        Eip1559Params { denominator: 0, elasticity: 0 } => chain.op_canyon_eip1559_params(),
        Eip1559Params { denominator: 0, .. } => return Err(OpenBlockError::Eip1559Params(op.eip1559)),
        params => params,
    };
    Ok(params.extra_data())
}

/// The blob parameters in force: tephra takes no blobs, but BLOBBASEFEE and the
/// header's excess blob gas still follow them.
pub fn blob_params(spec: SpecId) -> BlobParams {
    if spec.is_enabled_in(SpecId::OSAKA) {
        BlobParams::osaka()
    } else if spec.is_enabled_in(SpecId::PRAGUE) {
        BlobParams::prague()
    } else {
        BlobParams::cancun()
    }
}
