//! `kona-oracle derive` against a real L1 (anvil) with no tephra involved: the oracle builds a
//! small OP chain itself (deposits, transfers, a contract creation and call), posts it as a
//! batcher would (a brotli span batch in two calldata frames, then a zlib channel of singular
//! batches in a blob), and the derive mode must re-derive exactly those blocks from the L1 alone. Past
//! the batches, the sequencing window runs out and kona derives deposit-only blocks, which
//! must be the ones the oracle builds for those epochs. Then the failure modes: L1 data
//! missing (exit 2), a block hash that differs (exit 1 with a diff), and
//! `--expect-deposit-only`.

mod common;

use alloy_consensus::{
    BlobTransactionSidecar, SignableTransaction, Transaction, TxEip4844, TxEip4844Variant, TxEip4844WithSidecar,
    TxEnvelope, transaction::SignerRecoverable,
};
use alloy_eips::BlockNumHash;
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, FixedBytes, U256, hex};
use common::*;
use kona_derive::{ChainProvider, PipelineErrorKind};
use kona_oracle::{
    blobs::{L1Blobs, versioned_hash},
    block_on,
    chain::{Built, Chain},
    genesis::{build_genesis, load_genesis, load_rollup, parse_genesis},
    l1::L1Rpc,
    rpc::{parse_u64, quantity},
};
use kona_protocol::{Batch, Frame, SingleBatch, SpanBatch};
use serde_json::{Value, json};
use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
};

/// The batcher: anvil's dev account 3.
const BATCHER_KEY: usize = 3;
const SEQ_WINDOW: u64 = 4;
const L1_BLOCK_TIME: u64 = 12;

