//! `tephra hsm ...`: the operator's tools for the block key and, with
//! `--key batcher`, an OP Stack chain's batcher key, or with `--key
//! validator`, the Hyperlane validator key.

use std::{io::Read, time::Instant};

use alloy_primitives::B256;
use tephra_hsm::{
    AuditedSigner, FileSigner, Payload, Pkcs11Config, Pkcs11Signer, Signer, YubiHsmConfig, YubiHsmSigner,
};
use tephra_node::{
    config::{Config, KeyConfig, SignerKind},
    node::{self, DataDir},
};

/// Which key a command works with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The block key, `[signer]`.
    Block,
    /// The batcher key, `[batcher.key]`: it signs and pays for the L1 batcher transactions.
    Batcher,
    /// The Hyperlane validator key, `[interop.key]`: it signs checkpoints.
    Validator,
}

impl Role {
    fn key(self, config: &Config) -> KeyConfig {
        match self {
            Role::Block => config.signer.key(),
            Role::Batcher => config.batcher.key.clone(),
            Role::Validator => config.interop.key.clone(),
        }
    }

    fn audit_file(self, config: &Config) -> std::path::PathBuf {
        config.node.data_dir.join(match self {
            Role::Block => &config.signer.audit_file,
            Role::Batcher => &config.batcher.audit_file,
            Role::Validator => &config.interop.audit_file,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Role::Block => "block",
            Role::Batcher => "batcher",
            Role::Validator => "Hyperlane validator",
        }
    }
}

/// Prints the key's address.
pub fn pubkey(config: &Config, role: Role) -> Result<String, String> {
    let data = DataDir(config.node.data_dir.clone());
    let key = node::open_key(&role.key(config), &data, role.name()).map_err(|e| e.to_string())?;
    Ok(format!(
        "{role} key address: {}\n{role} key public key: 0x{}",
        key.address(),
        hex::encode(key.public_key().serialize_uncompressed()),
        role = role.name(),
    ))
}

/// Creates the key where `[signer]` (or `[batcher.key]`) points: a key
/// file, or a key pair generated inside the PKCS#11 token or the YubiHSM.
pub fn keygen(config: &Config, role: Role) -> Result<String, String> {
    let data = DataDir(config.node.data_dir.clone());
    let c = &role.key(config);
    let address = match c.kind {
        SignerKind::File => {
            std::fs::create_dir_all(&data.0).map_err(|e| e.to_string())?;
            let path = data.0.join(&c.key_file);
            if path.exists() {
                return Err(format!("{} exists: refusing to replace a {} key", path.display(), role.name()));
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
    Ok(format!("generated {} key: {address}", role.name()))
}

/// Signs a random self-test challenge (audited like every signature),
/// checks it recovers to the key, and reports the latency.
pub fn selftest(config: &Config, role: Role) -> Result<String, String> {
    let data = DataDir(config.node.data_dir.clone());
    // The audit log is appended to: not while a node runs on this data dir.
    let _lock = node::lock_data_dir(&data).map_err(|e| e.to_string())?;
    let key = node::open_key(&role.key(config), &data, role.name()).map_err(|e| e.to_string())?;
    let signer = AuditedSigner::open(key, &role.audit_file(config)).map_err(|e| e.to_string())?;
    let mut challenge = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut challenge)).map_err(|e| e.to_string())?;
    let payload = Payload::SelfTest { challenge: B256::from(challenge) };
    let started = Instant::now();
    let signature = signer.sign(&payload).map_err(|e| e.to_string())?;
    let latency = started.elapsed();
    if tephra_hsm::recover(&signature, payload.signing_hash()) != Some(signer.address()) {
        return Err(format!("self-test signature does not recover to the {} key", role.name()));
    }
    Ok(format!("self-test ok: key {} signed in {:.2} ms", signer.address(), latency.as_secs_f64() * 1e3))
}

/// Checks the signing audit log's hash chain and every signature in it.
pub fn audit_verify(config: &Config, role: Role) -> Result<String, String> {
    let path = role.audit_file(config);
    let (entries, last) = tephra_hsm::verify_audit_log(&path).map_err(|e| e.to_string())?;
    Ok(format!("audit log ok: {} signatures, chain head {last}", entries.len()))
}
