//! What one phase of load records, and its summary in the results.
//!
//! A phase's transactions each get a slot, allocated before the first send:
//! the scheduled send time, the preconfirmation latency, the block it was
//! promised in, and how it was answered. The drivers fill the slots from
//! their threads; `Recorder::finish` folds them with the block times of the
//! watcher into HDR histograms.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::watch::BlockTimes;

/// Latencies are recorded in microseconds, 1 us to 10 minutes, to three
/// significant figures.
const LATENCY_US_MAX: u64 = 600_000_000;
/// Points kept of each latency distribution for the CDF plot.
const CDF_POINTS: usize = 200;
/// Slots for answer reasons: reject codes are below 1000; the JSON-RPC
/// driver names its reasons in `Recorder::reasons`.
const CODES: usize = 1000;
/// No value yet in a slot.
const NONE: u64 = u64::MAX;

/// Which transport carried a phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Driver {
    /// Wire format v1 datagrams, several transactions each.
    Udp,
    /// eth_sendRawTransaction, pipelined over many HTTP/1.1 connections.
    Rpc,
    /// eth_sendRawTransactionSync, pipelined over many HTTP/1.1 connections.
    RpcSync,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::Udp => "udp",
            Driver::Rpc => "rpc",
            Driver::RpcSync => "rpc-sync",
        }
    }
}

/// Per-transaction slots of one phase.
#[derive(Debug)]
pub struct Recorder {
    pub start: Instant,
    sent_ns: Vec<AtomicU64>,
    preconf_us: Vec<AtomicU64>,
    block: Vec<AtomicU64>,
    codes: Vec<AtomicU64>,
    /// The JSON-RPC driver's reasons, by the text the node gave.
    reasons: std::sync::Mutex<BTreeMap<String, u64>>,
    last_answer_ns: AtomicU64,
}

impl Recorder {
    /// Slots for `txs` transactions, sends counted from `start`.
    pub fn new(txs: usize, start: Instant) -> Self {
        let slots = |n: usize| (0..n).map(|_| AtomicU64::new(NONE)).collect::<Vec<_>>();
        Self {
            start,
            sent_ns: slots(txs),
            preconf_us: slots(txs),
            block: slots(txs),
            codes: (0..CODES).map(|_| AtomicU64::new(0)).collect(),
            reasons: std::sync::Mutex::new(BTreeMap::new()),
            last_answer_ns: AtomicU64::new(0),
        }
    }

    /// Blocks until the phase's start.
    pub fn wait_for_start(&self) {
        if let Some(wait) = self.start.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }

    pub fn txs(&self) -> usize {
        self.sent_ns.len()
    }

