//! Stateless OP Stack block builder implementation.

mod core;
pub use core::{BlockBuildingOutcome, StatelessL2Builder};

mod assemble;
pub use assemble::compute_receipts_root;

mod env;
