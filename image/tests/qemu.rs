//! The appliance, booted for real: image/build.sh builds the disk image and
//! update bundles, QEMU boots them under TCG with OVMF, and the test talks to
//! the guest as clients and operators do, through hostfwd (JSON-RPC, the
//! UDP wire format, SSH with the build's key).
//!
//! One disk lives through eight boots: the first boot (data partition made,
//! config seeded, tephra ready, a transaction preconfirmed over UDP, a clean
//! journal; a bundle whose root does not match its root hash is refused
//! before anything changes); an update blessed after health, with the state
//! kept; the operator's rollback; an update whose slot is then corrupted
//! under dm-verity, which fails twice and falls back; an update whose tephra
//! never becomes ready, which falls back.
//!
//! Needs root, qemu-system-x86_64, OVMF and the image tools
//! (scripts/image-deps.sh), declared through tephra_testkit::require.

#![allow(clippy::print_stdout, reason = "the test reports image sizes and boot times (docs/operators.md) on stdout")]

use std::{
    fs,
    io::{Read, Write},
    net::{TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};
use tephra_exec::dev::DEV_PRIVATE_KEYS;
use tephra_testkit::{Need, free_port, npm_tool, require, workspace_root};
use tephra_types::wire::{self, TxReply};

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// From QEMU's start to tephra answering, under TCG: firmware, kernel, a
/// first boot that makes the data partition, tephra's start.
const READY_TIMEOUT: Duration = Duration::from_secs(420);
/// A boot that must end by itself (a panic under dm-verity, or the health
/// check's 180 s and the reboot it triggers).
const SELF_REBOOT_TIMEOUT: Duration = Duration::from_secs(420);
/// How long the never-ready image's health check waits for tephra.
const NEVER_READY_WAIT_S: u32 = 30;

/// What the image build and its boots need of the machine (scripts/image-deps.sh).
fn needs() -> Vec<Need> {
    let mut needs = vec![Need::root()];
    for tool in ["qemu-system-x86_64", "mmdebstrap", "mkfs.erofs", "veritysetup", "mkfs.vfat", "mcopy", "sfdisk"] {
        needs.push(Need::command(tool, "scripts/image-deps.sh installs it"));
    }
    needs.push(Need::file(OVMF_CODE, "scripts/image-deps.sh installs ovmf"));
    needs
}

fn run(command: &mut Command) -> String {
    let output = command.stderr(Stdio::inherit()).output().expect("runs");
    assert!(output.status.success(), "{command:?} failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

struct Guest {
    dir: PathBuf,
    rpc_port: u16,
    udp_port: u16,
    ssh_port: u16,
    boots: u32,
    qemu: Option<Child>,
}

impl Guest {
    /// Boots the disk with `bundles` attached as read-only drives (/dev/vdb, /dev/vdc, ...).
    fn boot(&mut self, bundles: &[&Path]) -> Instant {
        self.boots += 1;
        let console = self.dir.join(format!("console-{}.log", self.boots));
        let net = format!(
            "user,id=net0,hostfwd=tcp:127.0.0.1:{}-:8545,hostfwd=udp:127.0.0.1:{}-:9000,hostfwd=tcp:127.0.0.1:{}-:22",
            self.rpc_port, self.udp_port, self.ssh_port
        );
        let mut qemu = Command::new("qemu-system-x86_64");
        qemu.args(["-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "2048"])
            .args(["-display", "none", "-monitor", "none", "-no-reboot"])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .args(["-drive", &format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}")])
            .args(["-drive", &format!("if=pflash,format=raw,unit=1,file={}", self.dir.join("vars.fd").display())])
            .args(["-drive", &format!("file={},format=raw,if=virtio", self.dir.join("disk.raw").display())])
            .args(["-netdev", &net, "-device", "virtio-net-pci,netdev=net0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        for bundle in bundles {
            qemu.args(["-drive", &format!("file={},format=raw,if=virtio,readonly=on", bundle.display())]);
        }
        let started = Instant::now();
        self.qemu = Some(qemu.spawn().expect("qemu-system-x86_64 starts"));
        started
    }

    fn console_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.join(format!("console-{}.log", self.boots))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Waits until tephra answers eth_chainId through hostfwd.
    fn wait_ready(&mut self, started: Instant) -> Duration {
        while started.elapsed() < READY_TIMEOUT {
            if let Some(status) = self.qemu.as_mut().unwrap().try_wait().unwrap() {
                panic!("the guest stopped ({status}) before tephra was ready:\n{}", self.console_tail());
            }
            if let Ok(answer) = self.rpc("eth_chainId", "[]") {
                assert!(answer.contains("\"0x7a69\""), "{answer}");
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        panic!("tephra not ready after {READY_TIMEOUT:?}:\n{}", self.console_tail());
    }

    /// Waits for the guest to end this boot by itself (a reboot, which
    /// -no-reboot turns into QEMU's exit).
    fn wait_reboot(&mut self, timeout: Duration) {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if self.qemu.as_mut().unwrap().try_wait().unwrap().is_some() {
                self.qemu = None;
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        panic!("the guest did not reboot within {timeout:?}:\n{}", self.console_tail());
    }

    fn reboot(&mut self) {
        // The ssh session may drop as the guest goes down.
        let _ = self.ssh_status("systemctl reboot");
        self.wait_reboot(Duration::from_secs(180));
    }

    fn rpc(&self, method: &str, params: &str) -> Result<String, std::io::Error> {
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#);
        let mut stream = TcpStream::connect(("127.0.0.1", self.rpc_port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            stream,
            "POST / HTTP/1.1\r\nhost: tephra\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        if !answer.starts_with("HTTP/1.1 200") {
            return Err(std::io::Error::other(answer));
        }
        Ok(answer.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
    }

    fn ssh_command(&self, command: &str) -> Command {
        let mut ssh = Command::new("ssh");
        ssh.arg("-i")
            .arg(self.dir.join("key"))
            .args(["-p", &self.ssh_port.to_string()])
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .args(["-o", "ConnectTimeout=20", "-o", "BatchMode=yes", "root@127.0.0.1", command]);
        ssh
    }

    fn ssh_status(&self, command: &str) -> (bool, String) {
        let output = self.ssh_command(command).output().expect("ssh runs");
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    }

    fn ssh(&self, command: &str) -> String {
        let (ok, text) = self.ssh_status(command);
        assert!(ok, "guest: {command}: {text}");
        text
    }

    /// Polls `tephra update status` until `predicate` holds.
    fn wait_status(&self, what: &str, predicate: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let (_, status) = self.ssh_status("tephra update status");
            if predicate(&status) {
                return status;
            }
            assert!(started.elapsed() < Duration::from_secs(240), "{what}; status:\n{status}");
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// A transfer sent as one wire datagram, resent until answered: the
    /// first datagram through QEMU's user network can be lost.
    fn preconfirm_over_udp(&self, nonce: u64) -> TxReply {
        let raw = run(Command::new(npm_tool("cast")).args([
            "mktx",
            "--private-key",
            // The first dev account (chain 31337).
            &DEV_PRIVATE_KEYS[0].to_string(),
            "--chain",
            "31337",
            "--nonce",
            &nonce.to_string(),
            "--gas-limit",
            "21000",
            "--gas-price",
            "20gwei",
            "--priority-gas-price",
            "1gwei",
            "0x000000000000000000000000000000000000b0b0",
            "--value",
            "1",
        ]));
        let tx = hex::decode(raw.trim().trim_start_matches("0x")).unwrap();
        assert!(!tx.is_empty(), "cast mktx signed nothing");
        let mut datagram = Vec::new();
        wire::encode_request(7, false, &[&tx], &mut datagram);
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut reply = [0u8; 2048];
        for _ in 0..20 {
            socket.send_to(&datagram, ("127.0.0.1", self.udp_port)).unwrap();
            if let Ok(n) = socket.recv(&mut reply) {
                let (id, answers) = wire::decode_reply(&reply[..n]).expect("a wire reply");
                assert_eq!(id, 7);
                return answers.expect("the request was accepted")[0];
            }
        }
        panic!("no UDP reply through hostfwd");
    }

    /// Errors in this boot's journal, less the host's hardware noise: kernel
    /// messages (firmware) and udev failing to load a driver module that
    /// declines the host's hardware (`ENODEV` on the module's initstate;
    /// which modules do depends on the machine QEMU runs on).
    fn journal_errors(&self) -> Vec<String> {
        let text = self.ssh("journalctl -b -p err -o json --no-pager");
        text.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|entry| entry["_TRANSPORT"] != "kernel")
            .filter(|entry| !is_driver_declining_hardware(entry))
            .map(|entry| format!("{}: {}", entry["SYSLOG_IDENTIFIER"], entry["MESSAGE"]))
            .collect()
    }
}

/// udev's "could not read from '/sys/module/NAME/initstate': No such device":
/// a modalias load whose driver found no device it drives.
fn is_driver_declining_hardware(entry: &serde_json::Value) -> bool {
    let message = entry["MESSAGE"].as_str().unwrap_or_default();
    entry["SYSLOG_IDENTIFIER"] == "(udev-worker)"
        && message.starts_with("could not read from '/sys/module/")
        && message.ends_with("/initstate': No such device")
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(mut qemu) = self.qemu.take() {
            let _ = qemu.kill();
            let _ = qemu.wait();
        }
    }
}

/// The `tephra` of this test build (`cargo test --workspace` builds it
/// beside the test binaries): the images boot it rather than a release
/// build of the whole workspace made for this test alone. What is tested
/// here is the image, its boot and its updates; the release profile only
/// changes how fast tephra runs.
fn test_build_tephra() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let tephra = exe.parent().and_then(Path::parent).expect("target/<profile>/deps").join("tephra");
    assert!(tephra.exists(), "{} is missing: cargo test --workspace builds it", tephra.display());
    tephra
}

/// Builds image `version` with `tephra` (the test build's by default) and,
/// if given, a shorter wait for tephra to be ready before the boot counts
/// as failed; returns its update bundle.
fn build(dir: &Path, version: &str, tephra: Option<&Path>, ready_wait_s: Option<u32>) -> PathBuf {
    let mut build = Command::new(workspace_root().join("image/build.sh"));
    build.arg("--version").arg(version).arg("--out").arg(dir.join("out"));
    build.arg("--authorized-keys").arg(dir.join("key.pub"));
    build.arg("--tephra").arg(tephra.map_or_else(test_build_tephra, Path::to_path_buf));
    if let Some(seconds) = ready_wait_s {
        build.arg("--ready-wait-s").arg(seconds.to_string());
    }
    let started = Instant::now();
    print!("{}", run(&mut build));
    println!("image {version} built in {:.0?}", started.elapsed());
    dir.join("out").join(format!("tephra-{version}.update"))
}

/// A copy of `bundle` whose root has one byte flipped and whose manifest
/// digests match the flipped bytes: only the root hash can tell.
fn corrupted_bundle(bundle: &Path, out: &Path) {
    let mut archive = tar::Archive::new(fs::File::open(bundle).unwrap());
    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        members.push((name, data));
    }
    members[1].1[4096 + 100] ^= 0x40;
    let mut manifest: serde_json::Value = serde_json::from_slice(&members[0].1).unwrap();
    manifest["root"]["sha256"] = hex::encode(Sha256::digest(&members[1].1)).into();
    members[0].1 = serde_json::to_vec(&manifest).unwrap();
    let mut builder = tar::Builder::new(fs::File::create(out).unwrap());
    for (name, data) in &members {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, name, data.as_slice()).unwrap();
    }
    builder.into_inner().unwrap().sync_all().unwrap();
}

#[test]
fn the_image_boots_updates_and_falls_back() {
    if !require(&needs()) {
        return;
    }
    let dir = workspace_root().join("target/image-test");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(dir.join("key")));

    let base: String = fs::read_to_string(workspace_root().join("Cargo.toml"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("version = \"").map(|v| v.trim_end_matches('"').to_string()))
        .unwrap();
    let (v1, v2, v3) = (format!("{base}.1"), format!("{base}.2"), format!("{base}.3"));
    build(&dir, &base, None, None);
    let raw = dir.join("out").join(format!("tephra-{base}.raw"));
    let raw_bytes = fs::metadata(&raw).unwrap().len();
    let used = run(Command::new("du").arg("-k").arg(&raw));
    println!("image tephra-{base}.raw: {raw_bytes} bytes, {} KiB allocated", used.split_whitespace().next().unwrap());
    let bundle1 = build(&dir, &v1, None, None);
    let bundle2 = build(&dir, &v2, None, None);
    let never_ready = dir.join("never-ready.sh");
    fs::write(&never_ready, "#!/bin/sh\n# A tephra that never becomes ready.\nexec sleep infinity\n").unwrap();
    // Its health check gives up after 30 s rather than the shipped 180 s:
    // the same units and fallback, three boot-minutes sooner.
    let bundle3 = build(&dir, &v3, Some(&never_ready), Some(NEVER_READY_WAIT_S));
    let bad_bundle = dir.join("out/corrupted.update");
    corrupted_bundle(&bundle2, &bad_bundle);

    // The flashed disk: the image on a larger disk, with room for the data partition.
    run(Command::new("cp").arg("--sparse=always").arg(&raw).arg(dir.join("disk.raw")));
    run(Command::new("truncate").args(["-s", "+3G"]).arg(dir.join("disk.raw")));
    fs::copy(OVMF_VARS, dir.join("vars.fd")).unwrap();
    let mut guest = Guest {
        dir: dir.clone(),
        rpc_port: free_port(),
        udp_port: free_port(),
        ssh_port: free_port(),
        boots: 0,
        qemu: None,
    };

    // 1. First boot: a corrupted bundle (/dev/vdb) is refused, N+1 (/dev/vdc) applied.
    let started = guest.boot(&[&bad_bundle, &bundle1]);
    let ready = guest.wait_ready(started);
    println!("first boot to ready: {:.1} s", ready.as_secs_f64());
    assert_eq!(guest.ssh("systemctl is-active tephra.service").trim(), "active");
    assert!(guest.ssh("findmnt -no PARTLABEL /var").contains("tephra-data"));
    assert!(guest.ssh("cat /var/lib/tephra/tephra.toml").contains("0.0.0.0:8545"));
    let reply = guest.preconfirm_over_udp(0);
    assert!(matches!(reply, TxReply::Preconfirmed { success: true, gas_used: 21_000, .. }), "{reply:?}");
    let errors = guest.journal_errors();
    assert!(errors.is_empty(), "errors in the journal: {errors:#?}");
    let status = guest.ssh("tephra update status");
    assert!(status.contains(&format!("running: version {base} slot a")), "{status}");
    // A bundle whose root does not verify is refused, and the disk is as it was.
    let (applied, output) = guest.ssh_status("tephra update apply /dev/vdb");
    assert!(!applied && output.contains("does not verify"), "{output}");
    assert_eq!(guest.ssh("tephra update status"), status);
    print!("{}", guest.ssh("tephra update apply /dev/vdc --tries 2"));
    guest.reboot();

    // 2. N+1 boots from slot b with the data partition kept, and is blessed once healthy.
    let started = guest.boot(&[&bundle2]);
    let ready = guest.wait_ready(started);
    println!("updated boot to ready: {:.1} s", ready.as_secs_f64());
    // What was preconfirmed in the first boot is still in the chain.
    let nonce =
        guest.rpc("eth_getTransactionCount", r#"["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266","latest"]"#).unwrap();
    assert!(nonce.contains("\"0x1\""), "{nonce}");
    let status = guest.wait_status("the update is blessed", |s| {
        s.contains(&format!("entry: tephra-{v1}.efi version {v1} good (running)"))
    });
    assert!(status.contains(&format!("running: version {v1} slot b")), "{status}");
    let errors = guest.journal_errors();
    assert!(errors.is_empty(), "errors in the journal: {errors:#?}");
    // tephra feeds the watchdog (WatchdogSec=30s, a ping every 10 s) and was never restarted.
    let last_ping = || guest.ssh("systemctl show tephra.service -p WatchdogTimestampMonotonic --value");
    let (first, started) = (last_ping(), Instant::now());
    while last_ping() == first {
        assert!(started.elapsed() < Duration::from_secs(25), "no watchdog ping from tephra in 25 s");
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(guest.ssh("systemctl show tephra.service -p NRestarts --value").trim(), "0");

    // 3. The operator rolls back: N+1 is marked bad, N boots from slot a.
    print!("{}", guest.ssh("tephra update rollback"));
    // Until the reboot the running image is marked bad: no update may replace its fallback.
    let (applied, output) = guest.ssh_status("tephra update apply /dev/vdb");
    assert!(!applied && output.contains("is not marked good"), "{output}");
    guest.reboot();
    let started = guest.boot(&[&bundle2]);
    guest.wait_ready(started);
    let status = guest.ssh("tephra update status");
    assert!(status.contains(&format!("running: version {base} slot a")), "rolled back to N: {status}");
    assert!(status.contains(&format!("version {v1} bad")), "{status}");

    // 4. N+2 into slot b (N+1's image retired), then one byte of that slot
    // flipped on disk: each try panics under dm-verity, then N boots again.
    let applied = guest.ssh("tephra update apply /dev/vdb --tries 2");
    assert!(applied.contains(&format!("retired tephra-{v1}+0.efi")), "{applied}");
    let slot_b = guest.ssh("readlink -f /dev/disk/by-partlabel/tephra-root-b");
    guest.ssh(&format!("printf '\\377' | dd of={} bs=1 seek=1100 conv=notrunc status=none && sync", slot_b.trim()));
    guest.reboot();
    for _ in 0..2 {
        guest.boot(&[]);
        guest.wait_reboot(SELF_REBOOT_TIMEOUT);
        assert!(
            guest.console_tail().contains("verity") || guest.console_tail().contains("panic"),
            "a corrupted slot fails under dm-verity:\n{}",
            guest.console_tail()
        );
    }
    let started = guest.boot(&[&bundle3]);
    guest.wait_ready(started);
    let status = guest.ssh("tephra update status");
    assert!(status.contains(&format!("running: version {base} slot a")), "fell back to N: {status}");
    assert!(status.contains(&format!("version {v2} bad (2 tries failed)")), "{status}");

    // 5. N+3, whose tephra never becomes ready: one try, then back to N.
    print!("{}", guest.ssh("tephra update apply /dev/vdb --tries 1"));
    guest.reboot();
    guest.boot(&[]);
    guest.wait_reboot(SELF_REBOOT_TIMEOUT);
    let started = guest.boot(&[]);
    guest.wait_ready(started);
    let status = guest.ssh("tephra update status");
    assert!(status.contains(&format!("running: version {base} slot a")), "fell back to N: {status}");
    assert!(status.contains(&format!("version {v3} bad (1 tries failed)")), "{status}");
    // Nothing good is left in the other slot to roll back to.
    let (rolled_back, output) = guest.ssh_status("tephra update rollback");
    assert!(!rolled_back && output.contains("no image of the other slot"), "{output}");
}
