//! `tephra configure check|init|fini`: prepares the host for the hot path, in
//! the manner of Firedancer's `fdctl configure`. Each stage (huge pages, locked
//! memory, sysctls, NIC channels, IRQ affinity, kernel command line) can check
//! the host, configure it and undo what it configured.
//!
//! `check` only reads /proc, /sys and `ethtool -l`, so it needs no privileges;
//! a caller exits non-zero when any finding is [`Severity::Missing`]. `init`
//! and `fini` need root and stop at the first failure with an error naming the
//! file or command. All /proc and /sys paths hang off [`HostPlan::root`] so
//! tests can point it at a fake tree; commands only run when the root is `/`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt, fs, io,
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
};

use tracing::{debug, info};

/// What the host must provide, filled by the caller from the config.
#[derive(Debug, Clone)]
pub struct HostPlan {
    /// 2 MiB huge pages to reserve; 0 turns the huge page stage off.
    pub hugepages_2m: u32,
    pub hugetlbfs_mount: PathBuf,
    pub memlock_bytes_min: u64,
    /// The NIC the kernel-bypass backend owns.
    pub interface: Option<String>,
    /// Combined queues wanted on `interface` (`ethtool -L IFACE combined N`).
    pub nic_channels: Option<u32>,
    /// Cores the hot tiles busy-poll on; IRQs must go elsewhere.
    pub hot_cores: Vec<usize>,
    /// Floor for net.core.rmem_max, wmem_max and rmem_default; 0 skips them.
    pub socket_buffer_bytes: u64,
    /// Set rp_filter to 0 on `all` and `interface`, which kernel bypass needs.
    pub rp_filter_off: bool,
    /// Prefix for /proc and /sys.
    pub root: PathBuf,
}

impl Default for HostPlan {
    fn default() -> Self {
        Self {
            hugepages_2m: 0,
            hugetlbfs_mount: PathBuf::from("/dev/hugepages"),
            memlock_bytes_min: 0,
            interface: None,
            nic_channels: None,
            hot_cores: Vec::new(),
            socket_buffer_bytes: 0,
            rp_filter_off: false,
            root: PathBuf::from("/"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The host is not configured as the plan needs: `check` fails.
    Missing,
    /// Worth doing, or a note on something skipped; `check` still passes.
    Advice,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Missing => "missing",
            Severity::Advice => "advice",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub stage: &'static str,
    pub severity: Severity,
    pub message: String,
}

impl Finding {
    fn missing(stage: &'static str, message: impl Into<String>) -> Self {
        Self { stage, severity: Severity::Missing, message: message.into() }
    }

    fn advice(stage: &'static str, message: impl Into<String>) -> Self {
        Self { stage, severity: Severity::Advice, message: message.into() }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}: {}", self.severity, self.stage, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigureError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path}: cannot parse {value:?}")]
    Parse { path: PathBuf, value: String },
    #[error("invalid core list {0:?}")]
    CoreList(String),
    #[error("`{command}`: program not found")]
    CommandMissing { command: String },
    #[error("`{command}`: {source}")]
    Spawn { command: String, source: io::Error },
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed { command: String, status: ExitStatus, stderr: String },
    #[error("{call}(RLIMIT_MEMLOCK): {source}")]
    Rlimit { call: &'static str, source: io::Error },
    #[error("{path}: wrote {wanted} but the kernel kept {got}{hint}")]
    NotApplied { path: PathBuf, wanted: String, got: String, hint: &'static str },
    #[error("every online core is a hot core ({}): no core is left for IRQs", format_core_list(hot))]
    NoHousekeepingCore { hot: Vec<usize> },
}

/// The host seen through [`HostPlan::root`].
#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
    /// Commands change the real machine, so they run only against the real root.
    live: bool,
}

impl Host {
    pub fn new(root: &Path) -> Self {
        Self { root: root.to_path_buf(), live: root == Path::new("/") }
    }

    /// Whether commands (mount, ethtool) run; false under a fake root.
    pub fn is_live(&self) -> bool {
        self.live
    }

    fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }

    fn read(&self, absolute: &str) -> Result<String, ConfigureError> {
        let path = self.path(absolute);
        fs::read_to_string(&path).map_err(|source| ConfigureError::Read { path, source })
    }

    fn read_u64(&self, absolute: &str) -> Result<u64, ConfigureError> {
        let text = self.read(absolute)?;
        // Multi-value sysctls (tcp_rmem) are not read through here; the first field is the value.
        let first = text.split_whitespace().next().unwrap_or("");
        first.parse().map_err(|_| ConfigureError::Parse { path: self.path(absolute), value: text.trim().to_owned() })
    }

    /// Writes an existing file; never creates one, as /proc and /sys never need it.
    fn write(&self, absolute: &str, value: &str) -> Result<(), ConfigureError> {
        use io::Write as _;
        let path = self.path(absolute);
        fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .and_then(|mut file| file.write_all(format!("{value}\n").as_bytes()))
            .map_err(|source| ConfigureError::Write { path, source })
    }

    /// Runs a command and returns its stdout, or `None` when the host is not
    /// live (a fake root), so tests never mount or touch a NIC.
    fn run(&self, program: &str, args: &[&str]) -> Result<Option<String>, ConfigureError> {
        let command = std::iter::once(program).chain(args.iter().copied()).collect::<Vec<_>>().join(" ");
        if !self.live {
            debug!(%command, "not live: command skipped");
            return Ok(None);
        }
        // LC_ALL=C keeps the output we parse in English.
        let output = Command::new(program).args(args).env("LC_ALL", "C").output().map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                ConfigureError::CommandMissing { command: command.clone() }
            } else {
                ConfigureError::Spawn { command: command.clone(), source }
            }
        })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            return Err(ConfigureError::CommandFailed { command, status: output.status, stderr });
        }
        Ok(Some(String::from_utf8_lossy(&output.stdout).into_owned()))
    }

    fn online_cores(&self) -> Result<Vec<usize>, ConfigureError> {
        let absolute = "/sys/devices/system/cpu/online";
        let text = self.read(absolute)?;
        parse_core_list(&text).map_err(|_| ConfigureError::Parse { path: self.path(absolute), value: text })
    }
}

