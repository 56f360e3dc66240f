//! A secp256k1 key in a YubiHSM 2, over USB or through yubihsm-connector
//! (HTTP). The YubiHSM returns DER signatures with any `s`: tephra normalises
//! it and finds the recovery id.

use std::path::PathBuf;

use secp256k1::{PublicKey, ecdsa};
use yubihsm::{Client, Connector, Credentials, HttpConfig, object};
use zeroize::Zeroizing;

use crate::{Payload, SignError, Signature65, Signer, ethereum_signature};

/// How to reach the device.
#[derive(Clone, Debug)]
pub enum YubiConnector {
    /// yubihsm-connector at this address and port.
    Http { addr: String, port: u16 },
    /// Directly over USB (cargo feature `yubihsm-usb`).
    #[cfg(feature = "yubihsm-usb")]
    Usb,
}

#[derive(Clone, Debug)]
pub struct YubiHsmConfig {
    pub connector: YubiConnector,
    pub auth_key_id: u16,
    /// A file holding the authentication key's password (read once,
    /// zeroized, never printed).
    pub password_file: PathBuf,
    pub key_id: u16,
}

struct SessionOnly {
    client: Client,
}

pub struct YubiHsmSigner {
    client: Client,
    key_id: object::Id,
    public_key: PublicKey,
}

impl core::fmt::Debug for YubiHsmSigner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("YubiHsmSigner")
            .field("address", &self.address())
            .field("key_id", &self.key_id)
            .field("password", &"REDACTED")
            .finish()
    }
}

fn device(context: &str) -> impl FnOnce(yubihsm::client::Error) -> SignError + '_ {
    move |error| SignError::Device(format!("{context}: {error}"))
}

impl YubiHsmSigner {
    pub fn open(config: &YubiHsmConfig) -> Result<Self, SignError> {
        let (connector, credentials) = Self::credentials(config)?;
        Self::with_connector(connector, credentials, config.key_id)
    }

    /// A session without a key yet: for `generate`.
    fn connect(config: &YubiHsmConfig) -> Result<SessionOnly, SignError> {
        let (connector, credentials) = Self::credentials(config)?;
        Ok(SessionOnly { client: Client::open(connector, credentials, true).map_err(device("connecting"))? })
    }

    fn credentials(config: &YubiHsmConfig) -> Result<(Connector, Credentials), SignError> {
        let connector = match &config.connector {
            YubiConnector::Http { addr, port } => {
                Connector::http(&HttpConfig { addr: addr.clone(), port: *port, ..HttpConfig::default() })
            }
            #[cfg(feature = "yubihsm-usb")]
            YubiConnector::Usb => Connector::usb(&yubihsm::UsbConfig::default()),
        };
        let password = Zeroizing::new(std::fs::read_to_string(&config.password_file)?);
        let credentials = Credentials::from_password(config.auth_key_id, password.trim().as_bytes());
        Ok((connector, credentials))
    }

    /// Generates a secp256k1 signing key with object id `key_id` in the device.
    pub fn generate(config: &YubiHsmConfig) -> Result<Self, SignError> {
        let signer = Self::connect(config)?;
        signer
            .client
            .generate_asymmetric_key(
                config.key_id,
                "tephra block key".into(),
                yubihsm::Domain::DOM1,
                yubihsm::Capability::SIGN_ECDSA,
                yubihsm::asymmetric::Algorithm::EcK256,
            )
            .map_err(device("generating"))?;
        Self::open(config)
    }

    /// Opens the key `key_id` through `connector` (tests pass the crate's MockHsm).
    pub fn with_connector(connector: Connector, credentials: Credentials, key_id: u16) -> Result<Self, SignError> {
        let client = Client::open(connector, credentials, true).map_err(device("connecting"))?;
        let public = client.get_public_key(key_id).map_err(device("reading the public key"))?;
        let mut uncompressed = [0u8; 65];
        uncompressed[0] = 0x04;
        let body = public.as_slice();
        if body.len() != 64 {
            return Err(SignError::Key(format!("key {key_id} is not secp256k1 ({} bytes)", body.len())));
        }
        uncompressed[1..].copy_from_slice(body);
        let public_key = PublicKey::from_slice(&uncompressed).map_err(|e| SignError::Key(e.to_string()))?;
        Ok(Self { client, key_id, public_key })
    }
}

impl Signer for YubiHsmSigner {
    fn public_key(&self) -> PublicKey {
        self.public_key
    }

    fn sign(&self, payload: &Payload<'_>) -> Result<Signature65, SignError> {
        let hash = payload.signing_hash();
        let der = self.client.sign_ecdsa_prehash_raw(self.key_id, hash.as_slice()).map_err(device("signing"))?;
        let signature = ecdsa::Signature::from_der(&der).map_err(|e| SignError::Device(format!("DER: {e}")))?;
        ethereum_signature(hash, &signature.serialize_compact(), self.address())
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::B256;
    use yubihsm::{Capability, Domain, asymmetric};

    use super::*;
    use crate::recover;

    #[test]
    fn mock_hsm_signatures_are_low_s_and_recover() {
        let connector = Connector::mockhsm();
        let admin = Client::open(connector.clone(), Credentials::default(), true).unwrap();
        admin
            .generate_asymmetric_key(
                0x0101,
                "tephra block key".into(),
                Domain::DOM1,
                Capability::SIGN_ECDSA,
                asymmetric::Algorithm::EcK256,
            )
            .unwrap();
        let signer = YubiHsmSigner::with_connector(connector, Credentials::default(), 0x0101).unwrap();
        assert!(format!("{signer:?}").contains("REDACTED"));
        const HALF_ORDER: [u8; 32] = [
            0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x5D, 0x57,
            0x6E, 0x73, 0x57, 0xA4, 0x50, 0x1D, 0xDF, 0xE9, 0x2F, 0x46, 0x68, 0x1B, 0x20, 0xA0,
        ];
        // Many signatures: the device's high-s ones must come out low.
        for n in 0..32u8 {
            let payload = Payload::SealedBlock {
                chain_id: 31337,
                number: u64::from(n),
                block_hash: B256::with_last_byte(n),
                leader_epoch: 0,
            };
            let signature = signer.sign(&payload).unwrap();
            assert!(signature.0[32..64] <= HALF_ORDER[..], "s is low");
            assert_eq!(recover(&signature, payload.signing_hash()), Some(signer.address()));
        }
    }
}
