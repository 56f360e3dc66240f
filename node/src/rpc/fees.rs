//! Fees as wallets ask for them: eth_gasPrice, eth_maxPriorityFeePerGas and
//! eth_feeHistory over the kept blocks.

use alloy_consensus::Transaction as _;
use jsonrpsee::types::Params;
use serde_json::{Value, json};

use super::{
    RpcResult,
    errors::{SERVER_ERROR, error, invalid},
    params::{list, parse_tag, parse_u64, resolve},
};
use crate::{chain_view::ChainView, format::qty, shared::Shared, view::StoredBlock};

/// Most blocks one eth_feeHistory may span (geth's bound).
const FEE_HISTORY_BLOCKS_MAX: u64 = 1024;

/// The open block's base fee: the price a transaction pays now.
pub(super) fn gas_price(shared: &Shared) -> RpcResult {
    Ok(json!(qty(shared.view.read().expect("view lock").open_block().params.base_fee_per_gas)))
}

/// The open block's blob base fee (EIP-4844), as BLOBBASEFEE reads it there.
pub(super) fn blob_base_fee(shared: &Shared) -> RpcResult {
    let fee = shared.view.read().expect("view lock").open_block().params.blob_base_fee();
    fee.map(|fee| json!(qty(fee)))
        .ok_or_else(|| error(SERVER_ERROR, "blobs are not active on this chain (Cancun)", None))
}

/// Ordering is first come, first served: a tip buys nothing.
pub(super) fn max_priority_fee() -> RpcResult {
    Ok(json!(qty(0u64)))
}

pub(super) fn fee_history(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let params = list(params)?;
    let count = match params.first() {
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| invalid("blockCount"))?,
        Some(Value::String(s)) => parse_u64(s)?,
        _ => return Err(invalid("missing parameter blockCount")),
    }
    .clamp(1, FEE_HISTORY_BLOCKS_MAX);
    let view = shared.view.read().expect("view lock");
    let head = view.head().header.number;
    let newest = resolve(&view, parse_tag(params.get(1))?).unwrap_or(head).min(head);
    let oldest = (newest + 1).saturating_sub(count).max(view.blocks().next().map_or(0, |b| b.header.number));
    let percentiles: Vec<f64> = params.get(2).and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default();
    let mut base_fees = Vec::new();
    let mut ratios = Vec::new();
    let mut rewards = Vec::new();
    for block in (oldest..=newest).filter_map(|n| view.block(n)) {
        let base_fee = block.header.base_fee_per_gas.unwrap_or(0);
        base_fees.push(qty(base_fee));
        ratios.push(block.header.gas_used as f64 / block.header.gas_limit.max(1) as f64);
        rewards.push(rewards_at(block, base_fee, &percentiles));
    }
    // One more: the base fee of the block after the newest.
    base_fees.push(qty(next_base_fee(&view, newest, head)));
    let mut out = json!({"oldestBlock": qty(oldest), "baseFeePerGas": base_fees, "gasUsedRatio": ratios});
    if !percentiles.is_empty() {
        out["reward"] = json!(rewards);
    }
    Ok(out)
}

/// The tip at each of `percentiles` of `block`'s gas, weighted by gas used,
/// as geth computes them.
fn rewards_at(block: &StoredBlock, base_fee: u64, percentiles: &[f64]) -> Vec<String> {
    let mut tips: Vec<(u128, u64)> =
        block.txs.iter().map(|t| (t.envelope.effective_tip_per_gas(base_fee).unwrap_or(0), t.gas_used)).collect();
    tips.sort_unstable();
    let total: u64 = tips.iter().map(|t| t.1).sum();
    percentiles
        .iter()
        .map(|p| {
            let threshold = total as f64 * p / 100.0;
            let mut acc = 0u64;
            let tip = tips.iter().find(|(_, gas)| {
                acc += gas;
                acc as f64 >= threshold
            });
            qty(tip.or(tips.last()).map_or(0, |t| t.0))
        })
        .collect()
}

/// The base fee of the block after `newest`: the open block's after the head.
fn next_base_fee(view: &ChainView, newest: u64, head: u64) -> u64 {
    if newest == head {
        view.open_block().params.base_fee_per_gas
    } else {
        view.block(newest + 1).and_then(|b| b.header.base_fee_per_gas).unwrap_or(0)
    }
}
