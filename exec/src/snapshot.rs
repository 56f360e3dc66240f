//! State snapshots: the whole state at a sealed block, in one checksummed file.
//!
//! Layout (all integers little-endian):
//! `magic "TPHSNAP1" | block number u64 | block hash 32 | state root 32 |
//!  accounts u64 | { address 20 | nonce u64 | balance 32 | code hash 32 |
//!  slots u64 | { slot 32 | value 32 }* }* | codes u64 | { len u32 | bytes }* |
//!  block hashes u64 | { number u64 | hash 32 }* | crc32c u32`
//!
//! Written to a temporary file, fsync'd, renamed over the old snapshot and the
//! directory fsync'd: a crash leaves the old snapshot or the new one, never a
//! torn one. The restored state's root is recomputed and must equal the
//! recorded one.

use std::{
    fs::{self, File},
    io::{self, BufReader, BufWriter, Read, Write},
    path::Path,
};

use alloy_primitives::{Address, B256, Bytes, U256};
use revm::bytecode::Bytecode;

use crate::state::StateDb;

const MAGIC: &[u8; 8] = b"TPHSNAP1";
/// Refuse absurd counts from a corrupt file before allocating for them.
const ITEMS_MAX: u64 = 1 << 32;
const CODE_SIZE_MAX_BYTES: u32 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot I/O: {0}")]
    Io(#[from] io::Error),
    #[error("not a tephra snapshot (bad magic)")]
    BadMagic,
    #[error("snapshot checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("snapshot is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("snapshot state root {recorded} does not match the restored state's {computed}")]
    StateRoot { recorded: B256, computed: B256 },
}

/// Which block a snapshot holds the state after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub block_number: u64,
    pub block_hash: B256,
    pub state_root: B256,
}

struct CrcWriter<W> {
    inner: W,
    crc: u32,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct CrcReader<R> {
    inner: R,
    crc: u32,
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        Ok(n)
    }
}

/// Serialises `state` (whose root must be current) after block `meta`.
pub fn write_to(state: &StateDb, meta: &SnapshotMeta, out: impl Write) -> io::Result<()> {
    let mut w = CrcWriter { inner: out, crc: 0 };
    w.write_all(MAGIC)?;
    w.write_all(&meta.block_number.to_le_bytes())?;
    w.write_all(meta.block_hash.as_slice())?;
    w.write_all(meta.state_root.as_slice())?;
    w.write_all(&(state.account_count() as u64).to_le_bytes())?;
    for (address, account) in state.accounts() {
        w.write_all(address.as_slice())?;
        w.write_all(&account.nonce.to_le_bytes())?;
        w.write_all(&account.balance.to_be_bytes::<32>())?;
        w.write_all(account.code_hash.as_slice())?;
        w.write_all(&(account.storage.len() as u64).to_le_bytes())?;
        for (slot, value) in &account.storage {
            w.write_all(&slot.to_be_bytes::<32>())?;
            w.write_all(&value.to_be_bytes::<32>())?;
        }
    }
    let codes: Vec<&Bytecode> = state.codes().map(|(_, code)| code).collect();
    w.write_all(&(codes.len() as u64).to_le_bytes())?;
    for code in codes {
        let bytes = code.original_byte_slice();
        let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("code too large"))?;
        w.write_all(&len.to_le_bytes())?;
        w.write_all(bytes)?;
    }
    let hashes: Vec<(u64, B256)> = state.block_hashes().collect();
    w.write_all(&(hashes.len() as u64).to_le_bytes())?;
    for (number, hash) in hashes {
        w.write_all(&number.to_le_bytes())?;
        w.write_all(hash.as_slice())?;
    }
    let crc = w.crc;
    w.inner.write_all(&crc.to_le_bytes())?;
    w.flush()
}

