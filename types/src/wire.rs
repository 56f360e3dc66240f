//! UDP wire format, versions 1 and 2 (docs/wire.md): a request datagram
//! carries raw EIP-2718 transactions under a request id; the reply carries,
//! per transaction, a preconfirmation or a rejection code. Version 2 adds a
//! request flag asking for signed preconfirmations: one proof datagram per
//! preconfirmed transaction follows the reply. Big-endian throughout.
//! Decoding checks every length against the datagram: bad input is an error,
//! never a panic.

use alloy_primitives::{Address, B256};

use crate::{RejectCode, limits::TX_SIZE_MAX_BYTES};

pub const MAGIC: [u8; 2] = *b"TP";
/// The newest version, which clients send; a node answers each version it
/// speaks in that version.
pub const VERSION: u8 = 2;
/// The oldest version a node still answers.
pub const VERSION_MIN: u8 = 1;
pub const KIND_REQUEST: u8 = 1;
pub const KIND_REPLY: u8 = 2;
/// A signed preconfirmation of one transaction (version 2).
pub const KIND_PROOF: u8 = 3;
/// The version that brought `FLAG_SIGNED` and proof datagrams.
const SIGNED_SINCE_VERSION: u8 = 2;
/// Request flag (version 2): send a proof datagram per preconfirmed transaction.
pub const FLAG_SIGNED: u8 = 0x01;
/// Merkle siblings in a proof at most: enough for 2^32 transactions in a mini-block.
pub const PROOF_DEPTH_MAX: usize = 32;
/// Largest UDP payload over IPv4.
pub const DATAGRAM_SIZE_MAX_BYTES: usize = 65_507;
/// Transactions one request may carry.
pub const TXS_PER_DATAGRAM_MAX: usize = 64;
const HEADER_BYTES: usize = 14;

/// A decoded request: its id and the raw transactions, borrowed from the datagram.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The request's version, which its reply carries.
    pub version: u8,
    pub id: u64,
    /// Whether the client asked for proof datagrams (`FLAG_SIGNED`).
    pub signed: bool,
    pub txs: Vec<&'a [u8]>,
}

/// Why a request as a whole was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestError {
    /// The version the refusal is written in: the request's, or 1 when the
    /// node does not speak it or could not read it.
    pub version: u8,
    /// The request id, when the header got that far.
    pub id: u64,
    pub code: RejectCode,
}

impl RequestError {
    /// A datagram not readable as a request of any version.
    pub const MALFORMED: Self = Self { version: VERSION_MIN, id: 0, code: RejectCode::Malformed };
}

/// A transaction's preconfirmation signed by the node's hot key, with
/// everything a client needs to check it back to the block key: the
/// mini-block's signed root, the transaction's Merkle proof under it and the
/// hot key's certificate (tephra_hsm's `Preconfirmation`, flattened).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedPreconf {
    pub tx_hash: B256,
    pub block_number: u64,
    /// The transaction's index in its block.
    pub index: u32,
    /// The mini-block: its first index in the block, its length, the root
    /// of its transaction hashes and the hot key's signature over them.
    pub batch_first_index: u32,
    pub batch_count: u32,
    pub batch_root: B256,
    pub batch_signature: [u8; 65],
    /// Siblings from the leaf up to the root, at most `PROOF_DEPTH_MAX`.
    pub proof: Vec<B256>,
    /// The block key's certificate of the hot key.
    pub chain_id: u64,
    pub epoch: u64,
    pub hot_key: Address,
    pub valid_from_block: u64,
    pub valid_until_block: u64,
    pub certificate_signature: [u8; 65],
}

/// The answer for one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxReply {
    Preconfirmed {
        hash: B256,
        block_number: u64,
        index: u32,
        success: bool,
        gas_used: u64,
    },
    /// `hash` is zero when the bytes did not decode far enough to have one.
    Rejected {
        hash: B256,
        code: RejectCode,
    },
}

