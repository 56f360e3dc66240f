//! The hot path allocates nothing: with a counting allocator, the net tile
//! receives, hands over and answers thousands of datagrams on the socket
//! backend while its thread makes no allocation at all.

#![allow(unsafe_code)] // a counting global allocator

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    net::UdpSocket,
    sync::atomic::{AtomicU64, Ordering},
    thread,
    time::{Duration, Instant},
};

use tephra_dataplane::{
    backend::socket::SocketBackend, net::NetTile, packet::PacketPool, ratelimit::RateLimiter, ring::ring, runtime::Tile,
};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
thread_local! {
    static TRACKED: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if TRACKED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: memory from `alloc` above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if TRACKED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const WARM_UP: u32 = 500;
const MEASURED: u32 = 10_000;

#[test]
fn receiving_and_answering_allocates_nothing() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = socket.local_addr().unwrap();
    let pool = std::sync::Arc::new(PacketPool::new(512));
    let backend = SocketBackend::open(socket, 128, 128).unwrap();
    let (ingress_producer, mut ingress, _) = ring(256);
    let (mut egress, egress_consumer, _) = ring(256);
    // With the per-source limiter on (its table allocated here, up front).
    let limit = RateLimiter::new(u32::MAX, u32::MAX, 16, Instant::now());
    let (mut tile, stats) =
        NetTile::new(backend, pool, ingress_producer, egress_consumer, Box::new(|| {}), 64, Some(limit));

    let sender = thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut buffer = [0u8; 256];
        let mut answered = 0;
        for number in 0..WARM_UP + MEASURED {
            let mut datagram = [0u8; 120];
            datagram[..4].copy_from_slice(&number.to_be_bytes());
            socket.send_to(&datagram, address).unwrap();
            if socket.recv_from(&mut buffer).is_ok() {
                answered += 1;
            }
        }
        answered
    });

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut moved = 0u64;
    while !sender.is_finished() && Instant::now() < deadline {
        // Counting starts once the warm-up is through (lazy first-use setup).
        if moved == u64::from(WARM_UP) {
            TRACKED.with(|tracked| tracked.set(true));
        }
        tile.poll();
        while let Some(packet) = ingress.pop() {
            egress.push(packet).expect("the egress ring has room");
            moved += 1;
        }
    }
    TRACKED.with(|tracked| tracked.set(false));
    let answered = sender.join().unwrap();
    assert!(answered >= WARM_UP + MEASURED - 10, "only {answered} datagrams answered");
    assert!(stats.received.load(Ordering::Relaxed) >= u64::from(WARM_UP + MEASURED) - 10);
    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed), 0, "the net tile allocated on the hot path");
}
