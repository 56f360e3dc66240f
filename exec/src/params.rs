//! The parameters of a block, fixed when it opens, and the chain rules that
//! derive a child's from its parent (gas limit, base fee, blob gas). Imports
//! neither the EVM nor the block builder: both take these as given.

use alloy_consensus::Header;
use alloy_eips::{
    eip1559::{BaseFeeParams, INITIAL_BASE_FEE, calc_next_block_base_fee},
    eip7840::BlobParams,
};
use alloy_primitives::{Address, B256, Bytes};
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
}

/// What the sequencer chooses for a new block; the rest follows from the parent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockChoice {
    pub timestamp: u64,
    pub beneficiary: Address,
    pub prevrandao: B256,
    pub extra_data: Bytes,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenBlockError {
    #[error("block {number} would be sealed under {spec:?}; tephra seals post-merge blocks only")]
    PreMerge { number: u64, spec: SpecId },
    #[error("timestamp {timestamp} is not after the parent's {parent}")]
    TimestampNotAfterParent { timestamp: u64, parent: u64 },
    #[error("extra data of {0} bytes, at most 32 are allowed")]
    ExtraDataTooLong(usize),
}

impl BlockParams {
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
        let base_fee_per_gas = match parent.base_fee_per_gas {
            Some(parent_base_fee) => {
                calc_next_block_base_fee(parent.gas_used, parent.gas_limit, parent_base_fee, BaseFeeParams::ethereum())
            }
            None => INITIAL_BASE_FEE,
        };
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
            gas_limit: parent.gas_limit,
            base_fee_per_gas,
            prevrandao: choice.prevrandao,
            extra_data: choice.extra_data,
            excess_blob_gas,
        })
    }
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
