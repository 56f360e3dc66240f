//! `tephra verify-block` and `tephra verify-preconf`: a block or a
//! preconfirmation fetched over JSON-RPC and checked back to the block key
//! (its address as `--signer` gives it, or as the node names it).

use alloy_consensus::Header;
use alloy_primitives::{Address, B256};
use serde_json::{Value, json};
use tephra_hsm::{Payload, Signature65};

/// One JSON-RPC call: its result, or the error named with the method.
pub(crate) fn rpc(agent: &ureq::Agent, url: &str, method: &str, params: Value) -> Result<Value, String> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut response = agent.post(url).send_json(&body).map_err(|e| format!("{url}: {e}"))?;
    let reply: Value = response.body_mut().read_json().map_err(|e| e.to_string())?;
    match reply.get("error") {
        Some(error) => Err(format!("{method}: {error}")),
        None => Ok(reply["result"].clone()),
    }
}

/// The block key's address: `--signer`'s, or the one the node names.
fn block_key(agent: &ureq::Agent, url: &str, signer: Option<Address>) -> Result<Address, String> {
    match signer {
        Some(address) => Ok(address),
        None => serde_json::from_value(rpc(agent, url, "tephra_blockSigner", json!([]))?).map_err(|e| e.to_string()),
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
    let expected = block_key(&agent, url, signer)?;
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
    let block = &block_parameter(block);
    let agent = ureq::Agent::new_with_defaults();
    let expected = block_key(&agent, url, signer)?;
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

/// A block number as JSON-RPC takes it: decimal becomes 0x-hex; a tag (or
/// 0x-hex already) passes as it is.
fn block_parameter(block: &str) -> String {
    match block.parse::<u64>() {
        Ok(number) => format!("{number:#x}"),
        Err(_) => block.to_string(),
    }
}
