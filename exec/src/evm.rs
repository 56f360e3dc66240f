//! The one place tephra meets revm: environments in, outcomes out. An
//! Ethereum-mode block runs on revm's mainnet EVM; an OP Stack block on
//! op-revm's, the maintained OP handler (deposits, the L1 data fee, the
//! operator fee and the fee vaults), never on fee rules of tephra's own.

use alloy_consensus::{Transaction, TxEnvelope, Typed2718};
use alloy_eips::eip7702::{RecoveredAuthorization, SignedAuthorization};
use alloy_eips::{eip2935::HISTORY_STORAGE_ADDRESS, eip4788::BEACON_ROOTS_ADDRESS};
use alloy_primitives::{Address, B256, Bytes, TxKind, U256};
use op_revm::{
    DefaultOp, OpBuilder, OpContext, OpHaltReason, OpSpecId, OpTransaction, OpTransactionError,
    api::builder::DefaultOpEvm, transaction::deposit::DepositTransactionParts,
};
use revm::{
    Context, Database, DatabaseCommit, ExecuteCommitEvm, ExecuteEvm, InspectEvm, Inspector, MainBuilder, MainContext,
    SystemCallCommitEvm, SystemCallEvm,
    context::{BlockEnv, CfgEnv, ContextSetters, ContextTr, TxEnv, either::Either},
    context_interface::{
        block::BlobExcessGasAndPrice,
        result::{EVMError, ExecutionResult, HaltReason, InvalidTransaction, ResultAndState},
    },
    database::CacheDB,
    handler::{EvmTr, FrameResult, Handler, MainnetContext, MainnetEvm, post_execution},
    inspector::NoOpInspector,
    primitives::{KECCAK_EMPTY, hardfork::SpecId},
    state::EvmState,
};
use tephra_types::{
    Reject, RejectCode,
    deposit::{DEPOSIT_TX_TYPE, Deposit},
};

use crate::{params::BlockParams, state::StateDb, verify::VerifiedTx};

/// An EVM for a block on the database `DB`: Ethereum's, or the OP Stack's,
/// with the inspector `I` (none but for traces, `trace.rs`).
pub(crate) enum BlockEvm<DB: Database, I = NoOpInspector> {
    Eth(Box<MainnetEvm<MainnetContext<DB>, I>>),
    Op(Box<DefaultOpEvm<OpContext<DB>, I>>),
}

/// An EVM executing straight on the state.
pub(crate) type StateEvm<'a> = BlockEvm<&'a mut StateDb>;

fn block_evm<DB: Database>(db: DB, block: &BlockParams) -> BlockEvm<DB> {
    evm_for(db, block, Relaxed::default(), NoOpInspector)
}

/// The checks a call relaxes: it may name any nonce, and one that names no
/// price pays no base fee.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Relaxed {
    pub nonce: bool,
    pub base_fee: bool,
}

impl Relaxed {
    pub(crate) fn call(priced: bool) -> Self {
        Self { nonce: true, base_fee: !priced }
    }
}

/// An EVM for `block` on `db`, which runs `inspector` on what it is asked
/// to inspect.
pub(crate) fn evm_for<DB: Database, I>(db: DB, block: &BlockParams, relaxed: Relaxed, inspector: I) -> BlockEvm<DB, I> {
    fn relax<S: Into<SpecId> + Copy>(mut cfg: CfgEnv<S>, relaxed: Relaxed) -> CfgEnv<S> {
        (cfg.disable_nonce_check, cfg.disable_base_fee) = (relaxed.nonce, relaxed.base_fee);
        cfg
    }
    let chain_id = block.chain_id;
    match block.op_spec {
        None => {
            let context = eth_context(db, block, relax(cfg_env(chain_id, block.spec), relaxed));
            BlockEvm::Eth(Box::new(context.build_mainnet_with_inspector(inspector)))
        }
        Some(spec) => {
            let context = Context::op()
                .with_db(db)
                .with_block(block_env(block))
                .with_cfg(relax(cfg_env(chain_id, spec), relaxed));
            BlockEvm::Op(Box::new(context.build_op_with_inspector(inspector)))
        }
    }
}

