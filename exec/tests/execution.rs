//! The execution core end to end: verify, execute into a block, seal.

mod common;

use common::deploy_code;

use alloy_consensus::{
    Header, TxEip1559, TxEip7702, TxEnvelope, TypedTransaction,
    proofs::{calculate_receipt_root, calculate_transaction_root},
};
use alloy_eips::{eip2718::Encodable2718, eip7702::Authorization};
use alloy_primitives::{Address, B256, Bytes, TxKind, U256, address};
use tephra_exec::{
    BlockBuilder, BlockChoice, BlockParams, ChainSpec, OpenBlockError, SealedBlock, SequentialExecutor, StateDb,
    TxOutcome, Verifier, VerifyRules, block::receipt_envelope, dev::DevKey, snapshot,
};
use tephra_types::RejectCode;

const GWEI: u128 = 1_000_000_000;
const BENEFICIARY: Address = address!("0x00000000000000000000000000000000000000be");

/// SSTORE(0, CALLDATALOAD(0)); LOG1(topic = CALLDATALOAD(0)) with no data; STOP.
const STORE_AND_LOG: &[u8] = &[0x60, 0x00, 0x35, 0x80, 0x60, 0x00, 0x55, 0x60, 0x00, 0x60, 0x00, 0xa1, 0x00];
/// REVERT(0, 0).
const ALWAYS_REVERT: &[u8] = &[0x60, 0x00, 0x60, 0x00, 0xfd];
/// An endless loop: runs out of gas.
const SPIN: &[u8] = &[0x5b, 0x60, 0x00, 0x56];
/// SSTORE(0, BLOCKHASH(NUMBER - 1)).
const STORE_PARENT_HASH: &[u8] = &[0x60, 0x01, 0x43, 0x03, 0x40, 0x60, 0x00, 0x55, 0x00];
/// SSTORE(0, BALANCE(COINBASE)).
const STORE_COINBASE_BALANCE: &[u8] = &[0x41, 0x31, 0x60, 0x00, 0x55, 0x00];

struct Chain {
    spec: ChainSpec,
    state: StateDb,
    head: Header,
    verifier: Verifier,
    nonces: [u64; 10],
}

impl Chain {
    fn dev() -> Self {
        let spec = ChainSpec::dev();
        let head = spec.genesis_header().clone();
        let verifier = Verifier::new(VerifyRules {
            chain_id: spec.chain_id(),
            spec: spec.spec_at(1, head.timestamp),
            block_gas_limit: head.gas_limit,
            base_fee_per_gas: head.base_fee_per_gas.unwrap(),
            allow_unprotected: false,
        });
        Self { state: spec.genesis_state(), spec, head, verifier, nonces: [0; 10] }
    }

    fn tx(&mut self, from: usize, to: TxKind, value: u128, input: Vec<u8>, gas_limit: u64) -> TxEnvelope {
        let nonce = self.nonces[from];
        self.nonces[from] += 1;
        DevKey::dev(from).sign(TypedTransaction::Eip1559(TxEip1559 {
            chain_id: self.spec.chain_id(),
            nonce,
            gas_limit,
            max_fee_per_gas: 10 * GWEI,
            max_priority_fee_per_gas: GWEI,
            to,
            value: U256::from(value),
            access_list: Default::default(),
            input: input.into(),
        }))
    }

    fn params(&self, timestamp: u64) -> BlockParams {
        let choice = BlockChoice {
            timestamp,
            beneficiary: BENEFICIARY,
            prevrandao: B256::repeat_byte(0x42),
            extra_data: Bytes::from_static(b"tephra"),
            op: None,
        };
        BlockParams::child_of(&self.spec, &self.head, choice).unwrap()
    }

    /// Executes `txs` as one block and seals it.
    fn block(&mut self, txs: &[TxEnvelope]) -> (SealedBlock, Vec<TxOutcome>) {
        let params = self.params(self.head.timestamp + 1);
        self.verifier.set_block(params.spec, params.gas_limit, params.base_fee_per_gas);
        let verified = txs.iter().map(|tx| self.verifier.verify(&tx.encoded_2718()).expect("valid")).collect();
        let mut builder = BlockBuilder::open(params, &mut self.state);
        let mut outcomes = Vec::new();
        builder
            .execute(&mut SequentialExecutor, &mut self.state, verified, |_, outcome| outcomes.push(outcome.clone()));
        let sealed = builder.seal(&mut self.state);
        self.head = sealed.header.clone();
        (sealed, outcomes)
    }
}

