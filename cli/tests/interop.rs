//! Hyperlane interop with the real contracts (contracts/hyperlane, the
//! pinned npm release): `tephra interop deploy` on anvil and on tephra, a
//! message dispatched on one and processed on the other, the origin's
//! MerkleTreeHook and the destination's MessageIdMultisigIsm being the
//! judges of tephra's tree, checkpoints and metadata.

mod common;
mod op;

use std::{path::Path, process::Command, time::Duration};

use alloy_primitives::{Address, B256, Bytes, Log};
use alloy_sol_types::SolCall;
use common::TephraNode;
use tephra_exec::dev::{DEV_PRIVATE_KEYS, DevKey};
use tephra_hsm::FileSigner;
use tephra_interop::{
    ChainRpc, CheckpointWithId, Deployment, EthSignature, HyperlaneMessage, IncrementalTree, SendError,
    SignedCheckpoint, Transactor,
    checkpoint::Checkpoint,
    contracts::{
        Contract, IMailbox, IMerkleTreeHook, IMultisigIsm, IStaticMessageIdMultisigIsmFactory, ITestRecipient,
    },
    events, message_id_multisig_metadata,
};
use tephra_l1::{L1BatcherRpc, L1JsonRpc};
use tephra_testkit::{anvil::Anvil, fresh_dir};

/// The dev key that deploys (and owns) the contracts on both chains.
const DEPLOYER: usize = 0;
/// The dev key that dispatches and the one that relays.
const SENDER: usize = 1;
const RELAYER: usize = 2;
/// The validators' dev keys.
const VALIDATORS: [usize; 2] = [5, 6];
const DOMAIN_A: u32 = 1000;
const DOMAIN_B: u32 = 2000;

fn validator_addresses() -> Vec<Address> {
    VALIDATORS.iter().map(|i| DevKey::dev(*i).address()).collect()
}

