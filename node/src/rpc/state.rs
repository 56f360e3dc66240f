//! State reads at the preconfirmed tip: balance, nonce, code and storage.

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
    Ok(json!(format!("{:#x}", view.state().balance(&address))))
}

/// The account's nonce; at `pending`, past the transactions it has pooled.
pub(super) fn transaction_count(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let address: Address = param(&p, 0, "address")?;
    let tag = parse_tag(p.get(1))?;
    let view = shared.view.read().expect("view lock");
    check_state_tag(&view, tag)?;
    let nonce = view.state().nonce(&address);
    let nonce = if tag == BlockTag::Pending { view.pool().next_nonce(&address, nonce) } else { nonce };
    Ok(json!(qty(nonce)))
}

pub(super) fn code(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let address: Address = param(&p, 0, "address")?;
    let view = shared.view.read().expect("view lock");
    check_state_tag(&view, parse_tag(p.get(1))?)?;
    let code = view
        .state()
        .account(&address)
        .and_then(|a| view.state().code(&a.code_hash))
        .map(|c| c.original_bytes())
        .unwrap_or_default();
    Ok(json!(code))
}

pub(super) fn storage_at(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let p = list(params)?;
    let address: Address = param(&p, 0, "address")?;
    let slot: U256 = param(&p, 1, "slot")?;
    let view = shared.view.read().expect("view lock");
    check_state_tag(&view, parse_tag(p.get(2))?)?;
    Ok(json!(B256::from(view.state().storage_at(&address, slot))))
}
