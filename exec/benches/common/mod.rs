//! What the execution benchmarks share: the dev chain's first block, the
//! test token, and an OP Stack chain (testdata/op) to hold them side by side.
#![allow(dead_code, reason = "each benchmark binary uses a part of it")]

use alloy_consensus::{TxEip1559, TxEnvelope, TypedTransaction};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, TxKind, U256};
use tephra_exec::{
    BlockBuilder, BlockChoice, BlockParams, ChainSpec, Eip1559Params, OpChoice, SequentialExecutor, StateDb,
    VerifiedTx, Verifier, VerifyRules,
    dev::{DevKey, first_block},
};
use tephra_types::{deposit::Deposit, rollup::RollupConfig};

pub const GWEI: u128 = 1_000_000_000;

/// The committed test token's creation code with `supply` as constructor argument.
pub fn token_init_code(supply: U256) -> Bytes {
    let hex = include_str!("../../../contracts/Token.bin");
    let mut code = alloy_primitives::hex::decode(hex.trim()).expect("Token.bin is hex");
    code.extend_from_slice(&supply.to_be_bytes::<32>());
    code.into()
}

pub fn call(key: &DevKey, chain_id: u64, nonce: u64, to: TxKind, input: Vec<u8>, gas_limit: u64) -> TxEnvelope {
    key.sign(TypedTransaction::Eip1559(TxEip1559 {
        chain_id,
        nonce,
        gas_limit,
        max_fee_per_gas: 10 * GWEI,
        max_priority_fee_per_gas: GWEI,
        to,
        input: input.into(),
        ..Default::default()
    }))
}

pub fn abi_call(signature: &str, address: Address, amount: u64) -> Vec<u8> {
    tephra_testkit::abi::calldata(signature, &[tephra_testkit::abi::word(address), U256::from(amount)])
}

/// The dev chain's first block, and a verifier for it.
pub struct Bench {
    pub spec: ChainSpec,
    pub verifier: Verifier,
    pub params: BlockParams,
}

impl Bench {
    pub fn new() -> Self {
        let spec = ChainSpec::dev();
        let (params, verifier) = first_block(&spec, spec.genesis_header().gas_limit);
        Self { spec, verifier, params }
    }

    /// The dev state plus `count` funded accounts, `DevKey::from_seed(0..count)`.
    pub fn funded_state(&self, count: usize) -> StateDb {
        let mut state = self.spec.genesis_state();
        for i in 0..count {
            state.add_balance(DevKey::from_seed(i as u64).address(), U256::from(10u128.pow(20)));
        }
        state.state_root();
        state
    }

    /// `count` funded senders, each sending one transfer to a fresh address.
    pub fn transfers(&self, count: usize) -> (StateDb, Vec<VerifiedTx>) {
        let txs = (0..count)
            .map(|i| {
                let to = Address::with_last_byte(1).create(i as u64);
                let raw =
                    DevKey::from_seed(i as u64).transfer(self.spec.chain_id(), 0, to, U256::from(1)).encoded_2718();
                self.verifier.verify(&raw).expect("valid transfer")
            })
            .collect();
        (self.funded_state(count), txs)
    }

    /// The dev state plus `count` funded accounts, `DevKey::from_seed(0..count)`,
    /// each holding 1,000,000 units of the test token; the token's address and
    /// parameters for a block with room for anything.
    pub fn token_holders(&self, count: usize) -> (StateDb, Address, BlockParams) {
        let chain_id = self.spec.chain_id();
        let mut state = self.funded_state(count);
        let minter = DevKey::dev(0);
        let token = minter.address().create(0);
        let mut setup =
            vec![call(&minter, chain_id, 0, TxKind::Create, token_init_code(U256::ZERO).to_vec(), 2_000_000)];
        for i in 0..count {
            let holder = DevKey::from_seed(i as u64).address();
            let mint = abi_call("mint(address,uint256)", holder, 1_000_000);
            setup.push(call(&minter, chain_id, 1 + i as u64, TxKind::Call(token), mint, 100_000));
        }
        let setup = setup.iter().map(|tx| self.verifier.verify(&tx.encoded_2718()).expect("valid")).collect();
        let mut params = self.params.clone();
        params.gas_limit = u64::MAX / 2;
        let mut builder = BlockBuilder::open(params.clone(), &mut state);
        builder.execute(&mut SequentialExecutor, &mut state, setup, |_, _| {});
        assert_eq!(builder.transactions().len(), count + 1);
        builder.seal(&mut state);
        state.state_root();
        (state, token, params)
    }
}

