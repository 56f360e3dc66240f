//! The verify side of UDP ingress, wire format v1 and v2 (docs/wire.md):
//! datagrams arrive from the dataplane's net tile through its ingress ring;
//! each one's transactions are verified and submitted at once (its packet
//! buffer goes back to the pool), and its reply, one datagram once every
//! transaction is preconfirmed or rejected, goes back through the egress
//! ring, followed, when the request asked, by a proof datagram per signed
//! preconfirmation.

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

use crate::shared::{Shared, SubmitOutcome, SubmitStatus};

type Outcome = oneshot::Receiver<SubmitOutcome>;

/// What a datagram is waiting for once its transactions are submitted.
enum Pending {
    Refused(wire::RequestError),
    Answering { request: RequestHeader, replies: Vec<TxReply>, waiting: Vec<(usize, B256, Outcome)> },
}

/// What the source's rate limit makes of a datagram, before any signature
/// is checked.
enum Admission {
    Verify,
    /// Answered with this error at once (malformed, or the source told it is
    /// over its limit).
    Refuse(wire::RequestError),
    /// Dropped unanswered: the source was already told it is over its limit.
    Drop,
}

/// What the reply needs of its request.
#[derive(Clone, Copy)]
struct RequestHeader {
    version: u8,
    id: u64,
    signed: bool,
}

fn decode(packet: &Packet) -> Result<wire::Request<'_>, wire::RequestError> {
    if packet.truncated {
        return Err(wire::RequestError::MALFORMED);
    }
    wire::decode_request(packet.payload())
}

/// Charges the datagram's source one token per transaction (one for a
/// datagram that does not decode). Runs on the serving task, so a flood
/// costs a decode and a bucket, not a verify task.
fn admit(shared: &Shared, limiter: &mut RateLimiter, packet: &Packet, now: Instant) -> Admission {
    let decoded = decode(packet);
    let (version, id, cost) = match &decoded {
        Ok(request) => (request.version, request.id, u32::try_from(request.txs.len()).unwrap_or(u32::MAX).max(1)),
        Err(error) => (error.version, error.id, 1),
    };
    match limiter.check(IpAddr::V4(*packet.peer.addr.ip()), cost, now) {
        Verdict::Allow => decoded.err().map_or(Admission::Verify, Admission::Refuse),
        Verdict::Refuse => {
            shared.metrics.udp_rate_limited_datagrams.inc();
            Admission::Refuse(wire::RequestError { version, id, code: RejectCode::RateLimited })
        }
        Verdict::Drop => {
            shared.metrics.udp_rate_limited_datagrams.inc();
            Admission::Drop
        }
    }
}

