//! Floods while an honest client sends: garbage datagrams and transfers from
//! unfunded senders over UDP, each from its own source address, nonce-gap
//! spam and oversized bodies over JSON-RPC. Every honest transaction is
//! preconfirmed, the floods get their codes, the per-source limit holds the
//! UDP floods back, and memory stays bounded. (How fast the honest client is
//! answered under flood is a benchmark: `cargo bench -p tephra-cli --bench reliability`.)

mod common;

use std::{
    net::UdpSocket,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, U256, hex, keccak256};
use common::TephraNode;
use serde_json::json;
use tephra_exec::dev::DevKey;
use tephra_types::{
    RejectCode,
    wire::{self, TxReply},
};

const HONEST_TXS: u64 = 100;
const UNFUNDED_SENDERS: u64 = 500;
const HONEST_RETRY_AFTER: Duration = Duration::from_millis(200);
const HONEST_ATTEMPTS_MAX: usize = 50;
/// Resident memory may grow by at most this much under the floods.
const RSS_GROWTH_MAX_BYTES: u64 = 256 << 20;

fn transfer(key: &DevKey, nonce: u64) -> Vec<u8> {
    key.transfer(31337, nonce, Address::with_last_byte(0xf1), U256::from(1)).encoded_2718()
}

/// Sends `datagrams` round-robin from `source` until `stop`; replies are read
/// and dropped so that the socket buffer does not fill.
fn udp_flood(source: &str, to: String, datagrams: Vec<Vec<u8>>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let socket = UdpSocket::bind(source).unwrap();
    socket.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let (mut sent, mut sink) = (0u64, vec![0u8; wire::DATAGRAM_SIZE_MAX_BYTES]);
        while !stop.load(Ordering::Relaxed) {
            for datagram in &datagrams {
                if socket.send_to(datagram, &to).is_ok() {
                    sent += 1;
                }
                while socket.recv_from(&mut sink).is_ok() {}
            }
        }
        sent
    })
}

/// Transparent huge pages are off for the node's process by default (a 2 MiB
/// fault held the sequencer for milliseconds), and on when configured.
#[test]
fn the_node_runs_without_transparent_huge_pages_unless_configured() {
    let node = TephraNode::start("thp-default", "");
    assert_eq!(node.status_field("THP_enabled"), "0");
    drop(node);
    let node = TephraNode::start("thp-on", "[host]\ntransparent_huge_pages = true\n");
    assert_eq!(node.status_field("THP_enabled"), "1");
}