/// The root of `state` rebuilt from scratch, account by account.
fn rebuilt_root(state: &StateDb) -> B256 {
    let mut fresh = StateDb::default();
    for (address, account) in state.accounts() {
        let storage = account.storage.iter().map(|(k, v)| (*k, *v));
        fresh.insert_account(
            *address,
            account.nonce,
            account.balance,
            state.code(&account.code_hash).cloned(),
            storage,
        );
    }
    fresh.state_root()
}

/// Deploys `runtime` from dev account `from` in a block of its own.
fn deploy(chain: &mut Chain, from: usize, runtime: &[u8]) -> Address {
    let tx = chain.tx(from, TxKind::Create, 0, deploy_code(runtime), 200_000);
    let (_, outcomes) = chain.block(&[tx]);
    included(&outcomes[0]).contract_address.unwrap()
}

fn included(outcome: &TxOutcome) -> &tephra_exec::ExecutedTx {
    match outcome {
        TxOutcome::Included(executed) => executed,
        other => panic!("expected inclusion, got {other:?}"),
    }
}

fn dropped_code(outcome: &TxOutcome) -> RejectCode {
    match outcome {
        TxOutcome::Dropped { reject, .. } => reject.code,
        other => panic!("expected a drop, got {other:?}"),
    }
}

#[test]
fn transfer_moves_value_pays_the_tip_and_burns_the_base_fee() {
    let mut chain = Chain::dev();
    let (alice, bob) = (DevKey::dev(0).address(), address!("0x000000000000000000000000000000000000b0b0"));
    let before = chain.state.balance(&alice);
    let tx = chain.tx(0, TxKind::Call(bob), 1_000, vec![], 21_000);
    let (block, outcomes) = chain.block(&[tx]);
    let executed = included(&outcomes[0]);
    assert!(executed.receipt.status.coerce_status());
    assert_eq!(executed.gas_used, 21_000);
    let base_fee = u128::from(block.header.base_fee_per_gas.unwrap());
    let paid = 21_000 * (base_fee + GWEI);
    assert_eq!(chain.state.balance(&alice), before - U256::from(paid + 1_000));
    assert_eq!(chain.state.balance(&bob), U256::from(1_000));
    assert_eq!(chain.state.balance(&BENEFICIARY), U256::from(21_000 * GWEI), "only the tip reaches the beneficiary");
    assert_eq!(chain.state.nonce(&alice), 1);
    assert_eq!(block.header.gas_used, 21_000);
}

#[test]
fn contracts_deploy_log_revert_and_run_out_of_gas_with_status_zero() {
    let mut chain = Chain::dev();
    let deploy_store = chain.tx(0, TxKind::Create, 0, deploy_code(STORE_AND_LOG), 200_000);
    let deploy_revert = chain.tx(0, TxKind::Create, 0, deploy_code(ALWAYS_REVERT), 200_000);
    let deploy_spin = chain.tx(0, TxKind::Create, 0, deploy_code(SPIN), 200_000);
    let (_, outcomes) = chain.block(&[deploy_store, deploy_revert, deploy_spin]);
    let [store, revert, spin] = [0, 1, 2].map(|i| included(&outcomes[i]).contract_address.unwrap());
    assert_eq!(
        chain.state.code(&chain.state.account(&store).unwrap().code_hash).unwrap().original_byte_slice(),
        STORE_AND_LOG
    );

    let value = B256::repeat_byte(0x77);
    let call_store = chain.tx(1, TxKind::Call(store), 0, value.to_vec(), 100_000);
    let call_revert = chain.tx(1, TxKind::Call(revert), 0, vec![], 100_000);
    let call_spin = chain.tx(1, TxKind::Call(spin), 0, vec![], 50_000);
    let (block, outcomes) = chain.block(&[call_store, call_revert, call_spin]);
    let stored = included(&outcomes[0]);
    assert!(stored.receipt.status.coerce_status());
    assert_eq!(stored.receipt.logs.len(), 1);
    assert_eq!(stored.receipt.logs[0].address, store);
    assert_eq!(stored.receipt.logs[0].topics(), &[value]);
    assert_eq!(chain.state.storage_at(&store, U256::ZERO), U256::from_be_bytes(value.0));
    assert!(block.header.logs_bloom.contains_input(alloy_primitives::BloomInput::Raw(store.as_slice())));

    let reverted = included(&outcomes[1]);
    assert!(!reverted.receipt.status.coerce_status());
    assert!(reverted.gas_used < 100_000, "a revert refunds unused gas");
    let out_of_gas = included(&outcomes[2]);
    assert!(!out_of_gas.receipt.status.coerce_status());
    assert_eq!(out_of_gas.gas_used, 50_000, "a halt consumes the whole gas limit");
    assert_eq!(block.header.gas_used, out_of_gas.receipt.cumulative_gas_used);
    assert_eq!(chain.state.nonce(&DevKey::dev(1).address()), 3, "failed transactions still bump the nonce");
}

