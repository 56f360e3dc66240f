//! anvil (Foundry's, from the workspace's npm packages) as a test's L1 or
//! reference node: started on a free port with the caller's flags, waited
//! for, signalled, and killed when dropped. npm's `anvil` is a wrapper that
//! starts the real binary, so both run in a process group of their own and
//! the whole group is signalled.

use std::{
    os::unix::process::CommandExt,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{free_port, rpc::RpcClient, workspace_root};

/// How long anvil may take to answer after it starts.
const ANSWERING_WITHIN: Duration = Duration::from_secs(30);

/// A running anvil; see the module comment.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    pub url: String,
    pub client: RpcClient,
}

impl Anvil {
    /// Starts anvil with `args` (besides its port) and waits until it answers.
    pub fn start(args: &[&str]) -> Self {
        let port = free_port();
        let child = Command::new(workspace_root().join("node_modules/.bin/anvil"))
            .args(["--port", &port.to_string(), "--silent"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("anvil starts");
        let url = format!("http://127.0.0.1:{port}");
        let anvil = Self { child, client: RpcClient::new(url.clone()), url };
        anvil.client.wait_answering("anvil", ANSWERING_WITHIN);
        anvil
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to anvil's process group: a
    /// stopped anvil takes connections and never answers, as an L1 gone
    /// unreachable.
    pub fn signal(&self, signal: &str) {
        let status =
            Command::new("kill").args([&format!("-{signal}"), "--", &format!("-{}", self.child.id())]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} anvil");
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.wait();
    }
}
