//! Giving freed heap back to the operating system.
//!
//! A resync reads the whole account (for 10,000 users a few megabytes of XML and CSV and
//! the structures parsed from them) and drops it again; glibc's allocator keeps most of
//! those pages in its per-thread arenas, so the resident size would stay at the peak of the
//! largest resync. `release_free_memory` asks it to return them (`malloc_trim`).

/// Return free heap pages to the OS (glibc only; a no-op elsewhere).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::os::raw::c_int;
        }
        // SAFETY: malloc_trim takes no pointers and only reorganises the allocator's own
        // free lists; it is thread-safe (it locks each arena in turn).
        unsafe {
            malloc_trim(0);
        }
    }
}
