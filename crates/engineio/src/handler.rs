//! The callbacks an application (socketioxide) gets for every session.

use std::sync::Arc;

use bytes::Bytes;
use engineioxide_core::Str;

use crate::socket::{DisconnectReason, Socket};

/// Receives the events of every Engine.IO session. `Data` is per-session state the layer creates with
/// `Default` and keeps in [`Socket::data`].
pub trait EngineIoHandler: std::fmt::Debug + Send + Sync + 'static {
    /// Per-session state.
    type Data: Default + Send + Sync + 'static;

    /// A session opened (after its open packet was sent or queued).
    fn on_connect(self: Arc<Self>, socket: Arc<Socket<Self::Data>>);

    /// A session ended; called once per session.
    fn on_disconnect(&self, socket: Arc<Socket<Self::Data>>, reason: DisconnectReason);

    /// A text message (`4…`) arrived.
    fn on_message(self: &Arc<Self>, msg: Str, socket: Arc<Socket<Self::Data>>);

    /// A binary message arrived.
    fn on_binary(self: &Arc<Self>, data: Bytes, socket: Arc<Socket<Self::Data>>);
}
