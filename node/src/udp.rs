//! The verify side of UDP ingress, wire format v1 (docs/wire.md): datagrams
//! arrive from the dataplane's net tile through its ingress ring; each one's
//! transactions are verified and submitted at once (its packet buffer goes
//! back to the pool), and its reply, one datagram once every transaction is
//! preconfirmed or rejected, goes back through the egress ring.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use alloy_primitives::{B256, keccak256};
use tephra_dataplane::{
    packet::{Packet, PacketPool, Peer},
    ratelimit::{RateLimiter, Verdict},
    ring::{Consumer, Producer},
};
use tephra_types::{
    RejectCode,
    wire::{self, TxReply},
};
use tokio::sync::{Notify, Semaphore, oneshot};

use crate::sequencer::{Shared, SubmitStatus};

type Outcome = oneshot::Receiver<crate::sequencer::SubmitOutcome>;

/// What a datagram is waiting for once its transactions are submitted.
enum Pending {
    Refused(wire::RequestError),
    Answering { id: u64, replies: Vec<TxReply>, waiting: Vec<(usize, B256, Outcome)> },
}

/// Verifies and submits a datagram's transactions, without waiting. The
/// source's rate limit is charged first, before any signature is checked;
/// `None`: dropped unanswered (the source was told it is over its limit).
fn submit(shared: &Shared, limiter: &mut RateLimiter, packet: &Packet, now: Instant) -> Option<Pending> {
    let decoded = if packet.truncated {
        Err(wire::RequestError { id: 0, code: RejectCode::Malformed })
    } else {
        wire::decode_request(packet.payload())
    };
    let (id, cost) = match &decoded {
        Ok(request) => (request.id, u32::try_from(request.txs.len()).unwrap_or(u32::MAX).max(1)),
        Err(error) => (error.id, 1),
    };
    match limiter.check(IpAddr::V4(*packet.peer.addr.ip()), cost, now) {
        Verdict::Allow => {}
        Verdict::Refuse => {
            shared.metrics.udp_rate_limited_datagrams.inc();
            return Some(Pending::Refused(wire::RequestError { id, code: RejectCode::RateLimited }));
        }
        Verdict::Drop => {
            shared.metrics.udp_rate_limited_datagrams.inc();
            return None;
        }
    }
    let request = match decoded {
        Ok(request) => request,
        Err(error) => return Some(Pending::Refused(error)),
    };
    let mut replies = Vec::with_capacity(request.txs.len());
    let mut waiting = Vec::with_capacity(request.txs.len());
    for (slot, raw) in request.txs.iter().enumerate() {
        let verified = shared.verifier.read().expect("verifier lock").verify(raw);
        match verified {
            Ok(tx) => {
                let hash = tx.hash;
                let (reply, outcome) = oneshot::channel();
                match shared.submit(tx, Some(reply), true) {
                    Ok(()) => {
                        replies.push(TxReply::Rejected { hash, code: RejectCode::Busy });
                        waiting.push((slot, hash, outcome));
                    }
                    Err(reject) => replies.push(TxReply::Rejected { hash, code: reject.code }),
                }
            }
            Err(reject) => {
                shared.metrics.tx_received.inc();
                shared.reject_metric(&reject);
                // Undecodable bytes have no transaction hash; decodable ones do.
                let hash = tephra_exec::verify::decode(raw).map_or(B256::ZERO, |_| keccak256(raw));
                replies.push(TxReply::Rejected { hash, code: reject.code });
            }
        }
    }
    Some(Pending::Answering { id: request.id, replies, waiting })
}

/// Waits for the submitted transactions and encodes the reply.
async fn answer(pending: Pending, timeout: Duration, out: &mut Vec<u8>) {
    let (id, mut replies, waiting) = match pending {
        Pending::Refused(error) => return wire::encode_refusal(error, out),
        Pending::Answering { id, replies, waiting } => (id, replies, waiting),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    for (slot, hash, outcome) in waiting {
        replies[slot] = match tokio::time::timeout_at(deadline, outcome).await {
            Ok(Ok(Ok(SubmitStatus::Preconfirmed(p)))) => TxReply::Preconfirmed {
                hash,
                block_number: p.block_number,
                index: u32::try_from(p.index).unwrap_or(u32::MAX),
                success: p.success,
                gas_used: p.gas_used,
            },
            Ok(Ok(Err(reject))) => TxReply::Rejected { hash, code: reject.code },
            // Still waiting (a nonce gap, say) or the sequencer stopped.
            _ => TxReply::Rejected { hash, code: RejectCode::Busy },
        };
    }
    wire::encode_reply(id, &replies, out);
}

/// How long a reply waits for a free packet buffer before it is dropped.
const REPLY_BUFFER_WAIT_MS: u64 = 10;

/// Puts a reply into a packet buffer and onto the egress ring; a reply that
/// finds neither is dropped and counted (the client times out and retries).
async fn send_reply(
    shared: &Shared,
    pool: &PacketPool,
    egress: &Mutex<Producer<Box<Packet>>>,
    peer: Peer,
    bytes: &[u8],
) {
    let mut packet = None;
    for _ in 0..REPLY_BUFFER_WAIT_MS {
        packet = pool.take();
        if packet.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let Some(mut packet) = packet else {
        shared.metrics.udp_replies_dropped.inc();
        return;
    };
    if !packet.fill(bytes) {
        // Longer than one frame (only when a request packs many undecodable
        // transactions): the request is refused as a whole instead.
        let mut refusal = Vec::with_capacity(16);
        wire::encode_refusal(wire::RequestError { id: 0, code: RejectCode::Malformed }, &mut refusal);
        packet.fill(&refusal);
    }
    packet.peer = peer;
    if let Err(packet) = egress.lock().expect("egress lock").push(packet) {
        shared.metrics.udp_replies_dropped.inc();
        pool.give_back(packet);
    }
}

/// Serves the datagrams of the ingress ring until the net tile stops.
pub async fn serve(
    mut ingress: Consumer<Box<Packet>>,
    egress: Producer<Box<Packet>>,
    pool: Arc<PacketPool>,
    wake: Arc<Notify>,
    shared: Arc<Shared>,
) {
    let egress = Arc::new(Mutex::new(egress));
    let inflight = Arc::new(Semaphore::new(shared.config.udp.inflight_datagrams_max));
    let timeout = Duration::from_millis(shared.config.udp.preconf_timeout_ms);
    let limits = &shared.config.udp;
    let mut limiter =
        RateLimiter::new(limits.source_txs_per_s, limits.source_burst_txs, limits.sources_max, Instant::now());
    while !ingress.is_abandoned() {
        wake.notified().await;
        while let Some(packet) = ingress.pop() {
            // At the bound the ring fills and the net tile drops (counted).
            let Ok(permit) = inflight.clone().acquire_owned().await else { return };
            let peer = packet.peer;
            let pending = submit(&shared, &mut limiter, &packet, Instant::now());
            pool.give_back(packet);
            let Some(pending) = pending else { continue };
            let (shared, pool, egress) = (shared.clone(), pool.clone(), egress.clone());
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(64);
                answer(pending, timeout, &mut out).await;
                send_reply(&shared, &pool, &egress, peer, &out).await;
                drop(permit);
            });
        }
    }
}
