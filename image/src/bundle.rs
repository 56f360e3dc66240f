//! The update bundle `tephra-<version>.update`: a tar (inspect it with
//! `tar tvf`) of four members in this order, so that it can be applied in one
//! pass from a file or a block device:
//!
//! | member          | what                                              |
//! |-----------------|---------------------------------------------------|
//! | `manifest.json` | version, root hash, each member's size and SHA-256 |
//! | `root.img`      | the root file system (erofs), for a root slot      |
//! | `root.verity`   | its dm-verity hash tree, for the slot's verity     |
//! | `tephra.efi`    | the unified kernel image that boots it             |

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::UpdateError;

/// The bundle format this build reads and image/build.sh writes.
pub const BUNDLE_FORMAT: u32 = 1;
/// Largest manifest read.
pub const MANIFEST_BYTES_MAX: u64 = 64 * 1024;
/// Largest unified kernel image accepted for the ESP.
pub const UKI_BYTES_MAX: u64 = 192 * 1024 * 1024;
/// Copy buffer for the streamed members.
const COPY_BUFFER_BYTES: usize = 1024 * 1024;

/// The members, in the order they must appear.
pub const MEMBERS: [&str; 4] = ["manifest.json", "root.img", "root.verity", "tephra.efi"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// The image version (os-release IMAGE_VERSION), as in the file names.
    pub version: String,
    /// The dm-verity root hash of root.img, 64 hex digits.
    pub roothash: String,
    pub root: Member,
    pub verity: Member,
    pub uki: Member,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub bytes: u64,
    pub sha256: String,
}

impl Manifest {
    pub fn parse(text: &[u8]) -> Result<Self, UpdateError> {
        let manifest: Self =
            serde_json::from_slice(text).map_err(|e| UpdateError::Bundle(format!("manifest.json: {e}")))?;
        if manifest.format != BUNDLE_FORMAT {
            return Err(UpdateError::Bundle(format!(
                "bundle format {} (this tephra reads format {BUNDLE_FORMAT})",
                manifest.format
            )));
        }
        // Lowercase, as /dev/disk/by-partuuid names the slot's partitions.
        if manifest.roothash.len() != 64 || !manifest.roothash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(UpdateError::Bundle(format!(
                "roothash {:?} is not 64 lowercase hex digits",
                manifest.roothash
            )));
        }
        // The version becomes part of a file name on the ESP, and systemd-boot
        // orders by it: dot-separated numbers order the same for both.
        if !is_image_version(&manifest.version) {
            return Err(UpdateError::Bundle(format!(
                "version {:?}: dot-separated numbers only (1.2.3)",
                manifest.version
            )));
        }
        if manifest.uki.bytes > UKI_BYTES_MAX {
            return Err(UpdateError::Bundle(format!(
                "tephra.efi of {} bytes exceeds {UKI_BYTES_MAX}",
                manifest.uki.bytes
            )));
        }
        Ok(manifest)
    }
}

/// An image version: numbers separated by single dots.
pub fn is_image_version(version: &str) -> bool {
    version.split('.').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

/// Reads a bundle member by member, in order.
pub struct BundleReader<R: Read> {
    archive: tar::Archive<R>,
}

impl<R: Read> std::fmt::Debug for BundleReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleReader").finish_non_exhaustive()
    }
}

impl<R: Read> BundleReader<R> {
    pub fn new(source: R) -> Self {
        Self { archive: tar::Archive::new(source) }
    }

    /// Walks the bundle: the manifest first, then each of the other members
    /// handed to `sink` with its declared size. A member out of order, of the
    /// wrong size or with the wrong digest is an error.
    pub fn read(
        &mut self,
        mut sink: impl FnMut(&Manifest, &str, &mut dyn Read) -> Result<(), UpdateError>,
    ) -> Result<Manifest, UpdateError> {
        let mut entries = self.archive.entries().map_err(bundle_io)?;
        let mut manifest: Option<Manifest> = None;
        for expected in MEMBERS {
            let mut entry = entries
                .next()
                .ok_or_else(|| UpdateError::Bundle(format!("ends before {expected}")))?
                .map_err(bundle_io)?;
            let name = entry.path().map_err(bundle_io)?.to_string_lossy().into_owned();
            if name != expected {
                return Err(UpdateError::Bundle(format!("member {name:?} where {expected} belongs")));
            }
            let size = entry.size();
            match &manifest {
                None => {
                    if size > MANIFEST_BYTES_MAX {
                        return Err(UpdateError::Bundle(format!("manifest.json of {size} bytes")));
                    }
                    let mut text = Vec::new();
                    entry.read_to_end(&mut text).map_err(bundle_io)?;
                    manifest = Some(Manifest::parse(&text)?);
                }
                Some(manifest) => {
                    let member = manifest.member(expected);
                    if size != member.bytes {
                        return Err(UpdateError::Bundle(format!(
                            "{expected} holds {size} bytes, the manifest says {}",
                            member.bytes
                        )));
                    }
                    let mut hashing = HashingReader { inner: &mut entry, hasher: Sha256::new() };
                    sink(manifest, expected, &mut hashing)?;
                    // What the sink left unread is hashed too: the digest is of the whole member.
                    io::copy(&mut hashing, &mut io::sink()).map_err(bundle_io)?;
                    let digest = hex::encode(hashing.hasher.finalize());
                    if digest != member.sha256 {
                        return Err(UpdateError::Bundle(format!(
                            "{expected} has SHA-256 {digest}, the manifest says {}",
                            member.sha256
                        )));
                    }
                }
            }
        }
        manifest.ok_or_else(|| UpdateError::Bundle("no manifest".into()))
    }
}

