//! The replication channel: TCP on which both ends prove they hold the
//! pair's shared secret before anything else is said, and every message
//! after that carries an HMAC-SHA-256 tag over its direction, its sequence
//! number and its body, so that a message altered, replayed, dropped or
//! reordered on the way ends the session.
//!
//! ```text
//! standby → leader  hello      version | id_len | id | nonce_s[32]
//! leader  → standby challenge  id_len | id | nonce_l[32] | HMAC(secret, "leader"  | transcript)
//! standby → leader  proof      HMAC(secret, "standby" | transcript)
//! transcript = nonce_s | nonce_l | id_s | id_l;  session key = HMAC(secret, "session" | transcript)
//! then each way: len u32 LE | body | HMAC(session key, direction | seq u64 LE | body)
//! ```
//!
//! The channel authenticates and protects integrity; it does not encrypt:
//! what crosses it (transactions, blocks) is public once preconfirmed.

use std::{
    io,
    path::{Path, PathBuf},
};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
};
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
const NONCE_BYTES: usize = 32;
const TAG_BYTES: usize = 32;
/// The shortest shared secret accepted: 256 bits.
pub const SECRET_BYTES_MIN: usize = 32;
/// The longest node id.
pub const NODE_ID_BYTES_MAX: usize = 64;
/// The largest handshake message.
const HANDSHAKE_BYTES_MAX: usize = 256;
const TO_STANDBY: u8 = 1;
const TO_LEADER: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("replication channel I/O: {0}")]
    Io(#[from] io::Error),
    #[error("replication peer failed authentication: {0}")]
    Auth(&'static str),
    #[error("replication message of {len} bytes, above the bound of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("replication message malformed: {0}")]
    Malformed(String),
}

/// The pair's shared secret (`ha.peer_secret_file`), wiped on drop.
pub struct Secret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why the pair's shared secret is refused.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Fewer than `SECRET_BYTES_MIN` bytes.
    #[error("{len} bytes, at least {SECRET_BYTES_MIN} are needed")]
    TooShort { len: usize },
    /// The secret file cannot be read.
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// The secret file holds fewer than `SECRET_BYTES_MIN` bytes (surrounding
    /// whitespace aside).
    #[error("{}: {len} bytes, at least {SECRET_BYTES_MIN} are needed", path.display())]
    FileTooShort { path: PathBuf, len: usize },
}

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Result<Self, SecretError> {
        let bytes = Zeroizing::new(bytes);
        if bytes.len() < SECRET_BYTES_MIN {
            return Err(SecretError::TooShort { len: bytes.len() });
        }
        Ok(Self(bytes))
    }

    /// Reads the secret file; surrounding whitespace is not part of it.
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let bytes = Zeroizing::new(
            std::fs::read(path).map_err(|source| SecretError::Read { path: path.to_path_buf(), source })?,
        );
        let text = bytes.trim_ascii();
        Self::new(text.to_vec()).map_err(|error| match error {
            SecretError::TooShort { len } => SecretError::FileTooShort { path: path.to_path_buf(), len },
            other => other,
        })
    }

    fn mac(&self, label: &[u8], transcript: &[u8]) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(label);
        mac.update(transcript);
        mac.finalize().into_bytes().into()
    }
}

/// The sending half of an authenticated session.
#[derive(Debug)]
pub struct Sender {
    write: OwnedWriteHalf,
    key: Zeroizing<[u8; 32]>,
    direction: u8,
    seq: u64,
    buffer: Vec<u8>,
}

/// The receiving half; `recv` refuses bodies above `body_bytes_max`.
#[derive(Debug)]
pub struct Receiver {
    read: OwnedReadHalf,
    key: Zeroizing<[u8; 32]>,
    direction: u8,
    seq: u64,
    body_bytes_max: usize,
    buffer: Vec<u8>,
}

fn tag(key: &[u8; 32], direction: u8, seq: u64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&[direction]);
    mac.update(&seq.to_le_bytes());
    mac.update(body);
    mac
}

impl Sender {
    pub async fn send(&mut self, body: &[u8]) -> Result<(), ChannelError> {
        let len = u32::try_from(body.len())
            .map_err(|_| ChannelError::TooLarge { len: body.len(), max: u32::MAX as usize })?;
        let mac = tag(&self.key, self.direction, self.seq, body).finalize().into_bytes();
        self.seq += 1;
        self.buffer.clear();
        self.buffer.extend_from_slice(&len.to_le_bytes());
        self.buffer.extend_from_slice(body);
        self.buffer.extend_from_slice(&mac);
        self.write.write_all(&self.buffer).await?;
        Ok(())
    }
}

