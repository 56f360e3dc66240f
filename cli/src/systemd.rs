//! The service manager's notification protocol (sd_notify(3)): READY=1 once
//! the node is ready, STATUS= with the reason while it is not, WATCHDOG=1
//! while the sequencer makes progress, STOPPING=1 on the way out. Hand-written:
//! one datagram to the socket systemd names in $NOTIFY_SOCKET.

use std::{
    io,
    os::{linux::net::SocketAddrExt, unix::net::UnixDatagram},
    time::Duration,
};

/// Where a service started by systemd sends its notifications.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    address: std::os::unix::net::SocketAddr,
}

impl Notifier {
    /// The notifier $NOTIFY_SOCKET asks for; `None` outside systemd (or
    /// under a Type= that wants no notifications).
    pub fn from_env() -> io::Result<Option<Self>> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(path) => Self::connect(&path.to_string_lossy()).map(Some),
            None => Ok(None),
        }
    }

    /// A socket path, or an abstract name written with a leading `@`.
    pub fn connect(path: &str) -> io::Result<Self> {
        let address = match path.strip_prefix('@') {
            Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?,
            None => std::os::unix::net::SocketAddr::from_pathname(path)?,
        };
        Ok(Self { socket: UnixDatagram::unbound()?, address })
    }

    /// Sends newline-separated `KEY=VALUE` assignments in one datagram.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        self.socket.send_to_addr(state.as_bytes(), &self.address).map(|_| ())
    }
}

/// How often to ping a watchdog of `WATCHDOG_USEC` (set by systemd for
/// WatchdogSec=): a third of it, so that one late ping is not yet a miss.
/// `None` when no watchdog is armed for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    // WATCHDOG_PID names the process meant; absent, it is us.
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_a_path_socket_and_an_abstract_one() {
        let dir = tephra_testkit::fresh_dir("notify");
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let receiver = UnixDatagram::bind(&path).unwrap();
        Notifier::connect(path.to_str().unwrap()).unwrap().notify("READY=1\nSTATUS=ready").unwrap();
        let mut buffer = [0u8; 64];
        let n = receiver.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"READY=1\nSTATUS=ready");

        let name = format!("tephra-notify-test-{}", std::process::id());
        let abstract_address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&abstract_address).unwrap();
        Notifier::connect(&format!("@{name}")).unwrap().notify("WATCHDOG=1").unwrap();
        let n = receiver.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"WATCHDOG=1");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_missing_socket_is_an_error_not_a_panic() {
        let notifier = Notifier::connect("/nonexistent/tephra/notify").unwrap();
        assert!(notifier.notify("READY=1").is_err());
    }
}
