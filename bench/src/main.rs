//! tephra-bench: how fast tephra is, where the time goes, how far it is from
//! the machine's floor, and how it compares with anvil (bench/README.md).

#![allow(clippy::print_stdout, reason = "a benchmark reports its figures on stdout")]
#![allow(clippy::cast_possible_truncation, reason = "rates and counts far below 2^52")]

mod batcher;
mod floor;
mod jsonrpc;
mod measure;
mod metrics;
mod model;
mod peer;
mod reads;
mod report;
mod run;
mod udp;
mod watch;
mod workload;

/// The allocator of the `tephra` binary: stage costs measured in-process
/// use what the node uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use clap::{Args, Parser, Subcommand};

use crate::{
    measure::{Driver, Phase},
    peer::Programs,
    report::{Goal, IngressRound, Machine, Results},
    run::{Context, Load, PeerKind},
    udp::Pace,
    workload::{GENESIS_FILE, Kind, Workload},
};

/// tephra's embedded default config: the block time the signed-block goal
/// is judged against, unless --tephra-config changes it.
const TEPHRA_DEFAULT_CONFIG: &str = include_str!("../../config/default.toml");
/// The knee's latency bound, as a multiple of the lightest sweep step's
/// median preconfirmation latency.
const KNEE_LATENCY_FACTOR: f64 = 3.0;
/// The sustained goal's preconfirmation p99 bound: the knee is the highest
/// sweep step within it, and the sustained phase must hold it for its whole
/// length.
const SUSTAINED_P99_MAX_MS: f64 = 10.0;
/// Phases probing between the knee and the sweep step above it, each
/// halving the gap: the steps are a quarter of the maximum apart, and the
/// sustained goal asks for the highest rate that holds, not the step below.
const KNEE_PROBES: usize = 2;
/// The sequencer thread's name as /proc shows it (15 characters at most).
const SEQUENCER_THREAD: &str = "tephra-sequence";
/// The UDP closed loop's unanswered datagrams at most (of
/// `txs_per_datagram` each): the JSON-RPC loops keep as many transactions
/// in flight.
const UDP_WINDOW_DATAGRAMS: usize = 64;
/// Calls per HTTP request of the batched JSON-RPC phase: the UDP driver's
/// transactions per datagram, as ethers v6 batches concurrent calls.
const RPC_BATCH_CALLS: usize = 8;
/// Connections of the JSON-RPC closed loops at most: the node's default
/// `rpc.connections_per_client_max` (256, the harness being one client
/// address) less the block watcher's. Each connection has one request in
/// flight, as a connection pool's (viem's, undici's) does: hyper serves an
/// HTTP/1.1 connection's requests one after another, so requests pipelined
/// behind the first add no concurrency (32 connections with 16 pipelined
/// each reached what 32 with one each did; 255 with one each, 20% more).
const RPC_CONNECTIONS_MAX: usize = 255;

#[derive(Parser, Debug)]
#[command(name = "tephra-bench", version, about = "Workloads, load, stage floors and reports for tephra")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Pre-sign a workload into a folder (genesis, transactions, manifest).
    Generate(GenerateArgs),
    /// In-process cost per transaction of each stage, and the ceiling.
    Floor(FloorArgs),
    /// One or more phases of load against a fresh node.
    Run(RunArgs),
    /// Everything, in one run: workloads, floors, UDP maximum, sweep and
    /// knee, 60 s sustained, latency at half load, JSON-RPC against anvil;
    /// then the results, report and plots.
    All(AllArgs),
    /// An OP Stack devnet (anvil L1, 2 s blocks) under load: how long a
    /// block waits until its batch is on L1, and until it is safe.
    Batcher(BatcherArgs),
    /// JSON-RPC reads (eth_getBalance, eth_call) on an idle node, then under
    /// UDP transfers at `--rate`: the `all` phase alone, for A/B runs.
    Reads(ReadsArgs),
    /// Throughput and preconfirmation latency predicted for N cores from
    /// this machine's stage costs, disk and closed loop; checked by
    /// measuring the closed loop on 1 core and on all, each predicted from
    /// the other.
    Model(ModelArgs),
    /// Redraw the report and plots from a results folder.
    Report {
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
    },
}

