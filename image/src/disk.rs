//! The boot disk's partitions, found through sysfs from the running root.
//!
//! The running root is `/dev/mapper/root`, a dm-verity device over one slot's
//! root partition; its slave names that partition, its partition name
//! (`tephra-root-a` or `tephra-root-b`) the slot, and its parent the disk.
//! A slot's two partitions carry partition UUIDs derived from the root hash
//! they hold (the first and second halves, as systemd's discoverable
//! partitions do), which is how the initramfs finds them.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use crate::UpdateError;

/// Bytes in a sysfs `size` unit.
const SECTOR_BYTES: u64 = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn other(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }

    pub fn letter(self) -> char {
        match self {
            Self::A => 'a',
            Self::B => 'b',
        }
    }

    pub fn root_label(self) -> String {
        format!("tephra-root-{}", self.letter())
    }

    pub fn verity_label(self) -> String {
        format!("tephra-verity-{}", self.letter())
    }
}

/// One partition of the boot disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The block device (`/dev/vda2`), or for tests any file.
    pub device: PathBuf,
    /// Its number in the partition table (sfdisk's numbering).
    pub number: u32,
    pub label: String,
    pub bytes: u64,
}

/// The disk tephra booted from and which slot runs.
#[derive(Debug, Clone)]
pub struct BootDisk {
    /// The whole disk (`/dev/vda`).
    pub device: PathBuf,
    pub running: Slot,
    pub partitions: Vec<Partition>,
}

impl BootDisk {
    /// The disk behind the running root file system.
    pub fn discover() -> Result<Self, UpdateError> {
        let root = fs::metadata("/").map_err(UpdateError::Io)?;
        let dev = std::os::unix::fs::MetadataExt::dev(&root);
        let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
        let root_block = fs::canonicalize(format!("/sys/dev/block/{major}:{minor}"))
            .map_err(|e| UpdateError::NotASlot(format!("/ is on device {major}:{minor}, not a block device ({e})")))?;
        // A dm-verity device has two slaves: the slot's root and its hash tree.
        let mut slaves = Vec::new();
        for slave in fs::read_dir(root_block.join("slaves"))
            .map_err(|_| UpdateError::NotASlot("/ is not a dm-verity device".into()))?
            .filter_map(Result::ok)
        {
            let partition = fs::canonicalize(slave.path()).map_err(UpdateError::Io)?;
            slaves.push((uevent(&partition, "PARTNAME").unwrap_or_default(), partition));
        }
        let Some((label, partition)) = slaves.iter().find(|(label, _)| label.starts_with("tephra-root-")) else {
            let labels: Vec<&str> = slaves.iter().map(|(label, _)| label.as_str()).collect();
            return Err(UpdateError::NotASlot(format!("/ is on partitions {labels:?}, not a tephra root slot")));
        };
        let running = if label == "tephra-root-a" { Slot::A } else { Slot::B };
        let disk = partition.parent().ok_or_else(|| UpdateError::NotASlot("a partition without a disk".into()))?;
        let disk_name = disk.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut partitions = Vec::new();
        for entry in fs::read_dir(disk).map_err(UpdateError::Io)?.filter_map(Result::ok) {
            let path = entry.path();
            if !path.join("partition").exists() {
                continue;
            }
            let (Some(name), Some(number)) = (uevent(&path, "DEVNAME"), uevent(&path, "PARTN")) else { continue };
            let sectors: u64 =
                fs::read_to_string(path.join("size")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
            partitions.push(Partition {
                device: Path::new("/dev").join(name),
                number: number.parse().map_err(|_| UpdateError::NotASlot(format!("partition number {number:?}")))?,
                label: uevent(&path, "PARTNAME").unwrap_or_default(),
                bytes: sectors * SECTOR_BYTES,
            });
        }
        partitions.sort_by_key(|p| p.number);
        Ok(Self { device: Path::new("/dev").join(disk_name), running, partitions })
    }

    /// The slot that is not running, where an update goes.
    pub fn update_target(&self) -> Result<crate::Target, UpdateError> {
        let next = self.running.other();
        Ok(crate::Target {
            disk: self.device.clone(),
            root: self.partition(&next.root_label())?.clone(),
            verity: self.partition(&next.verity_label())?.clone(),
        })
    }

    pub fn partition(&self, label: &str) -> Result<&Partition, UpdateError> {
        self.partitions
            .iter()
            .find(|p| p.label == label)
            .ok_or_else(|| UpdateError::NotASlot(format!("the boot disk has no partition {label:?}")))
    }
}

fn uevent(sysfs: &Path, key: &str) -> Option<String> {
    let text = fs::read_to_string(sysfs.join("uevent")).ok()?;
    text.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
}

/// The partition UUIDs of the root and verity partitions that hold `roothash`.
pub fn slot_uuids(roothash: &str) -> (String, String) {
    let uuid = |hex: &str| format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]);
    (uuid(&roothash[..32]), uuid(&roothash[32..64]))
}

/// Sets a partition's UUID in the GPT (both copies) with sfdisk.
pub fn set_partition_uuid(disk: &Path, number: u32, uuid: &str) -> Result<(), UpdateError> {
    let output = Command::new("sfdisk")
        .arg("--no-reread")
        .arg("--part-uuid")
        .arg(disk)
        .arg(number.to_string())
        .arg(uuid)
        .output()
        .map_err(|e| UpdateError::Tool(format!("sfdisk: {e}")))?;
    if !output.status.success() {
        return Err(UpdateError::Tool(format!(
            "sfdisk --part-uuid {} {number}: {}",
            disk.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// Reads every block of a slot against its hash tree (veritysetup verify).
pub fn verify_slot(root: &Path, verity: &Path, roothash: &str) -> Result<(), UpdateError> {
    let output = Command::new("veritysetup")
        .arg("verify")
        .arg(root)
        .arg(verity)
        .arg(roothash)
        .output()
        .map_err(|e| UpdateError::Tool(format!("veritysetup: {e}")))?;
    if !output.status.success() {
        return Err(UpdateError::Verity(String::from_utf8_lossy(&output.stderr).trim().to_string()));
    }
    Ok(())
}

/// The root hash a kernel command line boots (its `tephra.roothash=`).
pub fn running_roothash(cmdline: &str) -> Option<&str> {
    cmdline.split_whitespace().find_map(|arg| arg.strip_prefix("tephra.roothash="))
}

/// The root hash this boot's kernel was started with.
pub fn booted_roothash() -> Result<String, UpdateError> {
    let cmdline = fs::read_to_string("/proc/cmdline").map_err(UpdateError::Io)?;
    running_roothash(&cmdline)
        .map(str::to_string)
        .ok_or_else(|| UpdateError::NotASlot("the kernel command line names no tephra.roothash".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_uuids_split_the_root_hash() {
        let roothash = "00112233445566778899aabbccddeeff0123456789abcdef0123456789abcdef";
        let (root, verity) = slot_uuids(roothash);
        assert_eq!(root, "00112233-4455-6677-8899-aabbccddeeff");
        assert_eq!(verity, "01234567-89ab-cdef-0123-456789abcdef");
    }

    #[test]
    fn the_running_root_hash_comes_from_the_command_line() {
        let cmdline = "root=/dev/mapper/root ro tephra.roothash=ab12 console=ttyS0\n";
        assert_eq!(running_roothash(cmdline), Some("ab12"));
        assert_eq!(running_roothash("root=/dev/vda1"), None);
    }
}
