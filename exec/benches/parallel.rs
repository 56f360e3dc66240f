//! Parallel against sequential execution, both in the same run:
//! `cargo bench -p tephra-exec --bench parallel [-- --shards 1,2,4,8]`.
//!
//! Execution only (no sealing): 10,000-transaction blocks executed in
//! mini-blocks of 256, as the node cuts them, on the sequential executor and on
//! the parallel one with each shard count asked for (default 2, worker shards
//! pinned to cores 1, 2, ...; the calling thread, shard 0, on core 0). Rounds
//! of the two alternate, so machine drift hits both sides alike; each figure is
//! the median of the rounds. `ONLY=token` (any part of a workload's name)
//! runs just the matching workloads, for profiling one.
//!
//! The machine's ceiling is measured twice, in the same rounds: the block cut
//! into one part per core, each executed sequentially on its own copy of the
//! state, as threads of this process and as separate processes (this binary
//! started again with `--copy K --copies N`, each pinned to its core, all
//! released at once). Two processes share nothing but the machine, so their
//! aggregate is what the cores give; the 2-shard goal is judged against it.

#![allow(clippy::print_stdout, reason = "a benchmark reports its figures on stdout")]

mod common;

/// The allocator the `tephra` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::Barrier,
    time::{Duration, Instant},
};

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, TxKind, U256};
use common::{Bench, abi_call, call};
use tephra_exec::{
    BlockBuilder, BlockParams, Executor, ParallelExecutor, SequentialExecutor, ShardConfig, StateDb, VerifiedTx,
    dev::{DevKey, median},
};

const TXS: usize = 10_000;
const MINI_BLOCK_TXS: usize = 256;
const ROUNDS: usize = 7;
/// SSTORE(0, SLOAD(0) + 1): the contract every transaction of the dependent block calls.
const HOT_COUNTER: &[u8] = &[0x60, 0x00, 0x54, 0x60, 0x01, 0x01, 0x60, 0x00, 0x55, 0x00];

const ETH_TRANSFERS: &str = "independent ETH transfers";
const TOKEN_TRANSFERS: &str = "independent token transfers";
const FULLY_DEPENDENT: &str = "fully dependent (one slot)";

type MakeWorkload = fn(&Bench) -> Workload;

struct Workload {
    name: &'static str,
    state: StateDb,
    params: BlockParams,
    txs: Vec<VerifiedTx>,
    /// What the goal asks of 2 shards.
    goal_2_shards: Goal,
}

/// A 2-shard goal: a share of the machine's ceiling (two processes), or, where
/// the work cannot be split, a least speed-up over sequential.
#[derive(Clone, Copy)]
enum Goal {
    OfCeiling(f64),
    OverSequential(f64),
}

impl Goal {
    fn met(self, speedup: f64, ceiling: f64) -> bool {
        match self {
            // Never met by shards slower than one core, whatever the ceiling.
            Self::OfCeiling(share) => speedup >= share * ceiling && speedup >= 1.0,
            Self::OverSequential(least) => speedup >= least,
        }
    }
}

impl std::fmt::Display for Goal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OfCeiling(share) => write!(f, ">= {share}x the processes' ceiling"),
            Self::OverSequential(least) => write!(f, ">= {least}x sequential"),
        }
    }
}

fn eth_transfers(bench: &Bench) -> Workload {
    let (state, txs) = bench.transfers(TXS);
    Workload { name: ETH_TRANSFERS, state, params: bench.params.clone(), txs, goal_2_shards: Goal::OfCeiling(0.9) }
}

fn token_transfers(bench: &Bench) -> Workload {
    let (state, token, params) = bench.token_holders(TXS);
    let txs = (0..TXS)
        .map(|i| {
            let to = Address::with_last_byte(2).create(i as u64);
            let data = abi_call("transfer(address,uint256)", to, 7);
            let tx = call(&DevKey::from_seed(i as u64), bench.spec.chain_id(), 0, TxKind::Call(token), data, 100_000);
            bench.verifier.verify(&tx.encoded_2718()).expect("valid")
        })
        .collect();
    Workload { name: TOKEN_TRANSFERS, state, params, txs, goal_2_shards: Goal::OfCeiling(0.9) }
}

