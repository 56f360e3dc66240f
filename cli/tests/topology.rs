//! `tephra topology` prints the threads and queues of a node for a config,
//! without starting one.

use std::process::Command;

/// `tephra topology`'s output, with a config file of `config` if given
/// (`name`: the test's scratch directory).
fn topology(name: &str, config: Option<&str>) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tephra"));
    command.arg("topology");
    let dir = tephra_testkit::fresh_dir(name);
    if let Some(text) = config {
        let path = dir.join("tephra.toml");
        std::fs::write(&path, text).unwrap();
        command.arg("--config").arg(&path);
    }
    let output = command.output().expect("tephra runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
    stdout
}

/// The cells of the line that starts with `first`.
fn row<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
    let line = table.lines().find(|line| line.split("  ").next() == Some(first)).unwrap_or_else(|| panic!("{table}"));
    line.split("  ").map(str::trim).filter(|cell| !cell.is_empty()).collect()
}

#[test]
fn the_defaults_print_every_tile_link_and_core() {
    let table = topology("topology-defaults", None);
    for tile in ["net", "verify", "rpc", "sequencer", "hasher", "exec", "signer", "certifier", "history"] {
        assert!(table.lines().any(|line| line.starts_with(&format!("{tile} "))), "{tile}: {table}");
    }
    assert_eq!(row(&table, "exec")[1], "0", "{table}");
    assert!(!table.lines().any(|line| line.starts_with("ha ")), "{table}");
    for (link, depth, key) in [
        ("net -> verify", "1024 datagrams", "net.ingress_ring_depth"),
        ("verify -> net", "1024 datagrams", "net.egress_ring_depth"),
        ("verify -> sequencer", "16384 transactions", "sequencer.submission_queue_depth"),
        ("sequencer -> signer", "2 blocks", "signer.unsigned_blocks_max"),
        ("sequencer -> history", "4096 blocks", "history::PENDING_BLOCKS_MAX"),
        ("sequencer -> rpc", "1024 events", "rpc.subscription_buffer_max (next power of 2)"),
    ] {
        let line = table.lines().find(|line| line.starts_with(link) && line.contains(key)).expect(&table);
        assert!(line.contains(depth), "{line}");
    }
    assert!(table.contains("net.packet_buffers") && table.contains("udp.inflight_datagrams_max"), "{table}");
    // The placement's cores, as the node logs them.
    assert!(table.lines().any(|line| line.starts_with("tile") && line.contains("numa")), "{table}");
}

#[test]
fn a_pair_with_two_shards_has_one_exec_worker_and_the_ha_runtime() {
    let table = topology("topology-pair", Some("[exec]\nshards = 2\n[ha]\nenabled = true\n"));
    assert_eq!(row(&table, "exec")[1], "1", "{table}");
    assert_eq!(row(&table, "ha")[1..4], ["1", "any", "tephra-ha"], "{table}");
    assert!(row(&table, "role").contains(&"tephra-role"), "{table}");
    assert!(table.contains("role -> ha") && table.contains("ha.replication_window_bytes_max"), "{table}");
}

#[test]
fn a_missing_config_file_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_tephra"))
        .args(["topology", "--config", "/nonexistent/tephra.toml"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("tephra: "));
}
