//! Where each tile runs. The machine is discovered with hwloc (packages,
//! NUMA nodes, cores and their hardware threads, L3 caches); `[topology]`
//! places each tile on a core, or, left empty, the placement is derived from
//! the machine. A placement naming a core this process may not run on, or
//! putting a busy-polling tile beside another, is refused before anything
//! starts.

use std::{collections::BTreeSet, fmt};

use hwlocality::{Topology, object::types::ObjectType};
use serde::Deserialize;

/// One hardware thread (PU) this process may run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// The OS index (as in /proc/cpuinfo, taskset and isolcpus).
    pub os_index: usize,
    /// The physical core it belongs to (hwloc's logical index).
    pub core: usize,
    pub package: usize,
    pub numa_node: usize,
    /// Which L3 cache it shares, when the machine has one.
    pub l3: Option<usize>,
}

/// The CPUs this process may run on, as hwloc sees the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    pub cpus: Vec<Cpu>,
}

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("hwloc could not read the machine's topology: {0}")]
    Discovery(String),
    #[error("[topology] {key}: {reason}")]
    Placement { key: &'static str, reason: String },
}

impl Machine {
    /// Reads the machine with hwloc, restricted to this process's CPU affinity.
    pub fn discover() -> Result<Self, TopologyError> {
        let topology = Topology::new().map_err(|error| TopologyError::Discovery(error.to_string()))?;
        let allowed: BTreeSet<usize> =
            core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|core| core.id).collect();
        let mut cpus = Vec::new();
        for pu in topology.objects_with_type(ObjectType::PU) {
            let Some(os_index) = pu.os_index() else { continue };
            if !allowed.is_empty() && !allowed.contains(&os_index) {
                continue;
            }
            let logical_of = |kind| pu.first_ancestor_with_type(kind).map(|object| object.logical_index());
            let numa_node = pu.nodeset().and_then(|nodes| nodes.first_set()).map_or(0, usize::from);
            cpus.push(Cpu {
                os_index,
                core: logical_of(ObjectType::Core).unwrap_or(os_index),
                package: logical_of(ObjectType::Package).unwrap_or(0),
                numa_node,
                l3: logical_of(ObjectType::L3Cache),
            });
        }
        if cpus.is_empty() {
            return Err(TopologyError::Discovery("no CPU this process may run on".into()));
        }
        Ok(Self { cpus })
    }

    /// One CPU per physical core first, then the second hardware threads:
    /// tiles fill whole cores before sharing one.
    fn by_preference(&self) -> Vec<usize> {
        let mut seen = BTreeSet::new();
        let (mut first, mut siblings) = (Vec::new(), Vec::new());
        for cpu in &self.cpus {
            if seen.insert((cpu.package, cpu.core)) { first.push(cpu.os_index) } else { siblings.push(cpu.os_index) }
        }
        first.extend(siblings);
        first
    }

    fn cpu(&self, os_index: usize) -> Option<&Cpu> {
        self.cpus.iter().find(|cpu| cpu.os_index == os_index)
    }
}

/// Restricts the calling thread to `cores` (OS CPU indices). Best effort: a
/// core the kernel refuses leaves the thread where it was, with a warning.
#[allow(unsafe_code)]
pub fn pin_current_thread(cores: &[usize]) {
    // SAFETY: cpu_set_t is plain old data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &core in cores {
        // SAFETY: CPU_SET bounds-checks the index against the set's size.
        unsafe { libc::CPU_SET(core, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; the set is sized as passed.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const set) } != 0 {
        tracing::warn!(?cores, error = %std::io::Error::last_os_error(), "could not pin a thread");
    }
}

