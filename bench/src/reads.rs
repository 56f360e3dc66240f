//! JSON-RPC reads under a write load: one client alternating eth_getBalance
//! and eth_call (a call executed in revm) in a closed loop, first on an idle
//! node, then while UDP transfers arrive open-loop at a given rate, on the
//! same node. Reads share the chain view with the sequencer: the ratio of
//! the two p99s is what its writes cost them.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    measure::{LatencySummary, Recorder, micros, new_histogram},
    peer::rpc,
    run::{Context, PeerKind},
    udp::{self, Pace},
    workload::Workload,
};

/// A read method's latency, in ms.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReadLatency {
    pub method: String,
    pub reads: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Reads on an idle node and under the write load.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Reads {
    pub load_offered_tx_per_s: f64,
    pub unloaded: Vec<ReadLatency>,
    pub loaded: Vec<ReadLatency>,
}

/// How long each half of the phase reads.
const READ_SECONDS_MIN: f64 = 1.0;
/// The write load starts this long before the reads under it.
const LOAD_SETTLE: Duration = Duration::from_millis(500);

pub fn measure(
    context: &Context,
    workload_dir: &std::path::Path,
    workload: &Arc<Workload>,
    load_tx_per_s: f64,
    seconds: f64,
) -> Result<Reads, String> {
    let node = context.start(PeerKind::Tephra, workload_dir)?;
    let address = node.udp_address.clone().ok_or("tephra has no UDP ingress")?;
    let read_for = Duration::from_secs_f64(seconds.max(READ_SECONDS_MIN));
    let unloaded = read(&node.rpc_url, read_for)?;
    let txs = ((load_tx_per_s * (read_for + LOAD_SETTLE).as_secs_f64()).ceil() as usize).min(workload.len());
    let recorder = Arc::new(Recorder::new(txs, Instant::now()));
    let writer = {
        let (workload, recorder) = (workload.clone(), recorder.clone());
        std::thread::spawn(move || {
            udp::run(&address, &workload, 8, Pace::Open { tx_per_s: load_tx_per_s }, None, &recorder)
        })
    };
    std::thread::sleep(LOAD_SETTLE);
    let loaded = read(&node.rpc_url, read_for);
    writer.join().map_err(|_| "the write load panicked".to_string())??;
    Ok(Reads { load_offered_tx_per_s: load_tx_per_s, unloaded, loaded: loaded? })
}

/// Closed-loop reads for `how_long`: each method's latency.
fn read(url: &str, how_long: Duration) -> Result<Vec<ReadLatency>, String> {
    let agent = ureq::Agent::new_with_defaults();
    let account = "0x0000000000000000000000000000000000000001";
    let call = json!([{"to": "0x00000000000000000000000000000000000000b1", "value": "0x0"}, "latest"]);
    let (mut balance, mut calls) = (new_histogram(), new_histogram());
    let deadline = Instant::now() + how_long;
    while Instant::now() < deadline {
        let started = Instant::now();
        rpc(&agent, url, "eth_getBalance", json!([account, "latest"]))?;
        balance.saturating_record(micros(started.elapsed()));
        let started = Instant::now();
        rpc(&agent, url, "eth_call", call.clone())?;
        calls.saturating_record(micros(started.elapsed()));
    }
    Ok(vec![latency("eth_getBalance", &balance), latency("eth_call", &calls)])
}

fn latency(method: &str, histogram: &hdrhistogram::Histogram<u64>) -> ReadLatency {
    let summary = LatencySummary::of(histogram);
    ReadLatency {
        method: method.to_string(),
        reads: usize::try_from(histogram.len()).unwrap_or(usize::MAX),
        p50_ms: summary.as_ref().map_or(0.0, |s| s.p50),
        p99_ms: summary.as_ref().map_or(0.0, |s| s.p99),
    }
}