/// Decodes a request datagram.
pub fn decode_request(datagram: &[u8]) -> Result<Request<'_>, RequestError> {
    if datagram.len() < HEADER_BYTES || datagram[..2] != MAGIC {
        return Err(RequestError::MALFORMED);
    }
    let id = u64::from_be_bytes(datagram[4..12].try_into().expect("8 bytes"));
    let version = datagram[2];
    if !(VERSION_MIN..=VERSION).contains(&version) {
        return Err(RequestError { version: VERSION_MIN, id, code: RejectCode::UnsupportedWireVersion });
    }
    let malformed = |id| RequestError { version, id, code: RejectCode::Malformed };
    let flags_known = if version < SIGNED_SINCE_VERSION { 0 } else { FLAG_SIGNED };
    if datagram[3] != KIND_REQUEST || datagram[12] & !flags_known != 0 {
        return Err(malformed(id));
    }
    let count = usize::from(datagram[13]);
    if count == 0 || count > TXS_PER_DATAGRAM_MAX {
        return Err(malformed(id));
    }
    let mut rest = &datagram[HEADER_BYTES..];
    let mut txs = Vec::with_capacity(count);
    for _ in 0..count {
        if rest.len() < 2 {
            return Err(malformed(id));
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let Some(tx) = rest.get(2..2 + len) else { return Err(malformed(id)) };
        if len == 0 || len > TX_SIZE_MAX_BYTES {
            return Err(malformed(id));
        }
        txs.push(tx);
        rest = &rest[2 + len..];
    }
    if !rest.is_empty() {
        return Err(malformed(id));
    }
    Ok(Request { version, id, signed: datagram[12] & FLAG_SIGNED != 0, txs })
}

/// Encodes a request (clients and tests), in the newest version; `signed`
/// asks for a proof datagram per preconfirmed transaction.
pub fn encode_request(id: u64, signed: bool, txs: &[&[u8]], out: &mut Vec<u8>) {
    assert!(!txs.is_empty() && txs.len() <= TXS_PER_DATAGRAM_MAX, "1 to 64 transactions");
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, KIND_REQUEST]);
    out.extend_from_slice(&id.to_be_bytes());
    out.push(if signed { FLAG_SIGNED } else { 0 });
    out.push(u8::try_from(txs.len()).expect("at most 64"));
    for tx in txs {
        out.extend_from_slice(&u16::try_from(tx.len()).expect("a transaction fits a datagram").to_be_bytes());
        out.extend_from_slice(tx);
    }
}

const STATUS_OK: u8 = 0;
const STATUS_REFUSED: u8 = 1;
const TAG_PRECONFIRMED: u8 = 1;
const TAG_REJECTED: u8 = 2;

fn header(version: u8, kind: u8, id: u64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[version, kind]);
    out.extend_from_slice(&id.to_be_bytes());
}

fn reply_header(version: u8, id: u64, status: u8, count: u8, out: &mut Vec<u8>) {
    header(version, KIND_REPLY, id, out);
    out.push(status);
    out.push(count);
}

/// Encodes the reply to a request of `version`: one entry per transaction, in order.
pub fn encode_reply(version: u8, id: u64, replies: &[TxReply], out: &mut Vec<u8>) {
    reply_header(version, id, STATUS_OK, u8::try_from(replies.len()).expect("at most 64"), out);
    for reply in replies {
        match *reply {
            TxReply::Preconfirmed { hash, block_number, index, success, gas_used } => {
                out.push(TAG_PRECONFIRMED);
                out.extend_from_slice(hash.as_slice());
                out.extend_from_slice(&block_number.to_be_bytes());
                out.extend_from_slice(&index.to_be_bytes());
                out.push(u8::from(success));
                out.extend_from_slice(&gas_used.to_be_bytes());
            }
            TxReply::Rejected { hash, code } => {
                out.push(TAG_REJECTED);
                out.extend_from_slice(hash.as_slice());
                out.extend_from_slice(&code.as_u16().to_be_bytes());
            }
        }
    }
}

/// Encodes the reply to a request refused as a whole.
pub fn encode_refusal(error: RequestError, out: &mut Vec<u8>) {
    reply_header(error.version, error.id, STATUS_REFUSED, 0, out);
    out.extend_from_slice(&error.code.as_u16().to_be_bytes());
}

/// Encodes the proof datagram of one signed preconfirmation (version 2).
pub fn encode_proof(id: u64, p: &SignedPreconf, out: &mut Vec<u8>) {
    assert!(p.proof.len() <= PROOF_DEPTH_MAX, "a proof of at most {PROOF_DEPTH_MAX} siblings");
    header(VERSION, KIND_PROOF, id, out);
    out.extend_from_slice(p.tx_hash.as_slice());
    out.extend_from_slice(&p.block_number.to_be_bytes());
    out.extend_from_slice(&p.index.to_be_bytes());
    out.extend_from_slice(&p.batch_first_index.to_be_bytes());
    out.extend_from_slice(&p.batch_count.to_be_bytes());
    out.extend_from_slice(p.batch_root.as_slice());
    out.extend_from_slice(&p.batch_signature);
    out.extend_from_slice(&p.chain_id.to_be_bytes());
    out.extend_from_slice(&p.epoch.to_be_bytes());
    out.extend_from_slice(p.hot_key.as_slice());
    out.extend_from_slice(&p.valid_from_block.to_be_bytes());
    out.extend_from_slice(&p.valid_until_block.to_be_bytes());
    out.extend_from_slice(&p.certificate_signature);
    out.push(u8::try_from(p.proof.len()).expect("at most PROOF_DEPTH_MAX"));
    for sibling in &p.proof {
        out.extend_from_slice(sibling.as_slice());
    }
}

