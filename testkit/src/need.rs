//! Prerequisites: what a test needs of the machine, checked before it runs.
//!
//! Under `./scripts/test.sh` (which sets `TEPHRA_TEST_STRICT=1`; CI runs it
//! as root with every package installed) a missing prerequisite fails the
//! test with its reason. Anywhere else the test is skipped, and the skip is
//! never silent: it is written at once to the terminal (past libtest's
//! output capture), appended to the run's skip ledger (scripts/test.sh
//! lists the ledger at the end), and counted again when the test binary
//! exits.

use std::{
    fs::OpenOptions,
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, Once},
};

/// Set to 1 by scripts/test.sh: a missing prerequisite fails its test.
pub const STRICT_ENV: &str = "TEPHRA_TEST_STRICT";
/// Where skips are appended, one `binary<TAB>test<TAB>reason` line each;
/// scripts/test.sh sets it. Unset: `<target dir>/test-skips.log`.
pub const LEDGER_ENV: &str = "TEPHRA_SKIP_LEDGER";

/// One thing a test needs of the machine: met, or why it is missing.
#[derive(Debug, Clone)]
pub struct Need {
    missing: Option<String>,
}

impl Need {
    /// A need the caller checked: `missing` says why it is not met.
    pub fn checked(missing: Option<String>) -> Self {
        Self { missing }
    }

    /// The effective user is root (mounts, namespaces, mmdebstrap).
    pub fn root() -> Self {
        // /proc/self belongs to the process's effective user.
        let uid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).ok();
        Self::checked((uid != Some(0)).then(|| "the test runs as a user other than root".into()))
    }

    /// `name` is a command on the PATH; `install` says how to get it.
    pub fn command(name: &str, install: &str) -> Self {
        let found = Command::new("sh").args(["-c", &format!("command -v {name}")]).output();
        let missing = !found.is_ok_and(|o| o.status.success());
        Self::checked(missing.then(|| format!("{name} is not on the PATH ({install})")))
    }

    /// `path` exists; `install` says how to get it.
    pub fn file(path: impl AsRef<Path>, install: &str) -> Self {
        let path = path.as_ref();
        let missing = !path.exists();
        Self::checked(missing.then(|| format!("{} is missing ({install})", path.display())))
    }

    /// The Python interpreter `python` imports `module`; `install` says how
    /// to get it. Name the interpreter the test runs: a `python3` earlier on
    /// the PATH may not see Debian's packages.
    pub fn python_module(python: &str, module: &str, install: &str) -> Self {
        let imported = Command::new(python).args(["-c", &format!("import {module}")]).output();
        let missing = !imported.is_ok_and(|o| o.status.success());
        Self::checked(missing.then(|| format!("{python} cannot import {module} ({install})")))
    }

    /// Why this need is not met, if it is not.
    pub fn missing(&self) -> Option<&str> {
        self.missing.as_deref()
    }
}

/// Whether the calling test may go on: true when every need is met. In
/// strict mode a missing need panics with every reason; otherwise the test
/// is recorded as skipped and should return at once.
pub fn require(needs: &[Need]) -> bool {
    let reasons: Vec<&str> = needs.iter().filter_map(Need::missing).collect();
    if reasons.is_empty() {
        return true;
    }
    let test = current_test();
    let reason = reasons.join("; ");
    assert!(
        !strict(),
        "{test}: a prerequisite is missing: {reason}. ./scripts/test.sh installs every prerequisite and never skips"
    );
    record_skip(&test, &reason);
    false
}

/// Whether this run is strict (scripts/test.sh).
fn strict() -> bool {
    std::env::var(STRICT_ENV).is_ok_and(|v| v == "1")
}

/// libtest names each test's thread after the test.
fn current_test() -> String {
    std::thread::current().name().unwrap_or("a test").to_string()
}

static SKIPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static SUMMARY_AT_EXIT: Once = Once::new();