fn read_array<const N: usize>(r: &mut impl Read) -> Result<[u8; N], SnapshotError> {
    let mut buf = [0u8; N];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

fn read_u64(r: &mut impl Read) -> Result<u64, SnapshotError> {
    Ok(u64::from_le_bytes(read_array(r)?))
}

fn read_count(r: &mut impl Read) -> Result<u64, SnapshotError> {
    let n = read_u64(r)?;
    if n > ITEMS_MAX {
        return Err(SnapshotError::Corrupt("item count out of range"));
    }
    Ok(n)
}

/// Reads a snapshot, checks its checksum, rebuilds the tries and checks the
/// state root.
pub fn read_from(input: impl Read) -> Result<(StateDb, SnapshotMeta), SnapshotError> {
    let mut r = CrcReader { inner: input, crc: 0 };
    if &read_array::<8>(&mut r)? != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let meta = SnapshotMeta {
        block_number: read_u64(&mut r)?,
        block_hash: B256::from(read_array::<32>(&mut r)?),
        state_root: B256::from(read_array::<32>(&mut r)?),
    };
    struct Raw {
        address: Address,
        nonce: u64,
        balance: U256,
        code_hash: B256,
        storage: Vec<(U256, U256)>,
    }
    let mut raw_accounts = Vec::new();
    for _ in 0..read_count(&mut r)? {
        let address = Address::from(read_array::<20>(&mut r)?);
        let nonce = read_u64(&mut r)?;
        let balance = U256::from_be_bytes(read_array::<32>(&mut r)?);
        let code_hash = B256::from(read_array::<32>(&mut r)?);
        let slots = read_count(&mut r)?;
        let mut storage = Vec::new();
        for _ in 0..slots {
            let slot = U256::from_be_bytes(read_array::<32>(&mut r)?);
            let value = U256::from_be_bytes(read_array::<32>(&mut r)?);
            storage.push((slot, value));
        }
        raw_accounts.push(Raw { address, nonce, balance, code_hash, storage });
    }
    let mut codes = alloy_primitives::map::B256Map::default();
    for _ in 0..read_count(&mut r)? {
        let len = u32::from_le_bytes(read_array::<4>(&mut r)?);
        if len > CODE_SIZE_MAX_BYTES {
            return Err(SnapshotError::Corrupt("code length out of range"));
        }
        let mut bytes = vec![0u8; len as usize];
        r.read_exact(&mut bytes)?;
        let code = Bytecode::new_raw(Bytes::from(bytes));
        codes.insert(code.hash_slow(), code);
    }
    let mut block_hashes = Vec::new();
    for _ in 0..read_count(&mut r)? {
        block_hashes.push((read_u64(&mut r)?, B256::from(read_array::<32>(&mut r)?)));
    }
    let computed = r.crc;
    let stored = u32::from_le_bytes(read_array::<4>(&mut r.inner)?);
    if stored != computed {
        return Err(SnapshotError::Checksum { stored, computed });
    }
    let mut state = StateDb::default();
    for raw in raw_accounts {
        let code = match raw.code_hash {
            h if h == revm::primitives::KECCAK_EMPTY => None,
            h => Some(codes.get(&h).cloned().ok_or(SnapshotError::Corrupt("account code missing"))?),
        };
        state.insert_account(raw.address, raw.nonce, raw.balance, code, raw.storage);
    }
    for (number, hash) in block_hashes {
        state.push_block_hash(number, hash);
    }
    let computed = state.state_root();
    if computed != meta.state_root {
        return Err(SnapshotError::StateRoot { recorded: meta.state_root, computed });
    }
    Ok((state, meta))
}

/// Writes the snapshot to `path` atomically and durably.
pub fn save(state: &StateDb, meta: &SnapshotMeta, path: &Path) -> Result<(), SnapshotError> {
    let tmp = path.with_extension("tmp");
    let file = File::create(&tmp)?;
    let mut out = BufWriter::new(file);
    write_to(state, meta, &mut out)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Reads and checks the snapshot at `path`.
pub fn load(path: &Path) -> Result<(StateDb, SnapshotMeta), SnapshotError> {
    read_from(BufReader::new(File::open(path)?))
}
