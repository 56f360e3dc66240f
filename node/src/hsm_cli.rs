//! `tephra hsm ...` and `tephra verify-block`: the operator's tools for the
//! block key.

use std::{io::Read, time::Instant};

use alloy_consensus::Header;
use alloy_primitives::{Address, B256};
use serde_json::{Value, json};
use tephra_hsm::{
    AuditedSigner, FileSigner, Payload, Pkcs11Config, Pkcs11Signer, Signature65, Signer, YubiHsmConfig, YubiHsmSigner,
};

use crate::{
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
            connector: node::yubihsm_connector(&c.yubihsm_connector)?,
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

fn rpc(agent: &ureq::Agent, url: &str, method: &str, params: Value) -> Result<Value, String> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut response = agent.post(url).send_json(&body).map_err(|e| format!("{url}: {e}"))?;
    let reply: Value = response.body_mut().read_json().map_err(|e| e.to_string())?;
    match reply.get("error") {
        Some(error) => Err(format!("{method}: {error}")),
        None => Ok(reply["result"].clone()),
    }
}

fn signature_of(value: &Value) -> Result<Signature65, String> {
    let bytes =
        hex::decode(value.as_str().ok_or("a signature string")?.trim_start_matches("0x")).map_err(|e| e.to_string())?;
    Ok(Signature65(bytes.try_into().map_err(|_| "a signature is 65 bytes")?))
}

fn quantity(value: &Value) -> Result<u64, String> {
    let text = value.as_str().ok_or("a quantity")?;
    u64::from_str_radix(text.trim_start_matches("0x"), 16).map_err(|e| format!("{text}: {e}"))
}

/// Reads a preconfirmation as `tephra_getPreconfirmation` serves it.
pub fn parse_preconfirmation(json: &Value) -> Result<tephra_hsm::Preconfirmation, String> {
    let de = |v: &Value| serde_json::from_value::<B256>(v.clone()).map_err(|e| e.to_string());
    let (batch, cert) = (&json["batch"], &json["certificate"]);
    Ok(tephra_hsm::Preconfirmation {
        tx_hash: de(&json["transactionHash"])?,
        index: u32::try_from(quantity(&json["transactionIndex"])?).map_err(|e| e.to_string())?,
        batch: tephra_hsm::SignedBatch {
            block_number: quantity(&json["blockNumber"])?,
            first_index: u32::try_from(quantity(&batch["firstIndex"])?).map_err(|e| e.to_string())?,
            count: u32::try_from(quantity(&batch["count"])?).map_err(|e| e.to_string())?,
            root: de(&batch["root"])?,
            signature: signature_of(&batch["signature"])?,
        },
        proof: json["proof"].as_array().ok_or("a proof list")?.iter().map(de).collect::<Result<_, _>>()?,
        certificate: tephra_hsm::Certificate {
            chain_id: quantity(&cert["chainId"])?,
            epoch: quantity(&cert["epoch"])?,
            hot_key: serde_json::from_value(cert["hotKey"].clone()).map_err(|e| e.to_string())?,
            valid_from_block: quantity(&cert["validFromBlock"])?,
            valid_until_block: quantity(&cert["validUntilBlock"])?,
            signature: signature_of(&cert["signature"])?,
        },
    })
}

/// Fetches a transaction's preconfirmation and checks it back to the block key.
pub fn verify_preconf(url: &str, tx: B256, signer: Option<Address>) -> Result<String, String> {
    let agent = ureq::Agent::new_with_defaults();
    let expected = match signer {
        Some(address) => address,
        None => {
            serde_json::from_value(rpc(&agent, url, "tephra_blockSigner", json!([]))?).map_err(|e| e.to_string())?
        }
    };
    let json = rpc(&agent, url, "tephra_getPreconfirmation", json!([tx]))?;
    if json.is_null() {
        return Err(format!("no signed preconfirmation for {tx}"));
    }
    let preconf = parse_preconfirmation(&json)?;
    tephra_hsm::verify_preconfirmation(&preconf, expected).map_err(|e| e.to_string())?;
    Ok(format!(
        "preconfirmation of {tx} verified: block {} index {}, hot key {} certified by {expected} for epoch {}",
        preconf.batch.block_number, preconf.index, preconf.certificate.hot_key, preconf.certificate.epoch
    ))
}

/// Fetches a block over JSON-RPC, rebuilds its header from the served
/// fields, and checks its hash and its signature by the block key.
pub fn verify_block(url: &str, block: &str, signer: Option<Address>) -> Result<String, String> {
    let agent = ureq::Agent::new_with_defaults();
    let expected = match signer {
        Some(address) => address,
        None => {
            serde_json::from_value(rpc(&agent, url, "tephra_blockSigner", json!([]))?).map_err(|e| e.to_string())?
        }
    };
    let json = rpc(&agent, url, "eth_getBlockByNumber", json!([block, false]))?;
    if json.is_null() {
        return Err(format!("no block {block}"));
    }
    let header: Header = serde_json::from_value(json.clone()).map_err(|e| format!("header fields: {e}"))?;
    let hash: B256 = serde_json::from_value(json["hash"].clone()).map_err(|e| e.to_string())?;
    if header.hash_slow() != hash {
        return Err(format!("the served fields hash to {}, not to the served hash {hash}", header.hash_slow()));
    }
    let signature = json["signature"].as_str().ok_or("the block is not signed yet")?;
    let signature: [u8; 65] = hex::decode(signature.trim_start_matches("0x"))
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("a signature is 65 bytes")?;
    let chain_id: u64 = u64::from_str_radix(
        rpc(&agent, url, "eth_chainId", json!([]))?.as_str().unwrap_or("0x0").trim_start_matches("0x"),
        16,
    )
    .map_err(|e| e.to_string())?;
    let payload = Payload::SealedBlock { chain_id, number: header.number, block_hash: hash, leader_epoch: 0 };
    match tephra_hsm::recover(&Signature65(signature), payload.signing_hash()) {
        Some(address) if address == expected => {
            Ok(format!("block {} {hash}: hash and signature by {expected} verified", header.number))
        }
        other => Err(format!("signature recovers to {other:?}, not to the block key {expected}")),
    }
}
