//! Ending a session from outside the layer: when the application decides a client must go (its user
//! was banned, say), the [`Hangup`] handle it finds in the session's request extensions
//! (`socket.req_parts().extensions.get::<Hangup>()` in socketioxide) closes the whole Engine.IO
//! session, not only a Socket.IO namespace: packets already queued are still written, then a close
//! packet, then the transport ends.

use std::sync::{Arc, OnceLock, Weak};

/// A session the handle can close.
pub(crate) trait Close: Send + Sync {
    fn close_now(&self);
}

/// A handle on one session, to close it. Cheap to clone; holds the session weakly (a closed or
/// dropped session makes it a no-op).
#[derive(Clone, Default)]
pub struct Hangup(Arc<OnceLock<Weak<dyn Close>>>);

impl Hangup {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Points the handle at its session, once the session exists.
    pub(crate) fn bind(&self, session: Weak<dyn Close>) {
        let _ = self.0.set(session);
    }

    /// Closes the session (a no-op once it has ended).
    pub fn close(&self) {
        if let Some(session) = self.0.get().and_then(Weak::upgrade) {
            session.close_now();
        }
    }
}

impl std::fmt::Debug for Hangup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hangup").finish_non_exhaustive()
    }
}
