//! The PKCS#11 signer against SoftHSM2, a real PKCS#11 module: a token and a
//! secp256k1 key are made with softhsm2-util and pkcs11-tool (apt: softhsm2,
//! opensc; scripts/test.sh installs them).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use alloy_primitives::B256;
use tephra_hsm::{Payload, Pkcs11Config, Pkcs11Signer, Signer, recover};
use tephra_testkit::Need;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const CHILD_ENV: &str = "TEPHRA_SOFTHSM_DIR";

fn run(command: &mut Command) {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// Makes a token with a secp256k1 key in `dir`; returns the SoftHSM2 config path.
fn make_token(dir: &Path) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(&conf, format!("directories.tokendir = {}\nobjectstore.backend = file\n", tokens.display()))
        .unwrap();
    run(Command::new("softhsm2-util").env("SOFTHSM2_CONF", &conf).args([
        "--init-token",
        "--free",
        "--label",
        "tephra",
        "--pin",
        "1234",
        "--so-pin",
        "5678",
    ]));
    run(Command::new("pkcs11-tool").env("SOFTHSM2_CONF", &conf).args([
        "--module",
        MODULE,
        "--token-label",
        "tephra",
        "--login",
        "--pin",
        "1234",
        "--keypairgen",
        "--key-type",
        "EC:secp256k1",
        "--label",
        "block",
    ]));
    std::fs::write(dir.join("pin"), "1234\n").unwrap();
    conf
}

#[test]
fn softhsm2_signs_sealed_blocks_with_low_s_recoverable_signatures() {
    let needs = [
        Need::file(MODULE, "scripts/deps.sh installs softhsm2"),
        Need::command("softhsm2-util", "scripts/deps.sh installs softhsm2"),
        Need::command("pkcs11-tool", "scripts/deps.sh installs opensc"),
    ];
    if !tephra_testkit::require(&needs) {
        return;
    }
    // The module reads SOFTHSM2_CONF when loaded: the signing half runs in a
    // child process started with it.
    let dir = tephra_testkit::fresh_dir("softhsm");
    let conf = make_token(&dir);
    tephra_testkit::child::run(
        "child_signs_with_the_softhsm2_key",
        &[("SOFTHSM2_CONF", conf.as_os_str()), (CHILD_ENV, dir.as_os_str())],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The signing half of the test above, in a process whose SOFTHSM2_CONF
/// names the token it made.
#[test]
#[ignore = "the child half of softhsm2_signs_sealed_blocks_with_low_s_recoverable_signatures, which runs it"]
fn child_signs_with_the_softhsm2_key() {
    let dir = PathBuf::from(tephra_testkit::child::arg(
        CHILD_ENV,
        "softhsm2_signs_sealed_blocks_with_low_s_recoverable_signatures",
    ));
    let signer = Pkcs11Signer::open(&Pkcs11Config {
        module: MODULE.into(),
        token_label: "tephra".into(),
        pin_file: dir.join("pin"),
        key_label: "block".into(),
    })
    .expect("the SoftHSM2 key opens");
    assert!(format!("{signer:?}").contains("REDACTED"));
    for n in 0..16u8 {
        let payload = Payload::SealedBlock {
            chain_id: 10,
            number: u64::from(n),
            block_hash: B256::repeat_byte(n),
            leader_epoch: 0,
        };
        let signature = signer.sign(&payload).unwrap();
        assert!(signature.0[32] < 0x80, "s is normalised low");
        assert_eq!(recover(&signature, payload.signing_hash()), Some(signer.address()));
    }
    // A key tephra generates on the token itself signs as well.
    let generated = Pkcs11Signer::generate(&Pkcs11Config {
        module: MODULE.into(),
        token_label: "tephra".into(),
        pin_file: dir.join("pin"),
        key_label: "generated".into(),
    })
    .expect("a key is generated on the token");
    assert_ne!(generated.address(), signer.address());
    let payload = Payload::SealedBlock { chain_id: 10, number: 1, block_hash: B256::repeat_byte(1), leader_epoch: 0 };
    let signature = generated.sign(&payload).unwrap();
    assert_eq!(recover(&signature, payload.signing_hash()), Some(generated.address()));
    // The key replaced behind the signer's back (deleted, and another
    // made under its label): the old handle fails, and the signer, which
    // logs in and finds its key again after a failure, refuses the
    // stranger rather than sign with it.
    let tool = |args: &[&str]| {
        run(Command::new("pkcs11-tool")
            .args(["--module", MODULE, "--token-label", "tephra", "--login", "--pin", "1234"])
            .args(args));
    };
    tool(&["--delete-object", "--type", "privkey", "--label", "block"]);
    tool(&["--delete-object", "--type", "pubkey", "--label", "block"]);
    tool(&["--keypairgen", "--key-type", "EC:secp256k1", "--label", "block"]);
    assert!(signer.sign(&payload).is_err(), "the deleted key's handle signs nothing");
    let refused = signer.sign(&payload).unwrap_err().to_string();
    assert!(refused.contains("no longer the key this signer opened"), "{refused}");
}
