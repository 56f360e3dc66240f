//! `tephra-bench all` end to end at a small scale, against the workspace's
//! `tephra` and npm's anvil: every phase runs and is answered, and the
//! results, report and plots are written. (The figures themselves come from
//! full-size runs: docs/benchmarks.md.)

use std::{path::PathBuf, process::Command};

use serde_json::Value;

#[test]
fn all_runs_every_phase_and_writes_the_report() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_tephra-bench"));
    // `cargo test --workspace` builds tephra-cli's binary beside this one.
    let tephra = bench.with_file_name("tephra");
    assert!(tephra.exists(), "{} missing: build it (cargo build -p tephra-cli)", tephra.display());
    let anvil = tephra_testkit::npm_tool("anvil");
    let dir = tephra_testkit::fresh_dir("bench-harness");
    let (out, data) = (dir.join("out"), dir.join("data"));

    let status = Command::new(&bench)
        .arg("all")
        .args(["--out", out.to_str().unwrap(), "--data", data.to_str().unwrap()])
        .args(["--tephra", tephra.to_str().unwrap(), "--anvil", anvil.to_str().unwrap()])
        .args(["--txs", "30000", "--accounts", "1000", "--phase-seconds", "1", "--sustain-seconds", "1"])
        .args(["--sweep", "0.5,0.75,1.0", "--sync-rate", "50", "--connections", "4", "--ingress-rounds", "2"])
        .status()
        .unwrap();
    assert!(status.success(), "tephra-bench all failed");

    let results: Value = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let phases = results["phases"].as_array().unwrap();
    // Four maxima, three sweep steps, sustained, half load, two rounds of
    // goal 1 (a UDP and a JSON-RPC closed loop each), anvil's two JSON-RPC
    // maxima and tephra's batched one, two eth_sendRawTransactionSync phases;
    // and the knee's two probes when a step below the top one is the knee.
    let name_of = |phase: &Value| phase["name"].as_str().unwrap().to_string();
    let probes = phases.iter().filter(|phase| name_of(phase).starts_with("udp knee probe")).count();
    let knee_below_top = results["knee_tx_per_s"].as_f64().is_some_and(|knee| {
        let offered = |phase: &Value| phase["offered_tx_per_s"].as_f64();
        phases.iter().filter(|p| name_of(p).starts_with("udp sweep")).filter_map(offered).any(|rate| rate > knee)
    });
    assert_eq!(probes, if knee_below_top { 2 } else { 0 }, "knee probes");
    assert_eq!(phases.len(), 18 + probes, "{phases:#?}");
    let rounds = results["ingress"].as_array().unwrap();
    assert_eq!(rounds.len(), 2, "{rounds:?}");
    for (round, figures) in rounds.iter().enumerate() {
        for (side, name) in [("udp_tx_per_s", "ingress udp"), ("rpc_tx_per_s", "rpc max Tephra")] {
            let phase = phases.iter().find(|p| name_of(p) == format!("{name} {}", round + 1)).unwrap();
            assert_eq!(figures[side], phase["achieved_tx_per_s"], "round {round}: {figures} against {phase:#}");
        }
    }
    for phase in phases {
        let name = phase["name"].as_str().unwrap();
        assert!(phase["sent"].as_u64().unwrap() > 0, "{name} sent nothing");
        assert_eq!(phase["lost"], 0, "{name} lost transactions");
        assert_eq!(phase["accepted"], phase["sent"], "{name}: {phase:#}");
        assert!(phase["preconf_ms"]["p50"].as_f64().unwrap() > 0.0, "{name}");
        if phase["peer"] == "tephra" {
            // Every transaction's block was seen sealed and signed.
            assert_eq!(phase["signed_ms"]["count"], phase["accepted"], "{name}: {phase:#}");
        }
    }
    let floors = results["floors"].as_array().unwrap();
    assert_eq!(floors.len(), 4);
    for floor in floors {
        let (total, cores) = (floor["total_us"].as_f64().unwrap(), floor["cores"].as_f64().unwrap());
        assert!(floor["recover_us"].as_f64().unwrap() > 1.0, "{floor}");
        assert!((floor["ceiling_tx_per_s"].as_f64().unwrap() - cores * 1e6 / total).abs() < 1.0);
    }
    let commit = &results["disk_commit"];
    let (p50, p99) = (commit["p50"].as_f64().unwrap(), commit["p99"].as_f64().unwrap());
    assert!(p50 > 0.0 && p99 >= p50, "{commit}");
    // JSON-RPC against UDP and against anvil, three tails against the disk,
    // sustained against the floor, reads under load, the signed block.
    let goals = results["goals"].as_array().unwrap();
    assert_eq!(goals.len(), 8, "{}", results["goals"]);
    for side in ["unloaded", "loaded"] {
        let reads = results["reads"][side].as_array().unwrap();
        assert_eq!(reads.len(), 2, "eth_getBalance and eth_call: {}", results["reads"]);
        assert!(reads.iter().all(|r| r["reads"].as_u64().unwrap() > 0 && r["p99_ms"].as_f64().unwrap() > 0.0));
    }
    assert!(goals.iter().all(|g| !g["measured"].as_str().unwrap().starts_with("not measured")), "{goals:#?}");
    let batched = phases.iter().find(|p| p["name"] == "rpc max batched Tephra").unwrap();
    assert!(batched["node_threads_cpu_s"]["tephra-sequence"].as_f64().unwrap() > 0.0, "{batched:#}");
    let half_load = phases.iter().find(|p| p["name"] == "udp half load").unwrap();
    // The node's own block signatures, which the signed-block goal's bound uses.
    assert!(half_load["node"]["block_sign"]["count"].as_u64().unwrap() > 0, "{half_load:#}");
    assert!(results["signing_latency_ms"].as_f64().unwrap() > 0.0);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for section in ["## Goals", "## Floor", "## Phases", "rpc max AnvilAutomine", "udp half load"] {
        assert!(report.contains(section), "report.md lacks {section}");
    }
    for plot in ["latency_cdf.svg", "throughput.svg", "stage_costs.svg"] {
        let svg = std::fs::read_to_string(out.join(plot)).unwrap();
        assert!(svg.starts_with("<svg") && (svg.contains("<polyline") || svg.contains("<rect")), "{plot}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `tephra-bench model` on a small workload: both closed loops (1 core and
/// all), each predicted from the other, the latency check, and the
/// predictions asked for, each with its bottleneck.
#[test]
fn model_measures_both_sides_checks_each_against_the_other_and_predicts() {
    let Scratch { bench, tephra, dir, data } = scratch("bench-model", 3000, 300);
    let out = dir.join("out");
    let status = Command::new(&bench)
        .args(["model", "--seconds", "1", "--rounds", "1", "--cores", "8,64"])
        .args(["--workload-dir", data.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--tephra", tephra.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success(), "tephra-bench model failed");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("model.json")).unwrap()).unwrap();
    let measured = report["measured"].as_array().unwrap();
    let cores_here = std::thread::available_parallelism().map_or(1, usize::from);
    let sides = if cores_here > 1 { 2 } else { 1 };
    assert_eq!(measured.len(), 2, "{report:#}");
    assert_eq!(measured[0]["cores"], 1);
    assert_eq!(measured[1]["cores"].as_u64(), u64::try_from(cores_here).ok());
    for side in measured {
        assert!(side["closed_loop_tx_per_s"].as_f64().unwrap() > 0.0, "{side}");
        assert!(side["sequencer_us"].as_f64().unwrap() > 0.0, "{side}");
    }
    assert_eq!(report["checks"].as_array().unwrap().len(), if sides == 2 { 2 } else { 0 }, "{report:#}");
    assert_eq!(report["latency_checks"].as_array().unwrap().len(), if sides == 2 { 2 } else { 0 }, "{report:#}");
    let predictions = report["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 2);
    for prediction in predictions {
        assert!(prediction["closed_loop_tx_per_s"].as_f64().unwrap() > 0.0, "{prediction}");
        assert!(!prediction["bottleneck"].as_str().unwrap().is_empty());
        assert!(prediction["preconf_p99_ms"].as_f64().unwrap() >= prediction["preconf_p50_ms"].as_f64().unwrap());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `tephra-bench reads`: the reads phase alone, both methods idle and
/// under the write load, each with its p99 ratio.
#[test]
fn reads_measures_both_methods_idle_and_under_load() {
    let Scratch { bench, tephra, dir, data } = scratch("bench-reads", 2000, 200);
    let output = Command::new(&bench)
        .args(["reads", "--rate", "500", "--seconds", "1"])
        .args(["--workload-dir", data.to_str().unwrap(), "--out", dir.join("out").to_str().unwrap()])
        .args(["--tephra", tephra.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    for method in ["eth_getBalance", "eth_call"] {
        let line = stdout.lines().find(|line| line.starts_with(method)).unwrap_or_else(|| panic!("{method}: {stdout}"));
        assert!(line.contains("idle p50") && line.contains("under 500 tx/s") && line.ends_with('x'), "{line}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The binaries under test and a scratch directory holding a transfers
/// workload.
struct Scratch {
    bench: PathBuf,
    tephra: PathBuf,
    dir: PathBuf,
    data: PathBuf,
}

fn scratch(name: &str, txs: usize, accounts: usize) -> Scratch {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_tephra-bench"));
    let tephra = bench.with_file_name("tephra");
    assert!(tephra.exists(), "{} missing: build it (cargo build -p tephra-cli)", tephra.display());
    let dir = tephra_testkit::fresh_dir(name);
    let data = dir.join("transfers");
    let generated = Command::new(&bench)
        .args(["generate", "--workload", "transfers", "--txs", &txs.to_string(), "--accounts", &accounts.to_string()])
        .arg("--out")
        .arg(&data)
        .status()
        .unwrap();
    assert!(generated.success());
    Scratch { bench, tephra, dir, data }
}