/// Reads a datagram field by field; every read checks the length.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        self.array().map(u8::from_be_bytes)
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }

    fn b256(&mut self) -> Option<B256> {
        self.array().map(B256::from)
    }
}

/// The request id of a datagram of `kind` in a version from `since` (the
/// version that brought the kind) to the newest.
fn read_header(datagram: &[u8], kind: u8, since: u8) -> Option<u64> {
    let known = datagram.get(..2)? == MAGIC && (since..=VERSION).contains(datagram.get(2)?);
    let id = u64::from_be_bytes(datagram.get(4..12)?.try_into().ok()?);
    (known && datagram[3] == kind).then_some(id)
}

/// A decoded proof datagram (clients and tests): the request id and the
/// signed preconfirmation. None for anything else.
pub fn decode_proof(datagram: &[u8]) -> Option<(u64, SignedPreconf)> {
    let id = read_header(datagram, KIND_PROOF, SIGNED_SINCE_VERSION)?;
    let mut fields = Fields(datagram.get(12..)?);
    let mut p = SignedPreconf {
        tx_hash: fields.b256()?,
        block_number: fields.u64()?,
        index: fields.u32()?,
        batch_first_index: fields.u32()?,
        batch_count: fields.u32()?,
        batch_root: fields.b256()?,
        batch_signature: fields.array()?,
        chain_id: fields.u64()?,
        epoch: fields.u64()?,
        hot_key: Address::from(fields.array::<20>()?),
        valid_from_block: fields.u64()?,
        valid_until_block: fields.u64()?,
        certificate_signature: fields.array()?,
        proof: Vec::new(),
    };
    let depth = usize::from(fields.u8()?);
    if depth > PROOF_DEPTH_MAX {
        return None;
    }
    p.proof = (0..depth).map(|_| fields.b256()).collect::<Option<_>>()?;
    fields.0.is_empty().then_some((id, p))
}

