//! What the log index costs the sequencer: keeping and forgetting the logs
//! and the called address of a block of token transfers (one `Transfer` log
//! each, every recipient new), against executing those transfers, side by
//! side in one run:
//! `cargo bench -p tephra-node --bench log_index`.

#![allow(clippy::print_stdout, reason = "a benchmark reports its figures on stdout")]

#[path = "../../exec/benches/common/mod.rs"]
mod common;

/// The allocator the `tephra` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Log, TxKind};
use common::{Bench, abi_call, call};
use tephra_exec::{BlockBuilder, SequentialExecutor, VerifiedTx, dev::measure};
use tephra_node::log_index::{BlockLogs, LogIndex};

const N: usize = 10_000;
/// The index's share of the sequencer's work on these transfers, at most.
const GOAL_PERCENT: f64 = 5.0;

/// A block's logs, one transaction each, all calling the token.
struct Logs(Vec<Log>, Address);

impl BlockLogs for Logs {
    fn tx_count(&self) -> usize {
        self.0.len()
    }

    fn logs_of(&self, tx: usize) -> &[Log] {
        std::slice::from_ref(&self.0[tx])
    }

    fn recipient_of(&self, _: usize) -> Option<Address> {
        Some(self.1)
    }
}

/// A block's logs and calls kept, as the view keeps each transaction's.
fn keep(index: &mut LogIndex<Logs>, number: u64, logs: &[Log], token: Address) {
    for log in logs {
        index.keep(number, std::slice::from_ref(log));
        index.keep_recipient(number, &token);
    }
}

fn main() {
    let bench = Bench::new();
    let chain_id = bench.spec.chain_id();
    let (state, token, params) = bench.token_holders(N);
    let transfers: Vec<VerifiedTx> = (0..N)
        .map(|i| {
            let key = tephra_exec::dev::DevKey::from_seed(i as u64);
            let to = Address::with_last_byte(2).create(i as u64);
            let tx =
                call(&key, chain_id, 0, TxKind::Call(token), abi_call("transfer(address,uint256)", to, 7), 100_000);
            bench.verifier.verify(&tx.encoded_2718()).expect("valid")
        })
        .collect();
    let mut logs = Vec::new();
    let execute = measure(
        7,
        || (state.clone(), transfers.clone()),
        |(mut state, txs)| {
            let mut builder = BlockBuilder::open(params.clone(), &mut state);
            builder.execute(&mut SequentialExecutor, &mut state, txs, |_, _| {});
            logs = builder.transactions().iter().flat_map(|t| t.receipt.logs.clone()).collect();
        },
    );
    assert_eq!(logs.len(), N, "a Transfer log each");
    // A block kept, then retired and forgotten, on an index that holds one
    // block already (as a running node's does).
    let index_and_forget = measure(
        7,
        || {
            let mut index = LogIndex::default();
            keep(&mut index, 1, &logs, token);
            (index, Logs(logs.clone(), token))
        },
        |(mut index, retired)| {
            keep(&mut index, 2, &logs, token);
            index.retire(1, retired);
            index.forget_some(usize::MAX);
        },
    );
    let (execute_us, index_us) =
        (execute.as_secs_f64() * 1e6 / N as f64, index_and_forget.as_secs_f64() * 1e6 / N as f64);
    let percent = index_us / execute_us * 100.0;
    let verdict = if percent <= GOAL_PERCENT { "meets" } else { "MISSES" };
    println!("execute a token transfer                  {execute_us:>8.3} us");
    println!("index and later forget its log and call   {index_us:>8.3} us");
    println!("the index's share of the sequencer's work {percent:>8.2} %  (goal <= {GOAL_PERCENT} %: {verdict})");
}
