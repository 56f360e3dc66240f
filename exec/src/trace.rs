//! Re-execution under an inspector, for traces and access lists: a kept
//! block replayed on a scratch layer over the state before it, or one call
//! on a state. Nothing here commits to tephra's state.
//!
//! ```text
//!  state before block N ──> scratch layer (CacheDB) ──> system calls ──> tx 0 ──> tx 1 ──> ...
//!                                                    each tx in `inspect`: run under the inspector,
//!                                                    handed to `visit` before it is committed
//! ```
//!
//! Invariants: a replayed block executes as it was sealed (a transaction
//! that no longer executes is an error, never a silent gap); `Bounds` stops
//! an execution past its steps or its deadline with an error, so a trace
//! costs at most what the node's config allows.

use core::ops::Range;

use alloy_consensus::{Transaction as _, TxEnvelope};
use alloy_primitives::{Address, Bytes, Log, U256};
use op_revm::{OpContext, OpHaltReason};
use revm::{
    Database, DatabaseRef, Inspector,
    context::{BlockEnv, ContextError, ContextTr, TxEnv, either::Either},
    context_interface::result::{EVMError, ResultAndState},
    database::CacheDB,
    handler::{FrameResult, MainnetContext},
    interpreter::{
        CallInputs, CallOutcome, CreateInputs, CreateOutcome, FrameInput, Interpreter, interpreter_types::LoopControl,
    },
    primitives::KECCAK_EMPTY,
};
use tephra_types::deposit::Deposit;

use crate::{
    call::{self, CallRequest},
    evm::{self, BlockTx, Relaxed},
    params::BlockParams,
};

/// A transaction of a kept block, as it is replayed.
#[derive(Clone, Debug)]
pub enum ReplayTx {
    /// A signed transaction from `sender`, with its EIP-2718 bytes (which an
    /// OP Stack chain charges the L1 data fee on).
    User {
        envelope: TxEnvelope,
        sender: Address,
        encoded: Bytes,
    },
    Deposit(Deposit),
}

/// An inspector that can run on either of a block's EVMs.
pub trait BlockInspector<DB: Database>: Inspector<MainnetContext<DB>> + Inspector<OpContext<DB>> {}

impl<DB: Database, I: Inspector<MainnetContext<DB>> + Inspector<OpContext<DB>>> BlockInspector<DB> for I {}

/// One inspected execution, handed over before its changes are committed.
#[allow(missing_debug_implementations)] // borrows of revm's parts, most without Debug
pub struct Inspected<'a, DB: DatabaseRef, I> {
    /// Its place in the block (0 for a call).
    pub index: usize,
    pub inspector: &'a mut I,
    pub tx: &'a TxEnv,
    pub block: &'a BlockEnv,
    pub outcome: &'a ResultAndState<OpHaltReason>,
    /// The state before the execution: a prestate trace reads it.
    pub state: &'a mut CacheDB<DB>,
}

/// Why a replay or a call gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError<E, V> {
    #[error("the state could not be read: {0}")]
    State(E),
    /// The block's transaction at `index` no longer executes on its state:
    /// the state read is not the one the block was built on.
    #[error("transaction {index} of the block no longer executes: {reason}")]
    Diverged { index: usize, reason: String },
    /// The EVM refused a call before executing it.
    #[error("the call was refused: {0}")]
    Refused(String),
    /// An inspector stopped the execution: a bound (`Bounds`) was passed.
    #[error("{0}")]
    Stopped(String),
    #[error(transparent)]
    Visit(V),
}

fn replay_error<E, V>(error: EVMError<E>, index: usize, call: bool) -> ReplayError<E, V> {
    match error {
        EVMError::Database(error) => ReplayError::State(error),
        EVMError::Custom(message) => ReplayError::Stopped(message),
        error if call => ReplayError::Refused(evm::reject_of(error_text(error)).to_string()),
        error => ReplayError::Diverged { index, reason: error_text(error).to_string() },
    }
}

