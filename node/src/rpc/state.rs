//! State reads: balance, nonce, code and storage. At the preconfirmed tip
//! as durable (`StateDb::durable`: a mini-block being made durable is read
//! as it was before it, so reads never wait for its fsync); at an earlier
//! block through the state history (`crate::history::StateAt`).

use alloy_primitives::{Address, B256, U256};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde_json::{Value, json};

use super::{
    RpcResult,
    errors::{SERVER_ERROR, error},
    params::{BlockTag, StateRead, list, param, parse_tag, state_read},
};
use crate::{
    chain_view::ChainView,
    format::qty,
    history::{HistoryWindowError, StateAt},
    shared::Shared,
};

/// Runs `read` on the state after block `at`, through the state history; a
/// block outside it, or a store that fails, answers an error.
pub(super) fn with_state_at<T>(
    view: &ChainView,
    at: u64,
    read: impl FnOnce(&StateAt<'_>) -> T,
) -> Result<T, ErrorObjectOwned> {
    let history = view.history().ok_or_else(|| error(SERVER_ERROR, "the state history is off", None))?;
    let state = history.state_at(view, at).map_err(|e| match e {
        HistoryWindowError::Outside { .. } => error(SERVER_ERROR, e.to_string(), None),
        HistoryWindowError::Store(store) => {
            tracing::error!(error = %store, "state history read");
            error(SERVER_ERROR, "the state history could not be read", None)
        }
    })?;
    let value = read(&state);
    match state.failure() {
        Some(failure) => {
            tracing::error!(error = %failure, "state history read");
            Err(error(SERVER_ERROR, "the state history could not be read", None))
        }
        None => Ok(value),
    }
}

/// One read of an account's state, at the tip or at an earlier block.
fn read_state(
    params: &Params<'_>,
    shared: &Shared,
    tag_at: usize,
    at_tip: impl FnOnce(&ChainView, Address, &[Value], BlockTag) -> Result<Value, ErrorObjectOwned>,
    at_block: impl FnOnce(&StateAt<'_>, Address, &[Value]) -> Result<Value, ErrorObjectOwned>,
) -> RpcResult {
    let p = list(params)?;
    let address: Address = param(&p, 0, "address")?;
    let tag = parse_tag(p.get(tag_at))?;
    let view = shared.view.read().expect("view lock");
    match state_read(&view, tag)? {
        StateRead::Tip => at_tip(&view, address, &p, tag),
        StateRead::At(n) => with_state_at(&view, n, |state| at_block(state, address, &p))?,
    }
}

pub(super) fn balance(params: &Params<'_>, shared: &Shared) -> RpcResult {
    read_state(
        params,
        shared,
        1,
        |view, address, _, _| Ok(json!(format!("{:#x}", view.state().durable().balance(&address)))),
        |state, address, _| Ok(json!(format!("{:#x}", state.account(&address).map(|a| a.balance).unwrap_or_default()))),
    )
}

/// The account's nonce; at `pending`, past the transactions it has pooled
/// or has in a mini-block being made durable (which the pool no longer
/// holds: the state's own nonce counts them).
pub(super) fn transaction_count(params: &Params<'_>, shared: &Shared) -> RpcResult {
    read_state(
        params,
        shared,
        1,
        |view, address, _, tag| {
            let nonce = match tag {
                BlockTag::Pending => view.pool().next_nonce(&address, view.state().nonce(&address)),
                _ => view.state().durable().nonce(&address),
            };
            Ok(json!(qty(nonce)))
        },
        |state, address, _| Ok(json!(qty(state.account(&address).map_or(0, |a| a.nonce)))),
    )
}

pub(super) fn code(params: &Params<'_>, shared: &Shared) -> RpcResult {
    read_state(
        params,
        shared,
        1,
        |view, address, _, _| {
            Ok(json!(view.state().durable().code(&address).map(|c| c.original_bytes()).unwrap_or_default()))
        },
        |state, address, _| Ok(json!(state.code(&address).original_bytes())),
    )
}

pub(super) fn storage_at(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let slot = |p: &[Value]| param::<U256>(p, 1, "slot");
    read_state(
        params,
        shared,
        2,
        |view, address, p, _| Ok(json!(B256::from(view.state().durable().storage_at(&address, slot(p)?)))),
        |state, address, p| Ok(json!(B256::from(state.storage(&address, slot(p)?)))),
    )
}
