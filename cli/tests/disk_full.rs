//! A full disk under the batch log: the node stops preconfirming and sealing,
//! refuses new transactions with code 310, says why on /ready, corrupts
//! nothing, and carries on by itself once space returns. The data dir is a
//! small tmpfs (root; skipped with a message elsewhere).

mod common;

use std::{
    net::UdpSocket,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, U256, hex};
use common::{TephraNode, quantity, wait_until};
use serde_json::json;
use tephra_exec::dev::DevKey;
use tephra_types::{
    RejectCode,
    wire::{self, TxReply},
};

const DISK_BYTES: u64 = 48 << 20;
const RESERVE_BYTES: u64 = 8 << 20;

/// A tmpfs of `DISK_BYTES` mounted at a path, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    /// The disk, or None where the test may skip (not root: see
    /// `tephra_testkit::require`). As root, a mount that fails fails the test.
    fn mount(at: &Path) -> Option<Self> {
        if !tephra_testkit::require(&[tephra_testkit::Need::root()]) {
            return None;
        }
        std::fs::create_dir_all(at).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={DISK_BYTES}"), "tephra-test", at.to_str().unwrap()])
            .output()
            .expect("mount runs");
        assert!(output.status.success(), "mount -t tmpfs: {}", String::from_utf8_lossy(&output.stderr));
        Some(Self(at.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn raw_transfer(nonce: u64) -> String {
    let tx = DevKey::dev(5).transfer(31337, nonce, Address::with_last_byte(0xdf), U256::from(1));
    format!("0x{}", hex::encode(tx.encoded_2718()))
}

#[test]
fn a_full_disk_stops_preconfirming_and_recovers_when_space_returns() {
    let mut node = TephraNode::configure("disk-full", &format!("[log]\ndisk_free_min_bytes = {RESERVE_BYTES}\n"), &[]);
    let data = node.dir.join("data");
    let Some(_disk) = SmallDisk::mount(&data) else { return };
    node.spawn();
    let mut nonce = 0;
    let mut promised = Vec::new();
    for _ in 0..20 {
        let receipt = node.rpc("eth_sendRawTransactionSync", json!([raw_transfer(nonce)]));
        promised.push((receipt["transactionHash"].clone(), receipt["blockNumber"].clone()));
        nonce += 1;
    }

    // Fill the disk to below the reserve, leaving room for what is in flight.
    let free = rustix::fs::statvfs(&data).map(|s| s.f_bavail * s.f_frsize).unwrap();
    let filler = data.join("filler");
    std::fs::write(&filler, vec![0xaa; usize::try_from(free - RESERVE_BYTES / 2).unwrap()]).unwrap();
    wait_until("/ready reports the full disk", || {
        let (status, body) = node.ready();
        status == 503 && body.contains("batch log disk full")
    });

    // New transactions are refused with a clear code, over JSON-RPC and UDP.
    let error = node.call("eth_sendRawTransaction", json!([raw_transfer(nonce)])).expect_err("refused");
    assert_eq!(error["data"]["code"], RejectCode::NotReady.as_u16(), "{error}");
    assert!(error["message"].as_str().unwrap().contains("disk full"), "{error}");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let tx = hex::decode(raw_transfer(nonce).trim_start_matches("0x")).unwrap();
    let mut request = Vec::new();
    wire::encode_request(7, false, &[&tx], &mut request);
    socket.send_to(&request, &node.udp_address).unwrap();
    let mut reply = vec![0u8; wire::DATAGRAM_SIZE_MAX_BYTES];
    let (len, _) = socket.recv_from(&mut reply).expect("a reply datagram");
    let (_, answers) = wire::decode_reply(&reply[..len]).expect("a well-formed reply");
    assert!(matches!(answers.unwrap()[..], [TxReply::Rejected { code: RejectCode::NotReady, .. }]), "UDP refused too");
    // Nothing is sealed while the log has no room: the head stands still.
    let head = quantity(&node.rpc("eth_blockNumber", json!([])));
    // Two and a half block times: a head still moving would show.
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(quantity(&node.rpc("eth_blockNumber", json!([]))), head, "no block sealed on a full disk");
    assert!(node.metrics().contains("tephra_log_disk_free_bytes "), "free space exported");

    // Space returns: the node is ready again by itself and goes on.
    std::fs::remove_file(&filler).unwrap();
    wait_until("ready again", || node.ready().0 == 200);
    for _ in 0..5 {
        let receipt = node.rpc("eth_sendRawTransactionSync", json!([raw_transfer(nonce)]));
        promised.push((receipt["transactionHash"].clone(), receipt["blockNumber"].clone()));
        nonce += 1;
    }
    node.wait_for_block(quantity(promised.last().map(|(_, block)| block).unwrap()));

    // Nothing was corrupted: the log replays from genesis and every promise holds.
    node.stop();
    node.tephra(&["log", "verify"]).unwrap_or_else(|e| panic!("log verify: {e}"));
    node.spawn();
    for (hash, block) in &promised {
        let receipt = node.rpc("eth_getTransactionReceipt", json!([hash]));
        assert_eq!(&receipt["blockNumber"], block, "{hash}");
    }
}
