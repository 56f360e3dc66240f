//! Execution-core floors on one core: `cargo bench -p tephra-exec --bench core`.
//!
//! Each figure is the median of repeated timed runs after a warm-up, printed
//! beside the goal it is held to. Ratios are measured side by side in one run.

#![allow(clippy::print_stdout, reason = "a benchmark reports its figures on stdout")]

mod common;

/// The allocator the `tephra` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, TxKind, U256};
use common::{Bench, OpBench, abi_call, call};
use tephra_exec::{
    BlockBuilder, SequentialExecutor, StateDb, VerifiedTx,
    dev::{DevKey, measure},
};

fn report(name: &str, value: f64, unit: &str, goal: f64) {
    let verdict = if value <= goal { "meets" } else { "MISSES" };
    println!("{name:<52} {value:>10.2} {unit:<3} (goal <= {goal} {unit}: {verdict})");
}

fn decode_and_recover(bench: &Bench) {
    let raws: Vec<Vec<u8>> = (0..1_000)
        .map(|i| DevKey::from_seed(i).transfer(bench.spec.chain_id(), 0, Address::ZERO, U256::from(1)).encoded_2718())
        .collect();
    let per_batch = measure(
        9,
        || (),
        |()| {
            for raw in &raws {
                std::hint::black_box(bench.verifier.verify(raw).expect("valid"));
            }
        },
    );
    report("decode + recover, per transaction", per_batch.as_secs_f64() * 1e6 / raws.len() as f64, "us", 55.0);
}

fn execute_transfers(bench: &Bench) {
    const N: usize = 10_000;
    let (state, txs) = bench.transfers(N);
    let per_block = measure(
        7,
        || (state.clone(), txs.clone()),
        |(mut state, txs)| {
            let mut builder = BlockBuilder::open(bench.params.clone(), &mut state);
            builder.execute(&mut SequentialExecutor, &mut state, txs, |_, _| {});
            assert_eq!(builder.transactions().len(), N);
        },
    );
    report("execute an ETH transfer", per_block.as_secs_f64() * 1e6 / N as f64, "us", 3.0);
}

fn execute_token_transfers(bench: &Bench) {
    const N: usize = 10_000;
    let chain_id = bench.spec.chain_id();
    let (state, token, params) = bench.token_holders(N);
    let transfers: Vec<VerifiedTx> = (0..N)
        .map(|i| {
            let key = DevKey::from_seed(i as u64);
            let to = Address::with_last_byte(2).create(i as u64);
            let tx =
                call(&key, chain_id, 0, TxKind::Call(token), abi_call("transfer(address,uint256)", to, 7), 100_000);
            bench.verifier.verify(&tx.encoded_2718()).expect("valid")
        })
        .collect();
    let per_block = measure(
        7,
        || (state.clone(), transfers.clone()),
        |(mut state, txs)| {
            let mut builder = BlockBuilder::open(params.clone(), &mut state);
            builder.execute(&mut SequentialExecutor, &mut state, txs, |_, _| {});
            assert!(
                builder.transactions().iter().all(|t| t.receipt.status.coerce_status() && t.receipt.logs.len() == 1)
            );
        },
    );
    report("execute a token transfer", per_block.as_secs_f64() * 1e6 / N as f64, "us", 5.0);
}

