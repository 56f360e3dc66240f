//! `tephra-bench floor`: what each stage of the pipeline costs per
//! transaction in-process on this machine, on the workload's own
//! transactions and genesis, and the ceiling that implies.
//!
//! Stages, each timed alone (median of `ROUNDS` after a warm-up):
//! - decode: EIP-2718 envelope decode;
//! - recover: the sender from the signature (libsecp256k1);
//! - execute: revm, sequentially, `block_txs` transactions a block;
//! - state root: the block's state root, divided by its transactions;
//! - block roots: the rest of the seal (transactions and receipts roots,
//!   bloom, header hash), divided by its transactions;
//! - signing: the block signature (file signer) divided by `block_txs`, plus
//!   the preconfirmation batch signature (hot key, Merkle root of a full
//!   mini-block) divided by the mini-block's transactions.
//!
//! Apart from the ceiling, `commit_latency` times this disk's group commit
//! alone (a mini-block's bytes appended, then fdatasync), the floor under
//! every durable preconfirmation.
//!
//! Ceiling = cores / sum of the per-transaction costs: what the machine could
//! do if these stages were all there was and they spread perfectly over the
//! cores. Everything else a node does (network, pool, batch log, fsync,
//! JSON-RPC) is what the end-to-end rate loses against it.

use std::{
    io::Write,
    path::Path,
    time::{Duration, Instant},
};

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};
use tephra_exec::{
    BlockBuilder, ChainSpec, SequentialExecutor, VerifiedTx,
    dev::{first_block, measure as time_median, median},
    verify,
};
use tephra_hsm::{FileSigner, HotKey, MerkleTree, Payload, Signer};

use crate::{
    measure::{LatencySummary, micros, new_histogram},
    workload::Workload,
};

const ROUNDS: usize = 5;
/// Transactions in a full mini-block: the node's `pool.mini_block_txs_max`.
pub const MINI_BLOCK_TXS: usize = 256;

/// Per-transaction costs in microseconds, and the ceiling.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Floor {
    pub workload: String,
    pub txs_measured: usize,
    pub block_txs: usize,
    pub cores: usize,
    pub decode_us: f64,
    pub recover_us: f64,
    pub execute_us: f64,
    pub state_root_us: f64,
    /// The rest of a seal: transactions and receipts roots, bloom, header.
    pub block_roots_us: f64,
    pub signing_us: f64,
    /// One block signature with the file signer (the signed-block goal's
    /// signing latency).
    pub block_sign_us: f64,
    pub total_us: f64,
    pub ceiling_tx_per_s: f64,
}

