//! Block shape, the rules every follower checks of a header: a whole-second
//! timestamp strictly above its parent's, on its parent's hash, and no block
//! sealed before the wall clock reaches its timestamp, a full one included.

mod common;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, U256};
use common::{TephraNode, quantity};
use serde_json::{Value, json};
use tephra_exec::dev::DevKey;

/// Room for three transfers a block, so that a burst fills several blocks.
const GENESIS_GAS_LIMIT: u64 = 3 * 21_000;
/// Twelve: at least three full blocks even if a seal falls inside the burst.
const TRANSFERS: u64 = 12;

fn unix_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

#[test]
fn blocks_are_whole_seconds_apart_and_none_is_sealed_ahead_of_the_clock() {
    let genesis_dir = common::fresh_dir("block-shape-genesis");
    let mut genesis: Value =
        serde_json::from_str(&std::fs::read_to_string(common::workspace_root().join("exec/genesis/dev.json")).unwrap())
            .unwrap();
    genesis["gasLimit"] = json!(format!("{GENESIS_GAS_LIMIT:#x}"));
    let genesis_path = genesis_dir.join("genesis.json");
    std::fs::write(&genesis_path, genesis.to_string()).unwrap();
    let node = TephraNode::start("block-shape", &format!("[node]\ngenesis = \"{}\"\n", genesis_path.display()));

    // A burst the open block cannot hold: the rest waits for the next blocks.
    let key = DevKey::dev(5);
    let hashes: Vec<Value> = (0..TRANSFERS)
        .map(|nonce| {
            let tx = key.transfer(31337, nonce, Address::with_last_byte(0x99), U256::from(1));
            node.rpc("eth_sendRawTransaction", json!([format!("0x{}", hex::encode(tx.encoded_2718()))]))
        })
        .collect();

    // Watch the head, noting when each block is first seen.
    let mut seen_ms = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !hashes.iter().all(|hash| node.rpc("eth_getTransactionReceipt", json!([hash])).is_object()) {
        assert!(Instant::now() < deadline, "the burst was not sealed in time");
        seen_ms.entry(quantity(&node.rpc("eth_blockNumber", json!([])))).or_insert_with(unix_ms);
        std::thread::sleep(Duration::from_millis(5));
    }

    let head = quantity(&node.rpc("eth_blockNumber", json!([])));
    let block = |number: u64| node.rpc("eth_getBlockByNumber", json!([format!("{number:#x}"), false]));
    let mut full_blocks = 0;
    let mut parent = block(0);
    for number in 1..=head {
        let child = block(number);
        assert_eq!(child["parentHash"], parent["hash"], "block {number} is on its parent");
        let (timestamp, parent_timestamp) = (quantity(&child["timestamp"]), quantity(&parent["timestamp"]));
        assert!(timestamp > parent_timestamp, "block {number} at {timestamp} s, its parent at {parent_timestamp} s");
        if let Some(seen) = seen_ms.get(&number) {
            assert!(*seen >= timestamp * 1000, "block {number} stamped {timestamp} s was sealed at {seen} ms");
        }
        if quantity(&child["gasUsed"]) == GENESIS_GAS_LIMIT {
            full_blocks += 1;
        }
        parent = child;
    }
    assert!(full_blocks >= 3, "the burst filled {full_blocks} blocks, three expected");
    assert!(quantity(&parent["timestamp"]) * 1000 <= unix_ms(), "the head is not stamped ahead of the clock");
}
