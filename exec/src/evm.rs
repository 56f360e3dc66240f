//! The one place tephra meets revm: environments in, outcomes out.

use alloy_consensus::{Transaction, TxEnvelope, Typed2718};
use alloy_eips::{eip2935::HISTORY_STORAGE_ADDRESS, eip4788::BEACON_ROOTS_ADDRESS};
use alloy_primitives::{Address, B256, Bytes, U256};
use revm::{
    Context, Database, ExecuteCommitEvm, ExecuteEvm, MainBuilder, MainContext, SystemCallCommitEvm,
    context::{BlockEnv, CfgEnv, ContextSetters, ContextTr, TxEnv, either::Either},
    context_interface::{
        block::BlobExcessGasAndPrice,
        result::{EVMError, ExecutionResult, HaltReason, InvalidTransaction},
    },
    database::CacheDB,
    handler::{EvmTr, FrameResult, Handler, MainnetContext, MainnetEvm, post_execution},
    primitives::{KECCAK_EMPTY, hardfork::SpecId},
    state::EvmState,
};
use tephra_types::{Reject, RejectCode};

use crate::{
    params::{BlockParams, blob_params},
    state::StateDb,
    verify::VerifiedTx,
};

/// An EVM for `block` on the database `DB`.
pub(crate) type BlockEvm<DB> = MainnetEvm<MainnetContext<DB>>;

/// An EVM executing straight on the state.
pub(crate) type StateEvm<'a> = BlockEvm<&'a mut StateDb>;

fn block_evm<DB: Database>(db: DB, block: &BlockParams) -> BlockEvm<DB> {
    Context::mainnet()
        .with_db(db)
        .with_block(block_env(block))
        .with_cfg(cfg_env(block.chain_id, block.spec))
        .build_mainnet()
}

/// An EVM for `block` executing straight on `state`.
pub(crate) fn state_evm<'a>(state: &'a mut StateDb, block: &BlockParams) -> StateEvm<'a> {
    state.set_spec(block.spec);
    block_evm(state, block)
}

/// The database an EVM executes on.
pub(crate) fn db_of<DB: Database>(vm: &mut BlockEvm<DB>) -> &mut DB {
    vm.ctx.db_mut()
}

/// Executes `tx` and commits its changes, as a node does.
pub(crate) fn transact_commit(vm: &mut StateEvm<'_>, tx: &VerifiedTx) -> Result<ExecutionResult<HaltReason>, Reject> {
    let output = vm.transact(tx_env(tx)).map_err(reject_of)?;
    vm.commit(output.state);
    Ok(output.result)
}

/// Executes `tx` on `state` for `block` without committing, as eth_call
/// does: its writes go to a scratch layer over the state. The nonce is not
/// checked (a call may name any); with `priced` false neither is the base
/// fee, so that a call naming no price runs at price zero.
pub(crate) fn call(
    state: &StateDb,
    block: &BlockParams,
    tx: TxEnv,
    priced: bool,
) -> Result<ExecutionResult<HaltReason>, Reject> {
    let mut cfg = cfg_env(block.chain_id, block.spec);
    cfg.disable_nonce_check = true;
    cfg.disable_base_fee = !priced;
    let mut vm =
        Context::mainnet().with_db(CacheDB::new(state)).with_block(block_env(block)).with_cfg(cfg).build_mainnet();
    Ok(vm.transact(tx).map_err(reject_of)?.result)
}

/// What a speculative EVM's database must do besides serving reads: know
/// when revm is paying the block beneficiary, so that this read is not taken
/// for a dependency of the transaction.
pub(crate) trait RewardAware: Database<Error = core::convert::Infallible> {
    fn set_paying_beneficiary(&mut self, paying: bool);
}

/// An EVM for `block` executing on a speculative view of the state.
pub(crate) fn speculative_evm<DB: RewardAware>(db: DB, block: &BlockParams) -> BlockEvm<DB> {
    block_evm(db, block)
}

/// revm's mainnet handler, except that it tells the database when the
/// beneficiary is being paid (`RewardAware`).
#[derive(Debug)]
struct SpeculativeHandler<DB>(core::marker::PhantomData<DB>);

impl<DB: RewardAware> Handler for SpeculativeHandler<DB> {
    type Evm = BlockEvm<DB>;
    type Error = EVMError<core::convert::Infallible>;
    type HaltReason = HaltReason;

    fn reward_beneficiary(&self, evm: &mut Self::Evm, exec_result: &mut FrameResult) -> Result<(), Self::Error> {
        evm.ctx().db_mut().set_paying_beneficiary(true);
        let paid = post_execution::reward_beneficiary(evm.ctx(), exec_result.gas());
        evm.ctx().db_mut().set_paying_beneficiary(false);
        paid.map_err(From::from)
    }
}

/// Executes `tx` without committing: its result and the accounts it loaded
/// (changed ones marked touched), as `transact` would give them.
pub(crate) fn speculate<DB: RewardAware>(
    vm: &mut BlockEvm<DB>,
    tx: &VerifiedTx,
) -> (Result<ExecutionResult<HaltReason>, Reject>, EvmState) {
    vm.ctx().set_tx(tx_env(tx));
    let result = SpeculativeHandler(core::marker::PhantomData).run(vm);
    // Clears the journal for the next transaction, on success or error.
    let changes = vm.finalize();
    (result.map_err(reject_of), changes)
}

/// The system calls that open a block, as geth makes them: EIP-4788 stores the
/// parent beacon root (tephra's is zero), EIP-2935 the parent block hash.
/// A system contract absent from the state is skipped, as calling it would do
/// nothing.
pub fn apply_pre_block_system_calls(state: &mut StateDb, block: &BlockParams) {
    let calls: [(bool, Address, B256); 2] = [
        (block.spec.is_enabled_in(SpecId::CANCUN), BEACON_ROOTS_ADDRESS, B256::ZERO),
        (block.spec.is_enabled_in(SpecId::PRAGUE), HISTORY_STORAGE_ADDRESS, block.parent_hash),
    ];
    let due: Vec<(Address, B256)> = calls
        .into_iter()
        .filter(|(active, address, _)| *active && state.account(address).is_some_and(|a| a.code_hash != KECCAK_EMPTY))
        .map(|(_, address, input)| (address, input))
        .collect();
    if due.is_empty() {
        return;
    }
    let mut vm = state_evm(state, block);
    for (address, input) in due {
        // A failing system contract leaves the block valid, as in geth.
        let _ = vm.system_call_commit(address, Bytes::copy_from_slice(input.as_slice()));
    }
}

fn cfg_env(chain_id: u64, spec: SpecId) -> CfgEnv {
    let mut cfg = CfgEnv::new_with_spec(spec);
    cfg.chain_id = chain_id;
    cfg
}

fn block_env(block: &BlockParams) -> BlockEnv {
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
fn tx_env(tx: &VerifiedTx) -> TxEnv {
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
fn reject_of<E: core::fmt::Display>(error: EVMError<E>) -> Reject {
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
