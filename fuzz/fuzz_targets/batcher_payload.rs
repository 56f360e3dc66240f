//! What tephra reads back from L1 for its safe head: a batcher transaction's
//! payload (calldata), a blob, a channel and a span batch. Parsing never panics;
//! frames parsed from a payload make the same payload again; a blob that
//! decodes encodes back to itself, and any payload that fits a blob decodes
//! from it unchanged; a channel's batches make the same content again; a
//! span batch that decodes survives re-encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tephra_batcher::{BLOB_SIZE_BYTES, Blob, RawSpanBatch, batches_of, content_of, decompress, parse_frames, payload_of};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(frames) = parse_frames(bytes) {
        assert_eq!(payload_of(&frames), bytes, "frames re-encode to their payload");
    }
    let mut blob = Box::new([0u8; BLOB_SIZE_BYTES]);
    let n = bytes.len().min(BLOB_SIZE_BYTES);
    blob[..n].copy_from_slice(&bytes[..n]);
    let blob = Blob(blob);
    if let Ok(data) = blob.decode() {
        assert_eq!(Blob::encode(&data).expect("a decoded payload fits"), blob, "a decoded blob encodes back to itself");
    }
    if let Ok(encoded) = Blob::encode(bytes) {
        assert_eq!(encoded.decode().expect("an encoded blob decodes"), bytes);
    }
    if let Ok(content) = decompress(bytes)
        && let Ok(batches) = batches_of(&content)
    {
        assert_eq!(content_of(batches.iter().map(|b| &b[..])), content, "batches make their content again");
    }
    // Varints may come longer than needed (as op-node reads them): the
    // fields survive re-encoding, not always the bytes.
    if let Ok(batch) = RawSpanBatch::decode(bytes) {
        let mut encoded = Vec::new();
        batch.encode_into(&mut encoded);
        assert_eq!(RawSpanBatch::decode(&encoded).as_ref(), Ok(&batch), "a span batch survives re-encoding");
    }
});