/// A transaction as a block's EVM takes it.
pub(crate) enum BlockTx {
    /// A user transaction and its EIP-2718 bytes, which an OP Stack chain
    /// charges the L1 data fee on (empty for a call: no fee, as in op-geth).
    User {
        tx: TxEnv,
        enveloped: Bytes,
    },
    Deposit(OpTransaction<TxEnv>),
}

impl BlockTx {
    /// What Ethereum's EVM sees of it.
    pub(crate) fn base(&self) -> &TxEnv {
        match self {
            Self::User { tx, .. } => tx,
            Self::Deposit(deposit) => &deposit.base,
        }
    }
}

/// An outcome in the OP Stack's terms, which hold Ethereum's.
pub(crate) type BlockOutcome = ResultAndState<OpHaltReason>;

impl<DB: Database, I> BlockEvm<DB, I>
where
    I: Inspector<MainnetContext<DB>> + Inspector<OpContext<DB>>,
{
    /// Executes `tx` without committing it; under the inspector if `inspect`.
    pub(crate) fn run(&mut self, tx: BlockTx, inspect: bool) -> Result<BlockOutcome, EVMError<DB::Error>> {
        match (self, tx) {
            (Self::Eth(vm), BlockTx::User { tx, .. }) => {
                let output = if inspect { vm.inspect_tx(tx) } else { vm.transact(tx) }?;
                Ok(ResultAndState::new(output.result.map_haltreason(OpHaltReason::Base), output.state))
            }
            (Self::Eth(_), BlockTx::Deposit(_)) => {
                Err(EVMError::Custom("a deposit on an Ethereum-mode chain".to_string()))
            }
            (Self::Op(vm), tx) => {
                let tx = match tx {
                    BlockTx::User { tx, enveloped } => op_user_tx(tx, enveloped),
                    BlockTx::Deposit(deposit) => deposit,
                };
                if inspect { vm.inspect_tx(tx) } else { vm.transact(tx) }.map_err(eth_error_of)
            }
        }
    }
}

impl<DB: Database, I> BlockEvm<DB, I> {
    /// The inspector, the database and the block, borrowed at once.
    pub(crate) fn parts(&mut self) -> (&mut I, &mut DB, &BlockEnv) {
        match self {
            Self::Eth(vm) => (&mut vm.inspector, &mut vm.ctx.journaled_state.database, &vm.ctx.block),
            Self::Op(vm) => (&mut vm.0.inspector, &mut vm.0.ctx.journaled_state.database, &vm.0.ctx.block),
        }
    }
}

impl<DB: Database + DatabaseCommit, I> BlockEvm<DB, I> {
    pub(crate) fn commit(&mut self, state: EvmState) {
        match self {
            Self::Eth(vm) => vm.commit(state),
            Self::Op(vm) => vm.commit(state),
        }
    }
}

/// op-revm's refusal in Ethereum's terms: the OP Stack's own reasons are
/// told in words.
fn eth_error_of<E>(error: EVMError<E, OpTransactionError>) -> EVMError<E> {
    match error {
        EVMError::Transaction(OpTransactionError::Base(invalid)) => EVMError::Transaction(invalid),
        EVMError::Transaction(op) => EVMError::Custom(op.to_string()),
        EVMError::Header(header) => EVMError::Header(header),
        EVMError::Database(error) => EVMError::Database(error),
        EVMError::Custom(message) => EVMError::Custom(message),
        EVMError::CustomAny(any) => EVMError::CustomAny(any),
    }
}

fn eth_context<DB: Database>(db: DB, block: &BlockParams, cfg: CfgEnv) -> MainnetContext<DB> {
    Context::mainnet().with_db(db).with_block(block_env(block)).with_cfg(cfg)
}