/// The error without its database part, which is handled before.
fn error_text<E>(error: EVMError<E>) -> EVMError<String> {
    error.map_db_err(|_| String::new())
}

/// Replays block `block` (its parameters) on `state`, the state before it:
/// the system calls, then `txs` (the block's transactions in order) up to
/// the end of `inspect`. Those in `inspect` run under `inspector`, and
/// `visit` sees each before it is committed to the scratch layer.
pub fn replay_block<DB, I, V>(
    state: DB,
    block: &BlockParams,
    txs: &[ReplayTx],
    inspect: Range<usize>,
    inspector: I,
    mut visit: impl FnMut(Inspected<'_, DB, I>) -> Result<(), V>,
) -> Result<(), ReplayError<DB::Error, V>>
where
    DB: DatabaseRef,
    I: BlockInspector<CacheDB<DB>>,
{
    let mut vm = evm::evm_for(CacheDB::new(state), block, Relaxed::default(), inspector);
    let due = evm::due_system_calls(block, |address| {
        let account = evm::db_of(&mut vm).basic(*address)?;
        Ok(account.is_some_and(|a| a.code_hash != KECCAK_EMPTY))
    })
    .map_err(ReplayError::State)?;
    evm::make_system_calls(&mut vm, due);
    for (index, tx) in txs.iter().enumerate().take(inspect.end) {
        let tx = block_tx(tx);
        let inspected = inspect.contains(&index);
        let base = inspected.then(|| tx.base().clone());
        let outcome = vm.run(tx, inspected).map_err(|e| replay_error(e, index, false))?;
        if let Some(tx) = base {
            let (inspector, state, block) = vm.parts();
            let seen = Inspected { index, inspector, tx: &tx, block, outcome: &outcome, state };
            visit(seen).map_err(ReplayError::Visit)?;
        }
        vm.commit(outcome.state);
    }
    Ok(())
}

/// Executes `request` on `state` in the block `block` opens, under
/// `inspector`, as debug_traceCall and eth_createAccessList do; `visit` sees
/// the outcome. Nothing is committed.
pub fn inspect_call<DB, I, V>(
    state: DB,
    block: &BlockParams,
    request: &CallRequest,
    inspector: I,
    visit: impl FnOnce(Inspected<'_, DB, I>) -> Result<(), V>,
) -> Result<(), ReplayError<DB::Error, V>>
where
    DB: DatabaseRef,
    I: BlockInspector<CacheDB<DB>>,
{
    let (tx, priced) = call::call_tx(&state, block, request).map_err(ReplayError::State)?;
    let mut vm = evm::evm_for(CacheDB::new(state), block, Relaxed::call(priced), inspector);
    let user = BlockTx::User { tx: tx.clone(), enveloped: Bytes::new() };
    let outcome = vm.run(user, true).map_err(|e| replay_error(e, 0, true))?;
    let (inspector, state, block) = vm.parts();
    visit(Inspected { index: 0, inspector, tx: &tx, block, outcome: &outcome, state }).map_err(ReplayError::Visit)
}

fn block_tx(tx: &ReplayTx) -> BlockTx {
    match tx {
        ReplayTx::User { envelope, sender, encoded } => {
            // Authorities are recovered by revm, as a node that never saw
            // the transaction would.
            let authorizations = envelope
                .authorization_list()
                .map(|list| list.iter().cloned().map(Either::Left).collect())
                .unwrap_or_default();
            BlockTx::User { tx: evm::signed_tx_env(envelope, *sender, authorizations), enveloped: encoded.clone() }
        }
        ReplayTx::Deposit(deposit) => BlockTx::Deposit(evm::deposit_tx(deposit)),
    }
}

/// How far an inspected execution may go. Steps and call frames count
/// against `steps_max` (past it: an error); `record_steps_max` only stops
/// handing steps to the inner inspector (geth's struct logger `limit`: the
/// execution goes on, its log is cut); `expired` is asked every
/// `EXPIRY_CHECK_STEPS` steps and at every frame (past it: an error).
pub struct Bounds<I> {
    pub inner: I,
    steps_max: u64,
    record_steps_max: u64,
    expired: Box<dyn Fn() -> bool + Send>,
    /// Steps and frames so far.
    steps: u64,
    /// Steps handed to the inner inspector so far.
    recorded_steps: u64,
    /// Whether the step under way was handed over (so is its end).
    recording: bool,
    stopped: Option<&'static str>,
}

impl<I> core::fmt::Debug for Bounds<I> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Bounds").field("steps", &self.steps).field("stopped", &self.stopped).finish_non_exhaustive()
    }
}

