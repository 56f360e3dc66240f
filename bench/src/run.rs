//! One phase of load: a fresh node on the workload's genesis, the block
//! watcher, one driver, then the figures. Glue between the peers, the
//! drivers and the recorder lives here alone.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::json;

use crate::{
    jsonrpc,
    measure::{Driver, Label, Phase, Recorder},
    metrics,
    peer::{self, Node, Programs, rpc},
    udp::{self, Pace},
    watch::{BlockTimes, Watcher},
    workload::{GENESIS_FILE, Workload},
};

/// Sends start this long after the recorder is made: the threads are up.
const START_DELAY: Duration = Duration::from_millis(100);
/// How long the harness waits for the last accepted transaction's receipt.
const INCLUSION_TIMEOUT: Duration = Duration::from_secs(20);

/// Which node a phase runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PeerKind {
    Tephra,
    /// anvil, a block per transaction.
    AnvilAutomine,
    /// anvil, a block a second.
    AnvilInterval,
}

/// How a driver loads the node.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub driver: Driver,
    pub pace: Pace,
    /// Open loop: the phase sends `rate * seconds` transactions. Closed
    /// loop: it sends for `seconds`.
    pub seconds: f64,
    pub txs_per_datagram: usize,
    pub connections: usize,
    /// JSON-RPC: calls per HTTP request (1: single calls; more: batches).
    pub calls_per_request: usize,
}

/// Everything the phases of one run share.
#[derive(Debug)]
pub struct Context {
    pub programs: Programs,
    /// Node data folders go under it, one per phase (each emptied first).
    pub scratch: PathBuf,
}

impl Context {
    pub fn start(&self, peer: PeerKind, workload_dir: &Path) -> Result<Node, String> {
        let genesis = workload_dir.join(GENESIS_FILE);
        let dir = self.scratch.join("node");
        match peer {
            PeerKind::Tephra => peer::start_tephra(&self.programs, &dir, &genesis),
            PeerKind::AnvilAutomine => peer::start_anvil(&self.programs, &dir, &genesis, None),
            PeerKind::AnvilInterval => peer::start_anvil(&self.programs, &dir, &genesis, Some(1)),
        }
    }

    /// Runs one phase named `name` on a fresh `peer`.
    pub fn phase(
        &self,
        name: &str,
        peer: PeerKind,
        workload_dir: &Path,
        workload: &Arc<Workload>,
        load: Load,
    ) -> Result<Phase, String> {
        let txs = match load.pace {
            Pace::Open { tx_per_s } => {
                let txs = open_loop_txs(tx_per_s, load.seconds);
                if txs > workload.len() {
                    return Err(format!(
                        "{name}: {txs} transactions needed, the workload has {}: generate more (--txs)",
                        workload.len()
                    ));
                }
                txs
            }
            Pace::Closed { .. } => workload.len(),
        };
        eprintln!("{name}: {peer:?}, {} ...", load.driver.name());
        let node = self.start(peer, workload_dir)?;
        // anvil automine makes a block per transaction: watching every one
        // would load it; its inclusion is taken from receipts alone.
        let watcher =
            (peer != PeerKind::AnvilAutomine).then(|| Watcher::start(&node.rpc_url, node.signs_blocks)).transpose()?;
        let recorder = Arc::new(Recorder::new(txs, Instant::now() + START_DELAY));
        let deadline = match load.pace {
            Pace::Closed { .. } => Some(recorder.start + Duration::from_secs_f64(load.seconds)),
            Pace::Open { .. } => None,
        };
        match load.driver {
            Driver::Udp => {
                let address = node.udp_address.clone().ok_or_else(|| format!("{} has no UDP ingress", node.name))?;
                udp::run(&address, workload, load.txs_per_datagram, load.pace, deadline, &recorder)?;
            }
            Driver::Rpc | Driver::RpcSync => {
                let calls = jsonrpc::Calls {
                    connections: load.connections,
                    calls_per_request: load.calls_per_request,
                    sync: load.driver == Driver::RpcSync,
                    pace: load.pace,
                };
                jsonrpc::run(&node.rpc_url, workload, calls, deadline, &recorder)?;
            }
        }
        let included_at = wait_included(&node, workload, &recorder);
        let blocks = watcher
            .map(|watcher| watcher.finish(recorder.accepted().map(|tx| workload.hash(tx)).collect()))
            .unwrap_or_else(BlockTimes::default);
        let label = Label {
            name: name.to_string(),
            peer: node.name.clone(),
            workload: workload.manifest.kind.name().to_string(),
            driver: load.driver,
            offered_tx_per_s: match load.pace {
                Pace::Open { tx_per_s } => Some(tx_per_s),
                Pace::Closed { .. } => None,
            },
        };
        let mut phase = recorder.finish(label, &blocks, |i| workload.hash(i));
        phase.rss_mib = node.rss_bytes() >> 20;
        phase.node_threads_cpu_s = node.thread_cpu_s();
        phase.blocks_sealed = blocks.blocks_sealed();
        phase.node = node.metrics_url.as_deref().map(metrics::scrape).transpose()?;
        if let (Some(first), Some(included_at)) = (recorder.first_sent(), included_at) {
            let seconds = included_at.saturating_duration_since(first).as_secs_f64();
            phase.included_tx_per_s = (seconds > 0.0).then(|| phase.accepted as f64 / seconds);
        }
        eprintln!("  {}", phase.one_line());
        Ok(phase)
    }
}

/// When the last accepted transaction (the highest index, sent last) was
/// seen in a block, polled by receipt.
fn wait_included(node: &Node, workload: &Workload, recorder: &Recorder) -> Option<Instant> {
    let last = recorder.last_accepted()?;
    let hash = workload.hash(last);
    let agent = ureq::Agent::new_with_defaults();
    let deadline = Instant::now() + INCLUSION_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(receipt) = rpc(&agent, &node.rpc_url, "eth_getTransactionReceipt", json!([hash]))
            && !receipt.is_null()
        {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

/// The transactions an open loop at `tx_per_s` sends in `seconds`. A phase
/// cut to the workload's length has `seconds = len / tx_per_s`, whose product
/// with the rate can come back a hair above `len` (3000.0000000004): a
/// millionth of a transaction is none.
fn open_loop_txs(tx_per_s: f64, seconds: f64) -> usize {
    (tx_per_s * seconds - 1e-6).ceil().max(0.0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_cut_to_the_workload_needs_exactly_the_workload() {
        for len in [1, 3000, 99_999, 1_000_000] {
            for rate in (1..2000).map(|i| 1.0 + f64::from(i) * 13.37) {
                assert_eq!(open_loop_txs(rate, len as f64 / rate), len, "{len} at {rate} tx/s");
            }
        }
        assert_eq!(open_loop_txs(1000.0, 2.5), 2500);
        assert_eq!(open_loop_txs(1000.0, 0.0015), 2, "a part of a transaction is sent whole");
    }
}
