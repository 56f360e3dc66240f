//! OP Stack execution end to end on the Isthmus devnet 420110017's genesis
//! (testdata/op): a block opens with its L1-info deposit and user deposits
//! (a mint, a creation, one that reverts, one that cannot pay its intrinsic
//! gas), then sequenced transactions pay the L1 data fee and the base fee
//! to their vaults; the seal writes Holocene's extraData, the L1 origin's
//! beacon root and the message passer's storage root. Encodings are
//! checked against op-alloy-consensus, the OP Stack's own Rust types; the
//! whole block against kona lives in oracle/.

use alloy_consensus::{Header, TxEip1559, TxEnvelope, TypedTransaction, proofs::calculate_transaction_root};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, TxKind, U256, address};
use op_alloy_consensus::{OpDepositReceipt, OpDepositReceiptWithBloom, OpReceiptEnvelope, TxDeposit};
use tephra_exec::{
    BlockBuilder, BlockChoice, BlockParams, ChainSpec, Eip1559Params, OpChoice, OpenBlockError, SealedBlock,
    SequentialExecutor, StateDb, TxOutcome, Verifier, VerifyRules, chainspec::L2_TO_L1_MESSAGE_PASSER, dev::DevKey,
    params::SEQUENCER_FEE_VAULT,
};
use tephra_l1::{L1Block, L1InfoIsthmus, SystemConfigValues, user_deposit_source_hash};
use tephra_types::{deposit::Deposit, rollup::RollupConfig};

const ETHER: u128 = 1_000_000_000_000_000_000;
const GWEI: u128 = 1_000_000_000;
const BASE_FEE_VAULT: Address = address!("4200000000000000000000000000000000000019");
const L1_FEE_VAULT: Address = address!("420000000000000000000000000000000000001a");
const L1_BLOCK: Address = address!("4200000000000000000000000000000000000015");
const BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE: u64 = 5_007_716;
/// Init code whose runtime code is REVERT(0, 0): PUSH5 <runtime> PUSH1 0
/// MSTORE PUSH1 5 PUSH1 27 RETURN.
const DEPLOY_REVERTER: [u8; 16] =
    [0x64, 0x60, 0x00, 0x60, 0x00, 0xfd, 0x60, 0x00, 0x52, 0x60, 0x05, 0x60, 0x1b, 0xf3, 0x00, 0x00];

struct OpChain {
    spec: ChainSpec,
    rollup: RollupConfig,
    state: StateDb,
    head: Header,
}