/// Steps between two looks at the clock: a look costs far more than a step.
const EXPIRY_CHECK_STEPS: u64 = 1024;

impl<I> Bounds<I> {
    pub fn new(inner: I, steps_max: u64, record_steps_max: u64, expired: Box<dyn Fn() -> bool + Send>) -> Self {
        Self {
            inner,
            steps_max,
            record_steps_max,
            expired,
            steps: 0,
            recorded_steps: 0,
            recording: false,
            stopped: None,
        }
    }

    /// Counts one step or frame; whether the execution must stop.
    fn count(&mut self, frame: bool) -> bool {
        self.steps += 1;
        if self.stopped.is_none() {
            if self.steps > self.steps_max {
                self.stopped = Some("the trace passed its step bound (trace.steps_max)");
            } else if (frame || self.steps.is_multiple_of(EXPIRY_CHECK_STEPS)) && (self.expired)() {
                self.stopped = Some("the trace passed its time bound (trace.timeout_ms)");
            }
        }
        self.stopped.is_some()
    }

    fn stop<CTX: ContextTr>(&self, context: &mut CTX) {
        if let Some(why) = self.stopped
            && context.error().is_ok()
        {
            *context.error() = Err(ContextError::Custom(why.to_string()));
        }
    }

    /// A call or a creation begins: counted, and the clock asked; past a
    /// bound, the execution stops with its error when the frame's first
    /// step comes (or, for a frame without code, when it returns).
    fn enter_frame<CTX: ContextTr>(&mut self, context: &mut CTX) {
        if self.count(true) {
            self.stop(context);
        }
    }

    /// Resets the counts for the next transaction of a block.
    pub fn reset(&mut self) {
        (self.steps, self.recorded_steps) = (0, 0);
    }
}

fn halt(interp: &mut Interpreter) {
    // Any CALL or RETURN the instruction set up is dropped with the frame.
    interp.bytecode.action().take();
    interp.bytecode.reset_action();
    interp.halt_fatal();
}

impl<CTX: ContextTr, I: Inspector<CTX>> Inspector<CTX> for Bounds<I> {
    fn initialize_interp(&mut self, interp: &mut Interpreter, context: &mut CTX) {
        self.inner.initialize_interp(interp, context);
    }

    fn frame_start(&mut self, context: &mut CTX, frame_input: &mut FrameInput) -> Option<FrameResult> {
        self.inner.frame_start(context, frame_input)
    }

    fn frame_end(&mut self, context: &mut CTX, frame_input: &FrameInput, frame_result: &mut FrameResult) {
        self.inner.frame_end(context, frame_input, frame_result);
    }

    fn step(&mut self, interp: &mut Interpreter, context: &mut CTX) {
        self.recording = false;
        if self.count(false) {
            self.stop(context);
            halt(interp);
        } else if self.recorded_steps < self.record_steps_max {
            (self.recorded_steps, self.recording) = (self.recorded_steps + 1, true);
            self.inner.step(interp, context);
        }
    }

    fn step_end(&mut self, interp: &mut Interpreter, context: &mut CTX) {
        if self.recording {
            self.inner.step_end(interp, context);
        }
    }

