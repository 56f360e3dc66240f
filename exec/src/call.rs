//! eth_call and eth_estimateGas: a call executed on the state without
//! committing anything, and the least gas limit with which it succeeds.

use alloy_eips::eip2930::AccessList;
use alloy_primitives::{Address, Bytes, TxKind, U256};
// Named so that callers can name a halt's reason without depending on revm.
pub use revm::context_interface::result::HaltReason;
use revm::{
    DatabaseRef,
    context::TxEnv,
    context_interface::result::{ExecutionResult, Output},
};
use tephra_types::{Reject, limits::TX_GAS_LIMIT_CAP};

pub use crate::evm::CallState;
use crate::{evm, params::BlockParams};

/// A call as eth_call and eth_estimateGas take it, with what the request
/// leaves out still unset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallRequest {
    /// The caller; the zero address when a request names none, as in geth.
    pub from: Address,
    /// None: the call creates a contract from `input`.
    pub to: Option<Address>,
    /// None: as much as a transaction may have in this block.
    pub gas_limit: Option<u64>,
    /// The legacy price; a `max_fee_per_gas` beside it wins.
    pub gas_price: Option<u128>,
    pub max_fee_per_gas: Option<u128>,
    pub max_priority_fee_per_gas: Option<u128>,
    pub value: U256,
    pub input: Bytes,
    /// None: the caller's nonce in the state.
    pub nonce: Option<u64>,
    pub access_list: Option<AccessList>,
}

/// What became of a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// It returned `output` (for a creation, the deployed code).
    Success { output: Bytes, gas_used: u64 },
    /// It reverted with this data.
    Reverted(Bytes),
    /// It stopped on an exceptional halt (out of gas, bad opcode, ...).
    Halted(HaltReason),
}

/// Why no gas limit up to the ceiling lets a call succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EstimateError {
    /// The EVM refused the call before executing it (funds, fee cap, ...).
    #[error(transparent)]
    Rejected(#[from] Reject),
    #[error("execution reverted")]
    Reverted(Bytes),
    #[error("execution halted: {0:?}")]
    Halted(HaltReason),
}

/// Executes `request` on `state` in the block `block` opens, committing
/// nothing. Err: the EVM refused it before executing it.
pub fn call(state: impl CallState, block: &BlockParams, request: &CallRequest) -> Result<CallOutcome, Reject> {
    call_with_gas_limit(state, block, request, gas_ceiling(block, request))
}

/// The most gas a call of `request` in `block` may have, and so where a gas
/// estimate starts: the request's own limit, capped by the block's and by the
/// per-transaction cap.
pub fn gas_ceiling(block: &BlockParams, request: &CallRequest) -> u64 {
    let cap = block.gas_limit.min(TX_GAS_LIMIT_CAP);
    request.gas_limit.unwrap_or(cap).min(cap)
}

/// The least gas limit up to `ceiling` with which `request` succeeds: more
/// than the gas it uses when refunds or the 63/64 rule need it to start with
/// more. `try_call` executes one try (`call` on the state as it is then); it
/// is handed the request with that try's gas limit. A caller whose state is
/// behind a lock takes the lock in `try_call`, so that a writer waits for
/// one call at a time rather than for the whole search.
pub fn estimate_gas(
    request: &CallRequest,
    ceiling: u64,
    mut try_call: impl FnMut(&CallRequest) -> Result<CallOutcome, Reject>,
) -> Result<u64, EstimateError> {
    let mut with_gas_limit = |gas_limit: u64| try_call(&CallRequest { gas_limit: Some(gas_limit), ..request.clone() });
    let used = match with_gas_limit(ceiling)? {
        CallOutcome::Success { gas_used, .. } => gas_used,
        CallOutcome::Reverted(output) => return Err(EstimateError::Reverted(output)),
        CallOutcome::Halted(reason) => return Err(EstimateError::Halted(reason)),
    };
    // Invariant: `low` fails (or is below what the call uses), `high` succeeds.
    let (mut low, mut high) = (used.saturating_sub(1), ceiling);
    while low + 1 < high {
        let mid = low + (high - low) / 2;
        match with_gas_limit(mid)? {
            CallOutcome::Success { .. } => high = mid,
            CallOutcome::Reverted(_) | CallOutcome::Halted(_) => low = mid,
        }
    }
    Ok(high)
}