/// Verifies and submits an admitted datagram's transactions, without waiting.
fn submit(shared: &Shared, packet: &Packet) -> Pending {
    let request = match decode(packet) {
        Ok(request) => request,
        Err(error) => return Pending::Refused(error),
    };
    let mut replies = Vec::with_capacity(request.txs.len());
    let mut verified = Vec::with_capacity(request.txs.len());
    for (slot, raw) in request.txs.iter().enumerate() {
        match shared.verifier.read().expect("verifier lock").verify(raw) {
            Ok(tx) => {
                replies.push(TxReply::Rejected { hash: tx.hash, code: RejectCode::Busy });
                verified.push((slot, tx));
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
    // Every signature first, then the submissions back to back: the
    // sequencer, blocked on its queue, wakes once for the datagram rather
    // than once for each of its transactions, and the reply waits for the
    // last of them anyway.
    let mut waiting = Vec::with_capacity(verified.len());
    for (slot, tx) in verified {
        let hash = tx.hash;
        let (reply, outcome) = oneshot::channel();
        match shared.submit(tx, Some(reply), true) {
            Ok(()) => waiting.push((slot, hash, outcome)),
            Err(reject) => replies[slot] = TxReply::Rejected { hash, code: reject.code },
        }
    }
    let request = RequestHeader { version: request.version, id: request.id, signed: request.signed };
    Pending::Answering { request, replies, waiting }
}

/// Waits for the submitted transactions and encodes the reply; returns the
/// request id and the signed preconfirmations, when the request asked.
async fn answer(pending: Pending, timeout: Duration, out: &mut Vec<u8>) -> (u64, Vec<wire::SignedPreconf>) {
    let (request, mut replies, waiting) = match pending {
        Pending::Refused(error) => {
            wire::encode_refusal(error, out);
            return (error.id, Vec::new());
        }
        Pending::Answering { request, replies, waiting } => (request, replies, waiting),
    };
    let mut proofs = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    for (slot, hash, outcome) in waiting {
        replies[slot] = match tokio::time::timeout_at(deadline, outcome).await {
            Ok(Ok(Ok(SubmitStatus::Preconfirmed(p)))) => {
                let index = u32::try_from(p.index).unwrap_or(u32::MAX);
                if let (true, Some(at)) = (request.signed, &p.signed) {
                    proofs.push(wire::SignedPreconf::from(&at.preconfirmation(hash, index)));
                }
                TxReply::Preconfirmed {
                    hash,
                    block_number: p.block_number,
                    index,
                    success: p.success,
                    gas_used: p.gas_used,
                }
            }
            Ok(Ok(Err(reject))) => TxReply::Rejected { hash, code: reject.code },
            // Still waiting (a nonce gap, say) or the sequencer stopped.
            _ => TxReply::Rejected { hash, code: RejectCode::Busy },
        };
    }
    wire::encode_reply(request.version, request.id, &replies, out);
    (request.id, proofs)
}

/// How long a reply waits for a free packet buffer before it is dropped.
const REPLY_BUFFER_WAIT_MS: u64 = 10;

/// Puts a reply into a packet buffer and onto the egress ring; a reply that
/// finds neither is dropped and counted (the client times out and retries).
/// Whether it went.
async fn send_reply(
    shared: &Shared,
    pool: &PacketPool,
    egress: &Mutex<Producer<Box<Packet>>>,
    peer: Peer,
    bytes: &[u8],
) -> bool {
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
        return false;
    };
    if !packet.fill(bytes) {
        // Longer than one frame (only when a request packs many undecodable
        // transactions): the request is refused as a whole instead.
        let mut refusal = Vec::with_capacity(16);
        wire::encode_refusal(wire::RequestError::MALFORMED, &mut refusal);
        packet.fill(&refusal);
    }
    packet.peer = peer;
    if let Err(packet) = egress.lock().expect("egress lock").push(packet) {
        shared.metrics.udp_replies_dropped.inc();
        pool.give_back(packet);
        return false;
    }
    true
}

/// Datagrams being verified at once, per verify thread: one on each thread
/// and one ready behind it. Each holds its packet buffer while its signatures
/// are checked, so this also bounds the buffers verification keeps from the
/// net tile.
pub(crate) const VERIFYING_PER_THREAD: usize = 2;

/// Serves the datagrams of the ingress ring until the net tile stops. Each
/// datagram is verified on whichever verify thread is free (signature
/// recovery is most of a transaction's cost, and one task would hold it to
/// one core); transactions of one datagram keep their order, and the pool
/// puts one sender's transactions from different datagrams back in nonce
/// order.
pub async fn serve(
    mut ingress: Consumer<Box<Packet>>,
    egress: Producer<Box<Packet>>,
    pool: Arc<PacketPool>,
    wake: Arc<Notify>,
    shared: Arc<Shared>,
) {
    let egress = Arc::new(Mutex::new(egress));
    let inflight = Arc::new(Semaphore::new(shared.config.udp.inflight_datagrams_max));
    let verify_threads = tokio::runtime::Handle::current().metrics().num_workers();
    let verifying = Arc::new(Semaphore::new(verify_threads * VERIFYING_PER_THREAD));
    let timeout = Duration::from_millis(shared.config.udp.preconf_timeout_ms);
    let limits = &shared.config.udp;
    let mut limiter =
        RateLimiter::new(limits.source_txs_per_s, limits.source_burst_txs, limits.sources_max, Instant::now());
    while !ingress.is_abandoned() {
        wake.notified().await;
        while let Some(packet) = ingress.pop() {
            // At the bound the ring fills and the net tile drops (counted).
            let Ok(answering) = inflight.clone().acquire_owned().await else { return };
            let admission = admit(&shared, &mut limiter, &packet, Instant::now());
            let peer = packet.peer;
            let pending = match admission {
                Admission::Drop => {
                    pool.give_back(packet);
                    continue;
                }
                Admission::Refuse(error) => {
                    pool.give_back(packet);
                    Err(error)
                }
                Admission::Verify => {
                    let Ok(verifying) = verifying.clone().acquire_owned().await else { return };
                    Ok((packet, verifying))
                }
            };
            let (shared, pool, egress) = (shared.clone(), pool.clone(), egress.clone());
            tokio::spawn(async move {
                let pending = match pending {
                    Ok((packet, verifying)) => {
                        let pending = submit(&shared, &packet);
                        pool.give_back(packet);
                        drop(verifying);
                        pending
                    }
                    Err(error) => Pending::Refused(error),
                };
                let mut out = Vec::with_capacity(64);
                let (id, proofs) = answer(pending, timeout, &mut out).await;
                let replied = send_reply(&shared, &pool, &egress, peer, &out).await;
                // The answer first, its proofs behind it; none without it
                // (the node is short of buffers: the client asks again).
                if replied {
                    for proof in &proofs {
                        wire::encode_proof(id, proof, &mut out);
                        send_reply(&shared, &pool, &egress, peer, &out).await;
                    }
                }
                drop(answering);
            });
        }
    }
}
