//! The shipped allocator (mimalloc, as in src/main.rs) with a count of allocations and
//! bytes, so the benchmark measures the daemon's CPU and RSS with the allocator it
//! ships with. (`stats_alloc` can wrap only the system allocator on stable Rust.)

#![allow(unsafe_code)] // `GlobalAlloc` is an unsafe trait; this only counts and delegates

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Counters per thread, each on its own cache lines: one shared counter, bumped by
/// every thread on every allocation, cost the daemon ~8 % of its CPU in contention,
/// and even uncontended atomic adds cost ~6 %. The first `OWNED` threads own a shard
/// each and bump it with a plain load and store (only its thread writes it); later
/// threads, and threads being torn down, share one counter with atomic adds.
const OWNED: usize = 32;

#[repr(align(128))]
struct Shard {
    allocations: AtomicU64,
    bytes: AtomicU64,
}

impl Shard {
    const fn new() -> Self {
        Shard {
            allocations: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }
}

pub struct CountingAllocator {
    owned: [Shard; OWNED],
    shared: Shard,
    next_owner: AtomicUsize,
}

/// This thread's shard: unassigned, owned (its index) or shared.
#[derive(Clone, Copy, PartialEq)]
enum ThreadShard {
    Unassigned,
    Owned(usize),
    Shared,
}

thread_local! {
    static SHARD: Cell<ThreadShard> = const { Cell::new(ThreadShard::Unassigned) };
}

impl CountingAllocator {
    pub const fn new() -> Self {
        CountingAllocator {
            owned: [const { Shard::new() }; OWNED],
            shared: Shard::new(),
            next_owner: AtomicUsize::new(0),
        }
    }

    /// Allocations (including reallocations) and bytes asked for since start.
    pub fn totals(&self) -> (u64, u64) {
        self.owned
            .iter()
            .chain(std::iter::once(&self.shared))
            .fold((0, 0), |(a, b), shard| {
                (
                    a + shard.allocations.load(Ordering::Relaxed),
                    b + shard.bytes.load(Ordering::Relaxed),
                )
            })
    }

    fn count(&self, size: usize) {
        let shard = SHARD
            .try_with(|shard| {
                if shard.get() == ThreadShard::Unassigned {
                    let index = self.next_owner.fetch_add(1, Ordering::Relaxed);
                    shard.set(if index < OWNED {
                        ThreadShard::Owned(index)
                    } else {
                        ThreadShard::Shared
                    });
                }
                shard.get()
            })
            .unwrap_or(ThreadShard::Shared);
        match shard {
            ThreadShard::Owned(index) => {
                let own = &self.owned[index];
                let bump = |counter: &AtomicU64, by: u64| {
                    counter.store(counter.load(Ordering::Relaxed) + by, Ordering::Relaxed)
                };
                bump(&own.allocations, 1);
                bump(&own.bytes, size as u64);
            }
            _ => {
                self.shared.allocations.fetch_add(1, Ordering::Relaxed);
                self.shared.bytes.fetch_add(size as u64, Ordering::Relaxed);
            }
        }
    }
}

// SAFETY: every call is forwarded unchanged to mimalloc, which upholds the contract.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.count(layout.size());
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.count(layout.size());
        // SAFETY: as above.
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.count(new_size);
        // SAFETY: as above.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}
