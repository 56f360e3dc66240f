//! State reads at the preconfirmed tip: balance, nonce, code and storage,
//! as durable (`StateDb::durable`: a mini-block being made durable is read
//! as it was before it, so reads never wait for its fsync).

use alloy_primitives::{Address, B256, U256};
use jsonrpsee::types::Params;
use serde_json::json;

use super::{
    RpcResult,
    params::{BlockTag, check_state_tag, list, param, parse_tag},
};
use crate::{format::qty, shared::Shared};

pub(super) fn balance(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let address: Address = param(&p, 0, "address")?;
    let view = shared.view.read().expect("view lock");
    check_state_tag(&view, parse_tag(p.get(1))?)?;
    Ok(json!(format!("{:#x}", view.state().durable().balance(&address))))
}

/// The account's nonce; at `pending`, past the transactions it has pooled
/// or has in a mini-block being made durable (which the pool no longer
/// holds: the state's own nonce counts them).
pub(super) fn transaction_count(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let address: Address = param(&p, 0, "address")?;
    let tag = parse_tag(p.get(1))?;
    let view = shared.view.read().expect("view lock");
    check_state_tag(&view, tag)?;
    let nonce = match tag {
        BlockTag::Pending => view.pool().next_nonce(&address, view.state().nonce(&address)),
        _ => view.state().durable().nonce(&address),
    };
    Ok(json!(qty(nonce)))
}

pub(super) fn code(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let address: Address = param(&p, 0, "address")?;
    let view = shared.view.read().expect("view lock");
    check_state_tag(&view, parse_tag(p.get(1))?)?;
    let code = view.state().durable().code(&address).map(|c| c.original_bytes()).unwrap_or_default();
    Ok(json!(code))
}

pub(super) fn storage_at(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let address: Address = param(&p, 0, "address")?;
    let slot: U256 = param(&p, 1, "slot")?;
    let view = shared.view.read().expect("view lock");
    check_state_tag(&view, parse_tag(p.get(2))?)?;
    Ok(json!(B256::from(view.state().durable().storage_at(&address, slot))))
}
