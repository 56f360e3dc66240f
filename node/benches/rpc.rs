//! JSON-RPC against anvil on the same pre-signed transfers, in one run:
//! sustained throughput (eth_sendRawTransaction over many connections, until
//! every transfer is in a block) and eth_sendRawTransactionSync latency at a
//! fixed offered rate, scheduled in advance so that a slow answer does not
//! hide the ones queued behind it.
//!
//! `cargo bench -p tephra-node --bench rpc` (anvil from `npm ci`).

#![allow(clippy::print_stdout, reason = "a benchmark reports its figures on stdout")]

mod support;

use std::{
    os::unix::process::CommandExt,
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, U256, hex};
use serde_json::json;
use support::{Peer, free_port, genesis, percentile_ms as percentile, rpc, start_tephra, wait_ready, workspace_root};
use tephra_exec::dev::DevKey;

const ACCOUNTS: usize = 2_000;
const THROUGHPUT_TXS_PER_ACCOUNT: u64 = 5;
const CONNECTIONS: usize = 32;
const LATENCY_SAMPLES: usize = 3_000;

fn transfer(key: &DevKey, nonce: u64) -> String {
    let tx = key.transfer(31337, nonce, Address::with_last_byte(0xee), U256::from(1));
    format!("0x{}", hex::encode(tx.encoded_2718()))
}

/// anvil mining every `block_time_s` (interval mining), or on each
/// transaction (automine) when `None`.
fn start_anvil(genesis: &Path, block_time_s: Option<u64>) -> Peer {
    let port = free_port();
    let mining: Vec<String> = block_time_s.map(|s| vec!["--block-time".into(), s.to_string()]).unwrap_or_default();
    let child = Command::new(workspace_root().join("node_modules/.bin/anvil"))
        .args(["--init", genesis.to_str().unwrap(), "--hardfork", "osaka", "--port", &port.to_string(), "--silent"])
        .args(["--gas-limit", "1000000000"])
        .args(&mining)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("anvil from npm ci");
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&url);
    Peer {
        name: if block_time_s.is_some() { "anvil (interval mining, 1 s)" } else { "anvil (automine)" },
        child,
        url,
        udp_address: String::new(),
        metrics_url: String::new(),
    }
}

