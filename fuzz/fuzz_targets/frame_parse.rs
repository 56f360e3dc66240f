//! The kernel-bypass backends' Ethernet/IPv4/UDP parser on arbitrary frames:
//! never a panic, a datagram's payload always inside the frame, and a frame
//! built for any payload parses back to it.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};

use libfuzzer_sys::fuzz_target;
use tephra_dataplane::{
    frame::{self, Local, Received},
    packet::Peer,
};

const LOCAL: Local = Local { mac: [2, 0, 0, 0, 0, 1], ip: Ipv4Addr::new(10, 0, 0, 1), port: 9000 };

fuzz_target!(|data: &[u8]| {
    if let Received::Datagram { payload, .. } = frame::parse(data, &LOCAL) {
        assert!(payload.end <= data.len() && payload.start <= payload.end);
    }
    // The same bytes as a payload, sent to LOCAL, come back whole.
    if data.len() > tephra_dataplane::packet::PAYLOAD_SIZE_MAX_BYTES {
        return;
    }
    let sender = Local { mac: [2, 0, 0, 0, 0, 2], ip: Ipv4Addr::new(10, 0, 0, 2), port: 40000 };
    let to = Peer { addr: SocketAddrV4::new(LOCAL.ip, LOCAL.port), mac: LOCAL.mac };
    let mut out = vec![0u8; frame::HEADERS_BYTES + data.len()];
    let length = frame::build_udp(&mut out, &sender, &to, data).expect("sized for it");
    match frame::parse(&out[..length], &LOCAL) {
        Received::Datagram { payload, peer } => {
            assert_eq!(&out[payload], data);
            assert_eq!(peer.addr, SocketAddrV4::new(sender.ip, sender.port));
        }
        other => panic!("a built frame did not parse: {other:?}"),
    }
});