impl Receiver {
    /// The next message's body; valid until the next call.
    pub async fn recv(&mut self) -> Result<&[u8], ChannelError> {
        let len = self.read.read_u32_le().await? as usize;
        if len > self.body_bytes_max {
            return Err(ChannelError::TooLarge { len, max: self.body_bytes_max });
        }
        self.buffer.resize(len + TAG_BYTES, 0);
        self.read.read_exact(&mut self.buffer).await?;
        let (body, received) = self.buffer.split_at(len);
        tag(&self.key, self.direction, self.seq, body)
            .verify_slice(received)
            .map_err(|_| ChannelError::Auth("a message tag does not verify"))?;
        self.seq += 1;
        Ok(&self.buffer[..len])
    }
}

fn nonce() -> Result<[u8; NONCE_BYTES], ChannelError> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).map_err(|e| ChannelError::Io(io::Error::other(e.to_string())))?;
    Ok(nonce)
}

async fn send_plain(stream: &mut TcpStream, body: &[u8]) -> Result<(), ChannelError> {
    let len = u32::try_from(body.len()).expect("handshake messages are a few hundred bytes");
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(body);
    stream.write_all(&frame).await?;
    Ok(())
}

async fn recv_plain(stream: &mut TcpStream) -> Result<Vec<u8>, ChannelError> {
    let len = stream.read_u32_le().await? as usize;
    if len > HANDSHAKE_BYTES_MAX {
        return Err(ChannelError::TooLarge { len, max: HANDSHAKE_BYTES_MAX });
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

fn check_id(id: &str) -> Result<(), ChannelError> {
    if id.is_empty() || id.len() > NODE_ID_BYTES_MAX {
        return Err(ChannelError::Malformed(format!("a node id of {} bytes (1 to {NODE_ID_BYTES_MAX})", id.len())));
    }
    Ok(())
}

/// Reads `id_len u8 | id | nonce[32]` from the front of `bytes`.
fn parse_id_nonce(bytes: &[u8]) -> Result<(String, [u8; NONCE_BYTES], &[u8]), ChannelError> {
    let malformed = || ChannelError::Malformed("a handshake message cut short".into());
    let (&len, rest) = bytes.split_first().ok_or_else(malformed)?;
    let len = len as usize;
    if rest.len() < len + NONCE_BYTES {
        return Err(malformed());
    }
    let id = std::str::from_utf8(&rest[..len]).map_err(|_| ChannelError::Malformed("a node id not UTF-8".into()))?;
    check_id(id)?;
    let nonce = rest[len..len + NONCE_BYTES].try_into().expect("32 bytes");
    Ok((id.to_string(), nonce, &rest[len + NONCE_BYTES..]))
}

fn id_nonce(id: &str, nonce: &[u8; NONCE_BYTES]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + id.len() + NONCE_BYTES);
    out.push(u8::try_from(id.len()).expect("node ids are checked to 64 bytes"));
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(nonce);
    out
}

fn transcript(nonce_s: &[u8], nonce_l: &[u8], id_s: &str, id_l: &str) -> Vec<u8> {
    let id_s_len = u8::try_from(id_s.len()).expect("node ids are checked to 64 bytes");
    [nonce_s, nonce_l, &[id_s_len], id_s.as_bytes(), id_l.as_bytes()].concat()
}

fn halves(
    stream: TcpStream,
    session: [u8; 32],
    send_direction: u8,
    recv_direction: u8,
    body_bytes_max: usize,
) -> (Sender, Receiver) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let key = Zeroizing::new(session);
    (
        Sender { write, key: key.clone(), direction: send_direction, seq: 0, buffer: Vec::new() },
        Receiver { read, key, direction: recv_direction, seq: 0, body_bytes_max, buffer: Vec::new() },
    )
}

/// The leader's side of the handshake: the standby's id and the session.
pub async fn accept(
    mut stream: TcpStream,
    secret: &Secret,
    leader_id: &str,
    body_bytes_max: usize,
) -> Result<(String, Sender, Receiver), ChannelError> {
    let hello = recv_plain(&mut stream).await?;
    let (&version, rest) = hello.split_first().ok_or(ChannelError::Malformed("an empty hello".into()))?;
    if version != VERSION {
        return Err(ChannelError::Malformed(format!("protocol version {version}, this node speaks {VERSION}")));
    }
    let (standby_id, nonce_s, _) = parse_id_nonce(rest)?;
    let nonce_l = nonce()?;
    let transcript = transcript(&nonce_s, &nonce_l, &standby_id, leader_id);
    let mut challenge = id_nonce(leader_id, &nonce_l);
    challenge.extend_from_slice(&secret.mac(b"leader", &transcript));
    send_plain(&mut stream, &challenge).await?;
    let proof = recv_plain(&mut stream).await?;
    let expected = secret.mac(b"standby", &transcript);
    if !constant_time_eq(&proof, &expected) {
        return Err(ChannelError::Auth("the standby's proof does not verify"));
    }
    let session = secret.mac(b"session", &transcript);
    let (sender, receiver) = halves(stream, session, TO_STANDBY, TO_LEADER, body_bytes_max);
    Ok((standby_id, sender, receiver))
}

