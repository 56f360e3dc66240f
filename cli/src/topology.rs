//! `tephra topology`: the threads and queues a node with this config would
//! run (tephra_node::topology), and the cores of this machine they would run
//! on, as `tephra run` logs them at start; nothing is started.

use tephra_node::{config::Config, node, topology::Topology};

/// The topology table, then the placement's cores (package, NUMA node, L3).
pub fn show(config: &Config) -> Result<String, String> {
    let (machine, placement) = node::placement(config).map_err(|e| e.to_string())?;
    let topology = Topology::of(config, &placement);
    Ok(format!("{topology}\n{}", placement.table(&machine)).trim_end().to_string())
}