impl OpChain {
    fn devnet() -> Self {
        let gz: &[u8] = include_bytes!("../../testdata/op/420110017-genesis-l2.json.gz");
        let mut json = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz), &mut json).unwrap();
        let spec = ChainSpec::from_genesis_json(&json).unwrap();
        let rollup = RollupConfig::from_json(include_str!("../../testdata/op/420110017-rollup.json")).unwrap();
        spec.check_rollup(&rollup).unwrap();
        Self { state: spec.genesis_state(), head: spec.genesis_header().clone(), spec, rollup }
    }

    fn origin(&self, number: u64) -> L1Block {
        L1Block {
            number,
            hash: B256::with_last_byte(u8::try_from(number).unwrap()),
            parent_hash: B256::ZERO,
            timestamp: self.head.timestamp,
            base_fee_per_gas: 7 * u64::try_from(GWEI).unwrap(),
            excess_blob_gas: Some(0),
            blob_gas_used: Some(0),
            mix_hash: B256::repeat_byte(0x5a),
            parent_beacon_block_root: None,
        }
    }

    fn l1_info(&self, origin: &L1Block, sequence_number: u64) -> Deposit {
        let config = SystemConfigValues::from_genesis(&self.rollup.genesis.system_config).unwrap();
        L1InfoIsthmus::new(origin, sequence_number, &config, BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE).deposit()
    }

    fn params(&self, origin: &L1Block, eip1559: Eip1559Params) -> Result<BlockParams, OpenBlockError> {
        let choice = BlockChoice {
            timestamp: self.head.timestamp + self.rollup.block_time,
            beneficiary: SEQUENCER_FEE_VAULT,
            prevrandao: origin.mix_hash,
            extra_data: Bytes::new(),
            op: Some(OpChoice {
                gas_limit: self.rollup.genesis.system_config.gas_limit,
                eip1559,
                parent_beacon_block_root: B256::repeat_byte(0xbe),
            }),
        };
        BlockParams::child_of(&self.spec, &self.head, choice)
    }

    /// Opens the next block on `origin` with `deposits` after its L1-info
    /// deposit, executes `txs` and seals.
    fn block(&mut self, origin: &L1Block, deposits: Vec<Deposit>, txs: Vec<TxEnvelope>) -> SealedBlock {
        self.block_estimating(origin, deposits, txs, true)
    }

    /// As `block`; `estimating`: verify estimates each transaction's L1
    /// data size, as a node's verify stage does (the sequencer then hands
    /// op-revm the fee); otherwise op-revm compresses each itself.
    fn block_estimating(
        &mut self,
        origin: &L1Block,
        deposits: Vec<Deposit>,
        txs: Vec<TxEnvelope>,
        estimating: bool,
    ) -> SealedBlock {
        let params = self.params(origin, Eip1559Params::default()).unwrap();
        let all = std::iter::once(self.l1_info(origin, 0)).chain(deposits).collect();
        let mut builder = BlockBuilder::open_op(params.clone(), &mut self.state, all).unwrap();
        let verifier = Verifier::new(VerifyRules {
            chain_id: self.spec.chain_id(),
            spec: params.spec,
            block_gas_limit: params.gas_limit,
            base_fee_per_gas: params.base_fee_per_gas,
            allow_unprotected: false,
        })
        .estimating_l1_data(estimating);
        let verified = txs.iter().map(|tx| verifier.verify(&tx.encoded_2718()).unwrap()).collect();
        let mut dropped = Vec::new();
        builder.execute(&mut SequentialExecutor, &mut self.state, verified, |_, outcome| {
            if !matches!(outcome, TxOutcome::Included(_)) {
                dropped.push(format!("{outcome:?}"));
            }
        });
        assert!(dropped.is_empty(), "{dropped:?}");
        let sealed = builder.seal(&mut self.state);
        self.head = sealed.header.clone();
        sealed
    }
}

fn user_deposit(origin: &L1Block, log_index: u64, from: Address, to: Option<Address>, mint: u128) -> Deposit {
    Deposit {
        source_hash: user_deposit_source_hash(origin.hash, log_index),
        from,
        to,
        mint: U256::from(mint),
        value: U256::ZERO,
        gas_limit: 200_000,
        is_system_transaction: false,
        data: Bytes::new(),
    }
}

/// 10 ether bridged to `to` by an L1 account: `to`'s nonce stays as it was.
fn funding(origin: &L1Block, to: Address) -> Deposit {
    Deposit {
        value: U256::from(10 * ETHER),
        ..user_deposit(origin, 0, Address::repeat_byte(0xd0), Some(to), 10 * ETHER)
    }
}

fn transfer(key: &DevKey, chain_id: u64, nonce: u64, to: Address, value: u128) -> TxEnvelope {
    key.sign(TypedTransaction::Eip1559(TxEip1559 {
        chain_id,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 10 * GWEI,
        max_priority_fee_per_gas: GWEI / 10,
        to: TxKind::Call(to),
        value: U256::from(value),
        access_list: Default::default(),
        input: Bytes::new(),
    }))
}

