//! A model of tephra on N cores, from what one run measures on this machine
//! (`tephra-bench model`): the in-process stage costs (the floor), this
//! disk's group commit, and the UDP closed loop on the cores this process may
//! use. It predicts the closed-loop throughput and the preconfirmation
//! latency at half of it for any core count, naming the bottleneck; it is
//! checked where it can be, by measuring the closed loop on 1 core and on
//! all of them in the same run and predicting each from the other.
//!
//! The model, and what it assumes:
//! - Every transaction costs `cpu_per_tx_us` of CPU in all (ingress,
//!   recovery, the sequencer's stages, the signer, the kernel's network
//!   path, and on this machine the load client too): measured as the cores
//!   used divided by the closed-loop rate, which saturates them.
//! - Of it, `serial_us` runs on the sequencer thread alone: its own CPU per
//!   transaction in the closed loop (admission, the pool, execution, the
//!   block roots, preconfirmation; read from /proc; the state trie is the
//!   hasher thread's, which runs on the verify cores), plus the
//!   mini-block's group commit shared by a full mini-block's transactions (the
//!   sequencer waits out each fdatasync). Everything else spreads over every
//!   core (the verify workers run on all of them, the sequencer's core
//!   included).
//! - N cores give `min(N / cpu_per_tx, 1 / serial)`: CPU-bound while the
//!   parallel part fits, sequencer-bound beyond; no other shared resource
//!   (memory bandwidth, the NIC, locks) limits it. On a real server the
//!   load comes from elsewhere, so the client's share (measured with it
//!   here) makes the prediction conservative.
//! - Preconfirmation latency at half the rate: the mini-block's wait
//!   (`pool.mini_block_wait_ms`, counted on the pool's millisecond clock, so
//!   half a millisecond more on average and a whole one at most; with 0,
//!   the rest of the mini-block in progress, half of one on average and a
//!   whole one at most), its execution, the commit (p50, and p99 for the
//!   tail); a seal holds mini-blocks for its
//!   length, which grows with the block (the seal's cost per transaction
//!   measured here times a block's transactions at that rate), and is in the
//!   p99 once it covers more than 1% of the block time.

use serde::{Deserialize, Serialize};

/// The pool's clock ticks in milliseconds: a wait of `mini_block_wait_ms`
/// ends up to one tick late.
const POOL_CLOCK_MS: f64 = 1.0;

/// What one run measured, the model's inputs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Inputs {
    /// Cores the closed loop ran on.
    pub cores: usize,
    pub closed_loop_tx_per_s: f64,
    /// The sequencer thread's CPU per transaction.
    pub sequencer_us: f64,
    pub commit_p50_ms: f64,
    pub commit_p99_ms: f64,
    /// A mini-block's transactions at most (`pool.mini_block_txs_max`).
    pub mini_block_txs_max: usize,
    pub mini_block_wait_ms: f64,
    pub block_time_ms: f64,
    /// The node's mean seal in the closed loop, and the block's transactions
    /// then: the seal's cost per transaction.
    pub seal_us_per_tx: f64,
}

/// The model's answer for one core count.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Prediction {
    pub cores: usize,
    pub closed_loop_tx_per_s: f64,
    pub bottleneck: String,
    /// Preconfirmation latency at half the closed-loop rate.
    pub preconf_p50_ms: f64,
    pub preconf_p99_ms: f64,
}

impl Inputs {
    /// All of a transaction's CPU, every stage and the client.
    pub fn cpu_per_tx_us(&self) -> f64 {
        self.cores as f64 * 1e6 / self.closed_loop_tx_per_s
    }

    /// What only the sequencer thread can do, per transaction.
    pub fn serial_us(&self) -> f64 {
        self.sequencer_us + self.commit_p50_ms * 1e3 / self.mini_block_txs_max as f64
    }