/// An EVM for `block` executing straight on `state`.
pub(crate) fn state_evm<'a>(state: &'a mut StateDb, block: &BlockParams) -> StateEvm<'a> {
    state.set_spec(block.spec);
    block_evm(state, block)
}

/// The database an EVM executes on.
pub(crate) fn db_of<DB: Database, I>(vm: &mut BlockEvm<DB, I>) -> &mut DB {
    match vm {
        BlockEvm::Eth(vm) => vm.ctx.db_mut(),
        BlockEvm::Op(vm) => vm.0.ctx.db_mut(),
    }
}

/// Executes `tx` and commits its changes, as a node does.
pub(crate) fn transact_commit(vm: &mut StateEvm<'_>, tx: &VerifiedTx) -> Result<ExecutionResult<HaltReason>, Reject> {
    match vm {
        BlockEvm::Eth(vm) => {
            let output = vm.transact(tx_env(tx)).map_err(reject_of)?;
            vm.commit(output.state);
            Ok(output.result)
        }
        BlockEvm::Op(vm) => {
            // The L1 data fee (Fjord's) from the size verify estimated, once
            // op-revm has loaded this block's L1 fee parameters (after its
            // first transaction).
            let fjord = vm.0.ctx.cfg.spec.is_enabled_in(OpSpecId::FJORD);
            let (chain, number) = (&mut vm.0.ctx.chain, vm.0.ctx.block.number);
            if let Some(size) = tx.l1_estimated_size
                && fjord
                && chain.l2_block == Some(number)
            {
                chain.tx_l1_cost = Some(crate::op_fees::l1_cost_fjord(chain, size));
            }
            let output = vm.transact(op_user_tx(tx_env(tx), tx.encoded.clone())).map_err(reject_of_op)?;
            vm.commit(output.state);
            user_result(output.result)
        }
    }
}

/// Executes a deposit and commits its changes. A deposit cannot be
/// refused: one that fails (halts, or cannot pay its intrinsic gas) is
/// `OpHaltReason::FailedDeposit`, its mint and nonce kept (op-revm's
/// `catch_error`); only a broken database errs.
pub(crate) fn transact_deposit(
    vm: &mut StateEvm<'_>,
    deposit: &Deposit,
) -> Result<ExecutionResult<OpHaltReason>, Reject> {
    let BlockEvm::Op(vm) = vm else {
        return Err(Reject::new(RejectCode::ExecInvalid, "a deposit on an Ethereum-mode chain".to_string()));
    };
    let output = vm.transact(deposit_tx(deposit)).map_err(reject_of_op)?;
    vm.commit(output.state);
    Ok(output.result)
}

/// A deposit as op-revm takes it.
pub(crate) fn deposit_tx(deposit: &Deposit) -> OpTransaction<TxEnv> {
    let base = TxEnv {
        tx_type: DEPOSIT_TX_TYPE,
        caller: deposit.from,
        gas_limit: deposit.gas_limit,
        gas_price: 0,
        kind: deposit.to.map_or(TxKind::Create, TxKind::Call),
        value: deposit.value,
        data: deposit.data.clone(),
        chain_id: None,
        ..Default::default()
    };
    let parts = DepositTransactionParts {
        source_hash: deposit.source_hash,
        // L1 can hold no more ether than u128 counts.
        mint: Some(u128::try_from(deposit.mint).unwrap_or(u128::MAX)),
        is_system_transaction: deposit.is_system_transaction,
    };
    OpTransaction { base, enveloped_tx: None, deposit: parts }
}

/// A state a call reads: the state itself, or what reads may see of it
/// (`StateDb::durable`).
pub trait CallState: revm::DatabaseRef<Error = core::convert::Infallible> + Copy {}

impl<S: revm::DatabaseRef<Error = core::convert::Infallible> + Copy> CallState for S {}

