//! A UDP request datagram: decoding never panics, and what decodes encodes
//! back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tephra_types::wire::{decode_request, encode_request};

fuzz_target!(|datagram: &[u8]| {
    if let Ok(request) = decode_request(datagram) {
        let mut again = Vec::new();
        encode_request(request.id, &request.txs, &mut again);
        assert_eq!(again, datagram, "a decoded request re-encodes to itself");
    }
});