/// One part of the host configuration.
pub trait Stage: fmt::Debug + Sync {
    fn name(&self) -> &'static str;
    /// Reads only; needs no privileges.
    fn check(&self, plan: &HostPlan, host: &Host) -> Vec<Finding>;
    /// Brings the host up to the plan, touching only what falls short; returns what it did.
    fn init(&self, plan: &HostPlan, host: &Host) -> Result<Vec<String>, ConfigureError>;
    /// Undoes what `init` safely can; returns what it did.
    fn fini(&self, plan: &HostPlan, host: &Host) -> Result<Vec<String>, ConfigureError>;
}

/// The stages in init order. NIC channels come before IRQ affinity because
/// `ethtool -L` recreates the queue IRQs with the default affinity.
pub fn stages() -> [&'static dyn Stage; 6] {
    [&Hugepages, &Memlock, &Sysctls, &NicChannels, &IrqAffinity, &KernelCmdline]
}

/// Checks every stage; needs no privileges.
pub fn check(plan: &HostPlan) -> Vec<Finding> {
    let host = Host::new(&plan.root);
    stages().iter().flat_map(|stage| stage.check(plan, &host)).collect()
}

/// True when `check` should fail.
pub fn any_missing(findings: &[Finding]) -> bool {
    findings.iter().any(|finding| finding.severity == Severity::Missing)
}

/// Configures every stage in order; needs root.
pub fn init(plan: &HostPlan) -> Result<Vec<String>, ConfigureError> {
    let host = Host::new(&plan.root);
    let mut done = Vec::new();
    for stage in stages() {
        for action in stage.init(plan, &host)? {
            // Logged as it happens so that an error in a later stage does not hide it.
            info!(stage = stage.name(), "{action}");
            done.push(format!("{}: {action}", stage.name()));
        }
    }
    Ok(done)
}

/// Undoes every stage in reverse order; needs root.
pub fn fini(plan: &HostPlan) -> Result<Vec<String>, ConfigureError> {
    let host = Host::new(&plan.root);
    let mut done = Vec::new();
    for stage in stages().iter().rev() {
        for action in stage.fini(plan, &host)? {
            info!(stage = stage.name(), "{action}");
            done.push(format!("{}: {action}", stage.name()));
        }
    }
    Ok(done)
}

/// Formats cores compactly, sorted and without duplicates: `[2, 3, 4, 5, 8]` is "2-5,8".
pub fn format_core_list(cores: &[usize]) -> String {
    let cores: BTreeSet<usize> = cores.iter().copied().collect();
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for core in cores {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == core => *end = core,
            _ => ranges.push((core, core)),
        }
    }
    let parts: Vec<String> = ranges
        .iter()
        .map(|&(start, end)| if start == end { start.to_string() } else { format!("{start}-{end}") })
        .collect();
    parts.join(",")
}

/// Parses the kernel's cpulist format ("0-3,8"); an empty string is no cores.
pub fn parse_core_list(text: &str) -> Result<Vec<usize>, ConfigureError> {
    let bad = || ConfigureError::CoreList(text.trim().to_owned());
    let mut cores = BTreeSet::new();
    for part in text.trim().split(',').filter(|part| !part.is_empty()) {
        let (start, end): (usize, usize) = match part.split_once('-') {
            Some((start, end)) => (start.parse().map_err(|_| bad())?, end.parse().map_err(|_| bad())?),
            None => {
                let core = part.parse().map_err(|_| bad())?;
                (core, core)
            }
        };
        if start > end {
            return Err(bad());
        }
        cores.extend(start..=end);
    }
    Ok(cores.into_iter().collect())
}

fn overlap(a: &[usize], b: &[usize]) -> Vec<usize> {
    a.iter().copied().filter(|core| b.contains(core)).collect()
}

// ---------------------------------------------------------------- hugepages

const HUGEPAGES_2M_SYSFS: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
/// Counts pages of the default huge page size, which is 2 MiB on x86-64; only
/// used when the per-size sysfs file is absent.
const HUGEPAGES_PROC: &str = "/proc/sys/vm/nr_hugepages";

/// Reserves 2 MiB huge pages and mounts hugetlbfs where the workspaces map them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hugepages;

impl Hugepages {
    fn count_file(host: &Host) -> &'static str {
        if host.path(HUGEPAGES_2M_SYSFS).exists() { HUGEPAGES_2M_SYSFS } else { HUGEPAGES_PROC }
    }

    fn mounted(plan: &HostPlan, host: &Host) -> Result<bool, ConfigureError> {
        let mounts = host.read("/proc/mounts")?;
        Ok(mounts.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() >= 3
                && fields[2] == "hugetlbfs"
                && Path::new(&unescape_mount(fields[1])) == plan.hugetlbfs_mount
        }))
    }
}