/// Executes `tx` on `state` for `block` without committing, as eth_call
/// does: its writes go to a scratch layer over the state. The nonce is not
/// checked (a call may name any); with `priced` false neither is the base
/// fee, so that a call naming no price runs at price zero. On an OP Stack
/// chain a call pays no L1 data fee, as in op-geth (it has no envelope).
pub(crate) fn call(
    state: impl CallState,
    block: &BlockParams,
    tx: TxEnv,
    priced: bool,
) -> Result<ExecutionResult<HaltReason>, Reject> {
    let mut vm = evm_for(CacheDB::new(state), block, Relaxed::call(priced), NoOpInspector);
    user_result(vm.run(BlockTx::User { tx, enveloped: Bytes::new() }, false).map_err(reject_of)?.result)
}

/// A user transaction for op-revm: the L1 data fee is charged on its
/// EIP-2718 bytes (empty for a call: no fee).
fn op_user_tx(base: TxEnv, enveloped: Bytes) -> OpTransaction<TxEnv> {
    OpTransaction { base, enveloped_tx: Some(enveloped), deposit: DepositTransactionParts::default() }
}

/// A user transaction's result in Ethereum's terms: only a deposit can end
/// in `FailedDeposit`.
fn user_result(result: ExecutionResult<OpHaltReason>) -> Result<ExecutionResult<HaltReason>, Reject> {
    let failed_deposit = || Reject::new(RejectCode::ExecInvalid, "a user transaction failed as a deposit".to_string());
    let mut failed = false;
    let result = result.map_haltreason(|reason| match reason {
        OpHaltReason::Base(reason) => reason,
        OpHaltReason::FailedDeposit => {
            failed = true;
            HaltReason::OutOfGas(revm::context_interface::result::OutOfGasError::Basic)
        }
    });
    if failed { Err(failed_deposit()) } else { Ok(result) }
}

/// What a speculative EVM's database must do besides serving reads: know
/// when revm is paying the block beneficiary, so that this read is not taken
/// for a dependency of the transaction.
pub(crate) trait RewardAware: Database<Error = core::convert::Infallible> {
    fn set_paying_beneficiary(&mut self, paying: bool);
}

/// An Ethereum-mode EVM on a speculative view of the state.
pub(crate) type SpeculativeEvm<DB> = MainnetEvm<MainnetContext<DB>>;

/// An EVM for `block` executing on a speculative view of the state.
/// Ethereum mode only: OP Stack blocks execute sequentially.
pub(crate) fn speculative_evm<DB: RewardAware>(db: DB, block: &BlockParams) -> SpeculativeEvm<DB> {
    eth_context(db, block, cfg_env(block.chain_id, block.spec)).build_mainnet()
}

/// The database a speculative EVM executes on.
pub(crate) fn speculative_db<DB: RewardAware>(vm: &mut SpeculativeEvm<DB>) -> &mut DB {
    vm.ctx.db_mut()
}

/// revm's mainnet handler, except that it tells the database when the
/// beneficiary is being paid (`RewardAware`).
#[derive(Debug)]
struct SpeculativeHandler<DB>(core::marker::PhantomData<DB>);

impl<DB: RewardAware> Handler for SpeculativeHandler<DB> {
    type Evm = SpeculativeEvm<DB>;
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
    vm: &mut SpeculativeEvm<DB>,
    tx: &VerifiedTx,
) -> (Result<ExecutionResult<HaltReason>, Reject>, EvmState) {
    vm.ctx().set_tx(tx_env(tx));
    let result = SpeculativeHandler(core::marker::PhantomData).run(vm);
    // Clears the journal for the next transaction, on success or error.
    let changes = vm.finalize();
    (result.map_err(reject_of), changes)
}

