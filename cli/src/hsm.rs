//! `tephra hsm ...`: the operator's tools for the block key.

use std::{io::Read, time::Instant};

use alloy_primitives::B256;
use tephra_hsm::{
    AuditedSigner, FileSigner, Payload, Pkcs11Config, Pkcs11Signer, Signer, YubiHsmConfig, YubiHsmSigner,
};
use tephra_node::{
    config::{Config, SignerKind},
    node::{self, DataDir},
};

/// Prints the block key's address.
pub fn pubkey(config: &Config) -> Result<String, String> {
    let data = DataDir(config.node.data_dir.clone());
    let key = node::load_key(config, &data).map_err(|e| e.to_string())?;
    Ok(format!(
        "block key address: {}\nblock key public key: 0x{}",
        key.address(),
        hex::encode(key.public_key().serialize_uncompressed())
    ))
}

/// Creates the block key where `[signer]` points: a key file, or a key pair
/// generated inside the PKCS#11 token or the YubiHSM.
pub fn keygen(config: &Config) -> Result<String, String> {
    let data = DataDir(config.node.data_dir.clone());
    let c = &config.signer;
    let address = match c.kind {
        SignerKind::File => {
            std::fs::create_dir_all(&data.0).map_err(|e| e.to_string())?;
            let path = data.0.join(&c.key_file);
            if path.exists() {
                return Err(format!("{} exists: refusing to replace a block key", path.display()));
            }
            FileSigner::load_or_create(&path).map_err(|e| e.to_string())?.0.address()
        }
        SignerKind::Pkcs11 => Pkcs11Signer::generate(&Pkcs11Config {
            module: c.pkcs11_module.clone(),
            token_label: c.pkcs11_token_label.clone(),
            pin_file: c.pkcs11_pin_file.clone(),
            key_label: c.pkcs11_key_label.clone(),
        })
        .map_err(|e| e.to_string())?
        .address(),
        SignerKind::Yubihsm => YubiHsmSigner::generate(&YubiHsmConfig {
            connector: node::yubihsm_connector(&c.yubihsm_connector).map_err(|e| e.to_string())?,
            auth_key_id: c.yubihsm_auth_key_id,
            password_file: c.yubihsm_password_file.clone(),
            key_id: c.yubihsm_key_id,
        })
        .map_err(|e| e.to_string())?
        .address(),
    };
    Ok(format!("generated block key: {address}"))
}

/// Signs a random self-test challenge (audited like every signature),
/// checks it recovers to the key, and reports the latency.
pub fn selftest(config: &Config) -> Result<String, String> {
    let data = DataDir(config.node.data_dir.clone());
    // The audit log is appended to: not while a node runs on this data dir.
    let _lock = node::lock_data_dir(&data).map_err(|e| e.to_string())?;
    let key = node::load_key(config, &data).map_err(|e| e.to_string())?;
    let signer = AuditedSigner::open(key, &data.0.join(&config.signer.audit_file)).map_err(|e| e.to_string())?;
    let mut challenge = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut challenge)).map_err(|e| e.to_string())?;
    let payload = Payload::SelfTest { challenge: B256::from(challenge) };
    let started = Instant::now();
    let signature = signer.sign(&payload).map_err(|e| e.to_string())?;
    let latency = started.elapsed();
    if tephra_hsm::recover(&signature, payload.signing_hash()) != Some(signer.address()) {
        return Err("self-test signature does not recover to the block key".into());
    }
    Ok(format!("self-test ok: key {} signed in {:.2} ms", signer.address(), latency.as_secs_f64() * 1e3))
}

/// Checks the signing audit log's hash chain and every signature in it.
pub fn audit_verify(config: &Config) -> Result<String, String> {
    let path = config.node.data_dir.join(&config.signer.audit_file);
    let (entries, last) = tephra_hsm::verify_audit_log(&path).map_err(|e| e.to_string())?;
    Ok(format!("audit log ok: {} signatures, chain head {last}", entries.len()))
}
