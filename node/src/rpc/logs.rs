//! Logs: the filter eth_getLogs and `logs` subscriptions take, and
//! eth_getLogs over the kept blocks, bounded in range and results.

use std::sync::Arc;

use alloy_primitives::{Address, B256, Log};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{
    RpcResult,
    errors::{LIMIT_EXCEEDED, SERVER_ERROR, error, invalid},
    params::{list, parse_tag, resolve},
};
use crate::{
    chain_view::ChainView,
    config::RpcConfig,
    format::{self, Position},
    shared::Shared,
    view::StoredTx,
};

/// A log filter: addresses (any of) and topic positions (any of, or any).
#[derive(Debug, Default)]
pub(super) struct LogFilter {
    addresses: Vec<Address>,
    topics: Vec<Vec<B256>>,
}

impl LogFilter {
    pub(super) fn parse(value: Option<&Value>) -> Result<Self, ErrorObjectOwned> {
        let Some(object) = value.and_then(Value::as_object) else { return Ok(LogFilter::default()) };
        let addresses = match object.get("address") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => list.iter().map(from_json).collect::<Result<_, _>>()?,
            Some(one) => vec![from_json(one)?],
        };
        let topics = match object.get("topics") {
            Some(Value::Array(topics)) => parse_topics(topics)?,
            _ => Vec::new(),
        };
        Ok(LogFilter { addresses, topics })
    }

    fn matches(&self, log: &Log) -> bool {
        if !self.addresses.is_empty() && !self.addresses.contains(&log.address) {
            return false;
        }
        self.topics
            .iter()
            .enumerate()
            .all(|(i, any)| any.is_empty() || log.topics().get(i).is_some_and(|t| any.contains(t)))
    }
}

/// Topic positions: each null (any), a list (any of) or one topic.
fn parse_topics(topics: &[Value]) -> Result<Vec<Vec<B256>>, ErrorObjectOwned> {
    if topics.len() > 4 {
        return Err(invalid("at most 4 topic positions"));
    }
    topics
        .iter()
        .map(|position| match position {
            Value::Null => Ok(Vec::new()),
            Value::Array(any) => any.iter().map(from_json).collect(),
            one => Ok(vec![from_json(one)?]),
        })
        .collect()
}

fn from_json<T: DeserializeOwned>(value: &Value) -> Result<T, ErrorObjectOwned> {
    serde_json::from_value(value.clone()).map_err(|e| invalid(e.to_string()))
}

/// Appends the logs of `txs` (block `number`) that `filter` matches to `out`.
pub(super) fn matching_logs(
    filter: &LogFilter,
    txs: &[StoredTx],
    number: u64,
    hash: Option<B256>,
    out: &mut Vec<Value>,
) {
    for (index, tx) in txs.iter().enumerate() {
        for (i, l) in tx.receipt.logs.iter().enumerate() {
            if filter.matches(l) {
                let at = Position { block_number: number, block_hash: hash, index };
                out.push(format::log(l, tx, at, tx.first_log_index + i as u64));
            }
        }
    }
}

pub(super) fn get_logs(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let params = list(params)?;
    let request = params.first();
    let filter = LogFilter::parse(request)?;
    let blocks = {
        let view = shared.view.read().expect("view lock");
        let (from, to) = block_range(&view, request.and_then(Value::as_object))?;
        blocks_in_range(&view, &filter, from, to, &shared.config.rpc)?
    };
    logs_of(&blocks, &filter, &shared.config.rpc)
}

/// A kept block's transactions, shared out of the view, so that its logs
/// are matched and their JSON built with the view's lock released (the
/// sequencer writes every mini-block under it).
pub(super) struct KeptTxs {
    number: u64,
    hash: B256,
    txs: Arc<Vec<StoredTx>>,
}

/// The kept blocks of eth_getLogs's query `[from, to]`, within the range
/// limit. A filter that names addresses or topics reads only the blocks
/// the log index picks, over any range of kept blocks; one that names
/// neither reads every block of its range. Either way at most
/// `get_logs_block_range_max` blocks are read.
pub(super) fn blocks_in_range(
    view: &ChainView,
    filter: &LogFilter,
    from: u64,
    to: u64,
    limits: &RpcConfig,
) -> Result<Vec<KeptTxs>, ErrorObjectOwned> {
    if from > to {
        return Ok(Vec::new());
    }
    let reads_max = limits.get_logs_block_range_max;
    let blocks: Box<dyn Iterator<Item = u64>> = match view.log_candidates(&filter.addresses, &filter.topics, from, to) {
        Some(candidates) if candidates.len() as u64 > reads_max => {
            return Err(error(
                LIMIT_EXCEEDED,
                format!(
                    "logs of this filter are in {} blocks, at most {reads_max} are read; narrow the range",
                    candidates.len()
                ),
                None,
            ));
        }
        Some(candidates) => Box::new(candidates.into_iter()),
        None if to - from >= reads_max => {
            return Err(error(
                LIMIT_EXCEEDED,
                format!(
                    "query spans {} blocks, at most {reads_max} are allowed without an address or a topic",
                    to - from + 1
                ),
                None,
            ));
        }
        None => Box::new(from..=to),
    };
    let kept = |n| view.block(n).map(|b| KeptTxs { number: n, hash: b.hash, txs: b.txs.clone() });
    Ok(blocks.filter_map(kept).collect())
}

/// The logs of `blocks` that `filter` matches, at most `get_logs_results_max`.
pub(super) fn logs_of(blocks: &[KeptTxs], filter: &LogFilter, limits: &RpcConfig) -> RpcResult {
    let mut out = Vec::new();
    for block in blocks {
        matching_logs(filter, &block.txs, block.number, Some(block.hash), &mut out);
        if out.len() > limits.get_logs_results_max {
            return Err(error(
                LIMIT_EXCEEDED,
                format!("more than {} logs match; narrow the query", limits.get_logs_results_max),
                None,
            ));
        }
    }
    Ok(Value::Array(out))
}

/// The blocks a query spans: its block hash, or from and to (each at most
/// the head).
pub(super) fn block_range(
    view: &ChainView,
    object: Option<&Map<String, Value>>,
) -> Result<(u64, u64), ErrorObjectOwned> {
    if let Some(hash) = object.and_then(|o| o.get("blockHash")) {
        let hash: B256 = from_json(hash)?;
        let n = view.block_by_hash(&hash).ok_or_else(|| error(SERVER_ERROR, "unknown block", None))?.header.number;
        return Ok((n, n));
    }
    let head = view.head().header.number;
    let pick = |key: &str| -> Result<u64, ErrorObjectOwned> {
        let tag = parse_tag(object.and_then(|o| o.get(key)))?;
        Ok(resolve(view, tag).unwrap_or(head).min(head))
    };
    Ok((pick("fromBlock")?, pick("toBlock")?))
}