#[derive(Args, Debug)]
struct GenerateArgs {
    #[arg(long, value_enum)]
    workload: Kind,
    #[arg(long, default_value_t = 100_000)]
    txs: usize,
    #[arg(long, default_value_t = 20_000)]
    accounts: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct FloorArgs {
    #[arg(long)]
    workload_dir: PathBuf,
    /// Cores the ceiling is computed for (default: this machine's).
    #[arg(long)]
    cores: Option<usize>,
    /// Transactions per block: a block's state root and signature are
    /// shared by this many.
    #[arg(long, default_value_t = 2_500)]
    block_txs: usize,
    #[arg(long, default_value_t = 8)]
    blocks: usize,
}

#[derive(Args, Debug)]
struct ModelArgs {
    /// The transfers workload (tephra-bench generate, or `all`'s).
    #[arg(long, default_value = "bench-data/transfers")]
    workload_dir: PathBuf,
    /// Core counts to predict.
    #[arg(long, value_delimiter = ',', default_value = "8,16,32,64")]
    cores: Vec<usize>,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Closed loops on 1 core and on all, alternating, this many times each
    /// (the model takes each side's median: this VM drifts within minutes).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, default_value = "bench-results/model")]
    out: PathBuf,
    #[command(flatten)]
    peers: Peers,
}

#[derive(Args, Debug)]
struct BatcherArgs {
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// Transfers a second, over JSON-RPC.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    #[arg(long, default_value = "bench-results/batcher")]
    out: PathBuf,
    #[command(flatten)]
    peers: Peers,
}

#[derive(Args, Debug, Clone)]
struct Peers {
    /// The tephra binary (default: the one next to tephra-bench).
    #[arg(long)]
    tephra: Option<PathBuf>,
    /// The anvil binary (default: node_modules/.bin/anvil, else on PATH).
    #[arg(long)]
    anvil: Option<PathBuf>,
    /// TOML merged into every tephra's config (say `[exec] shards = 2`).
    #[arg(long)]
    tephra_config: Option<PathBuf>,
}

impl Peers {
    fn programs(&self) -> Result<Programs, String> {
        let tephra = match &self.tephra {
            Some(path) => path.clone(),
            None => std::env::current_exe().map_err(|e| e.to_string())?.with_file_name("tephra"),
        };
        let anvil = self.anvil.clone().unwrap_or_else(|| {
            let local = PathBuf::from("node_modules/.bin/anvil");
            if local.exists() { local } else { PathBuf::from("anvil") }
        });
        let tephra_extra = match &self.tephra_config {
            Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
            None => String::new(),
        };
        Ok(Programs { tephra, anvil, tephra_extra })
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    #[arg(long)]
    workload_dir: PathBuf,
    #[arg(long, value_enum, default_value = "tephra")]
    peer: PeerKind,
    #[arg(long, value_enum, default_value = "udp")]
    driver: Driver,
    /// Open loop at these rates (tx/s, comma separated: a sweep); without
    /// it, closed loop.
    #[arg(long, value_delimiter = ',')]
    rate: Vec<f64>,
    /// Closed loop: unanswered datagrams (UDP) or requests (a call or a
    /// batch) per connection at most.
    #[arg(long, default_value_t = 64)]
    window: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// JSON-RPC: calls per HTTP request (more than 1: batches).
    #[arg(long, default_value_t = 1)]
    calls_per_request: usize,
    #[arg(long, default_value_t = 8)]
    txs_per_datagram: usize,
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    #[command(flatten)]
    peers: Peers,
}

#[derive(Args, Debug)]
struct ReadsArgs {
    #[arg(long)]
    workload_dir: PathBuf,
    /// The write load (UDP transfers, tx/s) of the loaded half.
    #[arg(long)]
    rate: f64,
    /// Seconds of reads, idle and then loaded.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    #[command(flatten)]
    peers: Peers,
}

#[derive(Args, Debug)]
struct AllArgs {
    /// Results, report and plots.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Workload folders (generated when missing or made with other settings).
    #[arg(long, default_value = "bench-data")]
    data: PathBuf,
    /// Transactions of the transfer workload; the others get a fifth.
    #[arg(long, default_value_t = 1_000_000)]
    txs: usize,
    #[arg(long, default_value_t = 50_000)]
    accounts: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds per sweep step and per maximum; the sustained phase runs
    /// `--sustain-seconds`.
    #[arg(long, default_value_t = 10.0)]
    phase_seconds: f64,
    #[arg(long, default_value_t = 60.0)]
    sustain_seconds: f64,
    /// Sweep steps, as fractions of the closed-loop maximum.
    #[arg(long, value_delimiter = ',', default_value = "0.25,0.5,0.75,0.9,1.0,1.1")]
    sweep: Vec<f64>,
    /// Connections of the open-loop JSON-RPC phase (the closed loops open
    /// one per request in flight, up to 255).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// eth_sendRawTransactionSync latency at this rate (tx/s) on each peer.
    #[arg(long, default_value_t = 200.0)]
    sync_rate: f64,
    #[arg(long, default_value_t = 8)]
    txs_per_datagram: usize,
    /// Goal 1's closed loops, UDP then JSON-RPC, alternating this many times
    /// (the goal takes the median round's ratio: this VM drifts within
    /// minutes).
    #[arg(long, default_value_t = 3)]
    ingress_rounds: usize,
    #[command(flatten)]
    peers: Peers,
}

fn main() {
    let cli = Cli::parse();
    // As the node runs by default ([host] transparent_huge_pages): the stage
    // floors measure what the node does, and the load generator's own 2 MiB
    // faults do not count as the node's latency. The peers it starts inherit
    // it; tephra sets its own from its config.
    if let Err(error) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("tephra-bench: transparent huge pages stay on: {error}");
    }
    let outcome = match cli.command {
        Command::Generate(a) => workload::generate(a.workload, a.seed, a.txs, a.accounts, &a.out).map(|m| {
            println!("{}: {} transactions from {} accounts into {}", m.kind.name(), m.txs, m.accounts, a.out.display());
        }),
        Command::Floor(a) => floor_command(&a),
        Command::Run(a) => run_command(&a),
        Command::All(a) => all_command(&a),
        Command::Batcher(a) => a.peers.programs().and_then(|p| batcher::run(&p.tephra, &a.out, a.seconds, a.rate)),
        Command::Reads(a) => reads_command(&a),
        Command::Model(a) => model_command(&a),
        Command::Report { out } => redraw(&out),
    };
    if let Err(error) = outcome {
        eprintln!("tephra-bench: {error}");
        std::process::exit(1);
    }
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

fn cores_here() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn load_workload(dir: &Path) -> Result<(Arc<Workload>, String), String> {
    let workload = Workload::load(dir)?;
    let genesis = std::fs::read_to_string(dir.join(GENESIS_FILE)).map_err(|e| format!("{GENESIS_FILE}: {e}"))?;
    Ok((Arc::new(workload), genesis))
}

fn floor_command(a: &FloorArgs) -> Result<(), String> {
    let (workload, genesis) = load_workload(&a.workload_dir)?;
    let floor = floor::measure(&workload, &genesis, a.blocks, a.block_txs, a.cores.unwrap_or_else(cores_here))?;
    println!("{}", serde_json::to_string_pretty(&floor).expect("serialisable"));
    let commit = floor::commit_latency(&a.workload_dir)?;
    println!("{}", serde_json::to_string_pretty(&commit).expect("serialisable"));
    Ok(())
}

fn reads_command(a: &ReadsArgs) -> Result<(), String> {
    let (workload, _) = load_workload(&a.workload_dir)?;
    let context = Context { programs: a.peers.programs()?, scratch: a.out.join("scratch") };
    let reads = reads::measure(&context, &a.workload_dir, &workload, a.rate, a.seconds)?;
    for (idle, loaded) in reads.unloaded.iter().zip(&reads.loaded) {
        println!(
            "{}: idle p50 {:.3} p99 {:.3} ms ({} reads); under {:.0} tx/s p50 {:.3} p99 {:.3} ms ({} reads): p99 {:.1}x",
            idle.method,
            idle.p50_ms,
            idle.p99_ms,
            idle.reads,
            a.rate,
            loaded.p50_ms,
            loaded.p99_ms,
            loaded.reads,
            loaded.p99_ms / idle.p99_ms
        );
    }
    Ok(())
}

fn run_command(a: &RunArgs) -> Result<(), String> {
    let (workload, _) = load_workload(&a.workload_dir)?;
    let context = Context { programs: a.peers.programs()?, scratch: a.out.join("scratch") };
    let mut results = Results { command: command_line(), machine: Machine::this(), ..Results::default() };
    let paces: Vec<Pace> = if a.rate.is_empty() {
        vec![Pace::Closed { window: a.window }]
    } else {
        a.rate.iter().map(|&tx_per_s| Pace::Open { tx_per_s }).collect()
    };
    for pace in paces {
        let name = match pace {
            Pace::Open { tx_per_s } => format!("{} {tx_per_s:.0}/s", a.driver.name()),
            Pace::Closed { .. } => format!("{} max", a.driver.name()),
        };
        let load = Load {
            driver: a.driver,
            pace,
            seconds: a.seconds,
            txs_per_datagram: a.txs_per_datagram,
            connections: a.connections,
            calls_per_request: a.calls_per_request,
        };
        let phase = context.phase(&name, a.peer, &a.workload_dir, &workload, load)?;
        if a.rate.len() > 1 {
            results.sweep.push(phase.label.name.clone());
        }
        results.phases.push(phase);
    }
    if results.sweep.len() > 1 {
        results.knee_tx_per_s = knee(&results);
    }
    results.write(&a.out)?;
    println!("{}", results.markdown());
    Ok(())
}

fn redraw(out: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(out.join(report::RESULTS_FILE)).map_err(|e| e.to_string())?;
    let results: Results = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    results.write(out)
}

/// A step accepts what it is offered when it accepts at least 97% of it and
/// loses or refuses at most 1%.
fn keeps_up(phase: &Phase) -> bool {
    let offered = phase.label.offered_tx_per_s.unwrap_or(f64::INFINITY);
    let failed = phase.lost + phase.rejected.values().sum::<u64>();
    phase.achieved_tx_per_s >= 0.97 * offered && failed * 100 <= phase.sent
}

/// The knee: the highest offered rate of the sweep that keeps up with its
/// median preconfirmation latency within `KNEE_LATENCY_FACTOR` of the
/// lightest step's (past it, queues build and latency climbs even while
/// throughput still follows) and its p99 within `SUSTAINED_P99_MAX_MS`.
fn knee(results: &Results) -> Option<f64> {
    let steps: Vec<&Phase> = results.sweep.iter().filter_map(|name| results.phase(name)).collect();
    let p50 = |p: &Phase| p.preconf_ms.as_ref().map_or(f64::INFINITY, |l| l.p50);
    let base = steps.iter().map(|p| p50(p)).fold(f64::INFINITY, f64::min);
    let p99 = |p: &Phase| p.preconf_ms.as_ref().map_or(f64::INFINITY, |l| l.p99);
    steps
        .iter()
        .filter(|p| keeps_up(p) && p50(p) <= KNEE_LATENCY_FACTOR * base && p99(p) <= SUSTAINED_P99_MAX_MS)
        .filter_map(|p| p.label.offered_tx_per_s)
        .reduce(f64::max)
}

/// Probes `KNEE_PROBES` rates between the knee and the sweep step above it,
/// halving the gap each time; each probe joins the sweep, and the knee is
/// taken again over all of them. Nothing to refine without a knee or a
/// step above it.
fn refine_knee(
    results: &mut Results,
    mut probe: impl FnMut(f64, usize) -> Result<Phase, String>,
) -> Result<(), String> {
    let Some(mut holds) = results.knee_tx_per_s else { return Ok(()) };
    let offered = |name: &String| results.phase(name)?.label.offered_tx_per_s;
    let Some(mut fails) = results.sweep.iter().filter_map(offered).filter(|&rate| rate > holds).reduce(f64::min) else {
        return Ok(());
    };
    for n in 1..=KNEE_PROBES {
        let rate = (holds + fails) / 2.0;
        let phase = probe(rate, n)?;
        results.sweep.push(phase.label.name.clone());
        results.phases.push(phase);
        results.knee_tx_per_s = knee(results);
        if results.knee_tx_per_s >= Some(rate) {
            holds = rate;
        } else {
            fails = rate;
        }
    }
    Ok(())
}

/// A workload folder for `kind`, generated unless it already holds exactly
/// these settings.
fn ensure_workload(data: &Path, kind: Kind, seed: u64, txs: usize, accounts: usize) -> Result<PathBuf, String> {
    let dir = data.join(kind.name());
    if let Ok(existing) = Workload::load(&dir) {
        let m = &existing.manifest;
        if (m.seed, m.txs, m.accounts) == (seed, txs, accounts) {
            eprintln!("{}: reusing {}", kind.name(), dir.display());
            return Ok(dir);
        }
    }
    eprintln!("{}: generating {txs} transactions from {accounts} accounts", kind.name());
    workload::generate(kind, seed, txs, accounts, &dir)?;
    Ok(dir)
}

/// A number of tephra's config, from the extra config or the defaults.
fn config_number(tephra_extra: &str, table: &str, key: &str) -> Result<f64, String> {
    let read = |text: &str| -> Option<f64> {
        let parsed: toml::Table = text.parse().ok()?;
        parsed.get(table)?.get(key)?.as_integer().map(|n| n as f64)
    };
    read(tephra_extra).or_else(|| read(TEPHRA_DEFAULT_CONFIG)).ok_or_else(|| format!("no {table}.{key}"))
}

/// Measures the model's inputs on `cores` (this thread's affinity, which the
/// node and the client inherit, set to cores 0..cores for the phase) and on
/// every core, predicts each from the other, then the core counts asked for.
fn model_command(a: &ModelArgs) -> Result<(), String> {
    let (workload, genesis) = load_workload(&a.workload_dir)?;
    let programs = a.peers.programs()?;
    let extra = programs.tephra_extra.clone();
    let context = Context { programs, scratch: a.out.join("scratch") };
    let allowed = allowed_cores()?;
    let all_cores = allowed.len();
    eprintln!("floor and group commits ...");
    let floor = floor::measure(&workload, &genesis, 8, 2_500, all_cores)?;
    let commit = floor::commit_latency(&context.scratch)?;
    let block_time_ms = block_time_ms(&extra)?;
    let on = ModelRun { context: &context, allowed: &allowed, workload_dir: &a.workload_dir, workload: &workload };
    let mut runs: Vec<Vec<model::Inputs>> = vec![Vec::new(), Vec::new()];
    for round in 0..a.rounds.max(1) {
        for (side, cores) in [1, all_cores].into_iter().enumerate() {
            let name = format!("udp max on {cores} cores, round {}", round + 1);
            let closed = Pace::Closed { window: UDP_WINDOW_DATAGRAMS };
            let phase = udp_phase_on(&on, cores, &name, closed, a.seconds)?;
            runs[side].push(model_inputs(&phase, cores, &floor, &commit, &extra, block_time_ms)?);
        }
    }
    // Each side: the round with the median closed loop.
    let measured: Vec<model::Inputs> = runs
        .into_iter()
        .map(|mut side| {
            side.sort_by(|x, y| x.closed_loop_tx_per_s.total_cmp(&y.closed_loop_tx_per_s));
            side.swap_remove(side.len() / 2)
        })
        .collect();
    let mut report = model::Report::new(&measured, &a.cores, &command_line());
    // The latency side of the check: each side's own half load, measured.
    for inputs in &measured {
        let half = inputs.closed_loop_tx_per_s / 2.0;
        let name = format!("udp half load on {} cores", inputs.cores);
        let seconds = a.seconds.min(workload.len() as f64 / half);
        let phase = udp_phase_on(&on, inputs.cores, &name, Pace::Open { tx_per_s: half }, seconds)?;
        if let Some(latency) = phase.preconf_ms {
            report.check_latency(inputs.cores, (latency.p50, latency.p99));
        }
    }
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let json = serde_json::to_string_pretty(&report).expect("serialisable");
    std::fs::write(a.out.join("model.json"), json).map_err(|e| format!("model.json: {e}"))?;
    let _ = std::fs::remove_dir_all(&context.scratch);
    println!("{}", report.markdown());
    Ok(())
}

/// What every phase of the model runs on.
struct ModelRun<'a> {
    context: &'a Context,
    /// The CPUs this process was given.
    allowed: &'a [usize],
    workload_dir: &'a Path,
    workload: &'a Arc<Workload>,
}

/// A UDP phase with this thread (and so the node and the client) on the
/// first `cores` of the CPUs given; all of them again afterwards.
fn udp_phase_on(on: &ModelRun<'_>, cores: usize, name: &str, pace: Pace, seconds: f64) -> Result<Phase, String> {
    set_cores(on.allowed, cores)?;
    let load = Load { driver: Driver::Udp, pace, seconds, txs_per_datagram: 8, connections: 1, calls_per_request: 1 };
    let phase = on.context.phase(name, PeerKind::Tephra, on.workload_dir, on.workload, load);
    set_cores(on.allowed, on.allowed.len())?;
    phase
}

/// The model's inputs from one closed-loop phase on `cores`.
fn model_inputs(
    phase: &Phase,
    cores: usize,
    floor: &floor::Floor,
    commit: &measure::LatencySummary,
    extra: &str,
    block_time_ms: f64,
) -> Result<model::Inputs, String> {
    let seal_mean_us = phase.node.as_ref().map_or(0.0, |n| n.seal.mean_us);
    let block_txs = phase.achieved_tx_per_s * block_time_ms / 1e3;
    // The sequencer thread's own CPU per transaction (admission, pool,
    // execution, roots, preconfirmation); the floor's in-process stages when
    // the node's threads could not be read.
    let sequencer_cpu_s = phase.node_threads_cpu_s.get(SEQUENCER_THREAD).copied().unwrap_or(0.0);
    let sequencer_us = if sequencer_cpu_s > 0.0 && phase.accepted > 0 {
        sequencer_cpu_s * 1e6 / phase.accepted as f64
    } else {
        floor.execute_us + floor.state_root_us + floor.block_roots_us
    };
    Ok(model::Inputs {
        cores,
        closed_loop_tx_per_s: phase.achieved_tx_per_s,
        sequencer_us,
        commit_p50_ms: commit.p50,
        commit_p99_ms: commit.p99,
        mini_block_txs_max: config_number(extra, "pool", "mini_block_txs_max")? as usize,
        mini_block_wait_ms: config_number(extra, "pool", "mini_block_wait_ms")?,
        block_time_ms,
        seal_us_per_tx: if block_txs > 0.0 { seal_mean_us / block_txs } else { 0.0 },
    })
}

/// This thread may run on the first `cores` of `allowed` from now on (what it
/// starts inherits it).
fn set_cores(allowed: &[usize], cores: usize) -> Result<(), String> {
    let mut set = nix::sched::CpuSet::new();
    for &core in allowed.iter().take(cores) {
        set.set(core).map_err(|e| format!("core {core}: {e}"))?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(|e| format!("affinity: {e}"))
}

/// The CPUs this process was given (taskset, a cgroup's cpuset), in order.
fn allowed_cores() -> Result<Vec<usize>, String> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).map_err(|e| format!("affinity: {e}"))?;
    Ok((0..nix::sched::CpuSet::count()).filter(|&cpu| set.is_set(cpu).unwrap_or(false)).collect())
}