/// `tephra interop deploy` on `rpc` for `domain`, 2-of-2.
fn deploy(dir: &Path, rpc: &str, domain: u32) -> Deployment {
    let key_file = dir.join("deployer.key");
    std::fs::write(&key_file, DEV_PRIVATE_KEYS[DEPLOYER].to_string()).unwrap();
    let out = dir.join(format!("deployment-{domain}.json"));
    let validators: Vec<String> = validator_addresses().iter().map(ToString::to_string).collect();
    let output = Command::new(env!("CARGO_BIN_EXE_tephra"))
        .args(["interop", "deploy", "--rpc", rpc, "--domain", &domain.to_string(), "--threshold", "2"])
        .args(["--validators", &validators.join(",")])
        .arg("--key-file")
        .arg(&key_file)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("tephra interop deploy runs");
    assert!(output.status.success(), "deploy on {rpc}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).expect("the deployment's JSON")
}

/// A transactor of dev key `key` on `chain`.
fn transactor<'a>(chain: &'a L1JsonRpc, signer: &'a FileSigner) -> Transactor<'a> {
    Transactor {
        chain,
        signer,
        chain_id: chain.chain_id().unwrap(),
        gas_max: 5_000_000,
        receipt_timeout: Duration::from_secs(30),
    }
}

/// `Mailbox.dispatch` on `chain` by `sender`: the message its Dispatch log
/// holds, and the receipt.
fn dispatch(
    chain: &L1JsonRpc,
    sender: &FileSigner,
    mailbox: Address,
    (destination, recipient): (u32, B256),
    body: &[u8],
) -> (HyperlaneMessage, tephra_interop::Receipt) {
    let call = IMailbox::dispatchCall {
        destinationDomain: destination,
        recipientAddress: recipient,
        messageBody: Bytes::copy_from_slice(body),
    };
    let receipt = transactor(chain, sender).send(Some(mailbox), call.abi_encode().into()).unwrap();
    let message = receipt.logs.iter().map(events::as_log).find_map(|log| events::dispatched(&log, mailbox));
    (message.expect("a Dispatch log").unwrap(), receipt)
}

fn key(index: usize) -> FileSigner {
    FileSigner::from_bytes(&DEV_PRIVATE_KEYS[index].0).unwrap()
}

fn view<C: SolCall>(chain: &L1JsonRpc, to: Address, call: C) -> C::Return {
    tephra_interop::chain::view(chain, to, &call).unwrap()
}

/// Each validator's signature over `checkpoint`, as its checkpoint file holds it.
fn signed_by(checkpoint: &CheckpointWithId, validators: &[usize]) -> Vec<SignedCheckpoint> {
    validators
        .iter()
        .map(|i| {
            let signature = DevKey::dev(*i).sign_hash(checkpoint.digest());
            let mut bytes = [0u8; 65];
            bytes[..32].copy_from_slice(&signature.r().to_be_bytes::<32>());
            bytes[32..64].copy_from_slice(&signature.s().to_be_bytes::<32>());
            SignedCheckpoint {
                value: *checkpoint,
                signature: EthSignature::from_recoverable(&bytes[..64].try_into().unwrap(), u8::from(signature.v())),
            }
        })
        .collect()
}

#[test]
fn contracts_deployed_by_tephra_carry_a_message_from_anvil_to_tephra_checked_by_the_multisig_ism() {
    let dir = fresh_dir("interop-deploy");
    let anvil = Anvil::start(&[]);
    let node = TephraNode::start("interop-deploy", "");
    let a = deploy(&dir, &anvil.url, DOMAIN_A);
    let b = deploy(&dir, &node.rpc_url, DOMAIN_B);
    let (chain_a, chain_b) =
        (L1JsonRpc::new(anvil.url.clone()).unwrap(), L1JsonRpc::new(node.rpc_url.clone()).unwrap());

    // Each chain's Mailbox knows its domain; each ISM holds the validators
    // in ascending order, 2-of-2.
    let mut sorted = validator_addresses();
    sorted.sort();
    for (chain, deployment, domain) in [(&chain_a, &a, DOMAIN_A), (&chain_b, &b, DOMAIN_B)] {
        assert_eq!(view(chain, deployment.mailbox, IMailbox::localDomainCall {}), domain);
        let set = view(chain, deployment.ism, IMultisigIsm::validatorsAndThresholdCall { _message: Bytes::new() });
        assert_eq!((set.validators, set.threshold), (sorted.clone(), 2));
        assert_eq!(deployment.validators, sorted);
    }

    // Dispatch on A to B's test recipient.
    let sender = key(SENDER);
    let to_b = (DOMAIN_B, b.test_recipient.into_word());
    let (message, receipt) = dispatch(&chain_a, &sender, a.mailbox, to_b, b"hello from anvil");
    let logs: Vec<Log> = receipt.logs.iter().map(events::as_log).collect();
    let (id, index) = logs.iter().find_map(|log| events::inserted_into_tree(log, a.merkle_tree_hook)).unwrap().unwrap();
    assert_eq!((message.id(), index, message.origin, message.destination), (id, 0, DOMAIN_A, DOMAIN_B));
    assert_eq!(message.sender, sender_word(&sender));

    // tephra's tree is the hook's.
    let mut tree = IncrementalTree::default();
    tree.insert(id).unwrap();
    assert_eq!(tree.root(), view(&chain_a, a.merkle_tree_hook, IMerkleTreeHook::rootCall {}));
    assert_eq!(view(&chain_a, a.merkle_tree_hook, IMerkleTreeHook::countCall {}), 1);

    let checkpoint = CheckpointWithId {
        checkpoint: Checkpoint {
            merkle_tree_hook: a.merkle_tree_hook.into_word(),
            origin: DOMAIN_A,
            root: tree.root(),
            index,
        },
        message_id: id,
    };
    let relayer = key(RELAYER);
    let process = |metadata: Vec<u8>| {
        let call = IMailbox::processCall { _metadata: metadata.into(), _message: message.encode().into() };
        transactor(&chain_b, &relayer).send(Some(b.mailbox), call.abi_encode().into())
    };

    // One validator short, or a stranger's key: the ISM refuses, and says so.
    let one = signed_by(&checkpoint, &VALIDATORS[..1]);
    assert!(message_id_multisig_metadata(&checkpoint, &one, &sorted, 2).is_err());
    let stranger = signed_by(&checkpoint, &[VALIDATORS[0], 7]);
    let forged = forged_metadata(&checkpoint, &stranger);
    match process(forged) {
        Err(SendError::WouldRevert(reason)) => assert!(reason.contains("!threshold"), "{reason}"),
        other => panic!("a stranger's signature must be refused by the ISM: {other:?}"),
    }

    // Both validators: delivered, handled by the recipient.
    let both = signed_by(&checkpoint, &VALIDATORS);
    let metadata = message_id_multisig_metadata(&checkpoint, &both, &sorted, 2).unwrap();
    process(metadata.clone()).expect("Mailbox.process on tephra");
    assert!(view(&chain_b, b.mailbox, IMailbox::deliveredCall { _id: id }));
    assert_eq!(
        view(&chain_b, b.test_recipient, ITestRecipient::lastDataCall {}),
        Bytes::from_static(b"hello from anvil")
    );
    match process(metadata) {
        Err(SendError::WouldRevert(reason)) => assert!(reason.contains("already delivered"), "{reason}"),
        other => panic!("a second delivery must be refused: {other:?}"),
    }
}

fn sender_word(signer: &FileSigner) -> B256 {
    tephra_hsm::Signer::address(signer).into_word()
}

/// Metadata in the ISM's layout from `signed`, in the given order, whoever signed.
fn forged_metadata(checkpoint: &CheckpointWithId, signed: &[SignedCheckpoint]) -> Vec<u8> {
    let c = &checkpoint.checkpoint;
    let mut metadata = [c.merkle_tree_hook.as_slice(), c.root.as_slice(), &c.index.to_be_bytes()].concat();
    for s in signed {
        metadata.extend_from_slice(&s.signature.0);
    }
    metadata
}

/// `[interop]` for a validator of `deployment` with dev key `key`.
fn validator_config(dir: &Path, deployment: &Deployment, key: usize, attest: &str) -> String {
    let key_file = dir.join(format!("validator-{key}.key"));
    std::fs::write(&key_file, DEV_PRIVATE_KEYS[key].to_string()).unwrap();
    format!(
        "\n[interop]\nvalidator = true\ndomain = {}\nmailbox = \"{}\"\nmerkle_tree_hook = \"{}\"\nstart_block = {}\n\
         attest = \"{attest}\"\n[interop.key]\nkey_file = {:?}\n",
        deployment.domain,
        deployment.mailbox,
        deployment.merkle_tree_hook,
        deployment.deployed_block,
        key_file.display().to_string(),
    )
}

/// Restarts `node` as the validator of `deployment` with dev key `key`.
fn make_validator(node: &mut TephraNode, dir: &Path, deployment: &Deployment, key: usize) {
    node.stop();
    let mut config = std::fs::read_to_string(&node.config).unwrap();
    config.push_str(&validator_config(dir, deployment, key, "preconfirmed"));
    std::fs::write(&node.config, config).unwrap();
    node.spawn();
}

/// `tephra interop validate` of domain A's chain at `rpc` with the second
/// validator's key: the process and its directory.
fn start_second_validator(dir: &Path, rpc: &str) -> (Process, std::path::PathBuf) {
    let key_file = dir.join("validator-second.key");
    std::fs::write(&key_file, DEV_PRIVATE_KEYS[VALIDATORS[1]].to_string()).unwrap();
    let deployment = dir.join(format!("deployment-{DOMAIN_A}.json"));
    let second_dir = dir.join("validator-second");
    let process = Process::start(
        &["interop", "validate", "--rpc", rpc, "--poll-interval-ms", "100"]
            .into_iter()
            .chain(["--deployment", deployment.to_str().unwrap(), "--key-file", key_file.to_str().unwrap()])
            .chain(["--dir", second_dir.to_str().unwrap()])
            .collect::<Vec<_>>(),
        dir.join("validator-second.log"),
    );
    (process, second_dir)
}

/// The validator's checkpoint `index` over JSON-RPC, once it is there,
/// attested as `attest` says.
fn checkpoint_of(node: &TephraNode, index: u32, attest: &str) -> SignedCheckpoint {
    let mut answer = Err(serde_json::Value::Null);
    tephra_testkit::wait_until(&format!("checkpoint {index}"), Duration::from_secs(10), || {
        answer = node.call("tephra_getCheckpoint", serde_json::json!([index]));
        answer.is_ok()
    });
    let answer = answer.unwrap();
    assert_eq!(answer["attested"], attest);
    SignedCheckpoint::from_json(&answer["checkpoint"].to_string()).unwrap()
}

#[test]
fn tephras_validator_signs_each_message_as_it_is_preconfirmed_and_its_tree_is_the_hooks() {
    let dir = fresh_dir("interop-validator");
    let mut node = TephraNode::start("interop-validator", "");
    let a = deploy(&dir, &node.rpc_url, DOMAIN_A);
    make_validator(&mut node, &dir, &a, VALIDATORS[0]);
    let chain = L1JsonRpc::new(node.rpc_url.clone()).unwrap();
    let validator = DevKey::dev(VALIDATORS[0]).address();

    // Before any message: no checkpoint, and asking beyond the tree is an error.
    assert_eq!(node.rpc("tephra_latestCheckpoint", serde_json::json!([])), serde_json::Value::Null);
    let beyond = node.call("tephra_getCheckpoint", serde_json::json!([0])).unwrap_err();
    assert!(beyond["message"].as_str().unwrap().contains("beyond the tree"), "{beyond}");

    let sender = key(SENDER);
    for i in 0..12u32 {
        if i == 6 {
            // kill -9 mid-stream: the validator goes on from its state.
            node.kill9();
            node.spawn();
        }
        let body = format!("message {i}");
        let (_, receipt) = dispatch(&chain, &sender, a.mailbox, (DOMAIN_B, B256::repeat_byte(0xbb)), body.as_bytes());
        let logs: Vec<Log> = receipt.logs.iter().map(events::as_log).collect();
        let (id, index) =
            logs.iter().find_map(|log| events::inserted_into_tree(log, a.merkle_tree_hook)).unwrap().unwrap();
        assert_eq!(index, i);
        let signed = checkpoint_of(&node, index, "preconfirmed");
        assert_eq!(signed.value.message_id, id);
        assert_eq!(signed.signer(), Some(validator));
        // The hook's root now (the chain's state with this message) is the signed one.
        let root = view(&chain, a.merkle_tree_hook, IMerkleTreeHook::rootCall {});
        assert_eq!(signed.value.checkpoint.root, root, "checkpoint {index}");
        assert_eq!(signed.value.checkpoint.merkle_tree_hook, a.merkle_tree_hook.into_word());
    }
    let latest = node.rpc("tephra_latestCheckpoint", serde_json::json!([]));
    assert_eq!(latest["checkpoint"]["value"]["checkpoint"]["index"], 11);

    // The checkpoint syncer's directory, as Hyperlane's relayer reads it.
    let store = node.dir.join("data/hyperlane-checkpoints");
    assert_eq!(std::fs::read_to_string(store.join("index.json")).unwrap(), "11");
    let announcement: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(store.join("announcement.json")).unwrap()).unwrap();
    assert_eq!(announcement["value"]["mailbox_domain"], DOMAIN_A);
    assert!(announcement["value"]["storage_location"].as_str().unwrap().starts_with("file:///"));

    // attest = "sealed": a checkpoint only once its block is sealed and signed.
    node.stop();
    let config =
        std::fs::read_to_string(&node.config).unwrap().replace("attest = \"preconfirmed\"", "attest = \"sealed\"");
    std::fs::write(&node.config, config).unwrap();
    node.spawn();
    let (_, receipt) = dispatch(&chain, &sender, a.mailbox, (DOMAIN_B, B256::repeat_byte(0xbb)), b"once sealed");
    let signed = checkpoint_of(&node, 12, "sealed");
    let safe = node.rpc("eth_getBlockByNumber", serde_json::json!(["safe", false]));
    let signed_head = u64::from_str_radix(safe["number"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert!(signed_head >= receipt.block_number, "block {} signed by the time of its checkpoint", receipt.block_number);
    assert_eq!(signed.value.checkpoint.root, view(&chain, a.merkle_tree_hook, IMerkleTreeHook::rootCall {}));
    node.stop();
}

const DOMAIN_C: u32 = 3000;
/// A domain no configured chain has.
const DOMAIN_UNKNOWN: u32 = 9999;

/// A `tephra` process of the test (a relayer, a validator), killed when dropped.
struct Process {
    child: std::process::Child,
    args: Vec<String>,
    log: std::path::PathBuf,
}

impl Process {
    fn start(args: &[&str], log: std::path::PathBuf) -> Self {
        let args: Vec<String> = args.iter().map(ToString::to_string).collect();
        let child = Self::spawn(&args, &log);
        Self { child, args, log }
    }

    fn spawn(args: &[String], log: &Path) -> std::process::Child {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        Command::new(env!("CARGO_BIN_EXE_tephra"))
            .args(args)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("tephra starts")
    }

    /// kill -9, then the same command again.
    fn kill9_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(&self.args, &self.log);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tephra(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tephra")).args(args).output().expect("tephra runs");
    assert!(output.status.success(), "tephra {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Each id of a `ProcessId` log of `mailbox` on `chain`, as often as it was processed.
fn processed_ids(chain: &L1JsonRpc, mailbox: Address) -> Vec<B256> {
    let head = tephra_l1::L1Rpc::head_number(chain).unwrap();
    chain
        .logs_in_range(mailbox, events::PROCESS_ID_TOPIC, 0, head)
        .unwrap()
        .iter()
        .map(|(_, log)| log.topics[1])
        .collect()
}

#[test]
fn messages_relayed_from_tephra_to_tephra_and_anvil_are_delivered_exactly_once_across_kill_9s() {
    let dir = fresh_dir("interop-relay");
    let mut node_a = TephraNode::start("interop-relay-a", "");
    let mut node_b = TephraNode::start("interop-relay-b", "");
    let anvil = Anvil::start(&[]);
    let a = deploy(&dir, &node_a.rpc_url, DOMAIN_A);
    let b = deploy(&dir, &node_b.rpc_url, DOMAIN_B);
    let c = deploy(&dir, &anvil.url, DOMAIN_C);

    // Chain A's two validators: tephra's own role (attesting preconfirmed),
    // and one over JSON-RPC, a process of its own.
    make_validator(&mut node_a, &dir, &a, VALIDATORS[0]);
    let (mut second, second_dir) = start_second_validator(&dir, &node_a.rpc_url);

    // Both announce where their checkpoints are, on A.
    let payer = dir.join("payer.key");
    std::fs::write(&payer, DEV_PRIVATE_KEYS[3].to_string()).unwrap();
    let announcements = [
        node_a.dir.join("data/hyperlane-checkpoints/announcement.json"),
        second_dir.join("checkpoints/announcement.json"),
    ];
    for announcement in &announcements {
        tephra_testkit::wait_until("the validator's announcement", Duration::from_secs(30), || announcement.exists());
        tephra(
            &[
                "interop",
                "announce",
                "--rpc",
                &node_a.rpc_url,
                "--validator-announce",
                &a.validator_announce.to_string(),
            ]
            .into_iter()
            .chain(["--key-file", payer.to_str().unwrap(), "--announcement", announcement.to_str().unwrap()])
            .collect::<Vec<_>>(),
        );
    }

    // The relayer between A, B and C (anvil).
    let relayer_key = dir.join("relayer.key");
    std::fs::write(&relayer_key, DEV_PRIVATE_KEYS[RELAYER].to_string()).unwrap();
    let chain_entry = |name: &str, rpc: &str, domain: u32| {
        format!("[[chain]]\nname = \"{name}\"\nrpc = \"{rpc}\"\ndeployment = \"deployment-{domain}.json\"\n")
    };
    let relay_toml = format!(
        "data_dir = \"relay\"\nkey_file = \"relayer.key\"\npoll_interval_ms = 50\ngas_max = 3000000\n\
         receipt_timeout_s = 30\nbackoff_initial_ms = 200\nbackoff_max_ms = 2000\n{}{}{}",
        chain_entry("a", &node_a.rpc_url, DOMAIN_A),
        chain_entry("b", &node_b.rpc_url, DOMAIN_B),
        chain_entry("c", &anvil.url, DOMAIN_C),
    );
    std::fs::write(dir.join("relay.toml"), relay_toml).unwrap();
    let relay_config = dir.join("relay.toml");
    let mut relayer = Process::start(&["relay", "--config", relay_config.to_str().unwrap()], dir.join("relayer.log"));

    // A stream of messages from A, to B and to C in turn, with every
    // process killed -9 on the way.
    let chain_a = L1JsonRpc::new(node_a.rpc_url.clone()).unwrap();
    let sender = key(SENDER);
    let mut sent: Vec<(B256, u32, Bytes)> = Vec::new();
    const MESSAGES: usize = 40;
    for i in 0..MESSAGES {
        match i {
            10 => relayer.kill9_and_restart(),
            15 => second.kill9_and_restart(),
            20 => {
                node_a.kill9();
                node_a.spawn();
            }
            30 => {
                node_b.kill9();
                node_b.spawn();
            }
            _ => {}
        }
        let (destination, recipient) =
            if i % 2 == 0 { (DOMAIN_B, b.test_recipient) } else { (DOMAIN_C, c.test_recipient) };
        let body = Bytes::from(format!("message {i}").into_bytes());
        let (message, _) = dispatch(&chain_a, &sender, a.mailbox, (destination, recipient.into_word()), &body);
        sent.push((message.id(), destination, body));
    }
    // And one for a domain no chain of the relayer has.
    let unknown = (DOMAIN_UNKNOWN, B256::repeat_byte(0x77));
    let lost_id = dispatch(&chain_a, &sender, a.mailbox, unknown, b"nowhere").0.id();

    let (chain_b, chain_c) =
        (L1JsonRpc::new(node_b.rpc_url.clone()).unwrap(), L1JsonRpc::new(anvil.url.clone()).unwrap());

    // A recipient on C whose own ISM names a validator that does not attest
    // A: the relayer says which validators it waits for.
    let stranger = DevKey::dev(8).address();
    let deployer = key(DEPLOYER);
    let on_c = transactor(&chain_c, &deployer);
    let wrong_set = IStaticMessageIdMultisigIsmFactory::getAddressCall { _values: vec![stranger], _threshold: 1 };
    let wrong_ism = view(&chain_c, c.ism_factory, wrong_set);
    let deploy_wrong = IStaticMessageIdMultisigIsmFactory::deployCall { _values: vec![stranger], _threshold: 1 };
    on_c.send(Some(c.ism_factory), deploy_wrong.abi_encode().into()).unwrap();
    let guarded = on_c.send(None, Contract::TestRecipient.creation_code()).unwrap().contract_address.unwrap();
    let set_ism = ITestRecipient::setInterchainSecurityModuleCall { _ism: wrong_ism };
    on_c.send(Some(guarded), set_ism.abi_encode().into()).unwrap();
    dispatch(&chain_a, &sender, a.mailbox, (DOMAIN_C, guarded.into_word()), b"for a stranger's ISM");
    // A recipient that reverts (a contract with no handle): retried with
    // back-off, each failure reported, never delivered.
    let cannot_take_it = (DOMAIN_B, b.pausable_hook.into_word());
    let reverting_id =
        dispatch(&chain_a, &sender, a.mailbox, cannot_take_it, b"to a contract that cannot take it").0.id();
    tephra_testkit::wait_until("the reverting recipient retried", Duration::from_secs(60), || {
        let log = relayer.log();
        log.lines().filter(|line| line.contains("delivery failed") && line.contains(&reverting_id.to_string())).count()
            >= 2
    });
    assert!(!view(&chain_b, b.mailbox, IMailbox::deliveredCall { _id: reverting_id }));
    tephra_testkit::wait_until("the wrong validator set reported", Duration::from_secs(60), || {
        let log = relayer.log();
        log.contains("still not signed by enough of the ISM's validators") && log.contains(&stranger.to_string())
    });
    let delivered = |id: B256, destination: u32| {
        let (chain, mailbox) = if destination == DOMAIN_B { (&chain_b, b.mailbox) } else { (&chain_c, c.mailbox) };
        view(chain, mailbox, IMailbox::deliveredCall { _id: id })
    };
    tephra_testkit::wait_until("every message delivered", Duration::from_secs(120), || {
        sent.iter().all(|(id, destination, _)| delivered(*id, *destination))
    });

    // Exactly once: each id processed once on its destination, none elsewhere.
    let (on_b, on_c) = (processed_ids(&chain_b, b.mailbox), processed_ids(&chain_c, c.mailbox));
    for (id, destination, _) in &sent {
        let (here, there) = if *destination == DOMAIN_B { (&on_b, &on_c) } else { (&on_c, &on_b) };
        assert_eq!(here.iter().filter(|p| *p == id).count(), 1, "{id} processed once");
        assert!(!there.contains(id));
    }
    assert_eq!(on_b.len() + on_c.len(), MESSAGES);
    // The last message to each recipient is what it holds.
    let last = |destination: u32| sent.iter().rev().find(|(_, d, _)| *d == destination).unwrap().2.clone();
    assert_eq!(view(&chain_b, b.test_recipient, ITestRecipient::lastDataCall {}), last(DOMAIN_B));
    assert_eq!(view(&chain_c, c.test_recipient, ITestRecipient::lastDataCall {}), last(DOMAIN_C));

    // The unknown destination was reported once and is not retried.
    tephra_testkit::wait_until("the unknown destination reported", Duration::from_secs(10), || {
        relayer.log().contains(&lost_id.to_string())
    });
    let journal = std::fs::read_to_string(dir.join("relay/relayer.journal")).unwrap();
    assert!(journal.contains("unknown_destination"), "{journal}");
    std::thread::sleep(Duration::from_secs(1));
    let log = relayer.log();
    assert_eq!(log.matches("does not serve").count(), 1, "{log}");
    node_a.stop();
    node_b.stop();
}

/// A dispatch signed here (fixed gas and fees, nonce `nonce`) sent with
/// eth_sendRawTransactionSync: the preconfirmed receipt.
fn dispatch_sync(
    node: &TephraNode,
    chain_id: u64,
    nonce: u64,
    mailbox: Address,
    call: IMailbox::dispatchCall,
) -> serde_json::Value {
    use alloy_consensus::{TxEip1559, TypedTransaction};
    use alloy_eips::eip2718::Encodable2718;
    let tx = TxEip1559 {
        chain_id,
        nonce,
        gas_limit: 500_000,
        max_fee_per_gas: 100_000_000_000,
        max_priority_fee_per_gas: 1,
        to: alloy_primitives::TxKind::Call(mailbox),
        input: call.abi_encode().into(),
        ..Default::default()
    };
    let raw = DevKey::dev(SENDER).sign(TypedTransaction::Eip1559(tx)).encoded_2718();
    node.rpc("eth_sendRawTransactionSync", serde_json::json!([Bytes::from(raw), 10_000]))
}

/// A value of the chain's state with everything preconfirmed so far.
fn pending_view<C: SolCall>(node: &TephraNode, to: Address, call: C) -> C::Return {
    let answer =
        node.rpc("eth_call", serde_json::json!([{"to": to, "data": Bytes::from(call.abi_encode())}, "pending"]));
    let bytes: Bytes = serde_json::from_value(answer).unwrap();
    C::abi_decode_returns(&bytes).unwrap()
}

#[test]
fn two_validators_one_in_an_hsm_sign_the_hooks_root_after_each_of_1000_messages_whose_ids_are_hyperlanes() {
    const MESSAGES: u32 = 1000;
    let dir = fresh_dir("interop-tree");
    // The node's validator key is held by a real PKCS#11 token (SoftHSM2).
    let Some((_, softhsm2_conf)) = common::softhsm2_token(&dir, &dir.join("tokens")) else { return };
    let env = [("SOFTHSM2_CONF", softhsm2_conf.as_str())];
    let mut node = TephraNode::start_with_env("interop-tree", "", &env);
    let a = deploy(&dir, &node.rpc_url, DOMAIN_A);
    node.stop();
    let mut config = std::fs::read_to_string(&node.config).unwrap();
    config.push_str(&validator_config(&dir, &a, VALIDATORS[0], "preconfirmed").replace(
        "[interop.key]\n",
        &format!(
            "[interop.key]\nkind = \"pkcs11\"\npkcs11_module = \"{}\"\npkcs11_token_label = \"tephra\"\n\
             pkcs11_pin_file = \"{}\"\npkcs11_key_label = \"hyperlane-validator\"\n",
            common::SOFTHSM2_MODULE,
            dir.join("pin").display()
        ),
    ));
    std::fs::write(&node.config, config).unwrap();
    let hsm = |command: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_tephra"))
            .env("SOFTHSM2_CONF", &softhsm2_conf)
            .args(["hsm", command, "--key", "validator", "--config"])
            .arg(&node.config)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    hsm("keygen");
    let printed = hsm("pubkey");
    let hsm_validator: Address = printed
        .split("Hyperlane validator key address: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("pubkey prints the address")
        .parse()
        .unwrap();
    node.spawn();
    let (_second, second_dir) = start_second_validator(&dir, &node.rpc_url);

    // Each message, then the hook's root and count as the chain has them
    // right after it.
    let chain_id = L1JsonRpc::new(node.rpc_url.clone()).unwrap().chain_id().unwrap();
    let nonce = quantity_of(
        &node.rpc("eth_getTransactionCount", serde_json::json!([DevKey::dev(SENDER).address(), "pending"])),
    );
    let mut on_chain = Vec::new();
    let mut messages = Vec::new();
    for i in 0..MESSAGES {
        let call = IMailbox::dispatchCall {
            destinationDomain: DOMAIN_B + i % 3,
            recipientAddress: B256::repeat_byte(u8::try_from(i % 251).unwrap()),
            messageBody: Bytes::from(vec![u8::try_from(i % 256).unwrap(); (i % 97) as usize]),
        };
        let receipt = dispatch_sync(&node, chain_id, nonce + u64::from(i), a.mailbox, call);
        assert_eq!(receipt["status"], "0x1", "{receipt}");
        let logs: Vec<Log> = receipt["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|log| {
                // A preconfirmed receipt's logs have no block hash yet.
                let topics = serde_json::from_value(log["topics"].clone()).unwrap();
                let address = serde_json::from_value(log["address"].clone()).unwrap();
                Log::new_unchecked(address, topics, serde_json::from_value(log["data"].clone()).unwrap())
            })
            .collect();
        messages.push(logs.iter().find_map(|log| events::dispatched(log, a.mailbox)).unwrap().unwrap());
        let root = pending_view(&node, a.merkle_tree_hook, IMerkleTreeHook::rootCall {});
        let count = pending_view(&node, a.merkle_tree_hook, IMerkleTreeHook::countCall {});
        assert_eq!(count, i + 1);
        on_chain.push(root);
    }

    // Both validators' checkpoint i holds the root the hook had after message i.
    let first = node.dir.join("data/hyperlane-checkpoints");
    let second = second_dir.join("checkpoints");
    for store in [&first, &second] {
        tephra_testkit::wait_until("the last checkpoint", Duration::from_secs(60), || {
            std::fs::read_to_string(store.join("index.json")).is_ok_and(|index| index == (MESSAGES - 1).to_string())
        });
    }
    for (i, (root, message)) in on_chain.iter().zip(&messages).enumerate() {
        for (store, validator) in [(&first, hsm_validator), (&second, DevKey::dev(VALIDATORS[1]).address())] {
            let text = std::fs::read_to_string(store.join(format!("{i}_with_id.json"))).unwrap();
            let signed = SignedCheckpoint::from_json(&text).unwrap();
            assert_eq!(signed.value.checkpoint.root, *root, "validator {validator}, checkpoint {i}");
            assert_eq!(signed.value.message_id, message.id());
            assert_eq!(signed.signer(), Some(validator));
        }
    }

    // Each message's bytes and id as Hyperlane's own utilities make them.
    let input: String = messages
        .iter()
        .map(|m| {
            serde_json::json!({
                "version": m.version, "nonce": m.nonce, "origin": m.origin, "sender": m.sender,
                "destination": m.destination, "recipient": m.recipient, "body": m.body,
            })
            .to_string()
                + "\n"
        })
        .collect();
    let oracle = tephra_testkit::workspace_root().join("oracle/hyperlane");
    let mut child = Command::new("node")
        .arg(oracle.join("message-ids.mjs"))
        .current_dir(&oracle)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node runs Hyperlane's utilities");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "oracle/hyperlane: install it with npm ci --prefix oracle/hyperlane");
    let answers: Vec<serde_json::Value> =
        String::from_utf8(output.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(answers.len(), messages.len());
    for (message, answer) in messages.iter().zip(&answers) {
        assert_eq!(answer["message"], format!("0x{}", alloy_primitives::hex::encode(message.encode())));
        assert_eq!(answer["id"], message.id().to_string());
    }
    node.stop();
}

fn quantity_of(value: &serde_json::Value) -> u64 {
    u64::from_str_radix(value.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

#[test]
fn devnet_interop_shows_a_message_cross_from_one_tephra_chain_to_the_other_in_one_command() {
    use std::io::BufRead;
    let dir = fresh_dir("interop-devnet");
    let l1 = Anvil::start(&["--chain-id", "900", "--block-time", "1"]);
    let ports = dir.join("ports.toml");
    let free = tephra_testkit::free_port;
    std::fs::write(
        &ports,
        format!(
            "[rpc]\nlisten = \"127.0.0.1:{}\"\n[udp]\nlisten = \"127.0.0.1:{}\"\n[metrics]\nlisten = \"127.0.0.1:{}\"\n",
            free(),
            tephra_testkit::free_udp_port(),
            free()
        ),
    )
    .unwrap();
    let mut devnet = Command::new(env!("CARGO_BIN_EXE_tephra"))
        .args(["devnet", "--interop", "--l1-rpc", &l1.url, "--dir"])
        .arg(dir.join("net"))
        .arg("--config")
        .arg(&ports)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tephra devnet runs");
    let (lines, stdout) = (std::sync::mpsc::channel(), devnet.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.0.send(line);
        }
    });
    let mut seen = Vec::new();
    let delivered = loop {
        match lines.1.recv_timeout(Duration::from_secs(180)) {
            Ok(line) if line.contains("delivered on chain 902") => break line,
            Ok(line) => seen.push(line),
            Err(_) => panic!("no delivery: {seen:#?}"),
        }
    };
    let dispatched = seen.iter().find(|line| line.contains("dispatched on chain 901")).expect("the dispatch");
    let id = |line: &str| line.split_whitespace().nth(2).map(str::to_string);
    assert_eq!(id(dispatched), id(&delivered), "{dispatched} / {delivered}");
    // docs/interop.md's viem example, against the devnet.
    let rpc_of = |dir: &Path| {
        let toml = std::fs::read_to_string(dir.join("tephra.toml")).unwrap();
        let listen = toml.split("[rpc]\nlisten = \"").nth(1).unwrap().split('"').next().unwrap().to_string();
        format!("http://{listen}")
    };
    let net = dir.join("net");
    let output = Command::new("node")
        .arg(tephra_testkit::workspace_root().join("examples/interop/send-message.mjs"))
        .current_dir(tephra_testkit::workspace_root())
        .env("ORIGIN_RPC", rpc_of(&net))
        .env("DESTINATION_RPC", rpc_of(&net.join("second")))
        .env("ORIGIN_DEPLOYMENT", net.join("deployment-901.json"))
        .env("DESTINATION_DEPLOYMENT", net.join("deployment-902.json"))
        .env("PRIVATE_KEY", DEV_PRIVATE_KEYS[4].to_string())
        .env("BODY", "a move in the game")
        .output()
        .expect("node runs the viem example");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("delivered") && stdout.contains("a move in the game"), "{stdout}");

    // SIGTERM stops the nodes and the relayer with it.
    let _ = Command::new("kill").args(["-TERM", &devnet.id().to_string()]).status();
    let status = devnet.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// The receipt of `hash` once its block is sealed (it has a block hash).
fn sealed_receipt(client: &tephra_testkit::rpc::RpcClient, hash: B256) -> serde_json::Value {
    let mut receipt = serde_json::Value::Null;
    tephra_testkit::wait_until("the block sealed", Duration::from_secs(30), || {
        receipt = client.rpc("eth_getTransactionReceipt", serde_json::json!([hash]));
        receipt["blockHash"].is_string()
    });
    receipt
}

#[test]
fn an_l1_reorg_under_the_validator_reads_the_rebuilt_blocks_again_and_signs_no_second_root() {
    if !op::needs() {
        return;
    }
    let dir = fresh_dir("interop-reorg");
    let l1_block_time_s = 2;
    let l1 = op::L1::start(l1_block_time_s, &[]);
    let (_, config) = op::setup(&dir, &l1);
    let mut node = tephra_testkit::tephra::TephraProcess::builder(env!("CARGO_BIN_EXE_tephra"), dir.join("node"))
        .config(&config)
        // The L1 head is an origin at once: a reorg of anvil's newest blocks
        // reaches the origins of the unsafe blocks.
        .config("[l1]\nconfirmation_depth = 0\n")
        .log_file("tephra.log")
        .start()
        .expect("tephra starts in OP mode");
    let a = deploy(&dir, node.rpc_url(), DOMAIN_A);
    node.stop();
    let mut toml = std::fs::read_to_string(node.config_path()).unwrap();
    toml.push_str(&validator_config(&dir, &a, VALIDATORS[0], "preconfirmed"));
    std::fs::write(node.config_path(), toml).unwrap();
    node.start().expect("tephra restarts as a validator");
    let (chain, client) =
        (L1JsonRpc::new(node.rpc_url()).unwrap(), tephra_testkit::rpc::RpcClient::new(node.rpc_url()));
    let signed_root = |index: u32| {
        let mut answer = Err(serde_json::Value::Null);
        tephra_testkit::wait_until(&format!("checkpoint {index}"), Duration::from_secs(10), || {
            answer = client.call("tephra_getCheckpoint", serde_json::json!([index]));
            answer.is_ok()
        });
        let answer = answer.unwrap();
        SignedCheckpoint::from_json(&answer["checkpoint"].to_string()).unwrap().value.checkpoint.root
    };
    let sender = key(SENDER);
    let to = (DOMAIN_B, B256::repeat_byte(0xbb));

    // Message 0 on an origin the reorg keeps; message 1 on one it replaces.
    dispatch(&chain, &sender, a.mailbox, to, b"before the fork");
    signed_root(0);
    let fork = quantity_of(&l1.rpc("eth_blockNumber", serde_json::json!([]))) + 1;
    op::wait_for_origin(&l1, &client, fork);
    let (message, receipt) = dispatch(&chain, &sender, a.mailbox, to, b"after the fork");
    let root_1 = signed_root(1);
    let sealed = sealed_receipt(&client, receipt.transaction_hash);

    // The reorg: L1 blocks fork.. replaced; tephra rewinds the L2 blocks on
    // them and sequences their transactions again.
    l1.rpc("evm_setIntervalMining", serde_json::json!([0]));
    let l1_head = quantity_of(&l1.rpc("eth_blockNumber", serde_json::json!([])));
    l1.rpc("anvil_setBlockTimestampInterval", serde_json::json!([1]));
    l1.rpc("anvil_reorg", serde_json::json!([l1_head - fork + 1, []]));
    l1.rpc("anvil_removeBlockTimestampInterval", serde_json::json!([]));
    l1.rpc("evm_setIntervalMining", serde_json::json!([l1_block_time_s]));
    tephra_testkit::wait_until("message 1 in a rebuilt block", Duration::from_secs(120), || {
        let again = client.rpc("eth_getTransactionReceipt", serde_json::json!([receipt.transaction_hash]));
        again["blockHash"].is_string() && again["blockHash"] != sealed["blockHash"]
    });

    // The same dispatch again is the same leaf: passed over, not signed
    // again; the validator goes on, and its tree is still the hook's.
    let (_, after) = dispatch(&chain, &sender, a.mailbox, to, b"after the reorg");
    let logs: Vec<Log> = after.logs.iter().map(events::as_log).collect();
    let (_, index) = logs.iter().find_map(|log| events::inserted_into_tree(log, a.merkle_tree_hook)).unwrap().unwrap();
    assert_eq!(index, 2, "the third message is leaf 2: message 1 took leaf 1 again");
    assert_eq!(signed_root(2), view(&chain, a.merkle_tree_hook, IMerkleTreeHook::rootCall {}));
    assert_eq!(signed_root(1), root_1);
    let mut tree = IncrementalTree::default();
    let first = SignedCheckpoint::from_json(
        &client.rpc("tephra_getCheckpoint", serde_json::json!([0]))["checkpoint"].to_string(),
    );
    tree.insert(first.unwrap().value.message_id).unwrap();
    tree.insert(message.id()).unwrap();
    assert_eq!(tree.root(), root_1);
    assert!(node.log().contains("the chain changed under the validator; it reads again"), "the rewind reached it");
    assert_eq!(op::ready(&node).0, 200, "attesting goes on: {}", op::ready(&node).1);
    // Each index signed once: no second signature, let alone a second root.
    let audit = std::fs::read_to_string(dir.join("chain/data/hyperlane-validator-audit.log")).unwrap();
    let heights: Vec<&str> =
        audit.lines().filter(|l| l.contains(" hyperlane_checkpoint ")).map(|l| l.split(' ').nth(3).unwrap()).collect();
    assert_eq!(heights, ["0", "1", "2"], "{audit}");
    node.stop();
}