fn record_skip(test: &str, reason: &str) {
    let binary = binary_name();
    // Written straight to the file descriptor: libtest captures only the
    // print macros, and a skip must show in a passing run.
    let _ = writeln!(std::io::stderr(), "SKIPPED {binary} {test}: {reason}");
    if let Ok(mut ledger) = OpenOptions::new().create(true).append(true).open(ledger_path()) {
        let _ = writeln!(ledger, "{binary}\t{test}\t{reason}");
    }
    SKIPPED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(format!("{test}: {reason}"));
    SUMMARY_AT_EXIT.call_once(|| {
        // SAFETY: atexit only stores the pointer of a function that takes
        // nothing and returns nothing, which is what `summary` is.
        #[allow(unsafe_code, reason = "libtest has no end-of-run hook; atexit is the only one")]
        unsafe {
            libc::atexit(summary);
        }
    });
}

/// Printed as the test binary exits, after libtest's own result line.
extern "C" fn summary() {
    let skipped = SKIPPED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut stderr = std::io::stderr();
    let _ = writeln!(
        stderr,
        "{} of {}'s passing tests were SKIPPED for a missing prerequisite (./scripts/test.sh fails them instead):",
        skipped.len(),
        binary_name()
    );
    for line in skipped.iter() {
        let _ = writeln!(stderr, "  {line}");
    }
}

/// The test binary's name without the hash cargo appends (`etcd`, not `etcd-d807…`).
fn binary_name() -> String {
    let name = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "this test binary".into());
    match name.rsplit_once('-') {
        Some((stem, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => stem.to_string(),
        _ => name,
    }
}

/// The ledger scripts/test.sh names, or the one in the target directory
/// (the ancestor of this executable that cargo marked with CACHEDIR.TAG).
fn ledger_path() -> PathBuf {
    if let Some(path) = std::env::var_os(LEDGER_ENV) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let target = exe.ancestors().find(|dir| dir.join("CACHEDIR.TAG").exists()).unwrap_or_else(|| Path::new("."));
    target.join("test-skips.log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_met_need_has_no_reason_and_a_missing_one_says_how_to_install_it() {
        assert!(Need::command("sh", "always there").missing().is_none());
        let absent = Need::command("tephra-no-such-tool", "apt install nothing");
        assert_eq!(absent.missing(), Some("tephra-no-such-tool is not on the PATH (apt install nothing)"));
        assert!(Need::file("/tephra/no/such/file", "x").missing().unwrap().contains("/tephra/no/such/file is missing"));
        assert!(require(&[Need::file("/", "the root folder")]));
    }

    #[test]
    fn strict_mode_fails_a_test_whose_need_is_missing() {
        // A child process, so that the strict setting and the failure stay there.
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "need::tests::child_requires_the_impossible", "--ignored", "--nocapture"])
            .env(STRICT_ENV, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stdout}{stderr}");
        assert!(stderr.contains("a prerequisite is missing: tephra-no-such-tool is not on the PATH"), "{stderr}");
    }

    #[test]
    fn outside_strict_mode_the_skip_is_reported_ledgered_and_counted() {
        let ledger = std::env::temp_dir().join(format!("tephra-testkit-ledger-{}", std::process::id()));
        let _ = std::fs::remove_file(&ledger);
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "need::tests::child_requires_the_impossible", "--ignored"])
            .env(STRICT_ENV, "0")
            .env(LEDGER_ENV, &ledger)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success() && stdout.contains("1 passed"), "{stdout}{stderr}");
        assert!(
            stderr.contains("SKIPPED") && stderr.contains("need::tests::child_requires_the_impossible"),
            "{stderr}"
        );
        assert!(stderr.contains("1 of ") && stderr.contains("were SKIPPED"), "the exit summary: {stderr}");
        let ledgered = std::fs::read_to_string(&ledger).unwrap();
        assert!(ledgered.contains("\tneed::tests::child_requires_the_impossible\ttephra-no-such-tool"), "{ledgered}");
        std::fs::remove_file(&ledger).unwrap();
    }

    /// The child half of the two tests above.
    #[test]
    #[ignore = "the child half of the strict and non-strict tests: they run it"]
    fn child_requires_the_impossible() {
        if !require(&[Need::command("tephra-no-such-tool", "nowhere")]) {
            return;
        }
        unreachable!("the need cannot be met");
    }
}
