//! A software key in a file: for development. The key file holds 32 secret
//! bytes as hex, is created with mode 0600 and is never printed.

use std::{
    fs,
    io::{Read, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

use alloy_primitives::Address;
use secp256k1::{Message, PublicKey, SECP256K1, SecretKey};
use tephra_types::crypto::address_of;
use zeroize::Zeroizing;

use crate::{Payload, SignError, Signature65, Signer};

/// 32 random bytes from the kernel that make a valid secret key.
fn random_secret() -> Result<Zeroizing<[u8; 32]>, SignError> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    loop {
        fs::File::open("/dev/urandom")?.read_exact(bytes.as_mut_slice())?;
        if SecretKey::from_byte_array(*bytes).is_ok() {
            return Ok(bytes);
        }
    }
}

/// A secp256k1 key loaded from a file.
pub struct FileSigner {
    secret: SecretKey,
    public: PublicKey,
    address: Address,
}

impl core::fmt::Debug for FileSigner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FileSigner").field("address", &self.address).field("secret", &"REDACTED").finish()
    }
}

impl FileSigner {
    /// Loads the key at `path`.
    pub fn load(path: &Path) -> Result<Self, SignError> {
        let text = Zeroizing::new(fs::read_to_string(path)?);
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim().trim_start_matches("0x"), bytes.as_mut_slice())
            .map_err(|_| SignError::Key(format!("{} does not hold 32 hex-encoded bytes", path.display())))?;
        Self::from_bytes(&bytes)
    }

    /// Loads the key at `path`, creating a fresh random one first if there is
    /// none. Returns whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), SignError> {
        if path.exists() {
            return Ok((Self::load(path)?, false));
        }
        let bytes = random_secret()?;
        let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        file.write_all(Zeroizing::new(hex::encode(bytes.as_slice())).as_bytes())?;
        file.sync_all()?;
        Ok((Self::from_bytes(&bytes)?, true))
    }

    /// A fresh random key held in memory only.
    pub fn random() -> Result<Self, SignError> {
        Self::from_bytes(&*random_secret()?)
    }

    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, SignError> {
        let secret = SecretKey::from_byte_array(*bytes).map_err(|e| SignError::Key(e.to_string()))?;
        let public = secret.public_key(SECP256K1);
        Ok(Self { secret, public, address: address_of(&public) })
    }
}

impl Signer for FileSigner {
    fn public_key(&self) -> PublicKey {
        self.public
    }

    fn address(&self) -> Address {
        self.address
    }

    fn sign(&self, payload: &Payload<'_>) -> Result<Signature65, SignError> {
        // libsecp256k1 always produces low-s signatures.
        let digest = Message::from_digest(payload.signing_hash().0);
        let (recovery_id, compact) = SECP256K1.sign_ecdsa_recoverable(digest, &self.secret).serialize_compact();
        let mut signature = [0u8; 65];
        signature[..64].copy_from_slice(&compact);
        signature[64] = u8::try_from(i32::from(recovery_id)).expect("a recovery id is 0 to 3");
        Ok(Signature65(signature))
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::B256;

    use super::*;
    use crate::recover;

    #[test]
    fn created_keys_persist_sign_and_recover() {
        let dir = tephra_testkit::fresh_dir("file-signer");
        let path = dir.join("block.key");
        let (signer, created) = FileSigner::load_or_create(&path).unwrap();
        assert!(created);
        let (again, created) = FileSigner::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(signer.address(), again.address());
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!format!("{signer:?}").contains(&fs::read_to_string(&path).unwrap()));
        let payload =
            Payload::SealedBlock { chain_id: 31337, number: 1, block_hash: B256::repeat_byte(7), leader_epoch: 0 };
        let signature = signer.sign(&payload).unwrap();
        assert_eq!(recover(&signature, payload.signing_hash()), Some(signer.address()));
        fs::remove_dir_all(&dir).unwrap();
    }

    use std::os::unix::fs::PermissionsExt;
}
