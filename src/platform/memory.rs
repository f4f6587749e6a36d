//! Giving memory back to the system. glibc keeps what a thread frees in that thread's arena;
//! a render job's buffers, freed on a job thread, or a burst of WebSocket sessions, freed on
//! the HTTP workers, would otherwise stay resident and add to whatever the next jobs allocate
//! in other arenas. And the render device's libraries stay mapped after it closes: their
//! code pages are handed back too ([`page_out_libraries`]).
#![allow(unsafe_code)]

#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" {
    fn malloc_trim(pad: usize) -> std::ffi::c_int;
    fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: std::ffi::c_int)
    -> std::ffi::c_int;
    fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
}

/// glibc's `M_MMAP_THRESHOLD`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const M_MMAP_THRESHOLD: std::ffi::c_int = -3;

/// Allocations this large or larger get pages of their own (mmap) and give them back when
/// freed: frame, patch and staging buffers (hundreds of KiB to MBs). glibc's default starts
/// at 128 KiB but raises the threshold to the largest block freed so far (up to 32 MiB), so
/// after one job's frames were freed the next job's came from the arenas — and stayed
/// resident there, fragmented, after it ended (+25 MB a minute after four 720p jobs).
pub const MMAP_THRESHOLD: usize = 256 * 1024;

/// Sets the allocator up for a long-running server (call once at start): a fixed
/// [`MMAP_THRESHOLD`], which also stops glibc adjusting it.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocator parameters; it takes its own locks.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD as std::ffi::c_int);
    }
}

/// `MADV_PAGEOUT` (Linux 5.4): reclaim these pages now. Clean file-backed pages are dropped
/// (read again from the file on the next touch); nothing's contents change.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MADV_PAGEOUT: std::ffi::c_int = 21;

/// Libraries only rendering uses: Mesa's lavapipe and the LLVM it compiles kernels with
/// (libLLVM cannot be unloaded once loaded — its unique C++ symbols make glibc keep it —
/// and ~45 MB of its code stays resident after the device closes), and the encoders
/// (x264, and FFmpeg where avenc_aac is the AAC encoder; GStreamer never unloads a plugin).
pub const RENDER_LIBRARIES: &[&str] = &[
    "libLLVM",
    "libvulkan_lvp",
    "libz3",
    "libx264",
    "libavcodec",
    "libavfilter",
    "libavformat",
    "libavutil",
    "libswresample",
];

/// Hands the resident pages of the mapped libraries whose path contains one of `names` back
/// to the kernel (`MADV_PAGEOUT`), e.g. [`RENDER_LIBRARIES`] once the render device has
/// closed. Returns the bytes advised. A later use of the library faults its pages in again.
pub fn page_out_libraries(names: &[&str]) -> u64 {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    let mut advised = 0u64;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let path = fields.nth(3).unwrap_or("");
        // Code and read-only data only: never a mapping the library writes to.
        if perms.contains('w') || !names.iter().any(|n| path.contains(n)) {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: a whole, page-aligned mapping listed by the kernel for this process,
        // read-only; MADV_PAGEOUT only reclaims its pages, it never changes their contents.
        if unsafe { madvise(start as *mut std::ffi::c_void, end - start, MADV_PAGEOUT) } == 0 {
            advised += (end - start) as u64;
        }
    }
    advised
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
    #[test]
    fn paging_out_a_library_s_code_lowers_rss_and_the_library_still_works() {
        // libc's code is resident (this test runs on it); paging it out is harmless.
        let advised = super::page_out_libraries(&["libc.so"]);
        assert!(advised > 0, "libc is mapped read-only somewhere");
        assert_eq!(format!("{}", 6 * 7), "42", "code paged back in on use");
        assert_eq!(super::page_out_libraries(&["no-such-library"]), 0);
    }

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