impl Manifest {
    fn member(&self, name: &str) -> &Member {
        match name {
            "root.img" => &self.root,
            "root.verity" => &self.verity,
            _ => &self.uki,
        }
    }
}

fn bundle_io(error: io::Error) -> UpdateError {
    UpdateError::Bundle(error.to_string())
}

struct HashingReader<'a, R: Read> {
    inner: &'a mut R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Copies a member to `out` (a partition or a file) and syncs it. Its size
/// is bounded before a byte is read: the reader holds each member to the
/// manifest's size, which `Manifest::parse` bounds for the kernel image and
/// `apply` checks against the partitions.
pub fn copy_member(source: &mut dyn Read, out: &mut std::fs::File) -> Result<(), UpdateError> {
    let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
    loop {
        let n = source.read(&mut buffer).map_err(bundle_io)?;
        if n == 0 {
            break;
        }
        out.write_all(&buffer[..n]).map_err(UpdateError::Io)?;
    }
    out.sync_all().map_err(UpdateError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(data: &[u8]) -> Member {
        Member { bytes: data.len() as u64, sha256: hex::encode(Sha256::digest(data)) }
    }

    /// A bundle of the given members; `manifest` describes `honest` ones.
    fn bundle(members: &[(&str, &[u8])], honest: [&[u8]; 3]) -> Vec<u8> {
        let manifest = Manifest {
            format: BUNDLE_FORMAT,
            version: "1.2.3".into(),
            roothash: "ab".repeat(32),
            root: member(honest[0]),
            verity: member(honest[1]),
            uki: member(honest[2]),
        };
        let manifest = serde_json::to_vec(&manifest).unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in std::iter::once(("manifest.json", manifest.as_slice())).chain(members.iter().copied()) {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, name, data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    /// Each member handed to the sink: its name and bytes.
    type Members = Vec<(String, Vec<u8>)>;

    fn read_all(bytes: &[u8]) -> Result<(Manifest, Members), UpdateError> {
        let mut seen = Vec::new();
        let manifest = BundleReader::new(bytes).read(|_, name, data| {
            let mut content = Vec::new();
            data.read_to_end(&mut content).map_err(bundle_io)?;
            seen.push((name.to_string(), content));
            Ok(())
        })?;
        Ok((manifest, seen))
    }

    const ROOT: &[u8] = b"root file system";
    const VERITY: &[u8] = b"hash tree";
    const UKI: &[u8] = b"kernel image";

    #[test]
    fn a_bundle_is_read_in_order_with_its_digests_checked() {
        let bytes = bundle(&[("root.img", ROOT), ("root.verity", VERITY), ("tephra.efi", UKI)], [ROOT, VERITY, UKI]);
        let (manifest, seen) = read_all(&bytes).unwrap();
        assert_eq!(manifest.version, "1.2.3");
        let names: Vec<&str> = seen.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["root.img", "root.verity", "tephra.efi"]);
        assert_eq!(seen[0].1, ROOT);
    }

    #[test]
    fn a_changed_member_a_wrong_size_or_order_and_a_truncation_are_refused() {
        let flipped = b"root file systeM";
        let bytes = bundle(&[("root.img", flipped), ("root.verity", VERITY), ("tephra.efi", UKI)], [ROOT, VERITY, UKI]);
        assert!(read_all(&bytes).unwrap_err().to_string().contains("root.img has SHA-256"));

        let bytes = bundle(&[("root.img", b"root"), ("root.verity", VERITY), ("tephra.efi", UKI)], [ROOT, VERITY, UKI]);
        assert!(read_all(&bytes).unwrap_err().to_string().contains("root.img holds 4 bytes"));

        let bytes = bundle(&[("root.verity", VERITY), ("root.img", ROOT), ("tephra.efi", UKI)], [ROOT, VERITY, UKI]);
        assert!(read_all(&bytes).unwrap_err().to_string().contains("where root.img belongs"));

        let bytes = bundle(&[("root.img", ROOT), ("root.verity", VERITY)], [ROOT, VERITY, UKI]);
        assert!(read_all(&bytes).unwrap_err().to_string().contains("ends before tephra.efi"));
    }

    #[test]
    fn a_manifest_is_checked_before_anything_is_written() {
        let good = r#"{"format":1,"version":"1.0","roothash":"REPLACE","root":{"bytes":1,"sha256":""},"verity":{"bytes":1,"sha256":""},"uki":{"bytes":1,"sha256":""}}"#;
        let with = |hash: &str| good.replace("REPLACE", hash);
        assert!(Manifest::parse(with(&"0".repeat(64)).as_bytes()).is_ok());
        assert!(Manifest::parse(with("00").as_bytes()).unwrap_err().to_string().contains("64 lowercase hex digits"));
        assert!(Manifest::parse(with(&"A".repeat(64)).as_bytes()).is_err());
        for version in ["1.0~rc1", "1..0", ".1", "1.0-rc.1", ""] {
            assert!(!is_image_version(version), "{version}");
        }
        let bad_version = with(&"0".repeat(64)).replace("\"1.0\"", "\"../../x\"");
        assert!(Manifest::parse(bad_version.as_bytes()).unwrap_err().to_string().contains("version"));
        let future = with(&"0".repeat(64)).replace("\"format\":1", "\"format\":2");
        assert!(Manifest::parse(future.as_bytes()).unwrap_err().to_string().contains("format 2"));
        assert!(Manifest::parse(b"{not json").is_err());
    }
}
