//! A real etcd cluster on loopback (Debian's etcd-server; scripts/deps.sh),
//! each member its own process, for the HA tests and benchmarks.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{Need, free_port, fresh_dir, require};

/// Starts tried before a test fails: a port picked free can be taken by a
/// parallel test before etcd binds it, and the member then exits at once.
const START_ATTEMPTS: usize = 3;
/// How long a started cluster may take to report healthy.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);

/// What a TLS cluster needs: its CA, and the server certificate and key
/// (for 127.0.0.1); clients must then show a certificate the CA signed.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A running cluster; the members are killed and their data removed when it drops.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Child>,
    dir: PathBuf,
    endpoints: Vec<String>,
}

impl EtcdCluster {
    /// The etcd command, as a prerequisite.
    pub fn need() -> Need {
        Need::command("etcd", "scripts/deps.sh installs etcd-server")
    }

    /// A healthy cluster of `members` members, or `None` where etcd is
    /// missing and the test may skip (see [`require`]).
    pub fn start(name: &str, members: usize, tls: Option<&EtcdTls>) -> Option<Self> {
        if !require(&[Self::need()]) {
            return None;
        }
        for attempt in 1..=START_ATTEMPTS {
            match Self::try_start(name, members, tls) {
                Ok(cluster) => return Some(cluster),
                Err(reason) => eprintln!("etcd start {attempt} of {START_ATTEMPTS}: {reason}"),
            }
        }
        panic!("etcd did not start in {START_ATTEMPTS} attempts");
    }

    fn try_start(name: &str, count: usize, tls: Option<&EtcdTls>) -> Result<Self, String> {
        let dir = fresh_dir(&format!("etcd-{name}"));
        let ports = |_| (free_port(), free_port(), free_port());
        let ports: Vec<(u16, u16, u16)> = (0..count).map(ports).collect();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoints: Vec<String> = ports.iter().map(|p| format!("{scheme}://127.0.0.1:{}", p.0)).collect();
        let cluster: Vec<String> =
            ports.iter().enumerate().map(|(i, p)| format!("m{i}=http://127.0.0.1:{}", p.1)).collect();
        let mut members = Vec::with_capacity(count);
        for (i, (_, peer, metrics)) in ports.iter().enumerate() {
            let log = std::fs::File::create(dir.join(format!("m{i}.log"))).map_err(|e| e.to_string())?;
            let mut command = Command::new("etcd");
            if let Some(tls) = tls {
                command.arg("--cert-file").arg(&tls.cert).arg("--key-file").arg(&tls.key);
                command.arg("--trusted-ca-file").arg(&tls.ca).arg("--client-cert-auth");
            }
            command
                .args(["--name", &format!("m{i}"), "--data-dir"])
                .arg(dir.join(format!("m{i}")))
                .args(["--listen-client-urls", &endpoints[i], "--advertise-client-urls", &endpoints[i]])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
                // /health in plain HTTP, also when clients must speak TLS.
                .args(["--listen-metrics-urls", &format!("http://127.0.0.1:{metrics}")])
                .args(["--initial-cluster", &cluster.join(",")])
                .args(["--initial-cluster-token", name, "--initial-cluster-state", "new"])
                .stdout(Stdio::null())
                .stderr(log);
            members.push(command.spawn().map_err(|e| format!("etcd does not start: {e}"))?);
        }
        let mut cluster = Self { members, dir, endpoints };
        let health: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{}/health", p.2)).collect();
        cluster.wait_healthy(&health)?;
        Ok(cluster)
    }

    fn wait_healthy(&mut self, health: &[String]) -> Result<(), String> {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .new_agent();
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        for url in health {
            loop {
                let body = agent.get(url).call().ok().and_then(|mut r| r.body_mut().read_to_string().ok());
                if body.is_some_and(|body| body.contains("\"health\":\"true\"")) {
                    break;
                }
                if let Some(exited) = self.members.iter_mut().position(|m| m.try_wait().ok().flatten().is_some()) {
                    let log = std::fs::read_to_string(self.dir.join(format!("m{exited}.log"))).unwrap_or_default();
                    return Err(format!("member m{exited} exited: {}", log.lines().last().unwrap_or("")));
                }
                assert!(
                    Instant::now() < deadline,
                    "etcd not healthy in {HEALTHY_TIMEOUT:?}; see {}",
                    self.dir.display()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// The members' client URLs.
    pub fn endpoints(&self) -> Vec<String> {
        self.endpoints.clone()
    }

    /// Sends `signal` (STOP: the member hangs, as if cut off; CONT) to member `i`.
    pub fn signal(&self, i: usize, signal: &str) {
        let pid = self.members[i].id().to_string();
        assert!(Command::new("kill").args(["-s", signal, &pid]).status().expect("kill runs").success());
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            let _ = member.kill();
            let _ = member.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
