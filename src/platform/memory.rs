//! Giving freed heap memory back to the system. glibc keeps what a thread frees in that
//! thread's arena; a render job's buffers, freed on a job thread, or a burst of WebSocket
//! sessions, freed on the HTTP workers, would otherwise stay resident and add to whatever
//! the next jobs allocate in other arenas.
#![allow(unsafe_code)]

#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" {
    fn malloc_trim(pad: usize) -> std::ffi::c_int;
}

/// Returns free pages of every malloc arena to the system (a few milliseconds with a few
/// hundred MB of heap: call it off the async workers, at quiet moments such as a job's end).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks.
    unsafe {
        malloc_trim(0);
    }
}

/// A `/proc/self/status` field in KiB (0 when unreadable).
pub fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    fn rss_kib() -> u64 {
        super::proc_status_kib("VmRSS:")
    }

    #[test]
    fn freed_small_allocations_leave_the_process_after_a_trim() {
        // 64 MiB in 16 KiB blocks (below the mmap threshold, so they live in an arena),
        // touched, then freed except one block at the end that pins the heap top.
        let blocks: Vec<Vec<u8>> = (0..4096).map(|i| vec![i as u8 | 1; 16 * 1024]).collect();
        let pin = vec![1u8; 16 * 1024];
        let full = rss_kib();
        drop(blocks);
        super::release_free_memory();
        let trimmed = rss_kib();
        std::hint::black_box(&pin);
        assert!(
            trimmed + 32 * 1024 < full,
            "RSS {full} KiB -> {trimmed} KiB after the trim"
        );
    }
}
