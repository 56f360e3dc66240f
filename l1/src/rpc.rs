//! The L1 node as the follower sees it: `L1Rpc`, four calls small enough to
//! swap (as revm's `Database` is: an in-memory L1 in tests), and
//! `L1JsonRpc`, those calls as JSON-RPC over HTTP(S) or a WebSocket
//! (ws://, wss://), chosen by the URL's scheme.
//!
//! `L1JsonRpc` trusts nothing it is sent: every answer is checked field by
//! field, and one that is not what the method returns (bad JSON, a missing
//! or mistyped field, a number out of range, a block or log other than the
//! one asked for, a body over `RESPONSE_BYTES_MAX`) is `L1Error::Malformed`,
//! never a panic. A WebSocket that fails, times out or closes is dropped
//! and opened again on the next call.

use std::{
    net::{TcpStream, ToSocketAddrs},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use alloy_primitives::{Address, B256, Bytes, hex};
use serde_json::{Map, Value, json};
use tungstenite::{Message, WebSocket, protocol::WebSocketConfig, stream::MaybeTlsStream};

use crate::{L1Block, L1Error, L1Log};

/// How long one JSON-RPC call may take by default, connection included: a
/// node that has not answered in 10 s is not serving the sequencer, and the
/// follower's poll (a few calls) must end well within the sequencer drift.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// The largest response body read, in bytes; past it the answer is
/// malformed. The largest answer is one block's deposit logs: OptimismPortal
/// caps the L2 gas deposits may buy per L1 block (ResourceMetering, 20M by
/// default) and each deposit pays 40 gas per data byte, so about 500 KB of
/// deposit data, a few MB as JSON hex. 16 MiB leaves room without letting a
/// bad node fill memory.
pub const RESPONSE_BYTES_MAX: u64 = 16 << 20;

/// Messages read on a WebSocket for one call before its answer (a node may
/// push subscription notifications on a shared socket): past it, the node
/// is not answering the call.
const WS_MESSAGES_PER_CALL_MAX: usize = 64;

/// The L1 node's calls the follower makes.
pub trait L1Rpc {
    /// The number of the node's latest block (`eth_blockNumber`).
    fn head_number(&self) -> Result<u64, L1Error>;
    /// The canonical block `number`, None past the head.
    fn block_by_number(&self, number: u64) -> Result<Option<L1Block>, L1Error>;
    /// The block `hash`, None if the node does not know it.
    fn block_by_hash(&self, hash: B256) -> Result<Option<L1Block>, L1Error>;
    /// Logs of block `block_hash` emitted by `address` with first topic
    /// `topic0` (`eth_getLogs` with a blockHash filter), in log order.
    fn logs(&self, block_hash: B256, address: Address, topic0: B256) -> Result<Vec<L1Log>, L1Error>;
}

/// A URL `L1JsonRpc` cannot speak to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("L1 RPC URL {url:?}: the scheme must be http://, https://, ws:// or wss://")]
pub struct UnsupportedUrl {
    pub url: String,
}

/// `L1Rpc` over JSON-RPC (blocking; one call at a time per caller).
#[derive(Debug)]
pub struct L1JsonRpc {
    url: String,
    transport: Transport,
    timeout: Duration,
    next_id: AtomicU64,
}

#[derive(Debug)]
enum Transport {
    Http(ureq::Agent),
    /// Opened at the first call, and again after a failure.
    Ws(Mutex<Option<WebSocket<MaybeTlsStream<TcpStream>>>>),
}

impl L1JsonRpc {
    /// The node at `url`, each call bounded by `REQUEST_TIMEOUT_MS_DEFAULT`.
    pub fn new(url: impl Into<String>) -> Result<Self, UnsupportedUrl> {
        Self::with_timeout_ms(url, REQUEST_TIMEOUT_MS_DEFAULT)
    }

    /// The node at `url`, each call bounded by `timeout_ms`.
    pub fn with_timeout_ms(url: impl Into<String>, timeout_ms: u64) -> Result<Self, UnsupportedUrl> {
        let url = url.into();
        let timeout = Duration::from_millis(timeout_ms);
        let transport = match url.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase()) {
            // HTTP error statuses are read, not raised, so that they say
            // what they are (`Unreachable` with the status).
            Some(scheme) if scheme == "http" || scheme == "https" => Transport::Http(
                ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(timeout))
                    .build()
                    .new_agent(),
            ),
            Some(scheme) if scheme == "ws" || scheme == "wss" => Transport::Ws(Mutex::new(None)),
            _ => return Err(UnsupportedUrl { url }),
        };
        Ok(Self { url, transport, timeout, next_id: AtomicU64::new(1) })
    }

    /// One call: its `result` (null included), or why not.
    pub fn call(&self, method: &'static str, params: Value) -> Result<Value, L1Error> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let body = match &self.transport {
            Transport::Http(agent) => self.http_round_trip(agent, method, &request)?,
            Transport::Ws(socket) => {
                let mut socket = socket.lock().expect("L1 socket lock");
                let answer = self.ws_round_trip(&mut socket, method, id, &request);
                if answer.is_err() {
                    // A socket that failed mid-call may hold a late answer: never reused.
                    *socket = None;
                }
                answer?
            }
        };
        let reply: Value = serde_json::from_slice(&body).map_err(|e| malformed(method, format!("not JSON: {e}")))?;
        result_of(method, id, reply)
    }

    /// The response body of one POST.
    fn http_round_trip(&self, agent: &ureq::Agent, method: &'static str, request: &Value) -> Result<Vec<u8>, L1Error> {
        let unreachable = |reason: String| L1Error::Unreachable { reason: format!("{method}: {reason}") };
        let mut response = agent.post(&self.url).send_json(request).map_err(|e| unreachable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unreachable(format!("HTTP {}", response.status())));
        }
        response.body_mut().with_config().limit(RESPONSE_BYTES_MAX).read_to_vec().map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => oversized(method),
            other => unreachable(other.to_string()),
        })
    }

    /// Sends `request` on the socket (opened if need be) and reads messages
    /// until the one answering `id`, within the call's timeout.
    fn ws_round_trip(
        &self,
        socket: &mut Option<WebSocket<MaybeTlsStream<TcpStream>>>,
        method: &'static str,
        id: u64,
        request: &Value,
    ) -> Result<Vec<u8>, L1Error> {
        let unreachable = |reason: String| L1Error::Unreachable { reason: format!("{method}: {reason}") };
        let read_error = |e: tungstenite::Error| match e {
            tungstenite::Error::Capacity(_) => oversized(method),
            other => unreachable(other.to_string()),
        };
        let deadline = Instant::now() + self.timeout;
        if socket.is_none() {
            *socket = Some(self.ws_connect().map_err(unreachable)?);
        }
        let ws = socket.as_mut().expect("just opened");
        ws.send(Message::text(request.to_string())).map_err(read_error)?;
        for _ in 0..WS_MESSAGES_PER_CALL_MAX {
            if Instant::now() >= deadline {
                break;
            }
            let body = match ws.read().map_err(read_error)? {
                Message::Text(text) => text.as_bytes().to_vec(),
                Message::Binary(bytes) => bytes.to_vec(),
                Message::Close(frame) => return Err(unreachable(format!("the node closed the WebSocket: {frame:?}"))),
                // Pings are answered by tungstenite on the next read or write.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            // A notification or another call's answer is not this one's;
            // what is not JSON is, for `call` to refuse.
            let answers_this = serde_json::from_slice::<Value>(&body).map_or(true, |v| v.get("id") == Some(&json!(id)));
            if answers_this {
                return Ok(body);
            }
        }
        Err(unreachable(format!("no answer within {} ms", self.timeout.as_millis())))
    }

    fn ws_connect(&self) -> Result<WebSocket<MaybeTlsStream<TcpStream>>, String> {
        let uri: tungstenite::http::Uri = self.url.parse().map_err(|e| format!("{e}"))?;
        let host = uri.host().ok_or("no host in the URL")?;
        let tls = uri.scheme_str() == Some("wss");
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let address = (host, port).to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or("no address")?;
        let stream = TcpStream::connect_timeout(&address, self.timeout).map_err(|e| e.to_string())?;
        // Every read and write is bounded, so a silent node cannot hold the follower.
        stream.set_read_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
        stream.set_write_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
        let limit = usize::try_from(RESPONSE_BYTES_MAX).expect("16 MiB fits usize");
        let config = WebSocketConfig::default().max_message_size(Some(limit)).max_frame_size(Some(limit));
        let (socket, _) = tungstenite::client_tls_with_config(self.url.as_str(), stream, Some(config), None)
            .map_err(|e| e.to_string())?;
        Ok(socket)
    }
}

