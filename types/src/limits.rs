//! Limits shared by every stage. A limit that an operator may tune lives in the
//! node's config; these are the hard ceilings those settings are checked against.

/// Largest encoded transaction accepted, in bytes. Geth's pool uses the same
/// 128 KiB bound; it keeps a UDP datagram batch and a pool slot bounded.
pub const TX_SIZE_MAX_BYTES: usize = 128 * 1024;

/// EIP-7825 (Osaka): the most gas a single transaction may ask for.
pub const TX_GAS_LIMIT_CAP: u64 = 1 << 24;

/// EIP-3860: the largest init code a creation may carry.
pub const INITCODE_SIZE_MAX_BYTES: usize = 2 * 24_576;

/// How many recent block hashes the BLOCKHASH opcode can see.
pub const BLOCK_HASH_HISTORY: u64 = 256;

/// Largest `extraData` in a header (yellow paper, section 4.3.4).
pub const EXTRA_DATA_MAX_BYTES: usize = 32;
