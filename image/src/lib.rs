//! tephra-image: the appliance's A/B updates (image/README.md). image/build.sh
//! builds the disk image and the update bundle; this crate is what
//! `tephra update` runs on the appliance: it writes a bundle into the slot
//! that is not running and installs its kernel image on the ESP with a boot
//! counter, so that systemd-boot tries it and falls back by itself.

pub mod bundle;
pub mod disk;
pub mod esp;

use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
};

use bundle::{BundleReader, Manifest, copy_member};
use disk::Partition;
use esp::BootState;

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("bad update bundle: {0}")]
    Bundle(String),
    #[error("not running from a tephra image slot: {0}")]
    NotASlot(String),
    #[error("ESP: {0}")]
    Esp(String),
    #[error("{0}")]
    Tool(String),
    #[error("the written slot does not verify against its root hash: {0}")]
    Verity(String),
    #[error("version {new} is not newer than the running {running}: systemd-boot would never try it")]
    NotNewer { new: String, running: String },
    #[error("the running image {0} is not marked good: wait for it to be blessed, or reboot after a rollback")]
    RunningNotGood(String),
    #[error("the bundle's root hash is the running one: nothing to update")]
    AlreadyRunning,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Where an update goes: the slot that is not running.
#[derive(Debug, Clone)]
pub struct Target {
    /// The whole disk, whose partition table records the slot's UUIDs.
    pub disk: PathBuf,
    pub root: Partition,
    pub verity: Partition,
}

/// What `apply` did.
#[derive(Debug, Clone)]
pub struct Applied {
    pub version: String,
    pub roothash: String,
    /// The kernel image installed on the ESP, with its boot counter.
    pub uki: String,
    /// Images of the overwritten slot taken off the ESP.
    pub retired: Vec<String>,
}

/// Writes `bundle` into `target` and makes it the next boot, with `tries`
/// boots to come up healthy (0: trusted at once, no fallback).
///
/// The order keeps the running image the one that boots at every step:
/// everything that can be checked up front is (the running image good, the
/// version newer, the sizes fitting); the overwritten slot's kernel images
/// leave the ESP before a byte of the slot is written; the slot is written,
/// synced, checked against the manifest's digests, given the UUIDs of its
/// new root hash and read back through its hash tree; only then does the new
/// kernel image appear under its final name. A failure after the first write
/// leaves the running image alone on the ESP: the other slot's previous
/// image is gone with its slot.
pub fn apply(
    bundle: &Path,
    target: &Target,
    esp_mount: &Path,
    running_roothash: &str,
    tries: u32,
) -> Result<Applied, UpdateError> {
    let source = fs::File::open(bundle).map_err(|e| UpdateError::Bundle(format!("{}: {e}", bundle.display())))?;
    let uki_dir = esp_mount.join(esp::UKI_DIR);
    let partial = uki_dir.join(".tephra-update.partial");
    let mut retired = Vec::new();
    let result = BundleReader::new(std::io::BufReader::new(source)).read(|manifest, member, data| match member {
        "root.img" => {
            retired = prepare(manifest, target, esp_mount, running_roothash)?;
            write_partition(data, &target.root)
        }
        "root.verity" => write_partition(data, &target.verity),
        _ => {
            let mut out = fs::File::create(&partial).map_err(|e| UpdateError::Esp(format!("{e}")))?;
            copy_member(data, &mut out)
        }
    });
    let manifest = match result {
        Ok(manifest) => manifest,
        Err(error) => {
            let _ = fs::remove_file(&partial);
            return Err(error);
        }
    };
    let finish = || -> Result<String, UpdateError> {
        let image = fs::read(&partial)?;
        if esp::uki_roothash(&image).as_deref() != Some(manifest.roothash.as_str()) {
            return Err(UpdateError::Bundle("tephra.efi does not boot the bundle's root hash".into()));
        }
        let (root_uuid, verity_uuid) = disk::slot_uuids(&manifest.roothash);
        disk::set_partition_uuid(&target.disk, target.root.number, &root_uuid)?;
        disk::set_partition_uuid(&target.disk, target.verity.number, &verity_uuid)?;
        disk::verify_slot(&target.root.device, &target.verity.device, &manifest.roothash)?;
        let name = esp::install_name(&manifest.version, tries);
        fs::rename(&partial, uki_dir.join(&name))?;
        fs::File::open(&uki_dir)?.sync_all()?;
        Ok(name)
    };
    match finish() {
        Ok(uki) => Ok(Applied { version: manifest.version, roothash: manifest.roothash, uki, retired }),
        Err(error) => {
            let _ = fs::remove_file(&partial);
            Err(error)
        }
    }
}

