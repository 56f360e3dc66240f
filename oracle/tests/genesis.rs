//! The L2 genesis block from the op-deployer alloc of chain 420110017 (the optimism monorepo's
//! op-program config, tephra's testdata/op): its hash must be rollup.json's.

use alloy_primitives::b256;
use kona_oracle::genesis::{build_genesis, check_genesis, load_genesis, load_rollup};
use serde_json::Value;
use std::{path::PathBuf, process::Command};

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/op")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kona-oracle-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const EXPECTED: alloy_primitives::B256 = b256!("adfcd0337e984caa0c2ffb2beebd2a7aeac06752cd18eb498242597d13caf708");

#[test]
fn the_op_deployer_genesis_hashes_to_its_rollup_config() {
    let cfg = load_rollup(&testdata().join("420110017-rollup.json")).unwrap();
    let state = build_genesis(&load_genesis(&testdata().join("420110017-genesis-l2.json.gz")).unwrap(), &cfg).unwrap();
    assert_eq!(state.header.hash(), EXPECTED);
    assert_eq!(state.header.withdrawals_root, Some(state.message_passer_storage_root));
    check_genesis(&state, &cfg).unwrap();
}

#[test]
fn the_cli_prints_the_hash_and_fails_on_another() {
    let rollup = testdata().join("420110017-rollup.json");
    let genesis = testdata().join("420110017-genesis-l2.json.gz");
    let out = Command::new(env!("CARGO_BIN_EXE_kona-oracle"))
        .args(["genesis", "--rollup", rollup.to_str().unwrap(), "--genesis", genesis.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["genesis_hash"], Value::String(EXPECTED.to_string()));
    assert_eq!(line["ok"], Value::Bool(true));

    // Another expected hash: exit 1, the computed hash still printed.
    let dir = scratch("genesis");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&rollup).unwrap()).unwrap();
    cfg["genesis"]["l2"]["hash"] = Value::String(format!("0x{}", "11".repeat(32)));
    let wrong = dir.join("rollup.json");
    std::fs::write(&wrong, cfg.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kona-oracle"))
        .args(["genesis", "--rollup", wrong.to_str().unwrap(), "--genesis", genesis.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&line["genesis_hash"], &line["ok"]), (&Value::String(EXPECTED.to_string()), &Value::Bool(false)));

    // Usage and IO errors: exit 2.
    let out = Command::new(env!("CARGO_BIN_EXE_kona-oracle")).args(["genesis", "--rollup"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_kona-oracle"))
        .args(["genesis", "--rollup", "/nonexistent.json", "--genesis", genesis.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(dir).unwrap();
}

/// What kona 0.4.5's rollup.json parser takes: documents the pitfalls for tephra's writer.
#[test]
fn rollup_config_format() {
    let base: Value =
        serde_json::from_slice(&std::fs::read(testdata().join("420110017-rollup.json")).unwrap()).unwrap();
    let dir = scratch("rollup");
    let parse = |value: &Value| {
        let path = dir.join("rollup.json");
        std::fs::write(&path, value.to_string()).unwrap();
        load_rollup(&path)
    };
    assert!(parse(&base).is_ok());

    // Unknown fields are refused: at the top level, in genesis and in the system config (newer
    // op-node fields such as minBaseFee or daFootprintGasScalar).
    let mut top = base.clone();
    top["some_new_field"] = Value::from(1);
    assert!(parse(&top).is_err(), "an unknown top-level field");
    let mut system = base.clone();
    system["genesis"]["system_config"]["minBaseFee"] = Value::from(0);
    assert!(parse(&system).is_err(), "an unknown system_config field");

    // Forks kona 0.4.5 cannot execute.
    let mut jovian = base.clone();
    jovian["jovian_time"] = Value::from(0);
    assert!(parse(&jovian).unwrap_err().to_string().contains("jovian"));
    std::fs::remove_dir_all(dir).unwrap();
}