fn call_with_gas_limit(
    state: impl CallState,
    block: &BlockParams,
    request: &CallRequest,
    gas_limit: u64,
) -> Result<CallOutcome, Reject> {
    let request = CallRequest { gas_limit: Some(gas_limit), ..request.clone() };
    let Ok((tx, priced)) = call_tx(&state, block, &request);
    Ok(outcome_of(evm::call(state, block, tx, priced)?))
}

/// The transaction a call stands for, and whether it names a price (a call
/// that names none pays none, as in geth). Its type follows from the fields
/// the request names, its nonce from the state unless it names one, its gas
/// limit from `gas_ceiling` unless it names a lower one.
pub(crate) fn call_tx<DB: DatabaseRef>(
    state: &DB,
    block: &BlockParams,
    request: &CallRequest,
) -> Result<(TxEnv, bool), DB::Error> {
    let tx_type = if request.max_fee_per_gas.is_some() {
        2
    } else if request.access_list.is_some() {
        1
    } else {
        0
    };
    let nonce = match request.nonce {
        Some(nonce) => nonce,
        None => state.basic_ref(request.from)?.map_or(0, |account| account.nonce),
    };
    let tx = TxEnv {
        tx_type,
        caller: request.from,
        gas_limit: gas_ceiling(block, request),
        gas_price: request.max_fee_per_gas.or(request.gas_price).unwrap_or(0),
        kind: request.to.map_or(TxKind::Create, TxKind::Call),
        value: request.value,
        data: request.input.clone(),
        nonce,
        chain_id: Some(block.chain_id),
        access_list: request.access_list.clone().unwrap_or_default(),
        gas_priority_fee: request.max_priority_fee_per_gas,
        ..Default::default()
    };
    let priced = request.max_fee_per_gas.is_some() || request.gas_price.is_some();
    Ok((tx, priced))
}

fn outcome_of(result: ExecutionResult<HaltReason>) -> CallOutcome {
    match result {
        ExecutionResult::Success { output, gas, .. } => {
            let output = match output {
                Output::Call(bytes) | Output::Create(bytes, _) => bytes,
            };
            CallOutcome::Success { output, gas_used: gas.tx_gas_used() }
        }
        ExecutionResult::Revert { output, .. } => CallOutcome::Reverted(output),
        ExecutionResult::Halt { reason, .. } => CallOutcome::Halted(reason),
    }
}

#[cfg(test)]
mod tests {
    use revm::bytecode::Bytecode;
    use tephra_types::RejectCode;

    use super::*;
    use crate::{ChainSpec, dev, state::StateDb};

    const BLOCK_GAS_LIMIT: u64 = 30_000_000;
    const TRANSFER_GAS: u64 = 21_000;
    /// Reverts with the four bytes 0xdeadbeef: PUSH4 deadbeef, PUSH1 0,
    /// MSTORE, PUSH1 4, PUSH1 28, REVERT.
    const REVERTER_CODE: [u8; 13] = [0x63, 0xde, 0xad, 0xbe, 0xef, 0x60, 0x00, 0x52, 0x60, 0x04, 0x60, 0x1c, 0xfd];

    /// Sets slot 0 to 1 and back to 0: the second store refunds most of the
    /// first, so the call needs more gas to start with than it uses.
    /// PUSH1 1, PUSH1 0, SSTORE, PUSH1 0, PUSH1 0, SSTORE, STOP.
    const REFUNDER_CODE: [u8; 11] = [0x60, 0x01, 0x60, 0x00, 0x55, 0x60, 0x00, 0x60, 0x00, 0x55, 0x00];

