//! UDP wire format, version 1 (docs/wire.md): a request datagram carries raw
//! EIP-2718 transactions under a request id; the reply carries, per
//! transaction, a preconfirmation or a rejection code. Big-endian throughout.
//! Decoding checks every length against the datagram: bad input is an error,
//! never a panic.

use alloy_primitives::B256;

use crate::{RejectCode, limits::TX_SIZE_MAX_BYTES};

pub const MAGIC: [u8; 2] = *b"TP";
pub const VERSION: u8 = 1;
pub const KIND_REQUEST: u8 = 1;
pub const KIND_REPLY: u8 = 2;
/// Largest UDP payload over IPv4.
pub const DATAGRAM_SIZE_MAX_BYTES: usize = 65_507;
/// Transactions one request may carry.
pub const TXS_PER_DATAGRAM_MAX: usize = 64;
const HEADER_BYTES: usize = 14;

/// A decoded request: its id and the raw transactions, borrowed from the datagram.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub id: u64,
    pub txs: Vec<&'a [u8]>,
}

/// Why a request as a whole was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestError {
    /// The request id, when the header got that far.
    pub id: u64,
    pub code: RejectCode,
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
    let malformed = |id| RequestError { id, code: RejectCode::Malformed };
    if datagram.len() < HEADER_BYTES || datagram[..2] != MAGIC {
        return Err(malformed(0));
    }
    let id = u64::from_be_bytes(datagram[4..12].try_into().expect("8 bytes"));
    if datagram[2] != VERSION {
        return Err(RequestError { id, code: RejectCode::UnsupportedWireVersion });
    }
    if datagram[3] != KIND_REQUEST || datagram[12] != 0 {
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
    Ok(Request { id, txs })
}

/// Encodes a request (clients and tests).
pub fn encode_request(id: u64, txs: &[&[u8]], out: &mut Vec<u8>) {
    assert!(!txs.is_empty() && txs.len() <= TXS_PER_DATAGRAM_MAX, "1 to 64 transactions");
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, KIND_REQUEST]);
    out.extend_from_slice(&id.to_be_bytes());
    out.push(0);
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

fn reply_header(id: u64, status: u8, count: u8, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, KIND_REPLY]);
    out.extend_from_slice(&id.to_be_bytes());
    out.push(status);
    out.push(count);
}

/// Encodes the reply to a request: one entry per transaction, in order.
pub fn encode_reply(id: u64, replies: &[TxReply], out: &mut Vec<u8>) {
    reply_header(id, STATUS_OK, u8::try_from(replies.len()).expect("at most 64"), out);
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
    reply_header(error.id, STATUS_REFUSED, 0, out);
    out.extend_from_slice(&error.code.as_u16().to_be_bytes());
}

/// A decoded reply (clients and tests): per-transaction answers, or the
/// code that refused the whole request.
pub fn decode_reply(datagram: &[u8]) -> Option<(u64, Result<Vec<TxReply>, RejectCode>)> {
    if datagram.len() < HEADER_BYTES || datagram[..2] != MAGIC || datagram[2] != VERSION || datagram[3] != KIND_REPLY {
        return None;
    }
    let id = u64::from_be_bytes(datagram[4..12].try_into().ok()?);
    let mut rest = &datagram[HEADER_BYTES..];
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = (rest.get(..n)?, rest.get(n..)?);
        rest = tail;
        Some(head)
    };
    if datagram[12] == STATUS_REFUSED {
        let code = RejectCode::from_u16(u16::from_be_bytes(take(2)?.try_into().ok()?))?;
        return Some((id, Err(code)));
    }
    let mut replies = Vec::new();
    for _ in 0..datagram[13] {
        let tag = take(1)?[0];
        let hash = B256::from_slice(take(32)?);
        replies.push(match tag {
            TAG_PRECONFIRMED => TxReply::Preconfirmed {
                hash,
                block_number: u64::from_be_bytes(take(8)?.try_into().ok()?),
                index: u32::from_be_bytes(take(4)?.try_into().ok()?),
                success: take(1)?[0] == 1,
                gas_used: u64::from_be_bytes(take(8)?.try_into().ok()?),
            },
            TAG_REJECTED => {
                TxReply::Rejected { hash, code: RejectCode::from_u16(u16::from_be_bytes(take(2)?.try_into().ok()?))? }
            }
            _ => return None,
        });
    }
    rest.is_empty().then_some((id, Ok(replies)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn requests_and_replies_round_trip() {
        let txs: [&[u8]; 2] = [&[0x02, 0xc0], &[0xf8, 0x01, 0x02]];
        let mut buf = Vec::new();
        encode_request(7, &txs, &mut buf);
        assert_eq!(decode_request(&buf).unwrap(), Request { id: 7, txs: txs.to_vec() });
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
        encode_reply(7, &replies, &mut buf);
        assert_eq!(decode_reply(&buf), Some((7, Ok(replies.to_vec()))));
        encode_refusal(RequestError { id: 7, code: RejectCode::UnsupportedWireVersion }, &mut buf);
        assert_eq!(decode_reply(&buf), Some((7, Err(RejectCode::UnsupportedWireVersion))));
    }

    #[test]
    fn bad_requests_get_a_code() {
        let mut buf = Vec::new();
        encode_request(5, &[&[1, 2, 3]], &mut buf);
        let mut other_version = buf.clone();
        other_version[2] = 2;
        assert_eq!(
            decode_request(&other_version),
            Err(RequestError { id: 5, code: RejectCode::UnsupportedWireVersion })
        );
        let mut trailing = buf.clone();
        trailing.push(0);
        assert_eq!(decode_request(&trailing).unwrap_err().code, RejectCode::Malformed);
        assert_eq!(decode_request(&buf[..buf.len() - 1]).unwrap_err().code, RejectCode::Malformed);
        assert_eq!(decode_request(b"XX").unwrap_err(), RequestError { id: 0, code: RejectCode::Malformed });
    }

    proptest! {
        #[test]
        fn arbitrary_datagrams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode_request(&bytes);
            let _ = decode_reply(&bytes);
        }

        #[test]
        fn mutated_requests_never_panic(index in 0usize..64, byte in any::<u8>()) {
            let mut buf = Vec::new();
            encode_request(1, &[&[1; 20], &[2; 30]], &mut buf);
            let i = index % buf.len();
            buf[i] = byte;
            let _ = decode_request(&buf);
        }
    }
}
