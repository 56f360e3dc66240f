//! The test vectors of docs/wire.md, byte for byte: each is read from the
//! document by its heading, decoded field by field against the values the
//! document states (written here as literals) and encoded back to exactly
//! the document's bytes. Round trips alone would pass an encoder and decoder
//! that agree with each other but not with the document.

use alloy_primitives::{Address, B256, hex};
use tephra_types::{
    RejectCode,
    wire::{self, Request, RequestError, SignedPreconf, TxReply},
};

const WIRE_MD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/wire.md");
/// The request id of the version 1 vectors.
const ID_1: u64 = 0x0102_0304_0506_0708;
/// The request id of the version 2 vectors.
const ID_2: u64 = 0xa1a2_a3a4_a5a6_a7a8;

/// The bytes of the vector under the heading `### {heading}` of `doc`: the
/// first ```hex block after it, before the next heading, whitespace stripped.
fn vector_in(doc: &str, heading: &str) -> Vec<u8> {
    let title = format!("### {heading}");
    assert_eq!(doc.lines().filter(|line| line.trim_end() == title).count(), 1, "one heading {title:?}");
    let mut lines = doc.lines().skip_while(|line| line.trim_end() != title).skip(1);
    for line in lines.by_ref() {
        assert!(!line.starts_with('#'), "no ```hex block under {title:?}");
        if line.trim() == "```hex" {
            break;
        }
    }
    let mut digits = String::new();
    let mut closed = false;
    for line in lines {
        if line.trim() == "```" {
            closed = true;
            break;
        }
        digits.extend(line.split_whitespace());
    }
    assert!(closed, "the ```hex block under {title:?} is closed");
    assert!(!digits.is_empty(), "the vector under {title:?} is not empty");
    hex::decode(&digits).unwrap_or_else(|e| panic!("the vector under {title:?} is hex: {e}"))
}

fn vector(heading: &str) -> Vec<u8> {
    let doc = std::fs::read_to_string(WIRE_MD).unwrap_or_else(|e| panic!("read {WIRE_MD}: {e}"));
    vector_in(&doc, heading)
}

/// A placeholder signature: r and s each one repeated byte, then v.
fn signature(r: u8, s: u8, v: u8) -> [u8; 65] {
    let mut signature = [r; 65];
    signature[32..64].fill(s);
    signature[64] = v;
    signature
}

#[test]
fn version_1_request() {
    let bytes = vector("Version 1 request");
    assert_eq!(bytes.len(), 20);
    let request = wire::decode_request(&bytes).expect("the vector is a request");
    assert_eq!(request, Request { version: 1, id: ID_1, signed: false, txs: vec![&[0xde, 0xad, 0xbe, 0xef][..]] });
    // Clients send version 2, which changed nothing but the version byte for
    // a request without flags (docs/wire.md, Versioning): the version 2
    // encoder writes version 1's bytes but for that byte.
    let mut out = Vec::new();
    wire::encode_request(request.id, request.signed, &request.txs, &mut out);
    assert_eq!(out[2], wire::VERSION);
    out[2] = request.version;
    assert_eq!(hex::encode(&out), hex::encode(&bytes));
}

#[test]
fn version_2_signed_request() {
    let bytes = vector("Version 2 request, signed");
    assert_eq!(bytes.len(), 19);
    let request = wire::decode_request(&bytes).expect("the vector is a request");
    assert_eq!(request, Request { version: 2, id: ID_2, signed: true, txs: vec![&[0x02, 0xc0, 0x01][..]] });
    let mut out = Vec::new();
    wire::encode_request(request.id, request.signed, &request.txs, &mut out);
    assert_eq!(hex::encode(&out), hex::encode(&bytes));
}