/// A decoded reply (clients and tests): per-transaction answers, or the
/// code that refused the whole request.
pub fn decode_reply(datagram: &[u8]) -> Option<(u64, Result<Vec<TxReply>, RejectCode>)> {
    let id = read_header(datagram, KIND_REPLY, VERSION_MIN)?;
    let mut fields = Fields(datagram.get(HEADER_BYTES..)?);
    // Only what the encoder writes is read: anything else is not a reply.
    match datagram[12] {
        STATUS_REFUSED if datagram[13] == 0 => {
            let code = RejectCode::from_u16(fields.u16()?)?;
            return fields.0.is_empty().then_some((id, Err(code)));
        }
        STATUS_OK => {}
        _ => return None,
    }
    let mut replies = Vec::new();
    for _ in 0..datagram[13] {
        let tag = fields.u8()?;
        let hash = fields.b256()?;
        replies.push(match tag {
            TAG_PRECONFIRMED => TxReply::Preconfirmed {
                hash,
                block_number: fields.u64()?,
                index: fields.u32()?,
                success: match fields.u8()? {
                    0 => false,
                    1 => true,
                    _ => return None,
                },
                gas_used: fields.u64()?,
            },
            TAG_REJECTED => TxReply::Rejected { hash, code: RejectCode::from_u16(fields.u16()?)? },
            _ => return None,
        });
    }
    fields.0.is_empty().then_some((id, Ok(replies)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn signed_preconf(depth: usize) -> SignedPreconf {
        SignedPreconf {
            tx_hash: B256::repeat_byte(1),
            block_number: 9,
            index: 3,
            batch_first_index: 2,
            batch_count: 5,
            batch_root: B256::repeat_byte(2),
            batch_signature: [3; 65],
            proof: (0..depth).map(|i| B256::repeat_byte(u8::try_from(i).unwrap())).collect(),
            chain_id: 31_337,
            epoch: 4,
            hot_key: Address::repeat_byte(5),
            valid_from_block: 8,
            valid_until_block: 16,
            certificate_signature: [6; 65],
        }
    }

    #[test]
    fn requests_and_replies_round_trip() {
        let txs: [&[u8]; 2] = [&[0x02, 0xc0], &[0xf8, 0x01, 0x02]];
        let mut buf = Vec::new();
        encode_request(7, false, &txs, &mut buf);
        assert_eq!(decode_request(&buf).unwrap(), Request { version: 2, id: 7, signed: false, txs: txs.to_vec() });
        encode_request(7, true, &txs, &mut buf);
        assert!(decode_request(&buf).unwrap().signed);
        let replies = [
            TxReply::Preconfirmed {
                hash: B256::repeat_byte(1),
                block_number: 9,
                index: 3,
                success: true,
                gas_used: 21_000,
            },
            TxReply::Rejected { hash: B256::ZERO, code: RejectCode::Malformed },
        ];
        for version in [1, 2] {
            encode_reply(version, 7, &replies, &mut buf);
            assert_eq!(buf[2], version);
            assert_eq!(decode_reply(&buf), Some((7, Ok(replies.to_vec()))));
        }
        let refusal = RequestError { version: 1, id: 7, code: RejectCode::UnsupportedWireVersion };
        encode_refusal(refusal, &mut buf);
        assert_eq!(decode_reply(&buf), Some((7, Err(RejectCode::UnsupportedWireVersion))));
        for depth in [0, 1, 8, PROOF_DEPTH_MAX] {
            let p = signed_preconf(depth);
            encode_proof(7, &p, &mut buf);
            assert_eq!(buf.len(), 279 + 32 * depth, "the layout of docs/wire.md");
            assert_eq!(decode_proof(&buf), Some((7, p)));
            assert_eq!(decode_reply(&buf), None, "a proof is not a reply");
            assert_eq!(decode_proof(&buf[..buf.len() - 1]), None);
            // Proofs came with version 2 (found by the wire_reply fuzz target).
            buf[2] = 1;
            assert_eq!(decode_proof(&buf), None);
        }
    }

    #[test]
    fn version_1_requests_are_still_read() {
        let mut buf = Vec::new();
        encode_request(5, false, &[&[1, 2, 3]], &mut buf);
        buf[2] = 1;
        assert_eq!(decode_request(&buf).unwrap(), Request { version: 1, id: 5, signed: false, txs: vec![&[1, 2, 3]] });
        // Version 1 has no flags.
        buf[12] = FLAG_SIGNED;
        assert_eq!(decode_request(&buf), Err(RequestError { version: 1, id: 5, code: RejectCode::Malformed }));
    }

    #[test]
    fn bad_requests_get_a_code() {
        let mut buf = Vec::new();
        encode_request(5, false, &[&[1, 2, 3]], &mut buf);
        let mut other_version = buf.clone();
        other_version[2] = 3;
        assert_eq!(
            decode_request(&other_version),
            Err(RequestError { version: 1, id: 5, code: RejectCode::UnsupportedWireVersion })
        );
        let mut unknown_flag = buf.clone();
        unknown_flag[12] = 0x02;
        assert_eq!(decode_request(&unknown_flag), Err(RequestError { version: 2, id: 5, code: RejectCode::Malformed }));
        let mut trailing = buf.clone();
        trailing.push(0);
        assert_eq!(decode_request(&trailing).unwrap_err().code, RejectCode::Malformed);
        assert_eq!(decode_request(&buf[..buf.len() - 1]).unwrap_err().code, RejectCode::Malformed);
        assert_eq!(decode_request(b"XX").unwrap_err(), RequestError::MALFORMED);
    }

    proptest! {
        #[test]
        fn arbitrary_datagrams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode_request(&bytes);
            let _ = decode_reply(&bytes);
            let _ = decode_proof(&bytes);
        }

        #[test]
        fn mutated_requests_never_panic(index in 0usize..64, byte in any::<u8>()) {
            let mut buf = Vec::new();
            encode_request(1, true, &[&[1; 20], &[2; 30]], &mut buf);
            let i = index % buf.len();
            buf[i] = byte;
            let _ = decode_request(&buf);
        }

        #[test]
        fn mutated_proofs_never_panic(index in 0usize..600, byte in any::<u8>(), depth in 0usize..=8) {
            let mut buf = Vec::new();
            encode_proof(1, &signed_preconf(depth), &mut buf);
            let i = index % buf.len();
            buf[i] = byte;
            let _ = decode_proof(&buf);
        }
    }
}
