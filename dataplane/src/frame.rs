//! Ethernet II / IPv4 / UDP frames, parsed and built by hand for the
//! kernel-bypass backends, with the IPv4 header checksum and the UDP checksum.
//! Parsing checks every length against the frame: a bad frame is `None`
//! (the backend hands it to nobody), never a panic.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    ops::Range,
};

pub const ETHERNET_HEADER_BYTES: usize = 14;
pub const IPV4_HEADER_BYTES: usize = 20;
pub const UDP_HEADER_BYTES: usize = 8;
/// Ethernet, IPv4 without options, UDP.
pub const HEADERS_BYTES: usize = ETHERNET_HEADER_BYTES + IPV4_HEADER_BYTES + UDP_HEADER_BYTES;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const IP_PROTOCOL_UDP: u8 = 17;
const IPV4_TTL: u8 = 64;

/// This end of the link: the addresses replies are sent from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Local {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// Where a datagram came from, and so where its reply goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddrV4,
    /// The link-layer source (kernel-bypass backends reply to it); zero on sockets.
    pub mac: [u8; 6],
}

impl Default for Peer {
    fn default() -> Self {
        Self { addr: SocketAddrV4::new([0, 0, 0, 0].into(), 0), mac: [0; 6] }
    }
}

/// What a received frame is to the dataplane.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A datagram for tephra's port: its sender and where its payload lies.
    Datagram { peer: Peer, payload: Range<usize> },
    /// An ARP request for our address (a backend that owns the NIC answers it).
    ArpRequest { sender_mac: [u8; 6], sender_ip: Ipv4Addr },
    /// Anything else: not ours.
    Other,
}

fn u16_at(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

/// Classifies one Ethernet frame.
pub fn parse(frame: &[u8], local: &Local) -> Received {
    if frame.len() < ETHERNET_HEADER_BYTES {
        return Received::Other;
    }
    match u16_at(frame, 12) {
        ETHERTYPE_IPV4 => parse_ipv4(frame, local),
        ETHERTYPE_ARP => parse_arp(frame, local),
        _ => Received::Other,
    }
}

fn parse_ipv4(frame: &[u8], local: &Local) -> Received {
    let ip = &frame[ETHERNET_HEADER_BYTES..];
    if ip.len() < IPV4_HEADER_BYTES || ip[0] >> 4 != 4 {
        return Received::Other;
    }
    let header_bytes = usize::from(ip[0] & 0x0f) * 4;
    let total_bytes = usize::from(u16_at(ip, 2));
    let fragmented = u16_at(ip, 6) & 0x3fff != 0; // more-fragments flag or an offset
    if header_bytes < IPV4_HEADER_BYTES
        || total_bytes < header_bytes + UDP_HEADER_BYTES
        || total_bytes > ip.len()
        || fragmented
        || ip[9] != IP_PROTOCOL_UDP
        || ip[16..20] != local.ip.octets()
        || checksum(&ip[..header_bytes], 0) != 0
    {
        return Received::Other;
    }
    let udp = &ip[header_bytes..total_bytes];
    let udp_bytes = usize::from(u16_at(udp, 4));
    if u16_at(udp, 2) != local.port || udp_bytes < UDP_HEADER_BYTES || udp_bytes > udp.len() {
        return Received::Other;
    }
    let source_ip = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    // A zero UDP checksum means the sender computed none (allowed over IPv4).
    if u16_at(udp, 6) != 0 && checksum(&udp[..udp_bytes], pseudo_header_sum(source_ip, local.ip, u16_at(udp, 4))) != 0 {
        return Received::Other;
    }
    let mut mac = [0; 6];
    mac.copy_from_slice(&frame[6..12]);
    let start = ETHERNET_HEADER_BYTES + header_bytes + UDP_HEADER_BYTES;
    Received::Datagram {
        peer: Peer { addr: SocketAddrV4::new(source_ip, u16_at(udp, 0)), mac },
        payload: start..ETHERNET_HEADER_BYTES + header_bytes + udp_bytes,
    }
}

const ARP_BYTES: usize = 28;

fn parse_arp(frame: &[u8], local: &Local) -> Received {
    let arp = &frame[ETHERNET_HEADER_BYTES..];
    // Ethernet/IPv4 ARP request for our address.
    if arp.len() < ARP_BYTES || arp[..8] != [0, 1, 8, 0, 6, 4, 0, 1] || arp[24..28] != local.ip.octets() {
        return Received::Other;
    }
    let mut sender_mac = [0; 6];
    sender_mac.copy_from_slice(&arp[8..14]);
    Received::ArpRequest { sender_mac, sender_ip: Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]) }
}