#[test]
fn reply_with_a_preconfirmation() {
    let bytes = vector("Reply with a preconfirmation");
    assert_eq!(bytes.len(), 68);
    // decode_reply does not return the version: read its byte.
    assert_eq!(bytes[2], 2, "the version");
    let (id, replies) = wire::decode_reply(&bytes).expect("the vector is a reply");
    assert_eq!(id, ID_2);
    let replies = replies.expect("answered per transaction");
    assert_eq!(
        replies,
        [TxReply::Preconfirmed {
            hash: B256::repeat_byte(0x11),
            block_number: 1_000_000,
            index: 7,
            success: true,
            gas_used: 21_000,
        }]
    );
    let mut out = Vec::new();
    wire::encode_reply(2, id, &replies, &mut out);
    assert_eq!(hex::encode(&out), hex::encode(&bytes));
}

#[test]
fn reply_with_a_rejection() {
    let bytes = vector("Reply with a rejection");
    assert_eq!(bytes.len(), 49);
    assert_eq!(bytes[2], 1, "the version");
    let (id, replies) = wire::decode_reply(&bytes).expect("the vector is a reply");
    assert_eq!(id, ID_1);
    let replies = replies.expect("answered per transaction");
    assert_eq!(replies, [TxReply::Rejected { hash: B256::repeat_byte(0x22), code: RejectCode::Busy }]);
    assert_eq!(RejectCode::Busy.as_u16(), 309);
    let mut out = Vec::new();
    wire::encode_reply(1, id, &replies, &mut out);
    assert_eq!(hex::encode(&out), hex::encode(&bytes));
}

#[test]
fn refusal_of_an_unsupported_version() {
    let bytes = vector("Refusal, unsupported version");
    assert_eq!(bytes.len(), 16);
    assert_eq!(bytes[2], 1, "the version");
    assert_eq!(wire::decode_reply(&bytes), Some((ID_1, Err(RejectCode::UnsupportedWireVersion))));
    assert_eq!(RejectCode::UnsupportedWireVersion.as_u16(), 104);
    // The answer to the version 1 request with its version byte set to 3.
    let mut request = vector("Version 1 request");
    request[2] = 3;
    let error = wire::decode_request(&request).expect_err("version 3 is not spoken");
    assert_eq!(error, RequestError { version: 1, id: ID_1, code: RejectCode::UnsupportedWireVersion });
    let mut out = Vec::new();
    wire::encode_refusal(error, &mut out);
    assert_eq!(hex::encode(&out), hex::encode(&bytes));
}

#[test]
fn proof_datagram() {
    let bytes = vector("Proof datagram");
    assert_eq!(bytes.len(), 343);
    assert_eq!(bytes[2], 2, "the version");
    let (id, preconf) = wire::decode_proof(&bytes).expect("the vector is a proof datagram");
    assert_eq!(id, ID_2);
    assert_eq!(
        preconf,
        SignedPreconf {
            tx_hash: B256::repeat_byte(0x11),
            block_number: 1_000_000,
            index: 7,
            batch_first_index: 5,
            batch_count: 4,
            batch_root: B256::repeat_byte(0x33),
            batch_signature: signature(0x44, 0x55, 1),
            proof: vec![B256::repeat_byte(0x99), B256::repeat_byte(0xaa)],
            chain_id: 31_337,
            epoch: 4,
            hot_key: Address::repeat_byte(0x66),
            valid_from_block: 900_000,
            valid_until_block: 1_100_000,
            certificate_signature: signature(0x77, 0x88, 0),
        }
    );
    let mut out = Vec::new();
    wire::encode_proof(id, &preconf, &mut out);
    assert_eq!(hex::encode(&out), hex::encode(&bytes));
}

#[test]
fn the_parser_finds_only_what_is_there() {
    let doc = "### A\n\ntext\n\n```hex\n54 50\n0a\n```\n\n### B\n\n```hex\n```\n\n### C\n\n### D\n\n```hex\n00\n```\n";
    assert_eq!(vector_in(doc, "A"), [0x54, 0x50, 0x0a]);
    for (heading, message) in
        [("B", "is not empty"), ("C", "no ```hex block"), ("E", "one heading"), ("Version 1", "one heading")]
    {
        let panic = std::panic::catch_unwind(|| vector_in(doc, heading)).expect_err(heading);
        let text = panic.downcast_ref::<String>().expect("a formatted message");
        assert!(text.contains(message), "{heading}: {text}");
    }
}
