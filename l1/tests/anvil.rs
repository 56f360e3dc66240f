//! tephra-l1 against a real L1 node: anvil (Foundry's, from npm; `npm ci` at
//! the workspace root, which scripts/test.sh runs). contracts/DepositPortal
//! (OptimismPortal2's deposit path) takes deposits from an EOA, by plain ETH
//! transfer, from a contract (aliased) and as a creation, refuses two; the
//! follower reads them over JSON-RPC with `L1JsonRpc`; then anvil reorgs
//! the last blocks (`anvil_reorg`) and the follower must drop the old
//! blocks' deposits and take the new ones, none twice.

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, Signature, TxKind, U256, address, hex};
use secp256k1::{Message, SECP256K1, SecretKey};
use serde_json::{Value, json};
use tephra_exec::dev::DEV_PRIVATE_KEYS;
use tephra_l1::{Deposit, FollowerConfig, L1Event, L1Follower, L1JsonRpc, L1Rpc, L1Status, user_deposit_source_hash};
use tephra_testkit::{Need, abi::deposit_transaction_call, anvil::Anvil, require, rpc::quantity, workspace_root};
use tephra_types::{crypto::address_of, rollup::BlockId};

const CHAIN_ID: u64 = 31_337;
const ETHER: u128 = 1_000_000_000_000_000_000;
const RECIPIENT: Address = address!("000000000000000000000000000000000000b0b0");
/// AddressAliasHelper's offset.
const ALIAS_OFFSET: Address = address!("1111000000000000000000000000000000001111");
/// The gas limit OptimismPortal gives a deposit made by sending it ETH.
const RECEIVE_DEFAULT_GAS_LIMIT: u64 = 100_000;

struct Key {
    secret: SecretKey,
    address: Address,
}

impl Key {
    fn dev(index: usize) -> Self {
        let secret = SecretKey::from_byte_array(DEV_PRIVATE_KEYS[index].0).expect("a dev key");
        Self { address: address_of(&secret.public_key(SECP256K1)), secret }
    }

    /// An EIP-1559 transaction, signed and encoded for eth_sendRawTransaction.
    fn sign(&self, nonce: u64, to: Option<Address>, value: U256, input: Vec<u8>) -> String {
        let tx = TxEip1559 {
            chain_id: CHAIN_ID,
            nonce,
            gas_limit: 2_000_000,
            max_fee_per_gas: 100_000_000_000,
            max_priority_fee_per_gas: 1,
            to: to.map_or(TxKind::Create, TxKind::Call),
            value,
            input: input.into(),
            ..Default::default()
        };
        let digest = Message::from_digest(tx.signature_hash().0);
        let (recovery_id, compact) = SECP256K1.sign_ecdsa_recoverable(digest, &self.secret).serialize_compact();
        let signature = Signature::new(
            U256::from_be_slice(&compact[..32]),
            U256::from_be_slice(&compact[32..]),
            i32::from(recovery_id) != 0,
        );
        let envelope = TxEnvelope::from(tx.into_signed(signature));
        format!("0x{}", hex::encode(envelope.encoded_2718()))
    }
}

/// Init code that calls `target` with `call` and the creation's value, then
/// deploys nothing: the call comes from a contract (being created), not
/// from the transaction's origin, so the portal aliases it.
fn forwarding_init_code(target: Address, call: &[u8]) -> Vec<u8> {
    let length = u16::try_from(call.len()).expect("a short call").to_be_bytes();
    let mut code = vec![0x61, length[0], length[1], 0x61, 0, 0, 0x60, 0x00, 0x39]; // CODECOPY(0, call_at, length)
    code.extend_from_slice(&[0x60, 0x00, 0x60, 0x00, 0x61, length[0], length[1], 0x60, 0x00, 0x34]); // ret 0 0, args 0 length, CALLVALUE
    code.push(0x73); // PUSH20 target
    code.extend_from_slice(target.as_slice());
    code.extend_from_slice(&[0x5a, 0xf1]); // GAS, CALL
    let jump_at = code.len() + 1;
    code.extend_from_slice(&[0x60, 0x00, 0x57, 0x60, 0x00, 0x80, 0xfd]); // JUMPI(ok, success), else REVERT(0, 0)
    code[jump_at] = u8::try_from(code.len()).expect("short code");
    code.extend_from_slice(&[0x5b, 0x00]); // ok: JUMPDEST, STOP
    let call_at = u16::try_from(code.len()).expect("short code").to_be_bytes();
    code[4..6].copy_from_slice(&call_at);
    code.extend_from_slice(call);
    code
}