impl L1Rpc for L1JsonRpc {
    fn head_number(&self) -> Result<u64, L1Error> {
        const METHOD: &str = "eth_blockNumber";
        let result = self.call(METHOD, json!([]))?;
        quantity(&result, "result").map_err(|reason| malformed(METHOD, reason))
    }

    fn block_by_number(&self, number: u64) -> Result<Option<L1Block>, L1Error> {
        const METHOD: &str = "eth_getBlockByNumber";
        let result = self.call(METHOD, json!([format!("{number:#x}"), false]))?;
        let block = optional_block(&result).map_err(|reason| malformed(METHOD, reason))?;
        match block {
            Some(block) if block.number != number => {
                Err(malformed(METHOD, format!("asked for block {number}, got block {}", block.number)))
            }
            block => Ok(block),
        }
    }

    fn block_by_hash(&self, hash: B256) -> Result<Option<L1Block>, L1Error> {
        const METHOD: &str = "eth_getBlockByHash";
        let result = self.call(METHOD, json!([hash, false]))?;
        let block = optional_block(&result).map_err(|reason| malformed(METHOD, reason))?;
        match block {
            Some(block) if block.hash != hash => {
                Err(malformed(METHOD, format!("asked for {hash}, got {}", block.hash)))
            }
            block => Ok(block),
        }
    }

