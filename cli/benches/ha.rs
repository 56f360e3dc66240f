//! Preconfirmation latency of a high-availability pair against a single
//! node, in the same run: one transfer per UDP request (docs/wire.md),
//! closed loop, from the client's send to the preconfirmation's arrival.
//!
//! - single: `[ha]` off;
//! - sync: a pair on a local etcd; the leader preconfirms once its standby
//!   holds the mini-block durably (one more network round trip and fsync);
//! - async: the same pair, preconfirming at once.
//!
//! `cargo bench -p tephra-cli --bench ha [-- --requests N]` (needs etcd:
//! scripts/deps.sh installs it).

#![allow(clippy::print_stdout, reason = "a benchmark reports its figures on stdout")]

mod support;

use std::{
    net::UdpSocket,
    path::Path,
    time::{Duration, Instant},
};

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, U256};
use support::{Peer, free_port, genesis, percentile_ms, start_tephra};
use tephra_exec::dev::DevKey;
use tephra_testkit::etcd::EtcdCluster;
use tephra_types::wire::{self, TxReply};

const BLOCK_KEY: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const SECRET: &str = "a shared secret of the pair, at least 32 bytes long";
const REQUESTS_DEFAULT: usize = 3000;

/// A pair member: its metrics address (for its role) and the node.
fn member(dir: &Path, genesis: &Path, id: &str, peer: &str, etcd: &str, mode: &str, prefix: &str) -> (String, Peer) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("ha.secret"), SECRET).unwrap();
    std::fs::write(data.join("block.key"), BLOCK_KEY).unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let extra = format!(
        "[metrics]\nlisten = \"{metrics}\"\n[ha]\nenabled = true\nnode_id = \"{id}\"\npeers = [\"{peer}\"]\n\
         etcd_endpoints = [\"{etcd}\"]\netcd_prefix = \"{prefix}\"\nreplication = \"{mode}\"\n\
         replication_listen = \"127.0.0.1:{}\"\n",
        free_port()
    );
    let node = start_tephra(dir, genesis, &extra);
    (metrics, node)
}

fn role(metrics: &str) -> u64 {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(1))).build().into();
    agent
        .get(format!("http://{metrics}/metrics"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .and_then(|text| text.lines().find_map(|l| l.strip_prefix("tephra_ha_role ")).map(str::to_string))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Sequential single-transfer requests: the preconfirmation round trips, sorted.
fn measure(udp: &str, requests: usize) -> Vec<Duration> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (mut request, mut reply) = (Vec::new(), vec![0u8; wire::DATAGRAM_SIZE_MAX_BYTES]);
    let mut samples = Vec::with_capacity(requests);
    let key = DevKey::from_seed(0);
    let mut nonce = 0;
    while samples.len() < requests {
        let raw = key.transfer(31337, nonce, Address::with_last_byte(0xb0), U256::from(1)).encoded_2718();
        request.clear();
        wire::encode_request(nonce, false, &[&raw], &mut request);
        let sent = Instant::now();
        socket.send_to(&request, udp).unwrap();
        let Ok((len, _)) = socket.recv_from(&mut reply) else { continue };
        let Some((id, Ok(answers))) = wire::decode_reply(&reply[..len]) else { continue };
        if id != nonce {
            continue;
        }
        match answers.first() {
            Some(TxReply::Preconfirmed { .. }) => {
                samples.push(sent.elapsed());
                nonce += 1;
            }
            other => panic!("transfer {nonce} not preconfirmed: {other:?}"),
        }
    }
    samples.sort_unstable();
    samples
}

fn main() {
    let requests = std::env::args()
        .skip_while(|a| a != "--requests")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(REQUESTS_DEFAULT);
    let root = tephra_testkit::fresh_dir("bench-ha");
    let genesis = genesis(&root, 1);
    let etcd = EtcdCluster::start("bench-ha", 1, None).expect("etcd (scripts/deps.sh installs etcd-server)");
    let endpoint = etcd.endpoints()[0].clone();
    println!("preconfirmation latency, one transfer per UDP request, closed loop, {requests} requests each");
    println!("{:<8} {:>9} {:>9} {:>9}", "mode", "p50 ms", "p99 ms", "tx/s");
    let report = |mode: &str, samples: &[Duration]| {
        let total: Duration = samples.iter().sum();
        println!(
            "{mode:<8} {:>9.3} {:>9.3} {:>9.0}",
            percentile_ms(samples, 500),
            percentile_ms(samples, 990),
            samples.len() as f64 / total.as_secs_f64()
        );
    };
    {
        let single = start_tephra(&root.join("single"), &genesis, "");
        report("single", &measure(&single.udp_address, requests));
    }
    for mode in ["sync", "async"] {
        let prefix = format!("/tephra/bench-{mode}");
        let (metrics_a, a) = member(&root.join(format!("{mode}-a")), &genesis, "a", "b", &endpoint, mode, &prefix);
        let (metrics_b, b) = member(&root.join(format!("{mode}-b")), &genesis, "b", "a", &endpoint, mode, &prefix);
        let deadline = Instant::now() + Duration::from_secs(30);
        let leader = loop {
            if role(&metrics_a) == 2 && role(&metrics_b) == 1 {
                break &a;
            }
            if role(&metrics_b) == 2 && role(&metrics_a) == 1 {
                break &b;
            }
            assert!(Instant::now() < deadline, "no leader with a following standby in 30 s");
            std::thread::sleep(Duration::from_millis(50));
        };
        report(mode, &measure(&leader.udp_address, requests));
    }
    let _ = std::fs::remove_dir_all(&root);
}
