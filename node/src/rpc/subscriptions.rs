//! eth_subscribe: `newHeads` and `logs` at each seal, `preconfirmations` at
//! each mini-block, from the chain view's events.

use std::sync::Arc;

use jsonrpsee::{PendingSubscriptionSink, SubscriptionMessage, core::SubscriptionResult, types::Params};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::{
    errors::invalid,
    logs::{LogFilter, matching_logs},
    params::{list, param},
};
use crate::{chain_view::Event, format, format::qty, shared::Shared, view::StoredTx};

pub(super) async fn subscribe(
    params: Params<'static>,
    pending: PendingSubscriptionSink,
    shared: Arc<Shared>,
    _: jsonrpsee::Extensions,
) -> SubscriptionResult {
    let p = list(&params)?;
    let kind: String = param(&p, 0, "subscription")?;
    let filter = match kind.as_str() {
        "newHeads" | "preconfirmations" => LogFilter::default(),
        "logs" => LogFilter::parse(p.get(1))?,
        other => {
            pending.reject(invalid(format!("unknown subscription {other}"))).await;
            return Ok(());
        }
    };
    let mut events = shared.events.subscribe();
    let sink = pending.accept().await?;
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            // A subscriber too slow for the buffer is dropped rather than
            // holding memory for it.
            Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return Ok(()),
        };
        for message in messages(&event, &kind, &filter) {
            let message = SubscriptionMessage::from(serde_json::value::to_raw_value(&message)?);
            if sink.send(message).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// What a subscription of `kind` is sent for `event`; nothing for events of
/// other kinds.
fn messages(event: &Event, kind: &str, filter: &LogFilter) -> Vec<Value> {
    match (event, kind) {
        (Event::Sealed(block), "newHeads") => vec![format::header(&block.header, Some(block.hash))],
        (Event::Sealed(block), "logs") => {
            let mut out = Vec::new();
            matching_logs(filter, &block.txs, block.header.number, Some(block.hash), &mut out);
            out
        }
        // Logs of abandoned blocks go again, removed (as geth tells a reorg).
        (Event::Rewound { abandoned, .. }, "logs") => {
            let mut out = Vec::new();
            for block in abandoned.iter() {
                matching_logs(filter, &block.txs, block.header.number, Some(block.hash), &mut out);
            }
            for log in &mut out {
                log["removed"] = Value::Bool(true);
            }
            out
        }
        (Event::Preconfirmed { block_number, txs }, "preconfirmations") => {
            txs.iter().map(|tx| preconfirmation_message(*block_number, tx)).collect()
        }
        _ => Vec::new(),
    }
}

fn preconfirmation_message(block_number: u64, tx: &StoredTx) -> Value {
    json!({
        "transactionHash": tx.hash,
        "blockNumber": qty(block_number),
        "status": if tx.receipt.status.coerce_status() { "0x1" } else { "0x0" },
        "gasUsed": qty(tx.gas_used),
    })
}