/// The standby's side of the handshake: the leader's id and the session.
pub async fn connect(
    mut stream: TcpStream,
    secret: &Secret,
    standby_id: &str,
    body_bytes_max: usize,
) -> Result<(String, Sender, Receiver), ChannelError> {
    check_id(standby_id)?;
    let nonce_s = nonce()?;
    let mut hello = vec![VERSION];
    hello.extend_from_slice(&id_nonce(standby_id, &nonce_s));
    send_plain(&mut stream, &hello).await?;
    let challenge = recv_plain(&mut stream).await?;
    let (leader_id, nonce_l, mac) = parse_id_nonce(&challenge)?;
    let transcript = transcript(&nonce_s, &nonce_l, standby_id, &leader_id);
    if !constant_time_eq(mac, &secret.mac(b"leader", &transcript)) {
        return Err(ChannelError::Auth("the leader's proof does not verify"));
    }
    send_plain(&mut stream, &secret.mac(b"standby", &transcript)).await?;
    let session = secret.mac(b"session", &transcript);
    let (sender, receiver) = halves(stream, session, TO_LEADER, TO_STANDBY, body_bytes_max);
    Ok((leader_id, sender, receiver))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    async fn pair(
        leader_secret: &'static [u8],
        standby_secret: &'static [u8],
    ) -> (Result<(String, Sender, Receiver), ChannelError>, Result<(String, Sender, Receiver), ChannelError>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let leader = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            accept(stream, &Secret::new(leader_secret.to_vec()).unwrap(), "a", 1024).await
        });
        let stream = TcpStream::connect(address).await.unwrap();
        let standby = connect(stream, &Secret::new(standby_secret.to_vec()).unwrap(), "b", 1024).await;
        (leader.await.unwrap(), standby)
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OTHER: &[u8] = b"0123456789abcdef0123456789abcdeX";

    #[tokio::test]
    async fn both_ends_authenticate_and_messages_flow_both_ways() {
        let (leader, standby) = pair(SECRET, SECRET).await;
        let (standby_id, mut to_standby, mut from_standby) = leader.unwrap();
        let (leader_id, mut to_leader, mut from_leader) = standby.unwrap();
        assert_eq!((standby_id.as_str(), leader_id.as_str()), ("b", "a"));
        to_standby.send(b"records").await.unwrap();
        to_standby.send(b"more").await.unwrap();
        assert_eq!(from_leader.recv().await.unwrap(), b"records");
        assert_eq!(from_leader.recv().await.unwrap(), b"more");
        to_leader.send(b"ack").await.unwrap();
        assert_eq!(from_standby.recv().await.unwrap(), b"ack");
    }

    #[tokio::test]
    async fn a_peer_without_the_secret_is_refused_by_both_ends() {
        let (leader, standby) = pair(SECRET, OTHER).await;
        // The standby checks the leader's proof first and hangs up.
        assert!(matches!(standby, Err(ChannelError::Auth(_))), "{standby:?}");
        assert!(leader.is_err());
    }

    #[tokio::test]
    async fn a_tampered_or_oversized_message_ends_the_session() {
        let (leader, standby) = pair(SECRET, SECRET).await;
        let (_, mut to_standby, _) = leader.unwrap();
        let (_, _, mut from_leader) = standby.unwrap();
        // Flip a body byte on the wire: forge a frame with the session's
        // sequence but a wrong tag.
        let body = b"forged";
        let mut frame = 6u32.to_le_bytes().to_vec();
        frame.extend_from_slice(body);
        frame.extend_from_slice(&[0u8; TAG_BYTES]);
        to_standby.write.write_all(&frame).await.unwrap();
        assert!(matches!(from_leader.recv().await, Err(ChannelError::Auth(_))));
        let (leader, standby) = pair(SECRET, SECRET).await;
        let (_, mut to_standby, _) = leader.unwrap();
        let (_, _, mut from_leader) = standby.unwrap();
        to_standby.send(&[0u8; 2048]).await.unwrap();
        assert!(matches!(from_leader.recv().await, Err(ChannelError::TooLarge { len: 2048, max: 1024 })));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(Secret::new(b"short".to_vec()).is_err());
    }

    #[test]
    fn a_secret_file_that_is_missing_or_short_is_refused_naming_it() {
        let dir = tephra_testkit::fresh_dir("ha-secret-file");
        let missing = dir.join("missing");
        let error = Secret::from_file(&missing).unwrap_err();
        assert!(matches!(&error, SecretError::Read { path, .. } if *path == missing), "{error:?}");
        assert!(error.to_string().starts_with(&format!("{}: ", missing.display())), "{error}");
        let short = dir.join("short");
        std::fs::write(&short, b"  short\n").unwrap();
        let error = Secret::from_file(&short).unwrap_err();
        assert_eq!(error.to_string(), format!("{}: 5 bytes, at least {SECRET_BYTES_MIN} are needed", short.display()));
        std::fs::write(&short, [b'k'; SECRET_BYTES_MIN]).unwrap();
        Secret::from_file(&short).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
