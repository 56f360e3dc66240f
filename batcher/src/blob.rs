//! The OP Stack's blob encoding (specs: ecotone/derivation.md, "Blob
//! Encoding"): a payload of up to `BLOB_DATA_MAX_BYTES` in an EIP-4844
//! blob of 4096 field elements. Each field element's first byte keeps its
//! top two bits clear (an element is below the BLS modulus) and carries 6
//! bits of payload; the other 31 bytes carry payload as they are. Four
//! elements carry 127 bytes: 4 × 31, plus 3 bytes spread over the four
//! 6-bit values. The first element starts with the encoding version (0)
//! and the payload's length, a big-endian u24.
//!
//! Decoding refuses what op-node's `Blob.ToData` refuses: another version,
//! a length over the capacity, an element with either top bit set, and any
//! non-zero byte past the payload.

/// A blob: 4096 field elements of 32 bytes.
pub const BLOB_SIZE_BYTES: usize = 4096 * 32;

/// The most payload a blob carries: 1024 rounds of 127 bytes, less the
/// version and length (4 bytes).
pub const BLOB_DATA_MAX_BYTES: usize = (4 * 31 + 3) * 1024 - 4;

/// The encoding version, the first element's second byte.
const ENCODING_VERSION: u8 = 0;
/// Rounds of four field elements.
const ROUNDS: usize = 1024;
/// The bits a field element's first byte may not set.
const HIGH_BITS: u8 = 0b1100_0000;

/// A blob's bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Blob(pub Box<[u8; BLOB_SIZE_BYTES]>);

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let used = self.0.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        write!(f, "Blob({used} bytes up to the last non-zero one)")
    }
}

/// Why a payload does not fit a blob, or a blob holds no payload.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    #[error("a payload of {bytes} bytes, above a blob's {BLOB_DATA_MAX_BYTES}")]
    TooLarge { bytes: usize },
    #[error("blob encoding version {0}, not 0")]
    Version(u8),
    #[error("a payload length of {bytes} bytes, above a blob's {BLOB_DATA_MAX_BYTES}")]
    Length { bytes: usize },
    #[error("field element {element} has a top bit set")]
    FieldElement { element: usize },
    #[error("non-zero data past the payload, in field element {element}")]
    Extraneous { element: usize },
}

/// Reads a payload a byte or 31 at a time, zeros past its end.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        let byte = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        byte
    }

    fn bytes31(&mut self, out: &mut [u8]) {
        for byte in out.iter_mut().take(31) {
            *byte = self.byte();
        }
    }
}

impl Blob {
    /// `data` blob-encoded.
    pub fn encode(data: &[u8]) -> Result<Self, BlobError> {
        if data.len() > BLOB_DATA_MAX_BYTES {
            return Err(BlobError::TooLarge { bytes: data.len() });
        }
        let mut blob = Box::new([0u8; BLOB_SIZE_BYTES]);
        let mut input = Reader { data, at: 0 };
        for round in 0..ROUNDS {
            if input.at >= data.len() {
                break;
            }
            let element = |k: usize| (round * 4 + k) * 32;
            let first = element(0);
            if round == 0 {
                let length = u32::try_from(data.len()).expect("below the blob's capacity");
                blob[first + 1] = ENCODING_VERSION;
                blob[first + 2..first + 5].copy_from_slice(&length.to_be_bytes()[1..]);
                for byte in &mut blob[first + 5..first + 32] {
                    *byte = input.byte();
                }
            } else {
                input.bytes31(&mut blob[first + 1..first + 32]);
            }
            let x = input.byte();
            blob[first] = x & 0b0011_1111;
            input.bytes31(&mut blob[element(1) + 1..element(1) + 32]);
            let y = input.byte();
            blob[element(1)] = (y & 0b0000_1111) | ((x & HIGH_BITS) >> 2);
            input.bytes31(&mut blob[element(2) + 1..element(2) + 32]);
            let z = input.byte();
            blob[element(2)] = z & 0b0011_1111;
            input.bytes31(&mut blob[element(3) + 1..element(3) + 32]);
            blob[element(3)] = ((z & HIGH_BITS) >> 2) | ((y & 0b1111_0000) >> 4);
        }
        Ok(Self(blob))
    }

