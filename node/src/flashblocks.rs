//! The mini-blocks as a Flashblocks stream: the WebSocket feed rollup-boost
//! and op-rbuilder publish (op-alloy's `OpFlashblockPayload`), so that
//! tools built for Flashblocks read tephra's preconfirmations unchanged.
//!
//! ```text
//!  ChainView events ──> one producer task: a JSON text per event ──> broadcast ──> each subscriber's
//!    Preconfirmed:  index 0 carries `base` (the block's parameters);        WebSocket (soketto), a task
//!                   `diff.transactions` only the new ones (EIP-2718),        per connection, at most
//!                   cumulative gas and bloom, zero roots mid-block           FLASHBLOCKS_SUBSCRIBERS_MAX
//!    Sealed:        a closing flashblock with the block's roots and hash
//! ```
//!
//! Invariants: every flashblock of a block shares one `payload_id` (from the
//! parent hash and number); indices count from 0 without gaps; `base` is on
//! index 0 only. A subscriber slower than `rpc.subscription_buffer_max`
//! messages is dropped, never waited for.

use std::sync::Arc;

use alloy_consensus::Header;
use alloy_primitives::{B64, B256, Bloom, keccak256};
use serde_json::{Map, Value, json};
use soketto::handshake::{Server, server::Response};
use tephra_types::limits::FLASHBLOCKS_SUBSCRIBERS_MAX;
use tokio::{
    net::TcpListener,
    sync::{Semaphore, broadcast},
};
use tokio_util::compat::TokioAsyncReadCompatExt;

use crate::{
    chain_view::Event,
    format::qty,
    shared::Shared,
    view::{StoredBlock, StoredTx},
};

/// The parameters a block's first flashblock carries.
struct Base {
    parent_hash: B256,
    fee_recipient: alloy_primitives::Address,
    prev_randao: B256,
    number: u64,
    gas_limit: u64,
    timestamp: u64,
    extra_data: alloy_primitives::Bytes,
    base_fee_per_gas: u64,
    parent_beacon_block_root: B256,
}

impl Base {
    fn of_header(header: &Header) -> Self {
        Self {
            parent_hash: header.parent_hash,
            fee_recipient: header.beneficiary,
            prev_randao: header.mix_hash,
            number: header.number,
            gas_limit: header.gas_limit,
            timestamp: header.timestamp,
            extra_data: header.extra_data.clone(),
            base_fee_per_gas: header.base_fee_per_gas.unwrap_or(0),
            parent_beacon_block_root: header.parent_beacon_block_root.unwrap_or_default(),
        }
    }

    fn json(&self) -> Value {
        json!({
            "parent_beacon_block_root": self.parent_beacon_block_root,
            "parent_hash": self.parent_hash,
            "fee_recipient": self.fee_recipient,
            "prev_randao": self.prev_randao,
            "block_number": qty(self.number),
            "gas_limit": qty(self.gas_limit),
            "timestamp": qty(self.timestamp),
            "extra_data": self.extra_data,
            "base_fee_per_gas": qty(self.base_fee_per_gas),
        })
    }
}

/// The block being streamed: its id, the next index, its bloom so far.
struct Current {
    number: u64,
    payload_id: B64,
    next_index: u64,
    bloom: Bloom,
    gas_used: u64,
}

/// Turns the chain's events into flashblock messages.
struct Producer {
    shared: Arc<Shared>,
    current: Option<Current>,
}

impl Producer {
    /// The messages `event` makes (none for a block already closed).
    fn messages(&mut self, event: &Event) -> Vec<String> {
        match event {
            Event::Preconfirmed { block_number, txs } => self.preconfirmed(*block_number, txs).into_iter().collect(),
            Event::Sealed(block) => vec![self.sealed(block)],
            // The rebuilt block at that height starts again from index 0,
            // with its new base, as a rebuilt payload does in rollup-boost.
            Event::Rewound { .. } => {
                self.current = None;
                Vec::new()
            }
        }
    }

    /// Starts streaming block `number` unless it is the current one; the
    /// base to send with its index 0.
    fn start(&mut self, number: u64, header: Option<&Header>) -> Option<Base> {
        if self.current.as_ref().is_some_and(|c| c.number == number) {
            return None;
        }
        let base = match header {
            Some(header) => Base::of_header(header),
            None => {
                let view = self.shared.view.read().expect("view lock");
                let p = &view.open_block().params;
                // The view moved on to a later block: its header says what this one was.
                if p.number != number {
                    return view.block(number).map(|b| Base::of_header(&b.header));
                }
                Base {
                    parent_hash: p.parent_hash,
                    fee_recipient: p.beneficiary,
                    prev_randao: p.prevrandao,
                    number,
                    gas_limit: p.gas_limit,
                    timestamp: p.timestamp,
                    extra_data: p.extra_data.clone(),
                    base_fee_per_gas: p.base_fee_per_gas,
                    parent_beacon_block_root: p.parent_beacon_block_root,
                }
            }
        };
        let mut id = [0u8; 40];
        id[..32].copy_from_slice(base.parent_hash.as_slice());
        id[32..].copy_from_slice(&number.to_be_bytes());
        let payload_id = B64::from_slice(&keccak256(id)[..8]);
        self.current = Some(Current { number, payload_id, next_index: 0, bloom: Bloom::ZERO, gas_used: 0 });
        Some(base)
    }

