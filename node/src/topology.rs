//! The node's topology in one table, as Firedancer keeps its own: every
//! thread the node runs (a tile) with its count and cores, and every queue
//! between them (a link) with its depth and the key that sets it. Built from
//! the config and the resolved placement, logged at start and printed by
//! `tephra topology`. A thread or a queue added to the node belongs here.
//!
//! Where each comes from: net `tephra_dataplane::Dataplane::start`; verify
//! the tokio runtime `tephra run` builds; the sequencer or role thread
//! `node::spawn_role`; exec `tephra_exec::ParallelExecutor`; the signer
//! `tephra_hsm::SigningPipeline`; the hasher `sequencer/hasher.rs`; the
//! certifier `delegation.rs`; the HA
//! runtime `ha.rs`. An unpinned thread keeps the affinity of the thread
//! that started it.

use std::fmt;

use tephra_dataplane::{backend::BackendKind, topology::Placement};

use crate::config::Config;

/// Which cores a tile's threads run on (OS CPU indices).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cores {
    /// Pinned to these (none: the tile has no threads).
    Pinned(Vec<usize>),
    /// Not pinned: started by the named tile's thread, whose core it keeps.
    Inherited { from: &'static str, cores: Vec<usize> },
    /// Not pinned: any core this process may run on.
    Any,
}

/// One kind of thread of the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tile {
    pub name: &'static str,
    /// Threads of its own (0: none with this config).
    pub count: usize,
    /// Runs as tasks on that tile's threads instead of threads of its own.
    pub on: Option<&'static str>,
    pub cores: Cores,
    /// The threads' name, as `ps -T` and `top -H` show it (cut to 15 bytes).
    pub thread: &'static str,
    pub what: String,
}

/// One bounded queue between tiles (or a tile and the outside).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub from: &'static str,
    pub to: &'static str,
    pub what: &'static str,
    pub depth: usize,
    pub unit: &'static str,
    /// The config key that sets the depth, or the code that fixes it.
    pub key: &'static str,
}

/// Every tile and link of a node with a given config and placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    tiles: Vec<Tile>,
    links: Vec<Link>,
}