/// tephra's `block.block_time_s`, from the extra config or the defaults, in ms.
fn block_time_ms(tephra_extra: &str) -> Result<f64, String> {
    config_number(tephra_extra, "block", "block_time_s").map(|s| s * 1000.0)
}

fn all_command(a: &AllArgs) -> Result<(), String> {
    let programs = a.peers.programs()?;
    let mut results = Results {
        command: command_line(),
        machine: Machine::this(),
        block_time_ms: block_time_ms(&programs.tephra_extra)?,
        ..Results::default()
    };
    let context = Context { programs, scratch: a.out.join("scratch") };
    let other_txs = (a.txs / 5).max(1);
    let other_accounts = a.accounts.min(other_txs).max(2);
    let mut workloads = Vec::new();
    for kind in Kind::ALL {
        let (txs, accounts) = if kind == Kind::Transfers { (a.txs, a.accounts) } else { (other_txs, other_accounts) };
        let dir = ensure_workload(&a.data, kind, a.seed, txs, accounts)?;
        let (workload, genesis) = load_workload(&dir)?;
        workloads.push((kind, dir, workload, genesis));
    }

    eprintln!("group commits on this disk ...");
    results.disk_commit = Some(floor::commit_latency(&context.scratch)?);
    eprintln!("floors ...");
    for (_, _, workload, genesis) in &workloads {
        let floor = floor::measure(workload, genesis, 8, 2_500, results.machine.cores)?;
        eprintln!(
            "  {}: {:.2} us per transaction, ceiling {:.0} tx/s",
            floor.workload, floor.total_us, floor.ceiling_tx_per_s
        );
        results.signing_latency_ms = floor.block_sign_us / 1e3;
        results.floors.push(floor);
    }

    let load = |driver, pace, seconds| Load {
        driver,
        pace,
        seconds,
        txs_per_datagram: a.txs_per_datagram,
        connections: a.connections,
        calls_per_request: 1,
    };
    let closed = Pace::Closed { window: UDP_WINDOW_DATAGRAMS };
    // An open-loop phase is cut short rather than run out of transactions.
    let open = |workload: &Workload, tx_per_s: f64, seconds: f64| {
        (Pace::Open { tx_per_s }, seconds.min(workload.len() as f64 / tx_per_s))
    };
    for (kind, dir, workload, _) in &workloads {
        let phase = context.phase(
            &format!("udp max {}", kind.name()),
            PeerKind::Tephra,
            dir,
            workload,
            load(Driver::Udp, closed, a.phase_seconds),
        )?;
        results.phases.push(phase);
    }

    let (_, transfers_dir, transfers, _) = &workloads[0];
    let udp_max = results.phase("udp max transfers").map_or(0.0, |p| p.achieved_tx_per_s);
    for fraction in &a.sweep {
        let (pace, seconds) = open(transfers, (udp_max * fraction).max(1.0), a.phase_seconds);
        let name = format!("udp sweep {:.0}%", fraction * 100.0);
        let phase =
            context.phase(&name, PeerKind::Tephra, transfers_dir, transfers, load(Driver::Udp, pace, seconds))?;
        results.sweep.push(name);
        results.phases.push(phase);
    }
    results.knee_tx_per_s = knee(&results);
    refine_knee(&mut results, |rate, probe| {
        let (pace, seconds) = open(transfers, rate, a.phase_seconds);
        let name = format!("udp knee probe {probe}");
        context.phase(&name, PeerKind::Tephra, transfers_dir, transfers, load(Driver::Udp, pace, seconds))
    })?;
    let max_sustained = results.knee_tx_per_s.unwrap_or(udp_max * a.sweep.iter().copied().fold(1.0, f64::min));
    let (pace, seconds) = open(transfers, max_sustained, a.sustain_seconds);
    results.phases.push(context.phase(
        "udp sustained",
        PeerKind::Tephra,
        transfers_dir,
        transfers,
        load(Driver::Udp, pace, seconds),
    )?);
    let (pace, seconds) = open(transfers, max_sustained / 2.0, a.phase_seconds);
    results.phases.push(context.phase(
        "udp half load",
        PeerKind::Tephra,
        transfers_dir,
        transfers,
        load(Driver::Udp, pace, seconds),
    )?);

    eprintln!("reads, idle and under half the UDP maximum ...");
    results.reads = Some(reads::measure(&context, transfers_dir, transfers, udp_max / 2.0, a.phase_seconds)?);

    // JSON-RPC closed loops with up to as many transactions in flight as
    // the UDP loop (512 by default), one request in flight per connection:
    // single calls over `RPC_CONNECTIONS_MAX` connections, and batches of
    // `RPC_BATCH_CALLS`.
    let in_flight = UDP_WINDOW_DATAGRAMS * a.txs_per_datagram;
    let one_request_each = |requests: usize| Load {
        pace: Pace::Closed { window: 1 },
        connections: requests.clamp(1, RPC_CONNECTIONS_MAX),
        ..load(Driver::Rpc, closed, a.phase_seconds)
    };
    // Goal 1: each round a UDP closed loop, then the JSON-RPC one at once.
    // Phases minutes apart drifted apart on this VM (one node's ratio was
    // 78% in one run and 55% in the next), a pair seconds apart less so.
    for round in 1..=a.ingress_rounds.max(1) {
        let udp = load(Driver::Udp, closed, a.phase_seconds);
        let udp = context.phase(&format!("ingress udp {round}"), PeerKind::Tephra, transfers_dir, transfers, udp)?;
        let rpc = one_request_each(in_flight);
        let rpc = context.phase(&format!("rpc max Tephra {round}"), PeerKind::Tephra, transfers_dir, transfers, rpc)?;
        results.ingress.push(IngressRound { udp_tx_per_s: udp.achieved_tx_per_s, rpc_tx_per_s: rpc.achieved_tx_per_s });
        results.phases.extend([udp, rpc]);
    }
    for peer in [PeerKind::AnvilAutomine, PeerKind::AnvilInterval] {
        let rpc_load = one_request_each(in_flight);
        results.phases.push(context.phase(&format!("rpc max {peer:?}"), peer, transfers_dir, transfers, rpc_load)?);
    }
    let batched = Load { calls_per_request: RPC_BATCH_CALLS, ..one_request_each(in_flight.div_ceil(RPC_BATCH_CALLS)) };
    results.phases.push(context.phase(
        "rpc max batched Tephra",
        PeerKind::Tephra,
        transfers_dir,
        transfers,
        batched,
    )?);
    // eth_sendRawTransactionSync: tephra at half its JSON-RPC maximum, anvil
    // automine (a block per transaction) at `sync_rate`.
    let rpc_max = results.ingress_median().map_or(a.sync_rate, |round| round.rpc_tx_per_s);
    for (peer, rate) in [(PeerKind::Tephra, rpc_max / 2.0), (PeerKind::AnvilAutomine, a.sync_rate)] {
        let (pace, seconds) = open(transfers, rate.max(1.0), a.phase_seconds);
        let sync_load = Load { connections: a.connections, ..load(Driver::RpcSync, pace, seconds) };
        results.phases.push(context.phase(&format!("rpc sync {peer:?}"), peer, transfers_dir, transfers, sync_load)?);
    }

    // A signing latency is the node's signer as configured (guard, audit
    // log, key or HSM), as the node measured it at half load.
    if let Some(sign) = results.phase("udp half load").and_then(|p| p.node.as_ref()).map(|n| n.block_sign.clone())
        && sign.count > 0
    {
        results.signing_latency_ms = sign.mean_us / 1e3;
    }
    results.goals = goals(&results, a.sustain_seconds);
    let _ = std::fs::remove_dir_all(&context.scratch);
    results.write(&a.out)?;
    println!("{}", results.markdown());
    println!("results, report and plots in {}", a.out.display());
    Ok(())
}

