//! The server's settings: the fields and builder methods socketioxide's `SocketIoBuilder` forwards, and
//! the frame budget (`Limits`) socketioxide cannot forward (see [`crate::budget`]).

use std::{borrow::Cow, time::Duration};

use engineioxide_core::TransportType;

use crate::budget::Limits;

/// Engine.IO settings. socketioxide builds one with `..Default::default()`, so every field has a default.
#[derive(Debug, Clone)]
pub struct EngineIoConfig {
    /// The path the server answers on (`/engine.io` by default; socketioxide uses `/socket.io`).
    pub req_path: Cow<'static, str>,
    /// Engine.IO 4: how often the server pings. Engine.IO 3: how often the client is told to ping.
    pub ping_interval: Duration,
    /// How long a ping may stay unanswered (v4), or how late a client ping may be (v3).
    pub ping_timeout: Duration,
    /// How long a WebSocket may take between the probe and the `5` that completes an upgrade.
    pub upgrade_timeout: Duration,
    /// How many packets may wait for a slow client; an emit beyond it fails with a full-buffer error.
    pub max_buffer_size: usize,
    /// The largest polling body accepted, and the most a polling response carries.
    pub max_payload: u64,
    /// The read chunk of a WebSocket session (the one buffer kept per session while it is idle).
    pub ws_read_buffer_size: usize,
    /// The largest WebSocket message (all its fragments).
    pub ws_max_message_size: usize,
    /// The largest single WebSocket frame.
    pub ws_max_frame_size: usize,
    /// Allowed transports, as a bit set of [`TransportType`] values.
    pub transports: u8,
    /// The frame budget and first-frame limit used when a request carries no [`Limits`] extension.
    pub limits: Option<Limits>,
    /// Under load, how long a frame for an idle WebSocket may wait so that what the socket gets
    /// meanwhile goes out with it in one write (see [`Self::coalescing_load`]); zero: never.
    pub write_coalescing: Duration,
    /// The share of the runtime's worker time (0 to 1) spent running tasks above which writes to
    /// sockets that get frames often are coalesced (when most emits go to such sockets); below half
    /// of it frames go straight out again. Zero or less: always, for every socket that gets frames
    /// often.
    pub coalescing_load: f32,
}

impl Default for EngineIoConfig {
    fn default() -> Self {
        Self {
            req_path: "/engine.io".into(),
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            upgrade_timeout: Duration::from_millis(10_000),
            max_buffer_size: 128,
            max_payload: 100_000,
            ws_read_buffer_size: 4096,
            ws_max_message_size: 64 << 20,
            ws_max_frame_size: 16 << 20,
            transports: TransportType::Polling as u8 | TransportType::Websocket as u8,
            limits: None,
            write_coalescing: Duration::from_millis(10),
            coalescing_load: 0.5,
        }
    }
}

impl EngineIoConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> EngineIoConfigBuilder {
        EngineIoConfigBuilder::new()
    }

    /// Whether clients may use `transport`.
    pub fn allowed_transport(&self, transport: TransportType) -> bool {
        self.transports & transport as u8 == transport as u8
    }
}

/// Builds an [`EngineIoConfig`].
#[derive(Debug, Clone, Default)]
pub struct EngineIoConfigBuilder {
    config: EngineIoConfig,
}

impl EngineIoConfigBuilder {
    /// A builder starting from the defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// See [`EngineIoConfig::req_path`].
    pub fn req_path(mut self, req_path: impl Into<Cow<'static, str>>) -> Self {
        self.config.req_path = req_path.into();
        self
    }
    /// See [`EngineIoConfig::ping_interval`].
    pub fn ping_interval(mut self, ping_interval: Duration) -> Self {
        self.config.ping_interval = ping_interval;
        self
    }
    /// See [`EngineIoConfig::ping_timeout`].
    pub fn ping_timeout(mut self, ping_timeout: Duration) -> Self {
        self.config.ping_timeout = ping_timeout;
        self
    }
    /// See [`EngineIoConfig::upgrade_timeout`].
    pub fn upgrade_timeout(mut self, upgrade_timeout: Duration) -> Self {
        self.config.upgrade_timeout = upgrade_timeout;
        self
    }
    /// See [`EngineIoConfig::max_buffer_size`].
    pub fn max_buffer_size(mut self, max_buffer_size: usize) -> Self {
        self.config.max_buffer_size = max_buffer_size;
        self
    }
    /// See [`EngineIoConfig::max_payload`].
    pub fn max_payload(mut self, max_payload: u64) -> Self {
        self.config.max_payload = max_payload;
        self
    }
    /// See [`EngineIoConfig::ws_read_buffer_size`].
    pub fn ws_read_buffer_size(mut self, ws_read_buffer_size: usize) -> Self {
        self.config.ws_read_buffer_size = ws_read_buffer_size;
        self
    }
    /// See [`EngineIoConfig::ws_max_message_size`].
    pub fn ws_max_message_size(mut self, ws_max_message_size: usize) -> Self {
        self.config.ws_max_message_size = ws_max_message_size;
        self
    }
    /// See [`EngineIoConfig::ws_max_frame_size`].
    pub fn ws_max_frame_size(mut self, ws_max_frame_size: usize) -> Self {
        self.config.ws_max_frame_size = ws_max_frame_size;
        self
    }
    /// The transports clients may use (one or both).
    ///
    /// # Panics
    /// When the array is empty or names more than two transports.
    pub fn transports<const N: usize>(mut self, transports: [TransportType; N]) -> Self {
        assert!(N > 0 && N <= 2, "one or two transports");
        self.config.transports = transports.iter().fold(0, |bits, t| bits | *t as u8);
        self
    }
    /// See [`EngineIoConfig::limits`].
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.limits = Some(limits);
        self
    }
    /// See [`EngineIoConfig::write_coalescing`] and [`EngineIoConfig::coalescing_load`].
    pub fn write_coalescing(mut self, interval: Duration, above_load: f32) -> Self {
        self.config.write_coalescing = interval;
        self.config.coalescing_load = above_load;
        self
    }
    /// The settings.
    pub fn build(self) -> EngineIoConfig {
        self.config
    }
}
