//! tephra's dataplane: topology, the per-core runtime, rings, and the NIC
//! backends that feed the verify stage (README.md).

pub mod backend;
pub mod configure;
pub mod frame;
pub mod net;
pub mod netns;
pub mod packet;
pub mod ring;
pub mod runtime;
pub mod topology;