/// /proc/mounts writes space, tab, newline and backslash in paths as octal escapes.
fn unescape_mount(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let octal = rest.get(at + 1..at + 4).and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match octal {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

impl Stage for Hugepages {
    fn name(&self) -> &'static str {
        "hugepages"
    }

    fn check(&self, plan: &HostPlan, host: &Host) -> Vec<Finding> {
        if plan.hugepages_2m == 0 {
            return Vec::new();
        }
        let mut findings = Vec::new();
        let file = Self::count_file(host);
        match host.read_u64(file) {
            Ok(pages) if pages < u64::from(plan.hugepages_2m) => findings.push(Finding::missing(
                self.name(),
                format!("{pages} 2 MiB huge pages reserved in {file}, need {}", plan.hugepages_2m),
            )),
            Ok(_) => {}
            Err(error) => findings.push(Finding::missing(self.name(), error.to_string())),
        }
        match Self::mounted(plan, host) {
            Ok(true) => {}
            Ok(false) => findings.push(Finding::missing(
                self.name(),
                format!("hugetlbfs is not mounted at {}", plan.hugetlbfs_mount.display()),
            )),
            Err(error) => findings.push(Finding::missing(self.name(), error.to_string())),
        }
        findings
    }

    fn init(&self, plan: &HostPlan, host: &Host) -> Result<Vec<String>, ConfigureError> {
        if plan.hugepages_2m == 0 {
            return Ok(Vec::new());
        }
        let mut done = Vec::new();
        let file = Self::count_file(host);
        let before = host.read_u64(file)?;
        let wanted = u64::from(plan.hugepages_2m);
        if before < wanted {
            host.write(file, &wanted.to_string())?;
            // The kernel reserves what it can find contiguous and silently keeps fewer.
            let got = host.read_u64(file)?;
            if got < wanted {
                return Err(ConfigureError::NotApplied {
                    path: host.path(file),
                    wanted: wanted.to_string(),
                    got: got.to_string(),
                    hint: " (memory is fragmented: reserve them at boot with hugepages= on the kernel command line)",
                });
            }
            done.push(format!("reserved {wanted} 2 MiB huge pages (was {before}) in {file}"));
        }
        if !Self::mounted(plan, host)? {
            let mount = plan.hugetlbfs_mount.to_string_lossy();
            if host.is_live() {
                fs::create_dir_all(&plan.hugetlbfs_mount)
                    .map_err(|source| ConfigureError::Write { path: plan.hugetlbfs_mount.clone(), source })?;
            }
            match host.run("mount", &["-t", "hugetlbfs", "none", &mount])? {
                Some(_) => done.push(format!("mounted hugetlbfs at {mount}")),
                None => done.push(format!("skipped `mount -t hugetlbfs none {mount}` (fake root)")),
            }
        }
        Ok(done)
    }

    fn fini(&self, plan: &HostPlan, host: &Host) -> Result<Vec<String>, ConfigureError> {
        if plan.hugepages_2m == 0 {
            return Ok(Vec::new());
        }
        let mut done = Vec::new();
        // Unmount first: pages still mapped through the mount cannot be freed.
        if Self::mounted(plan, host)? {
            let mount = plan.hugetlbfs_mount.to_string_lossy();
            match host.run("umount", &[&mount])? {
                Some(_) => done.push(format!("unmounted {mount}")),
                None => done.push(format!("skipped `umount {mount}` (fake root)")),
            }
        }
        let file = Self::count_file(host);
        if host.read_u64(file)? != 0 {
            host.write(file, "0")?;
            done.push(format!("released the 2 MiB huge pages in {file}"));
        }
        Ok(done)
    }
}

// ---------------------------------------------------------------- memlock

/// Raises RLIMIT_MEMLOCK so workspaces and UMEM can be locked in memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memlock;

/// (soft, hard) in bytes; `libc::RLIM_INFINITY` is unlimited.
#[allow(unsafe_code)]
fn memlock_limit_bytes() -> Result<(u64, u64), ConfigureError> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit that outlives the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    if rc != 0 {
        return Err(ConfigureError::Rlimit { call: "getrlimit", source: io::Error::last_os_error() });
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

#[allow(unsafe_code)]
fn set_memlock_limit_bytes(soft: u64, hard: u64) -> Result<(), ConfigureError> {
    let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: `limit` is a valid rlimit that outlives the call; setrlimit only reads it.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) };
    if rc != 0 {
        return Err(ConfigureError::Rlimit { call: "setrlimit", source: io::Error::last_os_error() });
    }
    Ok(())
}

fn memlock_short(soft_bytes: u64, min_bytes: u64) -> bool {
    soft_bytes != libc::RLIM_INFINITY && soft_bytes < min_bytes
}

impl Stage for Memlock {
    fn name(&self) -> &'static str {
        "memlock"
    }

    fn check(&self, plan: &HostPlan, _host: &Host) -> Vec<Finding> {
        match memlock_limit_bytes() {
            Ok((soft, _)) if memlock_short(soft, plan.memlock_bytes_min) => vec![Finding::missing(
                self.name(),
                format!(
                    "RLIMIT_MEMLOCK is {soft} bytes, need at least {}; init raises it only for its own process, \
                     so set LimitMEMLOCK= in the systemd unit (or `ulimit -l`) of the service",
                    plan.memlock_bytes_min
                ),
            )],
            Ok(_) => Vec::new(),
            Err(error) => vec![Finding::missing(self.name(), error.to_string())],
        }
    }

    /// Per process: this helps when the sequencer itself runs init before its
    /// tiles start; a separate `tephra configure init` leaves the service unchanged.
    fn init(&self, plan: &HostPlan, _host: &Host) -> Result<Vec<String>, ConfigureError> {
        let (soft, hard) = memlock_limit_bytes()?;
        if !memlock_short(soft, plan.memlock_bytes_min) {
            return Ok(Vec::new());
        }
        // Raising the hard limit needs CAP_SYS_RESOURCE; the soft one only needs to fit under it.
        let hard = if memlock_short(hard, plan.memlock_bytes_min) { plan.memlock_bytes_min } else { hard };
        set_memlock_limit_bytes(plan.memlock_bytes_min, hard)?;
        Ok(vec![format!(
            "raised RLIMIT_MEMLOCK of this process from {soft} to {} bytes (set LimitMEMLOCK= for the service)",
            plan.memlock_bytes_min
        )])
    }

    /// The limit dies with the process.
    fn fini(&self, _plan: &HostPlan, _host: &Host) -> Result<Vec<String>, ConfigureError> {
        Ok(Vec::new())
    }
}

// ---------------------------------------------------------------- sysctls

/// Socket buffer floors and rp_filter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sysctls;

#[derive(Debug)]
enum Want {
    AtLeast(u64),
    Exactly(u64),
}

#[derive(Debug)]
struct Sysctl {
    /// sysctl(8) notation.
    name: String,
    /// Absolute path under /proc/sys.
    path: String,
    want: Want,
}

impl Sysctl {
    fn new(path: String, want: Want) -> Self {
        // sysctl(8) writes dots inside a component (VLAN interfaces) as slashes.
        let name =
            path.trim_start_matches("/proc/sys/").split('/').map(|part| part.replace('.', "/")).collect::<Vec<_>>();
        Self { name: name.join("."), path, want }
    }

    fn satisfied(&self, value: u64) -> bool {
        match self.want {
            Want::AtLeast(min) => value >= min,
            Want::Exactly(wanted) => value == wanted,
        }
    }

    fn target(&self) -> u64 {
        match self.want {
            Want::AtLeast(value) | Want::Exactly(value) => value,
        }
    }
}

impl Sysctls {
    fn wanted(plan: &HostPlan) -> Vec<Sysctl> {
        let mut wanted = Vec::new();
        if plan.socket_buffer_bytes > 0 {
            for name in ["rmem_max", "wmem_max", "rmem_default"] {
                wanted.push(Sysctl::new(format!("/proc/sys/net/core/{name}"), Want::AtLeast(plan.socket_buffer_bytes)));
            }
        }
        if plan.rp_filter_off {
            // The kernel applies the larger of `all` and the interface's value, so both must be 0.
            let mut scopes = vec!["all"];
            scopes.extend(plan.interface.as_deref());
            for scope in scopes {
                wanted.push(Sysctl::new(format!("/proc/sys/net/ipv4/conf/{scope}/rp_filter"), Want::Exactly(0)));
            }
        }
        wanted
    }
}