#[test]
fn invalid_at_execution_is_dropped_with_its_reason_and_full_blocks_defer() {
    let mut chain = Chain::dev();
    let poor = DevKey::from_seed(99);
    let gapped = {
        chain.nonces[0] = 5;
        chain.tx(0, TxKind::Call(BENEFICIARY), 1, vec![], 21_000)
    };
    let unfunded = poor.sign(TypedTransaction::Eip1559(TxEip1559 {
        chain_id: chain.spec.chain_id(),
        gas_limit: 21_000,
        max_fee_per_gas: 10 * GWEI,
        to: TxKind::Call(BENEFICIARY),
        ..Default::default()
    }));
    let (block, outcomes) = chain.block(&[gapped, unfunded]);
    assert_eq!(dropped_code(&outcomes[0]), RejectCode::ExecNonceTooHigh);
    assert_eq!(dropped_code(&outcomes[1]), RejectCode::InsufficientFunds);
    assert!(block.transactions.is_empty());
    assert_eq!(block.header.gas_used, 0);
    assert_eq!(chain.state.nonce(&DevKey::dev(0).address()), 0, "a dropped transaction changes nothing");

    // A transaction whose gas limit no longer fits waits for the next block.
    let mut small = Chain::dev();
    let mut params = small.params(1);
    params.gas_limit = 50_000;
    // Sender 2's second transaction does not fit the 29,000 gas left; its third
    // would, but waits with its predecessor; sender 3's fits and is included.
    let txs = [
        small.tx(2, TxKind::Call(BENEFICIARY), 1, vec![], 21_000),
        small.tx(2, TxKind::Call(BENEFICIARY), 1, vec![], 30_000),
        small.tx(2, TxKind::Call(BENEFICIARY), 1, vec![], 21_000),
        small.tx(3, TxKind::Call(BENEFICIARY), 1, vec![], 21_000),
    ];
    let verified = txs.iter().map(|tx| small.verifier.verify(&tx.encoded_2718()).unwrap()).collect();
    let mut builder = BlockBuilder::open(params, &mut small.state);
    let mut kinds = Vec::new();
    builder.execute(&mut SequentialExecutor, &mut small.state, verified, |index, outcome| {
        kinds.push((index, matches!(outcome, TxOutcome::BlockFull(_))))
    });
    assert_eq!(kinds, vec![(Some(0), false), (None, true), (None, true), (Some(1), false)]);
}

