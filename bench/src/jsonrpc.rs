//! The JSON-RPC driver: eth_sendRawTransaction or eth_sendRawTransactionSync
//! pipelined over `connections` HTTP/1.1 connections: a writer thread sends
//! requests without waiting for answers and a reader thread takes the
//! answers in order, as a busy wallet backend or relay would. A sender's
//! transactions all go over one connection (sender `s` on connection
//! `s % connections`), so that they reach the node in nonce order.
//!
//! With `calls_per_request` above 1 each HTTP request is a JSON-RPC batch of
//! that many consecutive transactions of the connection, as ethers v6 and
//! viem's `batch` transport send concurrent calls.
//!
//! Open loop: transaction `i` is due at `start + i / rate`; latency counts
//! from then. Closed loop: at most `window` unanswered requests per
//! connection.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use alloy_primitives::hex;
use serde_json::Value;

use crate::{measure::Recorder, udp::Pace, workload::Workload};

/// Open loop: calls sent and not yet answered on one connection, at most;
/// beyond it the writer waits (and the latency of what waits still counts
/// from its due time).
const OPEN_LOOP_OUTSTANDING_MAX: usize = 65_536;
/// Answers are awaited until this long after the last send was due (open
/// loop) or the deadline (closed loop); what is unanswered then is lost. A
/// node that falls behind cannot stretch a phase without bound.
const ANSWER_GRACE: Duration = Duration::from_secs(10);
/// A response header line or body longer than this is refused.
const RESPONSE_SIZE_MAX_BYTES: usize = 16 << 20;

/// Sends workload transactions `0..recorder.txs()` to `url`
/// (`http://host:port`), or fewer if `deadline` comes first.
#[allow(clippy::too_many_arguments, reason = "one phase's load")]
pub fn run(
    url: &str,
    workload: &Arc<Workload>,
    connections: usize,
    calls_per_request: usize,
    sync: bool,
    pace: Pace,
    deadline: Option<Instant>,
    recorder: &Arc<Recorder>,
) -> Result<(), String> {
    let address = url.strip_prefix("http://").ok_or_else(|| format!("{url}: only http:// is driven"))?.to_string();
    let method = if sync { "eth_sendRawTransactionSync" } else { "eth_sendRawTransaction" };
    let last_due = match (pace, deadline) {
        (_, Some(deadline)) => deadline,
        (Pace::Open { tx_per_s }, None) => recorder.start + Duration::from_secs_f64(recorder.txs() as f64 / tx_per_s),
        (Pace::Closed { .. }, None) => Instant::now() + Duration::from_secs(3600),
    };
    let answer_deadline = last_due + ANSWER_GRACE;
    let mut threads = Vec::new();
    for connection in 0..connections.max(1) {
        let stream = TcpStream::connect(&address).map_err(|e| format!("{address}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let reader_stream = stream.try_clone().map_err(|e| e.to_string())?;
        let capacity = match pace {
            Pace::Open { .. } => OPEN_LOOP_OUTSTANDING_MAX,
            // The reader holds one besides those queued.
            Pace::Closed { window } => window.max(1) - 1,
        };
        let (queue, pending) = mpsc::sync_channel::<Vec<usize>>(capacity);
        let (workload, writer_recorder, host) = (workload.clone(), recorder.clone(), address.clone());
        threads.push(std::thread::spawn(move || {
            let share =
                Share { connection, connections: connections.max(1), calls_per_request: calls_per_request.max(1) };
            write_calls(stream, &host, method, &workload, &writer_recorder, share, pace, deadline, &queue);
        }));
        let recorder = recorder.clone();
        threads
            .push(std::thread::spawn(move || read_answers(reader_stream, &recorder, sync, &pending, answer_deadline)));
    }
    for thread in threads {
        thread.join().map_err(|_| "a JSON-RPC driver thread panicked".to_string())?;
    }
    Ok(())
}

/// One connection's part of the run: the senders `s` with
/// `s % connections == connection`, in requests of `calls_per_request`.
#[derive(Clone, Copy)]
struct Share {
    connection: usize,
    connections: usize,
    calls_per_request: usize,
}

#[allow(clippy::too_many_arguments, reason = "one connection's share of the run")]
fn write_calls(
    mut stream: TcpStream,
    host: &str,
    method: &str,
    workload: &Workload,
    recorder: &Recorder,
    share: Share,
    pace: Pace,
    deadline: Option<Instant>,
    queue: &mpsc::SyncSender<Vec<usize>>,
) {
    let (mut request, mut body) = (Vec::new(), String::new());
    recorder.wait_for_start();
    let accounts = workload.manifest.accounts;
    let mut mine = (0..recorder.txs()).filter(|tx| (tx % accounts) % share.connections == share.connection).peekable();
    while mine.peek().is_some() {
        if deadline.is_some_and(|d| Instant::now() > d) {
            return;
        }
        let calls: Vec<usize> = mine.by_ref().take(share.calls_per_request).collect();
        // Open loop: a request goes when its last call is due; each call's
        // latency still counts from its own due time.
        let due = |tx: usize| match pace {
            Pace::Open { tx_per_s } => recorder.start + Duration::from_secs_f64(tx as f64 / tx_per_s),
            Pace::Closed { .. } => Instant::now(),
        };
        if let Pace::Open { .. } = pace
            && let Some(wait) = calls.last().and_then(|&tx| due(tx).checked_duration_since(Instant::now()))
        {
            std::thread::sleep(wait);
        }
        for &tx in &calls {
            recorder.sent(tx, due(tx));
        }
        body.clear();
        let batched = calls.len() > 1 || share.calls_per_request > 1;
        if batched {
            body.push('[');
        }
        for (n, &tx) in calls.iter().enumerate() {
            if n > 0 {
                body.push(',');
            }
            let _ = std::fmt::Write::write_fmt(
                &mut body,
                format_args!(
                    r#"{{"jsonrpc":"2.0","id":{tx},"method":"{method}","params":["0x{}"]}}"#,
                    hex::encode(workload.tx(tx))
                ),
            );
        }
        if batched {
            body.push(']');
        }
        if queue.send(calls).is_err() {
            return; // the reader gave up on this connection
        }
        request.clear();
        let _ = write!(
            request,
            "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(&request).is_err() {
            return;
        }
    }
}

fn read_answers(
    stream: TcpStream,
    recorder: &Recorder,
    sync: bool,
    pending: &mpsc::Receiver<Vec<usize>>,
    answer_deadline: Instant,
) {
    let mut reader = BufReader::new(stream);
    let mut body = Vec::new();
    while let Ok(calls) = pending.recv() {
        let left = answer_deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || reader.get_ref().set_read_timeout(Some(left)).is_err() {
            return; // what is left on this connection is lost
        }
        if read_response(&mut reader, &mut body).is_err() {
            return; // what is left on this connection is lost
        }
        let now = Instant::now();
        let answers = match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Array(answers)) => answers,
            Ok(answer) => vec![answer],
            Err(_) => {
                calls.iter().for_each(|_| recorder.rejected_reason(now, "unparsable response"));
                continue;
            }
        };
        for answer in answers {
            let Some(tx) = answer["id"].as_u64().map(|id| id as usize).filter(|id| calls.contains(id)) else {
                recorder.rejected_reason(now, "an answer to no call sent");
                continue;
            };
            if let Some(error) = answer.get("error") {
                recorder.rejected_reason(now, &reason(error));
                continue;
            }
            let block = if sync { answer["result"]["blockNumber"].as_str().and_then(parse_quantity) } else { None };
            recorder.preconfirmed(tx, now, block);
        }
    }
}