impl Stage for Sysctls {
    fn name(&self) -> &'static str {
        "sysctls"
    }

    fn check(&self, plan: &HostPlan, host: &Host) -> Vec<Finding> {
        let mut findings = Vec::new();
        for sysctl in Self::wanted(plan) {
            match host.read_u64(&sysctl.path) {
                Ok(value) if sysctl.satisfied(value) => {}
                Ok(value) => {
                    let wanted = match sysctl.want {
                        Want::AtLeast(min) => format!("at least {min}"),
                        Want::Exactly(value) => value.to_string(),
                    };
                    findings.push(Finding::missing(self.name(), format!("{} is {value}, need {wanted}", sysctl.name)));
                }
                Err(error) => findings.push(Finding::missing(self.name(), error.to_string())),
            }
        }
        findings
    }

    fn init(&self, plan: &HostPlan, host: &Host) -> Result<Vec<String>, ConfigureError> {
        let mut done = Vec::new();
        for sysctl in Self::wanted(plan) {
            // Values already above a floor are left alone: lowering them could hurt other services.
            let before = host.read_u64(&sysctl.path)?;
            if !sysctl.satisfied(before) {
                host.write(&sysctl.path, &sysctl.target().to_string())?;
                done.push(format!("set {} = {} (was {before})", sysctl.name, sysctl.target()));
            }
        }
        Ok(done)
    }

    /// Restores nothing: the previous values were not recorded, larger buffer
    /// limits are harmless, and guessing an rp_filter value could break the
    /// host's routing. An operator relying on rp_filter sets it back.
    fn fini(&self, plan: &HostPlan, _host: &Host) -> Result<Vec<String>, ConfigureError> {
        if Self::wanted(plan).is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec!["left sysctls as they are (previous values were not recorded; restore rp_filter by hand)".to_owned()])
    }
}

// ---------------------------------------------------------------- NIC channels

/// Sets the number of combined queues so there is one per net tile.
#[derive(Debug, Clone, Copy, Default)]
pub struct NicChannels;

/// The combined-channel lines of `ethtool -l`; `None` is "n/a" or 0 (unsupported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EthtoolChannels {
    pub combined_max: Option<u32>,
    pub combined_current: Option<u32>,
}

/// Parses `ethtool -l IFACE`: a "Pre-set maximums:" and a "Current hardware
/// settings:" block, each with a "Combined:" line.
pub fn parse_ethtool_channels(output: &str) -> EthtoolChannels {
    let mut channels = EthtoolChannels::default();
    let mut in_current = false;
    for line in output.lines() {
        let line = line.trim();
        if line.starts_with("Pre-set maximums") {
            in_current = false;
        } else if line.starts_with("Current hardware settings") {
            in_current = true;
        } else if let Some(value) = line.strip_prefix("Combined:") {
            let value = value.trim().parse().ok().filter(|&count: &u32| count > 0);
            if in_current {
                channels.combined_current = value;
            } else {
                channels.combined_max = value;
            }
        }
    }
    channels
}

enum ChannelQuery {
    Channels {
        max: u32,
        current: u32,
    },
    /// Why the stage does nothing on this host.
    Skip(String),
}

impl NicChannels {
    fn query(interface: &str, host: &Host) -> Result<ChannelQuery, ConfigureError> {
        let output = match host.run("ethtool", &["-l", interface]) {
            Ok(Some(output)) => output,
            Ok(None) => return Ok(ChannelQuery::Skip(format!("`ethtool -l {interface}` not run (fake root)"))),
            Err(ConfigureError::CommandMissing { .. }) => {
                return Ok(ChannelQuery::Skip(format!(
                    "ethtool is not installed: channels on {interface} not checked; install ethtool to manage them"
                )));
            }
            Err(ConfigureError::CommandFailed { stderr, .. }) => {
                return Ok(ChannelQuery::Skip(format!(
                    "{interface} does not report channels (`ethtool -l` said: {stderr}); virtual NICs such as veth \
                     may not support it, skipping"
                )));
            }
            Err(error) => return Err(error),
        };
        Ok(match parse_ethtool_channels(&output) {
            EthtoolChannels { combined_max: Some(max), combined_current: Some(current) } => {
                ChannelQuery::Channels { max, current }
            }
            _ => ChannelQuery::Skip(format!(
                "{interface} has no combined channels (driver doesn't support it), skipping"
            )),
        })
    }
}

impl Stage for NicChannels {
    fn name(&self) -> &'static str {
        "nic-channels"
    }

    fn check(&self, plan: &HostPlan, host: &Host) -> Vec<Finding> {
        let (Some(interface), Some(wanted)) = (plan.interface.as_deref(), plan.nic_channels) else {
            return Vec::new();
        };
        match Self::query(interface, host) {
            Ok(ChannelQuery::Skip(note)) => vec![Finding::advice(self.name(), note)],
            Ok(ChannelQuery::Channels { max, .. }) if wanted > max => vec![Finding::missing(
                self.name(),
                format!("{wanted} combined channels wanted but {interface} supports at most {max}"),
            )],
            Ok(ChannelQuery::Channels { current, .. }) if current != wanted => vec![Finding::missing(
                self.name(),
                format!("{interface} has {current} combined channels, need {wanted}"),
            )],
            Ok(ChannelQuery::Channels { .. }) => Vec::new(),
            Err(error) => vec![Finding::missing(self.name(), error.to_string())],
        }
    }

    fn init(&self, plan: &HostPlan, host: &Host) -> Result<Vec<String>, ConfigureError> {
        let (Some(interface), Some(wanted)) = (plan.interface.as_deref(), plan.nic_channels) else {
            return Ok(Vec::new());
        };
        match Self::query(interface, host)? {
            ChannelQuery::Skip(note) => Ok(vec![note]),
            ChannelQuery::Channels { current, .. } if current == wanted => Ok(Vec::new()),
            // Past the maximum, ethtool's own error is the clearest one.
            ChannelQuery::Channels { current, .. } => {
                host.run("ethtool", &["-L", interface, "combined", &wanted.to_string()])?;
                Ok(vec![format!("set {interface} to {wanted} combined channels (was {current})")])
            }
        }
    }

    /// Leaves the count: the previous one was not recorded and drivers differ in their default.
    fn fini(&self, _plan: &HostPlan, _host: &Host) -> Result<Vec<String>, ConfigureError> {
        Ok(Vec::new())
    }
}