fn run_derive(
    rollup: &Path,
    genesis: &Path,
    l1: &str,
    l2: &str,
    to: u64,
    extra: &[&str],
) -> (Option<i32>, Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kona-oracle"))
        .args(["derive", "--rollup", rollup.to_str().unwrap(), "--genesis", genesis.to_str().unwrap()])
        .args(["--l1-rpc", l1, "--l2-rpc", l2, "--to", &to.to_string(), "--timeout", "10"])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    (out.status.code(), lines, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The batch a batcher posts for a block: its parent, epoch, time and user transactions.
fn single_batch(block: &Built) -> SingleBatch {
    SingleBatch {
        parent_hash: block.header.parent_hash,
        epoch_num: block.l1_origin.number,
        epoch_hash: block.l1_origin.hash,
        timestamp: block.header.timestamp,
        transactions: block.transactions[block.derived..].to_vec(),
    }
}

/// A channel's batches: each an RLP string of `type ‖ payload`.
fn channel_rlp(batches: &[Batch]) -> Vec<u8> {
    let mut rlp = Vec::new();
    for batch in batches {
        let mut encoded = Vec::new();
        batch.encode(&mut encoded).unwrap();
        rlp.extend(alloy_rlp::encode(Bytes::from(encoded)));
    }
    rlp
}

/// Fjord's brotli channel: the version byte 0x01, then brotli (quality 10, window 22).
fn brotli_channel(rlp: &[u8]) -> Vec<u8> {
    let mut out = vec![0x01];
    {
        let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 10, 22);
        writer.write_all(rlp).unwrap();
    }
    out
}

/// Bedrock's zlib channel.
fn zlib_channel(rlp: &[u8]) -> Vec<u8> {
    let mut writer = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    writer.write_all(rlp).unwrap();
    writer.finish().unwrap()
}

/// Batcher transaction calldata: the derivation version 0, then frames.
fn batcher_payload(frames: &[Frame]) -> Vec<u8> {
    let mut payload = vec![0x00];
    for frame in frames {
        payload.extend(frame.encode());
    }
    payload
}

/// OP blob encoding v0 (op-service `eth.Blob.FromData`): the stream `0x00 (version) ‖ length
/// (u24) ‖ data` in rounds of four field elements, each carrying 31 bytes in its last 31 bytes
/// and 6 bits in its first byte (3 more bytes per round).
fn op_blob(data: &[u8]) -> Vec<u8> {
    assert!(data.len() <= 130_044);
    let length = data.len() as u32;
    let stream = [&[0, (length >> 16) as u8, (length >> 8) as u8, length as u8], data].concat();
    let mut blob = vec![0u8; 131_072];
    let mut write = 0;
    let mut rest = stream.as_slice();
    let mut take = |n: usize| -> Vec<u8> {
        let mut out = vec![0u8; n];
        let (now, later) = rest.split_at(n.min(rest.len()));
        out[..now.len()].copy_from_slice(now);
        rest = later;
        out
    };
    let mut element = |blob: &mut Vec<u8>, first: u8, rest: &[u8]| {
        assert_eq!(first & 0b1100_0000, 0);
        blob[write] = first;
        blob[write + 1..write + 32].copy_from_slice(rest);
        write += 32;
    };
    for _ in 0..stream.len().div_ceil(127) {
        let a = take(31);
        let x = take(1)[0];
        let b = take(31);
        let y = take(1)[0];
        let c = take(31);
        let z = take(1)[0];
        let d = take(31);
        element(&mut blob, x & 0b0011_1111, &a);
        element(&mut blob, (y & 0b0000_1111) | ((x & 0b1100_0000) >> 2), &b);
        element(&mut blob, z & 0b0011_1111, &c);
        element(&mut blob, ((z & 0b1100_0000) >> 2) | ((y & 0b1111_0000) >> 4), &d);
    }
    blob
}

/// A signed blob transaction (network form, with its KZG sidecar) carrying `data` in one blob.
fn blob_tx(key: &Key, nonce: u64, to: Address, data: &[u8]) -> (String, B256) {
    let blob = op_blob(data);
    let settings = c_kzg::ethereum_kzg_settings(0);
    let kzg_blob = c_kzg::Blob::from_bytes(&blob).unwrap();
    let commitment = settings.blob_to_kzg_commitment(&kzg_blob).unwrap().to_bytes();
    let proof = settings.compute_blob_kzg_proof(&kzg_blob, &commitment).unwrap().to_bytes();
    let blob = alloy_eips::eip4844::Blob::from_slice(&blob);
    let hash = versioned_hash(&blob).unwrap();
    let tx = TxEip4844 {
        chain_id: L1_CHAIN_ID,
        nonce,
        gas_limit: 100_000,
        max_fee_per_gas: 100_000_000_000,
        max_priority_fee_per_gas: 1,
        to,
        blob_versioned_hashes: vec![hash],
        max_fee_per_blob_gas: 1_000_000_000,
        ..Default::default()
    };
    let sidecar = BlobTransactionSidecar {
        blobs: vec![blob],
        commitments: vec![FixedBytes::from(*commitment)],
        proofs: vec![FixedBytes::from(*proof)],
    };
    let tx = TxEip4844Variant::TxEip4844WithSidecar(TxEip4844WithSidecar { tx, sidecar });
    let signature = key.sign_hash(tx.signature_hash());
    (format!("0x{}", hex::encode(TxEnvelope::Eip4844(tx.into_signed(signature)).encoded_2718())), hash)
}

fn write_chain_files(dir: &Path, t0: u64, l1_genesis: BlockNumHash, portal: Address) -> (PathBuf, PathBuf) {
    let mut genesis_json: Value = serde_json::from_slice(
        &kona_oracle::genesis::read_file(&manifest_dir().join("../testdata/op/420110017-genesis-l2.json.gz")).unwrap(),
    )
    .unwrap();
    genesis_json["timestamp"] = json!(quantity(t0));
    let genesis_path = dir.join("genesis.json");
    std::fs::write(&genesis_path, genesis_json.to_string()).unwrap();
    let mut rollup_json: Value =
        serde_json::from_slice(&std::fs::read(manifest_dir().join("../testdata/op/420110017-rollup.json")).unwrap())
            .unwrap();
    rollup_json["genesis"]["l1"] = json!({"number": l1_genesis.number, "hash": l1_genesis.hash});
    rollup_json["genesis"]["l2_time"] = json!(t0);
    rollup_json["genesis"]["system_config"]["batcherAddr"] = json!(Key::new(BATCHER_KEY).address());
    rollup_json["l1_chain_id"] = json!(L1_CHAIN_ID);
    rollup_json["deposit_contract_address"] = json!(portal);
    rollup_json["seq_window_size"] = json!(SEQ_WINDOW);
    let rollup_path = dir.join("rollup.json");
    std::fs::write(&rollup_path, rollup_json.to_string()).unwrap();
    let genesis_file = parse_genesis(genesis_json.to_string().as_bytes()).unwrap();
    let hash = build_genesis(&genesis_file, &load_rollup(&rollup_path).unwrap()).unwrap().header.hash();
    rollup_json["genesis"]["l2"]["hash"] = json!(hash);
    std::fs::write(&rollup_path, rollup_json.to_string()).unwrap();
    (rollup_path, genesis_path)
}

/// Serves the oracle's blocks 0..=last, with `change` applied to some of them.
fn serve(chain: &Chain, last: u64, change: &dyn Fn(u64, &mut op_alloy_consensus::OpBlock)) -> String {
    let node = L2Node { blocks: Arc::new(Mutex::new(Vec::new())) };
    for n in 0..=last {
        let mut block = chain.block(n).unwrap();
        change(n, &mut block);
        node.blocks.lock().unwrap().push((block, B256::ZERO));
    }
    node.serve()
}

/// The L2 block after the head: the next L1 block becomes the origin once its time is reached.
fn build(chain: &mut Chain, l1: &L1Rpc, user: Vec<Bytes>) -> Built {
    let head = chain.head_info().unwrap();
    let timestamp = head.block_info.timestamp + chain.config().block_time;
    let mut origin = head.l1_origin;
    if let Some(next) = l1.header_by_number(origin.number + 1).unwrap() {
        if next.timestamp <= timestamp {
            origin = BlockNumHash { number: next.number, hash: next.hash_slow() };
        }
    }
    chain.build_next(origin, user, false).unwrap_or_else(|e| panic!("L2 block {}: {e}", head.block_info.number + 1))
}

#[test]
fn derives_the_chain_from_batches_on_the_l1_and_deposit_only_blocks_past_the_window() {
    let anvil = Anvil::start();
    let keys: Vec<Key> = (0..KEYS.len()).map(Key::new).collect();
    let batcher = &keys[BATCHER_KEY];
    let t0 = parse_u64(&anvil.call("eth_getBlockByNumber", json!(["0x0", false]))["timestamp"]).unwrap() + 100;
    let l1_time = |number: u64| t0 + (number - 1) * L1_BLOCK_TIME;

    // L1 block 1: the portal (the L2 chain's genesis.l1); block 2: keys[0] deposits 1 ether
    // (a plain transfer: to its own L2 account); block 3: empty.
    let bin = std::fs::read_to_string(manifest_dir().join("../contracts/DepositPortal.bin")).unwrap();
    let deploy = anvil.send(&keys[0].sign(0, None, U256::ZERO, hex::decode(bin.trim()).unwrap()));
    let (l1_genesis_number, l1_genesis_hash) = anvil.mine_at(l1_time(1));
    assert_eq!(l1_genesis_number, 1);
    anvil.receipt_ok(&deploy);
    let portal = keys[0].address().create(0);
    let deposit = anvil.send(&keys[0].sign(1, Some(portal), U256::from(ETHER), vec![]));
    anvil.mine_at(l1_time(2));
    anvil.receipt_ok(&deposit);
    anvil.mine_at(l1_time(3));

    let dir = std::env::temp_dir().join(format!("kona-oracle-derive-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let l1_genesis = BlockNumHash { number: l1_genesis_number, hash: l1_genesis_hash };
    let (rollup_path, genesis_path) = write_chain_files(&dir, t0, l1_genesis, portal);
    let cfg = load_rollup(&rollup_path).unwrap();
    let genesis = build_genesis(&load_genesis(&genesis_path).unwrap(), &cfg).unwrap();
    let l2_chain_id = cfg.l2_chain_id.id();

    // The oracle sequences L2 blocks 1..=13 (L1 origins 1, 2, 3). User transactions from
    // keys[0] (funded by its deposit in block 6, which used L2 nonce 0): transfers, a Counter
    // creation and a bump().
    let counter_bin =
        hex::decode(std::fs::read_to_string(manifest_dir().join("../contracts/Counter.bin")).unwrap().trim()).unwrap();
    let counter = keys[0].address().create(2);
    let l2_tx = |nonce: u64, to: Option<Address>, value: u64, input: Vec<u8>| -> Bytes {
        hex::decode(keys[0].sign_for(l2_chain_id, nonce, to, U256::from(value), input)).unwrap().into()
    };
    let user_txs = |n: u64| -> Vec<Bytes> {
        match n {
            7 => vec![l2_tx(1, Some(RECIPIENT), 1000, vec![])],
            8 => vec![l2_tx(2, None, 0, counter_bin.clone()), l2_tx(3, Some(RECIPIENT), 7, vec![0xab])],
            10 => vec![l2_tx(4, Some(counter), 0, selector("bump()").to_vec())],
            13 => vec![l2_tx(5, Some(RECIPIENT), 1, vec![])],
            _ => vec![],
        }
    };
    let l1 = L1Rpc::new(&anvil.url).unwrap();
    let mut chain = Chain::new(cfg.clone(), genesis, l1.clone()).unwrap();
    let mut built: Vec<Built> = Vec::new();
    for n in 1..=13 {
        let block = build(&mut chain, &l1, user_txs(n));
        assert_eq!((block.header.number, block.header.timestamp), (n, t0 + 2 * n));
        assert_eq!(block.transactions.len() - block.derived, user_txs(n).len());
        assert!(block.receipts.iter().all(|r| r.status()), "block {n}");
        built.push(block);
    }
    assert_eq!(built[5].derived, 2, "block 6: the L1-info transaction and the deposit");
    assert_eq!(built[12].l1_origin.number, 3);
    assert_eq!(chain.storage(counter, U256::ZERO).unwrap(), U256::from(1), "Counter.count");

    // L1 block 4: a span batch of blocks 1..=8 (brotli), in two frames, each in its own
    // batcher transaction, after another account's transaction with a span batch of other
    // batches for them (without their user transactions; kona must ignore it). L1 block 5: a zlib channel of singular batches for blocks 9..=13,
    // one frame in a blob, after another account's blob with a channel of other batches for
    // them (kona must ignore it), and a deposit.
    let span_of = |with_transactions: bool| {
        let mut span =
            SpanBatch { chain_id: l2_chain_id, genesis_timestamp: cfg.genesis.l2_time, ..Default::default() };
        for block in &built[..8] {
            let batch = SingleBatch {
                transactions: if with_transactions { single_batch(block).transactions } else { vec![] },
                ..single_batch(block)
            };
            span.append_singular_batch(batch, block.sequence_number).unwrap();
        }
        brotli_channel(&channel_rlp(&[Batch::Span(span)]))
    };
    let channel = span_of(true);
    let half = channel.len() / 2;
    let span_id = [0x5a; 16];
    let payloads = [
        batcher_payload(&[Frame::new(span_id, 0, channel[..half].to_vec(), false)]),
        batcher_payload(&[Frame::new(span_id, 1, channel[half..].to_vec(), true)]),
    ];
    let inbox = cfg.batch_inbox_address;
    let stray_span = batcher_payload(&[Frame::new([0x5d; 16], 0, span_of(false), true)]);
    let stray = anvil.send(&keys[4].sign(0, Some(inbox), U256::ZERO, stray_span.clone()));
    let batch_txs: Vec<String> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| anvil.send(&batcher.sign(i as u64, Some(inbox), U256::ZERO, p.clone())))
        .collect();
    let (_, l1_block_4) = anvil.mine_at(l1_time(4));
    for tx in batch_txs.iter().chain([&stray]) {
        anvil.receipt_ok(tx);
    }
    let singles: Vec<Batch> = built[8..].iter().map(|b| Batch::Single(single_batch(b))).collect();
    let singles_payload = batcher_payload(&[Frame::new([0x5b; 16], 0, zlib_channel(&channel_rlp(&singles)), true)]);
    let empties: Vec<Batch> =
        built[8..].iter().map(|b| Batch::Single(SingleBatch { transactions: vec![], ..single_batch(b) })).collect();
    let stray_payload = batcher_payload(&[Frame::new([0x5c; 16], 0, zlib_channel(&channel_rlp(&empties)), true)]);
    let (stray_blob_tx, stray_blob) = blob_tx(&keys[4], 1, inbox, &stray_payload);
    let (batch_blob_tx, batch_blob) = blob_tx(batcher, 2, inbox, &singles_payload);
    let stray_5 = anvil.send(&stray_blob_tx);
    let batch_5 = anvil.send(&batch_blob_tx);
    let deposit_5 = anvil.send(&keys[1].sign(0, Some(portal), U256::from(ETHER / 4), vec![]));
    let (_, l1_block_5) = anvil.mine_at(l1_time(5));
    for tx in [&stray_5, &batch_5, &deposit_5] {
        anvil.receipt_ok(tx);
    }

    // The L1 transactions as kona-derive's data source reads them (ChainProvider).
    let mut provider = l1.clone();
    let (info, txs) = block_on(provider.block_info_and_transactions_by_hash(l1_block_4)).unwrap();
    assert_eq!((info.number, info.hash, info.timestamp), (4, l1_block_4, l1_time(4)));
    assert_eq!(txs.len(), 3);
    let expected =
        [(keys[4].address(), &stray_span), (batcher.address(), &payloads[0]), (batcher.address(), &payloads[1])];
    for (tx, (from, payload)) in txs.iter().zip(expected) {
        assert_eq!((tx.recover_signer().unwrap(), tx.to()), (from, Some(inbox)));
        assert_eq!(tx.input().as_ref(), payload.as_slice());
    }
    let (info, txs) = block_on(provider.block_info_and_transactions_by_hash(l1_block_5)).unwrap();
    assert_eq!((info.number, txs.len()), (5, 3));
    for (tx, (from, blob)) in txs.iter().zip([(keys[4].address(), stray_blob), (batcher.address(), batch_blob)]) {
        let TxEnvelope::Eip4844(signed) = tx else { panic!("not a blob transaction: {tx:?}") };
        assert!(matches!(signed.tx(), TxEip4844Variant::TxEip4844(_)), "the block form, without the sidecar");
        assert_eq!(
            (tx.recover_signer().unwrap(), tx.to(), tx.blob_versioned_hashes()),
            (from, Some(inbox), Some(&[blob][..]))
        );
    }
    assert_eq!(txs[2].to(), Some(portal));
    // The blobs, as kona-derive's BlobProvider reads them: checked against their hashes.
    let blobs = L1Blobs::new(l1.clone());
    assert_eq!(blobs.blob(batch_blob).unwrap().as_slice(), op_blob(&singles_payload).as_slice());
    assert!(blobs.blob(B256::repeat_byte(1)).unwrap_err().contains("does not have it"));
    let (_, txs) = block_on(provider.block_info_and_transactions_by_hash(l1_genesis_hash)).unwrap();
    assert_eq!(txs.len(), 1, "the portal's creation");
    // An L1 block that does not exist (yet) is a temporary error: kona-derive waits.
    let missing = block_on(provider.block_info_and_transactions_by_hash(B256::repeat_byte(7))).unwrap_err();
    assert!(missing.retry, "{missing}");
    assert!(matches!(PipelineErrorKind::from(missing), PipelineErrorKind::Temporary(_)));
    let ahead = block_on(provider.block_info_by_number(6)).unwrap_err();
    assert!(matches!(PipelineErrorKind::from(ahead), PipelineErrorKind::Temporary(_)));

    // derive, blocks 1..=13: kona's pipeline re-derives exactly the oracle's blocks.
    let url = serve(&chain, 13, &|_, _| {});
    let (code, lines, stderr) = run_derive(&rollup_path, &genesis_path, &anvil.url, &url, 13, &[]);
    assert_eq!(code, Some(0), "{stderr}\n{lines:?}");
    assert_eq!(lines.len(), 14, "{lines:?}");
    for (i, block) in built.iter().enumerate() {
        let line = &lines[i];
        let derived_from = if i < 8 { (4, l1_block_4) } else { (5, l1_block_5) };
        assert_eq!(line["block"], json!(i + 1), "{line}");
        assert_eq!((&line["ok"], &line["check"]), (&json!(true), &json!("hash")), "{line}");
        assert_eq!(line["hash"], json!(block.header.hash()), "{line}");
        assert_eq!(line["derived_from"], json!({"number": derived_from.0, "hash": derived_from.1}), "{line}");
        assert_eq!(line["user_transactions"], json!(block.transactions.len() - block.derived), "{line}");
        assert_eq!(line["l1_origin"], json!(block.l1_origin.number), "{line}");
    }
    assert_eq!(lines[13]["result"], json!("ok"));
    assert_eq!(lines[13]["head"], json!(built[12].header.hash()));

    // Block 14 needs more of the L1: no batch for it, and the sequencing window of epoch 3 is
    // open until L1 block 3 + 4. Waiting times out: exit 2.
    let url = serve(&chain, 13, &|_, _| {});
    let out = Command::new(env!("CARGO_BIN_EXE_kona-oracle"))
        .args(["derive", "--rollup", rollup_path.to_str().unwrap(), "--genesis", genesis_path.to_str().unwrap()])
        .args(["--l1-rpc", &anvil.url, "--l2-rpc", &url, "--to", "14", "--timeout", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no L1 data to derive it"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 13, "blocks 1..=13 were printed");

    // L1 block 6: one more span batch, for blocks 14 and 15; block 14's transaction has a nonce
    // far ahead, so kona-executor rejects the block. Under Holocene it becomes deposit-only
    // and the rest of the channel (block 15, with a valid transfer) is dropped. L1 blocks
    // 7..=12: no batches. The oracle extends its chain with deposit-only blocks (L1-info and
    // the user deposit of L1 block 5, in block 24) up to block 30.
    let mut span = SpanBatch { chain_id: l2_chain_id, genesis_timestamp: cfg.genesis.l2_time, ..Default::default() };
    let head = &built[12];
    for (i, transaction) in
        [l2_tx(99, Some(RECIPIENT), 1, vec![]), l2_tx(6, Some(RECIPIENT), 1, vec![])].into_iter().enumerate()
    {
        let batch = SingleBatch {
            parent_hash: if i == 0 { head.header.hash() } else { B256::ZERO },
            epoch_num: head.l1_origin.number,
            epoch_hash: head.l1_origin.hash,
            timestamp: head.header.timestamp + 2 * (i as u64 + 1),
            transactions: vec![transaction],
        };
        span.append_singular_batch(batch, head.sequence_number + 1 + i as u64).unwrap();
    }
    let rejected =
        batcher_payload(&[Frame::new([0x5e; 16], 0, brotli_channel(&channel_rlp(&[Batch::Span(span)])), true)]);
    let batch_6 = anvil.send(&batcher.sign(3, Some(inbox), U256::ZERO, rejected));
    let (_, l1_block_6) = anvil.mine_at(l1_time(6));
    anvil.receipt_ok(&batch_6);
    for number in 7..=12 {
        anvil.mine_at(l1_time(number));
    }
    for n in 14..=30 {
        let block = build(&mut chain, &l1, vec![]);
        assert_eq!(block.header.number, n);
        built.push(block);
    }
    assert_eq!((built[23].l1_origin.number, built[23].derived), (5, 2), "block 24: L1-info and the deposit");
    let last = 30;

    // derive, blocks 1..=30: the window ran out, kona derives the same deposit-only blocks.
    let url = serve(&chain, last, &|_, _| {});
    let (code, lines, stderr) = run_derive(&rollup_path, &genesis_path, &anvil.url, &url, last, &[]);
    assert_eq!(code, Some(0), "{stderr}\n{lines:?}");
    assert_eq!(lines.len() as u64, last + 1, "{lines:?}");
    for n in 14..=last {
        let line = &lines[n as usize - 1];
        let block = &built[n as usize - 1];
        assert_eq!((&line["hash"], &line["check"]), (&json!(block.header.hash()), &json!("hash")), "{line}");
        assert_eq!(line["user_transactions"], json!(0), "{line}");
        if n == 14 {
            assert_eq!(line["derived_from"], json!({"number": 6, "hash": l1_block_6}), "{line}");
            assert!(line["replaced_by_deposits"].as_str().is_some_and(|e| e.contains("nonce")), "{line}");
            continue;
        }
        assert!(line.get("replaced_by_deposits").is_none(), "{line}");
        let origin = line["l1_origin"].as_u64().unwrap();
        assert!(line["derived_from"]["number"].as_u64().unwrap() >= origin + SEQ_WINDOW, "{line}");
    }
    assert_eq!(lines[23]["deposits"], json!(2));

    // A served block that differs (another gas limit): exit 1 at that block, with a diff.
    let url = serve(&chain, last, &|n, block| {
        if n == 10 {
            block.header.gas_limit -= 1;
        }
    });
    let (code, lines, stderr) = run_derive(&rollup_path, &genesis_path, &anvil.url, &url, last, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(lines.len(), 10, "{lines:?}");
    let failure = &lines[9];
    assert_eq!((&failure["block"], &failure["ok"]), (&json!(10), &json!(false)), "{failure}");
    assert_eq!(failure["error"], json!("block hash differs"));
    assert_eq!(failure["oracle_hash"], json!(built[9].header.hash()));
    assert_eq!(failure["header_diff"][0]["field"], json!("gas_limit"), "{failure}");
    assert_eq!(failure["derived_from"]["number"], json!(5), "block 10 is in the channel of L1 block 5");

    // --expect-deposit-only: a node whose blocks 14..=16 are not the deposit-only ones (as if
    // its batcher had been held back past the window) and which has nothing after them. They
    // must differ; later blocks are derived without comparing.
    let url = serve(&chain, 16, &|n, block| {
        if n >= 14 {
            block.header.gas_limit += 1;
        }
    });
    let range = ["--expect-deposit-only", "14..=16"];
    let (code, lines, stderr) = run_derive(&rollup_path, &genesis_path, &anvil.url, &url, last, &range);
    assert_eq!(code, Some(0), "{stderr}\n{lines:?}");
    assert_eq!(lines.len() as u64, last + 1);
    for n in 14..=16 {
        let line = &lines[n - 1];
        assert_eq!(line["check"], json!("deposit-only"), "{line}");
        assert_eq!(line["hash"], json!(built[n - 1].header.hash()), "{line}");
        assert_ne!(line["tephra_hash"], line["hash"], "{line}");
    }
    for n in 17..=last as usize {
        assert_eq!(
            (&lines[n - 1]["check"], &lines[n - 1]["hash"]),
            (&json!("none"), &json!(built[n - 1].header.hash()))
        );
    }
    assert_eq!(lines[last as usize]["compared"], json!(16));
    // The same range on a node that does have the deposit-only blocks: exit 1.
    let url = serve(&chain, last, &|_, _| {});
    let (code, lines, stderr) = run_derive(&rollup_path, &genesis_path, &anvil.url, &url, last, &range);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(lines.last().unwrap()["block"], json!(14));
    assert!(lines.last().unwrap()["error"].as_str().unwrap().contains("expected it to differ"), "{lines:?}");
    // A range over blocks that carry user transactions: exit 1.
    let (code, lines, stderr) =
        run_derive(&rollup_path, &genesis_path, &anvil.url, &url, last, &["--expect-deposit-only", "7..=8"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(lines.last().unwrap()["block"], json!(7));
    assert!(lines.last().unwrap()["error"].as_str().unwrap().contains("user transactions"), "{lines:?}");
    // Not a range: a usage error.
    let (code, _, stderr) =
        run_derive(&rollup_path, &genesis_path, &anvil.url, &url, last, &["--expect-deposit-only", "16..=14"]);
    assert_eq!(code, Some(2), "{stderr}");

    std::fs::remove_dir_all(dir).unwrap();
}