fn parse_quantity(text: &str) -> Option<u64> {
    u64::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

/// A JSON-RPC error as a reason to count: its code and message, cut before
/// anything specific to one transaction (a hash or a number).
fn reason(error: &Value) -> String {
    let message = error["message"].as_str().unwrap_or("");
    let general = message.split(" 0x").next().unwrap_or("");
    let general: String = general.chars().take_while(|c| !c.is_ascii_digit()).take(60).collect();
    format!("{} {}", error["code"], general.trim_end_matches([' ', ':', '(']))
}

/// Reads one HTTP/1.1 response's body into `body`.
fn read_response(reader: &mut BufReader<TcpStream>, body: &mut Vec<u8>) -> std::io::Result<()> {
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut line = String::new();
    let (mut content_length, mut chunked) = (None, false);
    loop {
        line.clear();
        if reader.by_ref().take(RESPONSE_SIZE_MAX_BYTES as u64).read_line(&mut line)? == 0 {
            return Err(invalid("connection closed"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            if content_length.is_none() && !chunked {
                continue; // the blank line before a status line
            }
            break;
        }
        let lower = header.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            content_length = Some(value.trim().parse::<usize>().map_err(|_| invalid("content-length"))?);
        } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    body.clear();
    if let Some(len) = content_length {
        if len > RESPONSE_SIZE_MAX_BYTES {
            return Err(invalid("response too large"));
        }
        body.resize(len, 0);
        return reader.read_exact(body);
    }
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let size = usize::from_str_radix(line.trim(), 16).map_err(|_| invalid("chunk size"))?;
        if body.len() + size > RESPONSE_SIZE_MAX_BYTES {
            return Err(invalid("response too large"));
        }
        let at = body.len();
        body.resize(at + size, 0);
        reader.read_exact(&mut body[at..])?;
        line.clear();
        reader.read_line(&mut line)?;
        if size == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_leave_out_what_is_specific_to_one_transaction() {
        let error = serde_json::json!({"code": -32003, "message": "nonce too low: next nonce 5, tx nonce 1"});
        assert_eq!(reason(&error), "-32003 nonce too low: next nonce");
        let error = serde_json::json!({"code": 3, "message": "transaction 0xabc was not preconfirmed"});
        assert_eq!(reason(&error), "3 transaction");
    }

    #[test]
    fn responses_with_length_and_chunked() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n")
                .unwrap();
        });
        let mut reader = BufReader::new(TcpStream::connect(address).unwrap());
        let mut body = Vec::new();
        read_response(&mut reader, &mut body).unwrap();
        assert_eq!(body, b"{}");
        read_response(&mut reader, &mut body).unwrap();
        assert_eq!(body, b"[1,2]");
        server.join().unwrap();
        assert!(read_response(&mut reader, &mut body).is_err(), "closed");
    }
}
