//! Why a transaction was turned away. Every rejection carries a stable numeric
//! code: clients match on the number, so a code is never reused or renumbered.
//! Ranges: 1xx decoding, 2xx stateless validity, 3xx pool, 4xx execution.

use core::fmt;

/// A rejection: its stable code and a human message with the specifics.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct Reject {
    pub code: RejectCode,
    pub detail: String,
}

impl Reject {
    pub fn new(code: RejectCode, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into() }
    }
}

macro_rules! reject_codes {
    ($($(#[$doc:meta])* $name:ident = $num:literal, $text:literal;)*) => {
        /// Stable rejection codes. The number is the wire value.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[repr(u16)]
        pub enum RejectCode {
            $($(#[$doc])* $name = $num,)*
        }

        impl RejectCode {
            /// Every code, in numeric order.
            pub const ALL: &'static [RejectCode] = &[$(RejectCode::$name,)*];

            /// The code carried on the wire.
            pub const fn as_u16(self) -> u16 {
                self as u16
            }

            /// The code for a wire value, if it is one.
            pub const fn from_u16(value: u16) -> Option<Self> {
                match value {
                    $($num => Some(RejectCode::$name),)*
                    _ => None,
                }
            }

            /// A short, stable, lower-case description.
            pub const fn text(self) -> &'static str {
                match self {
                    $(RejectCode::$name => $text,)*
                }
            }
        }
    };
}

reject_codes! {
    /// Not a valid EIP-2718 envelope or RLP payload.
    Malformed = 100, "malformed transaction";
    /// Larger than `limits::TX_SIZE_MAX_BYTES`.
    Oversized = 101, "transaction too large";
    /// An envelope type this chain does not know.
    UnsupportedType = 102, "unsupported transaction type";
    /// EIP-4844 blob transactions: a sequencer has no blob sidecar path.
    BlobUnsupported = 103, "blob transactions are not accepted";
    /// A UDP datagram of a wire format version this node does not speak.
    UnsupportedWireVersion = 104, "unsupported wire format version";
    /// The signature does not recover to a sender.
    InvalidSignature = 110, "invalid signature";
    /// Signed for another chain.
    WrongChainId = 200, "wrong chain id";
    /// A legacy transaction without EIP-155 replay protection, while they are refused.
    Unprotected = 201, "unprotected (pre-EIP-155) transaction";
    /// Gas limit below the transaction's intrinsic gas.
    IntrinsicGasTooLow = 202, "intrinsic gas too low";
    /// Gas limit above the block gas limit.
    GasLimitAboveBlock = 203, "gas limit exceeds block gas limit";
    /// Gas limit above the EIP-7825 per-transaction cap.
    GasLimitAboveCap = 204, "gas limit exceeds transaction gas cap";
    /// Max fee per gas below the current base fee.
    FeeCapBelowBaseFee = 205, "max fee per gas below base fee";
    /// Priority fee above the max fee.
    TipAboveFeeCap = 206, "max priority fee per gas above max fee per gas";
    /// Creation init code above the EIP-3860 limit.
    InitCodeTooLarge = 207, "init code too large";
    /// An EIP-7702 transaction with an empty authorization list, or a creation.
    InvalidAuthorizationList = 208, "invalid authorization list";
    /// Nonce below the sender's account nonce.
    NonceTooLow = 300, "nonce too low";
    /// Nonce too far ahead of the sender's account nonce.
    NonceGapTooLarge = 301, "nonce too far in the future";
    /// Same sender and nonce as a pooled transaction, without the fee bump.
    ReplacementUnderpriced = 302, "replacement transaction underpriced";
    /// The pool is full and this transaction ranks below everything evictable.
    PoolFull = 303, "transaction pool is full";
    /// The sender already has the most transactions a sender may pool.
    SenderQueueFull = 304, "too many transactions from this sender";
    /// The exact transaction is already pooled or included.
    AlreadyKnown = 305, "already known";
    /// Held for a nonce gap longer than the pool keeps gapped transactions.
    Expired = 306, "expired while waiting for a nonce gap";
    /// Pushed out of a full pool by the eviction rule.
    Evicted = 307, "evicted from a full pool";
    /// Replaced in the pool by a transaction of the same sender and nonce with higher fees.
    Replaced = 308, "replaced by a transaction with higher fees";
    /// The sequencer's submission queue is full: try again shortly.
    Busy = 309, "sequencer busy";
    /// The sequencer is not taking transactions: its batch log is out of
    /// room (below `log.disk_free_min_bytes`). Try again once it is ready.
    NotReady = 310, "sequencer not ready";
    /// The source sent faster than its rate limit (`udp.source_txs_per_s`).
    RateLimited = 311, "rate limited";
    /// This node is a standby of a high-availability pair: send to the
    /// leader (`tephra ha status` names it; the message says where).
    NotLeader = 312, "not the leader";
    /// At execution the sender's nonce had moved past this transaction.
    ExecNonceTooLow = 400, "nonce too low at execution";
    /// At execution the sender's nonce was below this transaction's.
    ExecNonceTooHigh = 401, "nonce too high at execution";
    /// At execution the sender could not pay gas limit times fee plus value.
    InsufficientFunds = 402, "insufficient funds for gas * price + value";
    /// EIP-3607: the sender has code that is not an EIP-7702 delegation.
    SenderNotEoa = 403, "sender is not an externally owned account";
    /// Any other reason the EVM refused the transaction before executing it.
    ExecInvalid = 499, "invalid at execution";
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.text(), self.as_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &code in RejectCode::ALL {
            assert!(seen.insert(code.as_u16()), "duplicate code {}", code.as_u16());
            assert_eq!(RejectCode::from_u16(code.as_u16()), Some(code));
        }
        assert_eq!(RejectCode::from_u16(0), None);
        assert_eq!(RejectCode::from_u16(u16::MAX), None);
    }

    #[test]
    fn wire_values_are_stable() {
        // Clients match on these numbers; changing one is a breaking change.
        assert_eq!(RejectCode::Malformed.as_u16(), 100);
        assert_eq!(RejectCode::BlobUnsupported.as_u16(), 103);
        assert_eq!(RejectCode::WrongChainId.as_u16(), 200);
        assert_eq!(RejectCode::NonceTooLow.as_u16(), 300);
        assert_eq!(RejectCode::InsufficientFunds.as_u16(), 402);
    }
}
