//! The node's UDP ingress over the kernel-bypass backends: tephra runs in one
//! network namespace with `af_xdp` (and, in a build with the dpdk feature,
//! `dpdk` on a `net_af_packet` virtual device) on its end of a veth pair; a
//! client in the other namespace sends signed transfers in wire-format
//! datagrams, and every transaction comes back preconfirmed. Needs root;
//! says why when it skips.

use std::{
    net::{SocketAddrV4, UdpSocket},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, U256, keccak256};
use tephra_dataplane::netns::{self, VethPair};
use tephra_exec::dev::DevKey;
use tephra_types::wire::{self, TxReply};

const PORT: u16 = 9000;
const DATAGRAMS: u64 = 200;
const TXS_PER_DATAGRAM: u64 = 4;

/// `tephra run` inside namespace a of `pair`, with `net` as its [net] backend.
struct Node {
    child: Child,
    dir: PathBuf,
}

impl Node {
    fn start(pair: &VethPair, name: &str, net: &str) -> Self {
        let dir = tephra_testkit::fresh_dir(&format!("bypass-{name}"));
        let config = format!(
            "[node]\ndata_dir = {:?}\n[udp]\nlisten = \"{}:{PORT}\"\n{net}\n",
            dir.join("data").display().to_string(),
            pair.addresses[0]
        );
        std::fs::write(dir.join("tephra.toml"), config).unwrap();
        let log = std::fs::File::create(dir.join("node.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &pair.namespaces[0], env!("CARGO_BIN_EXE_tephra"), "run", "--config"])
            .arg(dir.join("tephra.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tephra starts");
        let node = Self { child, dir };
        node.wait_ready(pair);
        node
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// The metrics endpoint answers inside namespace a: ask from a thread there.
    fn wait_ready(&self, pair: &VethPair) {
        thread::scope(|scope| {
            scope
                .spawn(|| {
                    pair.enter(0).unwrap();
                    let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while Instant::now() < deadline {
                        if agent.get("http://127.0.0.1:9100/ready").call().is_ok_and(|r| r.status() == 200) {
                            return;
                        }
                        thread::sleep(Duration::from_millis(100));
                    }
                    panic!("tephra not ready within 60 s:\n{}", self.log());
                })
                .join()
                .unwrap();
        });
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// From namespace b: DATAGRAMS requests of TXS_PER_DATAGRAM transfers each,
/// one sender per datagram slot; returns the preconfirmed count.
fn send_transfers(pair: &VethPair) -> u64 {
    let to = SocketAddrV4::new(pair.addresses[0], PORT);
    thread::scope(|scope| {
        scope
            .spawn(|| {
                pair.enter(1).unwrap();
                let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
                socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let key = DevKey::dev(4);
                let mut preconfirmed = 0;
                let mut buffer = vec![0u8; wire::DATAGRAM_SIZE_MAX_BYTES];
                for datagram in 0..DATAGRAMS {
                    let txs: Vec<Vec<u8>> = (0..TXS_PER_DATAGRAM)
                        .map(|k| {
                            let nonce = datagram * TXS_PER_DATAGRAM + k;
                            key.transfer(31337, nonce, Address::with_last_byte(0xcd), U256::from(1)).encoded_2718()
                        })
                        .collect();
                    let refs: Vec<&[u8]> = txs.iter().map(Vec::as_slice).collect();
                    let mut request = Vec::new();
                    wire::encode_request(datagram, false, &refs, &mut request);
                    socket.send_to(&request, to).unwrap();
                    let (len, _) = socket.recv_from(&mut buffer).expect("a reply datagram");
                    let (id, answers) = wire::decode_reply(&buffer[..len]).expect("a well-formed reply");
                    assert_eq!(id, datagram);
                    for (answer, tx) in answers.expect("answered per transaction").iter().zip(&txs) {
                        match answer {
                            TxReply::Preconfirmed { hash, success: true, .. } if *hash == keccak256(tx) => {
                                preconfirmed += 1
                            }
                            other => panic!("datagram {datagram}: {other:?}"),
                        }
                    }
                }
                preconfirmed
            })
            .join()
            .unwrap()
    })
}

/// Whether the test must skip: network namespaces need root and iproute2
/// (see `tephra_testkit::require`).
fn skip() -> bool {
    !tephra_testkit::require(&[tephra_testkit::Need::checked(netns::unavailable())])
}

#[test]
fn af_xdp_ingress_preconfirms_every_transaction() {
    if skip() {
        return;
    }
    let pair = VethPair::create("tpnx", 72).expect("a veth pair between two namespaces");
    let net = format!("[net]\nbackend = \"af_xdp\"\n[net.af_xdp]\ninterface = \"{}\"\n", pair.interfaces[0]);
    let node = Node::start(&pair, "af_xdp", &net);
    assert_eq!(send_transfers(&pair), DATAGRAMS * TXS_PER_DATAGRAM, "{}", node.log());
    assert!(node.log().contains("backend=\"af_xdp\"") || node.log().contains("backend=af_xdp"), "{}", node.log());
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_ingress_preconfirms_every_transaction() {
    if skip() {
        return;
    }
    let pair = VethPair::create("tpnd", 73).expect("a veth pair between two namespaces");
    let net = format!(
        "[net]\nbackend = \"dpdk\"\n[net.dpdk]\neal_args = [\"-l\", \"0\", \"--no-shconf\", \"--no-telemetry\", \
         \"--no-pci\", \"--no-huge\", \"-m\", \"512\", \"--vdev=net_af_packet0,iface={}\"]\n",
        pair.interfaces[0]
    );
    let node = Node::start(&pair, "dpdk", &net);
    assert_eq!(send_transfers(&pair), DATAGRAMS * TXS_PER_DATAGRAM, "{}", node.log());
}