    fn genesis() -> (StateDb, BlockParams) {
        let spec = ChainSpec::dev();
        let (params, _) = dev::first_block(&spec, BLOCK_GAS_LIMIT);
        (spec.genesis_state(), params)
    }

    fn transfer(block: &BlockParams) -> CallRequest {
        CallRequest {
            from: dev::DevKey::dev(0).address(),
            to: Some(Address::repeat_byte(0xb0)),
            max_fee_per_gas: Some(u128::from(block.base_fee_per_gas)),
            value: U256::from(1_000_000_000u64),
            ..CallRequest::default()
        }
    }

    /// The genesis state with `code` deployed at an address of `byte`s, and
    /// a call to it carrying no value.
    fn calling(code: &[u8], byte: u8) -> (StateDb, BlockParams, CallRequest) {
        let (mut state, block) = genesis();
        let contract = Address::repeat_byte(byte);
        state.insert_account(contract, 0, U256::ZERO, Some(Bytecode::new_raw(Bytes::copy_from_slice(code))), []);
        let request = CallRequest { to: Some(contract), value: U256::ZERO, ..transfer(&block) };
        (state, block, request)
    }

    fn estimate(state: &StateDb, block: &BlockParams, request: &CallRequest) -> Result<u64, EstimateError> {
        estimate_gas(request, gas_ceiling(block, request), |attempt| call(state, block, attempt))
    }

    #[test]
    fn a_transfer_succeeds_with_21000_gas() {
        let (state, block) = genesis();
        let request = CallRequest { gas_limit: Some(TRANSFER_GAS), ..transfer(&block) };
        let outcome = call(&state, &block, &request).expect("executes");
        assert_eq!(outcome, CallOutcome::Success { output: Bytes::new(), gas_used: TRANSFER_GAS });
    }

    #[test]
    fn a_revert_returns_its_data() {
        let (state, block, request) = calling(&REVERTER_CODE, 0x5e);
        let expected = Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(call(&state, &block, &request), Ok(CallOutcome::Reverted(expected.clone())));
        assert_eq!(estimate(&state, &block, &request), Err(EstimateError::Reverted(expected)));
    }

    #[test]
    fn the_estimate_of_a_transfer_is_21000() {
        let (state, block) = genesis();
        assert_eq!(estimate(&state, &block, &transfer(&block)), Ok(TRANSFER_GAS));
    }

    #[test]
    fn a_call_that_names_no_price_pays_none() {
        let (state, block) = genesis();
        // An account with no ether: it can pay for nothing.
        let pauper = CallRequest { from: Address::repeat_byte(0x0e), value: U256::ZERO, ..transfer(&block) };
        let unpriced = CallRequest { max_fee_per_gas: None, ..pauper.clone() };
        assert!(matches!(call(&state, &block, &unpriced), Ok(CallOutcome::Success { .. })));
        let refused = call(&state, &block, &pauper).expect_err("cannot pay the fee it names");
        assert_eq!(refused.code, RejectCode::InsufficientFunds);
    }

    #[test]
    fn the_estimate_covers_gas_refunded_at_the_end() {
        let (state, block, request) = calling(&REFUNDER_CODE, 0x4e);
        let Ok(CallOutcome::Success { gas_used, .. }) = call(&state, &block, &request) else { panic!("fails") };
        let estimate = estimate(&state, &block, &request).expect("succeeds");
        assert!(estimate > gas_used, "estimate {estimate}, used {gas_used}");
        let with = |gas_limit| call(&state, &block, &CallRequest { gas_limit: Some(gas_limit), ..request.clone() });
        assert!(matches!(with(estimate), Ok(CallOutcome::Success { .. })));
        assert!(!matches!(with(estimate - 1), Ok(CallOutcome::Success { .. })));
    }
}