#[test]
fn deposits_open_the_block_and_keep_their_mint_even_when_they_fail() {
    let mut chain = OpChain::devnet();
    let origin = chain.origin(1);
    let (alice, bob, carol, dave) =
        (DevKey::dev(0).address(), DevKey::dev(1).address(), DevKey::dev(2), DevKey::dev(3));
    let creation = Deposit {
        data: Bytes::copy_from_slice(&DEPLOY_REVERTER),
        ..user_deposit(&origin, 1, carol.address(), None, ETHER)
    };
    let reverter = carol.address().create(0);
    let reverting = Deposit { value: U256::from(ETHER / 2), ..user_deposit(&origin, 2, bob, Some(reverter), ETHER) };
    // 20,000 gas cannot pay a call's intrinsic 21,000: a failed deposit.
    let starved = Deposit { gas_limit: 20_000, ..user_deposit(&origin, 3, dave.address(), Some(alice), 3 * ETHER) };
    let deposits = vec![user_deposit(&origin, 0, alice, Some(alice), 10 * ETHER), creation, reverting, starved];
    let block = chain.block(&origin, deposits.clone(), Vec::new());

    assert_eq!(block.deposits.len(), 5, "the L1-info deposit, then the four user deposits");
    let statuses: Vec<bool> = block.deposits.iter().map(|d| d.receipt.status.coerce_status()).collect();
    assert_eq!(statuses, [true, true, true, false, false]);
    assert_eq!(chain.state.balance(&alice), U256::from(10 * ETHER));
    let code = chain.state.account(&reverter).map(|a| a.code_hash);
    assert!(
        code.is_some_and(|hash| hash != revm::primitives::KECCAK_EMPTY),
        "the creation deposit deployed its contract"
    );
    assert_eq!(block.deposits[2].contract_address, Some(reverter));
    // A reverted deposit keeps its mint (not its value) and its nonce.
    assert_eq!(chain.state.balance(&bob), U256::from(ETHER));
    assert_eq!(chain.state.nonce(&bob), 1);
    assert_eq!(chain.state.balance(&reverter), U256::ZERO);
    // A deposit that cannot start uses its whole gas limit and still mints.
    let failed = &block.deposits[4];
    assert_eq!(failed.gas_used, 20_000);
    assert_eq!(chain.state.balance(&dave.address()), U256::from(3 * ETHER));
    assert_eq!(chain.state.nonce(&dave.address()), 1);
    assert_eq!(failed.deposit_nonce, 0);
    // Block gas counts the deposits, the L1-info one included.
    let used: u64 = block.deposits.iter().map(|d| d.gas_used).sum();
    assert_eq!(block.header.gas_used, used);
    // The L1Block predeploy holds the origin the L1-info deposit named
    // (slot 1 its base fee, slot 2 its hash).
    assert_eq!(chain.state.storage_at(&L1_BLOCK, U256::from(1)), U256::from(origin.base_fee_per_gas));
    assert_eq!(chain.state.storage_at(&L1_BLOCK, U256::from(2)), U256::from_be_bytes(origin.hash.0));
    // Every deposit's hash and encoding is op-alloy-consensus's.
    for (executed, deposit) in block.deposits[1..].iter().zip(&deposits) {
        let theirs = TxDeposit {
            source_hash: deposit.source_hash,
            from: deposit.from,
            to: deposit.to.map_or(TxKind::Create, TxKind::Call),
            mint: deposit.mint.to(),
            value: deposit.value,
            gas_limit: deposit.gas_limit,
            is_system_transaction: false,
            input: deposit.data.clone(),
        };
        assert_eq!(executed.encoded, Bytes::from(theirs.encoded_2718()));
        assert_eq!(executed.hash, theirs.tx_hash());
    }
}

