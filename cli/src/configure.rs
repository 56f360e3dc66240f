//! `tephra configure check|init|fini`: what the host must provide for the
//! configured dataplane (dataplane/src/configure.rs does the work).

use std::{fs, path::Path};

use tephra_dataplane::{backend::BackendKind, configure, topology::Placement};

use tephra_node::{config::Config, node};

/// The host plan the config implies: huge pages and memlock for the
/// backend, the NIC it owns, and the cores whose tiles must not take IRQs.
pub fn plan(config: &Config) -> Result<configure::HostPlan, String> {
    let (_, placement) = node::placement(config).map_err(|e| e.to_string())?;
    let host = &config.host;
    let interface = match config.net.backend {
        BackendKind::Socket => None,
        BackendKind::AfXdp => Some(config.net.af_xdp.interface.clone()),
        BackendKind::Dpdk => host_interface(&config.net.dpdk.eal_args),
    };
    // The sequencer and exec workers run flat out; a spinning net tile too.
    let mut hot_cores: Vec<usize> =
        std::iter::once(placement.sequencer).chain(placement.exec.iter().copied()).collect();
    if config.net.busy_poll {
        hot_cores.push(placement.net);
    }
    hot_cores.sort_unstable();
    hot_cores.dedup();
    Ok(configure::HostPlan {
        hugepages_2m: host.hugepages_2m,
        hugetlbfs_mount: host.hugetlbfs_mount.clone(),
        memlock_bytes_min: host.memlock_bytes_min,
        interface: interface.filter(|name| !name.is_empty()),
        nic_channels: (host.nic_channels > 0).then_some(host.nic_channels),
        hot_cores,
        socket_buffer_bytes: host.socket_buffer_bytes,
        rp_filter_off: config.net.backend != BackendKind::Socket,
        ..configure::HostPlan::default()
    })
}

/// The kernel interface a DPDK virtual device rides on (`iface=` of a vdev).
fn host_interface(eal_args: &[String]) -> Option<String> {
    eal_args.iter().find_map(|arg| arg.split(',').find_map(|part| part.strip_prefix("iface=")).map(str::to_string))
}

/// Where systemd reads runtime unit drop-ins (present only under systemd).
const SYSTEMD_RUNTIME_UNITS: &str = "/run/systemd/system";
/// tephra.service's CPU affinity, relative to SYSTEMD_RUNTIME_UNITS; gone at reboot,
/// rewritten by the next `init` (tephra-configure.service) from the config of that boot.
const AFFINITY_DROP_IN: &str = "tephra.service.d/50-topology.conf";

/// tephra.service confined to the cores its tiles are placed on.
fn affinity_drop_in(placement: &Placement) -> String {
    let cores: Vec<usize> = placement.tiles().map(|(_, core)| core).collect();
    format!(
        "# Written by `tephra configure init` from [topology].\n[Service]\nCPUAffinity={}\n",
        configure::format_core_list(&cores)
    )
}

/// Runs one verb and returns its report; `check` fails when anything is missing.
pub fn run(config: &Config, verb: &str) -> Result<String, String> {
    let plan = plan(config)?;
    match verb {
        "check" => {
            let findings = configure::check(&plan);
            let report: Vec<String> = findings.iter().map(ToString::to_string).collect();
            let report = if report.is_empty() { "nothing missing".to_string() } else { report.join("\n") };
            if configure::any_missing(&findings) { Err(format!("{report}\nthe host is not ready")) } else { Ok(report) }
        }
        "init" => {
            let mut done = configure::init(&plan).map_err(|e| e.to_string())?;
            if Path::new(SYSTEMD_RUNTIME_UNITS).is_dir() {
                let (_, placement) = node::placement(config).map_err(|e| e.to_string())?;
                let drop_in = Path::new(SYSTEMD_RUNTIME_UNITS).join(AFFINITY_DROP_IN);
                let text = affinity_drop_in(&placement);
                fs::create_dir_all(drop_in.parent().expect("a drop-in has a directory"))
                    .and_then(|()| fs::write(&drop_in, &text))
                    .map_err(|e| format!("{}: {e}", drop_in.display()))?;
                done.push(format!("{}: {}", drop_in.display(), text.lines().last().unwrap_or_default()));
            }
            Ok(done.join("\n"))
        }
        "fini" => {
            let mut done = configure::fini(&plan).map_err(|e| e.to_string())?;
            let drop_in = Path::new(SYSTEMD_RUNTIME_UNITS).join(AFFINITY_DROP_IN);
            if fs::remove_file(&drop_in).is_ok() {
                done.push(format!("removed {} (systemctl daemon-reload applies it)", drop_in.display()));
            }
            Ok(done.join("\n"))
        }
        other => Err(format!("unknown configure verb {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_affinity_drop_in_names_every_placed_core() {
        let placement = Placement {
            net: 0,
            sequencer: 1,
            exec: vec![2, 3],
            verify: vec![0, 4, 5],
            rpc: vec![6],
            net_busy_poll: false,
        };
        assert!(affinity_drop_in(&placement).ends_with("[Service]\nCPUAffinity=0-6\n"));
    }

    #[test]
    fn the_plan_follows_the_backend() {
        let mut config = Config::from_toml("").unwrap();
        let socket = plan(&config).unwrap();
        assert_eq!((socket.interface, socket.rp_filter_off), (None, false));
        config.net.backend = BackendKind::Dpdk;
        config.net.dpdk.eal_args = vec!["--no-pci".into(), "--vdev=net_af_packet0,iface=eth7".into()];
        let dpdk = plan(&config).unwrap();
        assert_eq!((dpdk.interface.as_deref(), dpdk.rp_filter_off), (Some("eth7"), true));
        assert!(dpdk.hot_cores.contains(&node::placement(&config).unwrap().1.sequencer));
    }
}