fn dependent_calls(bench: &Bench) -> Workload {
    let mut state = bench.funded_state(TXS);
    let hot = Address::repeat_byte(0xc0);
    let code = revm::bytecode::Bytecode::new_raw(Bytes::from_static(HOT_COUNTER));
    state.insert_account(hot, 1, U256::ZERO, Some(code), [(U256::ZERO, U256::from(1))]);
    state.state_root();
    let txs = (0..TXS)
        .map(|i| {
            let tx = call(&DevKey::from_seed(i as u64), bench.spec.chain_id(), 0, TxKind::Call(hot), vec![], 60_000);
            bench.verifier.verify(&tx.encoded_2718()).expect("valid")
        })
        .collect();
    Workload {
        name: FULLY_DEPENDENT,
        state,
        params: bench.params.clone(),
        txs,
        goal_2_shards: Goal::OverSequential(0.95),
    }
}

/// Executes the workload's block in mini-blocks; returns the time and the
/// state root, which must not depend on the executor.
fn execute(workload: &Workload, executor: &mut dyn Executor) -> (Duration, alloy_primitives::B256) {
    let mut state = workload.state.clone();
    let mut batches: Vec<Vec<VerifiedTx>> = workload.txs.chunks(MINI_BLOCK_TXS).map(<[_]>::to_vec).collect();
    let start = Instant::now();
    let mut builder = BlockBuilder::open(workload.params.clone(), &mut state);
    for batch in batches.drain(..) {
        builder.execute(executor, &mut state, batch, |_, _| {});
    }
    let elapsed = start.elapsed();
    assert_eq!(builder.transactions().len(), TXS, "{}: every transaction included", workload.name);
    (elapsed, builder.seal(&mut state).header.state_root)
}

/// Part `copy` of `copies` of the workload's block, as each independent copy
/// executes it: its own state and its mini-blocks.
fn part_of(workload: &Workload, copy: usize, copies: usize) -> (StateDb, Vec<Vec<VerifiedTx>>) {
    let part = workload.txs.len().div_ceil(copies);
    let txs = workload.txs.chunks(part).nth(copy).unwrap_or(&[]);
    (workload.state.clone(), txs.chunks(MINI_BLOCK_TXS).map(<[_]>::to_vec).collect())
}

/// Executes one part sequentially; the time covers execution alone (the
/// state and the builder are dropped after the clock, as `execute`'s are).
fn execute_part((mut state, batches): (StateDb, Vec<Vec<VerifiedTx>>), params: &BlockParams) -> Duration {
    let txs: usize = batches.iter().map(Vec::len).sum();
    let start = Instant::now();
    let mut builder = BlockBuilder::open(params.clone(), &mut state);
    for batch in batches {
        builder.execute(&mut SequentialExecutor, &mut state, batch, |_, _| {});
    }
    let elapsed = start.elapsed();
    assert_eq!(builder.transactions().len(), txs, "a copy includes every transaction of its part");
    drop((builder, state));
    elapsed
}

/// The ceiling as threads of this process: one part per core, each on its
/// own copy of the state, released together by a barrier; the slowest part's
/// time.
fn independent_threads(workload: &Workload, threads: usize, cores: &[usize]) -> Duration {
    let start_together = Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let part = part_of(workload, k, threads);
                let core = cores.get(k % cores.len().max(1)).copied();
                let start_together = &start_together;
                scope.spawn(move || {
                    if let Some(id) = core {
                        core_affinity::set_for_current(core_affinity::CoreId { id });
                    }
                    start_together.wait();
                    execute_part(part, &workload.params)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a copy panicked")).max().unwrap_or_default()
    })
}

