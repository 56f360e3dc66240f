//! The L1 node as the follower sees it: `L1Rpc`, four calls small enough to
//! swap (as revm's `Database` is: an in-memory L1 in tests, another
//! transport later), and `HttpL1Rpc`, those calls as JSON-RPC over HTTP.
//!
//! `HttpL1Rpc` trusts nothing it is sent: every answer is checked field by
//! field, and one that is not what the method returns (bad JSON, a missing
//! or mistyped field, a number out of range, a block or log other than the
//! one asked for, a body over `RESPONSE_BYTES_MAX`) is `L1Error::Malformed`,
//! never a panic.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use alloy_primitives::{Address, B256, Bytes, hex};
use serde_json::{Map, Value, json};

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

/// `L1Rpc` over JSON-RPC on HTTP (blocking; one call at a time per caller).
#[derive(Debug)]
pub struct HttpL1Rpc {
    url: String,
    agent: ureq::Agent,
    next_id: AtomicU64,
}

impl HttpL1Rpc {
    /// The node at `url`, each call bounded by `REQUEST_TIMEOUT_MS_DEFAULT`.
    pub fn new(url: impl Into<String>) -> Self {
        Self::with_timeout_ms(url, REQUEST_TIMEOUT_MS_DEFAULT)
    }

    /// The node at `url`, each call bounded by `timeout_ms`.
    pub fn with_timeout_ms(url: impl Into<String>, timeout_ms: u64) -> Self {
        // HTTP error statuses are read, not raised, so that they say what
        // they are (`Unreachable` with the status).
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_millis(timeout_ms)))
            .build()
            .new_agent();
        Self { url: url.into(), agent, next_id: AtomicU64::new(1) }
    }

    /// One call: its `result` (null included), or why not.
    fn call(&self, method: &'static str, params: Value) -> Result<Value, L1Error> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let unreachable = |reason: String| L1Error::Unreachable { reason: format!("{method}: {reason}") };
        let mut response = self.agent.post(&self.url).send_json(&request).map_err(|e| unreachable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unreachable(format!("HTTP {}", response.status())));
        }
        let body = response.body_mut().with_config().limit(RESPONSE_BYTES_MAX).read_to_vec().map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => malformed(method, format!("response over {RESPONSE_BYTES_MAX} bytes")),
            other => unreachable(other.to_string()),
        })?;
        let reply: Value = serde_json::from_slice(&body).map_err(|e| malformed(method, format!("not JSON: {e}")))?;
        result_of(method, id, reply)
    }
}

impl L1Rpc for HttpL1Rpc {
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

fn malformed(method: &'static str, reason: String) -> L1Error {
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

fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Result<&'a Value, String> {
    object.get(name).ok_or_else(|| format!("no {name}"))
}

fn hex_digits<'a>(value: &'a Value, name: &str) -> Result<&'a str, String> {
    let text = value.as_str().ok_or_else(|| format!("{name} is not a string: {value}"))?;
    text.strip_prefix("0x").ok_or_else(|| format!("{name} {text:?} has no 0x prefix"))
}

/// A JSON-RPC quantity that must fit a u64.
fn quantity(value: &Value, name: &str) -> Result<u64, String> {
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
fn optional_quantity(object: &Map<String, Value>, name: &str) -> Result<Option<u64>, String> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => quantity(value, name).map(Some),
    }
}

/// Exactly `N` bytes of hex (a hash, an address).
fn fixed<const N: usize>(value: &Value, name: &str) -> Result<[u8; N], String> {
    let digits = hex_digits(value, name)?;
    let mut out = [0u8; N];
    hex::decode_to_slice(digits, &mut out).map_err(|e| format!("{name} 0x{digits} is not {N} bytes of hex: {e}"))?;
    Ok(out)
}

/// Hex bytes of any length.
fn bytes(value: &Value, name: &str) -> Result<Bytes, String> {
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
        let rpc = HttpL1Rpc::new(url);
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
        let rpc = HttpL1Rpc::new(url);
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
        let rpc = HttpL1Rpc::new(url);
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
}
