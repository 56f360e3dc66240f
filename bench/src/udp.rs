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
/// The driver socket's receive buffer: a mini-block preconfirms up to 256
/// transactions at once, and their replies arrive as one burst while the
/// reply thread may be descheduled on a machine it shares with the node. A
/// reply the client's own socket drops would be charged to the node as lost
/// (and, closed loop, would shrink the window for `WINDOW_STALL`).
const RECEIVE_BUFFER_BYTES: usize = 8 << 20;

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
    set_receive_buffer(&socket);
    let answered = Arc::new(AtomicU64::new(0));
    // Set once sending is over: how many datagrams went out.
    let sent_datagrams = Arc::new(AtomicU64::new(u64::MAX));
    let receiver = {
        let (socket, recorder) = (socket.try_clone().map_err(|e| e.to_string())?, recorder.clone());
        let (answered, sent_datagrams) = (answered.clone(), sent_datagrams.clone());
        let sender = std::thread::current();
        std::thread::Builder::new()
            .name("udp-replies".into())
            .spawn(move || {
                let replies = Replies { recorder: &recorder, txs_per_datagram, datagrams, sender };
                replies.receive(&socket, &answered, &sent_datagrams);
            })
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
                // Parked until a reply moves the window (the reply thread
                // unparks this one): no polling on the cores the node uses.
                let mut last_move = (Instant::now(), answered.load(Ordering::Acquire));
                while j as u64 - answered.load(Ordering::Acquire) >= window as u64 {
                    let now_answered = answered.load(Ordering::Acquire);
                    if now_answered != last_move.1 {
                        last_move = (Instant::now(), now_answered);
                    }
                    match WINDOW_STALL.checked_sub(last_move.0.elapsed()) {
                        Some(left) if !left.is_zero() => std::thread::park_timeout(left),
                        _ => break,
                    }
                }
                Instant::now()
            }
        };
        for i in first..first + txs.len() {
            recorder.sent(i, due);
        }
        wire::encode_request(j as u64, false, &txs, &mut datagram);
        // A full socket buffer loses the datagram, as on a real network.
        let _ = socket.send(&datagram);
        sent += 1;
    }
    sent_datagrams.store(sent, Ordering::Relaxed);
    receiver.join().map_err(|_| "the UDP reply thread panicked".to_string())
}

/// `RECEIVE_BUFFER_BYTES`, past `net.core.rmem_max` where privileged;
/// otherwise as much as rmem_max allows, with a warning.
fn set_receive_buffer(socket: &UdpSocket) {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    if setsockopt(socket, sockopt::RcvBufForce, &RECEIVE_BUFFER_BYTES).is_ok() {
        return;
    }
    let _ = setsockopt(socket, sockopt::RcvBuf, &RECEIVE_BUFFER_BYTES);
    let granted = getsockopt(socket, sockopt::RcvBuf).unwrap_or(0);
    eprintln!(
        "warning: the UDP driver's receive buffer is {granted} bytes, not {RECEIVE_BUFFER_BYTES} \
         (unprivileged; raise net.core.rmem_max): bursts of replies may be lost in it"
    );
}

/// The reply thread's view of a run.
struct Replies<'a> {
    recorder: &'a Recorder,
    txs_per_datagram: usize,
    datagrams: usize,
    /// The sending thread, parked while its window is full.
    sender: std::thread::Thread,
}

impl Replies<'_> {
    fn receive(&self, socket: &UdpSocket, answered: &AtomicU64, sent_datagrams: &AtomicU64) {
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
            if self.record(&buffer[..len], Instant::now()) {
                answered.fetch_add(1, Ordering::Release);
                self.sender.unpark();
            }
        }
    }

    /// Records one reply datagram; false if it is not one of this run's.
    fn record(&self, datagram: &[u8], now: Instant) -> bool {
        let (recorder, txs_per_datagram) = (self.recorder, self.txs_per_datagram);
        let Some((id, answer)) = wire::decode_reply(datagram) else { return false };
        let Ok(j) = usize::try_from(id) else { return false };
        if j >= self.datagrams {
            return false;
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
        true
    }
}