// ---------------------------------------------------------------- IRQ affinity

/// Keeps the NIC's interrupts off the hot cores, where they would steal cycles
/// from busy-polling tiles.
#[derive(Debug, Clone, Copy, Default)]
pub struct IrqAffinity;

/// True when `text` contains `interface` not as part of a longer name ("eth1" in "eth10").
fn names_interface(text: &str, interface: &str) -> bool {
    !interface.is_empty()
        && text.match_indices(interface).any(|(at, _)| {
            let before = text[..at].chars().next_back();
            let after = text[at + interface.len()..].chars().next();
            !before.is_some_and(|c| c.is_ascii_alphanumeric()) && !after.is_some_and(|c| c.is_ascii_alphanumeric())
        })
}

/// IRQ numbers and labels of /proc/interrupts lines naming `interface`.
pub fn parse_interrupts(text: &str, interface: &str) -> Vec<(u32, String)> {
    text.lines()
        .filter_map(|line| {
            let (irq, rest) = line.trim_start().split_once(':')?;
            let irq = irq.parse().ok()?;
            names_interface(rest, interface)
                .then(|| (irq, rest.split_whitespace().next_back().unwrap_or("").to_owned()))
        })
        .collect()
}

impl IrqAffinity {
    /// Lines of /proc/interrupts naming the interface, plus the device's MSI
    /// IRQs from sysfs, which catches drivers (mlx5) that name queues by PCI address.
    fn irqs(interface: &str, host: &Host) -> Result<BTreeMap<u32, String>, ConfigureError> {
        let interrupts = host.read("/proc/interrupts")?;
        let mut irqs: BTreeMap<u32, String> = parse_interrupts(&interrupts, interface).into_iter().collect();
        if let Ok(entries) = fs::read_dir(host.path(&format!("/sys/class/net/{interface}/device/msi_irqs"))) {
            let labels: BTreeMap<u32, String> = parse_interrupts(&interrupts, "").into_iter().collect();
            for irq in entries.flatten().filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok()) {
                irqs.entry(irq).or_insert_with(|| labels.get(&irq).cloned().unwrap_or_else(|| "msi".to_owned()));
            }
        }
        Ok(irqs)
    }

    fn affinity(irq: u32, host: &Host) -> Result<Vec<usize>, ConfigureError> {
        let absolute = format!("/proc/irq/{irq}/smp_affinity_list");
        let text = host.read(&absolute)?;
        parse_core_list(&text).map_err(|_| ConfigureError::Parse { path: host.path(&absolute), value: text })
    }

    /// irqbalance rewrites affinities behind init's back.
    fn irqbalance_running(host: &Host) -> bool {
        let Ok(entries) = fs::read_dir(host.path("/proc")) else { return false };
        entries.flatten().any(|entry| {
            entry.file_name().to_str().is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit()))
                && fs::read_to_string(entry.path().join("comm")).is_ok_and(|comm| comm.trim() == "irqbalance")
        })
    }
}

impl Stage for IrqAffinity {
    fn name(&self) -> &'static str {
        "irq-affinity"
    }

    fn check(&self, plan: &HostPlan, host: &Host) -> Vec<Finding> {
        let Some(interface) = plan.interface.as_deref() else { return Vec::new() };
        if plan.hot_cores.is_empty() {
            return Vec::new();
        }
        let irqs = match Self::irqs(interface, host) {
            Ok(irqs) => irqs,
            Err(error) => return vec![Finding::missing(self.name(), error.to_string())],
        };
        let mut findings = Vec::new();
        if irqs.is_empty() {
            findings.push(Finding::advice(
                self.name(),
                format!("no IRQs of {interface} found in /proc/interrupts (a NIC bound to vfio has none here)"),
            ));
        }
        for (irq, label) in &irqs {
            match Self::affinity(*irq, host) {
                Ok(affinity) => {
                    let hot = overlap(&affinity, &plan.hot_cores);
                    if !hot.is_empty() {
                        findings.push(Finding::missing(
                            self.name(),
                            format!(
                                "IRQ {irq} ({label}) may run on hot cores {} (smp_affinity_list {})",
                                format_core_list(&hot),
                                format_core_list(&affinity)
                            ),
                        ));
                    }
                }
                Err(error) => findings.push(Finding::missing(self.name(), error.to_string())),
            }
        }
        if Self::irqbalance_running(host) {
            findings.push(Finding::advice(
                self.name(),
                format!(
                    "irqbalance is running and may move IRQs back onto hot cores; stop it or add \
                     IRQBALANCE_BANNED_CPULIST={}",
                    format_core_list(&plan.hot_cores)
                ),
            ));
        }
        findings
    }

    fn init(&self, plan: &HostPlan, host: &Host) -> Result<Vec<String>, ConfigureError> {
        let Some(interface) = plan.interface.as_deref() else { return Ok(Vec::new()) };
        if plan.hot_cores.is_empty() {
            return Ok(Vec::new());
        }
        let irqs = Self::irqs(interface, host)?;
        if irqs.is_empty() {
            return Ok(Vec::new());
        }
        let cold: Vec<usize> = host.online_cores()?.into_iter().filter(|core| !plan.hot_cores.contains(core)).collect();
        if cold.is_empty() {
            return Err(ConfigureError::NoHousekeepingCore { hot: plan.hot_cores.clone() });
        }
        let cold_list = format_core_list(&cold);
        let mut done = Vec::new();
        for (irq, label) in &irqs {
            let before = Self::affinity(*irq, host)?;
            if overlap(&before, &plan.hot_cores).is_empty() {
                continue;
            }
            host.write(&format!("/proc/irq/{irq}/smp_affinity_list"), &cold_list)?;
            done.push(format!("IRQ {irq} ({label}): affinity {} -> {cold_list}", format_core_list(&before)));
        }
        Ok(done)
    }

    /// Leaves the affinities: the previous ones were not recorded, and IRQs off
    /// the hot cores do no harm once tephra stops.
    fn fini(&self, _plan: &HostPlan, _host: &Host) -> Result<Vec<String>, ConfigureError> {
        Ok(Vec::new())
    }
}

// ---------------------------------------------------------------- kernel command line

/// Advice only: isolating the hot cores takes a reboot, which configure never does.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelCmdline;