/// The Isthmus devnet 420110017 (testdata/op): an OP Stack chain whose
/// blocks open with an L1-info deposit and charge the L1 data fee.
pub struct OpBench {
    pub spec: ChainSpec,
    pub rollup: RollupConfig,
    pub verifier: Verifier,
    pub params: BlockParams,
}

impl OpBench {
    pub fn new() -> Self {
        let gz: &[u8] = include_bytes!("../../../testdata/op/420110017-genesis-l2.json.gz");
        let mut json = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz), &mut json).expect("the gzip");
        let spec = ChainSpec::from_genesis_json(&json).expect("the devnet genesis");
        let rollup = RollupConfig::from_json(include_str!("../../../testdata/op/420110017-rollup.json")).expect("json");
        let genesis = spec.genesis_header();
        let choice = BlockChoice {
            timestamp: genesis.timestamp + rollup.block_time,
            beneficiary: tephra_exec::params::SEQUENCER_FEE_VAULT,
            op: Some(OpChoice { gas_limit: u64::MAX / 2, eip1559: Eip1559Params::default(), ..OpChoice::default() }),
            ..BlockChoice::default()
        };
        let params = BlockParams::child_of(&spec, genesis, choice).expect("the genesis has a child");
        let verifier = Verifier::new(VerifyRules {
            chain_id: spec.chain_id(),
            spec: params.spec,
            block_gas_limit: params.gas_limit,
            base_fee_per_gas: params.base_fee_per_gas,
            allow_unprotected: false,
        })
        .estimating_l1_data(true);
        Self { spec, rollup, verifier, params }
    }

    /// The block's L1-info deposit, on an L1 origin paying 7 gwei.
    pub fn l1_info(&self) -> Deposit {
        let origin = tephra_l1::L1Block {
            number: 1,
            hash: alloy_primitives::B256::repeat_byte(1),
            parent_hash: alloy_primitives::B256::ZERO,
            timestamp: self.spec.genesis_header().timestamp,
            base_fee_per_gas: 7_000_000_000,
            excess_blob_gas: Some(0),
            blob_gas_used: Some(0),
            mix_hash: alloy_primitives::B256::ZERO,
            parent_beacon_block_root: None,
        };
        let config = tephra_l1::SystemConfigValues::from_genesis(&self.rollup.genesis.system_config).expect("scalars");
        tephra_l1::L1InfoIsthmus::new(&origin, 0, &config, 5_007_716).deposit()
    }

    /// As `Bench::token_holders`, on this chain: the state, the token, and
    /// the block every measured run opens (with its L1-info deposit).
    pub fn token_holders(&self, count: usize) -> (StateDb, Address) {
        let chain_id = self.spec.chain_id();
        let mut state = self.spec.genesis_state();
        for i in 0..count {
            state.add_balance(DevKey::from_seed(i as u64).address(), U256::from(10u128.pow(20)));
        }
        let minter = DevKey::dev(0);
        state.add_balance(minter.address(), U256::from(10u128.pow(22)));
        let token = minter.address().create(0);
        let mut setup =
            vec![call(&minter, chain_id, 0, TxKind::Create, token_init_code(U256::ZERO).to_vec(), 2_000_000)];
        for i in 0..count {
            let mint = abi_call("mint(address,uint256)", DevKey::from_seed(i as u64).address(), 1_000_000);
            setup.push(call(&minter, chain_id, 1 + i as u64, TxKind::Call(token), mint, 100_000));
        }
        let setup = setup.iter().map(|tx| self.verifier.verify(&tx.encoded_2718()).expect("valid")).collect();
        let mut builder =
            BlockBuilder::open_op(self.params.clone(), &mut state, vec![self.l1_info()]).expect("the deposit runs");
        builder.execute(&mut SequentialExecutor, &mut state, setup, |_, _| {});
        assert_eq!(builder.transactions().len(), count + 1);
        state.state_root();
        (state, token)
    }
}
