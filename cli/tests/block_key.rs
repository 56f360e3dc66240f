//! The block key from the operator's side: every sealed block verifies
//! against it (`tephra verify-block`), every signature is in the audit log,
//! and a PKCS#11 token (SoftHSM2) can hold it.

mod common;

use std::process::Command;

use common::TephraNode;
use serde_json::json;

#[test]
fn file_key_blocks_verify_and_every_signature_is_audited() {
    let mut node = TephraNode::start("blockkey", "");
    node.wait_for_signed_block(3);
    let signer = node.rpc("tephra_blockSigner", json!([])).as_str().unwrap().to_lowercase();
    let pubkey = node.tephra(&["hsm", "pubkey"]).unwrap().to_lowercase();
    assert!(pubkey.contains(&signer), "{pubkey} names {signer}");
    assert!(node.verify_block("3").contains("verified"));
    assert!(node.verify_block("finalized").contains("verified"));
    // One process per data dir: a live node's log is not replayed under it.
    assert!(node.tephra(&["log", "verify"]).unwrap_err().contains("in use"));
    node.stop();
    let selftest = node.tephra(&["hsm", "selftest"]).unwrap();
    assert!(selftest.contains("self-test ok"), "{selftest}");
    let audit = node.tephra(&["hsm", "audit", "verify"]).unwrap();
    let count: u64 = audit.split_whitespace().nth(3).and_then(|n| n.parse().ok()).expect(&audit);
    assert!(count >= 4, "{audit}: three blocks and the self-test at least");
    // Refusing to replace an existing key.
    assert!(node.tephra(&["hsm", "keygen"]).unwrap_err().contains("refusing"));
}

#[test]
fn a_node_signs_with_a_softhsm2_key_it_generated() {
    let dir = common::fresh_dir("node-softhsm");
    let Some((signer, conf_text)) = common::softhsm2_token(&dir, &dir.join("tokens")) else { return };
    let env = [("SOFTHSM2_CONF", conf_text.as_str())];
    let mut node = TephraNode::configure("softhsm-node", &signer, &env);
    let generated = node.tephra(&["hsm", "keygen"]).unwrap();
    node.spawn();
    node.wait_for_signed_block(2);
    let signer = node.rpc("tephra_blockSigner", json!([])).as_str().unwrap().to_lowercase();
    assert!(generated.to_lowercase().contains(&signer), "{generated} is the key the node signs with ({signer})");
    assert!(node.verify_block("finalized").contains("verified"));
    drop(node);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn preconfirmations_are_signed_by_certified_hot_keys_across_epochs() {
    // Short epochs so that the test crosses into new hot keys.
    let node = TephraNode::start("delegation", "[signer]\ndelegation_epoch_blocks = 2\n");
    let key = tephra_exec::dev::DevKey::dev(4);
    let verify = |hash: &str, signer: Option<String>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tephra"));
        command.args(["verify-preconf", "--rpc", &node.rpc_url, "--tx", hash]);
        if let Some(signer) = signer {
            command.args(["--signer", &signer]);
        }
        command.output().unwrap()
    };
    let mut epochs = std::collections::BTreeSet::new();
    let mut last_hash = String::new();
    for nonce in 0..12 {
        let tx = key.transfer(
            31337,
            nonce,
            alloy_primitives::Address::with_last_byte(0x77),
            alloy_primitives::U256::from(1),
        );
        let raw = format!("0x{}", hex::encode(alloy_eips::eip2718::Encodable2718::encoded_2718(&tx)));
        let receipt = node.rpc("eth_sendRawTransactionSync", json!([raw]));
        let preconf = &receipt["preconfirmation"];
        assert!(preconf.is_object(), "a signed preconfirmation comes with the receipt: {receipt}");
        epochs.insert(preconf["certificate"]["epoch"].as_str().unwrap().to_string());
        last_hash = receipt["transactionHash"].as_str().unwrap().to_string();
        let output = verify(&last_hash, None);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        // Twelve transactions over about five blocks: two-block epochs change.
        std::thread::sleep(std::time::Duration::from_millis(400));
    }
    assert!(epochs.len() >= 2, "hot keys rotated across epochs: {epochs:?}");
    // Checked against another key, the same preconfirmation fails.
    let wrong = tephra_exec::dev::DevKey::dev(9).address().to_string();
    let output = verify(&last_hash, Some(wrong));
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not signed by the block key"));
}
