//! A UDP reply or proof datagram, as a client decodes it: never a panic, and
//! what decodes survives a round trip through the encoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tephra_types::wire::{RequestError, decode_proof, decode_reply, encode_proof, encode_refusal, encode_reply};

fuzz_target!(|datagram: &[u8]| {
    let mut again = Vec::new();
    if let Some((id, proof)) = decode_proof(datagram) {
        encode_proof(id, &proof, &mut again);
        assert_eq!(again, datagram, "a decoded proof re-encodes to itself");
    }
    let Some((id, decoded)) = decode_reply(datagram) else { return };
    // A decoded reply has a header, and so a version.
    let version = datagram[2];
    match &decoded {
        Ok(replies) => encode_reply(version, id, replies, &mut again),
        Err(code) => encode_refusal(RequestError { version, id, code: *code }, &mut again),
    }
    assert_eq!(decode_reply(&again), Some((id, decoded)), "a decoded reply survives re-encoding");
});