    fn log(&mut self, context: &mut CTX, log: Log) {
        self.inner.log(context, log);
    }

    fn log_full(&mut self, interp: &mut Interpreter, context: &mut CTX, log: Log) {
        self.inner.log_full(interp, context, log);
    }

    fn call(&mut self, context: &mut CTX, inputs: &mut CallInputs) -> Option<CallOutcome> {
        self.enter_frame(context);
        self.inner.call(context, inputs)
    }

    fn call_end(&mut self, context: &mut CTX, inputs: &CallInputs, outcome: &mut CallOutcome) {
        self.inner.call_end(context, inputs, outcome);
    }

    fn create(&mut self, context: &mut CTX, inputs: &mut CreateInputs) -> Option<CreateOutcome> {
        self.enter_frame(context);
        self.inner.create(context, inputs)
    }

    fn create_end(&mut self, context: &mut CTX, inputs: &CreateInputs, outcome: &mut CreateOutcome) {
        self.inner.create_end(context, inputs, outcome);
    }

    fn selfdestruct(&mut self, contract: Address, target: Address, value: U256) {
        self.inner.selfdestruct(contract, target, value);
    }
}

#[cfg(test)]
mod tests {
    use alloy_consensus::{TxEip1559, TypedTransaction};
    use alloy_eips::eip2718::Encodable2718;
    use alloy_primitives::TxKind;
    use revm::inspector::NoOpInspector;

    use super::*;
    use crate::{BlockBuilder, ChainSpec, ExecutedTx, SequentialExecutor, dev, state::StateDb};

    const BLOCK_GAS_LIMIT: u64 = 30_000_000;
    /// Creation code that stores 42 in slot 0 and deploys nothing:
    /// PUSH1 42, PUSH1 0, SSTORE, STOP (six steps with its end).
    const STORING_INIT: [u8; 6] = [0x60, 0x2a, 0x60, 0x00, 0x55, 0x00];

    /// A block of transfers from three keys and a creation, executed as a
    /// node does: the state before it, the block's parameters, what it
    /// executed, and the transactions as a replay takes them.
    fn executed_block() -> (StateDb, BlockParams, Vec<ExecutedTx>, Vec<ReplayTx>) {
        let spec = ChainSpec::dev();
        let (params, verifier) = dev::first_block(&spec, BLOCK_GAS_LIMIT);
        let mut state = spec.genesis_state();
        let before = state.clone();
        let mut raw = Vec::new();
        for (key, nonce) in [(0, 0), (1, 0), (0, 1), (2, 0)] {
            let tx = dev::DevKey::dev(key).transfer(spec.chain_id(), nonce, Address::repeat_byte(0xb0), U256::from(7));
            raw.push(tx.encoded_2718());
        }
        let creation = TxEip1559 {
            chain_id: spec.chain_id(),
            nonce: 0,
            gas_limit: 100_000,
            max_fee_per_gas: u128::from(params.base_fee_per_gas) * 2,
            to: TxKind::Create,
            input: Bytes::copy_from_slice(&STORING_INIT),
            ..Default::default()
        };
        raw.push(dev::DevKey::dev(3).sign(TypedTransaction::Eip1559(creation)).encoded_2718());
        let verified = raw.iter().map(|r| verifier.verify(r).expect("valid")).collect();
        let mut block = BlockBuilder::open(params.clone(), &mut state);
        block.execute(&mut SequentialExecutor, &mut state, verified, |_, _| {});
        let executed = block.transactions().to_vec();
        let replay = executed
            .iter()
            .map(|e| ReplayTx::User {
                envelope: e.tx.envelope.clone(),
                sender: e.tx.sender,
                encoded: e.tx.encoded.clone(),
            })
            .collect();
        (before, params, executed, replay)
    }

