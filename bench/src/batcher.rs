//! `tephra-bench batcher`: how long a block waits for L1. An OP Stack devnet
//! (anvil as the L1, a block every 2 s; `tephra devnet --setup-only`, the
//! batcher on) under a steady load of transfers; every 100 ms the bench
//! reads `optimism_syncStatus` and notes when each block is first posted
//! (its batch read back from L1: `pending_safe_l2`) and first safe. The
//! delay of a block is from its timestamp (its seal) to that moment.
//! Reported beside the L1 block time, measured in the same run from the L1's
//! own timestamps.

use std::{
    collections::BTreeMap,
    path::Path,
    process::Command,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, U256};
use serde_json::{Value, json};
use tephra_exec::dev::DevKey;
use tephra_testkit::{anvil::Anvil, free_port, free_udp_port, rpc::RpcClient, tephra::TephraProcess};

/// The L1's block time: the devnet's.
const L1_BLOCK_TIME_S: u64 = 2;
const L2_CHAIN_ID: u64 = 901;
/// The dev accounts the devnet funds on L2.
const SENDERS: usize = 10;

/// Runs the devnet for `seconds` at `rate` transfers a second and prints
/// the delays.
pub fn run(tephra: &Path, out: &Path, seconds: u64, rate: u64) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let l1 = Anvil::start(&["--chain-id", "900", "--block-time", &L1_BLOCK_TIME_S.to_string()]);
    let ports = out.join("ports.toml");
    let listen = format!(
        "[rpc]\nlisten = \"127.0.0.1:{}\"\n[udp]\nlisten = \"127.0.0.1:{}\"\n[metrics]\nlisten = \"127.0.0.1:{}\"\n",
        free_port(),
        free_udp_port(),
        free_port()
    );
    std::fs::write(&ports, listen).map_err(|e| e.to_string())?;
    let chain = out.join("chain");
    let setup = Command::new(tephra)
        .args(["devnet", "--setup-only", "--l1-rpc", &l1.url, "--dir"])
        .arg(&chain)
        .arg("--config")
        .arg(&ports)
        .output()
        .map_err(|e| format!("{}: {e}", tephra.display()))?;
    if !setup.status.success() {
        return Err(format!("tephra devnet: {}", String::from_utf8_lossy(&setup.stderr)));
    }
    let config = std::fs::read_to_string(chain.join("tephra.toml")).map_err(|e| e.to_string())?;
    let node = TephraProcess::builder(tephra, out.join("node"))
        .config(&config)
        .config("[node]\nlog_level = \"warn\"\n")
        .own_process_group()
        .start()
        .map_err(|e| e.to_string())?;
    let l2 = RpcClient::new(node.rpc_url());
    let genesis = l2.try_call("eth_getBlockByNumber", json!(["0x0", false])).map_err(|e| e.to_string())?;
    let genesis_time = quantity(&genesis["timestamp"]);
    let mut nonces = [0u64; SENDERS];
    let keys: Vec<DevKey> = (0..SENDERS).map(DevKey::dev).collect();
    let (mut posted, mut safe) = (BTreeMap::new(), BTreeMap::new());
    let started = Instant::now();
    let mut sent = 0u64;
    let first_l1 = quantity(&l1.client.rpc("eth_blockNumber", json!([])));
    while started.elapsed() < Duration::from_secs(seconds) {
        let due = started.elapsed().as_secs_f64() * rate as f64;
        while (sent as f64) < due {
            let i = (sent as usize) % SENDERS;
            let tx = keys[i].transfer(L2_CHAIN_ID, nonces[i], Address::repeat_byte(0xb0), U256::from(1));
            nonces[i] += 1;
            let raw = alloy_primitives::Bytes::from(tx.encoded_2718());
            l2.try_call("eth_sendRawTransaction", json!([raw])).map_err(|e| e.to_string())?;
            sent += 1;
        }
        let status = l2.try_call("optimism_syncStatus", json!([])).map_err(|e| e.to_string())?;
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        for (heads, field) in [(&mut posted, "pending_safe_l2"), (&mut safe, "safe_l2")] {
            let head = status[field]["number"].as_u64().unwrap_or(0);
            let from = heads.keys().next_back().map_or(1, |n| n + 1);
            for number in from..=head {
                heads.insert(number, now_ms.saturating_sub((genesis_time + number) * 1000));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let last_l1 = quantity(&l1.client.rpc("eth_blockNumber", json!([])));
    let l1_time =
        |n: u64| quantity(&l1.client.rpc("eth_getBlockByNumber", json!([format!("{n:#x}"), false]))["timestamp"]);
    let l1_block_time_s = (l1_time(last_l1) - l1_time(first_l1)) as f64 / (last_l1 - first_l1).max(1) as f64;
    // Blocks near the start wait for the batcher's first poll; near the end
    // the run stops before they could land: both left out.
    let settled = |delays: &BTreeMap<u64, u64>| -> Vec<u64> {
        let mut values: Vec<u64> = delays.iter().filter(|(n, _)| **n > 10).map(|(_, d)| *d).collect();
        values.sort_unstable();
        values
    };
    println!(
        "batcher: {seconds} s at {rate} transfers/s ({sent} sent); L1 block time {l1_block_time_s:.2} s (anvil, measured)"
    );
    for (name, delays) in
        [("posted (read back from L1)", settled(&posted)), ("safe (2 L1 blocks deep)", settled(&safe))]
    {
        if delays.is_empty() {
            return Err(format!("no block {name} in {seconds} s"));
        }
        let at = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
        println!(
            "  {name:<28} {} blocks: p50 {:.2} s ({:.2} L1 blocks), p99 {:.2} s ({:.2} L1 blocks)",
            delays.len(),
            at(0.5),
            at(0.5) / l1_block_time_s,
            at(0.99),
            at(0.99) / l1_block_time_s
        );
    }
    drop(node);
    Ok(())
}

fn quantity(value: &Value) -> u64 {
    value.as_str().and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()).unwrap_or(0)
}
