//! Two network namespaces joined by a veth pair: the test and benchmark bed
//! for the kernel-bypass backends (AF_XDP and DPDK need a real interface;
//! these machines have veth, not a NIC). Needs root and iproute2.
#![allow(unsafe_code)]

use std::{fs::File, io, net::Ipv4Addr, os::fd::AsRawFd, process::Command};

/// Namespaces `{name}-a` and `{name}-b`, interfaces `{name}a` and `{name}b`.
#[derive(Debug)]
pub struct VethPair {
    pub namespaces: [String; 2],
    pub interfaces: [String; 2],
    pub addresses: [Ipv4Addr; 2],
}

fn ip(args: &[&str]) -> io::Result<()> {
    let output = Command::new("ip").args(args).output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim())))
    }
}

/// Why this machine cannot host a veth pair, if it cannot.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces and XDP)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(output) if output.status.success() => None,
        _ => Some("needs iproute2's ip".into()),
    }
}

impl VethPair {
    /// Creates both namespaces and the pair (10.{subnet}.0.1 and .2, /24),
    /// replacing leftovers of a run that crashed. Checksum offload is off on
    /// both ends so that every frame carries its full UDP checksum, as a
    /// real NIC's would.
    pub fn create(name: &str, subnet: u8) -> io::Result<Self> {
        let namespaces = [format!("{name}-a"), format!("{name}-b")];
        let interfaces = [format!("{name}a"), format!("{name}b")];
        let addresses = [Ipv4Addr::new(10, subnet, 0, 1), Ipv4Addr::new(10, subnet, 0, 2)];
        for namespace in &namespaces {
            let _ = ip(&["netns", "del", namespace]);
            ip(&["netns", "add", namespace])?;
        }
        let pair = Self { namespaces, interfaces, addresses };
        ip(&["link", "add", &pair.interfaces[0], "type", "veth", "peer", "name", &pair.interfaces[1]])?;
        for side in 0..2 {
            let (namespace, interface) = (&pair.namespaces[side], &pair.interfaces[side]);
            ip(&["link", "set", interface, "netns", namespace])?;
            let address = format!("{}/24", pair.addresses[side]);
            ip(&["-n", namespace, "addr", "add", &address, "dev", interface])?;
            ip(&["-n", namespace, "link", "set", interface, "up"])?;
            ip(&["-n", namespace, "link", "set", "lo", "up"])?;
            let status = Command::new("ip")
                .args(["netns", "exec", namespace, "ethtool", "-K", interface, "tx", "off", "rx", "off"])
                .output()?;
            if !status.status.success() {
                return Err(io::Error::other(format!(
                    "ethtool -K {interface}: {}",
                    String::from_utf8_lossy(&status.stderr)
                )));
            }
        }
        // The XDP program takes only tephra's port, but a static entry keeps
        // the first datagram from waiting on ARP.
        let output = Command::new("ip")
            .args([
                "netns",
                "exec",
                &pair.namespaces[0],
                "cat",
                &format!("/sys/class/net/{}/address", pair.interfaces[0]),
            ])
            .output()?;
        let mac_a = String::from_utf8_lossy(&output.stdout).trim().to_string();
        ip(&[
            "-n",
            &pair.namespaces[1],
            "neigh",
            "replace",
            &pair.addresses[0].to_string(),
            "lladdr",
            &mac_a,
            "dev",
            &pair.interfaces[1],
        ])?;
        Ok(pair)
    }

    /// Moves the calling thread into side `side`'s namespace; threads it
    /// spawns afterwards start there too.
    pub fn enter(&self, side: usize) -> io::Result<()> {
        enter_named(&self.namespaces[side])
    }
}

/// Moves the calling thread into the named network namespace (`ip netns`).
pub fn enter_named(namespace: &str) -> io::Result<()> {
    let file = File::open(format!("/run/netns/{namespace}"))?;
    // SAFETY: a valid namespace fd; setns changes only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth ends in it.
        for namespace in &self.namespaces {
            let _ = ip(&["netns", "del", namespace]);
        }
    }
}
