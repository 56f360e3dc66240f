//! The UDP driver: wire format v1 datagrams of `txs_per_datagram`
//! consecutive workload transactions, request id = datagram number.
//!
//! Open loop: datagram `j` is due at `start + j * txs_per_datagram / rate`,
//! fixed before the first send; a late send still counts its latency from
//! the time it was due, so a stall shows up in the latency of every
//! transaction queued behind it (no coordinated omission). Closed loop: at
//! most `window_datagrams` unanswered datagrams; as fast as answers come.

use std::{
    net::UdpSocket,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tephra_types::wire::{self, TxReply};

use crate::{measure::Recorder, workload::Workload};

/// How long after its last send the driver waits for answers: the node's
/// default `udp.preconf_timeout_ms` plus a margin.
const REPLY_GRACE: Duration = Duration::from_secs(3);
/// Closed loop: a window that has not moved for this long is taken as lost
/// datagrams, and sending goes on.
const WINDOW_STALL: Duration = Duration::from_secs(1);

/// How sends are paced.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// Send times fixed in advance at this many transactions a second.
    Open { tx_per_s: f64 },
    /// At most this many unanswered requests (datagrams, or JSON-RPC calls
    /// per connection) at once.
    Closed { window: usize },
}

/// Sends workload transactions `0..recorder.txs()` to `address`, or fewer
/// if `deadline` comes first.
pub fn run(
    address: &str,
    workload: &Workload,
    txs_per_datagram: usize,
    pace: Pace,
    deadline: Option<Instant>,
    recorder: &Arc<Recorder>,
) -> Result<(), String> {
    if txs_per_datagram == 0 || txs_per_datagram > wire::TXS_PER_DATAGRAM_MAX {
        return Err(format!("txs per datagram must be 1..={}", wire::TXS_PER_DATAGRAM_MAX));
    }
    let count = recorder.txs();
    let datagrams = count.div_ceil(txs_per_datagram);
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    socket.connect(address).map_err(|e| format!("{address}: {e}"))?;
    let answered = Arc::new(AtomicU64::new(0));
    // Set once sending is over: how many datagrams went out.
    let sent_datagrams = Arc::new(AtomicU64::new(u64::MAX));
    let receiver = {
        let (socket, recorder) = (socket.try_clone().map_err(|e| e.to_string())?, recorder.clone());
        let (answered, sent_datagrams) = (answered.clone(), sent_datagrams.clone());
        std::thread::Builder::new()
            .name("udp-replies".into())
            .spawn(move || receive(&socket, &recorder, txs_per_datagram, datagrams, &answered, &sent_datagrams))
            .map_err(|e| e.to_string())?
    };
    let mut sent = 0u64;
    recorder.wait_for_start();
    let mut datagram = Vec::with_capacity(wire::DATAGRAM_SIZE_MAX_BYTES);
    let start = recorder.start;
    for j in 0..datagrams {
        if deadline.is_some_and(|d| Instant::now() > d) {
            break;
        }
        let first = j * txs_per_datagram;
        let txs: Vec<&[u8]> = (first..(first + txs_per_datagram).min(count)).map(|i| workload.tx(i)).collect();
        let due = match pace {
            Pace::Open { tx_per_s } => {
                let due = start + Duration::from_secs_f64(first as f64 / tx_per_s);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                due
            }
            Pace::Closed { window } => {
                let mut last_move = (Instant::now(), answered.load(Ordering::Relaxed));
                while j as u64 - answered.load(Ordering::Relaxed) >= window as u64 {
                    let now_answered = answered.load(Ordering::Relaxed);
                    if now_answered != last_move.1 {
                        last_move = (Instant::now(), now_answered);
                    } else if last_move.0.elapsed() > WINDOW_STALL {
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(20));
                }
                Instant::now()
            }
        };
        for i in first..first + txs.len() {
            recorder.sent(i, due);
        }
        wire::encode_request(j as u64, &txs, &mut datagram);
        // A full socket buffer loses the datagram, as on a real network.
        let _ = socket.send(&datagram);
        sent += 1;
    }
    sent_datagrams.store(sent, Ordering::Relaxed);
    receiver.join().map_err(|_| "the UDP reply thread panicked".to_string())
}

fn receive(
    socket: &UdpSocket,
    recorder: &Recorder,
    txs_per_datagram: usize,
    datagrams: usize,
    answered: &AtomicU64,
    sent_datagrams: &AtomicU64,
) {
    let _ = socket.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buffer = vec![0u8; wire::DATAGRAM_SIZE_MAX_BYTES];
    let mut sending_done_at: Option<Instant> = None;
    loop {
        let sent = sent_datagrams.load(Ordering::Relaxed);
        if sent != u64::MAX {
            let done_at = *sending_done_at.get_or_insert_with(Instant::now);
            if answered.load(Ordering::Relaxed) >= sent || done_at.elapsed() > REPLY_GRACE {
                return;
            }
        }
        let Ok(len) = socket.recv(&mut buffer) else { continue };
        let now = Instant::now();
        let Some((id, answer)) = wire::decode_reply(&buffer[..len]) else { continue };
        let Ok(j) = usize::try_from(id) else { continue };
        if j >= datagrams {
            continue;
        }
        let first = j * txs_per_datagram;
        let in_datagram = txs_per_datagram.min(recorder.txs() - first);
        match answer {
            Ok(replies) => {
                for (offset, reply) in replies.iter().take(in_datagram).enumerate() {
                    match *reply {
                        TxReply::Preconfirmed { block_number, .. } => {
                            recorder.preconfirmed(first + offset, now, Some(block_number));
                        }
                        TxReply::Rejected { code, .. } => recorder.rejected_code(now, code.as_u16()),
                    }
                }
            }
            Err(code) => {
                for _ in 0..in_datagram {
                    recorder.rejected_code(now, code.as_u16());
                }
            }
        }
        answered.fetch_add(1, Ordering::Relaxed);
    }
}
