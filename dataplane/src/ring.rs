//! Bounded single-producer/single-consumer rings between tiles. A full ring
//! is backpressure: `push` hands the item back and counts an overrun, so the
//! producer decides (retry, drop, or answer busy) and nothing grows.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

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
}

#[derive(Debug)]
pub struct Consumer<T> {
    inner: rtrb::Consumer<T>,
}

/// A ring of `depth` slots, allocated now.
pub fn ring<T>(depth: usize) -> (Producer<T>, Consumer<T>, Arc<RingStats>) {
    assert!(depth > 0, "a ring needs slots");
    let (inner_producer, inner_consumer) = rtrb::RingBuffer::new(depth);
    let stats = Arc::new(RingStats::default());
    (Producer { inner: inner_producer, stats: stats.clone() }, Consumer { inner: inner_consumer }, stats)
}

impl<T> Producer<T> {
    /// Pushes `item`, or hands it back when the ring is full.
    pub fn push(&mut self, item: T) -> Result<(), T> {
        match self.inner.push(item) {
            Ok(()) => {
                self.stats.pushed.fetch_add(1, Ordering::Relaxed);
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