impl Topology {
    /// The node `config` starts with its tiles placed by `placement`
    /// (`node::placement`).
    pub fn of(config: &Config, placement: &Placement) -> Self {
        let pair = config.ha.enabled;
        // In a pair the sequencer runs on the role thread, once it leads.
        let (sequencer, sequencer_thread) =
            if pair { ("role", "tephra-role") } else { ("sequencer", "tephra-sequencer") };
        // The signer and the exec workers are started where the sequencer is
        // opened: on the thread that runs `node::start` for a single node, on
        // the role thread (pinned) in a pair.
        let opened_on =
            if pair { Cores::Inherited { from: sequencer, cores: vec![placement.sequencer] } } else { Cores::Any };
        let leading = if pair { ", once this node leads" } else { "" };
        let shards = config.exec.shard_config(placement);
        let exec_workers = shards.shards - 1;
        let verify = Cores::Pinned(placement.verify.clone());
        let backend = backend_name(config.net.backend);
        let mut tiles = vec![
            Tile {
                name: "net",
                count: 1,
                on: None,
                cores: Cores::Pinned(vec![placement.net]),
                thread: "tephra-net",
                what: format!(
                    "the NIC backend ({backend}): datagrams into the ingress ring, replies out of the egress ring, a \
                     source over its rate dropped; a glommio executor{} (its blocking helper thread waits on the same \
                     core{})",
                    if placement.net_busy_poll { " busy-polling its core alone" } else { "" },
                    if config.net.backend == BackendKind::Dpdk { "; DPDK's EAL adds its interrupt thread" } else { "" },
                ),
            },
            Tile {
                name: "verify",
                count: placement.verify.len(),
                on: None,
                cores: verify.clone(),
                thread: "tokio-rt-worker",
                what: "the tokio runtime's workers (`tephra run`): UDP datagrams decoded, limited per source, \
                       signatures recovered, submitted, answered once preconfirmed; /metrics, /health, /ready \
                       (metrics.listen)"
                    .into(),
            },
            Tile {
                name: "rpc",
                count: placement.rpc.len(),
                on: None,
                cores: Cores::Pinned(placement.rpc.clone()),
                thread: "tephra-rpc",
                what: "a tokio runtime of its own: jsonrpsee, HTTP and WebSocket (rpc.listen); reads answered, \
                       eth_sendRawTransaction's signatures recovered and submitted, never behind UDP's recoveries"
                    .into(),
            },
            Tile {
                name: sequencer,
                count: 1,
                on: None,
                cores: Cores::Pinned(vec![placement.sequencer]),
                thread: sequencer_thread,
                what: if pair {
                    "a standby follows the leader's batch log (append, fsync, acknowledge, apply); elected, it runs \
                     the sequencer: admit, execute (exec shard 0), batch log + fsync, replicate, preconfirm, seal"
                        .into()
                } else {
                    "admit into the pool, cut and execute mini-blocks (exec shard 0), batch log + fsync, \
                     preconfirm; seal every block.block_time_s; snapshots"
                        .into()
                },
            },
            Tile {
                name: "hasher",
                count: 1,
                on: None,
                cores: verify,
                thread: "tephra-hash",
                what: format!(
                    "the state trie (account and storage tries): takes each mini-block's state diff, hashes ahead \
                     every 2 ms, answers the seal's roots; frees sealed blocks' executed transactions{leading}"
                ),
            },
            Tile {
                name: "exec",
                count: exec_workers,
                on: None,
                cores: if exec_workers == 0 || !shards.worker_cores.is_empty() {
                    Cores::Pinned(shards.worker_cores)
                } else {
                    opened_on.clone()
                },
                thread: "tephra-exec-N",
                what: if exec_workers == 0 {
                    "none: exec.shards = 1 executes on the sequencer thread".into()
                } else {
                    format!(
                        "exec.shards = {} less shard 0, the {sequencer} thread: worker shards executing a \
                         mini-block's windows in parallel{leading}",
                        shards.shards
                    )
                },
            },
            Tile {
                name: "signer",
                count: 1,
                on: None,
                cores: opened_on,
                thread: "tephra-sign",
                what: format!(
                    "the signing pipeline: sealed blocks signed in order with the block key (tephra-hsm: double-sign \
                     guard, audit log + fsync, the key), a failure retried{leading}"
                ),
            },
            Tile {
                name: "certifier",
                count: 1,
                on: None,
                cores: Cores::Inherited { from: sequencer, cores: vec![placement.sequencer] },
                thread: "tephra-certify",
                what: "from half an epoch on (signer.delegation_epoch_blocks), certifies the next epoch's hot key \
                       with the block key, then ends"
                    .into(),
            },
        ];
        if config.history.enabled {
            tiles.push(Tile {
                name: "history",
                count: 1,
                on: None,
                cores: Cores::Any,
                thread: "tephra-history",
                what: format!(
                    "the state history (SCHED_IDLE): stores each sealed block's changes (history.redb, one block in \
                     {} fsync'd), prunes below [history] blocks_max",
                    crate::history::DURABLE_EVERY_BLOCKS
                ),
            });
        }
        if pair {
            tiles.push(Tile {
                name: "ha",
                count: crate::ha::HA_THREADS,
                on: None,
                cores: Cores::Any,
                thread: "tephra-ha",
                what: "a tokio runtime of its own: etcd (lease keep-alive, leader watch, status), replication \
                       (a leader serves its standbys, a standby reads from the leader)"
                    .into(),
            });
        }
        let mut links = links_of(config, placement, sequencer);
        links.retain(|link| config.history.enabled || link.to != "history");
        Self { tiles, links }
    }

    pub fn tiles(&self) -> &[Tile] {
        &self.tiles
    }

    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// The tile called `name`.
    pub fn tile(&self, name: &str) -> Option<&Tile> {
        self.tiles.iter().find(|tile| tile.name == name)
    }

    /// The link whose depth `key` sets.
    pub fn link(&self, key: &str) -> Option<&Link> {
        self.links.iter().find(|link| link.key == key)
    }
}

