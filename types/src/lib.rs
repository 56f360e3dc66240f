//! tephra's shared vocabulary: the stable rejection codes that RPC and UDP
//! replies carry, the UDP wire format, and the limits every stage agrees on.
//! No I/O lives here.

pub mod crypto;
pub mod deposit;
pub mod durable;
pub mod hyperlane;
pub mod limits;
pub mod reject;
pub mod rollup;
pub mod wire;

pub use reject::{Reject, RejectCode};