const ISOLATION_PARAMS: [&str; 3] = ["isolcpus", "nohz_full", "rcu_nocbs"];

/// The cores a kernel parameter names, or `None` when it is absent or unparsable.
/// isolcpus may start with flags ("isolcpus=managed_irq,domain,2-5").
fn cmdline_cores(cmdline: &str, param: &str) -> Option<Vec<usize>> {
    // A later occurrence overrides an earlier one.
    let value =
        cmdline.split_whitespace().filter_map(|word| word.strip_prefix(param)?.strip_prefix('=')).next_back()?;
    let list: Vec<&str> = value.split(',').skip_while(|part| !part.starts_with(|c: char| c.is_ascii_digit())).collect();
    parse_core_list(&list.join(",")).ok()
}

impl Stage for KernelCmdline {
    fn name(&self) -> &'static str {
        "kernel-cmdline"
    }

    fn check(&self, plan: &HostPlan, host: &Host) -> Vec<Finding> {
        if plan.hot_cores.is_empty() {
            return Vec::new();
        }
        let cmdline = match host.read("/proc/cmdline") {
            Ok(cmdline) => cmdline,
            Err(error) => return vec![Finding::advice(self.name(), error.to_string())],
        };
        let hot = format_core_list(&plan.hot_cores);
        ISOLATION_PARAMS
            .iter()
            .filter_map(|param| {
                let present = cmdline_cores(&cmdline, param);
                let uncovered: Vec<usize> = match &present {
                    Some(cores) => plan.hot_cores.iter().copied().filter(|core| !cores.contains(core)).collect(),
                    None => plan.hot_cores.clone(),
                };
                if uncovered.is_empty() {
                    return None;
                }
                let now = match &present {
                    Some(cores) => format!("it has {param}={}", format_core_list(cores)),
                    None => "it has none".to_owned(),
                };
                Some(Finding::advice(
                    self.name(),
                    format!(
                        "for hot cores {hot}, add {param}={hot} to the kernel command line ({now}; needs a reboot)"
                    ),
                ))
            })
            .collect()
    }

    fn init(&self, _plan: &HostPlan, _host: &Host) -> Result<Vec<String>, ConfigureError> {
        Ok(Vec::new())
    }

    fn fini(&self, _plan: &HostPlan, _host: &Host) -> Result<Vec<String>, ConfigureError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway root holding fake /proc and /sys files.
    struct FakeRoot(PathBuf);

    impl FakeRoot {
        fn new(name: &str) -> Self {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
            Self(tephra_testkit::fresh_dir(&format!("configure-{name}-{nanos}")))
        }

        fn put(&self, absolute: &str, contents: &str) -> &Self {
            let path = self.0.join(absolute.trim_start_matches('/'));
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, contents).unwrap();
            self
        }

        fn get(&self, absolute: &str) -> String {
            fs::read_to_string(self.0.join(absolute.trim_start_matches('/'))).unwrap()
        }

        fn plan(&self) -> HostPlan {
            HostPlan { root: self.0.clone(), ..HostPlan::default() }
        }

        fn host(&self) -> Host {
            Host::new(&self.0)
        }
    }

    impl Drop for FakeRoot {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn missing(findings: &[Finding]) -> Vec<&Finding> {
        findings.iter().filter(|finding| finding.severity == Severity::Missing).collect()
    }

    #[test]
    fn core_lists_format_compactly_and_round_trip() {
        assert_eq!(format_core_list(&[2, 3, 4, 5, 8]), "2-5,8");
        assert_eq!(format_core_list(&[8, 3, 2, 3, 5, 4]), "2-5,8");
        assert_eq!(format_core_list(&[0]), "0");
        assert_eq!(format_core_list(&[1, 3, 5]), "1,3,5");
        assert_eq!(format_core_list(&[0, 1, 4, 5, 6, 9]), "0-1,4-6,9");
        assert_eq!(format_core_list(&[]), "");
        assert_eq!(parse_core_list("0-3,8\n").unwrap(), vec![0, 1, 2, 3, 8]);
        assert_eq!(parse_core_list("").unwrap(), Vec::<usize>::new());
        assert!(parse_core_list("3-1").is_err());
        assert!(parse_core_list("a").is_err());
        let cores = vec![0, 1, 4, 5, 6, 9, 10, 63];
        assert_eq!(parse_core_list(&format_core_list(&cores)).unwrap(), cores);
    }

    #[test]
    fn hugepages_missing_then_init_writes_count_then_fini_releases() {
        let root = FakeRoot::new("hugepages");
        root.put(HUGEPAGES_2M_SYSFS, "0\n").put("/proc/mounts", "proc /proc proc rw 0 0\n");
        let plan = HostPlan { hugepages_2m: 512, ..root.plan() };
        let host = root.host();

        let findings = Hugepages.check(&plan, &host);
        assert_eq!(missing(&findings).len(), 2, "{findings:?}");
        assert!(findings[0].message.contains("0 2 MiB huge pages"), "{}", findings[0]);
        assert!(findings[1].message.contains("/dev/hugepages"), "{}", findings[1]);

        let done = Hugepages.init(&plan, &host).unwrap();
        assert_eq!(root.get(HUGEPAGES_2M_SYSFS).trim(), "512");
        assert!(
            done.iter().any(|action| action.contains("skipped `mount -t hugetlbfs none /dev/hugepages`")),
            "{done:?}"
        );

        // What the mount would have produced.
        root.put("/proc/mounts", "none /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n");
        assert!(Hugepages.check(&plan, &host).is_empty());
        assert!(Hugepages.init(&plan, &host).unwrap().is_empty(), "init is idempotent");

        let done = Hugepages.fini(&plan, &host).unwrap();
        assert_eq!(root.get(HUGEPAGES_2M_SYSFS).trim(), "0");
        assert!(done.iter().any(|action| action.contains("umount /dev/hugepages")), "{done:?}");
    }

    #[test]
    fn hugepages_fall_back_to_proc_and_unescape_mounts() {
        let root = FakeRoot::new("hugepages-proc");
        root.put(HUGEPAGES_PROC, "16\n").put("/proc/mounts", "none /mnt/huge\\040pages hugetlbfs rw 0 0\n");
        let plan = HostPlan { hugepages_2m: 8, hugetlbfs_mount: PathBuf::from("/mnt/huge pages"), ..root.plan() };
        assert!(Hugepages.check(&plan, &root.host()).is_empty());
        let plan = HostPlan { hugepages_2m: 32, ..plan };
        assert_eq!(missing(&Hugepages.check(&plan, &root.host())).len(), 1);
        Hugepages.init(&plan, &root.host()).unwrap();
        assert_eq!(root.get(HUGEPAGES_PROC).trim(), "32");
    }

    #[test]
    fn hugepages_off_checks_nothing() {
        let root = FakeRoot::new("hugepages-off");
        assert!(Hugepages.check(&root.plan(), &root.host()).is_empty());
    }

    #[test]
    fn sysctls_check_then_init() {
        let root = FakeRoot::new("sysctls");
        root.put("/proc/sys/net/core/rmem_max", "212992\n")
            .put("/proc/sys/net/core/wmem_max", "268435456\n")
            .put("/proc/sys/net/core/rmem_default", "212992\n")
            .put("/proc/sys/net/ipv4/conf/all/rp_filter", "2\n")
            .put("/proc/sys/net/ipv4/conf/eth0/rp_filter", "1\n");
        let plan = HostPlan {
            socket_buffer_bytes: 134_217_728,
            rp_filter_off: true,
            interface: Some("eth0".to_owned()),
            ..root.plan()
        };
        let host = root.host();

        let findings = Sysctls.check(&plan, &host);
        let messages: Vec<&str> = findings.iter().map(|finding| finding.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "net.core.rmem_max is 212992, need at least 134217728",
                "net.core.rmem_default is 212992, need at least 134217728",
                "net.ipv4.conf.all.rp_filter is 2, need 0",
                "net.ipv4.conf.eth0.rp_filter is 1, need 0",
            ]
        );
        assert!(any_missing(&findings));

        let done = Sysctls.init(&plan, &host).unwrap();
        assert_eq!(done.len(), 4, "{done:?}");
        assert_eq!(root.get("/proc/sys/net/core/rmem_max").trim(), "134217728");
        assert_eq!(root.get("/proc/sys/net/core/wmem_max").trim(), "268435456", "a higher value is not lowered");
        assert_eq!(root.get("/proc/sys/net/ipv4/conf/eth0/rp_filter").trim(), "0");
        assert!(Sysctls.check(&plan, &host).is_empty());
        assert_eq!(Sysctls.fini(&plan, &host).unwrap().len(), 1, "fini only reports what it leaves");
    }

    #[test]
    fn sysctl_missing_file_is_missing_and_init_names_it() {
        let root = FakeRoot::new("sysctls-absent");
        let plan = HostPlan { rp_filter_off: true, interface: Some("eth9".to_owned()), ..root.plan() };
        root.put("/proc/sys/net/ipv4/conf/all/rp_filter", "0\n");
        let findings = Sysctls.check(&plan, &root.host());
        assert_eq!(missing(&findings).len(), 1);
        assert!(findings[0].message.contains("conf/eth9/rp_filter"), "{}", findings[0]);
        let error = Sysctls.init(&plan, &root.host()).unwrap_err().to_string();
        assert!(error.contains("conf/eth9/rp_filter"), "{error}");
    }

    #[test]
    fn vlan_interface_sysctl_name_uses_slashes() {
        let sysctl = Sysctl::new("/proc/sys/net/ipv4/conf/eth0.100/rp_filter".to_owned(), Want::Exactly(0));
        assert_eq!(sysctl.name, "net.ipv4.conf.eth0/100.rp_filter");
    }

    const INTERRUPTS: &str = "\
           CPU0       CPU1       CPU2       CPU3       CPU4       CPU5       CPU6       CPU7
  0:         44          0          0          0          0          0          0          0   IO-APIC   2-edge      timer
 24:     120034          0          0          0          0          0          0          0   PCI-MSI 1048576-edge      eth0-TxRx-0
 25:          0     331200          0          0          0          0          0          0   PCI-MSI 1048577-edge      eth0-TxRx-1
 26:          0          0          3          0          0          0          0          0   PCI-MSI 1048578-edge      eth0
 27:          0          0          0        912          0          0          0          0   PCI-MSI 1050624-edge      eth10-TxRx-0
