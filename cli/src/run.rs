//! `tephra run`: the node in the foreground until SIGINT or SIGTERM, as
//! systemd's `Type=notify` tephra.service runs it (systemd/tephra.service).

use tephra_node::{
    config::{Config, LogFormat},
    node,
};

use crate::systemd;

/// Logs to stderr at `node.log_level`, in `node.log_format`.
pub fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.node.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal; journald and files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match config.node.log_format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs the node until SIGINT, SIGTERM or the end of its sequencer.
pub fn run(config: Config) -> Result<(), String> {
    init_tracing(&config);
    let huge_pages = config.host.transparent_huge_pages;
    tephra_dataplane::topology::set_transparent_huge_pages(huge_pages)
        .map_err(|error| format!("host.transparent_huge_pages = {huge_pages}: prctl refused: {error}"))?;
    verify_runtime(&config)?.block_on(serve(config))
}

/// The runtime's workers verify transactions and serve JSON-RPC: the
/// verify cores of the placement.
fn verify_runtime(config: &Config) -> Result<tokio::runtime::Runtime, String> {
    let (_, placement) = node::placement(config).map_err(|e| e.to_string())?;
    let verify_cores = placement.verify;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(verify_cores.len())
        .on_thread_start(move || tephra_dataplane::topology::pin_current_thread(&verify_cores))
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// Starts the node, keeps systemd told until a signal or the sequencer's
/// end, and stops it.
async fn serve(config: Config) -> Result<(), String> {
    let running = node::start(config).await.map_err(|e| e.to_string())?;
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut service = ServiceNotifications::new();
    let mut watchdog = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = watchdog.tick() => {
                if running.sequencer_finished() { break }
                service.tick(&running);
            }
        }
    }
    tracing::info!("stopping");
    service.send("STOPPING=1");
    let deposed = running.deposed();
    running.stop().await.map_err(|e| e.to_string())?;
    // A deposed leader exits failed, so that its service restarts it to
    // rejoin as a standby.
    deposed.map_or(Ok(()), |reason| Err(format!("{reason}; restart to rejoin")))
}

/// What systemd hears from a `Type=notify` tephra.service: READY=1 the first
/// time the node is ready (the service is active only then), STATUS=
/// whenever readiness changes, and
/// WATCHDOG=1 only while the sequencer loop turns.
struct ServiceNotifications {
    notifier: Option<systemd::Notifier>,
    watchdog_interval: Option<std::time::Duration>,
    last_ping: std::time::Instant,
    last_heartbeat: u64,
    told_ready: bool,
    status: Option<Option<String>>,
}

impl ServiceNotifications {
    fn new() -> Self {
        let notifier = systemd::Notifier::from_env().unwrap_or_else(|error| {
            tracing::warn!(%error, "NOTIFY_SOCKET is set but unusable: systemd will not hear readiness");
            None
        });
        Self {
            watchdog_interval: notifier.as_ref().and(systemd::watchdog_interval()),
            notifier,
            last_ping: std::time::Instant::now(),
            last_heartbeat: 0,
            told_ready: false,
            status: None,
        }
    }

    fn tick(&mut self, running: &node::Running) {
        if self.notifier.is_none() {
            return;
        }
        let not_ready = running.not_ready();
        if self.status.as_ref() != Some(&not_ready) {
            let status = match &not_ready {
                None if !self.told_ready => {
                    self.told_ready = true;
                    "READY=1\nSTATUS=ready".to_string()
                }
                None => "STATUS=ready".to_string(),
                Some(reason) => format!("STATUS=not ready: {reason}"),
            };
            self.send(&status);
            self.status = Some(not_ready);
        }
        if let Some(interval) = self.watchdog_interval
            && self.last_ping.elapsed() >= interval
        {
            let heartbeat = running.heartbeat();
            if heartbeat != self.last_heartbeat {
                self.send("WATCHDOG=1");
                self.last_heartbeat = heartbeat;
                self.last_ping = std::time::Instant::now();
            }
        }
    }

    fn send(&self, state: &str) {
        if let Some(notifier) = &self.notifier
            && let Err(error) = notifier.notify(state)
        {
            tracing::warn!(%error, state, "notifying systemd");
        }
    }
}
