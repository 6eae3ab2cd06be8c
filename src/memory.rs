//! Keeping the daemon's resident memory low.
//!
//! A resync reads the whole account (for 10,000 users a few megabytes of XML and CSV and
//! the structures parsed from them) and drops it again. With glibc's defaults that costs
//! more than it needs to: each tokio thread that allocates gets an arena of its own, large
//! buffers are carved out of those arenas once the dynamic mmap threshold has grown, and
//! the freed pages stay resident. [`tune_allocator`] (called once, before the runtime
//! starts) keeps one arena and serves buffers of 128 KiB and more with their own mappings,
//! which are unmapped when freed; [`release_free_memory`] returns the rest after a resync.
//! Measured with 10,000 users on moto (README, daemon benchmark): with the other changes
//! made for it, the peak resident memory of a resync went from 46-54 MiB to 32-35 MiB.

/// glibc `mallopt` parameters (malloc.h).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    pub const M_MMAP_THRESHOLD: std::os::raw::c_int = -3;
    pub const M_ARENA_MAX: std::os::raw::c_int = -8;
    extern "C" {
        pub fn mallopt(
            param: std::os::raw::c_int,
            value: std::os::raw::c_int,
        ) -> std::os::raw::c_int;
        pub fn malloc_trim(pad: usize) -> std::os::raw::c_int;
    }
}

/// Allocations of at least this many bytes get their own mapping (and a fixed threshold:
/// glibc would otherwise raise it after the first large free).
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// Configure glibc's allocator for a long-running daemon: one arena, and a fixed mmap
/// threshold of [`MMAP_THRESHOLD`]. An operator's own `MALLOC_ARENA_MAX` or
/// `MALLOC_MMAP_THRESHOLD_` environment variable wins over the value set here. A no-op
/// with other C libraries. Call it before starting threads. Returns the settings applied,
/// named by their environment variables.
pub fn tune_allocator() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut applied = Vec::new();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::raw::c_int;
        let settings: [(c_int, usize, &'static str); 2] = [
            (glibc::M_ARENA_MAX, 1, "MALLOC_ARENA_MAX"),
            (
                glibc::M_MMAP_THRESHOLD,
                MMAP_THRESHOLD,
                "MALLOC_MMAP_THRESHOLD_",
            ),
        ];
        for (param, value, env) in settings {
            if std::env::var_os(env).is_some() {
                continue;
            }
            let value = c_int::try_from(value).unwrap_or(c_int::MAX);
            // SAFETY: mallopt takes two integers and changes only allocator settings.
            if unsafe { glibc::mallopt(param, value) } == 1 {
                applied.push(env);
            }
        }
    }
    applied
}

/// Return free heap pages to the OS (glibc only; a no-op elsewhere).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointers and only reorganises the allocator's own
        // free lists; it is thread-safe (it locks each arena in turn).
        unsafe {
            glibc::malloc_trim(0);
        }
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    #[test]
    fn glibc_accepts_both_settings_unless_the_operator_set_them() {
        let preset: Vec<&str> = ["MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_"]
            .into_iter()
            .filter(|v| std::env::var_os(v).is_some())
            .collect();
        let applied = super::tune_allocator();
        for v in ["MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_"] {
            assert_eq!(
                applied.contains(&v),
                !preset.contains(&v),
                "{v}: applied {applied:?}, set by the environment {preset:?}"
            );
        }
        // Still a working allocator: a buffer above the threshold (its own mapping).
        let big = vec![7u8; super::MMAP_THRESHOLD * 4];
        assert_eq!(
            big.iter().map(|&b| u64::from(b)).sum::<u64>(),
            7 * big.len() as u64
        );
        super::release_free_memory();
    }
}
