//! The JSON-RPC driver: eth_sendRawTransaction or eth_sendRawTransactionSync
//! pipelined over `connections` HTTP/1.1 connections, as a busy wallet
//! backend or relay would. One event-driven thread serves every connection
//! (a writer and a reader task each), so that the client costs the shared
//! cores about what the UDP driver's two threads do, however many
//! connections it opens. A sender's transactions all go over one connection
//! (sender `s` on connection `s % connections`), so that they reach the node
//! in nonce order.
//!
//! With `calls_per_request` above 1 each HTTP request is a JSON-RPC batch of
//! up to that many consecutive transactions of the connection, as ethers v6
//! and viem's `batch` transport send concurrent calls.
//!
//! Open loop: transaction `i` is due at `start + i / rate`, released by a
//! pacer thread (a thread's sleep is precise to tens of microseconds, an
//! async timer to a millisecond); latency counts from the due time. Closed
//! loop: at most `window` unanswered requests per connection.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use alloy_primitives::hex;
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::{Semaphore, mpsc, oneshot},
};

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

/// What one phase asks of the driver.
#[derive(Clone, Copy, Debug)]
pub struct Calls {
    pub connections: usize,
    pub calls_per_request: usize,
    /// eth_sendRawTransactionSync (answered at preconfirmation).
    pub sync: bool,
    pub pace: Pace,
}

/// Sends workload transactions `0..recorder.txs()` to `url`
/// (`http://host:port`), or fewer if `deadline` comes first.
pub fn run(
    url: &str,
    workload: &Arc<Workload>,
    calls: Calls,
    deadline: Option<Instant>,
    recorder: &Arc<Recorder>,
) -> Result<(), String> {
    let address = url.strip_prefix("http://").ok_or_else(|| format!("{url}: only http:// is driven"))?.to_string();
    let last_due = match (calls.pace, deadline) {
        (_, Some(deadline)) => deadline,
        (Pace::Open { tx_per_s }, None) => recorder.start + Duration::from_secs_f64(recorder.txs() as f64 / tx_per_s),
        (Pace::Closed { .. }, None) => Instant::now() + Duration::from_secs(3600),
    };
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("runtime: {e}"))?;
    let connections = calls.connections.max(1);
    let mut due_queues = Vec::new();
    let tasks = runtime.block_on(async {
        let mut tasks = Vec::new();
        for connection in 0..connections {
            let stream = TcpStream::connect(&address).await.map_err(|e| format!("{address}: {e}"))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            let (read, write) = stream.into_split();
            let window = match calls.pace {
                Pace::Open { .. } => OPEN_LOOP_OUTSTANDING_MAX,
                Pace::Closed { window } => window.max(1),
            };
            let permits = Arc::new(Semaphore::new(window));
            let (sent, pending) = mpsc::unbounded_channel::<Vec<usize>>();
            let (keep_open, kept_open) = oneshot::channel();
            let answer_deadline = last_due + ANSWER_GRACE;
            let due = match calls.pace {
                Pace::Open { .. } => {
                    let (queue, due) = mpsc::unbounded_channel::<usize>();
                    due_queues.push(queue);
                    Some(due)
                }
                Pace::Closed { .. } => None,
            };
            let writer = Writer {
                stream: write,
                host: address.clone(),
                workload: workload.clone(),
                recorder: recorder.clone(),
                share: (connection, connections),
                calls,
                deadline,
                permits: permits.clone(),
                sent,
                answer_deadline,
                keep_open,
            };
            tasks.push(tokio::spawn(writer.run(due)));
            let reader = Reader { recorder: recorder.clone(), sync: calls.sync, permits, answer_deadline, kept_open };
            tasks.push(tokio::spawn(reader.run(read, pending)));
        }
        Ok::<_, String>(tasks)
    })?;
    let pacer = (!due_queues.is_empty()).then(|| {
        let (workload, recorder) = (workload.clone(), recorder.clone());
        std::thread::spawn(move || pace_open_loop(&workload, &recorder, calls.pace, &due_queues))
    });
    runtime.block_on(async {
        for task in tasks {
            task.await.map_err(|_| "a JSON-RPC driver task panicked".to_string())?;
        }
        Ok::<_, String>(())
    })?;
    if let Some(pacer) = pacer {
        pacer.join().map_err(|_| "the JSON-RPC pacer panicked".to_string())?;
    }
    Ok(())
}

/// Open loop: each transaction handed to its sender's connection at its due
/// time, in order.
fn pace_open_loop(workload: &Workload, recorder: &Recorder, pace: Pace, queues: &[mpsc::UnboundedSender<usize>]) {
    let Pace::Open { tx_per_s } = pace else { return };
    recorder.wait_for_start();
    let accounts = workload.manifest.accounts;
    for tx in 0..recorder.txs() {
        let due = recorder.start + Duration::from_secs_f64(tx as f64 / tx_per_s);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        // A connection whose writer stopped (its deadline, or the node gone)
        // takes no more.
        let _ = queues[(tx % accounts) % queues.len()].send(tx);
    }
}

