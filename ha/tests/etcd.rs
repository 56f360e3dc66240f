//! The election against a real etcd (Debian's etcd-server, scripts/deps.sh):
//! one leader at a time, epochs that only grow, a lease kept alive past its
//! TTL, deposition when the key goes, and resignation.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tephra_ha::{Election, EtcdConfig, LeaderValue};

struct Etcd {
    child: Child,
    dir: std::path::PathBuf,
    endpoint: String,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn etcd() -> Option<Etcd> {
    if Command::new("etcd").arg("--version").output().is_err() {
        eprintln!("SKIPPED: etcd is not installed (scripts/deps.sh installs etcd-server)");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("tephra-ha-etcd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (client, peer) = (free_port(), free_port());
    let endpoint = format!("http://127.0.0.1:{client}");
    let child = Command::new("etcd")
        .arg("--data-dir")
        .arg(&dir)
        .args(["--listen-client-urls", &endpoint, "--advertise-client-urls", &endpoint])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--initial-cluster", &format!("default=http://127.0.0.1:{peer}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd starts");
    Some(Etcd { child, dir, endpoint })
}

fn config(endpoint: &str) -> EtcdConfig {
    EtcdConfig {
        endpoints: vec![endpoint.to_string()],
        prefix: "/tephra/election-test".into(),
        ca_file: None,
        cert_file: None,
        key_file: None,
        lease_ttl_s: 2,
        request_timeout: Duration::from_secs(1),
    }
}

fn value(id: &str) -> LeaderValue {
    LeaderValue {
        node_id: id.into(),
        replication: format!("{id}:1"),
        rpc: format!("http://{id}:2"),
        block_key: "0x00".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_with_growing_epochs() {
    let Some(etcd) = etcd() else { return };
    let deadline = Instant::now() + Duration::from_secs(30);
    let election = loop {
        match Election::connect(config(&etcd.endpoint)).await {
            Ok(election) if election.leader().await.is_ok() => break election,
            _ => {
                assert!(Instant::now() < deadline, "etcd did not come up");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(election.leader().await.unwrap(), None);
    let first = election.campaign(&value("a")).await.unwrap().expect("a free key is won");
    assert!(election.campaign(&value("b")).await.unwrap().is_none(), "a held key is not");
    let leader = election.leader().await.unwrap().unwrap();
    assert_eq!((leader.epoch, leader.value), (first.epoch, value("a")));
    // Kept alive well past its TTL.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(first.lease.leading(), "the lease is kept alive");
    assert_eq!(election.leader().await.unwrap().unwrap().epoch, first.epoch);
    // Someone deletes the key (step-down): the leader is deposed at once.
    assert!(election.delete_leader(first.epoch).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(2);
    while first.lease.leading() {
        assert!(Instant::now() < deadline, "deposed when the key went");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = election.campaign(&value("b")).await.unwrap().expect("a freed key is won");
    assert!(second.epoch > first.epoch, "epochs only grow");
    assert!(!election.delete_leader(first.epoch).await.unwrap(), "a stale epoch deletes nothing");
    election.resign(&second).await.unwrap();
    assert!(!second.lease.leading());
    assert_eq!(election.leader().await.unwrap(), None);
    // A leader whose process dies without resigning: its key goes with its lease.
    let third = election.campaign(&value("c")).await.unwrap().unwrap();
    drop(third);
    assert!(election.wait_vacant(Duration::from_secs(5)).await.unwrap(), "the key expires with the lease");
}
