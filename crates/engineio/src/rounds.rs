//! Write rounds: when a frame may go straight to a socket, and when it should wait to be written with
//! the frames after it.
//!
//! A frame for an idle WebSocket is written at once, by the emitting thread (one system call). That is
//! the cheapest way to send a lone frame, and the wrong way to send many: a busy room's batch of k
//! messages to the same socket would cost k system calls, one per frame, where one writev of all k
//! does. So the first frame a socket gets in a *round* is written directly, and the ones after it in
//! the same round wait in the socket's queue, which its reader task writes with one call.
//!
//! A round begins with the first direct write after the previous round ended, and ends once the
//! emitting task's turn is over and the tasks that were ready behind it have run: a task spawned at
//! the round's first direct write yields once (tokio runs a yielded task after the others that are
//! ready and after it has polled for I/O) and then starts the next round. Under light load a round is
//! a few microseconds long and every frame is a lone one; under saturation rounds grow with the
//! backlog, so the cost per delivery falls as the load rises, as it should.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU32, Ordering},
};

/// The current round of an engine, shared by its sessions.
#[derive(Debug, Default)]
pub(crate) struct Rounds {
    epoch: AtomicU32,
    /// A task will end the current round.
    armed: AtomicBool,
}

impl Rounds {
    /// The round now running.
    pub(crate) fn current(&self) -> u32 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Notes a direct write in the current round and returns that round; makes sure something ends
    /// it. Outside a runtime (nothing could end it later) the round ends at once.
    pub(crate) fn direct_write(self: &Arc<Self>) -> u32 {
        if !self.armed.swap(true, Ordering::AcqRel) {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    let rounds = self.clone();
                    rt.spawn(async move {
                        tokio::task::yield_now().await;
                        rounds.next();
                    });
                }
                Err(_) => {
                    let round = self.current();
                    self.next();
                    return round;
                }
            }
        }
        self.current()
    }

    fn next(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.armed.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_round_lasts_until_the_turn_is_over() {
        let rounds = Arc::new(Rounds::default());
        let first = rounds.direct_write();
        assert_eq!(rounds.direct_write(), first, "same turn, same round");
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        assert_ne!(rounds.current(), first, "the round ended after the turn");
        let second = rounds.direct_write();
        assert_eq!(second, rounds.current());
    }

    #[test]
    fn outside_a_runtime_every_write_is_its_own_round() {
        let rounds = Arc::new(Rounds::default());
        let a = rounds.direct_write();
        assert_ne!(rounds.current(), a);
    }
}
