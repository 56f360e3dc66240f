//! What tephra's tests share (README.md). Dev-only: every crate's tests and
//! benches use it, and it depends on no tephra crate, so that any of them can.
//!
//! The one rule it enforces: a test declares what it needs of the machine
//! with [`require`], and under `./scripts/test.sh` (strict mode) a missing
//! prerequisite fails the test with its reason, while a developer's plain
//! `cargo test` skips it and the skip is counted and listed.

#![allow(clippy::print_stderr, reason = "skips and child-process output are reported on stderr")]

pub mod abi;
pub mod anvil;
pub mod child;
pub mod etcd;
pub mod need;
pub mod rpc;
pub mod tephra;

use std::{
    net::{TcpListener, UdpSocket},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

pub use need::{Need, require};

/// The workspace's root folder (testkit/ sits in it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("testkit/ sits in the workspace").to_path_buf()
}

/// A file of the repository's test data (testdata/README.md says where each comes from).
pub fn testdata(name: &str) -> PathBuf {
    workspace_root().join("testdata").join(name)
}

/// A tool installed by `npm ci` at the workspace root (anvil, cast); the
/// test fails naming it when it is missing (scripts/test.sh installs them).
pub fn npm_tool(name: &str) -> PathBuf {
    let path = workspace_root().join("node_modules/.bin").join(name);
    assert!(path.exists(), "{name} not found: run `npm ci` at the workspace root (scripts/test.sh does)");
    path
}

/// The ports `free_port` hands out: below Linux's ephemeral range (32768 and
/// up by default), so that no outgoing connection's source port takes one
/// between the pick and the server's bind (a port the kernel picked for
/// bind(0) is in that range, and was seen taken so in the HA tests).
const PORT_FIRST: u16 = 20_000;
const PORTS: u32 = 12_768;
/// Ports this process has handed out: each is handed out once.
static PORTS_HANDED_OUT: AtomicU32 = AtomicU32::new(0);

/// A port on 127.0.0.1, free for TCP and UDP a moment ago, never handed out
/// before by this process. Each process starts at its own place in the range
/// (from its process id), so that two test processes rarely meet.
pub fn free_port() -> u16 {
    let start = std::process::id().wrapping_mul(7_919) % PORTS;
    for _ in 0..PORTS {
        let offset = (start + PORTS_HANDED_OUT.fetch_add(1, Ordering::Relaxed)) % PORTS;
        let port = PORT_FIRST + u16::try_from(offset).expect("the range fits a port");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {PORT_FIRST}..{}", u32::from(PORT_FIRST) + PORTS);
}

/// A UDP port on 127.0.0.1 (see [`free_port`]).
pub fn free_udp_port() -> u16 {
    free_port()
}

/// An empty directory of this test process, `tephra-<name>-<pid>` under the
/// system's temporary directory (what an earlier run left there is removed).
/// Names are per test: tests of one binary share the process id.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tephra-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// Polls `done` every 20 ms for at most `limit`; fails naming `what`.
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Turns transparent huge pages off for this process and its children, as
/// `tephra run` does by default: benchmarks then measure what the node pays.
pub fn disable_transparent_huge_pages() -> std::io::Result<()> {
    #[allow(unsafe_code, reason = "prctl has no safe wrapper in libc")]
    // SAFETY: PR_SET_THP_DISABLE takes one integer argument and the rest zero.
    let status = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if status != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