/// Turns transparent huge pages off or on for this process and the
/// children it starts (`prctl(PR_SET_THP_DISABLE)`). Off is the default for
/// a node: the allocator asks for huge pages on its arenas, so a hot path
/// that reaches fresh memory takes a fault that zeroes 2 MiB at once. That
/// measured 4-6 ms per fault on the sequencer thread in this project's VM,
/// several times a second under load, and was the largest part of the
/// preconfirmation p99 (docs/benchmarks.md); 4 KiB faults spread the same
/// work thinly.
#[allow(unsafe_code)]
pub fn set_transparent_huge_pages(enabled: bool) -> std::io::Result<()> {
    let disable = libc::c_ulong::from(!enabled);
    // SAFETY: PR_SET_THP_DISABLE takes one integer argument and the rest zero.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, disable, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Puts the calling thread in SCHED_IDLE: it runs only on CPU time no
/// other thread of the machine wants, and yields to any of them at once
/// (background work beside latency-critical threads).
#[allow(unsafe_code)]
pub fn set_current_thread_idle_priority() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` lives across the call.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether transparent huge pages are off for this process.
#[allow(unsafe_code)]
pub fn transparent_huge_pages_disabled() -> std::io::Result<bool> {
    // SAFETY: PR_GET_THP_DISABLE takes no argument; the rest are zero.
    match unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) } {
        -1 => Err(std::io::Error::last_os_error()),
        flag => Ok(flag == 1),
    }
}

/// `[topology]`: the core of each tile, by OS CPU index. An empty list lets
/// tephra derive that tile's place from the machine.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TopologyConfig {
    /// The net tile (NIC backend): one core.
    pub net: Vec<usize>,
    /// The sequencer thread (pack, exec shard 0, seal): one core.
    pub sequencer: Vec<usize>,
    /// Exec worker shards 1..shards, one core each.
    pub exec: Vec<usize>,
    /// Threads that verify UDP's transactions.
    pub verify: Vec<usize>,
    /// The JSON-RPC server's threads (empty: the verify cores).
    pub rpc: Vec<usize>,
}

/// Every tile's core, checked against the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub net: usize,
    pub sequencer: usize,
    pub exec: Vec<usize>,
    pub verify: Vec<usize>,
    pub rpc: Vec<usize>,
    /// Whether the net tile spins on its core (it must have it alone).
    pub net_busy_poll: bool,
}

impl Placement {
    /// Places the tiles: configured entries as given, empty ones derived
    /// (net and verify on the first core, the sequencer on the second, exec
    /// workers on the cores after it, wrapping round on a small machine).
    pub fn resolve(
        config: &TopologyConfig,
        machine: &Machine,
        exec_workers: usize,
        net_busy_poll: bool,
    ) -> Result<Self, TopologyError> {
        let order = machine.by_preference();
        let at = |i: usize| order[i % order.len()];
        let single = |key, given: &[usize], default| match given {
            [] => Ok(default),
            [core] => Ok(*core),
            _ => Err(TopologyError::Placement { key, reason: format!("one core, not {}", given.len()) }),
        };
        let net = single("net", &config.net, at(0))?;
        let sequencer = single("sequencer", &config.sequencer, at(1))?;
        let exec = if config.exec.is_empty() {
            (0..exec_workers).map(|k| at(2 + k)).collect()
        } else if config.exec.len() == exec_workers {
            config.exec.clone()
        } else {
            return Err(TopologyError::Placement {
                key: "exec",
                reason: format!(
                    "{} cores listed for {exec_workers} worker shards ([exec] shards - 1)",
                    config.exec.len()
                ),
            });
        };
        let verify = if config.verify.is_empty() {
            // The cores no other tile has; on a machine too small for that,
            // every core but a busy-polling net tile's, shared.
            let taken: BTreeSet<usize> = [net, sequencer].into_iter().chain(exec.iter().copied()).collect();
            let free: Vec<usize> = order.iter().copied().filter(|core| !taken.contains(core)).collect();
            if free.is_empty() {
                order.iter().copied().filter(|core| !(net_busy_poll && *core == net)).collect()
            } else {
                free
            }
        } else {
            config.verify.clone()
        };
        let rpc = if config.rpc.is_empty() { verify.clone() } else { config.rpc.clone() };
        let placement = Self { net, sequencer, exec, verify, rpc, net_busy_poll };
        placement.check(machine)?;
        Ok(placement)
    }

    /// Each tile and its core, net first.
    pub fn tiles(&self) -> impl Iterator<Item = (&'static str, usize)> + '_ {
        [("net", self.net), ("sequencer", self.sequencer)]
            .into_iter()
            .chain(self.exec.iter().map(|core| ("exec", *core)))
            .chain(self.verify.iter().map(|core| ("verify", *core)))
            .chain(self.rpc.iter().map(|core| ("rpc", *core)))
    }

    fn check(&self, machine: &Machine) -> Result<(), TopologyError> {
        for (key, core) in self.tiles() {
            if machine.cpu(core).is_none() {
                let usable: Vec<String> = machine.cpus.iter().map(|cpu| cpu.os_index.to_string()).collect();
                return Err(TopologyError::Placement {
                    key,
                    reason: format!("core {core} is not one this process may run on ({})", usable.join(",")),
                });
            }
        }
        let mut exec_seen = BTreeSet::new();
        if let Some(core) = self.exec.iter().find(|core| !exec_seen.insert(**core)) {
            return Err(TopologyError::Placement { key: "exec", reason: format!("core {core} is listed twice") });
        }
        if self.net_busy_poll
            && let Some((other, _)) = self.tiles().skip(1).find(|(_, core)| *core == self.net)
        {
            return Err(TopologyError::Placement {
                key: "net",
                reason: format!(
                    "the net tile busy-polls core {} ([net] busy_poll), so it must have it alone, but the {other} \
                     tile is placed there too",
                    self.net
                ),
            });
        }
        Ok(())
    }

    /// The placement as a table, for the log at start.
    pub fn table(&self, machine: &Machine) -> PlacementTable<'_> {
        PlacementTable { placement: self, machine: machine.clone() }
    }
}

/// Prints a placement: one line per tile, with its core's package, NUMA node and L3.
#[derive(Debug)]
pub struct PlacementTable<'a> {
    placement: &'a Placement,
    machine: Machine,
}

impl fmt::Display for PlacementTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<10} {:>4} {:>5} {:>7} {:>5} {:>4}", "tile", "cpu", "core", "package", "numa", "l3")?;
        for (tile, os_index) in self.placement.tiles() {
            let cpu = self.machine.cpu(os_index).expect("checked at resolve");
            let l3 = cpu.l3.map_or_else(|| "-".to_string(), |l3| l3.to_string());
            let polling = if tile == "net" && self.placement.net_busy_poll { " (busy-poll)" } else { "" };
            writeln!(
                f,
                "{tile:<10} {os_index:>4} {:>5} {:>7} {:>5} {l3:>4}{polling}",
                cpu.core, cpu.package, cpu.numa_node
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)]
    fn a_background_thread_runs_at_idle_priority_and_the_caller_does_not() {
        // SAFETY: sched_getscheduler takes a pid (0: the calling thread) only.
        let policy = || unsafe { libc::sched_getscheduler(0) };
        let before = policy();
        let background = std::thread::spawn(move || {
            set_current_thread_idle_priority().unwrap();
            policy()
        });
        assert_eq!(background.join().unwrap(), libc::SCHED_IDLE);
        assert_eq!(policy(), before, "only the thread that asked");
        assert_ne!(before, libc::SCHED_IDLE);
    }

    #[test]
    fn transparent_huge_pages_turn_off_and_on_for_the_process() {
        set_transparent_huge_pages(false).unwrap();
        assert!(transparent_huge_pages_disabled().unwrap());
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(status.lines().any(|line| line.split_whitespace().eq(["THP_enabled:", "0"])), "{status}");
        set_transparent_huge_pages(true).unwrap();
        assert!(!transparent_huge_pages_disabled().unwrap());
    }

    /// A 2-package, 8-core, 16-thread server: threads 8-15 are the siblings of 0-7.
    fn server() -> Machine {
        let cpus = (0..16)
            .map(|os_index| {
                let core = os_index % 8;
                Cpu { os_index, core, package: core / 4, numa_node: core / 4, l3: Some(core / 4) }
            })
            .collect();
        Machine { cpus }
    }

    fn two_cores() -> Machine {
        Machine { cpus: (0..2).map(|i| Cpu { os_index: i, core: i, package: 0, numa_node: 0, l3: None }).collect() }
    }

    #[test]
    fn the_default_fills_whole_cores_before_siblings() {
        let placement = Placement::resolve(&TopologyConfig::default(), &server(), 3, true).unwrap();
        assert_eq!((placement.net, placement.sequencer, placement.exec.clone()), (0, 1, vec![2, 3, 4]));
        // Verify gets the rest, physical cores first.
        assert_eq!(placement.verify, vec![5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        let table = placement.table(&server()).to_string();
        assert!(table.contains("(busy-poll)"), "{table}");
    }

    #[test]
    fn a_two_core_machine_shares_cores_unless_the_net_tile_spins() {
        let placement = Placement::resolve(&TopologyConfig::default(), &two_cores(), 1, false).unwrap();
        assert_eq!((placement.net, placement.sequencer, placement.exec.clone()), (0, 1, vec![0]));
        assert_eq!(placement.verify, vec![0, 1]);
        assert_eq!(placement.rpc, placement.verify);
        // Busy-polling net on core 0 cannot share it with the exec worker.
        let error = Placement::resolve(&TopologyConfig::default(), &two_cores(), 1, true).unwrap_err();
        assert!(error.to_string().contains("must have it alone"), "{error}");
        let spinning = Placement::resolve(&TopologyConfig::default(), &two_cores(), 0, true).unwrap();
        assert_eq!(spinning.verify, vec![1]);
    }

    #[test]
    fn invalid_placements_are_refused_with_the_key() {
        let missing = TopologyConfig { sequencer: vec![99], ..TopologyConfig::default() };
        let error = Placement::resolve(&missing, &two_cores(), 0, false).unwrap_err();
        assert_eq!(error.to_string(), "[topology] sequencer: core 99 is not one this process may run on (0,1)");
        let count = TopologyConfig { exec: vec![2], ..TopologyConfig::default() };
        assert!(Placement::resolve(&count, &server(), 2, false).unwrap_err().to_string().contains("exec"));
        let twice = TopologyConfig { exec: vec![2, 2], ..TopologyConfig::default() };
        assert!(Placement::resolve(&twice, &server(), 2, false).unwrap_err().to_string().contains("twice"));
        let two_nets = TopologyConfig { net: vec![0, 1], ..TopologyConfig::default() };
        assert!(Placement::resolve(&two_nets, &server(), 0, false).is_err());
        let rpc_missing = TopologyConfig { rpc: vec![7], ..TopologyConfig::default() };
        let error = Placement::resolve(&rpc_missing, &two_cores(), 0, false).unwrap_err();
        assert_eq!(error.to_string(), "[topology] rpc: core 7 is not one this process may run on (0,1)");
    }

    #[test]
    fn this_machine_is_discovered() {
        let machine = Machine::discover().expect("hwloc reads the machine");
        assert!(!machine.cpus.is_empty());
        assert_eq!(machine.cpus.len(), core_affinity::get_core_ids().unwrap().len());
    }
}
