//! The one place tephra meets revm: environments in, outcomes out.

use alloy_consensus::{Transaction, TxEnvelope, Typed2718};
use alloy_eips::eip7840::BlobParams;
use alloy_primitives::U256;
use revm::{
    context::{BlockEnv, CfgEnv, TxEnv, either::Either},
    context_interface::{
        block::BlobExcessGasAndPrice,
        result::{EVMError, InvalidTransaction},
    },
    primitives::hardfork::SpecId,
};
use tephra_types::{Reject, RejectCode};

use crate::{block::BlockParams, verify::VerifiedTx};

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

pub fn cfg_env(chain_id: u64, spec: SpecId) -> CfgEnv {
    let mut cfg = CfgEnv::new_with_spec(spec);
    cfg.chain_id = chain_id;
    cfg
}

pub fn block_env(block: &BlockParams) -> BlockEnv {
    let blob_excess_gas_and_price = block.excess_blob_gas.map(|excess| {
        BlobExcessGasAndPrice::new(excess, u64::try_from(blob_params(block.spec).update_fraction).unwrap_or(u64::MAX))
    });
    BlockEnv {
        number: U256::from(block.number),
        beneficiary: block.beneficiary,
        timestamp: U256::from(block.timestamp),
        gas_limit: block.gas_limit,
        basefee: block.base_fee_per_gas,
        difficulty: U256::ZERO,
        prevrandao: Some(block.prevrandao),
        blob_excess_gas_and_price,
        ..Default::default()
    }
}

/// The EVM's view of a verified transaction. Authorities come pre-recovered.
pub fn tx_env(tx: &VerifiedTx) -> TxEnv {
    let envelope: &TxEnvelope = &tx.envelope;
    TxEnv {
        tx_type: envelope.ty(),
        caller: tx.sender,
        gas_limit: envelope.gas_limit(),
        gas_price: envelope.max_fee_per_gas(),
        kind: envelope.kind(),
        value: envelope.value(),
        data: envelope.input().clone(),
        nonce: envelope.nonce(),
        chain_id: envelope.chain_id(),
        access_list: envelope.access_list().cloned().unwrap_or_default(),
        gas_priority_fee: envelope.max_priority_fee_per_gas(),
        authorization_list: tx.authorizations.iter().cloned().map(Either::Right).collect(),
        ..Default::default()
    }
}

/// Why the EVM refused a transaction before executing it, as a stable code.
pub fn reject_of<E: core::fmt::Display>(error: EVMError<E>) -> Reject {
    let EVMError::Transaction(invalid) = error else {
        return Reject::new(RejectCode::ExecInvalid, error.to_string());
    };
    let code = match &invalid {
        InvalidTransaction::NonceTooLow { .. } => RejectCode::ExecNonceTooLow,
        InvalidTransaction::NonceTooHigh { .. } => RejectCode::ExecNonceTooHigh,
        InvalidTransaction::LackOfFundForMaxFee { .. } | InvalidTransaction::OverflowPaymentInTransaction => {
            RejectCode::InsufficientFunds
        }
        InvalidTransaction::RejectCallerWithCode => RejectCode::SenderNotEoa,
        InvalidTransaction::GasPriceLessThanBasefee => RejectCode::FeeCapBelowBaseFee,
        InvalidTransaction::CallGasCostMoreThanGasLimit { .. }
        | InvalidTransaction::GasFloorMoreThanGasLimit { .. } => RejectCode::IntrinsicGasTooLow,
        _ => RejectCode::ExecInvalid,
    };
    Reject::new(code, invalid.to_string())
}
