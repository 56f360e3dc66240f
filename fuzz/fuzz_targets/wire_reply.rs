//! A UDP reply datagram, as a client decodes it: never a panic, and what
//! decodes survives a round trip through the encoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tephra_types::wire::{RequestError, decode_reply, encode_refusal, encode_reply};

fuzz_target!(|datagram: &[u8]| {
    let Some((id, decoded)) = decode_reply(datagram) else { return };
    let mut again = Vec::new();
    match &decoded {
        Ok(replies) => encode_reply(id, replies, &mut again),
        Err(code) => encode_refusal(RequestError { id, code: *code }, &mut again),
    }
    assert_eq!(decode_reply(&again), Some((id, decoded)), "a decoded reply survives re-encoding");
});