#[test]
fn sealed_headers_chain_and_carry_exact_roots_and_base_fees() {
    let mut chain = Chain::dev();
    let genesis_hash = chain.spec.genesis_hash();
    let txs: Vec<_> = (0..5).map(|i| chain.tx(i, TxKind::Call(BENEFICIARY), 1, vec![], 21_000)).collect();
    let (block1, _) = chain.block(&txs);
    assert_eq!(block1.header.parent_hash, genesis_hash);
    assert_eq!(block1.header.number, 1);
    assert_eq!(block1.hash, block1.header.hash_slow());
    // Roots as alloy computes them from the same transactions and receipts.
    let envelopes: Vec<TxEnvelope> = block1.transactions.iter().map(|t| t.tx.envelope.clone()).collect();
    assert_eq!(block1.header.transactions_root, calculate_transaction_root(&envelopes));
    let receipts: Vec<_> = block1
        .transactions
        .iter()
        .map(|t| receipt_envelope(t.tx.envelope.tx_type() as u8, t.receipt.clone().into()))
        .collect();
    assert_eq!(block1.header.receipts_root, calculate_receipt_root(&receipts));
    // The state root is incremental: it must equal a root built from scratch.
    assert_eq!(block1.header.state_root, rebuilt_root(&chain.state));

    // EIP-1559: a block below its gas target lowers the next base fee by up to 1/8.
    let fee1 = block1.header.base_fee_per_gas.unwrap();
    let (block2, _) = chain.block(&[]);
    assert_eq!(block2.header.parent_hash, block1.hash);
    let fee2 = block2.header.base_fee_per_gas.unwrap();
    let target = block1.header.gas_limit / 2;
    let expected = fee1 - fee1 * (target - block1.header.gas_used) / target / 8;
    assert_eq!(fee2, expected);
    let (block3, _) = chain.block(&[]);
    assert_eq!(block3.header.base_fee_per_gas.unwrap(), fee2 - fee2 / 8, "an empty block lowers it by exactly 1/8");
    for header in [&block1.header, &block2.header, &block3.header] {
        assert_eq!(header.withdrawals_root, Some(alloy_trie::EMPTY_ROOT_HASH));
        assert_eq!(header.blob_gas_used, Some(0));
        assert_eq!(header.excess_blob_gas, Some(0));
        assert_eq!(header.parent_beacon_block_root, Some(B256::ZERO));
        assert_eq!(header.requests_hash, Some(alloy_eips::eip7685::EMPTY_REQUESTS_HASH));
        assert_eq!(header.mix_hash, B256::repeat_byte(0x42));
    }
}

#[test]
fn a_child_stamped_at_or_before_its_parent_does_not_open() {
    let mut chain = Chain::dev();
    let (block1, _) = chain.block(&[]);
    for timestamp in [block1.header.timestamp, block1.header.timestamp - 1] {
        let choice = BlockChoice { timestamp, ..BlockChoice::default() };
        let refused = BlockParams::child_of(&chain.spec, &chain.head, choice).unwrap_err();
        let expected = OpenBlockError::TimestampNotAfterParent { timestamp, parent: block1.header.timestamp };
        assert_eq!(refused, expected);
    }
}

#[test]
fn a_slot_written_to_zero_leaves_the_state_trie() {
    let mut chain = Chain::dev();
    let store = deploy(&mut chain, 0, STORE_AND_LOG);
    let set = chain.tx(1, TxKind::Call(store), 0, B256::repeat_byte(3).to_vec(), 100_000);
    chain.block(&[set]);
    assert_eq!(chain.state.account(&store).unwrap().storage.len(), 1);
    let clear = chain.tx(1, TxKind::Call(store), 0, B256::ZERO.to_vec(), 100_000);
    let (block, _) = chain.block(&[clear]);
    assert!(chain.state.account(&store).unwrap().storage.is_empty());
    assert_eq!(block.header.state_root, rebuilt_root(&chain.state), "no zero-valued leaf remains");
}

#[test]
fn blockhash_and_beneficiary_balance_are_visible_to_contracts() {
    let mut chain = Chain::dev();
    let deploy_hash = chain.tx(0, TxKind::Create, 0, deploy_code(STORE_PARENT_HASH), 200_000);
    let deploy_coinbase = chain.tx(0, TxKind::Create, 0, deploy_code(STORE_COINBASE_BALANCE), 200_000);
    let (_, outcomes) = chain.block(&[deploy_hash, deploy_coinbase]);
    let reader = included(&outcomes[0]).contract_address.unwrap();
    let coinbase_reader = included(&outcomes[1]).contract_address.unwrap();
    let parent = chain.head.hash_slow();
    let pay = chain.tx(1, TxKind::Call(BENEFICIARY), 0, vec![], 21_000);
    let read = chain.tx(2, TxKind::Call(reader), 0, vec![], 100_000);
    let read_coinbase = chain.tx(3, TxKind::Call(coinbase_reader), 0, vec![], 100_000);
    let before = chain.state.balance(&BENEFICIARY);
    chain.block(&[pay, read, read_coinbase]);
    assert_eq!(chain.state.storage_at(&reader, U256::ZERO), U256::from_be_bytes(parent.0));
    // Two earlier transactions of the block paid their tips before the read.
    let seen = chain.state.storage_at(&coinbase_reader, U256::ZERO);
    assert!(seen > before, "the beneficiary's balance includes the block's earlier tips");
}

