//! Taking a transaction: verify on the RPC thread, queue for the sequencer,
//! answer at pooling (eth_sendRawTransaction) or at preconfirmation
//! (eth_sendRawTransactionSync, EIP-7966).

use std::{sync::Arc, time::Duration};

use alloy_primitives::{B256, Bytes};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::{
    RpcResult,
    blocks::receipt_of,
    errors::{SERVER_ERROR, SYNC_NOT_READY, SYNC_TIMEOUT, error, invalid, rejected},
    params::{list, param, parse_u64},
};
use crate::{
    config::RpcConfig,
    format,
    shared::{Shared, SubmitOutcome, SubmitStatus},
};

/// Verifies `raw` and queues it for the sequencer; the receiver answers once
/// it is pooled (or refused, an included transaction among them), or with
/// `wait` once it is preconfirmed.
fn submit(
    shared: &Shared,
    raw: &Bytes,
    wait: bool,
) -> Result<(B256, oneshot::Receiver<SubmitOutcome>), ErrorObjectOwned> {
    let verified = shared.verifier.read().expect("verifier lock").verify(raw).map_err(|reject| {
        shared.metrics.tx_received.inc();
        shared.reject_metric(&reject);
        rejected(&reject)
    })?;
    let hash = verified.hash;
    // A transaction already included is refused by the sequencer's admission
    // (code 305): no view lock here, which the sequencer holds across each
    // mini-block's execution and fsync.
    let (reply, outcome) = oneshot::channel();
    shared.submit(verified, Some(reply), wait).map_err(|reject| rejected(&reject))?;
    Ok((hash, outcome))
}

pub(super) async fn send_raw_transaction(params: Params<'static>, shared: Arc<Shared>) -> RpcResult {
    let p = list(&params)?;
    let raw: Bytes = param(&p, 0, "transaction")?;
    let (hash, outcome) = submit(&shared, &raw, false)?;
    match outcome.await {
        Ok(Ok(_)) => Ok(json!(hash)),
        Ok(Err(reject)) => Err(rejected(&reject)),
        Err(_) => Err(error(SERVER_ERROR, "sequencer stopped", None)),
    }
}

pub(super) async fn send_raw_transaction_sync(params: Params<'static>, shared: Arc<Shared>) -> RpcResult {
    if !shared.health.started() {
        return Err(error(SYNC_NOT_READY, "node is not ready", None));
    }
    let p = list(&params)?;
    let raw: Bytes = param(&p, 0, "transaction")?;
    let timeout_ms = sync_timeout_ms(p.get(1), &shared.config.rpc)?;
    let (hash, outcome) = submit(&shared, &raw, true)?;
    match tokio::time::timeout(Duration::from_millis(timeout_ms), outcome).await {
        Ok(Ok(Ok(SubmitStatus::Preconfirmed(_)))) => Ok(preconfirmed_receipt(&shared, &hash)),
        Ok(Ok(Ok(SubmitStatus::Pooled))) => Err(error(SERVER_ERROR, "pooled without waiting", None)),
        Ok(Ok(Err(reject))) => Err(rejected(&reject)),
        Ok(Err(_)) => Err(error(SERVER_ERROR, "sequencer stopped", None)),
        Err(_) => Err(error(
            SYNC_TIMEOUT,
            format!("transaction {hash} was not preconfirmed within {timeout_ms} ms"),
            Some(json!(hash)),
        )),
    }
}

/// The client's timeout (milliseconds, a number or a quantity), the default
/// when it names none, at most the configured maximum.
fn sync_timeout_ms(value: Option<&Value>, limits: &RpcConfig) -> Result<u64, ErrorObjectOwned> {
    let timeout_ms = match value {
        None | Some(Value::Null) => limits.send_raw_sync_timeout_ms_default,
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| invalid("timeout"))?,
        Some(Value::String(text)) => parse_u64(text)?,
        Some(_) => return Err(invalid("timeout must be milliseconds")),
    };
    Ok(timeout_ms.min(limits.send_raw_sync_timeout_ms_max))
}

/// The receipt of a transaction just preconfirmed, with its signed
/// preconfirmation where it has one.
fn preconfirmed_receipt(shared: &Shared, hash: &B256) -> Value {
    let view = shared.view.read().expect("view lock");
    let mut receipt = receipt_of(&view, hash, true).unwrap_or(Value::Null);
    if let Some((_, index, tx)) = view.tx(hash)
        && let Some(preconf) = format::preconfirmation(tx, index)
    {
        receipt["preconfirmation"] = preconf;
    }
    receipt
}