    fn preconfirmed(&mut self, number: u64, txs: &[StoredTx]) -> Option<String> {
        let base = self.start(number, None);
        let current = self.current.as_mut().filter(|c| c.number == number)?;
        for tx in txs {
            current.bloom |= tx.logs_bloom();
        }
        current.gas_used = txs.last().map_or(current.gas_used, |t| t.receipt.cumulative_gas_used);
        let transactions: Vec<Value> = txs.iter().map(|t| json!(encoded(t))).collect();
        let receipts: Map<String, Value> = txs.iter().map(|t| (t.hash.to_string(), receipt(t))).collect();
        let diff = json!({
            "state_root": B256::ZERO,
            "receipts_root": B256::ZERO,
            "logs_bloom": current.bloom,
            "gas_used": qty(current.gas_used),
            "block_hash": B256::ZERO,
            "transactions": transactions,
            "withdrawals": [],
            "withdrawals_root": B256::ZERO,
            "blob_gas_used": qty(0u64),
        });
        Some(message(current, base, diff, receipts))
    }

    /// The closing flashblock: no new transactions, the block's own roots and hash.
    fn sealed(&mut self, block: &StoredBlock) -> String {
        let h = &block.header;
        let base = self.start(h.number, Some(h));
        let current = self.current.as_mut().expect("started above");
        let diff = json!({
            "state_root": h.state_root,
            "receipts_root": h.receipts_root,
            "logs_bloom": h.logs_bloom,
            "gas_used": qty(h.gas_used),
            "block_hash": block.hash,
            "transactions": [],
            "withdrawals": [],
            "withdrawals_root": h.withdrawals_root.unwrap_or_default(),
            "blob_gas_used": qty(h.blob_gas_used.unwrap_or(0)),
        });
        // Without receipts to report, a block sealed before any
        // preconfirmation still opens with its own transactions' diff.
        let receipts = if base.is_some() {
            block.txs.iter().map(|t| (t.hash.to_string(), receipt(t))).collect()
        } else {
            Map::new()
        };
        let mut diff = diff;
        if base.is_some() {
            diff["transactions"] = Value::Array(block.txs.iter().map(|t| json!(encoded(t))).collect());
        }
        message(current, base, diff, receipts)
    }
}

fn encoded(tx: &StoredTx) -> String {
    format!("0x{}", hex::encode(alloy_eips::eip2718::Encodable2718::encoded_2718(&tx.envelope)))
}

/// A receipt as flashblocks' metadata carries it (camelCase, op-alloy's).
fn receipt(tx: &StoredTx) -> Value {
    let logs: Vec<Value> = tx
        .receipt
        .logs
        .iter()
        .map(|l| json!({ "address": l.address, "topics": l.topics(), "data": l.data.data }))
        .collect();
    let mut value = json!({
        "type": qty(u64::from(alloy_consensus::Typed2718::ty(&tx.envelope))),
        "status": if tx.receipt.status.coerce_status() { "0x1" } else { "0x0" },
        "cumulativeGasUsed": qty(tx.receipt.cumulative_gas_used),
        "logs": logs,
    });
    if let Some(deposit) = tx.deposit {
        value["depositNonce"] = json!(qty(deposit.nonce));
        if let Some(version) = deposit.version {
            value["depositReceiptVersion"] = json!(qty(version));
        }
    }
    value
}

fn message(current: &mut Current, base: Option<Base>, diff: Value, receipts: Map<String, Value>) -> String {
    let mut payload = json!({
        "payload_id": current.payload_id,
        "index": current.next_index,
        "diff": diff,
        "metadata": { "block_number": current.number, "new_account_balances": {}, "receipts": receipts },
    });
    if let Some(base) = base {
        payload["base"] = base.json();
    }
    current.next_index += 1;
    payload.to_string()
}

/// Serves the stream on `listener` until the node stops.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let buffer = (shared.config.rpc.subscription_buffer_max as usize).max(1);
    let (messages, _) = broadcast::channel::<Arc<str>>(buffer);
    tokio::spawn(produce(shared.clone(), messages.clone()));
    let slots = Arc::new(Semaphore::new(FLASHBLOCKS_SUBSCRIBERS_MAX));
    loop {
        let Ok((socket, _)) = listener.accept().await else { continue };
        // At the bound a new subscriber is turned away (its socket closed).
        let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
        let feed = messages.subscribe();
        tokio::spawn(async move {
            let _ = subscriber(socket, feed).await;
            drop(slot);
        });
    }
}

async fn produce(shared: Arc<Shared>, messages: broadcast::Sender<Arc<str>>) {
    let mut events = shared.events.subscribe();
    let mut producer = Producer { shared: shared.clone(), current: None };
    loop {
        match events.recv().await {
            Ok(event) => {
                for message in producer.messages(&event) {
                    let _ = messages.send(Arc::from(message));
                }
            }
            // Missed events: the next block starts afresh.
            Err(broadcast::error::RecvError::Lagged(_)) => producer.current = None,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// One subscriber: the WebSocket handshake, then every message until it
/// leaves or falls behind. Its own frames are read (and dropped) so that
/// pings and the close are answered.
async fn subscriber(
    socket: tokio::net::TcpStream,
    mut feed: broadcast::Receiver<Arc<str>>,
) -> Result<(), soketto::BoxedError> {
    let mut server = Server::new(socket.compat());
    let key = server.receive_request().await?.key();
    server.send_response(&Response::Accept { key, protocol: None }).await?;
    let (mut sender, mut receiver) = server.into_builder().finish();
    let reader = tokio::spawn(async move {
        let mut frame = Vec::new();
        while receiver.receive_data(&mut frame).await.is_ok() {
            frame.clear();
        }
    });
    let result = loop {
        match feed.recv().await {
            Ok(message) => {
                if let Err(error) = sender.send_text(&*message).await {
                    break Err(error.into());
                }
                if let Err(error) = sender.flush().await {
                    break Err(error.into());
                }
            }
            Err(_) => break Ok(()),
        }
    };
    reader.abort();
    result
}