/// The goals on the figures of `all` (issue 27): each a ratio of two figures
/// of this run, so that the VM's drift between runs cancels.
fn goals(results: &Results, sustain_seconds: f64) -> Vec<Goal> {
    let mut goals = Vec::new();
    let transfers_floor = results.floors.iter().find(|f| f.workload == Kind::Transfers.name());
    let achieved = |name: &str| results.phase(name).map(|p| p.achieved_tx_per_s);
    let p99 = |name: &str| results.phase(name).and_then(|p| p.preconf_ms.as_ref()).map(|l| l.p99);
    if let (Some(median), Some(batched)) = (results.ingress_median(), achieved("rpc max batched Tephra")) {
        let (rpc, udp) = (median.rpc_tx_per_s, median.udp_tx_per_s);
        let rounds: Vec<String> = results.ingress.iter().map(|r| format!("{:.0}%", 100.0 * r.ratio())).collect();
        goals.push(Goal {
            name: "JSON-RPC eth_sendRawTransaction closed loop against the UDP closed loop".into(),
            measured: format!(
                "single calls {rpc:.0} tx/s = {:.0}% (median of {} alternating rounds: {}); batches of {RPC_BATCH_CALLS} {batched:.0} tx/s = {:.0}%; UDP {udp:.0} tx/s",
                100.0 * median.ratio(),
                rounds.len(),
                rounds.join(", "),
                100.0 * batched / udp
            ),
            target: ">= 85% (single calls)".into(),
            met: median.ratio() >= 0.85,
        });
    }
    let anvil =
        [achieved("rpc max AnvilAutomine"), achieved("rpc max AnvilInterval")].into_iter().flatten().reduce(f64::max);
    if let (Some(tephra), Some(anvil)) = (results.ingress_median().map(|r| r.rpc_tx_per_s), anvil) {
        goals.push(Goal {
            name: "JSON-RPC closed loop against anvil's best mode".into(),
            measured: format!("{tephra:.0} against {anvil:.0} tx/s = {:.1}x", tephra / anvil),
            target: ">= 3x".into(),
            met: tephra >= 3.0 * anvil,
        });
    }
    if let Some(disk) = results.disk_commit.as_ref().map(|c| c.p99) {
        for (name, phase, margin_ms) in [
            ("UDP preconfirmation p99 at half the closed-loop maximum", "udp sweep 50%", 2.0),
            ("UDP preconfirmation p99 at 75% of the closed-loop maximum", "udp sweep 75%", 5.0),
            ("eth_sendRawTransactionSync p99 at half the JSON-RPC maximum", "rpc sync Tephra", 2.0),
        ] {
            let target = format!("<= disk p99 + {margin_ms} ms = {:.2} ms", disk + margin_ms);
            let kept_up = results.phase(phase).is_some_and(|p| keeps_up(p) && p.lost == 0);
            let goal = match p99(phase) {
                Some(p99) => Goal {
                    name: name.into(),
                    measured: format!(
                        "{p99:.2} ms{}; this disk's group commit alone: p99 {disk:.2} ms",
                        if kept_up { "" } else { " (fell behind)" }
                    ),
                    target,
                    met: kept_up && p99 <= disk + margin_ms,
                },
                None => Goal {
                    name: name.into(),
                    measured: format!("not measured: this run has no `{phase}` phase (--sweep)"),
                    target,
                    met: false,
                },
            };
            goals.push(goal);
        }
    }
    if let (Some(phase), Some(floor)) = (results.phase("udp sustained"), transfers_floor) {
        let fraction = phase.achieved_tx_per_s / floor.ceiling_tx_per_s;
        let p99 = phase.preconf_ms.as_ref().map_or(f64::INFINITY, |l| l.p99);
        goals.push(Goal {
            name: "UDP transfers sustained, none lost, preconfirmation p99 <= 10 ms, against the floor's ceiling"
                .into(),
            measured: format!(
                "{:.0} tx/s for {:.0} s ({}, {} lost, p99 {p99:.2} ms) = {:.0}% of {:.0} tx/s",
                phase.achieved_tx_per_s,
                phase.duration_s,
                if keeps_up(phase) { "kept up" } else { "fell behind" },
                phase.lost,
                fraction * 100.0,
                floor.ceiling_tx_per_s
            ),
            target: format!(">= 60% for {sustain_seconds:.0} s"),
            met: fraction >= 0.6
                && keeps_up(phase)
                && phase.lost == 0
                && p99 <= SUSTAINED_P99_MAX_MS
                && phase.duration_s >= sustain_seconds * 0.98,
        });
    }
    if let Some(reads) = &results.reads {
        let ratios: Vec<(String, f64, f64)> = reads
            .unloaded
            .iter()
            .zip(&reads.loaded)
            .map(|(idle, loaded)| (idle.method.clone(), idle.p99_ms, loaded.p99_ms))
            .collect();
        goals.push(Goal {
            name: "JSON-RPC reads' p99 under half the UDP maximum against idle".into(),
            measured: ratios
                .iter()
                .map(|(method, idle, loaded)| {
                    format!("{method} {loaded:.3} against {idle:.3} ms = {:.1}x", loaded / idle.max(f64::MIN_POSITIVE))
                })
                .collect::<Vec<_>>()
                .join("; "),
            target: "<= 2x".into(),
            met: !ratios.is_empty() && ratios.iter().all(|(_, idle, loaded)| *loaded <= 2.0 * idle),
        });
    }
    if let Some(p99) = results.phase("udp half load").and_then(|p| p.signed_ms.as_ref()).map(|l| l.p99) {
        let bound = results.block_time_ms + 2.0 * results.signing_latency_ms;
        goals.push(Goal {
            name: "signed block p99 (send to signature seen), half load".into(),
            measured: format!("{p99:.1} ms"),
            target: format!(
                "<= block time + 2 signing latencies = {:.0} + 2 x {:.2} = {bound:.1} ms",
                results.block_time_ms, results.signing_latency_ms
            ),
            met: p99 <= bound,
        });
    }
    goals
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::{Label, LatencySummary};

    /// An open-loop step at `rate` that accepted everything, with this p99.
    fn step(name: &str, rate: f64, p99_ms: f64) -> Phase {
        let latency =
            LatencySummary { count: 1, p50: 2.0, p90: 2.0, p99: p99_ms, p999: p99_ms, max: p99_ms, cdf: Vec::new() };
        let label = Label {
            name: name.to_string(),
            peer: "tephra".into(),
            workload: "transfers".into(),
            driver: Driver::Udp,
            offered_tx_per_s: Some(rate),
        };
        Phase {
            label,
            sent: 100,
            accepted: 100,
            rejected: Default::default(),
            lost: 0,
            duration_s: 1.0,
            achieved_tx_per_s: rate,
            included_tx_per_s: None,
            blocks_sealed: 1,
            rss_mib: 0,
            node_threads_cpu_s: Default::default(),
            node: None,
            preconf_ms: Some(latency),
            sealed_ms: None,
            signed_ms: None,
        }
    }

    #[test]
    fn the_knee_is_refined_between_the_step_that_holds_and_the_one_above() {
        let mut results = Results::default();
        for (name, rate, p99) in [("25%", 2_500.0, 4.0), ("50%", 5_000.0, 11.0), ("75%", 7_500.0, 90.0)] {
            results.sweep.push(name.into());
            results.phases.push(step(name, rate, p99));
        }
        results.knee_tx_per_s = knee(&results);
        assert_eq!(results.knee_tx_per_s, Some(2_500.0));
        // The p99 stays within the bound up to 4,000 tx/s.
        let mut probed = Vec::new();
        refine_knee(&mut results, |rate, n| {
            probed.push(rate);
            Ok(step(&format!("probe {n}"), rate, if rate <= 4_000.0 { 8.0 } else { 12.0 }))
        })
        .unwrap();
        assert_eq!(probed, [3_750.0, 4_375.0], "halfway to the failing step, then halfway above the probe that held");
        assert_eq!(results.knee_tx_per_s, Some(3_750.0));
        assert_eq!(results.sweep.len(), 5, "the probes join the sweep");

        // No step above the knee, or no knee: nothing to probe.
        let mut top = Results::default();
        top.sweep.push("100%".into());
        top.phases.push(step("100%", 10_000.0, 3.0));
        top.knee_tx_per_s = knee(&top);
        refine_knee(&mut top, |_, _| panic!("no probe")).unwrap();
        let mut none = Results::default();
        refine_knee(&mut none, |_, _| panic!("no probe")).unwrap();
    }

    #[test]
    fn goal_one_takes_the_round_with_the_median_ratio() {
        let round = |udp_tx_per_s, rpc_tx_per_s| IngressRound { udp_tx_per_s, rpc_tx_per_s };
        let mut results = Results::default();
        assert!(results.ingress_median().is_none());
        results.ingress = vec![round(20_000.0, 16_000.0), round(25_000.0, 13_750.0), round(18_000.0, 12_600.0)];
        // 80%, 55%, 70%: the middle ratio is the third round's, though its
        // JSON-RPC figure is the lowest.
        let median = results.ingress_median().unwrap();
        assert_eq!((median.udp_tx_per_s, median.rpc_tx_per_s), (18_000.0, 12_600.0));
        // An even count takes the lower middle: no goal met on the better half.
        results.ingress.truncate(2);
        assert_eq!(results.ingress_median().unwrap().rpc_tx_per_s, 13_750.0);

        let goals = goals(&results, 60.0);
        assert!(goals.iter().all(|g| !g.name.starts_with("JSON-RPC eth_sendRawTransaction")), "no batched phase");
        results.phases.push(step("rpc max batched Tephra", 20_000.0, 5.0));
        results.ingress = vec![round(20_000.0, 17_000.0)];
        let goal = goals_named(&results, "JSON-RPC eth_sendRawTransaction");
        assert!(goal.met, "85% exactly: {goal:?}");
        assert!(goal.measured.contains("85% (median of 1 alternating rounds: 85%)"), "{}", goal.measured);
    }

    fn goals_named(results: &Results, prefix: &str) -> Goal {
        goals(results, 60.0).into_iter().find(|g| g.name.starts_with(prefix)).unwrap()
    }
}
