//! What the execution benchmarks share: the dev chain's first block and the test token.
#![allow(dead_code, reason = "each benchmark binary uses a part of it")]

use alloy_consensus::{TxEip1559, TxEnvelope, TypedTransaction};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, TxKind, U256};
use tephra_exec::{
    BlockBuilder, BlockParams, ChainSpec, SequentialExecutor, StateDb, VerifiedTx, Verifier,
    dev::{DevKey, first_block},
};

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
