//! Reading a request's parameters: positional lists, quantities, block tags
//! and the transaction call object of eth_call and eth_estimateGas.

use alloy_eips::eip2930::AccessList;
use alloy_primitives::{Address, B256, Bytes, U256};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde::Deserialize;
use serde_json::Value;
use tephra_exec::CallRequest;

use super::errors::{SERVER_ERROR, error, invalid};
use crate::chain_view::ChainView;

/// A block named by a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BlockTag {
    Number(u64),
    Hash(B256),
    Latest,
    Pending,
    /// The batcher's safe head (without a batcher: the newest block the
    /// block key has signed).
    Safe,
    /// The batcher's finalized head (without a batcher: the newest signed).
    Finalized,
    Earliest,
}

pub(super) fn parse_tag(value: Option<&Value>) -> Result<BlockTag, ErrorObjectOwned> {
    let Some(value) = value else { return Ok(BlockTag::Latest) };
    if let Some(object) = value.as_object() {
        if let Some(hash) = object.get("blockHash") {
            return serde_json::from_value(hash.clone()).map(BlockTag::Hash).map_err(|e| invalid(e.to_string()));
        }
        return parse_tag(object.get("blockNumber"));
    }
    if value.is_null() {
        return Ok(BlockTag::Latest);
    }
    match value.as_str() {
        Some("latest") => Ok(BlockTag::Latest),
        Some("pending") => Ok(BlockTag::Pending),
        Some("safe") => Ok(BlockTag::Safe),
        Some("finalized") => Ok(BlockTag::Finalized),
        Some("earliest") => Ok(BlockTag::Earliest),
        Some(text) if text.len() == 66 => text.parse().map(BlockTag::Hash).map_err(|_| invalid("bad block hash")),
        Some(text) => parse_u64(text).map(BlockTag::Number),
        None => value.as_u64().map(BlockTag::Number).ok_or_else(|| invalid("bad block tag")),
    }
}

pub(super) fn parse_u64(text: &str) -> Result<u64, ErrorObjectOwned> {
    let digits = text.strip_prefix("0x").ok_or_else(|| invalid(format!("{text}: hex quantity expected")))?;
    u64::from_str_radix(digits, 16).map_err(|_| invalid(format!("{text}: not a quantity")))
}

pub(super) fn param<T: for<'de> Deserialize<'de>>(
    list: &[Value],
    index: usize,
    name: &str,
) -> Result<T, ErrorObjectOwned> {
    let value = list.get(index).ok_or_else(|| invalid(format!("missing parameter {name}")))?;
    serde_json::from_value(value.clone()).map_err(|e| invalid(format!("{name}: {e}")))
}

pub(super) fn list(params: &Params<'_>) -> Result<Vec<Value>, ErrorObjectOwned> {
    if params.is_object() {
        return Err(invalid("positional parameters expected"));
    }
    Ok(params.parse::<Option<Vec<Value>>>().map_err(|e| invalid(e.to_string()))?.unwrap_or_default())
}

/// A block number for a tag; `None` for pending.
pub(super) fn resolve(view: &ChainView, tag: BlockTag) -> Option<u64> {
    match tag {
        BlockTag::Number(n) => Some(n),
        BlockTag::Hash(hash) => view.block_by_hash(&hash).map(|b| b.header.number),
        BlockTag::Latest => Some(view.head().header.number),
        BlockTag::Pending => None,
        BlockTag::Safe => Some(view.safe_head()),
        BlockTag::Finalized => Some(view.finalized_head()),
        BlockTag::Earliest => Some(0),
    }
}

/// Where a state read is served from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StateRead {
    /// The preconfirmed tip (what is durable).
    Tip,
    /// The state after sealed block N, through the state history.
    At(u64),
}

/// Where a state read of `tag` is served: the tip for latest and pending
/// (and for the head itself), an earlier block through the state history.
/// Without the history, only the tip is kept: safe and finalized without
/// a batcher (a block or two below the tip) are then served from it.
pub(super) fn state_read(view: &ChainView, tag: BlockTag) -> Result<StateRead, ErrorObjectOwned> {
    let history = view.history().is_some();
    match tag {
        BlockTag::Latest | BlockTag::Pending => Ok(StateRead::Tip),
        BlockTag::Safe | BlockTag::Finalized if !history && !view.has_batcher() => Ok(StateRead::Tip),
        other => match resolve(view, other) {
            Some(n) if n == view.head().header.number => Ok(StateRead::Tip),
            Some(n) if n > view.head().header.number => Err(error(
                SERVER_ERROR,
                format!("block {n} is not sealed yet (the head is {}); ask for pending", view.head().header.number),
                None,
            )),
            Some(n) if history => Ok(StateRead::At(n)),
            Some(n) => Err(error(SERVER_ERROR, format!("state at block {n} is not kept ([history] is off)"), None)),
            None => Err(error(SERVER_ERROR, "unknown block", None)),
        },
    }
}

/// The transaction call object eth_call and eth_estimateGas take, as JSON
/// gives it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CallObject {
    from: Option<Address>,
    to: Option<Address>,
    gas: Option<U256>,
    gas_price: Option<U256>,
    max_fee_per_gas: Option<U256>,
    max_priority_fee_per_gas: Option<U256>,
    value: Option<U256>,
    data: Option<Bytes>,
    input: Option<Bytes>,
    nonce: Option<U256>,
    access_list: Option<AccessList>,
}

impl CallObject {
    /// The call as exec takes it; a quantity too large for its field is
    /// invalid params.
    pub(super) fn into_request(self) -> Result<CallRequest, ErrorObjectOwned> {
        let max_fee_per_gas = self.max_fee_per_gas.map(|v| u128_of(v, "gas price")).transpose()?;
        // Beside a max fee the legacy price counts for nothing, so it cannot
        // be too large either.
        let gas_price = match max_fee_per_gas {
            Some(_) => None,
            None => self.gas_price.map(|v| u128_of(v, "gas price")).transpose()?,
        };
        let gas_limit = self.gas.map(|g| u64_of(g, "gas")).transpose()?;
        let nonce = self.nonce.map(|n| u64_of(n, "nonce")).transpose()?;
        let max_priority_fee_per_gas = self.max_priority_fee_per_gas.map(|v| u128_of(v, "priority fee")).transpose()?;
        Ok(CallRequest {
            from: self.from.unwrap_or_default(),
            to: self.to,
            gas_limit,
            gas_price,
            max_fee_per_gas,
            max_priority_fee_per_gas,
            value: self.value.unwrap_or_default(),
            input: self.input.or(self.data).unwrap_or_default(),
            nonce,
            access_list: self.access_list,
        })
    }
}

fn u64_of(value: U256, name: &str) -> Result<u64, ErrorObjectOwned> {
    u64::try_from(value).map_err(|_| invalid(format!("{name} too large")))
}

fn u128_of(value: U256, name: &str) -> Result<u128, ErrorObjectOwned> {
    u128::try_from(value).map_err(|_| invalid(format!("{name} too large")))
}