    fn logs(&self, block_hash: B256, address: Address, topic0: B256) -> Result<Vec<L1Log>, L1Error> {
        const METHOD: &str = "eth_getLogs";
        let filter = json!({"blockHash": block_hash, "address": address, "topics": [topic0]});
        let result = self.call(METHOD, json!([filter]))?;
        let logs = result.as_array().ok_or_else(|| malformed(METHOD, "result is not an array".into()))?;
        logs.iter()
            .map(|value| {
                let log = log_from_json(value).map_err(|reason| malformed(METHOD, reason))?;
                check_log_matches(&log, block_hash, address, topic0).map_err(|reason| malformed(METHOD, reason))?;
                Ok(log)
            })
            .collect()
    }
}

fn oversized(method: &'static str) -> L1Error {
    malformed(method, format!("response over {RESPONSE_BYTES_MAX} bytes"))
}

pub fn malformed(method: &'static str, reason: String) -> L1Error {
    L1Error::Malformed { method, reason }
}

/// The `result` of a JSON-RPC reply to request `id`, or its error object.
fn result_of(method: &'static str, id: u64, reply: Value) -> Result<Value, L1Error> {
    let Value::Object(mut reply) = reply else {
        return Err(malformed(method, "reply is not a JSON object".into()));
    };
    if reply.get("id") != Some(&json!(id)) {
        return Err(malformed(method, format!("reply id {:?} is not the request's {id}", reply.get("id"))));
    }
    if let Some(error) = reply.get("error") {
        let code = error.get("code").and_then(Value::as_i64);
        let message = error.get("message").and_then(Value::as_str);
        let (Some(code), Some(message)) = (code, message) else {
            return Err(malformed(method, format!("error object without a code and a message: {error}")));
        };
        return Err(L1Error::Refused { method, code, message: message.to_string() });
    }
    reply.remove("result").ok_or_else(|| malformed(method, "reply has neither result nor error".into()))
}

/// A block of `eth_getBlockBy*`: null is no block.
fn optional_block(result: &Value) -> Result<Option<L1Block>, String> {
    if result.is_null() {
        return Ok(None);
    }
    block_from_json(result).map(Some)
}

