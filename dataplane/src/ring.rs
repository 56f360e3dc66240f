//! Bounded single-producer/single-consumer rings between tiles. A full ring
//! is backpressure: `push` hands the item back and counts an overrun, so the
//! producer decides (retry, drop, or answer busy) and nothing grows.

use std::{
    io,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering, fence},
    },
};

/// Wakes a consumer that waits in the kernel while its ring is empty (the
/// net tile, in its io_uring, instead of polling a timer): after a push the
/// producer writes an eventfd, but only while the consumer says it waits, so
/// a busy pair pays one atomic load per push. Each side fences before it
/// reads the other's flag, so either the consumer sees the item or the
/// producer sees it waiting.
#[derive(Debug)]
pub struct Doorbell {
    eventfd: OwnedFd,
    waiting: AtomicBool,
}

impl Doorbell {
    pub fn new() -> io::Result<Arc<Self>> {
        let eventfd =
            rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK)?;
        Ok(Arc::new(Self { eventfd, waiting: AtomicBool::new(false) }))
    }

    /// The eventfd the consumer's wait includes (8-byte reads drain it).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.eventfd.as_fd()
    }

    fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) {
            // Fails only when the counter is full: the consumer is woken anyway.
            let _ = rustix::io::write(&self.eventfd, &1u64.to_ne_bytes());
        }
    }
}

/// Counters of one ring, readable from any thread (metrics).
#[derive(Debug, Default)]
pub struct RingStats {
    pub pushed: AtomicU64,
    /// Pushes refused because the ring was full.
    pub overruns: AtomicU64,
}

#[derive(Debug)]
pub struct Producer<T> {
    inner: rtrb::Producer<T>,
    stats: Arc<RingStats>,
    doorbell: Option<Arc<Doorbell>>,
}

#[derive(Debug)]
pub struct Consumer<T> {
    inner: rtrb::Consumer<T>,
    doorbell: Option<Arc<Doorbell>>,
}

/// A ring of `depth` slots, allocated now.
pub fn ring<T>(depth: usize) -> (Producer<T>, Consumer<T>, Arc<RingStats>) {
    make(depth, None)
}

/// A ring whose consumer may wait in the kernel: pushes ring its doorbell.
pub fn ring_with_doorbell<T>(depth: usize) -> io::Result<(Producer<T>, Consumer<T>, Arc<RingStats>)> {
    Ok(make(depth, Some(Doorbell::new()?)))
}

fn make<T>(depth: usize, doorbell: Option<Arc<Doorbell>>) -> (Producer<T>, Consumer<T>, Arc<RingStats>) {
    assert!(depth > 0, "a ring needs slots");
    let (inner_producer, inner_consumer) = rtrb::RingBuffer::new(depth);
    let stats = Arc::new(RingStats::default());
    let producer = Producer { inner: inner_producer, stats: stats.clone(), doorbell: doorbell.clone() };
    (producer, Consumer { inner: inner_consumer, doorbell }, stats)
}

impl<T> Producer<T> {
    /// Pushes `item`, or hands it back when the ring is full.
    pub fn push(&mut self, item: T) -> Result<(), T> {
        match self.inner.push(item) {
            Ok(()) => {
                self.stats.pushed.fetch_add(1, Ordering::Relaxed);
                if let Some(doorbell) = &self.doorbell {
                    doorbell.ring();
                }
                Ok(())
            }
            Err(rtrb::PushError::Full(item)) => {
                self.stats.overruns.fetch_add(1, Ordering::Relaxed);
                Err(item)
            }
        }
    }

    pub fn free_slots(&self) -> usize {
        self.inner.slots()
    }

    /// Whether the consumer is gone (its tile stopped).
    pub fn is_abandoned(&self) -> bool {
        self.inner.is_abandoned()
    }
}

impl<T> Consumer<T> {
    /// The ring's doorbell, if it has one.
    pub fn doorbell(&self) -> Option<&Arc<Doorbell>> {
        self.doorbell.as_ref()
    }

    /// Runs `wait` (a wait in the kernel that the doorbell's eventfd ends)
    /// unless the ring already holds items, and returns its outcome; `ready`
    /// when there was no need to wait.
    pub fn wait_unless_ready<R>(&self, doorbell: &Doorbell, wait: impl FnOnce() -> R, ready: R) -> R {
        doorbell.waiting.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let outcome = if self.inner.is_empty() { wait() } else { ready };
        doorbell.waiting.store(false, Ordering::SeqCst);
        outcome
    }

    pub fn pop(&mut self) -> Option<T> {
        self.inner.pop().ok()
    }

    pub fn len(&self) -> usize {
        self.inner.slots()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    pub fn is_abandoned(&self) -> bool {
        self.inner.is_abandoned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_rings_only_for_a_waiting_consumer_and_ends_its_wait() {
        let (mut producer, mut consumer, _) = ring_with_doorbell::<u32>(4).unwrap();
        let doorbell = consumer.doorbell().unwrap().clone();
        let mut value = [0u8; 8];
        producer.push(1).unwrap();
        assert!(rustix::io::read(doorbell.fd(), &mut value).is_err(), "nobody waited: nothing rang");
        // An item is ready: no wait.
        assert!(!consumer.wait_unless_ready(&doorbell, || true, false));
        assert_eq!(consumer.pop(), Some(1));
        let pusher = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            producer.push(2).unwrap();
        });
        let started = std::time::Instant::now();
        let woken = consumer.wait_unless_ready(
            &doorbell,
            || {
                let fd = doorbell.fd();
                let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
                let timeout = rustix::event::Timespec { tv_sec: 5, tv_nsec: 0 };
                rustix::event::poll(&mut fds, Some(&timeout)).unwrap() == 1
            },
            false,
        );
        pusher.join().unwrap();
        assert!(woken && started.elapsed() < std::time::Duration::from_secs(4), "the push ended the wait");
        assert_eq!(consumer.pop(), Some(2));
    }

    #[test]
    fn a_full_ring_hands_items_back_and_counts_overruns() {
        let (mut producer, mut consumer, stats) = ring(2);
        assert_eq!(producer.push(1), Ok(()));
        assert_eq!(producer.push(2), Ok(()));
        assert_eq!(producer.push(3), Err(3));
        assert_eq!(stats.overruns.load(Ordering::Relaxed), 1);
        assert_eq!(consumer.pop(), Some(1));
        assert_eq!(producer.push(3), Ok(()));
        assert_eq!((consumer.pop(), consumer.pop(), consumer.pop()), (Some(2), Some(3), None));
        assert_eq!(stats.pushed.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn items_cross_threads_in_order() {
        let (mut producer, mut consumer, _) = ring(8);
        let sender = std::thread::spawn(move || {
            for i in 0..10_000u32 {
                let mut item = i;
                while let Err(back) = producer.push(item) {
                    item = back;
                    std::hint::spin_loop();
                }
            }
        });
        let mut next = 0u32;
        while next < 10_000 {
            if let Some(i) = consumer.pop() {
                assert_eq!(i, next);
                next += 1;
            }
        }
        sender.join().unwrap();
    }
}
