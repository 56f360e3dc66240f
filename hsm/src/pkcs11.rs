//! A secp256k1 key in any PKCS#11 token (SoftHSM2 in tests): module path,
//! token label, PIN file and key label. The token signs the 32-byte digest
//! with CKM_ECDSA; tephra normalises `s` and finds the recovery id.

use std::{path::PathBuf, sync::Mutex};

use cryptoki::{
    context::{CInitializeArgs, CInitializeFlags, Pkcs11},
    error::RvError,
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
    config: Pkcs11Config,
    context: Pkcs11,
    /// One signature at a time: a session is not Sync.
    state: Mutex<SessionState>,
    /// The key this signer was opened with; a key found again must be it.
    public_key: PublicKey,
}

struct SessionState {
    /// The logged-in session and the key's handle. Dropped after a failed
    /// signature, so that the next one logs in and finds the key again: a
    /// token that was reset, or whose store failed, keeps failing on the
    /// handles it gave before.
    open: Option<KeyedSession>,
    /// Set once the token refused the PIN: it is never offered again, since
    /// every try counts towards locking the user out.
    pin_refused: bool,
}

struct KeyedSession {
    session: Session,
    key: ObjectHandle,
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

/// The module, loaded and initialised.
fn load(config: &Pkcs11Config) -> Result<Pkcs11, SignError> {
    let context = Pkcs11::new(&config.module).map_err(device("loading the PKCS#11 module"))?;
    initialize(&context)?;
    Ok(context)
}

fn initialize(context: &Pkcs11) -> Result<(), SignError> {
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Another signer in this process initialised the module already.
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(()),
        Err(error) => Err(device("initialising the module")(error)),
    }
}

/// A logged-in session on the configured token.
fn login(context: &Pkcs11, config: &Pkcs11Config, read_write: bool) -> Result<Session, SignError> {
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
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(cryptoki::error::Error::Pkcs11(
            code @ (RvError::PinIncorrect | RvError::PinLocked | RvError::PinExpired | RvError::PinInvalid),
            _,
        )) => return Err(SignError::PinRefused(format!("{} ({code})", config.pin_file.display()))),
        Err(error) => return Err(device("logging in")(error)),
    }
    Ok(session)
}

/// The private key labelled `key_label` and its public key.
fn find_key(config: &Pkcs11Config, session: &Session) -> Result<(ObjectHandle, PublicKey), SignError> {
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
    Ok((key, public_key))
}

impl Pkcs11Signer {
    /// Generates a secp256k1 key pair labelled `key_label` on the token; the
    /// private key is sensitive and never leaves it.
    pub fn generate(config: &Pkcs11Config) -> Result<Self, SignError> {
        {
            let session = login(&load(config)?, config, true)?;
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
        let context = load(config)?;
        let session = login(&context, config, false)?;
        let (key, public_key) = find_key(config, &session)?;
        Ok(Self {
            config: config.clone(),
            context,
            state: Mutex::new(SessionState { open: Some(KeyedSession { session, key }), pin_refused: false }),
            public_key,
        })
    }

    /// Logs in again and finds the key, which must be the one opened. A
    /// module may not see a token it once failed to read until it is
    /// initialised anew (SoftHSM2 keeps such a token invalid), so when that
    /// fails the module is started over and tried once more: C_Finalize ends
    /// every session of the process on the module, so one signer per module
    /// per process. A refused PIN is never offered again.
    fn reopen(&self, pin_refused: &mut bool) -> Result<KeyedSession, SignError> {
        if *pin_refused {
            return Err(SignError::PinRefused(format!("{} (refused before; restart)", self.config.pin_file.display())));
        }
        let mut reopened = self.login_and_find();
        if let Err(error) = &reopened
            && !matches!(error, SignError::PinRefused(_))
        {
            let _ = self.context.clone().finalize();
            initialize(&self.context)?;
            reopened = self.login_and_find();
        }
        *pin_refused = matches!(reopened, Err(SignError::PinRefused(_)));
        reopened
    }

    fn login_and_find(&self) -> Result<KeyedSession, SignError> {
        let session = login(&self.context, &self.config, false)?;
        let (key, public_key) = find_key(&self.config, &session)?;
        if public_key != self.public_key {
            return Err(SignError::Key(format!(
                "the token's key labelled {:?} is no longer the key this signer opened",
                self.config.key_label
            )));
        }
        Ok(KeyedSession { session, key })
    }
}

impl Signer for Pkcs11Signer {
    fn public_key(&self) -> PublicKey {
        self.public_key
    }

    fn sign(&self, payload: &Payload<'_>) -> Result<Signature65, SignError> {
        let hash = payload.signing_hash();
        let mut state = self.state.lock().expect("session lock");
        let current = match state.open.take() {
            Some(current) => current,
            None => self.reopen(&mut state.pin_refused)?,
        };
        let raw = current.session.sign(&Mechanism::Ecdsa, current.key, hash.as_slice()).map_err(device("signing"))?;
        let compact: [u8; 64] =
            raw.try_into().map_err(|raw: Vec<u8>| SignError::Device(format!("a {}-byte signature", raw.len())))?;
        let signature = ethereum_signature(hash, &compact, self.address())?;
        // Kept only after a good signature: a failure leaves none, to reopen.
        state.open = Some(current);
        Ok(signature)
    }
}