/// A block header object of `eth_getBlockBy*` (transactions not read), or
/// why it is not one.
pub fn block_from_json(value: &Value) -> Result<L1Block, String> {
    let object = value.as_object().ok_or("block is not a JSON object")?;
    Ok(L1Block {
        number: quantity(field(object, "number")?, "number")?,
        hash: fixed::<32>(field(object, "hash")?, "hash")?.into(),
        parent_hash: fixed::<32>(field(object, "parentHash")?, "parentHash")?.into(),
        timestamp: quantity(field(object, "timestamp")?, "timestamp")?,
        // An OP Stack L1 is past London: a block without a base fee is not one.
        base_fee_per_gas: quantity(field(object, "baseFeePerGas")?, "baseFeePerGas")?,
        excess_blob_gas: optional_quantity(object, "excessBlobGas")?,
        blob_gas_used: optional_quantity(object, "blobGasUsed")?,
        mix_hash: fixed::<32>(field(object, "mixHash")?, "mixHash")?.into(),
        parent_beacon_block_root: match object.get("parentBeaconBlockRoot") {
            None | Some(Value::Null) => None,
            Some(root) => Some(fixed::<32>(root, "parentBeaconBlockRoot")?.into()),
        },
    })
}

/// A log object of `eth_getLogs`, or why it is not one.
pub fn log_from_json(value: &Value) -> Result<L1Log, String> {
    let object = value.as_object().ok_or("log is not a JSON object")?;
    // A removed log belongs to a block that left the chain: eth_getLogs by
    // block hash never returns one from a consistent node.
    if field(object, "removed").ok().and_then(Value::as_bool) == Some(true) {
        return Err("log is marked removed".into());
    }
    let topics = field(object, "topics")?.as_array().ok_or("topics is not an array")?;
    if topics.len() > 4 {
        return Err(format!("{} topics: a log has at most 4", topics.len()));
    }
    Ok(L1Log {
        address: fixed::<20>(field(object, "address")?, "address")?.into(),
        topics: topics.iter().map(|topic| fixed::<32>(topic, "topic").map(B256::from)).collect::<Result<_, _>>()?,
        data: bytes(field(object, "data")?, "data")?,
        block_hash: fixed::<32>(field(object, "blockHash")?, "blockHash")?.into(),
        log_index: quantity(field(object, "logIndex")?, "logIndex")?,
    })
}

/// A log the filter should have excluded is a node that does not filter.
fn check_log_matches(log: &L1Log, block_hash: B256, address: Address, topic0: B256) -> Result<(), String> {
    if log.block_hash != block_hash {
        return Err(format!("log {} is of block {}, asked for {block_hash}", log.log_index, log.block_hash));
    }
    if log.address != address || log.topics.first() != Some(&topic0) {
        return Err(format!(
            "log {} does not match the filter (address {}, topics {:?})",
            log.log_index, log.address, log.topics
        ));
    }
    Ok(())
}

pub fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Result<&'a Value, String> {
    object.get(name).ok_or_else(|| format!("no {name}"))
}

fn hex_digits<'a>(value: &'a Value, name: &str) -> Result<&'a str, String> {
    let text = value.as_str().ok_or_else(|| format!("{name} is not a string: {value}"))?;
    text.strip_prefix("0x").ok_or_else(|| format!("{name} {text:?} has no 0x prefix"))
}

/// A JSON-RPC quantity that must fit a u64.
pub fn quantity(value: &Value, name: &str) -> Result<u64, String> {
    let digits = hex_digits(value, name)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{name} 0x{digits} is not a hex quantity"));
    }
    let significant = digits.trim_start_matches('0');
    if significant.len() > 16 {
        return Err(format!("{name} 0x{digits} is out of range (over 64 bits)"));
    }
    u64::from_str_radix(if significant.is_empty() { "0" } else { significant }, 16)
        .map_err(|e| format!("{name} 0x{digits}: {e}"))
}

/// An optional quantity: absent or null is None.
pub fn optional_quantity(object: &Map<String, Value>, name: &str) -> Result<Option<u64>, String> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => quantity(value, name).map(Some),
    }
}

