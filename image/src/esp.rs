//! Unified kernel images on the ESP (`EFI/Linux/tephra-<version>[+L[-D]].efi`)
//! and systemd-boot's boot counting, which lives in those names: `+L-D` is L
//! tries left and D done. systemd-boot takes one try at each boot of the
//! entry; systemd-bless-boot drops the counter once the boot is healthy; an
//! entry with none left is bad and sorts after every other, so the previous
//! version boots.

use std::{fs, io::Read, path::Path};

use crate::UpdateError;

/// Where the images live below the ESP's mount point.
pub const UKI_DIR: &str = "EFI/Linux";

/// What systemd-boot will make of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootState {
    /// No counter: blessed, or installed with the image.
    Good,
    /// Under assessment, with tries left.
    Trying { left: u32, done: u32 },
    /// Out of tries without being blessed.
    Bad { done: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub file_name: String,
    pub version: String,
    pub state: BootState,
    /// The root hash its kernel command line names.
    pub roothash: Option<String>,
}

/// Splits `tephra-1.2.3+2-1.efi` into its version and boot state; `None` for
/// a name that is not a tephra image.
pub fn parse_name(file_name: &str) -> Option<(String, BootState)> {
    let stem = file_name.strip_prefix("tephra-")?.strip_suffix(".efi")?;
    let Some((version, counter)) = stem.split_once('+') else {
        return Some((stem.to_string(), BootState::Good));
    };
    let (left, done) = match counter.split_once('-') {
        Some((left, done)) => (left.parse().ok()?, done.parse().ok()?),
        None => (counter.parse().ok()?, 0),
    };
    let state = if left == 0 { BootState::Bad { done } } else { BootState::Trying { left, done } };
    Some((version.to_string(), state))
}

/// The name an image of `version` is installed under, with `tries` boots to
/// prove itself (0: no counting).
pub fn install_name(version: &str, tries: u32) -> String {
    if tries == 0 { format!("tephra-{version}.efi") } else { format!("tephra-{version}+{tries}.efi") }
}

/// The `tephra.roothash=` in a unified kernel image's `.cmdline` section.
pub fn uki_roothash(image: &[u8]) -> Option<String> {
    use object::{Object, ObjectSection};
    let file = object::File::parse(image).ok()?;
    let cmdline = file.section_by_name(".cmdline")?.data().ok()?;
    let text = String::from_utf8_lossy(cmdline);
    crate::disk::running_roothash(text.trim_end_matches('\0')).map(str::to_string)
}

/// The tephra images on the ESP mounted at `esp`, newest version first.
pub fn entries(esp: &Path) -> Result<Vec<Entry>, UpdateError> {
    let dir = esp.join(UKI_DIR);
    let mut entries = Vec::new();
    for item in fs::read_dir(&dir).map_err(|e| UpdateError::Esp(format!("{}: {e}", dir.display())))? {
        let item = item.map_err(UpdateError::Io)?;
        let file_name = item.file_name().to_string_lossy().into_owned();
        let Some((version, state)) = parse_name(&file_name) else { continue };
        let mut image = Vec::new();
        fs::File::open(item.path())
            .and_then(|f| f.take(crate::bundle::UKI_BYTES_MAX).read_to_end(&mut image))
            .map_err(UpdateError::Io)?;
        entries.push(Entry { file_name, version, state, roothash: uki_roothash(&image) });
    }
    entries.sort_by(|a, b| version_order(&b.version, &a.version));
    Ok(entries)
}

/// Version order as systemd-boot sorts: runs of digits compare as numbers.
pub fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |s: &str| {
        let mut parts: Vec<(bool, String)> = Vec::new();
        for c in s.chars() {
            let digit = c.is_ascii_digit();
            match parts.last_mut() {
                Some((was_digit, part)) if *was_digit == digit => part.push(c),
                _ => parts.push((digit, c.to_string())),
            }
        }
        parts
    };
    let (a, b) = (split(a), split(b));
    for ((a_digit, a_part), (b_digit, b_part)) in a.iter().zip(&b) {
        let order = if *a_digit && *b_digit {
            let (a_num, b_num) = (a_part.trim_start_matches('0'), b_part.trim_start_matches('0'));
            a_num.len().cmp(&b_num.len()).then_with(|| a_num.cmp(b_num))
        } else {
            a_part.cmp(b_part)
        };
        if order.is_ne() {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_boot_counter() {
        assert_eq!(parse_name("tephra-0.1.0.efi"), Some(("0.1.0".into(), BootState::Good)));
        assert_eq!(parse_name("tephra-0.1.1+3.efi"), Some(("0.1.1".into(), BootState::Trying { left: 3, done: 0 })));
        assert_eq!(parse_name("tephra-0.1.1+2-1.efi"), Some(("0.1.1".into(), BootState::Trying { left: 2, done: 1 })));
        assert_eq!(parse_name("tephra-0.1.1+0-3.efi"), Some(("0.1.1".into(), BootState::Bad { done: 3 })));
        assert_eq!(parse_name("other-0.1.efi"), None);
        assert_eq!(parse_name("tephra-0.1.1+x.efi"), None);
        assert_eq!(install_name("0.1.1", 3), "tephra-0.1.1+3.efi");
        assert_eq!(install_name("0.1.1", 0), "tephra-0.1.1.efi");
    }

    #[test]
    fn versions_sort_numerically() {
        use std::cmp::Ordering::*;
        assert_eq!(version_order("0.1.10", "0.1.9"), Greater);
        assert_eq!(version_order("0.1.0.1", "0.1.0"), Greater);
        assert_eq!(version_order("0.1.0", "0.1.0"), Equal);
        assert_eq!(version_order("1.0", "0.9.9"), Greater);
    }

    #[test]
    fn a_file_that_is_not_an_image_has_no_root_hash() {
        assert_eq!(uki_roothash(b"not a PE file"), None);
    }
}
