//! eth_call and eth_estimateGas: a call executed on the preconfirmed state
//! (what is durable: `StateDb::durable`), never committed.

use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde_json::json;
use tephra_exec::{BlockParams, CallOutcome, CallRequest, EstimateError, call};
use tephra_types::Reject;

use super::{
    RpcResult,
    errors::{SERVER_ERROR, error, halted_error, rejected, revert_error},
    params::{CallObject, StateRead, list, param, parse_tag, state_read},
    state::with_state_at,
};
use crate::{format::qty, shared::Shared};

pub(super) fn eth_call(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let object: CallObject = param(&p, 0, "transaction")?;
    let read = {
        let view = shared.view.read().expect("view lock");
        state_read(&view, parse_tag(p.get(1))?)?
    };
    let request = object.into_request()?;
    call_result(call_at(shared, read, &request)?.map_err(|reject| rejected(&reject))?)
}

pub(super) fn eth_estimate_gas(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let request = param::<CallObject>(&p, 0, "transaction")?.into_request()?;
    let read = {
        let view = shared.view.read().expect("view lock");
        state_read(&view, parse_tag(p.get(1))?)?
    };
    estimate_gas(shared, read, &request)
}

/// Executes `request` without committing: on the preconfirmed state in the
/// open block, or on the state after block N in block N's own context
/// (its header: number, time, base fee, as geth runs a call "at" N).
fn call_at(
    shared: &Shared,
    read: StateRead,
    request: &CallRequest,
) -> Result<Result<CallOutcome, Reject>, ErrorObjectOwned> {
    let view = shared.view.read().expect("view lock");
    match read {
        StateRead::Tip => Ok(call::call(view.state().durable(), &view.open_block().params, request)),
        StateRead::At(n) => {
            let block = params_of_block(shared, &view, n)?;
            with_state_at(&view, n, |state| call::call(state, &block, request))
        }
    }
}

/// The parameters block `n` was built with, from its kept header.
fn params_of_block(
    shared: &Shared,
    view: &crate::chain_view::ChainView,
    n: u64,
) -> Result<BlockParams, ErrorObjectOwned> {
    let block = view
        .block(n)
        .ok_or_else(|| error(SERVER_ERROR, format!("block {n} is not kept (rpc.history_blocks_max)"), None))?;
    Ok(BlockParams::of_header(&shared.chain, &block.header))
}

fn call_result(outcome: CallOutcome) -> RpcResult {
    match outcome {
        CallOutcome::Success { output, .. } => Ok(json!(output)),
        CallOutcome::Reverted(output) => Err(revert_error(&output)),
        CallOutcome::Halted(reason) => Err(halted_error(&reason)),
    }
}

fn estimate_gas(shared: &Shared, read: StateRead, request: &CallRequest) -> RpcResult {
    let ceiling = {
        let view = shared.view.read().expect("view lock");
        match read {
            StateRead::Tip => call::gas_ceiling(&view.open_block().params, request),
            StateRead::At(n) => call::gas_ceiling(&params_of_block(shared, &view, n)?, request),
        }
    };
    // Every try reads the view afresh: the sequencer waits for one call at a
    // time, never for the whole search. A history that fails ends the search.
    let mut failed = None;
    let estimate = call::estimate_gas(request, ceiling, |attempt| {
        call_at(shared, read, attempt).unwrap_or_else(|e| {
            failed = Some(e);
            Err(Reject::new(tephra_types::RejectCode::Busy, "the state history could not be read"))
        })
    });
    if let Some(error) = failed {
        return Err(error);
    }
    match estimate {
        Ok(gas_limit) => Ok(json!(qty(gas_limit))),
        Err(EstimateError::Rejected(reject)) => Err(rejected(&reject)),
        Err(EstimateError::Reverted(output)) => Err(revert_error(&output)),
        Err(EstimateError::Halted(reason)) => Err(halted_error(&reason)),
    }
}