/// Every queue between the tiles, with its depth and the key that sets it;
/// `sequencer` names the thread that owns the sequencer (the role thread in a pair).
fn links_of(config: &Config, placement: &Placement, sequencer: &'static str) -> Vec<Link> {
    let pair = config.ha.enabled;
    let net = &config.net;
    let (nic_in, nic_out) = match net.backend {
        BackendKind::Socket => (
            nic(
                "datagrams received, not yet taken (io_uring buffer ring)",
                net.socket_rx_slots,
                "buffers",
                "net.socket_rx_slots",
            ),
            nic("replies being sent (sendmsg slots)", net.socket_tx_slots, "slots", "net.socket_tx_slots"),
        ),
        BackendKind::AfXdp => {
            let half = net.af_xdp.frames as usize / 2;
            (
                nic(
                    "frames received (the UMEM's receive half: fill and rx rings)",
                    half,
                    "frames",
                    "net.af_xdp.frames / 2",
                ),
                nic("frames being sent (the UMEM's transmit half)", half, "frames", "net.af_xdp.frames / 2"),
            )
        }
        BackendKind::Dpdk => (
            nic(
                "frames received (rx descriptors, at most)",
                net.dpdk.rx_queue_depth.into(),
                "descriptors",
                "net.dpdk.rx_queue_depth",
            ),
            nic(
                "frames being sent (tx descriptors, at most)",
                net.dpdk.tx_queue_depth.into(),
                "descriptors",
                "net.dpdk.tx_queue_depth",
            ),
        ),
    };
    let unsigned = config.signer.unsigned_blocks_max;
    let subscription_buffer = config.rpc.subscription_buffer_max as usize;
    let mut links = vec![
        Link { from: "NIC", to: "net", ..nic_in },
        Link {
            from: "net",
            to: "verify",
            what: "datagrams (the ingress ring, SPSC); full: dropped, counted",
            depth: net.ingress_ring_depth,
            unit: "datagrams",
            key: "net.ingress_ring_depth",
        },
        Link {
            from: "net",
            to: "verify",
            what: "datagrams taken and not yet answered; at the bound the ingress ring fills",
            depth: config.udp.inflight_datagrams_max,
            unit: "datagrams",
            key: "udp.inflight_datagrams_max",
        },
        Link {
            from: "net",
            to: "verify",
            what: "of those, datagrams being verified (each holds its packet buffer)",
            depth: placement.verify.len() * crate::udp::VERIFYING_PER_THREAD,
            unit: "datagrams",
            key: "udp::VERIFYING_PER_THREAD x verify threads",
        },
        Link {
            from: "net",
            to: "verify",
            what: "packet buffers (4 KiB), all made at start, lent both ways",
            depth: net.packet_buffers,
            unit: "buffers",
            key: "net.packet_buffers",
        },
        Link {
            from: "verify",
            to: sequencer,
            what: "verified transactions, UDP's and (from the rpc tile) JSON-RPC's; full: refused (code 309)",
            depth: config.sequencer.submission_queue_depth,
            unit: "transactions",
            key: "sequencer.submission_queue_depth",
        },
        Link {
            from: sequencer,
            to: "verify",
            what: "each submission's outcome: pooled, preconfirmed or refused",
            depth: 1,
            unit: "outcome",
            key: "a oneshot per submission",
        },
        Link {
            from: "verify",
            to: "net",
            what: "replies (the egress ring, SPSC; a push rings the idle tile's doorbell)",
            depth: net.egress_ring_depth,
            unit: "datagrams",
            key: "net.egress_ring_depth",
        },
        Link { from: "net", to: "NIC", ..nic_out },
        Link {
            from: sequencer,
            to: "hasher",
            what: "state diffs, one per mini-block, and the seal's request for roots; full: the sequencer waits",
            depth: crate::sequencer::HASHER_QUEUE_DIFFS_MAX,
            unit: "diffs",
            key: "sequencer::HASHER_QUEUE_DIFFS_MAX",
        },
        Link {
            from: sequencer,
            to: "signer",
            what: "sealed blocks to sign (more if the log holds more unsigned at start); full: no seal",
            depth: unsigned,
            unit: "blocks",
            key: "signer.unsigned_blocks_max",
        },
        Link {
            from: "signer",
            to: sequencer,
            what: "signatures and failures",
            depth: 2 * unsigned,
            unit: "reports",
            key: "2 x signer.unsigned_blocks_max",
        },
        Link {
            from: sequencer,
            to: "history",
            what: "sealed blocks' changes, pushed at each seal; full: the history starts again from the head",
            depth: crate::history::PENDING_BLOCKS_MAX,
            unit: "blocks",
            key: "history::PENDING_BLOCKS_MAX",
        },
        Link {
            from: "certifier",
            to: sequencer,
            what: "the next epoch's hot key and its certificate",
            depth: 1,
            unit: "key",
            key: "delegation.rs",
        },
        Link {
            from: sequencer,
            to: "rpc",
            what: "events: preconfirmations, sealed blocks (broadcast); a subscriber further behind is dropped",
            // tokio's broadcast channel rounds its capacity up.
            depth: subscription_buffer.next_power_of_two(),
            unit: "events",
            key: "rpc.subscription_buffer_max (next power of 2)",
        },
        Link {
            from: "rpc",
            to: "clients",
            what: "subscription messages, per WebSocket connection",
            depth: subscription_buffer,
            unit: "messages",
            key: "rpc.subscription_buffer_max",
        },
    ];
    if pair {
        let ha = &config.ha;
        links.extend([
            Link {
                from: sequencer,
                to: "ha",
                what: "a leader's newest log frames for its standbys (older ones are read from disk)",
                depth: ha.replication_window_bytes_max,
                unit: "bytes",
                key: "ha.replication_window_bytes_max",
            },
            Link {
                from: "ha",
                to: "standbys",
                what: "replication sessions a leader serves",
                depth: ha.standbys_max,
                unit: "sessions",
                key: "ha.standbys_max",
            },
            Link {
                from: "ha",
                to: sequencer,
                what: "a standby's records from the leader, one message at a time",
                depth: ha.replication_message_bytes_max,
                unit: "bytes",
                key: "ha.replication_message_bytes_max",
            },
        ]);
    }
    links
}