    fn ns_since_start(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.start).as_nanos()).unwrap_or(NONE - 1)
    }

    /// Transaction `tx` was (scheduled to be) sent at `at`.
    pub fn sent(&self, tx: usize, at: Instant) {
        self.sent_ns[tx].store(self.ns_since_start(at), Ordering::Relaxed);
    }

    pub fn sent_at(&self, tx: usize) -> Option<Instant> {
        let ns = self.sent_ns[tx].load(Ordering::Relaxed);
        (ns != NONE).then(|| self.start + Duration::from_nanos(ns))
    }

    /// The earliest send of the phase.
    pub fn first_sent(&self) -> Option<Instant> {
        let ns = self.sent_ns.iter().map(|s| s.load(Ordering::Relaxed)).min().unwrap_or(NONE);
        (ns != NONE).then(|| self.start + Duration::from_nanos(ns))
    }

    /// The transactions that were preconfirmed, by index.
    pub fn accepted(&self) -> impl Iterator<Item = usize> + '_ {
        self.preconf_us.iter().enumerate().filter(|(_, p)| p.load(Ordering::Relaxed) != NONE).map(|(tx, _)| tx)
    }

    /// The highest-numbered transaction that was preconfirmed (accepted).
    pub fn last_accepted(&self) -> Option<usize> {
        self.preconf_us.iter().rposition(|p| p.load(Ordering::Relaxed) != NONE)
    }

    fn answered(&self, at: Instant) {
        self.last_answer_ns.fetch_max(self.ns_since_start(at), Ordering::Relaxed);
    }

    /// Transaction `tx` was preconfirmed at `at` into block `block` (when
    /// the answer says which).
    pub fn preconfirmed(&self, tx: usize, at: Instant, block: Option<u64>) {
        let Some(sent) = self.sent_at(tx) else { return };
        let us = u64::try_from(at.saturating_duration_since(sent).as_micros()).unwrap_or(LATENCY_US_MAX);
        self.preconf_us[tx].store(us.max(1), Ordering::Relaxed);
        if let Some(block) = block {
            self.block[tx].store(block, Ordering::Relaxed);
        }
        self.answered(at);
    }

    /// A transaction was refused with wire reject code `code`.
    pub fn rejected_code(&self, at: Instant, code: u16) {
        self.codes[usize::from(code).min(CODES - 1)].fetch_add(1, Ordering::Relaxed);
        self.answered(at);
    }

    /// A transaction was refused for `reason` (the JSON-RPC error).
    pub fn rejected_reason(&self, at: Instant, reason: &str) {
        *self.reasons.lock().expect("reasons lock").entry(reason.to_string()).or_insert(0) += 1;
        self.answered(at);
    }

    /// The phase's figures: `blocks` gives the sealed and signed times of
    /// blocks, and the block of a transaction the driver did not learn it for.
    pub fn finish(
        &self,
        label: Label,
        blocks: &BlockTimes,
        tx_hash: impl Fn(usize) -> alloy_primitives::B256,
    ) -> Phase {
        let mut preconf = new_histogram();
        let mut sealed = new_histogram();
        let mut signed = new_histogram();
        let (mut sent, mut accepted, mut first_sent_ns) = (0u64, 0u64, NONE);
        for tx in 0..self.txs() {
            let Some(sent_at) = self.sent_at(tx) else { continue };
            sent += 1;
            first_sent_ns = first_sent_ns.min(self.sent_ns[tx].load(Ordering::Relaxed));
            let us = self.preconf_us[tx].load(Ordering::Relaxed);
            if us == NONE {
                continue;
            }
            accepted += 1;
            preconf.saturating_record(us);
            let block = match self.block[tx].load(Ordering::Relaxed) {
                NONE => blocks.block_of(&tx_hash(tx)),
                block => Some(block),
            };
            let Some(block) = block else { continue };
            if let Some(at) = blocks.sealed_at(block) {
                sealed.saturating_record(micros(at.saturating_duration_since(sent_at)));
            }
            if let Some(at) = blocks.signed_at(block) {
                signed.saturating_record(micros(at.saturating_duration_since(sent_at)));
            }
        }
        let mut rejected: BTreeMap<String, u64> = self.reasons.lock().expect("reasons lock").clone();
        for (code, count) in self.codes.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            if count > 0 {
                let name = u16::try_from(code)
                    .ok()
                    .and_then(tephra_types::reject::RejectCode::from_u16)
                    .map_or_else(|| format!("{code}"), |c| format!("{code} {}", c.text()));
                rejected.insert(name, count);
            }
        }
        let answered: u64 = accepted + rejected.values().sum::<u64>();
        let last_answer_ns = self.last_answer_ns.load(Ordering::Relaxed);
        let duration_s = if first_sent_ns == NONE || last_answer_ns <= first_sent_ns {
            0.0
        } else {
            Duration::from_nanos(last_answer_ns - first_sent_ns).as_secs_f64()
        };
        Phase {
            label,
            sent,
            accepted,
            rejected,
            lost: sent.saturating_sub(answered),
            duration_s,
            achieved_tx_per_s: if duration_s > 0.0 { accepted as f64 / duration_s } else { 0.0 },
            included_tx_per_s: None,
            blocks_sealed: 0,
            rss_mib: 0,
            node_threads_cpu_s: std::collections::BTreeMap::new(),
            node: None,
            preconf_ms: LatencySummary::of(&preconf),
            sealed_ms: LatencySummary::of(&sealed),
            signed_ms: LatencySummary::of(&signed),
        }
    }
}

pub fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(LATENCY_US_MAX).max(1)
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

/// What a phase was.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Label {
    /// For the report: "udp sweep 4000/s", "rpc max".
    pub name: String,
    pub peer: String,
    pub workload: String,
    pub driver: Driver,
    /// The open-loop rate; `None` for a closed loop (as fast as answered).
    pub offered_tx_per_s: Option<f64>,
}

