//! JSON-RPC read latency under a write load: eth_getBalance and eth_call,
//! one client in a closed loop, while transfers arrive over UDP at half the
//! node's closed-loop maximum, on a single node and on a sync pair's
//! leader. Reads share the chain view with the sequencer: this measures
//! what its lock costs them.
//!
//! With `TEPHRA_BEFORE=<a tephra binary>` every phase runs twice in the
//! same run, that binary first and then this build's, so that a change to
//! the sequencer's locking is measured against what came before it on the
//! same machine the same day.
//!
//! `cargo bench -p tephra-cli --bench reads [-- --reads N]` (needs etcd:
//! scripts/deps.sh installs it).

#![allow(clippy::print_stdout, reason = "a benchmark reports its figures on stdout")]

mod support;

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use alloy_primitives::Address;
use serde_json::json;
use support::{Peer, TransferClient, genesis, leader_of, pair_member, percentile_ms, start_tephra_binary};
use tephra_exec::dev::DevKey;
use tephra_testkit::{etcd::EtcdCluster, rpc::RpcClient};

const READS_DEFAULT: usize = 2000;
/// Closed-loop transfers that measure a mode's maximum write rate.
const MAX_PROBE_REQUESTS: u64 = 1000;
/// The write load, as a share of that maximum.
const WRITE_LOAD_PERCENT: u64 = 50;

/// One transfer per request, closed loop, `interval` apart at least, until
/// `stop` or `count`; how many were preconfirmed.
fn write(client: &mut TransferClient, interval: Duration, stop: &AtomicBool, count: u64) -> u64 {
    let (mut preconfirmed, mut next) = (0, Instant::now());
    while !stop.load(Ordering::Relaxed) && preconfirmed < count {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += interval;
        preconfirmed += u64::from(client.round_trip());
    }
    preconfirmed
}

/// Closed-loop reads, alternating eth_getBalance and eth_call: the sorted
/// latencies of each.
fn read(url: &str, reads: usize) -> (Vec<Duration>, Vec<Duration>) {
    let client = RpcClient::new(url);
    let account = DevKey::from_seed(1).address();
    let call = json!([{"from": account, "to": Address::with_last_byte(0xb1), "value": "0x1"}, "latest"]);
    let (mut balance, mut calls) = (Vec::with_capacity(reads), Vec::with_capacity(reads));
    for _ in 0..reads {
        let started = Instant::now();
        client.try_call("eth_getBalance", json!([account, "latest"])).expect("eth_getBalance");
        balance.push(started.elapsed());
        let started = Instant::now();
        client.try_call("eth_call", call.clone()).expect("eth_call");
        calls.push(started.elapsed());
    }
    balance.sort_unstable();
    calls.sort_unstable();
    (balance, calls)
}

/// The maximum closed-loop write rate, then reads under half of it.
fn measure(label: &str, leader: &Peer, reads: usize) {
    let mut client = TransferClient::new(&leader.udp_address, DevKey::from_seed(0), 0);
    let started = Instant::now();
    let probed = write(&mut client, Duration::ZERO, &AtomicBool::new(false), MAX_PROBE_REQUESTS);
    let max_tx_per_s = probed as f64 / started.elapsed().as_secs_f64();
    let load_tx_per_s = max_tx_per_s * WRITE_LOAD_PERCENT as f64 / 100.0;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let interval = Duration::from_secs_f64(1.0 / load_tx_per_s);
        std::thread::spawn(move || {
            let started = Instant::now();
            let written = write(&mut client, interval, &stop, u64::MAX);
            written as f64 / started.elapsed().as_secs_f64()
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let (balance, calls) = read(&leader.url, reads);
    stop.store(true, Ordering::Relaxed);
    let written_tx_per_s = writer.join().unwrap();
    for (method, samples) in [("eth_getBalance", &balance), ("eth_call", &calls)] {
        println!(
            "{label:<26} {method:<15} {:>8.3} {:>8.3} {:>8.0} {:>10.0}",
            percentile_ms(samples, 500),
            percentile_ms(samples, 990),
            max_tx_per_s,
            written_tx_per_s,
        );
    }
}

fn main() {
    let reads =
        std::env::args().skip_while(|a| a != "--reads").nth(1).and_then(|n| n.parse().ok()).unwrap_or(READS_DEFAULT);
    let this_build = PathBuf::from(env!("CARGO_BIN_EXE_tephra"));
    let mut binaries = vec![("after", this_build)];
    if let Some(before) = std::env::var_os("TEPHRA_BEFORE") {
        binaries.insert(0, ("before", PathBuf::from(before)));
    }
    let root = tephra_testkit::fresh_dir("bench-reads");
    let genesis = genesis(&root, 2);
    let etcd = EtcdCluster::start("bench-reads", 1, None).expect("etcd (scripts/deps.sh installs etcd-server)");
    let endpoint = etcd.endpoints()[0].clone();
    println!(
        "JSON-RPC reads, closed loop, {reads} of each, under UDP transfers at {WRITE_LOAD_PERCENT}% of the closed-loop maximum"
    );
    println!("{:<26} {:<15} {:>8} {:>8} {:>8} {:>10}", "node", "read", "p50 ms", "p99 ms", "max tx/s", "load tx/s");
    for (name, binary) in &binaries {
        let single = start_tephra_binary(binary, &root.join(format!("single-{name}")), &genesis, "");
        measure(&format!("single, {name}"), &single, reads);
    }
    for (name, binary) in &binaries {
        let prefix = format!("/tephra/bench-reads-{name}");
        let dir = |id: &str| root.join(format!("sync-{name}-{id}"));
        let (metrics_a, a) = pair_member(binary, &dir("a"), &genesis, ("a", "b"), &endpoint, "sync", &prefix);
        let (metrics_b, b) = pair_member(binary, &dir("b"), &genesis, ("b", "a"), &endpoint, "sync", &prefix);
        let leader = leader_of([(&metrics_a, &a), (&metrics_b, &b)]);
        measure(&format!("sync pair leader, {name}"), leader, reads);
    }
    let _ = std::fs::remove_dir_all(&root);
}