/// Sends every transaction (senders' nonces in order, senders spread over
/// `CONNECTIONS` connections) and waits until all are in blocks.
fn sustained_throughput(peer: &Peer, by_sender: &[Vec<String>], last_hashes: &[String]) -> f64 {
    let total: usize = by_sender.iter().map(Vec::len).sum();
    let started = Instant::now();
    let chunks: Vec<Vec<Vec<String>>> =
        (0..CONNECTIONS).map(|c| by_sender.iter().skip(c).step_by(CONNECTIONS).cloned().collect()).collect();
    let workers: Vec<_> = chunks
        .into_iter()
        .map(|senders| {
            let url = peer.url.clone();
            std::thread::spawn(move || {
                let agent = ureq::Agent::new_with_defaults();
                // Round-robin over this connection's senders, one nonce each turn.
                let rounds = senders.iter().map(Vec::len).max().unwrap_or(0);
                for round in 0..rounds {
                    for txs in &senders {
                        if let Some(raw) = txs.get(round) {
                            rpc(&agent, &url, "eth_sendRawTransaction", json!([raw])).expect("accepted");
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let agent = ureq::Agent::new_with_defaults();
    for hash in last_hashes {
        while rpc(&agent, &peer.url, "eth_getTransactionReceipt", json!([hash])).unwrap().is_null() {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// eth_sendRawTransactionSync at `rate` per second, send times fixed in
/// advance; latency counts from the scheduled time.
fn sync_latency(peer: &Peer, txs: Vec<String>, rate: f64) -> Option<Vec<Duration>> {
    let agent = ureq::Agent::new_with_defaults();
    if let Err(error) = rpc(&agent, &peer.url, "eth_sendRawTransactionSync", json!([txs[0]])) {
        println!("{}: eth_sendRawTransactionSync unavailable ({error})", peer.name);
        return None;
    }
    let samples = Arc::new(Mutex::new(Vec::with_capacity(txs.len())));
    let start = Instant::now() + Duration::from_millis(50);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let per_worker: Vec<Vec<(usize, String)>> = (0..CONNECTIONS)
        .map(|w| txs.iter().enumerate().skip(1 + w).step_by(CONNECTIONS).map(|(i, t)| (i, t.clone())).collect())
        .collect();
    let workers: Vec<_> = per_worker
        .into_iter()
        .map(|mine| {
            let (url, samples) = (peer.url.clone(), samples.clone());
            std::thread::spawn(move || {
                let agent = ureq::Agent::new_with_defaults();
                for (i, raw) in mine {
                    let scheduled = start + interval * u32::try_from(i).unwrap();
                    if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let receipt = rpc(&agent, &url, "eth_sendRawTransactionSync", json!([raw])).expect("receipt");
                    assert_eq!(receipt["status"], "0x1");
                    samples.lock().unwrap().push(scheduled.elapsed());
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let mut samples = Arc::try_unwrap(samples).unwrap().into_inner().unwrap();
    samples.sort();
    Some(samples)
}

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("tephra-rpc-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let genesis = genesis(&dir, ACCOUNTS);
    print!("pre-signing {} transfers... ", ACCOUNTS as u64 * (THROUGHPUT_TXS_PER_ACCOUNT + 2));
    let keys: Vec<DevKey> = (0..ACCOUNTS).map(|i| DevKey::from_seed(i as u64)).collect();
    let by_sender: Vec<Vec<String>> =
        keys.iter().map(|k| (0..THROUGHPUT_TXS_PER_ACCOUNT).map(|n| transfer(k, n)).collect()).collect();
    let last_hashes: Vec<String> = by_sender
        .iter()
        .map(|txs| {
            format!(
                "{}",
                alloy_primitives::keccak256(hex::decode(txs.last().unwrap().trim_start_matches("0x")).unwrap())
            )
        })
        .collect();
    // Latency runs after throughput: the next nonces, two rounds.
    let latency_txs: Vec<String> = (0..2)
        .flat_map(|round| keys.iter().map(move |k| transfer(k, THROUGHPUT_TXS_PER_ACCOUNT + round)))
        .take(LATENCY_SAMPLES)
        .collect();
    println!("done");

    // Throughput: tephra, then anvil with interval mining (its automine leaves
    // a burst of concurrent submissions pending until the next transaction).
    let tephra_dir = dir.join("tephra");
    std::fs::create_dir_all(&tephra_dir).unwrap();
    let tephra = start_tephra(&tephra_dir, &genesis, "");
    let tephra_max = sustained_throughput(&tephra, &by_sender, &last_hashes);
    println!("{:<30} sustained JSON-RPC transfers: {tephra_max:>9.0} tx/s", tephra.name);
    let anvil = start_anvil(&genesis, Some(1));
    let anvil_max = sustained_throughput(&anvil, &by_sender, &last_hashes);
    println!("{:<30} sustained JSON-RPC transfers: {anvil_max:>9.0} tx/s", anvil.name);
    drop(anvil);

    // Latency: each at half of its own sustained maximum; anvil in automine,
    // where eth_sendRawTransactionSync answers as soon as it mined the block.
    let anvil_auto = start_anvil(&genesis, None);
    for (peer, rate) in [(&tephra, tephra_max / 2.0), (&anvil_auto, anvil_max / 2.0)] {
        // anvil starts from genesis here: the latency transfers use nonces from 0.
        let txs = if peer.name == tephra.name {
            latency_txs.clone()
        } else {
            keys.iter().take(LATENCY_SAMPLES).map(|k| transfer(k, 0)).collect()
        };
        if let Some(samples) = sync_latency(peer, txs, rate) {
            println!(
                "{:<30} eth_sendRawTransactionSync at {rate:.0} tx/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms{}",
                peer.name,
                percentile(&samples, 500),
                percentile(&samples, 990),
                percentile(&samples, 1000),
                if peer.name == tephra.name {
                    format!(" (goal p99 < 5 ms: {})", if percentile(&samples, 990) < 5.0 { "meets" } else { "MISSES" })
                } else {
                    String::new()
                }
            );
        }
    }
    let ratio = tephra_max / anvil_max;
    println!(
        "tephra / anvil sustained throughput: {ratio:.1}x (goal >= 10x: {})",
        if ratio >= 10.0 { "meets" } else { "MISSES" }
    );
    drop((tephra, anvil_auto));
    let _ = std::fs::remove_dir_all(&dir);
}