/// One phase's figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Phase {
    #[serde(flatten)]
    pub label: Label,
    pub sent: u64,
    pub accepted: u64,
    /// Refusals by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Sent and never answered.
    pub lost: u64,
    /// First send to last answer.
    pub duration_s: f64,
    /// Accepted (preconfirmed, or for anvil answered with a hash) per second.
    pub achieved_tx_per_s: f64,
    /// Accepted per second, first send to the last one's receipt in a block.
    pub included_tx_per_s: Option<f64>,
    /// Blocks the watcher saw sealed during the phase.
    pub blocks_sealed: usize,
    /// The node's resident memory at the end.
    pub rss_mib: u64,
    /// CPU seconds of each of the node's threads (by name) over its life,
    /// which is this phase (and its start).
    #[serde(default)]
    pub node_threads_cpu_s: std::collections::BTreeMap<String, f64>,
    /// tephra's own histograms for the phase.
    pub node: Option<crate::metrics::NodeTimes>,
    /// Send (the scheduled time, open loop) to the preconfirmation, to the
    /// sealed block holding it, and to that block's signature, as seen by the
    /// block watcher.
    pub preconf_ms: Option<LatencySummary>,
    pub sealed_ms: Option<LatencySummary>,
    pub signed_ms: Option<LatencySummary>,
}

impl Phase {
    /// The phase as one line for the console.
    pub fn one_line(&self) -> String {
        let offered = self.label.offered_tx_per_s.map_or_else(|| "closed loop".into(), |r| format!("offered {r:.0}/s"));
        let latency = |name: &str, l: &Option<LatencySummary>| {
            l.as_ref().map_or_else(String::new, |l| format!(", {name} p50 {:.2} p99 {:.2} ms", l.p50, l.p99))
        };
        format!(
            "{offered}: {:.0} tx/s accepted, {}/{} accepted, {} refused, {} lost{}{}{}",
            self.achieved_tx_per_s,
            self.accepted,
            self.sent,
            self.rejected.values().sum::<u64>(),
            self.lost,
            latency("preconf", &self.preconf_ms),
            latency("sealed", &self.sealed_ms),
            latency("signed", &self.signed_ms),
        )
    }
}

/// A latency distribution in milliseconds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    /// (quantile, ms) points for the CDF plot.
    pub cdf: Vec<(f64, f64)>,
}

impl LatencySummary {
    pub fn of(histogram: &Histogram<u64>) -> Option<Self> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1e3;
        let cdf = (0..=CDF_POINTS)
            .map(|i| {
                // Denser towards the tail: quantiles 1 - 10^-(3 i / n).
                let quantile = 1.0 - 10f64.powf(-3.0 * i as f64 / CDF_POINTS as f64);
                (quantile, ms(quantile))
            })
            .collect();
        Some(Self {
            count: histogram.len(),
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: histogram.max() as f64 / 1e3,
            cdf,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_count_from_the_scheduled_send_and_unanswered_are_lost() {
        let start = Instant::now();
        let recorder = Recorder::new(4, start);
        for tx in 0..4 {
            recorder.sent(tx, start + Duration::from_millis(u64::try_from(tx).unwrap()));
        }
        // tx 0 and 1 preconfirmed 2 ms after their scheduled sends, in block 5.
        recorder.preconfirmed(0, start + Duration::from_millis(2), Some(5));
        recorder.preconfirmed(1, start + Duration::from_millis(3), Some(5));
        recorder.rejected_code(start + Duration::from_millis(4), 301);
        let mut blocks = BlockTimes::default();
        blocks.seal(5, start + Duration::from_millis(10), &[]);
        blocks.sign(5, start + Duration::from_millis(30));
        let label = Label {
            name: "t".into(),
            peer: "p".into(),
            workload: "w".into(),
            driver: Driver::Udp,
            offered_tx_per_s: Some(1000.0),
        };
        let phase = recorder.finish(label, &blocks, |_| alloy_primitives::B256::ZERO);
        assert_eq!((phase.sent, phase.accepted, phase.lost), (4, 2, 1));
        assert_eq!(phase.rejected.len(), 1);
        let preconf = phase.preconf_ms.unwrap();
        assert!((preconf.p50 - 2.0).abs() < 0.01 && (preconf.max - 2.0).abs() < 0.01, "{preconf:?}");
        let (sealed, signed) = (phase.sealed_ms.unwrap(), phase.signed_ms.unwrap());
        assert!((sealed.max - 10.0).abs() < 0.02 && (sealed.p50 - 9.0).abs() < 0.02, "{sealed:?}");
        assert!((signed.max - 30.0).abs() < 0.05, "{signed:?}");
        // First send (0 ms) to last answer (4 ms).
        assert!((phase.duration_s - 0.004).abs() < 1e-6);
    }
}
