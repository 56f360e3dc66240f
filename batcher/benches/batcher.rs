//! The batcher's cost at 10,000 transfers a second:
//! `cargo bench -p tephra-batcher --bench batcher`.
//!
//! Blocks of 10,000 signed ETH transfers (1 s of chain each, 1,000
//! recipients) go through what the node's batcher does per block: a span
//! batch, into the channel's brotli stream (flushed), the channel closed
//! into frames, each frame a calldata transaction; then its read-back:
//! the frames assembled, the channel decompressed and its span batches
//! decoded and compared with the blocks' own. Figures, each the median
//! of timed runs after a warm-up, in one run:
//! - the CPU share: time per block, sending and reading back, over the
//!   block time (goal: at most 15% of one core), for each brotli quality
//!   (10 is op-batcher's);
//! - bytes posted per transaction, and the channel's size against the same
//!   blocks compressed as one op-batcher channel (brotli level 10, one
//!   shot) and against the raw content.

#![allow(clippy::print_stdout, reason = "a benchmark reports its figures on stdout")]
#![allow(clippy::cast_possible_truncation, clippy::cast_precision_loss, reason = "counts of a benchmark's own size")]

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, U256};
use tephra_batcher::{
    BROTLI_QUALITY_OP_BATCHER, BatchBlock, ChannelAssembler, ChannelOut, Fees, RawSpanBatch, calldata_tx, compress,
    content_of, parse_frames, payload_of, span_batches_of,
};
use tephra_exec::dev::{DevKey, measure};

const TXS_PER_BLOCK: usize = 10_000;
const BLOCKS: u64 = 4;
const BLOCK_TIME_S: f64 = 1.0;
const CHAIN_ID: u64 = 901;
/// op-batcher's calldata frame: 120,000 bytes a transaction, less the version byte.
const FRAME_SIZE_BYTES: usize = 119_999;
const GENESIS_TIME: u64 = 1_000;

fn blocks() -> Vec<BatchBlock> {
    let senders: Vec<DevKey> = (0..TXS_PER_BLOCK as u64).map(DevKey::from_seed).collect();
    let recipients: Vec<Address> = (0..1_000u64).map(|i| DevKey::from_seed(1_000_000 + i).address()).collect();
    (0..BLOCKS)
        .map(|n| BatchBlock {
            timestamp: GENESIS_TIME + 2 + n,
            parent_hash: B256::repeat_byte(u8::try_from(n).expect("few blocks")),
            origin_number: 7,
            origin_hash: B256::repeat_byte(0x77),
            sequence_number: n,
            txs: senders
                .iter()
                .enumerate()
                .map(|(i, key)| {
                    let value = U256::from(1_000_000_007u64 * (i as u64 + 1) + n);
                    Bytes::from(
                        key.transfer(CHAIN_ID, n, recipients[(i * 7 + n as usize) % 1_000], value).encoded_2718(),
                    )
                })
                .collect(),
        })
        .collect()
}

/// The node's read-back of `payloads`: every block found and equal.
fn read_back(blocks: &[BatchBlock], payloads: &[Bytes]) {
    let mut assembler = ChannelAssembler::new(50);
    let channel = payloads
        .iter()
        .flat_map(|payload| parse_frames(payload).expect("frames"))
        .find_map(|frame| assembler.add(1, &frame))
        .expect("a whole channel");
    let (spans, error) = span_batches_of(&channel);
    assert!(error.is_none() && spans.len() == blocks.len());
    for (span, block) in spans.iter().zip(blocks) {
        assert_eq!(span, &RawSpanBatch::from_blocks(GENESIS_TIME, std::slice::from_ref(block)).unwrap());
    }
}

/// The node's batcher on `blocks`, one block per run: the frames' payloads.
fn batch(blocks: &[BatchBlock], quality: u32) -> Vec<Bytes> {
    let mut channel = ChannelOut::new([9; 16], 1, GENESIS_TIME, quality);
    for (i, block) in blocks.iter().enumerate() {
        channel.add_blocks(1 + i as u64, std::slice::from_ref(block)).expect("a channel's content");
    }
    let closed = channel.close(FRAME_SIZE_BYTES).expect("closed");
    let fees = Fees::suggested(1, 1);
    closed
        .frames
        .iter()
        .enumerate()
        .map(|(nonce, frame)| {
            let payload = Bytes::from(payload_of([frame]));
            calldata_tx(900, nonce as u64, Address::ZERO, payload.clone(), fees);
            payload
        })
        .collect()
}

fn main() {
    let blocks = blocks();
    let txs = blocks.len() * TXS_PER_BLOCK;
    let batches: Vec<Vec<u8>> = blocks
        .iter()
        .map(|b| RawSpanBatch::from_blocks(GENESIS_TIME, std::slice::from_ref(b)).unwrap().batch_bytes())
        .collect();
    let content = content_of(batches.iter().map(Vec::as_slice));
    let op_batcher = compress(&content);
    println!(
        "{} blocks of {TXS_PER_BLOCK} ETH transfers; raw content {} bytes ({:.1} per transaction)",
        blocks.len(),
        content.len(),
        content.len() as f64 / txs as f64
    );
    println!(
        "op-batcher's channel of the same blocks (brotli 10, one shot): {} bytes ({:.1} per transaction, {:.3} of raw)",
        op_batcher.len(),
        op_batcher.len() as f64 / txs as f64,
        op_batcher.len() as f64 / content.len() as f64
    );
    for quality in [BROTLI_QUALITY_OP_BATCHER, 9, 6, 5, 4, 1] {
        let per_run = measure(
            5,
            || (),
            |()| {
                read_back(&blocks, &batch(&blocks, quality));
            },
        );
        let per_block_s = per_run.as_secs_f64() / blocks.len() as f64;
        let share = per_block_s / BLOCK_TIME_S * 100.0;
        let posted: usize = batch(&blocks, quality).iter().map(|payload| payload.len()).sum();
        let verdict = if share <= 15.0 { "meets" } else { "MISSES" };
        println!(
            "quality {quality:>2}: {:>7.1} ms per block = {share:>5.1}% of a core (goal <= 15%: {verdict}); posted {posted} bytes, {:.1} per transaction, {:.3} of op-batcher's",
            per_block_s * 1e3,
            posted as f64 / txs as f64,
            posted as f64 / op_batcher.len() as f64,
        );
    }
}