#[test]
fn honest_transactions_are_preconfirmed_through_floods_and_memory_stays_bounded() {
    let node = TephraNode::start("flood", "[udp]\nsource_txs_per_s = 2000\nsource_burst_txs = 200\n");
    let rss_before = node.rss_bytes();
    let stop = Arc::new(AtomicBool::new(false));
    let mut floods = Vec::new();

    // Garbage from 127.0.0.2: random lengths and bytes, some with our magic.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let garbage: Vec<Vec<u8>> = (0..256)
        .map(|i| {
            let len = 1 + (i * 37) % 1400;
            let mut bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed.to_le_bytes()[0]
                })
                .collect();
            if i % 2 == 0 && len > 3 {
                bytes[..3].copy_from_slice(&[wire::MAGIC[0], wire::MAGIC[1], wire::VERSION]);
            }
            bytes
        })
        .collect();
    floods.push(udp_flood("127.0.0.2:0", node.udp_address.clone(), garbage, stop.clone()));

    // Well-formed transfers from unfunded senders, from 127.0.0.3.
    let unfunded: Vec<Vec<u8>> = (0..UNFUNDED_SENDERS)
        .map(|i| {
            let tx = transfer(&DevKey::from_seed(1_000_000 + i), 0);
            let mut datagram = Vec::new();
            wire::encode_request(i, false, &[&tx], &mut datagram);
            datagram
        })
        .collect();
    floods.push(udp_flood("127.0.0.3:0", node.udp_address.clone(), unfunded, stop.clone()));

    // Nonce-gap spam and oversized bodies over JSON-RPC.
    let spam = {
        let (url, stop) = (node.rpc_url.clone(), stop.clone());
        std::thread::spawn(move || {
            let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
            let key = DevKey::dev(7);
            let (mut gap_refusals, mut too_large) = (0u64, 0u64);
            for nonce in 10.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let raw = format!("0x{}", hex::encode(transfer(&key, nonce)));
                let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": [raw]});
                let reply: serde_json::Value =
                    agent.post(&url).send_json(&body).unwrap().body_mut().read_json().unwrap();
                let code = reply["error"]["data"]["code"].as_u64();
                if code == Some(u64::from(RejectCode::NonceGapTooLarge.as_u16()))
                    || code == Some(u64::from(RejectCode::SenderQueueFull.as_u16()))
                {
                    gap_refusals += 1;
                }
                if nonce % 16 == 0 {
                    // Above rpc.request_size_max_bytes (5 MiB): refused before the body is read.
                    if common::status_for_announced_body(&url, 6 << 20).contains("413") {
                        too_large += 1;
                    }
                }
            }
            (gap_refusals, too_large)
        })
    };

    // The honest client: one transfer a datagram from 127.0.0.1. Datagrams
    // are lost when floods fill the socket buffer ahead of the node, so it
    // retries as a UDP client does; a retry of a transfer already in gets
    // "already known" or "nonce too low", and its receipt is checked below.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(HONEST_RETRY_AFTER)).unwrap();
    let honest = DevKey::dev(1);
    let (mut request, mut reply) = (Vec::new(), vec![0u8; wire::DATAGRAM_SIZE_MAX_BYTES]);
    let (mut hashes, mut retries) = (Vec::new(), 0);
    for nonce in 0..HONEST_TXS {
        let tx = transfer(&honest, nonce);
        hashes.push(keccak256(&tx));
        request.clear();
        wire::encode_request(nonce, false, &[&tx], &mut request);
        let mut answered = false;
        for _ in 0..HONEST_ATTEMPTS_MAX {
            socket.send_to(&request, &node.udp_address).unwrap();
            // Replies to earlier requests may still arrive: skip them.
            while let Ok((len, _)) = socket.recv_from(&mut reply) {
                let (id, answers) = wire::decode_reply(&reply[..len]).expect("a well-formed reply");
                if id != nonce {
                    continue;
                }
                let answers = answers.expect("answered per transaction");
                answered = match answers[..] {
                    [TxReply::Preconfirmed { success: true, .. }] => true,
                    [TxReply::Rejected { code: RejectCode::AlreadyKnown | RejectCode::NonceTooLow, .. }] => true,
                    _ => panic!("honest {nonce}: {answers:?}"),
                };
                break;
            }
            if answered {
                break;
            }
            retries += 1;
        }
        assert!(answered, "honest transfer {nonce} unanswered after {HONEST_ATTEMPTS_MAX} attempts");
    }
    let rss_under_flood = node.rss_bytes();
    stop.store(true, Ordering::Relaxed);
    let sent: Vec<u64> = floods.into_iter().map(|f| f.join().unwrap()).collect();
    let (gap_refusals, too_large) = spam.join().unwrap();

    assert!(sent.iter().all(|&n| n > 0), "the floods ran: {sent:?}");
    assert!(node.metric("tephra_udp_rate_limited_datagrams_total") > 0.0, "the per-source limit held the floods back");
    assert!(gap_refusals > 0, "nonce-gap spam is refused by the per-sender caps");
    assert!(too_large > 0, "oversized bodies are refused with 413");
    assert!(
        rss_under_flood < rss_before + RSS_GROWTH_MAX_BYTES,
        "memory grew from {rss_before} to {rss_under_flood} bytes under the floods"
    );
    // Those answered "already known" may still be on their way into a block.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for hash in &hashes {
        let receipt = loop {
            let receipt = node.rpc("eth_getTransactionReceipt", json!([hash]));
            if !receipt.is_null() || std::time::Instant::now() > deadline {
                break receipt;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(receipt["status"], "0x1", "honest {hash} is in the chain");
    }
    eprintln!("honest: {HONEST_TXS} transfers, {retries} retries; floods sent {sent:?} datagrams");
    // Still healthy afterwards.
    assert_eq!(node.rpc("eth_chainId", json!([])), "0x7a69");
}