/// One connection's sending side.
struct Writer {
    stream: OwnedWriteHalf,
    host: String,
    workload: Arc<Workload>,
    recorder: Arc<Recorder>,
    /// (this connection, connections): its senders are `s % connections == connection`.
    share: (usize, usize),
    calls: Calls,
    deadline: Option<Instant>,
    /// Requests this connection may still have unanswered.
    permits: Arc<Semaphore>,
    /// Each request's calls, in order, for the reader.
    sent: mpsc::UnboundedSender<Vec<usize>>,
    /// The phase's last moment for answers, and so for sends.
    answer_deadline: Instant,
    /// The sending half goes to the reader when the writer is done: dropped,
    /// it would shut the connection's sending side, and the server would
    /// close the connection before answering what is still unanswered.
    keep_open: oneshot::Sender<OwnedWriteHalf>,
}

impl Writer {
    /// Closed loop (`due` none): this connection's transactions, as fast as
    /// the window allows. Open loop: what the pacer hands over, as it comes.
    async fn run(mut self, due: Option<mpsc::UnboundedReceiver<usize>>) {
        self.send_calls(due).await;
        let _ = self.keep_open.send(self.stream);
    }

    async fn send_calls(&mut self, mut due: Option<mpsc::UnboundedReceiver<usize>>) {
        self.recorder.wait_for_start();
        let accounts = self.workload.manifest.accounts;
        let (connection, connections) = self.share;
        let mut mine = connection_txs(self.recorder.txs(), accounts, connection, connections);
        let per_request = self.calls.calls_per_request.max(1);
        let (mut request, mut body) = (Vec::new(), String::new());
        loop {
            if self.deadline.is_some_and(|d| Instant::now() > d) {
                return;
            }
            let Ok(permit) = self.permits.acquire().await else { return };
            permit.forget(); // given back by the reader with the answer
            let calls: Vec<usize> = match &mut due {
                None => mine.by_ref().take(per_request).collect(),
                Some(due) => {
                    let Some(first) = due.recv().await else { return };
                    let mut calls = vec![first];
                    while calls.len() < per_request
                        && let Ok(next) = due.try_recv()
                    {
                        calls.push(next);
                    }
                    calls
                }
            };
            if calls.is_empty() {
                return;
            }
            let now = Instant::now();
            for &tx in &calls {
                let due_at = match self.calls.pace {
                    Pace::Open { tx_per_s } => self.recorder.start + Duration::from_secs_f64(tx as f64 / tx_per_s),
                    Pace::Closed { .. } => now,
                };
                self.recorder.sent(tx, due_at);
            }
            self.encode(&calls, per_request > 1, &mut body, &mut request);
            if self.sent.send(calls).is_err() {
                return; // the reader gave up on this connection
            }
            // A node that stops reading cannot hold the phase past its grace.
            match tokio::time::timeout_at(self.answer_deadline.into(), self.stream.write_all(&request)).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    }

    /// One HTTP request: a call, or a batch of them.
    fn encode(&self, calls: &[usize], batched: bool, body: &mut String, request: &mut Vec<u8>) {
        use std::{fmt::Write as _, io::Write as _};
        let method = if self.calls.sync { "eth_sendRawTransactionSync" } else { "eth_sendRawTransaction" };
        body.clear();
        if batched {
            body.push('[');
        }
        for (n, &tx) in calls.iter().enumerate() {
            if n > 0 {
                body.push(',');
            }
            let raw = hex::encode(self.workload.tx(tx));
            let _ = write!(body, r#"{{"jsonrpc":"2.0","id":{tx},"method":"{method}","params":["0x{raw}"]}}"#);
        }
        if batched {
            body.push(']');
        }
        request.clear();
        let _ = write!(
            request,
            "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
    }
}

/// Transactions `0..txs` whose sender (`tx % accounts`) is this
/// connection's (`sender % connections == connection`), in order, each found
/// directly: filtering `0..txs` cost every call a scan past the other
/// connections' transactions, 255 of them with 255 connections.
fn connection_txs(txs: usize, accounts: usize, connection: usize, connections: usize) -> impl Iterator<Item = usize> {
    let senders: Vec<usize> = (connection..accounts).step_by(connections.max(1)).collect();
    let per_round = senders.len().max(1);
    (0..txs).map_while(move |n| {
        let tx = (n / per_round) * accounts + senders.get(n % per_round)?;
        (tx < txs).then_some(tx)
    })
}

/// One connection's answering side.
struct Reader {
    recorder: Arc<Recorder>,
    sync: bool,
    permits: Arc<Semaphore>,
    answer_deadline: Instant,
    /// Holds the sending half, once the writer is done, until the last answer.
    kept_open: oneshot::Receiver<OwnedWriteHalf>,
}

impl Reader {
    async fn run(self, stream: OwnedReadHalf, mut pending: mpsc::UnboundedReceiver<Vec<usize>>) {
        let mut reader = BufReader::new(stream);
        let mut body = Vec::new();
        while let Some(calls) = pending.recv().await {
            let left = self.answer_deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, read_response(&mut reader, &mut body)).await {
                Ok(Ok(())) => {}
                // What is left on this connection is lost; the writer stops.
                _ => return self.permits.close(),
            }
            self.record(&calls, &body);
            self.permits.add_permits(1);
        }
        drop(self.kept_open); // every answer in: the connection closes
    }

    fn record(&self, calls: &[usize], body: &[u8]) {
        let now = Instant::now();
        let answers = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(answers)) => answers,
            Ok(answer) => vec![answer],
            Err(_) => {
                calls.iter().for_each(|_| self.recorder.rejected_reason(now, "unparsable response"));
                return;
            }
        };
        // One error with no id for a whole batch (too large, over a limit):
        // every call of it was refused for that reason.
        if let [answer] = answers.as_slice()
            && answer["id"].is_null()
            && let Some(error) = answer.get("error")
        {
            calls.iter().for_each(|_| self.recorder.rejected_reason(now, &reason(error)));
            return;
        }
        for answer in answers {
            let Some(tx) = answer["id"].as_u64().map(|id| id as usize).filter(|id| calls.contains(id)) else {
                self.recorder.rejected_reason(now, "an answer to no call sent");
                continue;
            };
            if let Some(error) = answer.get("error") {
                self.recorder.rejected_reason(now, &reason(error));
                continue;
            }
            let block =
                if self.sync { answer["result"]["blockNumber"].as_str().and_then(parse_quantity) } else { None };
            self.recorder.preconfirmed(tx, now, block);
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
async fn read_response<R: AsyncRead + Unpin>(reader: &mut BufReader<R>, body: &mut Vec<u8>) -> std::io::Result<()> {
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut line = String::new();
    let (mut content_length, mut chunked) = (None, false);
    loop {
        line.clear();
        if reader.take(RESPONSE_SIZE_MAX_BYTES as u64).read_line(&mut line).await? == 0 {
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
        return reader.read_exact(body).await.map(|_| ());
    }
    loop {
        line.clear();
        reader.read_line(&mut line).await?;
        let size = usize::from_str_radix(line.trim(), 16).map_err(|_| invalid("chunk size"))?;
        if body.len() + size > RESPONSE_SIZE_MAX_BYTES {
            return Err(invalid("response too large"));
        }
        let at = body.len();
        body.resize(at + size, 0);
        reader.read_exact(&mut body[at..]).await?;
        line.clear();
        reader.read_line(&mut line).await?;
        if size == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_connection_takes_its_senders_transactions_in_order() {
        for (txs, accounts, connections) in [(1000, 100, 7), (1000, 100, 255), (999, 1, 3), (10, 50, 64), (500, 64, 64)]
        {
            let mut all = Vec::new();
            for connection in 0..connections {
                let mine: Vec<usize> = connection_txs(txs, accounts, connection, connections).collect();
                let filtered: Vec<usize> = (0..txs).filter(|tx| (tx % accounts) % connections == connection).collect();
                assert_eq!(mine, filtered, "{txs} txs, {accounts} accounts, connection {connection} of {connections}");
                all.extend(mine);
            }
            all.sort_unstable();
            assert_eq!(all, (0..txs).collect::<Vec<_>>(), "every transaction on exactly one connection");
        }
    }

    #[test]
    fn reasons_leave_out_what_is_specific_to_one_transaction() {
        let error = serde_json::json!({"code": -32003, "message": "nonce too low: next nonce 5, tx nonce 1"});
        assert_eq!(reason(&error), "-32003 nonce too low: next nonce");
        let error = serde_json::json!({"code": 3, "message": "transaction 0xabc was not preconfirmed"});
        assert_eq!(reason(&error), "3 transaction");
    }

    #[test]
    fn responses_with_length_and_chunked() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n")
                .unwrap();
        });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let mut reader = BufReader::new(TcpStream::connect(address).await.unwrap());
            let mut body = Vec::new();
            read_response(&mut reader, &mut body).await.unwrap();
            assert_eq!(body, b"{}");
            read_response(&mut reader, &mut body).await.unwrap();
            assert_eq!(body, b"[1,2]");
            server.join().unwrap();
            assert!(read_response(&mut reader, &mut body).await.is_err(), "closed");
        });
    }
}