/// The ceiling as processes: this binary once per part, each pinned to its
/// core with its part ready, released by a line on its stdin and answering
/// its time on stdout. They live for all the rounds of one workload.
struct CopyProcesses {
    children: Vec<(Child, ChildStdin, BufReader<ChildStdout>)>,
}

impl CopyProcesses {
    fn start(workload: &Workload, copies: usize, cores: &[usize]) -> Self {
        let exe = std::env::current_exe().expect("the bench binary");
        let children = (0..copies)
            .map(|k| {
                let core = cores.get(k % cores.len().max(1)).copied().unwrap_or(0);
                let mut child = Command::new(&exe)
                    .args(["--bench", "--copy", &k.to_string(), "--copies", &copies.to_string()])
                    .args(["--core", &core.to_string()])
                    .env("ONLY", workload.name)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("the bench binary starts again");
                let stdin = child.stdin.take().expect("piped");
                let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
                assert_eq!(read_line(&mut stdout), "ready", "copy {k} gets ready");
                (child, stdin, stdout)
            })
            .collect();
        Self { children }
    }

    /// One round: every copy released at once; the slowest one's time.
    fn round(&mut self) -> Duration {
        for (_, stdin, _) in &mut self.children {
            stdin.write_all(b"go\n").and_then(|()| stdin.flush()).expect("a copy takes its start");
        }
        self.children
            .iter_mut()
            .map(|(_, _, stdout)| Duration::from_nanos(read_line(stdout).parse().expect("a copy answers nanoseconds")))
            .max()
            .unwrap_or_default()
    }
}

impl Drop for CopyProcesses {
    fn drop(&mut self) {
        for (mut child, stdin, _) in self.children.drain(..) {
            drop(stdin); // end of input: the copy exits
            let _ = child.wait();
        }
    }
}

fn read_line(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).expect("a copy's answer");
    line.trim().to_string()
}

/// A copy process (`--copy K --copies N --core C`): pinned to its core, it
/// executes its part each time a line comes on stdin and answers the time.
fn run_copy(workload: &Workload, copy: usize, copies: usize, core: usize) {
    core_affinity::set_for_current(core_affinity::CoreId { id: core });
    let (stdin, mut stdout) = (std::io::stdin(), std::io::stdout());
    let mut part = part_of(workload, copy, copies);
    let _ = execute_part(part, &workload.params); // warm-up, as the parent's sides have
    writeln!(stdout, "ready").and_then(|()| stdout.flush()).expect("stdout");
    for _go in stdin.lock().lines().map_while(Result::ok) {
        part = part_of(workload, copy, copies);
        let elapsed = execute_part(part, &workload.params);
        writeln!(stdout, "{}", elapsed.as_nanos()).and_then(|()| stdout.flush()).expect("stdout");
    }
}

