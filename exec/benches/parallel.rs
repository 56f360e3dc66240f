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

#![allow(clippy::print_stdout, reason = "a benchmark reports its figures on stdout")]

mod common;

/// The allocator the `tephra` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

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

struct Workload {
    name: &'static str,
    state: StateDb,
    params: BlockParams,
    txs: Vec<VerifiedTx>,
    /// The least speed-up over sequential that the goal asks of 2 shards.
    goal_2_shards: f64,
}

fn eth_transfers(bench: &Bench) -> Workload {
    let (state, txs) = bench.transfers(TXS);
    Workload { name: "independent ETH transfers", state, params: bench.params.clone(), txs, goal_2_shards: 1.6 }
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
    Workload { name: "independent token transfers", state, params, txs, goal_2_shards: 1.8 }
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
    Workload { name: "fully dependent (one slot)", state, params: bench.params.clone(), txs, goal_2_shards: 0.95 }
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

/// The machine's own ceiling for this work: the block cut into `threads`
/// parts, each executed sequentially on its own copy of the state on its own
/// core, all at once, with no coordination at all. Its time against one core
/// executing the whole block bounds what any executor can gain here.
fn independent_copies(workload: &Workload, threads: usize, cores: &[usize]) -> Duration {
    let part = workload.txs.len().div_ceil(threads);
    let copies: Vec<(StateDb, Vec<Vec<VerifiedTx>>)> = workload
        .txs
        .chunks(part)
        .map(|txs| (workload.state.clone(), txs.chunks(MINI_BLOCK_TXS).map(<[_]>::to_vec).collect()))
        .collect();
    let start = Instant::now();
    std::thread::scope(|scope| {
        for (k, (mut state, batches)) in copies.into_iter().enumerate() {
            let core = cores.get(k % cores.len().max(1)).copied();
            scope.spawn(move || {
                if let Some(id) = core {
                    core_affinity::set_for_current(core_affinity::CoreId { id });
                }
                let mut builder = BlockBuilder::open(workload.params.clone(), &mut state);
                for batch in batches {
                    builder.execute(&mut SequentialExecutor, &mut state, batch, |_, _| {});
                }
            });
        }
    });
    start.elapsed()
}

fn compare(workload: &Workload, shards: usize, cores: &[usize]) {
    let mut parallel = ParallelExecutor::new(&ShardConfig::pinned_on(shards, cores)).expect("shards start");
    let (_, reference_root) = execute(workload, &mut SequentialExecutor); // warm-up
    execute(workload, &mut parallel);
    let mut sequential_times = Vec::new();
    let mut parallel_times = Vec::new();
    let mut copies_times = Vec::new();
    for _ in 0..ROUNDS {
        sequential_times.push(execute(workload, &mut SequentialExecutor).0);
        let (elapsed, root) = execute(workload, &mut parallel);
        assert_eq!(root, reference_root, "{}: parallel and sequential state roots", workload.name);
        parallel_times.push(elapsed);
        copies_times.push(independent_copies(workload, shards, cores));
    }
    let sequential = median(sequential_times);
    let parallel_time = median(parallel_times);
    let speedup = sequential.as_secs_f64() / parallel_time.as_secs_f64();
    let ceiling = sequential.as_secs_f64() / median(copies_times).as_secs_f64();
    let stats = parallel.stats();
    let per_tx = |d: Duration| d.as_secs_f64() * 1e6 / TXS as f64;
    let verdict = if shards != 2 {
        String::new()
    } else if speedup >= workload.goal_2_shards {
        format!("(goal >= {}x: meets)", workload.goal_2_shards)
    } else {
        format!("(goal >= {}x: MISSES)", workload.goal_2_shards)
    };
    println!(
        "{:<28} {shards:>2} shards  sequential {:>6.2} us/tx  parallel {:>6.2} us/tx  {speedup:>5.2}x {verdict}",
        workload.name,
        per_tx(sequential),
        per_tx(parallel_time),
    );
    println!(
        "{:<28}            machine ceiling: {shards} independent sequential copies, one per core, {ceiling:.2}x; \
         parallel reaches {:.0}% of it",
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

fn main() {
    // `cargo test --benches` runs this binary with `--bench` absent: keep that cheap.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let cores: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|core| core.id).collect();
    if let Some(&id) = cores.first() {
        core_affinity::set_for_current(core_affinity::CoreId { id });
    }
    let bench = Bench::new();
    println!(
        "parallel against sequential execution, {TXS} transactions in mini-blocks of {MINI_BLOCK_TXS}, cores {cores:?}"
    );
    let only = std::env::var("ONLY").ok();
    let workloads: Vec<Workload> = [eth_transfers as fn(&Bench) -> Workload, token_transfers, dependent_calls]
        .iter()
        .map(|make| make(&bench))
        .filter(|w| only.as_deref().is_none_or(|o| w.name.contains(o)))
        .collect();
    for shards in shard_counts() {
        for workload in &workloads {
            compare(workload, shards, &cores);
        }
    }
}