/// Exactly `N` bytes of hex (a hash, an address).
pub fn fixed<const N: usize>(value: &Value, name: &str) -> Result<[u8; N], String> {
    let digits = hex_digits(value, name)?;
    let mut out = [0u8; N];
    hex::decode_to_slice(digits, &mut out).map_err(|e| format!("{name} 0x{digits} is not {N} bytes of hex: {e}"))?;
    Ok(out)
}

/// Hex bytes of any length.
pub fn bytes(value: &Value, name: &str) -> Result<Bytes, String> {
    let digits = hex_digits(value, name)?;
    hex::decode(digits).map(Bytes::from).map_err(|e| format!("{name} is not hex bytes: {e}"))
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead, BufReader, Write},
        net::TcpListener,
        thread::JoinHandle,
    };

    use super::*;

    fn block_json() -> Value {
        json!({
            "number": "0x10",
            "hash": format!("0x{}", "11".repeat(32)),
            "parentHash": format!("0x{}", "22".repeat(32)),
            "timestamp": "0x65f00000",
            "baseFeePerGas": "0x3b9aca00",
            "excessBlobGas": "0x0",
            "blobGasUsed": "0x20000",
            "mixHash": format!("0x{}", "33".repeat(32)),
            "transactions": [],
        })
    }

    #[test]
    fn a_block_object_parses_and_blob_fields_are_optional() {
        let block = block_from_json(&block_json()).unwrap();
        assert_eq!((block.number, block.timestamp, block.base_fee_per_gas), (16, 0x65f0_0000, 1_000_000_000));
        assert_eq!((block.excess_blob_gas, block.blob_gas_used), (Some(0), Some(0x20000)));
        assert_eq!(block.hash, B256::repeat_byte(0x11));
        let mut pre_cancun = block_json();
        pre_cancun.as_object_mut().unwrap().remove("excessBlobGas");
        pre_cancun["blobGasUsed"] = Value::Null;
        let block = block_from_json(&pre_cancun).unwrap();
        assert_eq!((block.excess_blob_gas, block.blob_gas_used), (None, None));
    }

    #[test]
    fn every_malformed_block_field_is_named() {
        let cases: [(&str, Value, &str); 9] = [
            ("number", Value::Null, "number is not a string"),
            ("number", json!("16"), "no 0x prefix"),
            ("number", json!("0x"), "not a hex quantity"),
            ("number", json!("0x+1"), "not a hex quantity"),
            ("timestamp", json!("0x1ffffffffffffffff"), "out of range"),
            ("hash", json!("0x1234"), "hash 0x1234 is not 32 bytes"),
            ("parentHash", json!(7), "parentHash is not a string"),
            ("baseFeePerGas", json!("0xzz"), "not a hex quantity"),
            ("excessBlobGas", json!(true), "excessBlobGas is not a string"),
        ];
        for (name, value, expected) in cases {
            let mut block = block_json();
            block[name] = value;
            let error = block_from_json(&block).unwrap_err();
            assert!(error.contains(expected), "{name}: {error}");
        }
        let mut block = block_json();
        block.as_object_mut().unwrap().remove("baseFeePerGas");
        assert_eq!(block_from_json(&block).unwrap_err(), "no baseFeePerGas");
        assert!(block_from_json(&json!([1, 2])).unwrap_err().contains("not a JSON object"));
        // Leading zeros are tolerated, the value is what counts.
        let mut block = block_json();
        block["number"] = json!("0x0000000000000000010");
        assert_eq!(block_from_json(&block).unwrap().number, 16);
    }

    fn log_json() -> Value {
        json!({
            "address": format!("0x{}", "aa".repeat(20)),
            "topics": [format!("0x{}", "01".repeat(32)), format!("0x{}", "02".repeat(32))],
            "data": "0xc0ffee",
            "blockHash": format!("0x{}", "11".repeat(32)),
            "blockNumber": "0x10",
            "logIndex": "0x3",
            "removed": false,
        })
    }

    #[test]
    fn a_log_parses_and_a_removed_or_five_topic_log_does_not() {
        let log = log_from_json(&log_json()).unwrap();
        assert_eq!(log.log_index, 3);
        assert_eq!(log.data, Bytes::from(vec![0xc0, 0xff, 0xee]));
        assert_eq!(log.topics.len(), 2);
        let mut removed = log_json();
        removed["removed"] = json!(true);
        assert!(log_from_json(&removed).unwrap_err().contains("removed"));
        let mut five = log_json();
        five["topics"] = Value::from(vec![format!("0x{}", "01".repeat(32)); 5]);
        assert!(log_from_json(&five).unwrap_err().contains("5 topics"));
        let mut odd = log_json();
        odd["data"] = json!("0xabc");
        assert!(log_from_json(&odd).unwrap_err().contains("data is not hex bytes"));
    }

    /// An HTTP server on 127.0.0.1 that answers each of `replies` to one
    /// request, in order, then stops.
    fn serve(replies: Vec<(u16, String)>) -> (String, JoinHandle<Vec<Value>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let mut requests = Vec::new();
            for (status, body) in replies {
                let (mut stream, _) = listener.accept().unwrap();
                requests.push(read_request(&mut BufReader::new(stream.try_clone().unwrap())));
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                // The client may hang up early (the oversized reply): fine.
                let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes()));
            }
            requests
        });
        (url, server)
    }

    fn read_request(reader: &mut impl BufRead) -> Value {
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    fn reply(id: u64, result: Value) -> (u16, String) {
        (200, json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string())
    }

    #[test]
    fn calls_send_json_rpc_and_read_the_answers() {
        let hash = B256::repeat_byte(0x11);
        let (url, server) = serve(vec![
            reply(1, json!("0x1f")),
            reply(2, block_json()),
            reply(3, block_json()),
            reply(4, Value::Null),
            reply(5, json!([log_json()])),
        ]);
        let rpc = L1JsonRpc::new(url).unwrap();
        assert_eq!(rpc.head_number(), Ok(31));
        assert_eq!(rpc.block_by_number(16).unwrap().unwrap().hash, hash);
        assert_eq!(rpc.block_by_hash(hash).unwrap().unwrap().number, 16);
        assert_eq!(rpc.block_by_number(17), Ok(None));
        let topic0 = B256::repeat_byte(0x01);
        let logs = rpc.logs(hash, Address::repeat_byte(0xaa), topic0).unwrap();
        assert_eq!(logs.len(), 1);
        let requests = server.join().unwrap();
        assert_eq!(requests[1]["method"], "eth_getBlockByNumber");
        assert_eq!(requests[1]["params"], json!(["0x10", false]));
        assert_eq!(requests[4]["params"][0]["blockHash"], json!(hash));
        assert_eq!(requests[4]["params"][0]["topics"], json!([topic0]));
    }

    #[test]
    fn a_block_or_log_other_than_the_one_asked_for_is_malformed() {
        let (url, server) = serve(vec![
            reply(1, block_json()),
            reply(2, block_json()),
            reply(3, json!([log_json()])),
            reply(4, json!([log_json()])),
        ]);
        let rpc = L1JsonRpc::new(url).unwrap();
        let is_malformed = |result: Result<_, L1Error>, method: &str, says: &str| match result {
            Err(L1Error::Malformed { method: m, reason }) => {
                assert!(m == method && reason.contains(says), "{m}: {reason}")
            }
            other => panic!("{method}: {other:?}"),
        };
        is_malformed(rpc.block_by_number(15).map(|_| ()), "eth_getBlockByNumber", "asked for block 15, got block 16");
        is_malformed(rpc.block_by_hash(B256::repeat_byte(0x12)).map(|_| ()), "eth_getBlockByHash", "asked for 0x1212");
        let topic0 = B256::repeat_byte(0x01);
        is_malformed(
            rpc.logs(B256::repeat_byte(0x12), Address::repeat_byte(0xaa), topic0).map(|_| ()),
            "eth_getLogs",
            "is of block",
        );
        is_malformed(
            rpc.logs(B256::repeat_byte(0x11), Address::repeat_byte(0xab), topic0).map(|_| ()),
            "eth_getLogs",
            "does not match the filter",
        );
        server.join().unwrap();
    }

    #[test]
    fn garbage_errors_and_silence_are_told_apart() {
        let oversized = format!("\"{}\"", "0".repeat(usize::try_from(RESPONSE_BYTES_MAX).unwrap()));
        let (url, server) = serve(vec![
            (200, "not json".into()),
            (200, json!({"jsonrpc": "2.0", "id": 99, "result": "0x1"}).to_string()),
            (200, json!({"jsonrpc": "2.0", "id": 3}).to_string()),
            (200, json!({"jsonrpc": "2.0", "id": 4, "error": {"code": -32000, "message": "busy"}}).to_string()),
            (503, "{}".into()),
            (200, oversized),
            reply(7, json!(["0x1"])),
        ]);
        let rpc = L1JsonRpc::new(url).unwrap();
        let reason = |result: Result<u64, L1Error>| result.unwrap_err().to_string();
        assert!(reason(rpc.head_number()).contains("not JSON"));
        assert!(reason(rpc.head_number()).contains("is not the request's 2"));
        assert!(reason(rpc.head_number()).contains("neither result nor error"));
        assert_eq!(
            rpc.head_number(),
            Err(L1Error::Refused { method: "eth_blockNumber", code: -32000, message: "busy".into() })
        );
        assert!(matches!(rpc.head_number(), Err(L1Error::Unreachable { reason }) if reason.contains("503")));
        assert!(reason(rpc.head_number()).contains("response over"));
        assert!(reason(rpc.head_number()).contains("result is not a string"));
        server.join().unwrap();
        // Nobody listens there any more.
        assert!(matches!(rpc.head_number(), Err(L1Error::Unreachable { .. })));
    }

    /// A WebSocket node: each connection reads a request per entry of
    /// `script` and sends the entry's messages, then closes; returns the
    /// requests' methods.
    fn serve_ws(script: Vec<Vec<Vec<String>>>) -> (String, JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let mut methods = Vec::new();
            for connection in script {
                let (stream, _) = listener.accept().unwrap();
                let mut ws = tungstenite::accept(stream).unwrap();
                for messages in connection {
                    let request = ws.read().unwrap();
                    let request: Value = serde_json::from_str(request.to_text().unwrap()).unwrap();
                    methods.push(request["method"].as_str().unwrap().to_string());
                    for text in messages {
                        ws.send(Message::text(text)).unwrap();
                    }
                }
                let _ = ws.close(None);
                let _ = ws.flush();
            }
            methods
        });
        (url, server)
    }

    #[test]
    fn calls_go_over_a_websocket_past_notifications_and_reconnect_after_a_close() {
        let notification =
            json!({"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": "0x1", "result": {}}});
        let (url, server) = serve_ws(vec![
            // A notification before the answer; then a call the node closes on.
            vec![vec![notification.to_string(), reply(1, json!("0x1f")).1], vec![]],
            vec![vec![reply(3, json!("0x20")).1], vec!["not json".into()]],
        ]);
        let rpc = L1JsonRpc::with_timeout_ms(url, 2_000).unwrap();
        assert_eq!(rpc.head_number(), Ok(31));
        assert!(matches!(rpc.head_number(), Err(L1Error::Unreachable { reason }) if reason.contains("closed")));
        // A new connection for the next call.
        assert_eq!(rpc.head_number(), Ok(32));
        assert!(matches!(rpc.head_number(), Err(L1Error::Malformed { reason, .. }) if reason.contains("not JSON")));
        assert_eq!(server.join().unwrap(), vec!["eth_blockNumber"; 4]);
        assert!(matches!(rpc.head_number(), Err(L1Error::Unreachable { .. })), "nobody listens any more");
    }

    #[test]
    fn an_url_of_another_scheme_is_refused() {
        for url in ["ftp://l1:21", "l1-node:8545", ""] {
            assert_eq!(L1JsonRpc::new(url).unwrap_err(), UnsupportedUrl { url: url.into() });
        }
        for url in ["http://l1:8545", "HTTPS://l1", "ws://l1:8546", "wss://l1"] {
            assert!(L1JsonRpc::new(url).is_ok(), "{url}");
        }
    }
}
