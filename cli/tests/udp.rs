//! UDP ingress, wire format v1 and v2: preconfirmations and rejection codes
//! come back in one reply datagram, and the signed preconfirmations behind it
//! when asked; bad datagrams get a code, never silence.

mod common;

use std::{net::UdpSocket, time::Duration};

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, U256, keccak256};
use common::{TephraNode, quantity};
use serde_json::json;
use tephra_exec::dev::DevKey;
use tephra_types::{
    RejectCode,
    wire::{self, TxReply},
};

fn transfer(nonce: u64, chain_id: u64) -> Vec<u8> {
    DevKey::dev(3).transfer(chain_id, nonce, Address::with_last_byte(0xab), U256::from(3)).encoded_2718()
}

fn exchange(socket: &UdpSocket, node: &TephraNode, datagram: &[u8]) -> Vec<u8> {
    socket.send_to(datagram, &node.udp_address).unwrap();
    let mut buffer = vec![0u8; wire::DATAGRAM_SIZE_MAX_BYTES];
    let (len, _) = socket.recv_from(&mut buffer).expect("a reply datagram");
    buffer.truncate(len);
    buffer
}

#[test]
fn a_datagram_of_transactions_is_answered_with_preconfirmations_and_codes() {
    let node = TephraNode::start("udp", "");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();

    let (first, second, wrong_chain) = (transfer(0, 31337), transfer(1, 31337), transfer(2, 1));
    let garbage = [0x02, 0xff, 0x00];
    let mut datagram = Vec::new();
    wire::encode_request(42, false, &[&first, &second, &wrong_chain, &garbage], &mut datagram);
    let reply = exchange(&socket, &node, &datagram);
    let (id, answers) = wire::decode_reply(&reply).expect("a well-formed reply");
    assert_eq!(id, 42);
    let answers = answers.expect("answered per transaction");
    assert_eq!(answers.len(), 4);
    let TxReply::Preconfirmed { hash, block_number, index, success: true, gas_used: 21_000 } = answers[0] else {
        panic!("first transfer: {:?}", answers[0]);
    };
    assert_eq!(hash, keccak256(&first));
    assert!(matches!(answers[1], TxReply::Preconfirmed { success: true, .. }), "{:?}", answers[1]);
    assert_eq!(answers[2], TxReply::Rejected { hash: keccak256(&wrong_chain), code: RejectCode::WrongChainId });
    assert!(matches!(answers[3], TxReply::Rejected { code: RejectCode::Malformed, .. }));
    // The promise holds once sealed.
    node.wait_for_block(block_number);
    let receipt = node.rpc("eth_getTransactionReceipt", json!([hash]));
    assert_eq!(
        (quantity(&receipt["blockNumber"]), quantity(&receipt["transactionIndex"])),
        (block_number, u64::from(index))
    );

    // A version 1 request is answered in version 1.
    let mut version_1 = Vec::new();
    wire::encode_request(43, false, &[&transfer(2, 31337)], &mut version_1);
    version_1[2] = 1;
    let reply = exchange(&socket, &node, &version_1);
    assert_eq!(reply[2], 1, "answered in the request's version");
    assert!(
        matches!(wire::decode_reply(&reply), Some((43, Ok(answers))) if matches!(answers[0], TxReply::Preconfirmed { .. }))
    );

    // A datagram of another version, and one that is not ours at all.
    let mut other_version = datagram.clone();
    other_version[2] = 9;
    let reply = exchange(&socket, &node, &other_version);
    assert_eq!(wire::decode_reply(&reply), Some((42, Err(RejectCode::UnsupportedWireVersion))));
    let reply = exchange(&socket, &node, b"hello");
    assert_eq!(wire::decode_reply(&reply), Some((0, Err(RejectCode::Malformed))));
}

