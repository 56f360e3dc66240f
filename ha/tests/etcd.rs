//! The election against a real etcd (Debian's etcd-server, scripts/deps.sh):
//! one leader at a time, epochs that only grow, a lease kept alive past its
//! TTL, deposition when the key goes, resignation, the signed height fenced
//! by the leader key; and etcd over TLS with client certificates (made by
//! the openssl command), where a client without one is refused.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use tephra_ha::{Election, EtcdConfig, LeaderValue, SignedRecord};
use tephra_testkit::{
    Need,
    etcd::{EtcdCluster, EtcdTls},
    require,
};

/// The PEM files of a test CA, etcd's server certificate (for 127.0.0.1)
/// and a client certificate, all signed by the CA.
struct Pki {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

impl Pki {
    fn make(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let new_key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        let ca = format!(
            "req -x509 {new_key} -keyout ca.key -out ca.pem -days 1 -subj /CN=tephra-test-ca \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
        );
        openssl(dir, &ca.split_whitespace().collect::<Vec<_>>());
        let leaf = |name: &str, extensions: &str| {
            std::fs::write(dir.join(format!("{name}.ext")), extensions).unwrap();
            let request = format!("req {new_key} -keyout {name}.key -out {name}.csr -subj /CN={name}");
            openssl(dir, &request.split_whitespace().collect::<Vec<_>>());
            let sign = format!(
                "x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {name}.pem -days 1 \
                 -extfile {name}.ext"
            );
            openssl(dir, &sign.split_whitespace().collect::<Vec<_>>());
            (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")))
        };
        let server = leaf("etcd", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
        let client = leaf("tephra-a", "extendedKeyUsage=clientAuth\n");
        Self { ca: dir.join("ca.pem"), server, client }
    }
}

/// A one-member etcd; with `pki`, clients speak TLS and must show a
/// certificate the CA signed. Its client URL.
fn etcd(name: &str, pki: Option<&Pki>) -> Option<(EtcdCluster, String)> {
    let tls = pki.map(|pki| EtcdTls { ca: pki.ca.clone(), cert: pki.server.0.clone(), key: pki.server.1.clone() });
    let cluster = EtcdCluster::start(name, 1, tls.as_ref())?;
    let endpoint = cluster.endpoints()[0].clone();
    Some((cluster, endpoint))
}

/// Connects once etcd answers.
async fn connected(config: EtcdConfig) -> Election {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Election::connect(config.clone()).await {
            Ok(election) if election.leader().await.is_ok() => return election,
            _ => {
                assert!(Instant::now() < deadline, "etcd did not come up");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
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
    let Some((_etcd, endpoint)) = etcd("plain", None) else { return };
    let election = connected(config(&endpoint)).await;
    assert_eq!(election.leader().await.unwrap(), None);
    let first = election.campaign(&value("a")).await.unwrap().expect("a free key is won");
    assert!(election.campaign(&value("b")).await.unwrap().is_none(), "a held key is not");
    let leader = election.leader().await.unwrap().unwrap();
    assert_eq!((leader.epoch, leader.value), (first.epoch, value("a")));
    // Kept alive well past its TTL.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(first.lease.leading(), "the lease is kept alive");
    assert_eq!(election.leader().await.unwrap().unwrap().epoch, first.epoch);
    // The signed height is recorded only while the epoch holds the key.
    assert_eq!(election.signed_height().await.unwrap(), 0);
    assert!(matches!(election.record_signed(first.epoch, 5).await.unwrap(), SignedRecord::Recorded));
    assert_eq!(election.signed_height().await.unwrap(), 5);
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
    match election.record_signed(first.epoch, 6).await.unwrap() {
        SignedRecord::Deposed(Some(leader)) => assert_eq!(leader.epoch, second.epoch),
        other => panic!("a deposed epoch recorded a signature: {other:?}"),
    }
    assert_eq!(election.signed_height().await.unwrap(), 5);
    election.resign(&second).await.unwrap();
    assert!(!second.lease.leading());
    assert_eq!(election.leader().await.unwrap(), None);
    // A leader whose process dies without resigning: its key goes with its lease.
    let third = election.campaign(&value("c")).await.unwrap().unwrap();
    drop(third);
    assert!(election.wait_vacant(Duration::from_secs(5)).await.unwrap(), "the key expires with the lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_a_client_certificate_and_refused_without() {
    let needs = [Need::command("openssl", "scripts/deps.sh installs it"), EtcdCluster::need()];
    if !require(&needs) {
        return;
    }
    let pki_dir = tephra_testkit::fresh_dir("ha-pki");
    let pki = Pki::make(&pki_dir);
    let Some((_etcd, endpoint)) = etcd("tls", Some(&pki)) else { return };
    assert!(endpoint.starts_with("https://"));
    let tls = EtcdConfig {
        ca_file: Some(pki.ca.clone()),
        cert_file: Some(pki.client.0.clone()),
        key_file: Some(pki.client.1.clone()),
        ..config(&endpoint)
    };
    let election = connected(tls.clone()).await;
    let leadership = election.campaign(&value("a")).await.unwrap().expect("a free key is won");
    assert_eq!(election.leader().await.unwrap().unwrap().epoch, leadership.epoch);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(leadership.lease.leading(), "keep-alives pass over TLS");

    // No client certificate: etcd refuses the request.
    let anonymous = EtcdConfig { cert_file: None, key_file: None, ..tls.clone() };
    let refused = match Election::connect(anonymous).await {
        Ok(election) => election.leader().await.map(|_| ()),
        Err(error) => Err(error),
    };
    let error = refused.expect_err("a client without a certificate was served");
    eprintln!("without a client certificate: {error}");
    // Plain HTTP to a TLS endpoint gets nothing either.
    let plain = EtcdConfig { ca_file: None, ..config(&endpoint.replace("https", "http")) };
    let refused = match Election::connect(plain).await {
        Ok(election) => election.leader().await.map(|_| ()),
        Err(error) => Err(error),
    };
    let error = refused.expect_err("plain HTTP was served");
    eprintln!("plain HTTP: {error}");
    election.resign(&leadership).await.unwrap();
    let _ = std::fs::remove_dir_all(&pki_dir);
}
