//! What the operating system keeps about the process: its open-file limit and open descriptors; and the
//! one thing chatroom asks of it, a lower priority for a thread doing background work.

/// The process's open-file limit (the soft one), from `/proc/self/limits`; 1024 where that cannot be
/// read.
pub fn open_file_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits
                .lines()
                .find(|l| l.starts_with("Max open files"))?
                .to_owned();
            let soft = line
                .trim_start_matches("Max open files")
                .split_whitespace()
                .next()?
                .to_owned();
            Some(if soft == "unlimited" {
                u64::MAX
            } else {
                soft.parse().ok()?
            })
        })
        .unwrap_or(1024)
}

/// How many file descriptors the process has open (Linux), if that can be read.
pub fn open_fds() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(Iterator::count)
}

/// Moves the calling thread to ordinary scheduling (out of a real-time class, if the server was
/// started in one) at the lowest priority, nice 19. Threads it starts afterwards inherit both: that
/// is how background work gets a thread that waits for the event loop instead of holding it up.
///
/// # Errors
/// What the operating system said, where it refused.
#[cfg(unix)]
pub fn demote_current_thread() -> Result<(), String> {
    use thread_priority::ThreadPriority;
    use thread_priority::unix::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
        thread_native_id,
    };
    set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other),
    )
    .map_err(|e| format!("{e:?}"))
}

/// Elsewhere threads keep the priority they were given.
///
/// # Errors
/// Never.
#[cfg(not(unix))]
pub fn demote_current_thread() -> Result<(), String> {
    Ok(())
}
