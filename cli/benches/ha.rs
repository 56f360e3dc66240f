//! Preconfirmation latency of a high-availability pair against a single
//! node, in the same run: one transfer per UDP request (docs/wire.md),
//! closed loop, from the client's send to the preconfirmation's arrival.
//!
//! - single: `[ha]` off;
//! - sync: a pair on a local etcd; the leader preconfirms once its standby
//!   holds the mini-block durably (one more network round trip and fsync);
//! - async: the same pair, preconfirming at once.
//!
//! With `TEPHRA_BEFORE=<a tephra binary>` every mode runs twice in the same
//! run, that binary first and then this build's.
//!
//! `cargo bench -p tephra-cli --bench ha [-- --requests N]` (needs etcd:
//! scripts/deps.sh installs it).

#![allow(clippy::print_stdout, reason = "a benchmark reports its figures on stdout")]

mod support;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use support::{TransferClient, genesis, leader_of, pair_member, percentile_ms, start_tephra_binary};
use tephra_exec::dev::DevKey;
use tephra_testkit::etcd::EtcdCluster;

const REQUESTS_DEFAULT: usize = 3000;

/// Sequential single-transfer requests: the preconfirmation round trips, sorted.
fn measure(udp: &str, requests: usize) -> Vec<Duration> {
    let mut client = TransferClient::new(udp, DevKey::from_seed(0), 0);
    let mut samples = Vec::with_capacity(requests);
    while samples.len() < requests {
        let sent = Instant::now();
        if client.round_trip() {
            samples.push(sent.elapsed());
        }
    }
    samples.sort_unstable();
    samples
}

fn main() {
    let requests = std::env::args()
        .skip_while(|a| a != "--requests")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(REQUESTS_DEFAULT);
    let root = tephra_testkit::fresh_dir("bench-ha");
    let genesis = genesis(&root, 1);
    let etcd = EtcdCluster::start("bench-ha", 1, None).expect("etcd (scripts/deps.sh installs etcd-server)");
    let endpoint = etcd.endpoints()[0].clone();
    println!("preconfirmation latency, one transfer per UDP request, closed loop, {requests} requests each");
    println!("{:<14} {:>9} {:>9} {:>9}", "mode", "p50 ms", "p99 ms", "tx/s");
    let report = |mode: &str, samples: &[Duration]| {
        let total: Duration = samples.iter().sum();
        println!(
            "{mode:<14} {:>9.3} {:>9.3} {:>9.0}",
            percentile_ms(samples, 500),
            percentile_ms(samples, 990),
            samples.len() as f64 / total.as_secs_f64()
        );
    };
    let mut binaries = vec![("", PathBuf::from(env!("CARGO_BIN_EXE_tephra")))];
    if let Some(before) = std::env::var_os("TEPHRA_BEFORE") {
        binaries = vec![(" before", PathBuf::from(before)), (" after", binaries.remove(0).1)];
    }
    for (name, binary) in &binaries {
        let single = start_tephra_binary(binary, &root.join(format!("single{name}")), &genesis, "");
        report(&format!("single{name}"), &measure(&single.udp_address, requests));
    }
    for mode in ["sync", "async"] {
        for (name, binary) in &binaries {
            let prefix = format!("/tephra/bench-{mode}{}", name.trim());
            let dir = |id: &str| root.join(format!("{mode}{}-{id}", name.trim()));
            let (metrics_a, a) = pair_member(binary, &dir("a"), &genesis, ("a", "b"), &endpoint, mode, &prefix);
            let (metrics_b, b) = pair_member(binary, &dir("b"), &genesis, ("b", "a"), &endpoint, mode, &prefix);
            let leader = leader_of([(&metrics_a, &a), (&metrics_b, &b)]);
            report(&format!("{mode}{name}"), &measure(&leader.udp_address, requests));
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}
