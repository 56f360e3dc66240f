//! The standard development keys (mnemonic `test test test test test test test
//! test test test test junk`, paths m/44'/60'/0'/0/0..9), funded by the dev
//! genesis, and signing with them: tests, examples and the bench harness use
//! these, exactly as anvil and hardhat users do.

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope, TypedTransaction};
use alloy_primitives::{Address, B256, Signature, TxKind, U256, b256, keccak256};
use secp256k1::{Message, SECP256K1, SecretKey};
use tephra_types::crypto::address_of;

/// The ten dev private keys, in derivation order.
pub const DEV_PRIVATE_KEYS: [B256; 10] = [
    b256!("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"),
    b256!("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"),
    b256!("5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"),
    b256!("7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"),
    b256!("47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a"),
    b256!("8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba"),
    b256!("92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e"),
    b256!("4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356"),
    b256!("dbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97"),
    b256!("2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6"),
];

/// A secp256k1 key that signs transactions.
#[derive(Clone)]
pub struct DevKey {
    secret: SecretKey,
    address: Address,
}

impl core::fmt::Debug for DevKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DevKey").field("address", &self.address).field("secret", &"REDACTED").finish()
    }
}

impl DevKey {
    /// The key for 32 secret bytes; `None` if they are not a valid scalar.
    pub fn from_bytes(secret: &B256) -> Option<Self> {
        let secret = SecretKey::from_byte_array(secret.0).ok()?;
        Some(Self { secret, address: address_of(&secret.public_key(SECP256K1)) })
    }

    /// Dev key `index` (0..10).
    pub fn dev(index: usize) -> Self {
        Self::from_bytes(&DEV_PRIVATE_KEYS[index]).expect("dev keys are valid scalars")
    }

    /// A deterministic key from a seed: for generated accounts in tests and
    /// workloads. Seeds whose hash is not a valid scalar are rehashed.
    pub fn from_seed(seed: u64) -> Self {
        let mut bytes = keccak256(seed.to_be_bytes());
        loop {
            if let Some(key) = Self::from_bytes(&bytes) {
                return key;
            }
            bytes = keccak256(bytes);
        }
    }

    pub fn address(&self) -> Address {
        self.address
    }

    /// Signs a 32-byte hash: r, s (low) and the y parity.
    pub fn sign_hash(&self, hash: B256) -> Signature {
        let signature = SECP256K1.sign_ecdsa_recoverable(Message::from_digest(hash.0), &self.secret);
        let (recovery_id, compact) = signature.serialize_compact();
        Signature::new(
            U256::from_be_slice(&compact[..32]),
            U256::from_be_slice(&compact[32..]),
            i32::from(recovery_id) != 0,
        )
    }

    /// A signed EIP-1559 ETH transfer: 21,000 gas, a 100 gwei fee cap and a
    /// 1 wei tip. The workload of tests and benchmarks.
    pub fn transfer(&self, chain_id: u64, nonce: u64, to: Address, value: U256) -> TxEnvelope {
        self.sign(TypedTransaction::Eip1559(TxEip1559 {
            chain_id,
            nonce,
            gas_limit: 21_000,
            max_fee_per_gas: 100_000_000_000,
            max_priority_fee_per_gas: 1,
            to: TxKind::Call(to),
            value,
            ..Default::default()
        }))
    }

    /// Signs a transaction into its EIP-2718 envelope.
    pub fn sign(&self, tx: TypedTransaction) -> TxEnvelope {
        let signature = self.sign_hash(tx.signature_hash());
        match tx {
            TypedTransaction::Legacy(tx) => tx.into_signed(signature).into(),
            TypedTransaction::Eip2930(tx) => tx.into_signed(signature).into(),
            TypedTransaction::Eip1559(tx) => tx.into_signed(signature).into(),
            TypedTransaction::Eip4844(tx) => tx.into_signed(signature).into(),
            TypedTransaction::Eip7702(tx) => tx.into_signed(signature).into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChainSpec;

    #[test]
    fn dev_keys_are_the_funded_dev_accounts() {
        let spec = ChainSpec::dev();
        for index in 0..DEV_PRIVATE_KEYS.len() {
            let address = DevKey::dev(index).address();
            assert!(spec.genesis().alloc.contains_key(&address), "dev key {index} ({address}) is not funded");
        }
        assert_eq!(DevKey::dev(0).address(), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266".parse::<Address>().unwrap());
    }
}

/// splitmix64: a seeded, replayable source of randomness for tests,
/// workloads and fault schedules (not for keys).
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn pick(&mut self, n: usize) -> usize {
        usize::try_from(self.below(n as u64)).expect("below a usize")
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The parameters of block 1 on `spec` (timestamp 1, a fixed beneficiary)
/// with `gas_limit`, and the verifier for it: what benchmarks and the bench
/// harness's floor execute into.
pub fn first_block(spec: &crate::ChainSpec, gas_limit: u64) -> (crate::BlockParams, crate::Verifier) {
    let choice = crate::BlockChoice {
        timestamp: 1,
        beneficiary: Address::repeat_byte(0xbe),
        prevrandao: B256::ZERO,
        extra_data: alloy_primitives::Bytes::new(),
        op: None,
    };
    let mut params =
        crate::BlockParams::child_of(spec, spec.genesis_header(), choice).expect("the genesis has a child");
    params.gas_limit = gas_limit;
    let verifier = crate::Verifier::new(crate::VerifyRules {
        chain_id: spec.chain_id(),
        spec: params.spec,
        block_gas_limit: params.gas_limit,
        base_fee_per_gas: params.base_fee_per_gas,
        allow_unprotected: false,
    });
    (params, verifier)
}

pub fn median(mut samples: Vec<std::time::Duration>) -> std::time::Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Runs `setup` then times `run` on it, `rounds` times after one warm-up;
/// the median of the timed runs.
pub fn measure<S>(rounds: usize, mut setup: impl FnMut() -> S, mut run: impl FnMut(S)) -> std::time::Duration {
    run(setup());
    median(
        (0..rounds)
            .map(|_| {
                let input = setup();
                let start = std::time::Instant::now();
                run(input);
                start.elapsed()
            })
            .collect(),
    )
}