fn compare(workload: &Workload, shards: usize, cores: &[usize]) {
    let mut parallel = ParallelExecutor::new(&ShardConfig::pinned_on(shards, cores)).expect("shards start");
    let (_, reference_root) = execute(workload, &mut SequentialExecutor); // warm-up
    execute(workload, &mut parallel);
    let mut processes = CopyProcesses::start(workload, shards, cores);
    let mut sequential_times = Vec::new();
    let mut parallel_times = Vec::new();
    let mut threads_times = Vec::new();
    let mut processes_times = Vec::new();
    for _ in 0..ROUNDS {
        sequential_times.push(execute(workload, &mut SequentialExecutor).0);
        let (elapsed, root) = execute(workload, &mut parallel);
        assert_eq!(root, reference_root, "{}: parallel and sequential state roots", workload.name);
        parallel_times.push(elapsed);
        threads_times.push(independent_threads(workload, shards, cores));
        processes_times.push(processes.round());
    }
    drop(processes);
    let sequential = median(sequential_times);
    let parallel_time = median(parallel_times);
    let speedup = sequential.as_secs_f64() / parallel_time.as_secs_f64();
    let threads_ceiling = sequential.as_secs_f64() / median(threads_times).as_secs_f64();
    let ceiling = sequential.as_secs_f64() / median(processes_times).as_secs_f64();
    let stats = parallel.stats();
    let per_tx = |d: Duration| d.as_secs_f64() * 1e6 / TXS as f64;
    let verdict = if shards != 2 {
        String::new()
    } else if workload.goal_2_shards.met(speedup, ceiling) {
        format!("(goal {}: meets)", workload.goal_2_shards)
    } else {
        format!("(goal {}: MISSES)", workload.goal_2_shards)
    };
    println!(
        "{:<28} {shards:>2} shards  sequential {:>6.2} us/tx  parallel {:>6.2} us/tx  {speedup:>5.2}x {verdict}",
        workload.name,
        per_tx(sequential),
        per_tx(parallel_time),
    );
    println!(
        "{:<28}            machine ceiling: {shards} independent sequential copies, one per core: \
         as processes {ceiling:.2}x (parallel reaches {:.0}% of it), as threads of one process {threads_ceiling:.2}x",
        "",
        100.0 * speedup / ceiling
    );
    let runs = (ROUNDS + 1) as u64;
    println!(
        "{:<28}            per block: {} speculated, {} re-executed, {} sequential; windows {} committed by the shards, {} in order",
        "",
        stats.speculated_txs / runs,
        stats.reexecuted_txs / runs,
        stats.sequential_txs / runs,
        stats.independent_windows / runs,
        stats.ordered_windows / runs,
    );
}

fn shard_counts() -> Vec<usize> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|arg| arg == "--shards") {
        Some(i) => args
            .get(i + 1)
            .expect("--shards takes a list, as 1,2,4")
            .split(',')
            .map(|n| n.trim().parse().expect("--shards takes numbers"))
            .collect(),
        None => vec![2],
    }
}

/// `--copy K --copies N --core C`: this process is a copy of the ceiling.
fn copy_arguments() -> Option<(usize, usize, usize)> {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        let i = args.iter().position(|arg| arg == name)?;
        args.get(i + 1)?.parse::<usize>().ok()
    };
    Some((value("--copy")?, value("--copies")?, value("--core")?))
}

fn main() {
    // `cargo test --benches` runs this binary with `--bench` absent: keep that cheap.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    // As the node runs (`[host] transparent_huge_pages = false`): a fault on
    // a fresh 2 MiB page zeroes it whole, milliseconds inside a timed block.
    // The copy processes inherit it.
    tephra_testkit::disable_transparent_huge_pages().expect("prctl(PR_SET_THP_DISABLE)");
    let cores: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|core| core.id).collect();
    if let Some(&id) = cores.first() {
        core_affinity::set_for_current(core_affinity::CoreId { id });
    }
    let bench = Bench::new();
    let only = std::env::var("ONLY").ok();
    let makers: [(&str, MakeWorkload); 3] =
        [(ETH_TRANSFERS, eth_transfers), (TOKEN_TRANSFERS, token_transfers), (FULLY_DEPENDENT, dependent_calls)];
    let workloads: Vec<Workload> = makers
        .iter()
        .filter(|(name, _)| only.as_deref().is_none_or(|o| name.contains(o)))
        .map(|(_, make)| make(&bench))
        .collect();
    if let Some((copy, copies, core)) = copy_arguments() {
        let workload = workloads.first().expect("a copy is started with its workload's name");
        return run_copy(workload, copy, copies, core);
    }
    println!(
        "parallel against sequential execution, {TXS} transactions in mini-blocks of {MINI_BLOCK_TXS}, cores {cores:?}"
    );
    for shards in shard_counts() {
        for workload in &workloads {
            compare(workload, shards, &cores);
        }
    }
}