    pub fn predict(&self, cores: usize) -> Prediction {
        let cpu_bound = cores as f64 * 1e6 / self.cpu_per_tx_us();
        let sequencer_bound = 1e6 / self.serial_us();
        let (rate, bottleneck) = if cpu_bound <= sequencer_bound {
            (cpu_bound, "CPU: recovery and ingress on every core".to_string())
        } else {
            (sequencer_bound, "the sequencer thread: its CPU per transaction and its share of each commit".to_string())
        };
        let half = rate / 2.0;
        let (batch, wait_p50_ms, wait_p99_ms) = self.mini_block_wait(half);
        let execute_ms = batch * self.sequencer_us / 1e3;
        let seal_ms = self.seal_us_per_tx * half * self.block_time_ms / 1e3 / 1e3;
        let seal_in_tail = seal_ms / self.block_time_ms > 0.01;
        let preconf_p50_ms = wait_p50_ms + execute_ms + self.commit_p50_ms;
        let preconf_p99_ms = wait_p99_ms + execute_ms + self.commit_p99_ms + if seal_in_tail { seal_ms } else { 0.0 };
        Prediction { cores, closed_loop_tx_per_s: rate, bottleneck, preconf_p50_ms, preconf_p99_ms }
    }

    /// At `tx_per_s`: a mini-block's transactions, and how long one waits
    /// before its mini-block is cut (p50, p99).
    fn mini_block_wait(&self, tx_per_s: f64) -> (f64, f64, f64) {
        let full = self.mini_block_txs_max as f64;
        if self.mini_block_wait_ms > 0.0 {
            // What arrived during the wait, which ends on the pool's clock.
            let batch = (tx_per_s * self.mini_block_wait_ms / 1e3).clamp(1.0, full);
            return (batch, self.mini_block_wait_ms + POOL_CLOCK_MS / 2.0, self.mini_block_wait_ms + POOL_CLOCK_MS);
        }
        // Cut at once: mini-blocks run back to back, each taking what arrived
        // while the one before executed and committed, b = r (b s + c); a
        // transaction waits out the rest of the one in progress.
        let busy = tx_per_s * self.sequencer_us / 1e6;
        let batch = if busy < 1.0 { tx_per_s * self.commit_p50_ms / 1e3 / (1.0 - busy) } else { full };
        let batch = batch.clamp(1.0, full);
        let execute_ms = batch * self.sequencer_us / 1e3;
        (batch, (execute_ms + self.commit_p50_ms) / 2.0, execute_ms + self.commit_p99_ms)
    }
}

/// A latency's p50 and p99, in ms.
pub type P50P99 = (f64, f64);

/// The model's report: what was measured, each measured core count
/// predicted from the other's inputs, and the predictions asked for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub command: String,
    pub measured: Vec<Inputs>,
    /// (measured on, predicted from, predicted tx/s, measured tx/s, error %).
    pub checks: Vec<(usize, usize, f64, f64, f64)>,
    /// Preconfirmation latency at half the closed loop, measured on each
    /// side: (cores, predicted from the other side p50 / p99, measured p50 / p99).
    pub latency_checks: Vec<(usize, P50P99, P50P99)>,
    pub predictions: Vec<Prediction>,
}

impl Report {
    /// `measured` holds one run per core count; predictions come from the
    /// run on the most cores.
    pub fn new(measured: &[Inputs], cores: &[usize], command: &str) -> Self {
        let mut checks = Vec::new();
        for target in measured {
            for source in measured.iter().filter(|s| s.cores != target.cores) {
                let predicted = source.predict(target.cores).closed_loop_tx_per_s;
                let error = 100.0 * (predicted - target.closed_loop_tx_per_s) / target.closed_loop_tx_per_s;
                checks.push((target.cores, source.cores, predicted, target.closed_loop_tx_per_s, error));
            }
        }
        let base = measured.iter().max_by_key(|m| m.cores);
        let predictions = base.map(|b| cores.iter().map(|&n| b.predict(n)).collect()).unwrap_or_default();
        Self {
            command: command.to_string(),
            measured: measured.to_vec(),
            checks,
            latency_checks: Vec::new(),
            predictions,
        }
    }

    /// Adds the latency measured at half the closed loop on `cores` (p50,
    /// p99 in ms) beside what the other side's inputs predict.
    pub fn check_latency(&mut self, cores: usize, measured: (f64, f64)) {
        if let Some(source) = self.measured.iter().find(|m| m.cores != cores) {
            let predicted = source.predict(cores);
            self.latency_checks.push((cores, (predicted.preconf_p50_ms, predicted.preconf_p99_ms), measured));
        }
    }