/// Datagrams are verified in parallel, so one sender's transactions sent in
/// separate datagrams may reach the sequencer out of order; the pool puts
/// them back in nonce order and every one is preconfirmed.
#[test]
fn one_senders_transactions_in_separate_datagrams_all_preconfirm_in_nonce_order() {
    const DATAGRAMS: usize = 64;
    let node = TephraNode::start("udp-order", "");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut datagram = Vec::new();
    for nonce in 0..DATAGRAMS as u64 {
        wire::encode_request(nonce, false, &[&transfer(nonce, 31337)], &mut datagram);
        socket.send_to(&datagram, &node.udp_address).unwrap();
    }
    let mut places = vec![None; DATAGRAMS];
    let mut buffer = vec![0u8; wire::DATAGRAM_SIZE_MAX_BYTES];
    for _ in 0..DATAGRAMS {
        let (len, _) = socket.recv_from(&mut buffer).expect("a reply for every datagram");
        let (id, answers) = wire::decode_reply(&buffer[..len]).expect("a well-formed reply");
        let answers = answers.expect("answered per transaction");
        let TxReply::Preconfirmed { block_number, index, success: true, .. } = answers[0] else {
            panic!("nonce {id}: {:?}", answers[0]);
        };
        places[usize::try_from(id).unwrap()] = Some((block_number, index));
    }
    let places: Vec<(u64, u32)> = places.into_iter().map(|p| p.expect("each nonce answered once")).collect();
    assert!(places.windows(2).all(|w| w[0] < w[1]), "nonce order is chain order: {places:?}");
}

/// A signed request (version 2, `FLAG_SIGNED`) is answered with the reply
/// and then one proof datagram per preconfirmed transaction, each checking
/// back to the block key on its own; a rejected transaction gets none.
#[test]
fn a_signed_request_gets_a_proof_per_preconfirmation_that_checks_back_to_the_block_key() {
    let node = TephraNode::start("udp-signed", "");
    let block_key: Address = node.rpc("tephra_blockSigner", json!([])).as_str().unwrap().parse().unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let txs = [transfer(0, 31337), transfer(1, 31337), transfer(2, 31337), transfer(3, 1)];
    let mut datagram = Vec::new();
    wire::encode_request(77, true, &txs.iter().map(Vec::as_slice).collect::<Vec<_>>(), &mut datagram);
    let reply = exchange(&socket, &node, &datagram);
    let (77, Ok(answers)) = wire::decode_reply(&reply).expect("the reply comes first") else {
        panic!("answered per transaction: {reply:?}");
    };
    assert_eq!(answers[3], TxReply::Rejected { hash: keccak256(&txs[3]), code: RejectCode::WrongChainId });
    let mut buffer = vec![0u8; wire::DATAGRAM_SIZE_MAX_BYTES];
    for (tx, answer) in txs.iter().zip(&answers).take(3) {
        let TxReply::Preconfirmed { hash, block_number, index, .. } = *answer else { panic!("{answer:?}") };
        let (len, _) = socket.recv_from(&mut buffer).expect("a proof datagram per preconfirmation");
        let (id, signed) = wire::decode_proof(&buffer[..len]).expect("a well-formed proof");
        assert_eq!((id, signed.tx_hash, signed.block_number, signed.index), (77, hash, block_number, index));
        assert_eq!(hash, keccak256(tx));
        let preconf = tephra_hsm::Preconfirmation::from(&signed);
        assert_eq!(tephra_hsm::verify_preconfirmation(&preconf, block_key), Ok(()));
        // Checked against another key, or moved to another index, it fails.
        let other = DevKey::dev(9).address();
        assert!(tephra_hsm::verify_preconfirmation(&preconf, other).is_err());
        let moved = tephra_hsm::Preconfirmation { index: index + 1, ..preconf };
        assert!(tephra_hsm::verify_preconfirmation(&moved, block_key).is_err());
    }
    socket.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    assert!(socket.recv_from(&mut buffer).is_err(), "no proof for the rejected transaction");
}
