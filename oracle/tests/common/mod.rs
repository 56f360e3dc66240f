//! Shared by the integration tests: anvil (from the workspace's npm install) as the L1, dev
//! keys, deposit calls, and a stand-in L2 node serving blocks over the JSON-RPC methods the
//! oracle reads.
#![allow(dead_code)]

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Signature, TxKind, U256, address, hex, keccak256};
use k256::ecdsa::SigningKey;
use kona_oracle::rpc::{Rpc, parse_u64, quantity};
use op_alloy_consensus::OpBlock;
use serde_json::{Value, json};
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub const L1_CHAIN_ID: u64 = 31_337;
pub const ETHER: u128 = 1_000_000_000_000_000_000;
pub const RECIPIENT: Address = address!("000000000000000000000000000000000000b0b0");
/// Foundry's dev keys (anvil's prefunded accounts 0..5).
pub const KEYS: [&str; 5] = [
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
];

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct Key(pub SigningKey);

impl Key {
    pub fn new(index: usize) -> Self {
        Self(SigningKey::from_slice(&hex::decode(KEYS[index]).unwrap()).unwrap())
    }

    pub fn address(&self) -> Address {
        let point = self.0.verifying_key().to_encoded_point(false);
        Address::from_raw_public_key(&point.as_bytes()[1..])
    }

    /// A signature over a transaction's signature hash.
    pub fn sign_hash(&self, hash: B256) -> Signature {
        let (signature, recovery) = self.0.sign_prehash_recoverable(hash.as_slice()).unwrap();
        Signature::from_signature_and_parity(signature, recovery.is_y_odd())
    }

    pub fn sign(&self, nonce: u64, to: Option<Address>, value: U256, input: Vec<u8>) -> String {
        self.sign_for(L1_CHAIN_ID, nonce, to, value, input)
    }

    pub fn sign_for(&self, chain_id: u64, nonce: u64, to: Option<Address>, value: U256, input: Vec<u8>) -> String {
        let tx = TxEip1559 {
            chain_id,
            nonce,
            gas_limit: 2_000_000,
            max_fee_per_gas: 100_000_000_000,
            max_priority_fee_per_gas: 1,
            to: to.map_or(TxKind::Create, TxKind::Call),
            value,
            input: input.into(),
            ..Default::default()
        };
        let signature = self.sign_hash(tx.signature_hash());
        format!("0x{}", hex::encode(TxEnvelope::from(tx.into_signed(signature)).encoded_2718()))
    }
}

pub fn selector(signature: &str) -> [u8; 4] {
    keccak256(signature.as_bytes())[..4].try_into().unwrap()
}

/// `depositTransaction(address,uint256,uint64,bool,bytes)` call data.
pub fn deposit_call(to: Address, value: U256, gas_limit: u64, is_creation: bool, data: &[u8]) -> Vec<u8> {
    let mut call = selector("depositTransaction(address,uint256,uint64,bool,bytes)").to_vec();
    let mut to_word = [0u8; 32];
    to_word[12..].copy_from_slice(to.as_slice());
    call.extend_from_slice(&to_word);
    for word in
        [value, U256::from(gas_limit), U256::from(u8::from(is_creation)), U256::from(5 * 32), U256::from(data.len())]
    {
        call.extend_from_slice(&word.to_be_bytes::<32>());
    }
    call.extend_from_slice(data);
    call.resize(4 + (call.len() - 4).div_ceil(32) * 32, 0);
    call
}

