//! A handle on one session from outside the layer, found in the session's request extensions
//! (`socket.req_parts().extensions.get::<SessionHandle>()` in socketioxide). With it the application
//!
//! * **closes the whole Engine.IO session** ([`SessionHandle::close`]), not only a Socket.IO namespace,
//!   when it decides a client must go (its user was banned, say): packets already queued are still
//!   written, then a close packet, then the transport ends;
//! * **emits a message it encoded itself** ([`SessionHandle::emit`]): an application that keeps its own
//!   list of who is in a room encodes a broadcast once and hands every recipient the same [`Str`], as
//!   socketioxide does for its own rooms, without keeping the rooms in socketioxide's adapter too. The
//!   message goes into the same queue, in the same order, as socketioxide's own emits.

use std::sync::{Arc, OnceLock, Weak};

use engineioxide_core::Str;
use tokio::sync::mpsc::error::TrySendError;

/// A session the handle reaches.
pub(crate) trait Session: Send + Sync {
    fn close_now(&self);
    fn emit_message(&self, msg: Str) -> Result<(), TrySendError<Str>>;
}

/// A handle on one session, to close it or emit to it. Cheap to clone; holds the session weakly (once
/// the session has ended, closing does nothing and emitting fails as closed).
#[derive(Clone, Default)]
pub struct SessionHandle(Arc<OnceLock<Weak<dyn Session>>>);

impl SessionHandle {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Points the handle at its session, once the session exists.
    pub(crate) fn bind(&self, session: Weak<dyn Session>) {
        let _ = self.0.set(session);
    }

    fn session(&self) -> Option<Arc<dyn Session>> {
        self.0.get().and_then(Weak::upgrade)
    }

    /// Closes the session (a no-op once it has ended).
    pub fn close(&self) {
        if let Some(session) = self.session() {
            session.close_now();
        }
    }

    /// Emits a text message (for Socket.IO, an encoded packet such as `2["event",…]`), as
    /// [`crate::Socket::emit`] does: it fails rather than grow the queue past `max_buffer_size`, and
    /// fails as closed once the session is closing or has ended.
    ///
    /// # Errors
    /// [`TrySendError::Full`] for a client that stopped reading, [`TrySendError::Closed`] for a session
    /// that is closing or gone; either way the message comes back.
    pub fn emit(&self, msg: Str) -> Result<(), TrySendError<Str>> {
        match self.session() {
            Some(session) => session.emit_message(msg),
            None => Err(TrySendError::Closed(msg)),
        }
    }
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle").finish_non_exhaustive()
    }
}