NMI:          0          0          0          0          0          0          0          0   Non-maskable interrupts
LOC:    1234567    1234567    1234567    1234567    1234567    1234567    1234567    1234567   Local timer interrupts
";

    #[test]
    fn interrupts_parsing_matches_whole_interface_names() {
        let irqs = parse_interrupts(INTERRUPTS, "eth0");
        assert_eq!(irqs, vec![(24, "eth0-TxRx-0".to_owned()), (25, "eth0-TxRx-1".to_owned()), (26, "eth0".to_owned())]);
        assert_eq!(parse_interrupts(INTERRUPTS, "eth1"), vec![]);
        assert!(names_interface(" i40e-eth0-TxRx-1", "eth0"));
        assert!(!names_interface(" veth0", "eth0"));
    }

    #[test]
    fn irq_affinity_on_a_hot_core_is_found_and_rewritten() {
        let root = FakeRoot::new("irq");
        root.put("/proc/interrupts", INTERRUPTS)
            .put("/sys/devices/system/cpu/online", "0-7\n")
            .put("/proc/irq/24/smp_affinity_list", "0-7\n")
            .put("/proc/irq/25/smp_affinity_list", "3\n")
            .put("/proc/irq/26/smp_affinity_list", "0-1\n")
            .put("/proc/irq/27/smp_affinity_list", "2\n")
            .put("/proc/4242/comm", "irqbalance\n");
        let plan = HostPlan { interface: Some("eth0".to_owned()), hot_cores: vec![2, 3], ..root.plan() };
        let host = root.host();

        let findings = IrqAffinity.check(&plan, &host);
        let messages: Vec<&str> = missing(&findings).iter().map(|finding| finding.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "IRQ 24 (eth0-TxRx-0) may run on hot cores 2-3 (smp_affinity_list 0-7)",
                "IRQ 25 (eth0-TxRx-1) may run on hot cores 3 (smp_affinity_list 3)",
            ]
        );
        assert!(findings.iter().any(|f| f.severity == Severity::Advice && f.message.contains("irqbalance")));

        let done = IrqAffinity.init(&plan, &host).unwrap();
        assert_eq!(done.len(), 2, "{done:?}");
        assert_eq!(root.get("/proc/irq/24/smp_affinity_list").trim(), "0-1,4-7");
        assert_eq!(root.get("/proc/irq/25/smp_affinity_list").trim(), "0-1,4-7");
        assert_eq!(root.get("/proc/irq/26/smp_affinity_list").trim(), "0-1", "already cold: untouched");
        assert_eq!(root.get("/proc/irq/27/smp_affinity_list").trim(), "2", "another NIC: untouched");
        assert!(missing(&IrqAffinity.check(&plan, &host)).is_empty());
    }

    #[test]
    fn irq_init_refuses_when_every_core_is_hot() {
        let root = FakeRoot::new("irq-allhot");
        root.put("/proc/interrupts", INTERRUPTS)
            .put("/sys/devices/system/cpu/online", "0-1\n")
            .put("/proc/irq/24/smp_affinity_list", "0-1\n");
        let plan = HostPlan { interface: Some("eth0".to_owned()), hot_cores: vec![0, 1], ..root.plan() };
        let error = IrqAffinity.init(&plan, &root.host()).unwrap_err();
        assert!(matches!(error, ConfigureError::NoHousekeepingCore { .. }), "{error}");
    }

    #[test]
    fn cmdline_advises_isolation_for_hot_cores() {
        let root = FakeRoot::new("cmdline");
        root.put("/proc/cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet\n");
        let plan = HostPlan { hot_cores: vec![2, 3, 4, 5, 8], ..root.plan() };
        let host = root.host();

        let findings = KernelCmdline.check(&plan, &host);
        assert_eq!(findings.len(), 3);
        assert!(findings.iter().all(|finding| finding.severity == Severity::Advice));
        for (finding, param) in findings.iter().zip(ISOLATION_PARAMS) {
            assert!(finding.message.contains(&format!("{param}=2-5,8")), "{finding}");
        }
        assert!(!any_missing(&findings), "advice never fails check");

        root.put("/proc/cmdline", "ro isolcpus=managed_irq,domain,2-5,8 nohz_full=2-8 rcu_nocbs=2-4\n");
        let findings = KernelCmdline.check(&plan, &host);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(
            findings[0].message.contains("rcu_nocbs=2-5,8") && findings[0].message.contains("it has rcu_nocbs=2-4")
        );
        assert!(KernelCmdline.init(&plan, &host).unwrap().is_empty());
    }

    #[test]
    fn cmdline_core_lists_skip_isolcpus_flags() {
        assert_eq!(cmdline_cores("isolcpus=domain,managed_irq,1-2 x", "isolcpus"), Some(vec![1, 2]));
        assert_eq!(cmdline_cores("nohz_full=3", "nohz_full"), Some(vec![3]));
        assert_eq!(cmdline_cores("nohz_fullx=3", "nohz_full"), None);
        assert_eq!(cmdline_cores("quiet", "rcu_nocbs"), None);
    }

    /// `ethtool -l` on an Intel E810 port.
    const ETHTOOL_E810: &str = "\
Channel parameters for ens1f0:
Pre-set maximums:
RX:		64
TX:		64
Other:		1
Combined:	64
Current hardware settings:
RX:		0
TX:		0
Other:		1
Combined:	16
";

    /// `ethtool -l` on a veth pair end: no combined channels.
    const ETHTOOL_VETH: &str = "\
Channel parameters for veth0:
Pre-set maximums:
RX:		8
TX:		8
Other:		n/a
Combined:	n/a
Current hardware settings:
RX:		1
TX:		1
Other:		n/a
Combined:	n/a
";

    #[test]
    fn ethtool_channels_parse() {
        assert_eq!(
            parse_ethtool_channels(ETHTOOL_E810),
            EthtoolChannels { combined_max: Some(64), combined_current: Some(16) }
        );
        assert_eq!(parse_ethtool_channels(ETHTOOL_VETH), EthtoolChannels::default());
        assert_eq!(parse_ethtool_channels(""), EthtoolChannels::default());
    }

    #[test]
    fn nic_channels_skip_with_a_note_under_a_fake_root() {
        let root = FakeRoot::new("channels");
        let plan = HostPlan { interface: Some("eth0".to_owned()), nic_channels: Some(4), ..root.plan() };
        let findings = NicChannels.check(&plan, &root.host());
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].severity, Severity::Advice);
        assert_eq!(NicChannels.init(&plan, &root.host()).unwrap().len(), 1);
    }

    #[test]
    fn memlock_shortfall() {
        assert!(memlock_short(8 << 20, 1 << 30));
        assert!(!memlock_short(1 << 30, 1 << 30));
        assert!(!memlock_short(libc::RLIM_INFINITY, u64::MAX - 1));
        let root = FakeRoot::new("memlock");
        assert!(Memlock.check(&root.plan(), &root.host()).is_empty(), "no minimum, nothing missing");
        let (soft, _) = memlock_limit_bytes().unwrap();
        let plan = HostPlan { memlock_bytes_min: u64::MAX - 1, ..root.plan() };
        let findings = Memlock.check(&plan, &root.host());
        assert_eq!(findings.len(), usize::from(soft != libc::RLIM_INFINITY));
        assert!(findings.iter().all(|finding| finding.message.contains("LimitMEMLOCK")));
    }

    #[test]
    fn whole_plan_against_a_fake_root() {
        let root = FakeRoot::new("whole");
        root.put(HUGEPAGES_2M_SYSFS, "0\n")
            .put("/proc/mounts", "")
            .put("/proc/sys/net/core/rmem_max", "1\n")
            .put("/proc/sys/net/core/wmem_max", "1\n")
            .put("/proc/sys/net/core/rmem_default", "1\n")
            .put("/proc/cmdline", "ro\n");
        let plan = HostPlan { hugepages_2m: 4, socket_buffer_bytes: 4096, hot_cores: vec![1], ..root.plan() };
        let findings = check(&plan);
        assert!(any_missing(&findings));
        assert_eq!(
            findings[0].to_string(),
            "[missing] hugepages: 0 2 MiB huge pages reserved in \
             /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages, need 4"
        );
        let done = init(&plan).unwrap();
        assert!(done.iter().any(|action| action.starts_with("sysctls: set net.core.rmem_max = 4096")), "{done:?}");
        root.put("/proc/mounts", "none /dev/hugepages hugetlbfs rw 0 0\n");
        assert!(!any_missing(&check(&plan)), "{:?}", check(&plan));
        let done = fini(&plan).unwrap();
        assert!(done[0].starts_with("sysctls:"), "fini runs in reverse order: {done:?}");
        assert_eq!(root.get(HUGEPAGES_2M_SYSFS).trim(), "0");
    }
}
