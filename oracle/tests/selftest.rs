//! The oracle's own derivation + execution path against a real L1 (anvil, from the workspace's
//! npm install) and a real OptimismPortal2-compatible deposit contract (tephra's
//! contracts/DepositPortal): deposits by an EOA, by plain transfer, from a contract (aliased) and
//! one whose execution reverts on L2; the oracle sequences L2 blocks from kona's own attributes.
//! Then `kona-oracle verify` runs against a stand-in L2 node serving those blocks, and against
//! tampered copies of it, which it must reject. No tephra code is involved.

mod common;

use alloy_eips::BlockNumHash;
use alloy_primitives::{Address, B256, Bytes, U256, hex, keccak256};
use common::*;
use kona_oracle::{
    chain::{Built, Chain},
    genesis::{alias, build_genesis, load_genesis, load_rollup, parse_genesis},
    l1::L1Rpc,
    rpc::{parse_u64, quantity},
};
use kona_protocol::Predeploys;
use op_alloy_consensus::OpBlock;
use serde_json::{Value, json};
use std::{
    path::Path,
    process::Command,
    sync::{Arc, Mutex},
};

fn run_verify(rollup: &Path, genesis: &Path, l1: &str, l2: &str, to: u64) -> (Option<i32>, Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kona-oracle"))
        .args(["verify", "--rollup", rollup.to_str().unwrap(), "--genesis", genesis.to_str().unwrap()])
        .args(["--l1-rpc", l1, "--l2-rpc", l2, "--to", &to.to_string(), "--output-roots", "--timeout", "2"])
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (out.status.code(), lines, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn deposits_derive_and_execute_and_verify_checks_a_served_chain() {
    let anvil = Anvil::start();
    let keys: Vec<Key> = (0..KEYS.len()).map(Key::new).collect();
    let t0 = parse_u64(&anvil.call("eth_getBlockByNumber", json!(["0x0", false]))["timestamp"]).unwrap() + 100;

    // L1 block 1: the portal. The L2 chain starts here (genesis.l1), at the same time.
    let bin = std::fs::read_to_string(manifest_dir().join("../contracts/DepositPortal.bin"))
        .expect("contracts/DepositPortal.bin");
    let deploy = anvil.send(&keys[0].sign(0, None, U256::ZERO, hex::decode(bin.trim()).unwrap()));
    let (l1_genesis_number, l1_genesis_hash) = anvil.mine_at(t0);
    anvil.receipt_ok(&deploy);
    let portal = keys[0].address().create(0);

    // L1 block 2 (12 s later): an EOA's deposit, a plain transfer to the portal, a creation
    // whose init code reverts on L2, and a deposit from a contract (aliased).
    let eoa = anvil.send(&keys[0].sign(
        1,
        Some(portal),
        U256::from(ETHER),
        deposit_call(RECIPIENT, U256::from(7), 100_000, false, &[0xc0, 0xff, 0xee]),
    ));
    let transfer = anvil.send(&keys[1].sign(0, Some(portal), U256::from(ETHER / 2), vec![]));
    let reverting_init = [0x60, 0x00, 0x60, 0x00, 0xfd]; // REVERT(0, 0)
    let reverting = anvil.send(&keys[2].sign(
        0,
        Some(portal),
        U256::from(2 * ETHER),
        deposit_call(Address::ZERO, U256::from(1), 100_000, true, &reverting_init),
    ));
    let forwarded = deposit_call(RECIPIENT, U256::from(3), 50_000, false, &[]);
    let from_contract = anvil.send(&keys[4].sign(0, None, U256::from(3), forwarding_init_code(portal, &forwarded)));
    let contract = keys[4].address().create(0);
    let (_, l1_deposits_hash) = anvil.mine_at(t0 + 12);
    for tx in [&eoa, &transfer, &reverting, &from_contract] {
        anvil.receipt_ok(tx);
    }
    // L1 block 3: empty.
    anvil.mine_at(t0 + 24);

    // The genesis: the testdata alloc at time t0; rollup.json pointing at anvil and the portal.
    let dir = std::env::temp_dir().join(format!("kona-oracle-selftest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
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
    rollup_json["genesis"]["l1"] = json!({"number": l1_genesis_number, "hash": l1_genesis_hash});
    rollup_json["genesis"]["l2_time"] = json!(t0);
    rollup_json["l1_chain_id"] = json!(L1_CHAIN_ID);
    rollup_json["deposit_contract_address"] = json!(portal);
    let rollup_path = dir.join("rollup.json");
    std::fs::write(&rollup_path, rollup_json.to_string()).unwrap();
    let genesis_file = parse_genesis(genesis_json.to_string().as_bytes()).unwrap();
    let genesis_hash = build_genesis(&genesis_file, &load_rollup(&rollup_path).unwrap()).unwrap().header.hash();
    rollup_json["genesis"]["l2"]["hash"] = json!(genesis_hash);
    std::fs::write(&rollup_path, rollup_json.to_string()).unwrap();
    let cfg = load_rollup(&rollup_path).unwrap();
    let genesis = build_genesis(&load_genesis(&genesis_path).unwrap(), &cfg).unwrap();
    assert_eq!(genesis.header.hash(), genesis_hash);
    let out = Command::new(env!("CARGO_BIN_EXE_kona-oracle"))
        .args(["genesis", "--rollup", rollup_path.to_str().unwrap(), "--genesis", genesis_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The oracle sequences: each L2 block takes the next L1 block as origin once its time is
    // reached. User transactions (signed for L2): block 7 creates a Counter, blocks 8 and 9 bump
    // it (code and storage of a contract created by an earlier block).
    let l2_chain_id = cfg.l2_chain_id.id();
    let counter_bin = std::fs::read_to_string(manifest_dir().join("../contracts/Counter.bin")).unwrap();
    let counter = keys[0].address().create(1);
    let user_tx = |n: u64| -> Vec<Bytes> {
        let raw = match n {
            7 => keys[0].sign_for(l2_chain_id, 1, None, U256::ZERO, hex::decode(counter_bin.trim()).unwrap()),
            8 | 9 => keys[0].sign_for(l2_chain_id, n - 6, Some(counter), U256::ZERO, selector("bump()").to_vec()),
            _ => return vec![],
        };
        vec![hex::decode(raw).unwrap().into()]
    };
    let l1 = L1Rpc::new(&anvil.url).unwrap();
    let mut chain = Chain::new(cfg.clone(), genesis.clone(), l1.clone()).unwrap();
    let mut origin = BlockNumHash { number: l1_genesis_number, hash: l1_genesis_hash };
    let mut built: Vec<Built> = Vec::new();
    let last = 13;
    for n in 1..=last {
        let timestamp = t0 + 2 * n;
        if let Some(next) = l1.header_by_number(origin.number + 1).unwrap() {
            if next.timestamp <= timestamp {
                origin = BlockNumHash { number: next.number, hash: next.hash_slow() };
            }
        }
        let block = chain.build_next(origin, user_tx(n), true).unwrap_or_else(|e| panic!("L2 block {n}: {e}"));
        assert_eq!((block.header.number, block.header.timestamp), (n, timestamp));
        built.push(block);
    }

    // Block 6 (t0 + 12) is the first of L1 block 2's epoch: the L1-info transaction, then the
    // four deposits in log order.
    let epoch = &built[5];
    assert_eq!(
        (epoch.l1_origin.number, epoch.l1_origin.hash, epoch.sequence_number),
        (l1_genesis_number + 1, l1_deposits_hash, 0)
    );
    assert_eq!(epoch.derived, 5);
    let statuses: Vec<bool> = epoch.receipts.iter().map(|r| r.status()).collect();
    assert_eq!(statuses, [true, true, true, false, true], "the reverting creation fails, the rest succeed");
    for (i, block) in built.iter().enumerate() {
        let user = usize::from((7..=9).contains(&(i + 1)));
        if i != 5 {
            assert_eq!(block.transactions.len(), 1 + user, "block {}: the L1-info transaction (and a user one)", i + 1);
        }
        assert!(block.receipts.iter().all(|r| r.status()) || i == 5, "block {}", i + 1);
    }
    assert_eq!(chain.storage(counter, U256::ZERO).unwrap(), U256::from(2), "Counter.count after two bumps");
    assert_eq!((built[0].l1_origin.number, built[0].sequence_number), (l1_genesis_number, 1));
    assert_eq!((built[11].l1_origin.number, built[11].sequence_number), (l1_genesis_number + 2, 0));

    // The state: mints, values, nonces (a deposit bumps its sender's nonce, even reverted).
    let account = |chain: &mut Chain, a: Address| chain.account(a).unwrap();
    let eoa_account = account(&mut chain, keys[0].address()).expect("the EOA depositor exists on L2");
    assert_eq!(eoa_account.nonce, 4, "a deposit and three transactions");
    assert!(eoa_account.balance < U256::from(ETHER - 7), "it paid for gas");
    let transfer_account = account(&mut chain, keys[1].address()).unwrap();
    assert_eq!((transfer_account.balance, transfer_account.nonce), (U256::from(ETHER / 2), 1));
    let reverted = account(&mut chain, keys[2].address()).unwrap();
    assert_eq!(
        (reverted.balance, reverted.nonce),
        (U256::from(2 * ETHER), 1),
        "the reverted deposit keeps its mint, not its value"
    );
    assert!(account(&mut chain, keys[2].address().create(0)).is_none(), "nothing was created");
    let aliased = account(&mut chain, alias(contract)).expect("the aliased sender");
    assert_eq!((aliased.balance, aliased.nonce), (U256::ZERO, 1));
    assert!(account(&mut chain, contract).is_none(), "the L1 contract's own address is not the sender");
    let recipient = account(&mut chain, RECIPIENT).unwrap();
    assert_eq!(recipient.balance, U256::from(7 + 3));

    // Output roots: v0 over the state root, the message passer's storage root, the hash.
    for block in &built {
        let mut preimage = [0u8; 128];
        preimage[32..64].copy_from_slice(block.header.state_root.as_slice());
        preimage[64..96].copy_from_slice(block.header.withdrawals_root.unwrap().as_slice());
        preimage[96..].copy_from_slice(block.header.hash().as_slice());
        assert_eq!(block.output_root, Some(keccak256(preimage)));
    }
    let passer = account(&mut chain, Predeploys::L2_TO_L1_MESSAGE_PASSER).unwrap();
    assert_eq!(Some(passer.storage_root), built[last as usize - 1].header.withdrawals_root);

    // `kona-oracle verify` against a node serving this chain: all blocks pass.
    let served = L2Node::default();
    {
        let mut blocks = served.blocks.lock().unwrap();
        blocks.push((chain.block(0).unwrap(), B256::ZERO));
        for block in &built {
            blocks.push((chain.block(block.header.number).unwrap(), block.output_root.unwrap()));
        }
    }
    let url = served.serve();
    let (code, lines, stderr) = run_verify(&rollup_path, &genesis_path, &anvil.url, &url, last);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(lines.len() as u64, last + 1, "{lines:?}");
    assert_eq!(lines[5]["deposits"], json!(5));
    assert_eq!((&lines[7]["user_transactions"], &lines[7]["transactions"]), (&json!(1), &json!(2)));
    assert_eq!(lines[5]["output_root"], json!(built[5].output_root.unwrap()));
    assert_eq!(lines[last as usize]["result"], json!("ok"));

    // Waiting: block 14 is never produced, the wait times out (exit 2).
    let (code, _, stderr) = run_verify(&rollup_path, &genesis_path, &anvil.url, &url, last + 1);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("not produced"), "{stderr}");

    // Another genesis served: a mismatch at block 0.
    let other = L2Node { blocks: Arc::new(Mutex::new(served.blocks.lock().unwrap().clone())) };
    other.blocks.lock().unwrap()[0].0.header.gas_limit += 1;
    let (code, lines, stderr) = run_verify(&rollup_path, &genesis_path, &anvil.url, &other.serve(), last);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!((&lines[0]["block"], &lines[0]["ok"]), (&json!(0), &json!(false)), "{lines:?}");

    // Tampered copies: each is a mismatch (exit 1) at the block tampered with.
    let tamper = |n: usize, change: &dyn Fn(&mut OpBlock, &mut B256)| {
        let node = L2Node { blocks: Arc::new(Mutex::new(served.blocks.lock().unwrap().clone())) };
        {
            let mut blocks = node.blocks.lock().unwrap();
            let (block, root) = &mut blocks[n];
            change(block, root);
        }
        let (code, lines, stderr) = run_verify(&rollup_path, &genesis_path, &anvil.url, &node.serve(), last);
        assert_eq!(code, Some(1), "{stderr}");
        let failure = lines.last().unwrap().clone();
        assert_eq!((failure["block"].as_u64(), &failure["ok"]), (Some(n as u64), &json!(false)), "{failure}");
        failure
    };
    // A wrong output root.
    let failure = tamper(4, &|_, root| *root = B256::repeat_byte(1));
    assert_eq!(failure["error"], json!("output root differs"));
    // Another gas limit: the header differs from what kona builds.
    let failure = tamper(3, &|block, _| block.header.gas_limit -= 1);
    assert_eq!(failure["error"], json!("block hash differs"));
    assert_eq!(failure["header_diff"][0]["field"], json!("gas_limit"), "{failure}");
    // The deposits in another order (the header left as it was).
    let failure = tamper(6, &|block, _| block.body.transactions.swap(1, 2));
    assert!(failure["transaction_diff"].as_array().is_some_and(|d| d.len() == 2), "{failure}");
    // A deposit left out.
    let failure = tamper(6, &|block, _| {
        block.body.transactions.remove(4);
    });
    assert!(failure.get("error").is_some(), "{failure}");
    // A user transaction left out (the header left as it was).
    let failure = tamper(8, &|block, _| {
        block.body.transactions.remove(1);
    });
    assert_eq!(failure["error"], json!("block hash differs"), "{failure}");
    // An L1 origin the L1 does not have.
    let failure = tamper(2, &|block, _| {
        let tx = block.body.transactions[0].as_deposit().unwrap().inner().clone();
        let mut input = tx.input.to_vec();
        input[100] ^= 1; // the L1 block hash (Isthmus calldata bytes 100..132)
        let tx = op_alloy_consensus::TxDeposit { input: Bytes::from(input), ..tx };
        block.body.transactions[0] =
            op_alloy_consensus::OpTxEnvelope::Deposit(alloy_primitives::Sealable::seal_slow(tx));
    });
    assert!(failure["error"].as_str().unwrap().contains("L1-info names"), "{failure}");
    std::fs::remove_dir_all(dir).unwrap();
}
