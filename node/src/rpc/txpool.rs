//! geth's txpool namespace: the transactions waiting in the pool, pending
//! (executable) or queued (behind a nonce gap). A transaction leaves the
//! pool when it is preconfirmed, within milliseconds here, so the pool is
//! mostly queued transactions and the moments before a mini-block.

use alloy_consensus::Transaction as _;
use serde_json::{Map, Value, json};

use super::RpcResult;
use crate::{
    format::{self, qty},
    shared::Shared,
};
use tephra_exec::VerifiedTx;

pub(super) fn status(shared: &Shared) -> RpcResult {
    let view = shared.view.read().expect("view lock");
    let pool = view.pool();
    Ok(json!({"pending": qty(pool.pending_count() as u64), "queued": qty(pool.queued_count() as u64)}))
}

pub(super) fn content(shared: &Shared) -> RpcResult {
    Ok(by_sender_and_nonce(shared, format::pooled_transaction))
}

pub(super) fn inspect(shared: &Shared) -> RpcResult {
    Ok(by_sender_and_nonce(shared, summary))
}

/// `{pending: {sender: {nonce: shown(tx)}}, queued: {...}}`, as geth
/// answers: senders checksummed, nonces in decimal.
fn by_sender_and_nonce(shared: &Shared, shown: impl Fn(&VerifiedTx) -> Value) -> Value {
    let view = shared.view.read().expect("view lock");
    let (mut pending, mut queued) = (Map::new(), Map::new());
    for (tx, is_pending) in view.pool().transactions() {
        let side = if is_pending { &mut pending } else { &mut queued };
        let of_sender = side.entry(tx.sender.to_checksum(None)).or_insert_with(|| json!({}));
        of_sender[tx.nonce().to_string()] = shown(tx);
    }
    json!({"pending": pending, "queued": queued})
}

/// geth's one-line summary: `to: value wei + gas gas × price wei`.
fn summary(tx: &VerifiedTx) -> Value {
    let to = tx.envelope.to().map_or_else(|| "contract creation".to_string(), |to| to.to_checksum(None));
    let (value, gas, price) = (tx.envelope.value(), tx.envelope.gas_limit(), tx.envelope.max_fee_per_gas());
    json!(format!("{to}: {value} wei + {gas} gas × {price} wei"))
}