    #[test]
    fn a_replayed_block_executes_as_it_was_executed() {
        let (before, params, executed, txs) = executed_block();
        assert_eq!(executed.len(), 5);
        for first in 0..txs.len() {
            let mut seen = Vec::new();
            replay_block(&before, &params, &txs, first..txs.len(), NoOpInspector, |inspected| {
                let result = &inspected.outcome.result;
                seen.push((inspected.index, result.tx_gas_used(), result.is_success(), result.logs().to_vec()));
                Ok::<_, core::convert::Infallible>(())
            })
            .expect("replays");
            let expected: Vec<_> = executed
                .iter()
                .enumerate()
                .skip(first)
                .map(|(i, e)| (i, e.gas_used, e.receipt.status.coerce_status(), e.receipt.logs.clone()))
                .collect();
            assert_eq!(seen, expected, "inspecting from {first}");
        }
    }

    #[test]
    fn a_state_that_is_not_the_blocks_is_found_out() {
        let (_, params, _, txs) = executed_block();
        // Key 0's first transfer replayed on a state where its nonce is used.
        let (mut wrong, _, _, _) = executed_block();
        let sender = dev::DevKey::dev(0).address();
        let balance = wrong.account(&sender).expect("funded").balance;
        wrong.insert_account(sender, 5, balance, None, []);
        let error = replay_block(&wrong, &params, &txs, 4..5, NoOpInspector, |_| Ok::<_, String>(())).unwrap_err();
        assert!(matches!(error, ReplayError::Diverged { index: 0, .. }), "{error}");
    }

    /// Counts the steps and step ends it is handed.
    #[derive(Debug, Default)]
    struct Counting {
        steps: u64,
        step_ends: u64,
    }

    impl<CTX> Inspector<CTX> for Counting {
        fn step(&mut self, _: &mut Interpreter, _: &mut CTX) {
            self.steps += 1;
        }

        fn step_end(&mut self, _: &mut Interpreter, _: &mut CTX) {
            self.step_ends += 1;
        }
    }

    fn never() -> Box<dyn Fn() -> bool + Send> {
        Box::new(|| false)
    }

    fn replay_creation(bounds: Bounds<Counting>) -> (Result<(), ReplayError<core::convert::Infallible, String>>, u64) {
        let (before, params, executed, txs) = executed_block();
        let mut steps = 0;
        let result = replay_block(&before, &params, &txs, 4..5, bounds, |inspected| {
            assert_eq!(inspected.outcome.result.tx_gas_used(), executed[4].gas_used, "the execution is whole");
            steps = inspected.inspector.inner.steps;
            assert_eq!(inspected.inspector.inner.step_ends, steps, "every step handed over ends");
            Ok(())
        });
        (result, steps)
    }

    #[test]
    fn a_record_limit_cuts_what_the_inspector_sees_not_the_execution() {
        let (result, all) = replay_creation(Bounds::new(Counting::default(), 1_000, u64::MAX, never()));
        result.expect("within bounds");
        assert_eq!(all, 4, "PUSH1, PUSH1, SSTORE, STOP");
        let (result, cut) = replay_creation(Bounds::new(Counting::default(), 1_000, 2, never()));
        result.expect("within bounds");
        assert_eq!(cut, 2);
    }

    #[test]
    fn past_its_steps_or_its_time_an_execution_stops_with_an_error() {
        let (result, _) = replay_creation(Bounds::new(Counting::default(), 3, u64::MAX, never()));
        let Err(ReplayError::Stopped(why)) = result else { panic!("stopped: {result:?}") };
        assert!(why.contains("trace.steps_max"), "{why}");
        // The clock is asked at the first frame.
        let (result, _) = replay_creation(Bounds::new(Counting::default(), 1_000, u64::MAX, Box::new(|| true)));
        let Err(ReplayError::Stopped(why)) = result else { panic!("stopped: {result:?}") };
        assert!(why.contains("trace.timeout_ms"), "{why}");
    }
}