fn backend_name(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::Socket => "socket",
        BackendKind::AfXdp => "af_xdp",
        BackendKind::Dpdk => "dpdk",
    }
}

/// A link between the NIC and the net tile (its ends filled in by the caller).
fn nic(what: &'static str, depth: usize, unit: &'static str, key: &'static str) -> Link {
    Link { from: "", to: "", what, depth, unit, key }
}

/// `0,2-5`: ascending runs as ranges.
fn core_list(cores: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cores.len() {
        let mut j = i;
        while j + 1 < cores.len() && cores[j + 1] == cores[j] + 1 {
            j += 1;
        }
        parts.push(if j > i + 1 { format!("{}-{}", cores[i], cores[j]) } else { cores[i].to_string() });
        if j == i + 1 {
            parts.push(cores[j].to_string());
        }
        i = j + 1;
    }
    parts.join(",")
}

impl fmt::Display for Cores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pinned(cores) if cores.is_empty() => f.write_str("-"),
            Self::Pinned(cores) => f.write_str(&core_list(cores)),
            Self::Inherited { from, cores } => write!(f, "{} ({from}'s)", core_list(cores)),
            Self::Any => f.write_str("any"),
        }
    }
}

/// Rows of cells, each column as wide as its widest cell; the last one unpadded.
fn write_table(f: &mut fmt::Formatter<'_>, rows: &[Vec<String>]) -> fmt::Result {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> =
        (0..columns).map(|c| rows.iter().map(|row| row[c].chars().count()).max().unwrap_or(0)).collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == columns {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        writeln!(f, "{}", line.trim_end())?;
    }
    Ok(())
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = |cells: &[&str]| cells.iter().map(|cell| cell.to_string()).collect::<Vec<_>>();
        let mut tiles = vec![header(&["tile", "threads", "cores", "thread", "what it does"])];
        for tile in &self.tiles {
            let count = tile.on.map_or_else(|| tile.count.to_string(), |on| format!("on {on}"));
            tiles.push(vec![tile.name.into(), count, tile.cores.to_string(), tile.thread.into(), tile.what.clone()]);
        }
        write_table(f, &tiles)?;
        writeln!(f)?;
        // What flows last: the one long cell needs no padding.
        let mut links = vec![header(&["link", "depth", "set by", "what flows"])];
        for link in &self.links {
            links.push(vec![
                format!("{} -> {}", link.from, link.to),
                format!("{} {}", link.depth, link.unit),
                link.key.into(),
                link.what.into(),
            ]);
        }
        write_table(f, &links)
    }
}

