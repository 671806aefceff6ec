//! The shipped allocator (mimalloc, as in src/main.rs) with a count of allocations and
//! bytes, so the benchmark measures the daemon's CPU and RSS with the allocator it
//! ships with. (`stats_alloc` can wrap only the system allocator on stable Rust.)

#![allow(unsafe_code)] // `GlobalAlloc` is an unsafe trait; this only counts and delegates

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Counters per thread group, each on its own cache lines: one shared counter, bumped
/// by every thread on every allocation, cost the daemon ~8 % of its CPU in contention.
const SHARDS: usize = 16;

#[repr(align(128))]
struct Shard {
    allocations: AtomicU64,
    bytes: AtomicU64,
}

pub struct CountingAllocator {
    shards: [Shard; SHARDS],
    next_shard: AtomicUsize,
}

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

impl CountingAllocator {
    pub const fn new() -> Self {
        CountingAllocator {
            shards: [const {
                Shard {
                    allocations: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                }
            }; SHARDS],
            next_shard: AtomicUsize::new(0),
        }
    }

    /// Allocations (including reallocations) and bytes asked for since start.
    pub fn totals(&self) -> (u64, u64) {
        self.shards.iter().fold((0, 0), |(a, b), shard| {
            (
                a + shard.allocations.load(Ordering::Relaxed),
                b + shard.bytes.load(Ordering::Relaxed),
            )
        })
    }

    fn count(&self, size: usize) {
        // A thread being torn down has no thread-locals left: it counts in shard 0.
        let index = SHARD
            .try_with(|shard| {
                if shard.get() == usize::MAX {
                    shard.set(self.next_shard.fetch_add(1, Ordering::Relaxed) % SHARDS);
                }
                shard.get()
            })
            .unwrap_or(0);
        let shard = &self.shards[index];
        shard.allocations.fetch_add(1, Ordering::Relaxed);
        shard.bytes.fetch_add(size as u64, Ordering::Relaxed);
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