/// Checks the bundle against the disk and what is installed, changing
/// nothing; then takes the images that boot the slot about to be
/// overwritten off the ESP.
fn prepare(
    manifest: &Manifest,
    target: &Target,
    esp_mount: &Path,
    running_roothash: &str,
) -> Result<Vec<String>, UpdateError> {
    if manifest.roothash == running_roothash {
        return Err(UpdateError::AlreadyRunning);
    }
    let entries = esp::entries(esp_mount)?;
    // The fallback is the running image: it must be good, not still on trial
    // (then both could end up bad) nor marked bad by a rollback.
    let running = entries
        .iter()
        .find(|e| e.roothash.as_deref() == Some(running_roothash))
        .ok_or_else(|| UpdateError::Esp("no image on the ESP boots the running root".into()))?;
    if running.state != BootState::Good {
        return Err(UpdateError::RunningNotGood(running.file_name.clone()));
    }
    // systemd-boot tries the newest version first: an older one would never boot.
    if esp::version_order(&manifest.version, &running.version).is_le() {
        return Err(UpdateError::NotNewer { new: manifest.version.clone(), running: running.version.clone() });
    }
    for (member, bytes, partition) in
        [("root.img", manifest.root.bytes, &target.root), ("root.verity", manifest.verity.bytes, &target.verity)]
    {
        if bytes > partition.bytes {
            return Err(UpdateError::Bundle(format!(
                "{member} of {bytes} bytes exceeds {} ({} bytes)",
                partition.label, partition.bytes
            )));
        }
    }
    let mut retired = Vec::new();
    for entry in entries.iter().filter(|e| e.roothash.as_deref() != Some(running_roothash)) {
        fs::remove_file(esp_mount.join(esp::UKI_DIR).join(&entry.file_name))?;
        retired.push(entry.file_name.clone());
    }
    fs::File::open(esp_mount.join(esp::UKI_DIR))?.sync_all()?;
    Ok(retired)
}

fn write_partition(data: &mut dyn Read, partition: &Partition) -> Result<(), UpdateError> {
    let mut out = fs::OpenOptions::new()
        .write(true)
        .open(&partition.device)
        .map_err(|e| UpdateError::Tool(format!("{}: {e}", partition.device.display())))?;
    copy_member(data, &mut out)
}

/// Makes the other slot's image the next boot: the running image's entry is
/// marked bad (no tries left), so systemd-boot starts the newest other
/// image, which must boot the other slot and be good (blessed): one still
/// on trial could fail too and leave nothing good. The running
/// slot is untouched; the next update overwrites it. Returns the entry
/// marked bad and the one that boots next.
pub fn rollback(esp_mount: &Path, running_roothash: &str) -> Result<(String, String), UpdateError> {
    let entries = esp::entries(esp_mount)?;
    let next = entries
        .iter()
        .find(|e| e.roothash.as_deref().is_some_and(|h| h != running_roothash) && e.state == BootState::Good)
        .ok_or_else(|| UpdateError::Esp("no image of the other slot to roll back to".into()))?;
    let mut marked = None;
    for entry in entries.iter().filter(|e| e.roothash.as_deref() == Some(running_roothash)) {
        let bad = format!("tephra-{}+0.efi", entry.version);
        let dir = esp_mount.join(esp::UKI_DIR);
        fs::rename(dir.join(&entry.file_name), dir.join(&bad))?;
        fs::File::open(&dir)?.sync_all()?;
        marked = Some(bad);
    }
    let marked = marked.ok_or_else(|| UpdateError::Esp("no image on the ESP boots the running root".into()))?;
    Ok((marked, next.file_name.clone()))
}

/// What runs and what is installed, for `tephra update status`.
#[derive(Debug, Clone)]
pub struct Status {
    pub running_slot: Option<disk::Slot>,
    pub running_version: Option<String>,
    pub running_roothash: Option<String>,
    pub entries: Vec<esp::Entry>,
}

impl Status {
    pub fn read(esp_mount: &Path) -> Result<Self, UpdateError> {
        let os_release = fs::read_to_string("/etc/os-release").unwrap_or_default();
        Ok(Self {
            running_slot: disk::BootDisk::discover().ok().map(|d| d.running),
            running_version: os_release
                .lines()
                .find_map(|l| l.strip_prefix("IMAGE_VERSION="))
                .map(|v| v.trim_matches('"').to_string()),
            running_roothash: disk::booted_roothash().ok(),
            entries: esp::entries(esp_mount)?,
        })
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let slot = self.running_slot.map_or("-".to_string(), |s| s.letter().to_string());
        writeln!(
            f,
            "running: version {} slot {slot} roothash {}",
            self.running_version.as_deref().unwrap_or("-"),
            self.running_roothash.as_deref().unwrap_or("-")
        )?;
        for entry in &self.entries {
            let state = match entry.state {
                BootState::Good => "good".to_string(),
                BootState::Trying { left, done } => format!("trying ({left} left, {done} done)"),
                BootState::Bad { done } => format!("bad ({done} tries failed)"),
            };
            let running = entry.roothash.is_some() && entry.roothash == self.running_roothash;
            writeln!(
                f,
                "entry: {} version {} {state}{}",
                entry.file_name,
                entry.version,
                if running { " (running)" } else { "" }
            )?;
        }
        Ok(())
    }
}