#[cfg(test)]
mod tests {
    use tephra_dataplane::topology::{Cpu, Machine};

    use super::*;

    /// A 4-core machine, one hardware thread each.
    fn machine() -> Machine {
        Machine { cpus: (0..4).map(|i| Cpu { os_index: i, core: i, package: 0, numa_node: 0, l3: Some(0) }).collect() }
    }

    /// The topology of the defaults overlaid with `overrides`, placed as `node::placement` places it.
    fn placed(overrides: &str) -> (Config, Placement, Topology) {
        let config = Config::from_toml(overrides).expect("a valid config");
        let placement =
            Placement::resolve(&config.topology, &machine(), config.exec.shards - 1, config.net.busy_poll).unwrap();
        let topology = Topology::of(&config, &placement);
        (config, placement, topology)
    }

    #[test]
    fn the_defaults_list_every_tile_and_link_with_its_depth() {
        let (_, placement, topology) = placed("");
        let names: Vec<&str> = topology.tiles().iter().map(|tile| tile.name).collect();
        assert_eq!(names, ["net", "verify", "rpc", "sequencer", "hasher", "exec", "signer", "certifier", "history"]);
        let tile = |name| topology.tile(name).unwrap();
        assert_eq!((tile("net").count, &tile("net").cores), (1, &Cores::Pinned(vec![0])));
        assert_eq!((tile("sequencer").count, &tile("sequencer").cores), (1, &Cores::Pinned(vec![1])));
        assert_eq!(tile("verify").count, placement.verify.len());
        assert_eq!(tile("verify").cores, Cores::Pinned(vec![2, 3]));
        assert_eq!((tile("hasher").count, &tile("hasher").cores), (1, &Cores::Pinned(vec![2, 3])));
        // JSON-RPC's runtime: a worker on each verify core unless placed.
        assert_eq!((tile("rpc").count, &tile("rpc").cores, tile("rpc").on), (2, &Cores::Pinned(vec![2, 3]), None));
        let (_, placed_rpc, _) = placed("[topology]\nrpc = [3]\n");
        assert_eq!((placed_rpc.rpc, placed_rpc.verify), (vec![3], vec![2, 3]));
        // exec.shards = 1: the sequencer executes alone.
        assert_eq!((tile("exec").count, tile("exec").cores.to_string()), (0, "-".to_string()));
        assert_eq!(tile("signer").cores, Cores::Any);
        assert_eq!(tile("certifier").cores, Cores::Inherited { from: "sequencer", cores: vec![1] });
        let depths: Vec<(&str, &str, &str, usize)> =
            topology.links().iter().map(|link| (link.from, link.to, link.key, link.depth)).collect();
        assert_eq!(
            depths,
            [
                ("NIC", "net", "net.socket_rx_slots", 256),
                ("net", "verify", "net.ingress_ring_depth", 1024),
                ("net", "verify", "udp.inflight_datagrams_max", 1024),
                ("net", "verify", "udp::VERIFYING_PER_THREAD x verify threads", 4),
                ("net", "verify", "net.packet_buffers", 4096),
                ("verify", "sequencer", "sequencer.submission_queue_depth", 16384),
                ("sequencer", "verify", "a oneshot per submission", 1),
                ("verify", "net", "net.egress_ring_depth", 1024),
                ("net", "NIC", "net.socket_tx_slots", 256),
                ("sequencer", "hasher", "sequencer::HASHER_QUEUE_DIFFS_MAX", 1024),
                ("sequencer", "signer", "signer.unsigned_blocks_max", 2),
                ("signer", "sequencer", "2 x signer.unsigned_blocks_max", 4),
                ("sequencer", "history", "history::PENDING_BLOCKS_MAX", 4096),
                ("certifier", "sequencer", "delegation.rs", 1),
                ("sequencer", "rpc", "rpc.subscription_buffer_max (next power of 2)", 1024),
                ("rpc", "clients", "rpc.subscription_buffer_max", 1024),
            ]
        );
        let table = topology.to_string();
        assert!(table.contains("sequencer -> signer"), "{table}");
        assert!(table.contains("16384 transactions"), "{table}");
        let verify_row =
            table.lines().find(|line| line.starts_with("verify ")).map(|line| line.split_whitespace().take(4));
        assert_eq!(verify_row.map(Iterator::collect), Some(vec!["verify", "2", "2,3", "tokio-rt-worker"]), "{table}");
        // Aligned: every link's depth starts in one column.
        let depth_at = |row: &str, depth: &str| table.lines().find(|line| line.starts_with(row))?.find(depth);
        let ingress = depth_at("net -> verify", "1024 datagrams");
        assert!(ingress.is_some() && ingress == depth_at("verify -> sequencer", "16384 transactions"), "{table}");
    }