#[test]
fn eip7702_delegation_runs_the_delegate_code_on_the_eoa() {
    let mut chain = Chain::dev();
    let delegate = deploy(&mut chain, 0, STORE_AND_LOG);
    let eoa = DevKey::dev(5);
    let auth = Authorization { chain_id: U256::from(chain.spec.chain_id()), address: delegate, nonce: 0 };
    let signed_auth = auth.clone().into_signed(eoa.sign_hash(auth.signature_hash()));
    let value = B256::repeat_byte(0x55);
    let tx = DevKey::dev(1).sign(TypedTransaction::Eip7702(TxEip7702 {
        chain_id: chain.spec.chain_id(),
        nonce: 0,
        gas_limit: 200_000,
        max_fee_per_gas: 10 * GWEI,
        max_priority_fee_per_gas: GWEI,
        to: eoa.address(),
        input: value.to_vec().into(),
        authorization_list: vec![signed_auth],
        ..Default::default()
    }));
    let (_, outcomes) = chain.block(&[tx]);
    assert!(included(&outcomes[0]).receipt.status.coerce_status());
    let account = chain.state.account(&eoa.address()).unwrap();
    let code = chain.state.code(&account.code_hash).unwrap().original_bytes();
    assert_eq!(&code[..3], &[0xef, 0x01, 0x00]);
    assert_eq!(&code[3..], delegate.as_slice());
    assert_eq!(account.nonce, 1, "the authorization bumps the authority's nonce");
    assert_eq!(chain.state.storage_at(&eoa.address(), U256::ZERO), U256::from_be_bytes(value.0));
}

#[test]
fn selfdestruct_in_the_creating_transaction_leaves_no_account() {
    let mut chain = Chain::dev();
    let heir = address!("0x00000000000000000000000000000000000000e1");
    let mut init = vec![0x73];
    init.extend_from_slice(heir.as_slice());
    init.push(0xff);
    let tx = chain.tx(0, TxKind::Create, 5_000, init, 200_000);
    let (_, outcomes) = chain.block(&[tx]);
    let created = included(&outcomes[0]);
    assert!(created.receipt.status.coerce_status());
    assert!(chain.state.account(&created.contract_address.unwrap()).is_none());
    assert_eq!(chain.state.balance(&heir), U256::from(5_000));
}

#[test]
fn snapshots_round_trip_and_refuse_corruption() {
    let mut chain = Chain::dev();
    let store = deploy(&mut chain, 0, STORE_AND_LOG);
    let call = chain.tx(1, TxKind::Call(store), 0, B256::repeat_byte(9).to_vec(), 100_000);
    let (block, _) = chain.block(&[call]);
    let meta = snapshot::SnapshotMeta { block_number: 2, block_hash: block.hash, state_root: block.header.state_root };

    let dir = tephra_testkit::fresh_dir("snapshot-test");
    let path = dir.join("state.snap");
    snapshot::save(&chain.state, &meta, &path).unwrap();
    let (mut restored, restored_meta) = snapshot::load(&path).unwrap();
    assert_eq!(restored_meta, meta);
    assert_eq!(restored.state_root(), block.header.state_root);
    assert_eq!(restored.storage_at(&store, U256::ZERO), chain.state.storage_at(&store, U256::ZERO));
    assert_eq!(restored.block_hashes().last(), Some((2, block.hash)));

    let bytes = std::fs::read(&path).unwrap();
    // Any flipped bit anywhere is refused (checksum, bounds or a short read).
    for index in 0..bytes.len() {
        let mut corrupt = bytes.clone();
        corrupt[index] ^= 0x01;
        assert!(snapshot::read_from(&corrupt[..]).is_err(), "a flip at byte {index} went unnoticed");
    }
    let mut bad_checksum = bytes.clone();
    *bad_checksum.last_mut().unwrap() ^= 0x01;
    assert!(matches!(snapshot::read_from(&bad_checksum[..]), Err(snapshot::SnapshotError::Checksum { .. })));
    assert!(matches!(snapshot::read_from(&bytes[..40]), Err(snapshot::SnapshotError::Io(_))));
    assert!(matches!(snapshot::read_from(&b"NOTASNAP........"[..]), Err(snapshot::SnapshotError::BadMagic)));
    std::fs::remove_dir_all(&dir).unwrap();
}
