//! Signing latency per backend, and raw secp256k1 signing throughput on one
//! core (what a hot preconfirmation key can do): `cargo bench -p tephra-node --bench sign`.
//! SoftHSM2 is measured when its module is installed (scripts/test.sh does);
//! the YubiHSM's MockHsm refuses release builds, so the device figure is the
//! vendor's (73-125 ms), not measured here. (This bench lives in the node
//! crate because tephra-hsm's own benches would build its MockHsm
//! dev-dependency in release.)

#![allow(clippy::print_stdout, reason = "a benchmark reports its figures on stdout")]

use std::{
    path::Path,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use alloy_primitives::B256;
use tephra_hsm::{
    AuditedSigner, FileSigner, GuardedSigner, Payload, Pkcs11Config, Pkcs11Signer, SignGuard, Signer, SignerHealth,
    SigningPipeline,
};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

fn latency(name: &str, signer: &dyn Signer, rounds: u64) {
    let mut samples: Vec<Duration> = (1..=rounds)
        .map(|number| {
            let payload = Payload::SealedBlock {
                chain_id: 1,
                number,
                block_hash: B256::from(alloy_primitives::U256::from(number)),
                leader_epoch: 0,
            };
            let start = Instant::now();
            signer.sign(&payload).expect("signs");
            start.elapsed()
        })
        .collect();
    samples.sort();
    let at = |per_mille: usize| samples[(samples.len() - 1) * per_mille / 1000].as_secs_f64() * 1e3;
    println!("{name:<52} p50 {:>8.3} ms   p99 {:>8.3} ms", at(500), at(990));
}

/// A signer as slow as a YubiHSM 2 at its worst: 120 ms a signature.
struct Slow(FileSigner);

impl Signer for Slow {
    fn public_key(&self) -> secp256k1::PublicKey {
        self.0.public_key()
    }
    fn sign(&self, payload: &Payload<'_>) -> Result<tephra_hsm::Signature65, tephra_hsm::SignError> {
        std::thread::sleep(Duration::from_millis(120));
        self.0.sign(payload)
    }
}

/// Seals a block every 150 ms for 40 blocks through the signing pipeline
/// with a 120 ms signer, as the sequencer does, and reports how far the
/// signatures lag and whether sealing was ever held back.
fn signing_lag_with_a_slow_signer(dir: &Path) {
    let signer = Arc::new(GuardedSigner::new(
        Slow(FileSigner::from_bytes(&[8; 32]).unwrap()),
        SignGuard::open(&dir.join("slow-guard")).unwrap(),
    ));
    let mut pipeline =
        SigningPipeline::start(signer, 1, 2, Duration::from_secs(2), Duration::from_millis(100)).unwrap();
    let block_time = Duration::from_millis(150);
    let (mut lag_max, mut held_back) = (0, 0);
    let start = Instant::now();
    for number in 1..=40u64 {
        let due = start + block_time * u32::try_from(number).unwrap();
        while Instant::now() < due {
            pipeline.collect();
            std::thread::sleep(Duration::from_millis(1));
        }
        pipeline.collect();
        if pipeline.health() != SignerHealth::Ok {
            held_back += 1;
        }
        pipeline.submit(number, B256::from(alloy_primitives::U256::from(number)), 0).expect("room in the backlog");
        lag_max = lag_max.max(pipeline.unsigned());
    }
    println!(
        "{:<52} unsigned at most {lag_max} block(s) after a seal, sealing held back {held_back} time(s)",
        "150 ms blocks, 120 ms signer (40 blocks)"
    );
}

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    if let Ok(pin_file) = std::env::var("TEPHRA_BENCH_PIN_FILE") {
        // The child run: SOFTHSM2_CONF is set for this process.
        let signer = Pkcs11Signer::open(&Pkcs11Config {
            module: MODULE.into(),
            token_label: "bench".into(),
            pin_file: pin_file.into(),
            key_label: "block".into(),
        })
        .expect("the bench token");
        latency("SoftHSM2 over PKCS#11 (cryptoki)", &signer, 1_000);
        return;
    }
    let dir = tephra_testkit::fresh_dir("sign-bench");

    let key = FileSigner::from_bytes(&[5; 32]).unwrap();
    latency("file key (libsecp256k1), bare", &key, 2_000);
    let guarded = GuardedSigner::new(
        AuditedSigner::open(FileSigner::from_bytes(&[5; 32]).unwrap(), &dir.join("audit.log")).unwrap(),
        SignGuard::open(&dir.join("guard")).unwrap(),
    );
    latency("file key behind guard + audit log (2 fsyncs)", &guarded, 500);

    // Hot-key throughput: signatures per second on one core.
    let hot = Arc::new(FileSigner::from_bytes(&[6; 32]).unwrap());
    let n = 20_000u64;
    let start = Instant::now();
    for i in 0..n {
        let payload = Payload::SelfTest { challenge: B256::from(alloy_primitives::U256::from(i)) };
        std::hint::black_box(hot.sign(&payload).unwrap());
    }
    let per_second = n as f64 / start.elapsed().as_secs_f64();
    println!(
        "{:<52} {:>8.0} signatures/s ({:.1} us each)",
        "hot key (libsecp256k1), one core",
        per_second,
        1e6 / per_second
    );

    signing_lag_with_a_slow_signer(&dir);

    if Path::new(MODULE).exists() {
        // SoftHSM2 reads SOFTHSM2_CONF when loaded: measured in a child process.
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.join("softhsm2.conf");
        std::fs::write(&conf, format!("directories.tokendir = {}\n", tokens.display())).unwrap();
        let pin = dir.join("pin");
        std::fs::write(&pin, "1234").unwrap();
        let made = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", "bench", "--pin", "1234", "--so-pin", "5678"])
            .output()
            .is_ok_and(|o| o.status.success())
            && Command::new("pkcs11-tool")
                .env("SOFTHSM2_CONF", &conf)
                .args(["--module", MODULE, "--token-label", "bench", "--login", "--pin", "1234"])
                .args(["--keypairgen", "--key-type", "EC:secp256k1", "--label", "block"])
                .output()
                .is_ok_and(|o| o.status.success());
        if made {
            let status = Command::new(std::env::current_exe().unwrap())
                .arg("--bench")
                .env("SOFTHSM2_CONF", &conf)
                .env("TEPHRA_BENCH_PIN_FILE", &pin)
                .status()
                .unwrap();
            assert!(status.success());
        } else {
            println!("SoftHSM2: could not make a token (softhsm2-util, pkcs11-tool from opensc)");
        }
    } else {
        println!("SoftHSM2: {MODULE} missing, not measured");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
