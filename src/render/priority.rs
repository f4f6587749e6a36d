//! Generation runs at a lower CPU priority than the API: on a machine where rendering and
//! encoding can use every core, HTTP handlers and WebSocket fan-out must still get the CPU
//! at once (a progress event should reach 1,000 viewers in milliseconds, not after the
//! encoder's time slice). Linux keeps a nice value per thread and a new thread inherits its
//! creator's, so [`lower_this_thread`] is called by each thread that does generation work
//! — job threads, the GPU scheduler, the thread that opens the Vulkan device (lavapipe's
//! workers are born there), GStreamer's streaming threads as they start (x264's are born
//! there) — and never by the HTTP workers.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_uint};

/// The nice value generation threads run at (0 is normal, 19 the lowest).
pub const GENERATION_NICE: c_int = 19;

const PRIO_PROCESS: c_int = 0;

unsafe extern "C" {
    fn setpriority(which: c_int, who: c_uint, prio: c_int) -> c_int;
}

/// Lowers the calling thread (only it, on Linux) to [`GENERATION_NICE`]. Lowering needs
/// no privilege; a failure leaves the thread as it was.
pub fn lower_this_thread() {
    // Elsewhere `who` 0 would be the whole process, the API included: leave it alone.
    #[cfg(target_os = "linux")]
    // SAFETY: a plain system call on the calling thread (`who` 0), no memory involved.
    let _ = unsafe { setpriority(PRIO_PROCESS, 0, GENERATION_NICE) };
}

/// Puts the calling thread back at normal priority (nice 0), for the threads of a live
/// session's streams: GStreamer's streaming threads come from a shared pool whose threads may
/// have been lowered by generation work. Raising a nice value needs `CAP_SYS_NICE` (root has
/// it); without it the thread stays as it was. Returns whether it is at 0 now.
pub fn normal_this_thread() -> bool {
    #[cfg(target_os = "linux")]
    // SAFETY: a plain system call on the calling thread (`who` 0), no memory involved.
    return unsafe { setpriority(PRIO_PROCESS, 0, 0) } == 0;
    #[cfg(not(target_os = "linux"))]
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_lowered_thread_runs_nicer_and_its_children_inherit_it() {
        fn nice_of_this_thread() -> i64 {
            // Field 19 of /proc/thread-self/stat is the nice value.
            let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
            let after = stat.rsplit(')').next().unwrap_or("");
            after
                .split_whitespace()
                .nth(16)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        }
        let (own, child) = std::thread::spawn(|| {
            super::lower_this_thread();
            let child = std::thread::spawn(nice_of_this_thread).join().unwrap_or(0);
            (nice_of_this_thread(), child)
        })
        .join()
        .unwrap_or((0, 0));
        assert_eq!(own, i64::from(super::GENERATION_NICE));
        assert_eq!(child, own, "threads it starts inherit it");
        assert!(nice_of_this_thread() < own, "other threads are untouched");
    }

    #[test]
    fn a_live_stream_thread_goes_back_to_normal_where_it_may() {
        let nice = std::thread::spawn(|| {
            super::lower_this_thread();
            let raised = super::normal_this_thread();
            let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
            let nice: i64 = stat
                .rsplit(')')
                .next()
                .and_then(|a| a.split_whitespace().nth(16))
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1);
            (raised, nice)
        })
        .join()
        .unwrap_or((false, -1));
        match nice {
            (true, n) => assert_eq!(n, 0),
            // Without CAP_SYS_NICE the thread keeps the generation priority.
            (false, n) => assert_eq!(n, i64::from(super::GENERATION_NICE)),
        }
    }
}