/// The system calls that open a block, as geth makes them: EIP-4788 stores the
/// parent beacon root, EIP-2935 the parent block hash.
/// A system contract absent from the state is skipped, as calling it would do
/// nothing.
pub fn apply_pre_block_system_calls(state: &mut StateDb, block: &BlockParams) {
    let Ok(due) = due_system_calls::<core::convert::Infallible>(block, |address| {
        Ok(state.account(address).is_some_and(|a| a.code_hash != KECCAK_EMPTY))
    });
    if due.is_empty() {
        return;
    }
    make_system_calls(&mut state_evm(state, block), due);
}

/// The system calls `block` opens with: (contract, input), those whose
/// contract `has_code` says is there.
pub(crate) fn due_system_calls<E>(
    block: &BlockParams,
    mut has_code: impl FnMut(&Address) -> Result<bool, E>,
) -> Result<Vec<(Address, B256)>, E> {
    let calls: [(bool, Address, B256); 2] = [
        (block.spec.is_enabled_in(SpecId::CANCUN), BEACON_ROOTS_ADDRESS, block.parent_beacon_block_root),
        (block.spec.is_enabled_in(SpecId::PRAGUE), HISTORY_STORAGE_ADDRESS, block.parent_hash),
    ];
    let mut due = Vec::with_capacity(calls.len());
    for (active, address, input) in calls {
        if active && has_code(&address)? {
            due.push((address, input));
        }
    }
    Ok(due)
}

/// Makes the system calls `due` and commits them. A failing system
/// contract leaves the block valid, as in geth.
pub(crate) fn make_system_calls<DB: Database + DatabaseCommit, I>(vm: &mut BlockEvm<DB, I>, due: Vec<(Address, B256)>) {
    for (address, input) in due {
        let input = Bytes::copy_from_slice(input.as_slice());
        match vm {
            BlockEvm::Eth(vm) => {
                let _ = vm.system_call_commit(address, input);
            }
            BlockEvm::Op(vm) => {
                if let Ok(output) = vm.system_call(address, input) {
                    vm.commit(output.state);
                }
            }
        }
    }
}

fn cfg_env<SPEC: Into<SpecId> + Copy>(chain_id: u64, spec: SPEC) -> CfgEnv<SPEC> {
    let mut cfg = CfgEnv::new_with_spec(spec);
    cfg.chain_id = chain_id;
    cfg
}

fn block_env(block: &BlockParams) -> BlockEnv {
    let blob_excess_gas_and_price = block
        .excess_blob_gas
        .zip(block.blob_base_fee())
        .map(|(excess_blob_gas, price)| BlobExcessGasAndPrice { excess_blob_gas, blob_gasprice: price });
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
    let authorizations = tx.authorizations.iter().cloned().map(Either::Right).collect();
    signed_tx_env(&tx.envelope, tx.sender, authorizations)
}

/// The EVM's view of a signed transaction from `sender`; EIP-7702
/// authorities recovered already (`Either::Right`) or left to revm.
pub(crate) fn signed_tx_env(
    envelope: &TxEnvelope,
    sender: Address,
    authorization_list: Vec<Either<SignedAuthorization, RecoveredAuthorization>>,
) -> TxEnv {
    TxEnv {
        tx_type: envelope.ty(),
        caller: sender,
        gas_limit: envelope.gas_limit(),
        gas_price: envelope.max_fee_per_gas(),
        kind: envelope.kind(),
        value: envelope.value(),
        data: envelope.input().clone(),
        nonce: envelope.nonce(),
        chain_id: envelope.chain_id(),
        access_list: envelope.access_list().cloned().unwrap_or_default(),
        gas_priority_fee: envelope.max_priority_fee_per_gas(),
        authorization_list,
        ..Default::default()
    }
}

/// Why op-revm refused a transaction before executing it, as a stable code.
fn reject_of_op<E: core::fmt::Display>(error: EVMError<E, OpTransactionError>) -> Reject {
    reject_of(eth_error_of(error))
}

/// Why the EVM refused a transaction before executing it, as a stable code.
pub(crate) fn reject_of<E: core::fmt::Display>(error: EVMError<E>) -> Reject {
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