impl Floor {
    pub fn stages(&self) -> [(&'static str, f64); 6] {
        [
            ("decode", self.decode_us),
            ("recover", self.recover_us),
            ("execute", self.execute_us),
            ("state root", self.state_root_us),
            ("block roots", self.block_roots_us),
            ("signing", self.signing_us),
        ]
    }
}

fn per_tx_us(duration: Duration, txs: usize) -> f64 {
    duration.as_secs_f64() * 1e6 / txs as f64
}

/// Measures the floor on the first `blocks * block_txs` transactions of
/// `workload` (fewer if it is smaller), with `genesis` its genesis JSON.
pub fn measure(
    workload: &Workload,
    genesis: &str,
    blocks: usize,
    block_txs: usize,
    cores: usize,
) -> Result<Floor, String> {
    let count = (blocks * block_txs).min(workload.len());
    if count == 0 || block_txs == 0 {
        return Err("the floor needs at least one transaction".into());
    }
    let spec = ChainSpec::from_genesis_json(genesis).map_err(|e| e.to_string())?;
    let (params, verifier) = first_block(&spec, u64::MAX / 2);
    let raws: Vec<&[u8]> = (0..count).map(|i| workload.tx(i)).collect();

    let decode =
        time_median(ROUNDS, || (), |()| raws.iter().for_each(|raw| drop(std::hint::black_box(verify::decode(raw)))));
    let envelopes =
        raws.iter().map(|raw| verify::decode(raw).map_err(|e| e.to_string())).collect::<Result<Vec<_>, _>>()?;
    let signed: Vec<(alloy_primitives::Signature, B256)> =
        envelopes.iter().map(|tx| (*tx.signature(), tx.signature_hash())).collect();
    let recover = time_median(
        ROUNDS,
        || (),
        |()| {
            for (signature, hash) in &signed {
                assert!(std::hint::black_box(verify::recover_signer(signature, *hash)).is_some());
            }
        },
    );

    let verified: Vec<VerifiedTx> =
        raws.iter().map(|raw| verifier.verify(raw).map_err(|e| e.to_string())).collect::<Result<_, _>>()?;
    let blocks: Vec<Vec<VerifiedTx>> = verified.chunks(block_txs).map(<[VerifiedTx]>::to_vec).collect();
    let mut genesis_state = spec.genesis_state();
    genesis_state.state_root();
    // Execution, the state root and the rest of the seal are timed block by
    // block, apart from each other.
    let (mut execute, mut state_root, mut seal) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=ROUNDS {
        let mut state = genesis_state.clone();
        let (mut execute_round, mut root_round, mut seal_round) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        for txs in &blocks {
            let txs = txs.clone();
            let expected = txs.len();
            let start = Instant::now();
            let mut builder = BlockBuilder::open(params.clone(), &mut state);
            builder.execute(&mut SequentialExecutor, &mut state, txs, |_, _| {});
            execute_round += start.elapsed();
            if builder.transactions().len() != expected {
                return Err(format!("{} of {expected} transactions executed", builder.transactions().len()));
            }
            let start = Instant::now();
            std::hint::black_box(state.state_root());
            root_round += start.elapsed();
            // The seal's own state root now finds nothing left to hash.
            let start = Instant::now();
            std::hint::black_box(builder.seal(&mut state));
            seal_round += start.elapsed();
        }
        if round > 0 {
            execute.push(execute_round);
            state_root.push(root_round);
            seal.push(seal_round);
        }
    }

    let block_key = FileSigner::random().map_err(|e| e.to_string())?;
    let block_sign = time_median(
        ROUNDS,
        || (),
        |()| {
            let payload = Payload::SealedBlock {
                chain_id: spec.chain_id(),
                number: 1,
                block_hash: B256::repeat_byte(7),
                leader_epoch: 0,
            };
            std::hint::black_box(block_key.sign(&payload).expect("a file key signs"));
        },
    );
    let hot = HotKey::generate().map_err(|e| e.to_string())?;
    let leaves: Vec<B256> = (0..MINI_BLOCK_TXS).map(|i| workload.hash(i % workload.len())).collect();
    let batch_sign = time_median(
        ROUNDS,
        || (),
        |()| {
            let tree = MerkleTree::new(&leaves);
            std::hint::black_box(hot.sign_batch(spec.chain_id(), 1, 0, &tree));
        },
    );

    let executed = blocks.iter().map(Vec::len).sum::<usize>();
    let mut floor = Floor {
        workload: workload.manifest.kind.name().to_string(),
        txs_measured: count,
        block_txs,
        cores,
        decode_us: per_tx_us(decode, count),
        recover_us: per_tx_us(recover, count),
        execute_us: per_tx_us(median(execute), executed),
        state_root_us: per_tx_us(median(state_root), executed),
        block_roots_us: per_tx_us(median(seal), executed),
        signing_us: per_tx_us(block_sign, block_txs) + per_tx_us(batch_sign, MINI_BLOCK_TXS),
        block_sign_us: per_tx_us(block_sign, 1),
        total_us: 0.0,
        ceiling_tx_per_s: 0.0,
    };
    floor.total_us = floor.stages().iter().map(|(_, us)| us).sum();
    floor.ceiling_tx_per_s = cores as f64 * 1e6 / floor.total_us;
    Ok(floor)
}

/// Group commits timed by `commit_latency`, and the pause between them (a
/// busy node commits a mini-block about every millisecond).
pub const COMMIT_PROBES: usize = 2_000;
const COMMIT_PAUSE: Duration = Duration::from_millis(1);
/// Bytes of one probe: a full mini-block of transfers (about 110 bytes each).
pub const COMMIT_BYTES: usize = MINI_BLOCK_TXS * 110;

/// This disk's group commit alone, no node and nothing else writing:
/// appends `COMMIT_BYTES` and fdatasyncs, `COMMIT_PROBES` times, in a file
/// under `dir` (removed after), as the node's batch log does per mini-block.
pub fn commit_latency(dir: &Path) -> Result<LatencySummary, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("commit-probe.bin");
    let mut file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let record = vec![0x5a; COMMIT_BYTES];
    let mut commits = new_histogram();
    for _ in 0..COMMIT_PROBES {
        file.write_all(&record).map_err(|e| format!("{}: {e}", path.display()))?;
        let started = Instant::now();
        file.sync_data().map_err(|e| format!("{}: {e}", path.display()))?;
        commits.saturating_record(micros(started.elapsed()));
        std::thread::sleep(COMMIT_PAUSE);
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(LatencySummary::of(&commits).expect("COMMIT_PROBES > 0"))
}
