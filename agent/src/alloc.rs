//! The memory allocator: mimalloc (installed by the `tribune` binary,
//! `main.rs`), and handing freed memory back to the OS.
//!
//! Why mimalloc: issue 21's profile had glibc's malloc and free at ~17% of
//! a GET's instructions, 34 allocations each. mimalloc keeps freed pages
//! per thread and returns them only when that thread next collects, so an
//! agent idle after many connections closed would keep their memory:
//! [`release`] asks every runtime worker to collect once, when it next
//! parks ([`on_park`], set on the runtime), and collects where it runs.
//! glibc's `malloc_trim` runs too, for what is still allocated through it
//! (C libraries; the test binaries, which keep the system allocator).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bumped by [`release`]; each worker collects once per new value.
static EPOCH: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static SEEN: Cell<u64> = const { Cell::new(0) };
}

/// Give freed memory back: collect this thread's heap now and every
/// worker's when it next parks. Walks heaps under locks: call it off the
/// async workers (`spawn_blocking`) or where blocking is fine.
pub fn release() {
    EPOCH.fetch_add(1, Ordering::Release);
    collect();
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes no pointers and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The runtime's `on_thread_park` hook: one atomic load unless a
/// [`release`] is pending for this thread.
pub fn on_park() {
    let now = EPOCH.load(Ordering::Acquire);
    if SEEN.get() != now {
        SEEN.set(now);
        collect();
    }
}

fn collect() {
    // SAFETY: mi_collect takes no pointers; it frees only what is unused.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