/// Init code that calls `target` with `call` and the creation's value, then deploys nothing:
/// the portal sees a contract (being created) as the caller and aliases it.
pub fn forwarding_init_code(target: Address, call: &[u8]) -> Vec<u8> {
    let length = u16::try_from(call.len()).unwrap().to_be_bytes();
    let mut code = vec![0x61, length[0], length[1], 0x61, 0, 0, 0x60, 0x00, 0x39]; // CODECOPY(0, call_at, length)
    code.extend_from_slice(&[0x60, 0x00, 0x60, 0x00, 0x61, length[0], length[1], 0x60, 0x00, 0x34]); // ret, args, CALLVALUE
    code.push(0x73); // PUSH20 target
    code.extend_from_slice(target.as_slice());
    code.extend_from_slice(&[0x5a, 0xf1]); // GAS, CALL
    let jump_at = code.len() + 1;
    code.extend_from_slice(&[0x60, 0x00, 0x57, 0x60, 0x00, 0x80, 0xfd]); // JUMPI(ok), else REVERT(0, 0)
    code[jump_at] = u8::try_from(code.len()).unwrap();
    code.extend_from_slice(&[0x5b, 0x00]); // ok: JUMPDEST, STOP
    let call_at = u16::try_from(code.len()).unwrap().to_be_bytes();
    code[4..6].copy_from_slice(&call_at);
    code.extend_from_slice(call);
    code
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Anvil {
    child: Child,
    pub rpc: Rpc,
    pub url: String,
}

impl Anvil {
    pub fn start() -> Self {
        let binary = manifest_dir().join("../node_modules/.bin/anvil");
        assert!(
            binary.exists(),
            "anvil is missing at {}: run `npm ci` at the tephra workspace root (scripts/test.sh does); this test needs a real L1",
            binary.display()
        );
        let port = free_port();
        let child = Command::new(&binary)
            .args(["--no-mining", "--order", "fifo", "--hardfork", "osaka", "--port", &port.to_string(), "--silent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("anvil starts");
        let url = format!("http://127.0.0.1:{port}");
        let anvil = Self { child, rpc: Rpc::new(&url).unwrap(), url };
        let start = Instant::now();
        while anvil.rpc.call("eth_chainId", json!([])).is_err() {
            assert!(start.elapsed() < Duration::from_secs(60), "anvil does not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
        anvil
    }

    pub fn call(&self, method: &str, params: Value) -> Value {
        self.rpc.call(method, params).unwrap_or_else(|e| panic!("anvil {method}: {e}"))
    }

    pub fn send(&self, raw: &str) -> String {
        self.call("eth_sendRawTransaction", json!([raw])).as_str().unwrap().to_string()
    }

    /// Mines one block at `timestamp`: its number and hash.
    pub fn mine_at(&self, timestamp: u64) -> (u64, B256) {
        self.call("evm_setNextBlockTimestamp", json!([timestamp]));
        self.call("evm_mine", json!([]));
        let block = self.call("eth_getBlockByNumber", json!(["latest", false]));
        assert_eq!(parse_u64(&block["timestamp"]), Some(timestamp));
        (parse_u64(&block["number"]).unwrap(), block["hash"].as_str().unwrap().parse().unwrap())
    }

    pub fn receipt_ok(&self, tx: &str) {
        let receipt = self.call("eth_getTransactionReceipt", json!([tx]));
        assert_eq!(receipt["status"], "0x1", "{tx}: {receipt}");
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.wait();
    }
}

/// A stand-in L2 node serving blocks over the JSON-RPC methods the oracle reads.
#[derive(Clone, Default)]
pub struct L2Node {
    pub blocks: Arc<Mutex<Vec<(OpBlock, B256)>>>, // block, output root
}

impl L2Node {
    pub fn answer(&self, request: &Value) -> Value {
        let blocks = self.blocks.lock().unwrap();
        let number = parse_u64(&request["params"][0]).unwrap_or(u64::MAX) as usize;
        let result = match request["method"].as_str().unwrap_or("") {
            "eth_getBlockByNumber" => blocks.get(number).map_or(Value::Null, |(b, _)| {
                json!({"number": quantity(b.header.number), "hash": b.header.hash_slow()})
            }),
            "debug_getRawBlock" => match blocks.get(number) {
                Some((b, _)) => json!(format!("0x{}", hex::encode(alloy_rlp::encode(b)))),
                None => return json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32000, "message": "no block"}}),
            },
            "optimism_outputAtBlock" => blocks.get(number).map_or(Value::Null, |(b, root)| {
                json!({"version": B256::ZERO, "outputRoot": root, "blockRef": {"hash": b.header.hash_slow()}})
            }),
            _ => return json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": "method not found"}}),
        };
        json!({"jsonrpc": "2.0", "id": request["id"], "result": result})
    }

    /// Serves on a free port: the URL.
    pub fn serve(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let node = self.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let answer = node.answer(&request).to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        url
    }
}
