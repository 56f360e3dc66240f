//! eth_call and eth_estimateGas: a call executed on the preconfirmed state
//! (what is durable: `StateDb::durable`), never committed.

use jsonrpsee::types::Params;
use serde_json::json;
use tephra_exec::{CallOutcome, CallRequest, EstimateError, call};
use tephra_types::Reject;

use super::{
    RpcResult,
    errors::{halted_error, rejected, revert_error},
    params::{CallObject, check_state_tag, list, param, parse_tag},
};
use crate::{format::qty, shared::Shared};

pub(super) fn eth_call(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let object: CallObject = param(&p, 0, "transaction")?;
    let tag = parse_tag(p.get(1))?;
    let view = shared.view.read().expect("view lock");
    check_state_tag(&view, tag)?;
    let request = object.into_request()?;
    let outcome = call::call(view.state().durable(), &view.open_block().params, &request);
    call_result(outcome.map_err(|reject| rejected(&reject))?)
}

pub(super) fn eth_estimate_gas(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let request = param::<CallObject>(&p, 0, "transaction")?.into_request()?;
    estimate_gas(shared, &request)
}

fn call_result(outcome: CallOutcome) -> RpcResult {
    match outcome {
        CallOutcome::Success { output, .. } => Ok(json!(output)),
        CallOutcome::Reverted(output) => Err(revert_error(&output)),
        CallOutcome::Halted(reason) => Err(halted_error(&reason)),
    }
}

/// Executes `request` on the preconfirmed state without committing.
fn call_on_view(shared: &Shared, request: &CallRequest) -> Result<CallOutcome, Reject> {
    let view = shared.view.read().expect("view lock");
    call::call(view.state().durable(), &view.open_block().params, request)
}

fn estimate_gas(shared: &Shared, request: &CallRequest) -> RpcResult {
    let ceiling = call::gas_ceiling(&shared.view.read().expect("view lock").open_block().params, request);
    // Every try reads the view afresh: the sequencer waits for one call at a
    // time, never for the whole search.
    match call::estimate_gas(request, ceiling, |attempt| call_on_view(shared, attempt)) {
        Ok(gas_limit) => Ok(json!(qty(gas_limit))),
        Err(EstimateError::Rejected(reject)) => Err(rejected(&reject)),
        Err(EstimateError::Reverted(output)) => Err(revert_error(&output)),
        Err(EstimateError::Halted(reason)) => Err(halted_error(&reason)),
    }
}