/// A WebSocket connection from `source` that subscribes to new heads and
/// then never reads; `None` if the server closed it instead of upgrading.
fn idle_subscriber(runtime: &tokio::runtime::Runtime, source: &str, rpc: &str) -> Option<std::net::TcpStream> {
    use std::io::{Read, Write};
    let address = rpc.trim_start_matches("http://");
    let mut stream = common::connect_from(runtime, source, rpc);
    let handshake = format!(
        "GET / HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(handshake.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    if !head.starts_with(b"HTTP/1.1 101") {
        return None;
    }
    // One masked text frame (clients must mask), shorter than 126 bytes.
    let payload = br#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["preconfirmations"]}"#;
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81, 0x80 | u8::try_from(payload.len()).unwrap()];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    stream.write_all(&frame).ok()?;
    Some(stream)
}

#[test]
fn websocket_subscribers_that_never_read_hold_neither_connections_nor_memory() {
    let node = TephraNode::start("flood-ws", "[rpc]\nconnections_per_client_max = 32\nsubscription_buffer_max = 16\n");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
    let rss_before = node.rss_bytes();
    let held: Vec<_> = (0..100).filter_map(|_| idle_subscriber(&runtime, "127.0.0.2:0", &node.rpc_url)).collect();
    assert_eq!(held.len(), 32, "one client address holds at most rpc.connections_per_client_max");
    assert!(node.metric("tephra_rpc_connections_refused_total") >= 68.0);
    // Preconfirmations, one message per transaction, pile up for subscribers
    // that never read, past their buffer of 16; another client is served
    // all the while.
    let honest = DevKey::dev(2);
    for nonce in 0..50 {
        let raw = format!("0x{}", hex::encode(transfer(&honest, nonce)));
        assert_eq!(node.rpc("eth_sendRawTransactionSync", json!([raw]))["status"], "0x1");
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss_after = node.rss_bytes();
    assert!(
        rss_after < rss_before + RSS_GROWTH_MAX_BYTES,
        "memory grew from {rss_before} to {rss_after} bytes with idle subscribers"
    );
    drop(held);
}

#[test]
fn a_json_rpc_client_over_its_rate_is_refused_while_others_are_served() {
    const RATE_PER_S: u64 = 50;
    const BURST: u64 = 20;
    let node = TephraNode::start(
        "flood-rpc-rate",
        &format!("[rpc]\nclient_requests_per_s = {RATE_PER_S}\nclient_burst_requests = {BURST}\n"),
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
    let started = std::time::Instant::now();
    let (mut allowed, mut refused) = (0u64, 0u64);
    // 50 batches of 20 calls and 100 single calls from 127.0.0.2, as fast as
    // it can: about the burst and the refill get through.
    for round in 0..150 {
        let calls = if round < 50 { 20 } else { 1 };
        let batch: Vec<_> =
            (0..calls).map(|id| json!({"jsonrpc": "2.0", "id": id, "method": "eth_chainId", "params": []})).collect();
        let body = if calls == 1 { batch[0].clone() } else { serde_json::Value::Array(batch) };
        let reply = common::post_from(&runtime, "127.0.0.2:0", &node.rpc_url, &body);
        let replies = reply.as_array().cloned().unwrap_or_else(|| vec![reply]);
        assert_eq!(replies.len(), calls, "every call is answered");
        for reply in replies {
            if reply["result"] == "0x7a69" {
                allowed += 1;
            } else {
                assert_eq!(reply["error"]["code"], -32005, "{reply}");
                assert!(reply["error"]["message"].as_str().unwrap().contains("rate limit"), "{reply}");
                refused += 1;
            }
        }
        // Another client address is served all the while.
        if round % 30 == 0 {
            assert_eq!(node.rpc("eth_chainId", json!([])), "0x7a69");
        }
    }
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap();
    eprintln!("rate limit: {allowed} allowed, {refused} refused in {elapsed_ms} ms");
    let allowed_max = BURST + RATE_PER_S * elapsed_ms / 1000 + 2;
    assert!((BURST..=allowed_max).contains(&allowed), "{allowed} allowed, at most {allowed_max} may be");
    assert_eq!(allowed + refused, 1100);
    assert!(node.metric("tephra_rpc_rate_limited_total") >= refused as f64);
}