    pub fn markdown(&self) -> String {
        use std::fmt::Write;
        let mut out = format!("`{}`\n\n", self.command);
        out.push_str("| measured on | closed loop tx/s | CPU per tx us | of it serial (sequencer) us | seal us per tx |\n|---|---|---|---|---|\n");
        for m in &self.measured {
            let _ = writeln!(
                out,
                "| {} cores | {:.0} | {:.1} | {:.2} | {:.3} |",
                m.cores,
                m.closed_loop_tx_per_s,
                m.cpu_per_tx_us(),
                m.serial_us(),
                m.seal_us_per_tx
            );
        }
        out.push_str("\n| cores | predicted from | predicted tx/s | measured tx/s | error |\n|---|---|---|---|---|\n");
        for (cores, from, predicted, measured, error) in &self.checks {
            let _ = writeln!(out, "| {cores} | {from} cores | {predicted:.0} | {measured:.0} | {error:+.1}% |");
        }
        if !self.latency_checks.is_empty() {
            out.push_str(
                "\n| cores | preconf p50 / p99 at half, predicted from the other side | measured |\n|---|---|---|\n",
            );
            for (cores, (p50, p99), (m50, m99)) in &self.latency_checks {
                let _ = writeln!(out, "| {cores} | {p50:.2} / {p99:.2} ms | {m50:.2} / {m99:.2} ms |");
            }
        }
        out.push_str("\n| cores | closed loop tx/s | preconf p50 / p99 ms at half | bottleneck |\n|---|---|---|---|\n");
        for p in &self.predictions {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.2} / {:.2} | {} |",
                p.cores, p.closed_loop_tx_per_s, p.preconf_p50_ms, p.preconf_p99_ms, p.bottleneck
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            cores: 2,
            closed_loop_tx_per_s: 20_000.0,
            sequencer_us: 10.0,
            commit_p50_ms: 0.256,
            commit_p99_ms: 1.0,
            mini_block_txs_max: 256,
            mini_block_wait_ms: 1.0,
            block_time_ms: 1000.0,
            seal_us_per_tx: 0.1,
        }
    }

    #[test]
    fn throughput_is_the_lesser_of_the_cores_and_the_sequencer() {
        let model = inputs();
        assert!((model.cpu_per_tx_us() - 100.0).abs() < 1e-9);
        assert!((model.serial_us() - 11.0).abs() < 1e-9);
        let one = model.predict(1);
        assert!((one.closed_loop_tx_per_s - 10_000.0).abs() < 1e-6);
        assert!(one.bottleneck.starts_with("CPU"));
        let many = model.predict(64);
        assert!((many.closed_loop_tx_per_s - 1e6 / 11.0).abs() < 1e-6, "one sequencer thread bounds it");
        assert!(many.bottleneck.starts_with("the sequencer"));
    }

    #[test]
    fn the_seal_enters_the_tail_once_it_covers_a_percent_of_the_block() {
        let mut model = inputs();
        // 1 core: 5,000 tx/s at half load, a 0.5 ms seal: not in the p99.
        let one = model.predict(1);
        assert!((one.preconf_p99_ms - (1.0 + 1.0 + 5.0 * 10.0 / 1e3 + 1.0)).abs() < 1e-9);
        assert!((one.preconf_p50_ms - (1.0 + 0.5 + 5.0 * 10.0 / 1e3 + 0.256)).abs() < 1e-9);
        // 64 cores: ~45,000 tx/s at half load; a seal of 0.3 us a
        // transaction is 13.6 ms, 1.4% of the block: in it.
        model.seal_us_per_tx = 0.3;
        let many = model.predict(64);
        assert!(many.preconf_p99_ms > many.preconf_p50_ms + 13.0, "{many:?}");
    }

    #[test]
    fn cut_at_once_a_transaction_waits_out_the_mini_block_in_progress() {
        let model = Inputs { mini_block_wait_ms: 0.0, ..inputs() };
        // 1 core: 5,000 tx/s at half load. A mini-block takes what arrived
        // during the last one's execution and commit: b = 5 (0.01 b + 0.256).
        let batch = 5.0 * 0.256 / (1.0 - 5.0 * 0.01);
        let execute_ms = batch * 10.0 / 1e3;
        let one = model.predict(1);
        assert!((one.preconf_p50_ms - ((execute_ms + 0.256) / 2.0 + execute_ms + 0.256)).abs() < 1e-9, "{one:?}");
        assert!((one.preconf_p99_ms - 2.0 * (execute_ms + 1.0)).abs() < 1e-9, "{one:?}");
        // A sequencer that cannot keep up cuts full mini-blocks.
        let saturated = Inputs { sequencer_us: 1_000.0, ..model };
        let (batch, _, _) = saturated.mini_block_wait(5_000.0);
        assert_eq!(batch, 256.0);
    }
}