/// Writes the Ethernet/IPv4/UDP frame carrying `payload` to `peer` into `out`
/// and returns its length, or None when `out` is too small.
pub fn build_udp(out: &mut [u8], local: &Local, peer: &Peer, payload: &[u8]) -> Option<usize> {
    let frame_bytes = HEADERS_BYTES + payload.len();
    let ip_bytes = u16::try_from(IPV4_HEADER_BYTES + UDP_HEADER_BYTES + payload.len()).ok()?;
    let frame = out.get_mut(..frame_bytes)?;
    frame[0..6].copy_from_slice(&peer.mac);
    frame[6..12].copy_from_slice(&local.mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let ip = &mut frame[ETHERNET_HEADER_BYTES..];
    ip[0] = 0x45; // version 4, 5 words of header
    ip[1] = 0;
    ip[2..4].copy_from_slice(&ip_bytes.to_be_bytes());
    ip[4..6].copy_from_slice(&[0, 0]); // identification: never fragmented
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // don't fragment
    ip[8] = IPV4_TTL;
    ip[9] = IP_PROTOCOL_UDP;
    ip[10..12].copy_from_slice(&[0, 0]);
    ip[12..16].copy_from_slice(&local.ip.octets());
    ip[16..20].copy_from_slice(&peer.addr.ip().octets());
    let header_checksum = checksum(&ip[..IPV4_HEADER_BYTES], 0);
    ip[10..12].copy_from_slice(&header_checksum.to_be_bytes());
    let udp_bytes = UDP_HEADER_BYTES + payload.len();
    let udp_length = u16::try_from(udp_bytes).ok()?;
    let udp = &mut ip[IPV4_HEADER_BYTES..];
    udp[0..2].copy_from_slice(&local.port.to_be_bytes());
    udp[2..4].copy_from_slice(&peer.addr.port().to_be_bytes());
    udp[4..6].copy_from_slice(&udp_length.to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    udp[UDP_HEADER_BYTES..udp_bytes].copy_from_slice(payload);
    let udp_checksum = match checksum(&udp[..udp_bytes], pseudo_header_sum(local.ip, *peer.addr.ip(), udp_length)) {
        0 => 0xffff, // zero would mean "no checksum"
        sum => sum,
    };
    udp[6..8].copy_from_slice(&udp_checksum.to_be_bytes());
    Some(frame_bytes)
}

/// Writes the ARP reply to an ARP request for our address; returns its length.
pub fn build_arp_reply(out: &mut [u8], local: &Local, sender_mac: [u8; 6], sender_ip: Ipv4Addr) -> Option<usize> {
    let frame = out.get_mut(..ETHERNET_HEADER_BYTES + ARP_BYTES)?;
    frame[0..6].copy_from_slice(&sender_mac);
    frame[6..12].copy_from_slice(&local.mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    let arp = &mut frame[ETHERNET_HEADER_BYTES..];
    arp[..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    arp[8..14].copy_from_slice(&local.mac);
    arp[14..18].copy_from_slice(&local.ip.octets());
    arp[18..24].copy_from_slice(&sender_mac);
    arp[24..28].copy_from_slice(&sender_ip.octets());
    Some(ETHERNET_HEADER_BYTES + ARP_BYTES)
}

fn pseudo_header_sum(source: Ipv4Addr, destination: Ipv4Addr, udp_bytes: u16) -> u32 {
    let (s, d) = (source.octets(), destination.octets());
    [u16::from_be_bytes([s[0], s[1]]), u16::from_be_bytes([s[2], s[3]]), u16::from_be_bytes([d[0], d[1]])]
        .into_iter()
        .chain([u16::from_be_bytes([d[2], d[3]]), u16::from(IP_PROTOCOL_UDP), udp_bytes])
        .map(u32::from)
        .sum()
}

/// The Internet checksum (RFC 1071) of `bytes`, starting from `initial`; a
/// header whose checksum field is filled in sums to zero.
fn checksum(bytes: &[u8], initial: u32) -> u16 {
    let mut sum = u64::from(initial);
    let mut words = bytes.chunks_exact(2);
    for word in &mut words {
        sum += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).expect("folded to 16 bits")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: Local = Local { mac: [2, 0, 0, 0, 0, 1], ip: Ipv4Addr::new(10, 0, 0, 1), port: 9000 };

    fn peer() -> Peer {
        Peer { addr: "10.0.0.2:40000".parse().unwrap(), mac: [2, 0, 0, 0, 0, 2] }
    }

    #[test]
    fn ipv4_header_checksum_matches_the_rfc_1071_example() {
        // The IPv4 header from RFC 1071's companion example (checksum 0xb861).
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        assert_eq!(checksum(&header, 0), 0xb861);
    }

    #[test]
    fn a_built_frame_parses_back_when_addressed_to_us() {
        let mut frame = [0u8; 256];
        // Swap ends: the peer sends to LOCAL.
        let sender = Local { mac: peer().mac, ip: *peer().addr.ip(), port: peer().addr.port() };
        let to_local = Peer { addr: SocketAddrV4::new(LOCAL.ip, LOCAL.port), mac: LOCAL.mac };
        let len = build_udp(&mut frame, &sender, &to_local, b"hello tephra").unwrap();
        match parse(&frame[..len], &LOCAL) {
            Received::Datagram { peer: from, payload } => {
                assert_eq!(from, peer());
                assert_eq!(&frame[payload], b"hello tephra");
            }
            other => panic!("not parsed as ours: {other:?}"),
        }
        // A flipped payload byte breaks the UDP checksum; another port is not ours.
        let mut corrupt = frame;
        corrupt[len - 1] ^= 1;
        assert_eq!(parse(&corrupt[..len], &LOCAL), Received::Other);
        assert_eq!(parse(&frame[..len], &Local { port: 9001, ..LOCAL }), Received::Other);
        // Every truncation is refused without a panic.
        for cut in 0..len {
            assert_eq!(parse(&frame[..cut], &LOCAL), Received::Other, "cut at {cut}");
        }
    }

    #[test]
    fn arp_requests_for_our_address_are_answered() {
        let mut request = [0u8; 42];
        request[..6].copy_from_slice(&[0xff; 6]);
        request[6..12].copy_from_slice(&peer().mac);
        request[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        request[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        request[22..28].copy_from_slice(&peer().mac);
        request[28..32].copy_from_slice(&peer().addr.ip().octets());
        request[38..42].copy_from_slice(&LOCAL.ip.octets());
        let Received::ArpRequest { sender_mac, sender_ip } = parse(&request, &LOCAL) else {
            panic!("not an ARP request")
        };
        let mut reply = [0u8; 64];
        let len = build_arp_reply(&mut reply, &LOCAL, sender_mac, sender_ip).unwrap();
        assert_eq!(&reply[..6], &peer().mac);
        assert_eq!(&reply[22..28], &LOCAL.mac);
        assert_eq!(len, 42);
    }
}
