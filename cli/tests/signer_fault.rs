//! An HSM that hangs or fails, end to end: the block key is in a real
//! PKCS#11 token (SoftHSM2) whose store is a FUSE file system
//! (tests/common/faultfs.py). SoftHSM2 reads its token files at every
//! signature, so when the store hangs the token's C_Sign hangs, and when it
//! fails C_Sign fails. The node fails closed: /ready says why, no block is
//! sealed beyond the signing backlog, transactions still preconfirm into the
//! open block, and once the token answers again every block is signed, once,
//! and sealing goes on by itself. Needs root, /dev/fuse, python3-fusepy and
//! SoftHSM2 (scripts/deps.sh); skipped with a message otherwise.

mod common;

use std::time::Duration;

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, U256, hex};
use common::{FuseDisk, TephraNode, quantity, wait_until};
use serde_json::json;
use tephra_exec::dev::DevKey;

const UNSIGNED_BLOCKS_MAX: u64 = 2;

fn block_number(node: &TephraNode, tag: &str) -> u64 {
    quantity(&node.rpc("eth_getBlockByNumber", json!([tag, false]))["number"])
}

#[test]
fn an_hsm_that_hangs_or_fails_stops_sealing_and_the_node_resumes_when_it_answers() {
    let dir = common::fresh_dir("signer-fault");
    let control = dir.join("fault");
    let Some(disk) = FuseDisk::mount(&dir.join("tokens-backing"), &dir.join("tokens"), 0, Some(&control)) else {
        return;
    };
    let Some((signer, softhsm2_conf)) = common::softhsm2_token(&dir, &dir.join("tokens")) else { return };
    let extra =
        format!("{signer}sign_timeout_ms = 300\nsign_retry_ms = 100\nunsigned_blocks_max = {UNSIGNED_BLOCKS_MAX}\n");
    let mut node = TephraNode::configure("signer-fault", &extra, &[("SOFTHSM2_CONF", softhsm2_conf.as_str())]);
    node.tephra(&["hsm", "keygen"]).unwrap();
    node.spawn();
    node.wait_for_signed_block(3);

    let key = DevKey::dev(6);
    for (nonce, fault) in ["hang", "fail"].into_iter().enumerate() {
        std::fs::write(&control, fault).unwrap();
        wait_until("/ready says the signer is failing", || {
            let (status, body) = node.ready();
            status == 503 && body.contains("sign")
        });
        let (_, reason) = node.ready();
        eprintln!("token store {fault}s: /ready says {reason}");
        // Fail closed: the head holds still, at most the backlog ahead of
        // the newest signed block.
        let head = block_number(&node, "latest");
        // Two and a half block times: a head still moving would show.
        std::thread::sleep(Duration::from_millis(2_500));
        assert_eq!(block_number(&node, "latest"), head, "no block sealed while the token {fault}s");
        let signed = block_number(&node, "finalized");
        assert!(head - signed <= UNSIGNED_BLOCKS_MAX, "head {head}, newest signed {signed}");
        // Transactions still preconfirm, into the open block.
        let tx = key.transfer(31337, nonce as u64, Address::with_last_byte(0x5f), U256::from(1));
        let receipt = node.rpc("eth_sendRawTransactionSync", json!([format!("0x{}", hex::encode(tx.encoded_2718()))]));
        assert_eq!(receipt["status"], "0x1", "{receipt}");
        assert_eq!(quantity(&receipt["blockNumber"]), head + 1, "preconfirmed into the open block");

        std::fs::write(&control, "").unwrap();
        wait_until("ready again once the token answers", || node.ready().0 == 200);
        wait_until("the open block sealed and signed", || block_number(&node, "finalized") > head + 1);
        let sealed = node.rpc("eth_getTransactionReceipt", json!([receipt["transactionHash"]]));
        assert_eq!(quantity(&sealed["blockNumber"]), head + 1, "the promise held");
        assert!(sealed["blockHash"].is_string(), "{sealed}");
    }
    // Every height signed once, by the token's key, and the chain verifies.
    node.tephra(&["hsm", "audit", "verify"]).unwrap();
    assert!(node.verify_block("finalized").contains("verified"));
    drop(node);
    drop(disk);
    std::fs::remove_dir_all(&dir).unwrap();
}