/// `address + 0x1111…1111` mod 2^160 (AddressAliasHelper.applyL1ToL2Alias).
fn alias(address: Address) -> Address {
    let sum = U256::from_be_slice(address.as_slice()) + U256::from_be_slice(ALIAS_OFFSET.as_slice());
    Address::from_slice(&sum.to_be_bytes::<32>()[12..])
}

/// anvil mining only when told (`evm_mine`), transactions in arrival order.
fn start_anvil() -> Anvil {
    Anvil::start(&["--no-mining", "--order", "fifo", "--hardfork", "osaka"])
}

/// What the test asks of its anvil.
trait L1Calls {
    fn rpc(&self, method: &str, params: Value) -> Value;
    fn send(&self, raw: &str) -> String;
    fn mine(&self);
    fn receipt(&self, tx: &str) -> Value;
    fn log_position(&self, tx: &str) -> (B256, u64);
}

impl L1Calls for Anvil {
    fn rpc(&self, method: &str, params: Value) -> Value {
        self.client.try_call(method, params).unwrap_or_else(|e| panic!("anvil {e}"))
    }

    /// Sends a signed transaction: its hash.
    fn send(&self, raw: &str) -> String {
        self.rpc("eth_sendRawTransaction", json!([raw])).as_str().expect("a hash").to_string()
    }

    fn mine(&self) {
        self.rpc("evm_mine", json!([]));
    }

    fn receipt(&self, tx: &str) -> Value {
        self.rpc("eth_getTransactionReceipt", json!([tx]))
    }

    /// The block hash and log index of the one log of a mined transaction.
    fn log_position(&self, tx: &str) -> (B256, u64) {
        let receipt = self.receipt(tx);
        assert_eq!(receipt["status"], "0x1", "{tx} reverted: {receipt}");
        let logs = receipt["logs"].as_array().expect("logs");
        assert_eq!(logs.len(), 1, "{tx}: {receipt}");
        (logs[0]["blockHash"].as_str().unwrap().parse().unwrap(), quantity(&logs[0]["logIndex"]))
    }
}

/// Polls until the follower's tip is block `number` (the follower does a
/// bounded amount per poll).
fn poll_to(follower: &mut L1Follower<L1JsonRpc>, number: u64, now_ms: &mut u64) -> Vec<L1Event> {
    let mut events = Vec::new();
    for _ in 0..20 {
        *now_ms += 100;
        events.extend(follower.poll(*now_ms).expect("anvil answers"));
        if follower.tip().map(|tip| tip.number) == Some(number) {
            return events;
        }
    }
    panic!("the follower did not reach block {number}: {:?}", follower.tip());
}

fn user_deposit(
    position: (B256, u64),
    from: Address,
    to: Option<Address>,
    mint: u128,
    value: u128,
    gas_limit: u64,
    data: &[u8],
) -> Deposit {
    Deposit {
        source_hash: user_deposit_source_hash(position.0, position.1),
        from,
        to,
        mint: U256::from(mint),
        value: U256::from(value),
        gas_limit,
        is_system_transaction: false,
        data: Bytes::copy_from_slice(data),
    }
}

