//! What the operating system keeps about the process: its open-file limit and open descriptors; and
//! what chatroom asks of its scheduler: a lower priority for a thread doing background work, and the
//! core handed over while the event loop waits for the store's thread.

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

/// Runs `work`, and each time it waits, first gives the core up to the threads ready to run beside
/// the event loop (`sched_yield`), when the event loop runs at a real-time priority.
///
/// For work that waits on a thread of the same process, such as a SQLite connection's: at equal
/// real-time priority a thread that is woken does not take the core from the one running, so the
/// store's thread would wait until the event loop has nothing left to do (milliseconds on a busy
/// core), and every message waits with it. Under ordinary scheduling the kernel lets a woken thread
/// in by itself, and nothing is done.
pub async fn hand_over_core<F: Future>(work: F) -> F::Output {
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| {
        let polled = work.as_mut().poll(cx);
        if polled.is_pending() && realtime_thread() {
            std::thread::yield_now();
        }
        polled
    })
    .await
}

/// Whether the calling thread runs under a real-time policy (asked once per thread: a thread's policy
/// is set when it starts).
fn realtime_thread() -> bool {
    thread_local! {
        static REALTIME: bool = realtime_policy();
    }
    REALTIME.with(|r| *r)
}

#[cfg(unix)]
fn realtime_policy() -> bool {
    use thread_priority::unix::{ThreadSchedulePolicy, thread_schedule_policy};
    matches!(
        thread_schedule_policy(),
        Ok(ThreadSchedulePolicy::Realtime(_))
    )
}

#[cfg(not(unix))]
fn realtime_policy() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_handed_the_core_still_finishes_with_its_own_result() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let store = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send(42).expect("send");
        });
        // Waits (pending at least once) for another thread, as the writer waits for SQLite's.
        let got = hand_over_core(async { rx.await.expect("answer") + 1 }).await;
        assert_eq!(got, 43);
        store.join().expect("join");
    }
}
