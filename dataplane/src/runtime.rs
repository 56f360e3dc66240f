//! The per-core runtime: one glommio executor pinned to each core that has
//! tiles, the tiles as tasks on it. A tile's `poll` does a bounded amount of
//! work and never blocks; when a core's tiles find nothing to do they either
//! spin (busy-poll, for a core a hot tile has alone), wait in the kernel for
//! work (a tile alone on its core whose backend can: `Tile::park`), or sleep
//! `idle_sleep_us`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use glommio::{LocalExecutorBuilder, Placement};

/// A stage of the pipeline (DESIGN.md): made (and allocated) before the
/// runtime starts, then polled.
pub trait Tile: Send {
    fn name(&self) -> &'static str;
    /// Does a bounded amount of work without blocking or allocating; returns
    /// how many items it moved (0: idle).
    fn poll(&mut self) -> usize;
    /// Off the hot path, every `HOUSEKEEPING_POLLS` polls, and when idle at
    /// least every `HOUSEKEEPING_INTERVAL`: counters, timers.
    fn housekeeping(&mut self) {}
    /// Idle, and alone on its core: waits in the kernel for work, at most
    /// `timeout`. `false`: it cannot, and the executor sleeps instead.
    fn park(&mut self, _timeout: Duration) -> bool {
        false
    }
}

/// The longest an idle tile waits in the kernel: how soon it sees `stop`.
pub const PARK_TIMEOUT: Duration = Duration::from_millis(10);

/// Polls between two housekeeping calls of a tile.
pub const HOUSEKEEPING_POLLS: u32 = 1024;

/// The longest an idle tile goes without housekeeping: a parked tile polls
/// about once per `PARK_TIMEOUT`, so counting polls alone would leave its
/// counters seconds old.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(100);

/// How a core's executor waits when its tiles are idle.
#[derive(Clone, Copy, Debug)]
pub struct Idle {
    pub busy_poll: bool,
    pub sleep_us: u64,
}

/// io_uring memory glommio registers per executor: 2 MiB stays inside an
/// unprivileged 8 MiB RLIMIT_MEMLOCK (DESIGN.md).
pub const IO_MEMORY_BYTES: usize = 2 << 20;

/// The running executors; `stop` ends every tile at its next poll.
#[derive(Debug)]
pub struct Runtime {
    stop: Arc<AtomicBool>,
    executors: Vec<glommio::ExecutorJoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
#[error("starting the executor of core {core}: {reason}")]
pub struct RuntimeError {
    pub core: usize,
    pub reason: String,
}

impl Runtime {
    /// Starts one pinned executor per entry of `cores`, running its tiles.
    pub fn start(cores: Vec<(usize, Vec<Box<dyn Tile>>)>, idle: Idle) -> Result<Self, RuntimeError> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut executors = Vec::with_capacity(cores.len());
        for (core, tiles) in cores {
            let stop = stop.clone();
            let names: Vec<&str> = tiles.iter().map(|tile| tile.name()).collect();
            let executor = LocalExecutorBuilder::new(Placement::Fixed(core))
                .name(&format!("tephra-{}", names.join("-")))
                .io_memory(IO_MEMORY_BYTES)
                .spawn(move || async move {
                    // A tile alone on its executor may block it while it waits.
                    let alone = tiles.len() == 1;
                    let tasks: Vec<_> = tiles
                        .into_iter()
                        .map(|tile| glommio::spawn_local(run_tile(tile, stop.clone(), idle, alone)))
                        .collect();
                    for task in tasks {
                        task.await;
                    }
                })
                .map_err(|error| RuntimeError { core, reason: error.to_string() })?;
            executors.push(executor);
        }
        Ok(Self { stop, executors })
    }

    /// Stops every tile and waits for the executors to end.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        for executor in self.executors {
            if let Err(error) = executor.join() {
                tracing::warn!(%error, "a dataplane executor ended with an error");
            }
        }
    }
}

async fn run_tile(mut tile: Box<dyn Tile>, stop: Arc<AtomicBool>, idle: Idle, alone: bool) {
    let mut polls = 0u32;
    let mut housekept = Instant::now();
    while !stop.load(Ordering::Acquire) {
        let moved = tile.poll();
        polls += 1;
        // The clock is read only when idle, off the hot path.
        if polls == HOUSEKEEPING_POLLS || (moved == 0 && housekept.elapsed() >= HOUSEKEEPING_INTERVAL) {
            polls = 0;
            housekept = Instant::now();
            tile.housekeeping();
        }
        if moved == 0 && !idle.busy_poll {
            if !(alone && tile.park(PARK_TIMEOUT)) {
                glommio::timer::sleep(Duration::from_micros(idle.sleep_us)).await;
            }
        } else {
            // Lets the core's other tiles (and glommio's reactor) run.
            YieldNow(false).await;
        }
    }
}

/// Pending once: the executor runs its other ready tasks, then this one again.
struct YieldNow(bool);

impl std::future::Future for YieldNow {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, context: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        context.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}
