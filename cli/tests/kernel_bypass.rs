//! The node's UDP ingress over the kernel-bypass backends: tephra runs in one
//! network namespace with `af_xdp` (and, in a build with the dpdk feature,
//! `dpdk` on a `net_af_packet` virtual device) on its end of a veth pair; a
//! client in the other namespace sends signed transfers in wire-format
//! datagrams, and every transaction comes back preconfirmed. Needs root;
//! says why when it skips.

use std::{
    net::{SocketAddrV4, UdpSocket},
    thread,
    time::Duration,
};

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, U256, keccak256};
use tephra_dataplane::netns::{self, VethPair};
use tephra_exec::dev::DevKey;
use tephra_testkit::tephra::TephraProcess;
use tephra_types::wire::{self, TxReply};

const PORT: u16 = 9000;
const DATAGRAMS: u64 = 200;
const TXS_PER_DATAGRAM: u64 = 4;

/// `tephra run` inside namespace a of `pair` (`ip netns exec`), with `net`
/// as its [net] backend.
struct Node {
    process: TephraProcess,
}

impl Node {
    fn start(pair: &VethPair, name: &str, net: &str) -> Self {
        let dir = tephra_testkit::fresh_dir(&format!("bypass-{name}"));
        let mut process = TephraProcess::builder(env!("CARGO_BIN_EXE_tephra"), dir)
            .config(&format!("[udp]\nlisten = \"{}:{PORT}\"\n{net}\n", pair.addresses[0]))
            .prefix(["ip", "netns", "exec", &pair.namespaces[0]])
            .log_file("node.log")
            .configure()
            .unwrap_or_else(|e| panic!("{e}"));
        process.spawn().unwrap_or_else(|e| panic!("{e}"));
        // The metrics endpoint answers inside namespace a: wait from a thread there.
        thread::scope(|scope| {
            scope
                .spawn(|| {
                    pair.enter(0).unwrap();
                    process.wait_ready()
                })
                .join()
                .unwrap()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        Self { process }
    }

    fn log(&self) -> String {
        self.process.log()
    }
}

impl Drop for Node {
    /// A clean stop (SIGTERM), not a kill.
    fn drop(&mut self) {
        self.process.stop();
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