    #[test]
    fn a_pair_has_the_role_thread_and_the_ha_runtime() {
        let (config, _, topology) = placed("[ha]\nenabled = true\n");
        let ha = topology.tile("ha").expect("the HA runtime");
        assert_eq!((ha.count, ha.thread), (crate::ha::HA_THREADS, "tephra-ha"));
        assert!(topology.tile("sequencer").is_none());
        let role = topology.tile("role").unwrap();
        assert_eq!((role.thread, &role.cores), ("tephra-role", &Cores::Pinned(vec![1])));
        // Started by the role thread once it leads, so on its core.
        assert_eq!(topology.tile("signer").unwrap().cores, Cores::Inherited { from: "role", cores: vec![1] });
        let window = topology.link("ha.replication_window_bytes_max").unwrap();
        assert_eq!((window.from, window.to, window.depth), ("role", "ha", config.ha.replication_window_bytes_max));
        assert!(topology.link("ha.standbys_max").is_some());
        assert!(topology.to_string().contains("role -> ha"));
    }

    #[test]
    fn the_sequencer_is_shard_0_so_two_shards_start_one_worker() {
        let (config, placement, topology) = placed("[exec]\nshards = 2\n");
        let exec = topology.tile("exec").unwrap();
        assert_eq!(exec.count, 1);
        // As the sequencer's executor places its workers.
        let shards = config.exec.shard_config(&placement);
        assert_eq!(shards.shards, 2);
        assert_eq!(exec.cores, Cores::Pinned(shards.worker_cores.clone()));
        assert_eq!(shards.worker_cores, placement.exec);
        let executor = tephra_exec::ParallelExecutor::new(&tephra_exec::ShardConfig::unpinned(2)).unwrap();
        assert_eq!(executor.shards(), 2, "shard 0 and one worker");
        // Unpinned, the workers keep where the executor was made.
        let (_, _, unpinned) = placed("[exec]\nshards = 3\npin_shards = false\n");
        let exec = unpinned.tile("exec").unwrap();
        assert_eq!((exec.count, &exec.cores), (2, &Cores::Any));
    }

    #[test]
    fn the_nic_links_follow_the_backend() {
        let (_, _, topology) = placed("[net]\nbackend = \"af_xdp\"\n[net.af_xdp]\nframes = 2048\n");
        let rx = &topology.links()[0];
        assert_eq!((rx.from, rx.to, rx.depth, rx.unit), ("NIC", "net", 1024, "frames"));
        let (_, _, dpdk) = placed("[net]\nbackend = \"dpdk\"\n");
        assert_eq!(dpdk.link("net.dpdk.tx_queue_depth").unwrap().depth, 1024);
        assert!(dpdk.tile("net").unwrap().what.contains("EAL"));
    }

    #[test]
    fn core_lists_are_runs() {
        assert_eq!(core_list(&[0]), "0");
        assert_eq!(core_list(&[0, 1]), "0,1");
        assert_eq!(core_list(&[0, 2, 3, 4, 7, 9, 10]), "0,2-4,7,9,10");
        assert_eq!(Cores::Inherited { from: "role", cores: vec![1] }.to_string(), "1 (role's)");
    }
}
