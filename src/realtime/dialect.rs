//! The two client dialects chatroom speaks.

/// The two client generations, told apart at connect: the Laravel-era client always puts `api_token`
/// in the handshake query (even before sign-in), the v3 client and modern clients never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// hua1995116/webchat and any socket.io 3/4 client: `roomid: 'room1'`, presence keyed by name.
    V3,
    /// The LaravelS tutorial's client: `roomid: '1'`, presence keyed by user id.
    Laravel,
}

impl Dialect {
    /// Both dialects.
    pub const ALL: [Self; 2] = [Self::V3, Self::Laravel];

    /// The prefix of this dialect's room channels ([`super::channels::Channels`]): every chat room has
    /// one channel per dialect, so an event encoded once per dialect goes to exactly the sockets that
    /// read it.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::V3 => "",
            Self::Laravel => "laravel:",
        }
    }
}
