//! A secp256k1 key in any PKCS#11 token (SoftHSM2 in tests): module path,
//! token label, PIN file and key label. The token signs the 32-byte digest
//! with CKM_ECDSA; tephra normalises `s` and finds the recovery id.

use std::{path::PathBuf, sync::Mutex};

use cryptoki::{
    context::{CInitializeArgs, CInitializeFlags, Pkcs11},
    mechanism::Mechanism,
    object::{Attribute, AttributeType, ObjectClass, ObjectHandle},
    session::{Session, UserType},
    types::AuthPin,
};
use secp256k1::PublicKey;
use zeroize::Zeroizing;

use crate::{Payload, SignError, Signature65, Signer, ethereum_signature};

/// Where the key is.
#[derive(Clone, Debug)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (for SoftHSM2: /usr/lib/softhsm/libsofthsm2.so).
    pub module: PathBuf,
    pub token_label: String,
    /// A file holding the user PIN (read once, zeroized, never printed).
    pub pin_file: PathBuf,
    pub key_label: String,
}

pub struct Pkcs11Signer {
    // The session is not Sync: one signature at a time.
    session: Mutex<Session>,
    key: ObjectHandle,
    public_key: PublicKey,
    _context: Pkcs11,
}

impl core::fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pkcs11Signer").field("address", &self.address()).field("pin", &"REDACTED").finish()
    }
}

fn device(context: &str) -> impl FnOnce(cryptoki::error::Error) -> SignError + '_ {
    move |error| SignError::Device(format!("{context}: {error}"))
}

/// DER of the secp256k1 curve's OID (1.3.132.0.10), as CKA_EC_PARAMS.
const SECP256K1_EC_PARAMS: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];

/// A logged-in session on the configured token.
fn login(config: &Pkcs11Config, read_write: bool) -> Result<(Pkcs11, Session), SignError> {
    let context = Pkcs11::new(&config.module).map_err(device("loading the PKCS#11 module"))?;
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Another signer in this process initialised the module already.
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(error) => return Err(device("initialising the module")(error)),
    }
    let slot = context
        .get_slots_with_token()
        .map_err(device("listing slots"))?
        .into_iter()
        .find(|slot| context.get_token_info(*slot).is_ok_and(|info| info.label() == config.token_label))
        .ok_or_else(|| SignError::Key(format!("no token labelled {:?}", config.token_label)))?;
    let session = if read_write { context.open_rw_session(slot) } else { context.open_ro_session(slot) }
        .map_err(device("opening a session"))?;
    let pin = Zeroizing::new(std::fs::read_to_string(&config.pin_file)?);
    match session.login(UserType::User, Some(&AuthPin::new(pin.trim().to_string().into()))) {
        // PKCS#11 logs in per token and process: another session did already.
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {}
        Err(error) => return Err(device("logging in")(error)),
    }
    Ok((context, session))
}

impl Pkcs11Signer {
    /// Generates a secp256k1 key pair labelled `key_label` on the token; the
    /// private key is sensitive and never leaves it.
    pub fn generate(config: &Pkcs11Config) -> Result<Self, SignError> {
        {
            let (_context, session) = login(config, true)?;
            let label = Attribute::Label(config.key_label.as_bytes().to_vec());
            let public = [
                Attribute::Token(true),
                Attribute::EcParams(SECP256K1_EC_PARAMS.to_vec()),
                Attribute::Verify(true),
                label.clone(),
            ];
            let private = [
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                label,
            ];
            session.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private).map_err(device("generating"))?;
        }
        Self::open(config)
    }

    pub fn open(config: &Pkcs11Config) -> Result<Self, SignError> {
        let (context, session) = login(config, false)?;
        let find = |class| {
            session
                .find_objects(&[Attribute::Class(class), Attribute::Label(config.key_label.as_bytes().to_vec())])
                .map_err(device("finding the key"))?
                .first()
                .copied()
                .ok_or_else(|| SignError::Key(format!("no key labelled {:?} on the token", config.key_label)))
        };
        let key = find(ObjectClass::PRIVATE_KEY)?;
        let public = find(ObjectClass::PUBLIC_KEY)?;
        let attributes =
            session.get_attributes(public, &[AttributeType::EcPoint]).map_err(device("reading the public key"))?;
        let Some(Attribute::EcPoint(der)) = attributes.into_iter().next() else {
            return Err(SignError::Key("the public key has no EC point".into()));
        };
        // CKA_EC_POINT is a DER OCTET STRING around the uncompressed point.
        let point = der.get(der.len().saturating_sub(65)..).unwrap_or_default();
        let public_key = PublicKey::from_slice(point).map_err(|e| SignError::Key(format!("EC point: {e}")))?;
        Ok(Self { session: Mutex::new(session), key, public_key, _context: context })
    }
}

impl Signer for Pkcs11Signer {
    fn public_key(&self) -> PublicKey {
        self.public_key
    }

    fn sign(&self, payload: &Payload) -> Result<Signature65, SignError> {
        let hash = payload.signing_hash();
        let raw = self
            .session
            .lock()
            .expect("session lock")
            .sign(&Mechanism::Ecdsa, self.key, hash.as_slice())
            .map_err(device("signing"))?;
        let compact: [u8; 64] =
            raw.try_into().map_err(|raw: Vec<u8>| SignError::Device(format!("a {}-byte signature", raw.len())))?;
        ethereum_signature(hash, &compact, self.address())
    }
}
