//! An update bundle as `tephra update apply` reads it (image/src/bundle.rs):
//! any bytes give a manifest or an error that says why, never a panic; the
//! members reach the writer only in order, each whole.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use tephra_image::bundle::BundleReader;

fuzz_target!(|bytes: &[u8]| {
    let mut seen = Vec::new();
    let result = BundleReader::new(bytes).read(|_, name, data| {
        let mut content = Vec::new();
        data.read_to_end(&mut content).map_err(tephra_image::UpdateError::Io)?;
        seen.push(name.to_string());
        Ok(())
    });
    match result {
        Ok(_) => assert_eq!(seen, ["root.img", "root.verity", "tephra.efi"]),
        Err(error) => assert!(!error.to_string().is_empty(), "a refusal says why"),
    }
});
