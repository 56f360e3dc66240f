//! Polling filters over JSON-RPC: eth_newFilter, eth_newBlockFilter,
//! eth_newPendingTransactionFilter, eth_getFilterChanges,
//! eth_getFilterLogs, eth_uninstallFilter, with geth's semantics: a filter
//! sees what is sealed (or, for pending transactions, preconfirmed) after it
//! was installed, each thing once. The table, its bounds and its journal
//! are `crate::filters`; what a filter's changes are is here.

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::MutexGuard,
    time::Instant,
};

use jsonrpsee::{
    Extensions,
    types::{ErrorObjectOwned, Params},
};
use serde_json::{Map, Value, json};

use super::{
    RpcResult,
    errors::{LIMIT_EXCEEDED, SERVER_ERROR, error, invalid},
    logs::{LogFilter, block_range, blocks_in_range, logs_of, matching_logs},
    params::{BlockTag, list, param, parse_tag, resolve},
};
use crate::{
    chain_view::{ChainView, Event},
    filters::{Filter, FilterError, FilterId, FilterSpec, Filters, Place},
    shared::Shared,
    view::StoredTx,
};

fn filter_error(e: FilterError) -> ErrorObjectOwned {
    match e {
        FilterError::NotFound => error(SERVER_ERROR, "filter not found", None),
        FilterError::TooMany(_) | FilterError::TooManyForClient(_) => error(LIMIT_EXCEEDED, e.to_string(), None),
        FilterError::Journal { .. } | FilterError::Corrupt { .. } => {
            tracing::error!(error = %e, "filter journal");
            error(SERVER_ERROR, "the filter could not be kept durably; try again", None)
        }
    }
}

