//! UDP ingress on kernel sockets, wire format v1 (docs/wire.md): each
//! datagram's transactions are verified, submitted, and answered in one reply
//! datagram once each is preconfirmed or rejected. The kernel-bypass backends
//! deliver into the same path.

use std::{sync::Arc, time::Duration};

use alloy_primitives::{B256, keccak256};
use tephra_types::{
    RejectCode,
    wire::{self, TxReply},
};
use tokio::{net::UdpSocket, sync::Semaphore};

use crate::sequencer::{Shared, SubmitStatus};

/// Answers one request datagram.
async fn answer(shared: &Shared, datagram: &[u8], timeout: Duration) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let request = match wire::decode_request(datagram) {
        Ok(request) => request,
        Err(error) => {
            wire::encode_refusal(error, &mut out);
            return out;
        }
    };
    let mut replies = Vec::with_capacity(request.txs.len());
    let mut waiting = Vec::with_capacity(request.txs.len());
    for (slot, raw) in request.txs.iter().enumerate() {
        let verified = shared.verifier.read().expect("verifier lock").verify(raw);
        match verified {
            Ok(tx) => {
                let hash = tx.hash;
                let (reply, outcome) = tokio::sync::oneshot::channel();
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
    wire::encode_reply(request.id, &replies, &mut out);
    out
}

/// Serves UDP requests until the socket fails.
pub async fn serve(socket: UdpSocket, shared: Arc<Shared>) {
    let socket = Arc::new(socket);
    let inflight = Arc::new(Semaphore::new(shared.config.udp.inflight_datagrams_max));
    let timeout = Duration::from_millis(shared.config.udp.preconf_timeout_ms);
    let mut buffer = vec![0u8; wire::DATAGRAM_SIZE_MAX_BYTES];
    loop {
        let Ok(permit) = inflight.clone().acquire_owned().await else { return };
        let (len, peer) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                tracing::warn!(%error, "udp receive failed");
                continue;
            }
        };
        let datagram = buffer[..len].to_vec();
        let (socket, shared) = (socket.clone(), shared.clone());
        tokio::spawn(async move {
            let reply = answer(&shared, &datagram, timeout).await;
            if let Err(error) = socket.send_to(&reply, peer).await {
                tracing::debug!(%error, %peer, "udp reply not sent");
            }
            drop(permit);
        });
    }
}