#[test]
fn the_roots_and_header_follow_the_op_stack_rules() {
    let mut chain = OpChain::devnet();
    let origin = chain.origin(1);
    let alice = DevKey::dev(0);
    let funding = funding(&origin, alice.address());
    let genesis = chain.head.clone();
    let chain_id = chain.spec.chain_id();
    let pay = transfer(&alice, chain_id, 0, address!("000000000000000000000000000000000000b0b0"), ETHER);
    let block = chain.block(&origin, vec![funding], vec![pay.clone()]);
    let h = &block.header;
    // Holocene: the Canyon parameters (250, 6) when the system config sets none.
    assert_eq!(h.extra_data, Bytes::from_static(&[0, 0, 0, 0, 0xfa, 0, 0, 0, 6]));
    assert_eq!(h.gas_limit, 60_000_000);
    assert_eq!(h.beneficiary, SEQUENCER_FEE_VAULT);
    assert_eq!(h.mix_hash, origin.mix_hash);
    assert_eq!(h.parent_beacon_block_root, Some(B256::repeat_byte(0xbe)));
    assert_eq!(h.timestamp, genesis.timestamp + 2);
    assert_eq!((h.blob_gas_used, h.excess_blob_gas), (Some(0), Some(0)));
    // Isthmus: the message passer's storage root (untouched: genesis's).
    assert_eq!(h.withdrawals_root, genesis.withdrawals_root);
    assert_eq!(h.withdrawals_root, Some(chain.state.storage_root_of(&L2_TO_L1_MESSAGE_PASSER)));
    // Both tries take the deposits first, in op-alloy-consensus's encodings.
    let mut txs: Vec<op_alloy_consensus::OpTxEnvelope> = Vec::new();
    for d in &block.deposits {
        let decoded = <op_alloy_consensus::OpTxEnvelope as alloy_eips::eip2718::Decodable2718>::decode_2718(
            &mut d.encoded.as_ref(),
        )
        .unwrap();
        txs.push(decoded);
    }
    let pay = <op_alloy_consensus::OpTxEnvelope as alloy_eips::eip2718::Decodable2718>::decode_2718(
        &mut pay.encoded_2718().as_slice(),
    );
    txs.push(pay.unwrap());
    assert_eq!(h.transactions_root, calculate_transaction_root(&txs));
    let mut receipts: Vec<OpReceiptEnvelope> = block
        .deposits
        .iter()
        .map(|d| {
            let receipt = OpDepositReceipt {
                inner: d.receipt.clone(),
                deposit_nonce: Some(d.deposit_nonce),
                deposit_receipt_version: d.receipt_version,
            };
            OpReceiptEnvelope::Deposit(OpDepositReceiptWithBloom::from(receipt))
        })
        .collect();
    receipts.push(OpReceiptEnvelope::Eip1559(block.transactions[0].receipt.clone().into()));
    assert_eq!(
        h.receipts_root,
        alloy_consensus::proofs::ordered_trie_root_with_encoder(&receipts, |r, out| r.encode_2718(out))
    );
    assert_eq!(block.deposits[0].receipt_version, Some(1), "Canyon on");
    assert_eq!(
        block.deposits[0].deposit.source_hash,
        tephra_l1::l1_info::l1_info_source_hash(origin.hash, 0),
        "the L1-info deposit comes first"
    );
    // The next block's base fee follows Holocene's rule from this header.
    let next = chain.params(&chain.origin(1), Eip1559Params::default()).unwrap();
    let expected = alloy_eips::eip1559::calc_next_block_base_fee(
        h.gas_used,
        h.gas_limit,
        h.base_fee_per_gas.unwrap(),
        alloy_eips::eip1559::BaseFeeParams::new(250, 6),
    );
    assert_eq!(next.base_fee_per_gas, expected);
}

#[test]
fn user_transactions_pay_the_l1_data_fee_and_the_base_fee_to_their_vaults() {
    let mut chain = OpChain::devnet();
    let origin = chain.origin(1);
    let alice = DevKey::dev(0);
    let funding = funding(&origin, alice.address());
    chain.block(&origin, vec![funding], Vec::new());
    let before = |state: &StateDb, a: Address| state.balance(&a);
    let vaults = [SEQUENCER_FEE_VAULT, BASE_FEE_VAULT, L1_FEE_VAULT].map(|a| before(&chain.state, a));
    let alice_before = chain.state.balance(&alice.address());
    let chain_id = chain.spec.chain_id();
    let pay = transfer(&alice, chain_id, 0, address!("000000000000000000000000000000000000b0b0"), ETHER);
    let block = chain.block(&origin, Vec::new(), vec![pay.clone()]);
    let tx = &block.transactions[0];
    let base_fee = U256::from(block.header.base_fee_per_gas.unwrap());
    let gas = U256::from(tx.gas_used);
    let tip = U256::from(GWEI / 10);
    let info = block.l1_block_info.clone().expect("an OP block's L1 fee parameters");
    assert_eq!(info.l1_base_fee, U256::from(7 * GWEI));
    assert_eq!(info.l1_base_fee_scalar, U256::from(0x558));
    assert_eq!(info.l1_blob_base_fee_scalar, Some(U256::from(0xc5fc5)));
    let fees = tephra_exec::op_tx_fees(&info, &tx.tx.encoded, tx.gas_used, block_op_spec(&chain, &block));
    let l1_fee = fees.l1_fee;
    assert!(l1_fee > U256::ZERO);
    assert_eq!(fees.operator_fee, U256::ZERO, "the devnet's operator fee parameters are zero");
    // Fjord: a transfer's compressed size is under the 100-byte floor.
    assert_eq!(fees.l1_gas_used, U256::from(1600));
    let paid = alice_before - chain.state.balance(&alice.address()) - U256::from(ETHER);
    assert_eq!(paid, gas * (base_fee + tip) + l1_fee, "gas at the effective price plus the L1 data fee");
    let after = [SEQUENCER_FEE_VAULT, BASE_FEE_VAULT, L1_FEE_VAULT].map(|a| chain.state.balance(&a));
    assert_eq!(after[0] - vaults[0], gas * tip, "the priority fee to the sequencer fee vault");
    assert_eq!(after[1] - vaults[1], gas * base_fee, "the base fee to its vault, not burnt");
    assert_eq!(after[2] - vaults[2], l1_fee, "the L1 data fee to its vault");
}

