//! A UDP request datagram: decoding never panics, and what decodes encodes
//! back to the same bytes (versions 1 and 2 share the layout).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tephra_types::wire::{decode_request, encode_request};

fuzz_target!(|datagram: &[u8]| {
    if let Ok(request) = decode_request(datagram) {
        let mut again = Vec::new();
        encode_request(request.id, request.signed, &request.txs, &mut again);
        again[2] = request.version;
        assert_eq!(again, datagram, "a decoded request re-encodes to itself");
    }
});