#[test]
fn deposits_of_a_real_portal_are_followed_through_an_l1_reorg() {
    let anvil_binary = workspace_root().join("node_modules/.bin/anvil");
    if !require(&[Need::file(&anvil_binary, "npm ci at the workspace root (scripts/test.sh does)")]) {
        return;
    }
    let anvil = start_anvil();
    let keys: Vec<Key> = (0..DEV_PRIVATE_KEYS.len()).map(Key::dev).collect();

    // Block 1: the portal.
    let bin = std::fs::read_to_string(workspace_root().join("contracts/DepositPortal.bin")).expect("DepositPortal.bin");
    let deploy = anvil.send(&keys[0].sign(0, None, U256::ZERO, hex::decode(bin.trim()).expect("hex bytecode")));
    anvil.mine();
    let portal = keys[0].address.create(0);
    assert_eq!(anvil.receipt(&deploy)["contractAddress"], json!(portal.to_string().to_lowercase()));

    // Block 2: an EOA's deposit, a deposit by plain transfer, and two the
    // portal refuses: gas under 21,000 + 40 per data byte, a creation with a
    // target.
    let data = [0xc0, 0xff, 0xee];
    let eoa = anvil.send(&keys[0].sign(
        1,
        Some(portal),
        U256::from(ETHER),
        deposit_transaction_call(RECIPIENT, U256::from(7), 100_000, false, &data),
    ));
    let transfer = anvil.send(&keys[1].sign(0, Some(portal), U256::from(ETHER / 2), vec![]));
    let low_gas = deposit_transaction_call(RECIPIENT, U256::ZERO, 21_000 + 40 * 3 - 1, false, &[1, 2, 3]);
    let refused_gas = anvil.send(&keys[2].sign(0, Some(portal), U256::ZERO, low_gas));
    let refused_target = anvil.send(&keys[3].sign(
        0,
        Some(portal),
        U256::ZERO,
        deposit_transaction_call(RECIPIENT, U256::ZERO, 100_000, true, &[]),
    ));
    anvil.mine();
    for refused in [&refused_gas, &refused_target] {
        let receipt = anvil.receipt(refused);
        assert_eq!((&receipt["status"], &receipt["logs"]), (&json!("0x0"), &json!([])), "{receipt}");
    }

    // Block 3: a deposit from a contract (its constructor calls the portal)
    // and a creation; blocks 4 and 5 empty.
    let forwarded = deposit_transaction_call(RECIPIENT, U256::ZERO, 50_000, false, &[]);
    let from_contract = anvil.send(&keys[4].sign(0, None, U256::from(3), forwarding_init_code(portal, &forwarded)));
    let contract = keys[4].address.create(0);
    let init_code = [0x60, 0x00, 0x60, 0x00, 0xf3]; // deploys empty code
    let creation = anvil.send(&keys[5].sign(
        0,
        Some(portal),
        U256::ZERO,
        deposit_transaction_call(Address::ZERO, U256::ZERO, 200_000, true, &init_code),
    ));
    for _ in 3..=5 {
        anvil.mine();
    }

    let genesis_hash: B256 =
        anvil.rpc("eth_getBlockByNumber", json!(["0x0", false]))["hash"].as_str().unwrap().parse().unwrap();
    let config = FollowerConfig {
        anchor: BlockId { hash: genesis_hash, number: 0 },
        deposit_contract: portal,
        confirmation_depth: 0,
    };
    let mut now_ms = 0;
    let mut follower = L1Follower::new(L1JsonRpc::new(anvil.url.clone()).unwrap(), config, now_ms);
    let events = poll_to(&mut follower, 5, &mut now_ms);
    assert_eq!(events.len(), 5, "{events:?}");
    assert_eq!(follower.status(), &L1Status::Reachable { head: 5 });

    let block2 = follower.block(2).unwrap().hash;
    let expected2 = vec![
        user_deposit(anvil.log_position(&eoa), keys[0].address, Some(RECIPIENT), ETHER, 7, 100_000, &data),
        user_deposit(
            anvil.log_position(&transfer),
            keys[1].address,
            Some(keys[1].address),
            ETHER / 2,
            ETHER / 2,
            RECEIVE_DEFAULT_GAS_LIMIT,
            &[],
        ),
    ];
    assert_eq!(follower.deposits(block2).unwrap().deposits, expected2);
    assert_eq!(anvil.log_position(&eoa).0, block2);
    let block3 = follower.block(3).unwrap().hash;
    let expected3 = vec![
        user_deposit(anvil.log_position(&from_contract), alias(contract), Some(RECIPIENT), 3, 0, 50_000, &[]),
        user_deposit(anvil.log_position(&creation), keys[5].address, None, 0, 0, 200_000, &init_code),
    ];
    assert_eq!(follower.deposits(block3).unwrap().deposits, expected3);
    assert_ne!(alias(contract), contract);
    assert_eq!(follower.malformed_deposits(), 0);
    for n in [1, 4, 5] {
        assert_eq!(follower.deposits(follower.block(n).unwrap().hash).unwrap().deposits, vec![], "block {n}");
    }

    // anvil replaces blocks 3..=5 (depth 3), a new deposit first in the new
    // block 3.
    let dropped: Vec<(u64, B256)> = (3..=5).map(|n| (n, follower.block(n).unwrap().hash)).collect();
    let late_call = deposit_transaction_call(RECIPIENT, U256::ZERO, 100_000, false, &[0x01]);
    let late_raw = keys[6].sign(0, Some(portal), U256::from(2), late_call);
    anvil.rpc("anvil_reorg", json!([3, [[late_raw, 0]]]));
    assert_eq!(
        quantity(&anvil.rpc("eth_blockNumber", json!([]))),
        5,
        "anvil mines the reorged blocks back to the height"
    );
    now_ms += 100;
    assert_eq!(follower.poll(now_ms).unwrap(), vec![L1Event::Reorg { common_ancestor: 2, dropped: dropped.clone() }]);
    for (_, hash) in &dropped {
        assert_eq!(follower.deposits(*hash), None);
    }
    poll_to(&mut follower, 5, &mut now_ms);
    let new_block3 = follower.block(3).unwrap().hash;
    assert_ne!(new_block3, block3);
    let late_hash = format!("{}", alloy_primitives::keccak256(hex::decode(late_raw.trim_start_matches("0x")).unwrap()));
    let late = user_deposit(anvil.log_position(&late_hash), keys[6].address, Some(RECIPIENT), 2, 0, 100_000, &[0x01]);
    assert_eq!(follower.deposits(new_block3).unwrap().deposits, vec![late.clone()]);
    assert_eq!(follower.deposits(block2).unwrap().deposits, expected2, "below the reorg: untouched");

    // Every deposit on the chain now, once each.
    let mut all: Vec<Deposit> = Vec::new();
    for n in 1..=5 {
        all.extend(follower.deposits(follower.block(n).unwrap().hash).unwrap().deposits.clone());
    }
    assert_eq!(all, [expected2, vec![late]].concat());

    // A follower over anvil's WebSocket sees the same chain and deposits.
    let ws_url = anvil.url.replacen("http://", "ws://", 1);
    let ws_config = FollowerConfig { confirmation_depth: 0, ..follower.config().clone() };
    let mut over_ws = L1Follower::new(L1JsonRpc::new(ws_url).unwrap(), ws_config, now_ms);
    poll_to(&mut over_ws, 5, &mut now_ms);
    for n in 0..=5 {
        let (http, ws) = (follower.block(n).unwrap(), over_ws.block(n).unwrap());
        assert_eq!(ws, http, "block {n} over ws");
        assert_eq!(over_ws.deposits(ws.hash), follower.deposits(http.hash), "deposits of block {n} over ws");
    }

    // The same calls straight: an unknown hash and a future number are None.
    let rpc = follower.rpc();
    assert_eq!(rpc.head_number(), Ok(5));
    assert_eq!(rpc.block_by_hash(B256::repeat_byte(0x42)), Ok(None));
    assert_eq!(rpc.block_by_number(6), Ok(None));
    assert_eq!(rpc.block_by_hash(new_block3).unwrap().unwrap().number, 3);
}