fn block_op_spec(chain: &OpChain, block: &SealedBlock) -> op_revm::OpSpecId {
    chain.spec.op_spec_at(block.header.timestamp).unwrap()
}

#[test]
fn an_op_block_needs_its_op_parameters_and_an_ethereum_block_refuses_them() {
    let chain = OpChain::devnet();
    let origin = chain.origin(1);
    let mut choice = BlockChoice { timestamp: chain.head.timestamp + 2, ..BlockChoice::default() };
    assert_eq!(BlockParams::child_of(&chain.spec, &chain.head, choice.clone()), Err(OpenBlockError::OpChoiceMissing));
    let bad = Eip1559Params { denominator: 0, elasticity: 3 };
    assert_eq!(chain.params(&origin, bad), Err(OpenBlockError::Eip1559Params(bad)));
    let dev = ChainSpec::dev();
    choice.op = Some(OpChoice::default());
    choice.timestamp = dev.genesis_header().timestamp + 1;
    assert_eq!(BlockParams::child_of(&dev, dev.genesis_header(), choice), Err(OpenBlockError::OpChoiceOnEthereum));
    // The system config's own parameters go into extraData as they are.
    let own = chain.params(&origin, Eip1559Params { denominator: 100, elasticity: 4 }).unwrap();
    assert_eq!(own.extra_data, Bytes::from_static(&[0, 0, 0, 0, 100, 0, 0, 0, 4]));
}

/// The L1 data fee from the size verify estimated is the fee op-revm
/// computes itself: a block of varied transactions seals to the same hash
/// either way.
#[test]
fn the_fee_from_the_verify_stages_estimate_changes_no_block() {
    let hashes: Vec<_> = [false, true]
        .into_iter()
        .map(|estimating| {
            let mut chain = OpChain::devnet();
            let origin = chain.origin(1);
            let keys: Vec<DevKey> = (0..4).map(DevKey::dev).collect();
            let funding = keys.iter().enumerate().map(|(i, k)| Deposit {
                source_hash: user_deposit_source_hash(origin.hash, i as u64),
                ..funding(&origin, k.address())
            });
            chain.block(&origin, funding.collect(), Vec::new());
            let chain_id = chain.spec.chain_id();
            let txs = keys
                .iter()
                .enumerate()
                .flat_map(|(i, key)| {
                    (0..3u64).map(move |nonce| {
                        let input = vec![u8::try_from(i).unwrap(); 40 * usize::try_from(nonce).unwrap() * (i + 1)];
                        key.sign(TypedTransaction::Eip1559(TxEip1559 {
                            chain_id,
                            nonce,
                            gas_limit: 200_000,
                            max_fee_per_gas: 10 * GWEI,
                            max_priority_fee_per_gas: GWEI / 10,
                            to: TxKind::Call(Address::repeat_byte(0xb1)),
                            value: U256::from(1),
                            access_list: Default::default(),
                            input: Bytes::from(input),
                        }))
                    })
                })
                .collect();
            let block = chain.block_estimating(&origin, Vec::new(), txs, estimating);
            assert_eq!(block.transactions.len(), 12);
            block.hash
        })
        .collect();
    assert_eq!(hashes[0], hashes[1]);
}