/// The same token transfers executed into an Ethereum-mode block and into
/// an OP Stack block (deposit first, the L1 data fee and three fee vaults on
/// every transaction), alternately in one run: OP mode's throughput against
/// Ethereum mode's.
fn op_stack_token_transfers(bench: &Bench) {
    const N: usize = 10_000;
    const ROUNDS: usize = 3;
    let op = OpBench::new();
    let transfers = |chain_id: u64, verifier: &tephra_exec::Verifier, token: Address| -> Vec<VerifiedTx> {
        (0..N)
            .map(|i| {
                let to = Address::with_last_byte(2).create(i as u64);
                let input = abi_call("transfer(address,uint256)", to, 7);
                let tx = call(&DevKey::from_seed(i as u64), chain_id, 0, TxKind::Call(token), input, 100_000);
                verifier.verify(&tx.encoded_2718()).expect("valid")
            })
            .collect()
    };
    let (eth_state, eth_token, eth_params) = bench.token_holders(N);
    let eth_txs = transfers(bench.spec.chain_id(), &bench.verifier, eth_token);
    let (op_state, op_token) = op.token_holders(N);
    let op_txs = transfers(op.spec.chain_id(), &op.verifier, op_token);
    let mut op_params = op.params.clone();
    op_params.number += 1;
    op_params.timestamp += 2;
    let (mut eth_runs, mut op_runs) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        eth_runs.push(measure(
            3,
            || (eth_state.clone(), eth_txs.clone()),
            |(mut state, txs)| {
                let mut builder = BlockBuilder::open(eth_params.clone(), &mut state);
                builder.execute(&mut SequentialExecutor, &mut state, txs, |_, _| {});
                assert_eq!(builder.transactions().len(), N);
            },
        ));
        op_runs.push(measure(
            3,
            || (op_state.clone(), op_txs.clone()),
            |(mut state, txs)| {
                let mut builder =
                    BlockBuilder::open_op(op_params.clone(), &mut state, vec![op.l1_info()]).expect("opens");
                builder.execute(&mut SequentialExecutor, &mut state, txs, |_, _| {});
                assert_eq!(builder.transactions().len(), N);
            },
        ));
    }
    let (eth, op_time) = (tephra_exec::dev::median(eth_runs), tephra_exec::dev::median(op_runs));
    let per_tx = |d: Duration| d.as_secs_f64() * 1e6 / N as f64;
    report("execute a token transfer, Ethereum mode", per_tx(eth), "us", 5.0);
    report("execute a token transfer, OP Stack mode", per_tx(op_time), "us", 5.0 / 0.85);
    let ratio = eth.as_secs_f64() / op_time.as_secs_f64();
    let verdict = if ratio >= 0.85 { "meets" } else { "MISSES" };
    println!("{:<52} {ratio:>10.3}     (goal >= 0.85: {verdict})", "OP Stack / Ethereum mode throughput");
    // What the L1 data fee adds to verify: FastLZ over each transaction (the
    // sequencer's core then only multiplies).
    let raws: Vec<&[u8]> = op_txs[..1_000].iter().map(|tx| tx.encoded.as_ref()).collect();
    let estimate = measure(
        9,
        || (),
        |()| {
            for raw in &raws {
                std::hint::black_box(tephra_exec::op_fees::estimate_l1_size(raw));
            }
        },
    );
    report("L1 data size estimate (FastLZ), per transaction", estimate.as_secs_f64() * 1e6 / 1_000.0, "us", 2.0);
}

fn seal_block(bench: &Bench) {
    const N: usize = 10_000;
    let (state, txs) = bench.transfers(N);
    let per_seal = measure(
        7,
        || {
            let mut state = state.clone();
            let mut builder = BlockBuilder::open(bench.params.clone(), &mut state);
            builder.execute(&mut SequentialExecutor, &mut state, txs.clone(), |_, _| {});
            (state, builder)
        },
        |(mut state, builder)| {
            std::hint::black_box(builder.seal(&mut state));
        },
    );
    report("seal a 10,000-transfer block, roots included", per_seal.as_secs_f64() * 1e3, "ms", 15.0);
}

/// The state root of a state of `size` accounts built from scratch, and after
/// changing `changed` of them.
fn state_root_after_change(size: usize, changed: usize) -> (Duration, Duration) {
    let mut state = StateDb::default();
    for i in 0..size {
        state.insert_account(Address::with_last_byte(7).create(i as u64), 1, U256::from(i), None, []);
    }
    let start = Instant::now();
    state.state_root();
    let from_scratch = start.elapsed();
    let state = std::cell::RefCell::new(state);
    let mut round = 0u64;
    let incremental = measure(
        9,
        || {
            round += 1;
            for j in 0..changed {
                // A different spread of accounts each round, all existing.
                let index = (j as u64 * 7_919 + round * 104_729) % size as u64;
                state.borrow_mut().add_balance(Address::with_last_byte(7).create(index), U256::from(round));
            }
        },
        |()| {
            std::hint::black_box(state.borrow_mut().state_root());
        },
    );
    (from_scratch, incremental)
}

fn incremental_state_root() {
    let (_, small) = state_root_after_change(10_000, 1_000);
    let (large_scratch, large) = state_root_after_change(1_000_000, 1_000);
    println!("state root, 1,000 changed of 10,000 accounts           {:>10.2} ms", small.as_secs_f64() * 1e3);
    println!("state root, 1,000 changed of 1,000,000 accounts        {:>10.2} ms", large.as_secs_f64() * 1e3);
    println!("state root, 1,000,000 accounts from scratch            {:>10.2} ms", large_scratch.as_secs_f64() * 1e3);
    report("state root ratio, 1,000,000 / 10,000 accounts", large.as_secs_f64() / small.as_secs_f64(), "x", 2.0);
}

fn main() {
    // `cargo test --benches` runs this binary with `--bench` absent: keep that cheap.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let bench = Bench::new();
    println!("tephra-exec floors, one core");
    decode_and_recover(&bench);
    execute_transfers(&bench);
    execute_token_transfers(&bench);
    op_stack_token_transfers(&bench);
    seal_block(&bench);
    incremental_state_root();
}