    /// The payload the blob carries; see the module comment.
    pub fn decode(&self) -> Result<Vec<u8>, BlobError> {
        let blob = &self.0;
        if blob[1] != ENCODING_VERSION {
            return Err(BlobError::Version(blob[1]));
        }
        let length = usize::from(blob[2]) << 16 | usize::from(blob[3]) << 8 | usize::from(blob[4]);
        if length > BLOB_DATA_MAX_BYTES {
            return Err(BlobError::Length { bytes: length });
        }
        let mut out = Vec::with_capacity(BLOB_DATA_MAX_BYTES + 4);
        let mut rounds = 0;
        // The version and length are the first element's first 4 payload bytes.
        while rounds < ROUNDS && (rounds == 0 || out.len() < length + 4) {
            let mut six_bits = [0u8; 4];
            let mut tails = [[0u8; 31]; 4];
            for k in 0..4 {
                let element = rounds * 4 + k;
                let at = element * 32;
                if blob[at] & HIGH_BITS != 0 {
                    return Err(BlobError::FieldElement { element });
                }
                six_bits[k] = blob[at];
                tails[k].copy_from_slice(&blob[at + 1..at + 32]);
            }
            let x = (six_bits[0] & 0b0011_1111) | ((six_bits[1] & 0b0011_0000) << 2);
            let y = (six_bits[1] & 0b0000_1111) | ((six_bits[3] & 0b0000_1111) << 4);
            let z = (six_bits[2] & 0b0011_1111) | ((six_bits[3] & 0b0011_0000) << 2);
            out.extend_from_slice(&tails[0]);
            out.push(x);
            out.extend_from_slice(&tails[1]);
            out.push(y);
            out.extend_from_slice(&tails[2]);
            out.push(z);
            out.extend_from_slice(&tails[3]);
            rounds += 1;
        }
        // `out` starts with the version and the length.
        let payload_end = length + 4;
        if let Some(at) = out.iter().skip(payload_end).position(|b| *b != 0) {
            return Err(BlobError::Extraneous { element: element_of(payload_end + at) });
        }
        if let Some(at) = blob[rounds * 4 * 32..].iter().position(|b| *b != 0) {
            return Err(BlobError::Extraneous { element: rounds * 4 + at / 32 });
        }
        out.truncate(payload_end);
        Ok(out.split_off(4))
    }
}