/// The client address the server put in the request (none: a call from
/// inside the node).
fn client(extensions: &Extensions) -> IpAddr {
    extensions.get::<IpAddr>().copied().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

fn install(shared: &Shared, extensions: &Extensions, spec: FilterSpec) -> RpcResult {
    let mut filters = shared.filters.lock().expect("filters lock");
    let place = {
        let view = shared.view.read().expect("view lock");
        match spec {
            FilterSpec::Logs { .. } | FilterSpec::Blocks => Place::block(view.head().header.number + 1),
            FilterSpec::PendingTransactions => open_end(&view),
        }
    };
    let id = filters.install(client(extensions), spec, place, Instant::now()).map_err(filter_error)?;
    durably(filters, json!(id))
}

/// `answer`, once what `filters` holds now is durable: the lock is released
/// first, so that changes made meanwhile share the fdatasync.
fn durably(filters: MutexGuard<'_, Filters>, answer: Value) -> RpcResult {
    let durable = filters.durable();
    drop(filters);
    durable.wait().map_err(filter_error)?;
    Ok(answer)
}

/// Just past the open block's last preconfirmed transaction.
fn open_end(view: &ChainView) -> Place {
    let open = view.open_block();
    Place { block: open.params.number, index: open.txs.len() as u64 }
}

pub(super) fn new_filter(params: &Params<'_>, shared: &Shared, extensions: &Extensions) -> RpcResult {
    let p = list(params)?;
    let request = p.first().cloned().unwrap_or_else(|| json!({}));
    let object = request.as_object().ok_or_else(|| invalid("a filter object expected"))?;
    if object.contains_key("blockHash") {
        return Err(invalid("a filter watches new blocks: blockHash is for eth_getLogs"));
    }
    // Checked now, so that a poll never finds it bad.
    LogFilter::parse(Some(&request))?;
    for key in ["fromBlock", "toBlock"] {
        parse_tag(object.get(key))?;
    }
    install(shared, extensions, FilterSpec::Logs { request })
}

pub(super) fn new_block_filter(shared: &Shared, extensions: &Extensions) -> RpcResult {
    install(shared, extensions, FilterSpec::Blocks)
}

pub(super) fn new_pending_transaction_filter(shared: &Shared, extensions: &Extensions) -> RpcResult {
    install(shared, extensions, FilterSpec::PendingTransactions)
}

pub(super) fn uninstall_filter(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let id: FilterId = param(&list(params)?, 0, "filter id")?;
    let mut filters = shared.filters.lock().expect("filters lock");
    let removed = filters.uninstall(id, Instant::now()).map_err(filter_error)?;
    durably(filters, json!(removed))
}

/// What happened since the last poll; the filter's new place is durable
/// before the answer leaves.
pub(super) fn filter_changes(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let id: FilterId = param(&list(params)?, 0, "filter id")?;
    let mut filters = shared.filters.lock().expect("filters lock");
    let now = Instant::now();
    let filter = filters.poll(id, now).map_err(filter_error)?;
    let max = shared.config.rpc.filter_changes_max;
    let polled = {
        let view = shared.view.read().expect("view lock");
        match &filter.spec {
            FilterSpec::Logs { request } => log_changes(&view, filter, request, max)?,
            FilterSpec::Blocks => block_changes(&view, filter.place, max),
            FilterSpec::PendingTransactions => pending_changes(&view, filter.place, max),
        }
    };
    match polled {
        Polled::Changes(changes, place) => {
            filters.advance(id, place, now).map_err(filter_error)?;
            durably(filters, Value::Array(changes))
        }
        // Told once; the filter then goes on from what is kept, rather than
        // failing every poll from then on.
        Polled::FellBehind { oldest } => {
            filters.advance(id, Place::block(oldest), now).map_err(filter_error)?;
            durably(filters, Value::Null)?;
            Err(error(
                SERVER_ERROR,
                format!(
                    "filter fell behind: blocks before {oldest} are no longer kept (rpc.history_blocks_max); \
                     it goes on from block {oldest}"
                ),
                None,
            ))
        }
    }
}

/// eth_getFilterLogs: every log the filter's range holds, as eth_getLogs
/// would answer for its object.
pub(super) fn filter_logs(params: &Params<'_>, shared: &Shared) -> RpcResult {
    let id: FilterId = param(&list(params)?, 0, "filter id")?;
    let mut filters = shared.filters.lock().expect("filters lock");
    let filter = filters.poll(id, Instant::now()).map_err(filter_error)?;
    let FilterSpec::Logs { request } = &filter.spec else {
        return Err(error(SERVER_ERROR, "filter not found", None));
    };
    let log_filter = LogFilter::parse(Some(request))?;
    let blocks = {
        let view = shared.view.read().expect("view lock");
        let (from, to) = block_range(&view, request.as_object())?;
        blocks_in_range(&view, &log_filter, from, to, &shared.config.rpc)?
    };
    logs_of(&blocks, &log_filter, &shared.config.rpc)
}

/// What a poll found: changes and the filter's next place, or that the
/// blocks it is at are no longer kept.
enum Polled {
    Changes(Vec<Value>, Place),
    FellBehind { oldest: u64 },
}

/// The oldest kept block, if `from` is before it.
fn fell_behind(view: &ChainView, from: u64) -> Option<u64> {
    let oldest = view.blocks().next().map_or(0, |b| b.header.number);
    (from < oldest).then_some(oldest)
}

/// The blocks a log filter's object restricts it to, read at each poll: a
/// tag for the moving head restricts nothing.
fn live_bounds(view: &ChainView, request: &Map<String, Value>) -> Result<(u64, u64), ErrorObjectOwned> {
    let bound = |key: &str| -> Result<Option<u64>, ErrorObjectOwned> {
        Ok(match parse_tag(request.get(key))? {
            BlockTag::Latest | BlockTag::Pending => None,
            tag => resolve(view, tag),
        })
    };
    Ok((bound("fromBlock")?.unwrap_or(0), bound("toBlock")?.unwrap_or(u64::MAX)))
}

/// A log filter's new logs (after any a rewind removed), block by block, at
/// most `max` (a block is never split), and its next place.
fn log_changes(view: &ChainView, filter: &Filter, request: &Value, max: usize) -> Result<Polled, ErrorObjectOwned> {
    let log_filter = LogFilter::parse(Some(request))?;
    let (lower, upper) = live_bounds(view, request.as_object().unwrap_or(&Map::new()))?;
    let head = view.head().header.number;
    let mut out = filter.removed.clone();
    let mut next = filter.place.block.max(head + 1);
    let (first, last) = (filter.place.block.max(lower), head.min(upper));
    if let Some(oldest) = fell_behind(view, first).filter(|_| first <= last) {
        return Ok(Polled::FellBehind { oldest });
    }
    for number in first..=last {
        let Some(block) = view.block(number) else { continue };
        matching_logs(&log_filter, &block.txs, number, Some(block.hash), &mut out);
        if out.len() >= max && number < last {
            next = number + 1;
            break;
        }
    }
    Ok(Polled::Changes(out, Place::block(next)))
}

/// The hashes of blocks sealed since the filter's place, at most `max`.
fn block_changes(view: &ChainView, place: Place, max: usize) -> Polled {
    let head = view.head().header.number;
    if place.block > head {
        return Polled::Changes(Vec::new(), place);
    }
    if let Some(oldest) = fell_behind(view, place.block) {
        return Polled::FellBehind { oldest };
    }
    let last = head.min(place.block + max as u64 - 1);
    let hashes = (place.block..=last).filter_map(|n| view.block(n)).map(|b| json!(b.hash)).collect();
    Polled::Changes(hashes, Place::block(last + 1))
}

/// The hashes of user transactions preconfirmed since the filter's place (a
/// block, sealed or open, and an index in it), at most `max`.
fn pending_changes(view: &ChainView, place: Place, max: usize) -> Polled {
    let open = view.open_block();
    let mut out = Vec::new();
    let mut at = place;
    while at.block <= open.params.number {
        let txs: &[StoredTx] = match view.block(at.block) {
            _ if at.block == open.params.number => &open.txs,
            Some(block) => &block.txs,
            // Not kept (pruned or rewound away): nothing to tell there.
            None => &[],
        };
        let from = usize::try_from(at.index).unwrap_or(usize::MAX).min(txs.len());
        for (index, tx) in txs.iter().enumerate().skip(from) {
            if out.len() >= max {
                return Polled::Changes(out, Place { block: at.block, index: index as u64 });
            }
            if tx.deposit.is_none() {
                out.push(json!(tx.hash));
            }
        }
        if at.block == open.params.number {
            return Polled::Changes(out, Place { block: at.block, index: txs.len() as u64 });
        }
        at = Place::block(at.block + 1);
    }
    Polled::Changes(out, at)
}

/// Keeps filters right across a rewind: each placed beyond the new head goes
/// back to just past it, a log filter with the logs it had been told of in
/// the abandoned blocks queued as removed.
pub(crate) async fn follow_rewinds(shared: std::sync::Arc<Shared>) {
    let mut events = shared.events.subscribe();
    loop {
        let (number, abandoned) = match events.recv().await {
            Ok(Event::Rewound { number, abandoned, .. }) => (number, abandoned),
            Ok(_) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::error!(missed, "filters missed chain events; a rewind among them is not told to filters");
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let removed = |filter: &Filter, below: u64| {
            let FilterSpec::Logs { request } = &filter.spec else { return Vec::new() };
            let Ok(log_filter) = LogFilter::parse(Some(request)) else { return Vec::new() };
            let mut out = Vec::new();
            for block in abandoned.iter().filter(|b| b.header.number < below) {
                matching_logs(&log_filter, &block.txs, block.header.number, Some(block.hash), &mut out);
            }
            for log in &mut out {
                log["removed"] = Value::Bool(true);
            }
            out
        };
        // Not waited on here: the next answer of any filter waits for these
        // lines too, before it leaves.
        let mut filters = shared.filters.lock().expect("filters lock");
        if let Err(e) = filters.rewind(Place::block(number + 1), removed, Instant::now()) {
            tracing::error!(error = %e, "filters could not be moved back past a rewind");
        }
    }
}