/// The field element a decoded byte came from: 127 bytes a round, the
/// elements' tails of 31 and the reassembled bytes between them.
fn element_of(decoded_at: usize) -> usize {
    let (round, within) = (decoded_at / 127, decoded_at % 127);
    round * 4 + (within / 32).min(3)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn blob_starting(bytes: &[u8]) -> Blob {
        let mut blob = Box::new([0u8; BLOB_SIZE_BYTES]);
        blob[..bytes.len()].copy_from_slice(bytes);
        Blob(blob)
    }

    /// op-node's `TestEncodeTestVectors` and `TestDecodeTestVectors`
    /// (op-service/eth/blob_test.go): a blob's first bytes, the rest zero.
    #[test]
    fn blobs_are_op_nodes_bytes() {
        let ff = |n| vec![0xffu8; n];
        let vectors: [(Vec<u8>, Vec<u8>); 4] = [
            (Vec::new(), Vec::new()),
            (vec![0; BLOB_DATA_MAX_BYTES], vec![0, 0, 0x01, 0xfb, 0xfc]),
            (ff(27), [vec![0, 0, 0, 0, 0x1b], ff(27)].concat()),
            (ff(28), [vec![0x3f, 0, 0, 0, 0x1c], ff(27), vec![0x30]].concat()),
        ];
        for (data, start) in vectors {
            let blob = Blob::encode(&data).unwrap();
            assert_eq!(blob, blob_starting(&start), "{} bytes", data.len());
            assert_eq!(blob.decode().unwrap(), data);
        }
        // Decode-only vectors: a length of 1 and 10 over zeros, and 32 bytes of 0xff.
        assert_eq!(blob_starting(&[0, 0, 0, 0, 1]).decode().unwrap(), vec![0]);
        let ten = [vec![0, 0, 0, 0, 0x0a], vec![0; 9], vec![0xff]].concat();
        assert_eq!(blob_starting(&ten).decode().unwrap(), [vec![0; 9], vec![0xff]].concat());
        let thirty_two = [vec![0x3f, 0, 0, 0, 0x20], ff(27), vec![0x30], ff(4)].concat();
        assert_eq!(blob_starting(&thirty_two).decode().unwrap(), ff(32));
        assert_eq!(
            Blob::encode(&vec![0; BLOB_DATA_MAX_BYTES + 1]),
            Err(BlobError::TooLarge { bytes: BLOB_DATA_MAX_BYTES + 1 })
        );
        assert_eq!(
            blob_starting(&[0, 0, 0x01, 0xfb, 0xfd]).decode(),
            Err(BlobError::Length { bytes: BLOB_DATA_MAX_BYTES + 1 })
        );
    }

    /// op-node's `TestInvalidBlobDecoding` and `TestExtraneousData`.
    #[test]
    fn a_bad_blob_is_refused() {
        let blob = Blob::encode(b"this is a test of invalid blob decoding").unwrap();
        for bit in [0b1000_0000, 0b0100_0000] {
            let mut bad = blob.clone();
            bad.0[32] = bit;
            assert_eq!(bad.decode(), Err(BlobError::FieldElement { element: 1 }));
        }
        let mut version = blob.clone();
        version.0[1] = 1;
        assert_eq!(version.decode(), Err(BlobError::Version(1)));
        for first in [0x30, 0x01] {
            assert!(matches!(blob_starting(&[first, 0, 0, 0, 0]).decode(), Err(BlobError::Extraneous { .. })));
        }
        for at in (5..BLOB_SIZE_BYTES).step_by(7) {
            let mut extra = blob_starting(&[]);
            extra.0[at] = 1;
            assert!(
                matches!(
                    extra.decode(),
                    Err(BlobError::Extraneous { .. }) | Err(BlobError::Length { .. }) | Err(BlobError::Version(_))
                ),
                "byte {at}"
            );
        }
    }

    #[test]
    fn lengths_around_every_boundary_round_trip() {
        let data: Vec<u8> = (0..BLOB_DATA_MAX_BYTES).map(|i| u8::try_from((i * 7 + i / 251) % 256).unwrap()).collect();
        for len in (0..300).chain(BLOB_DATA_MAX_BYTES - 300..=BLOB_DATA_MAX_BYTES) {
            let blob = Blob::encode(&data[..len]).unwrap();
            assert_eq!(blob.decode().unwrap(), &data[..len], "length {len}");
        }
    }

    proptest! {
        #[test]
        fn any_payload_round_trips(data in proptest::collection::vec(any::<u8>(), 0..4_000)) {
            prop_assert_eq!(Blob::encode(&data).unwrap().decode().unwrap(), data);
        }

        #[test]
        fn a_flipped_bit_never_decodes_to_the_same_payload(data in proptest::collection::vec(any::<u8>(), 0..600), at in 0usize..BLOB_SIZE_BYTES, bit in 0u8..8) {
            let mut blob = Blob::encode(&data).unwrap();
            blob.0[at] ^= 1 << bit;
            if let Ok(decoded) = blob.decode() {
                prop_assert_ne!(decoded, data);
            }
        }
    }
}
