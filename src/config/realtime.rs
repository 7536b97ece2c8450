//! Realtime: the chat itself. Its rooms, VIP users and robot, how long a message may be, and what one
//! socket or user may ask of the node (events per second, sockets, the message queue, presence lists).

use clap::Args;

use super::{ConfigError, SecretUrl, trimmed};

/// Flags for rooms, messages and sockets.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Realtime")]
pub struct RealtimeConfig {
    /// Group rooms, in the order clients list them.
    #[arg(
        long,
        env = "CHATROOM_ROOMS",
        value_delimiter = ',',
        default_value = "room1,room2"
    )]
    pub rooms: Vec<String>,

    /// Users shown as VIP by `/api/user/vipuser` (comma-separated names).
    #[arg(
        long,
        env = "CHATROOM_VIP_USERS",
        value_delimiter = ',',
        default_value = "hua1995116"
    )]
    pub vip_users: Vec<String>,

    /// Optional robot upstream (a tuling123-compatible JSON API). Without it, or when it fails, the
    /// built-in offline responder answers.
    #[arg(long, env = "CHATROOM_ROBOT_URL")]
    pub robot_url: Option<SecretUrl>,

    /// Longest chat message, in characters.
    #[arg(long, env = "CHATROOM_MESSAGE_MAX_CHARS", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub message_max_chars: u32,

    /// Socket events one socket may send per second (bursts of twice as many are allowed).
    #[arg(long, env = "CHATROOM_SOCKET_EVENTS_PER_SECOND", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub socket_events_per_second: u32,

    /// Sockets one user may have bound on this node at once (tabs, devices); one more is refused at
    /// its handshake, or when it signs in.
    #[arg(long, env = "CHATROOM_MAX_SOCKETS_PER_USER", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_sockets_per_user: u32,

    /// Messages waiting to be stored at most; when full, senders get an error instead of a delay.
    #[arg(long, env = "CHATROOM_MESSAGE_QUEUE", default_value_t = 4096)]
    pub message_queue: usize,

    /// Most members a room's presence list names (the first ones by id). Every member of a room gets
    /// the list, so its size is paid once per member; 1 000 names are about 40 KB.
    #[arg(long, env = "CHATROOM_PRESENCE_MAX_MEMBERS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub presence_max_members: u32,

    /// Largest single Engine.IO frame (WebSocket message or polling body), in bytes, a socket may send
    /// before it signs in. Signing in lifts it to the packet limit (a Laravel-era picture message is a
    /// few MB of base64); nothing an anonymous client needs to send comes close.
    #[arg(long, env = "CHATROOM_ANONYMOUS_FRAME_BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=(1 << 30)))]
    pub anonymous_frame_bytes: u64,

    /// Bytes that frames and polling bodies still arriving may hold in memory, all sockets together.
    /// Past it, the oldest unfinished ones are dropped (their sockets closed) to make room.
    #[arg(long, env = "CHATROOM_FRAME_BUDGET_BYTES", default_value_t = 256 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range((1 << 20)..=(1 << 40)))]
    pub frame_budget_bytes: u64,

    /// Seconds after sending during which an author may recall a message (the `recall` event).
    #[arg(long, env = "CHATROOM_RECALL_WINDOW", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(0..=(366 * 24 * 3600)))]
    pub recall_window: u64,
}

/// Rooms, messages and sockets, resolved.
#[derive(Debug, Clone)]
pub struct RealtimeSettings {
    /// Group rooms, in the order clients list them; at least one, each a valid name.
    pub rooms: Vec<String>,
    /// Users shown as VIP.
    pub vip_users: Vec<String>,
    /// The robot upstream, if any.
    pub robot_url: Option<SecretUrl>,
    /// Longest chat message, in characters.
    pub message_max_chars: usize,
    /// Socket events one socket may send per second.
    pub socket_events_per_second: u32,
    /// Sockets one user may have bound on this node at once.
    pub max_sockets_per_user: usize,
    /// Messages waiting to be stored at most.
    pub message_queue: usize,
    /// Most members a room's presence list names.
    pub presence_max_members: usize,
    /// Largest frame a socket may send before it signs in.
    pub anonymous_frame_bytes: usize,
    /// Bytes unfinished frames and polling bodies may hold, all sockets together.
    pub frame_budget_bytes: usize,
    /// How long after sending an author may recall a message.
    pub recall_window: std::time::Duration,
}

impl RealtimeConfig {
    /// Checks the room names and drops blank list entries.
    ///
    /// # Errors
    /// [`ConfigError::Rooms`] when there is no room or a name is not allowed.
    pub fn resolve(self) -> Result<RealtimeSettings, ConfigError> {
        let rooms = trimmed(self.rooms);
        if rooms.is_empty() || !rooms.iter().all(|r| valid_room_name(r)) {
            return Err(ConfigError::Rooms);
        }
        Ok(RealtimeSettings {
            rooms,
            vip_users: trimmed(self.vip_users),
            robot_url: self.robot_url.filter(|u| !u.expose().trim().is_empty()),
            message_max_chars: self.message_max_chars as usize,
            socket_events_per_second: self.socket_events_per_second,
            max_sockets_per_user: self.max_sockets_per_user as usize,
            message_queue: self.message_queue.max(1),
            presence_max_members: self.presence_max_members as usize,
            anonymous_frame_bytes: usize::try_from(self.anonymous_frame_bytes)
                .unwrap_or(usize::MAX),
            frame_budget_bytes: usize::try_from(self.frame_budget_bytes).unwrap_or(usize::MAX),
            recall_window: std::time::Duration::from_secs(self.recall_window),
        })
    }
}

impl RealtimeSettings {
    /// Test values: the default rooms and VIP, no robot upstream, socket limits no test reaches by
    /// accident.
    pub fn for_tests() -> Self {
        Self {
            rooms: vec!["room1".into(), "room2".into()],
            vip_users: vec!["hua1995116".into()],
            robot_url: None,
            message_max_chars: 200,
            socket_events_per_second: 1000,
            max_sockets_per_user: 4096,
            message_queue: 4096,
            presence_max_members: 1000,
            anonymous_frame_bytes: 64 * 1024,
            frame_budget_bytes: 256 * 1024 * 1024,
            recall_window: std::time::Duration::from_secs(120),
        }
    }
}

/// Group room names appear in URLs and private room ids use `-`, so keep them to a safe alphabet.
fn valid_room_name(room: &str) -> bool {
    crate::services::rooms::valid_group_id(room)
}

#[cfg(test)]
mod tests {
    use super::super::tests::config;
    use super::*;

    #[test]
    fn refuses_room_names_that_could_collide_with_private_rooms() {
        assert!(matches!(
            config(&["--rooms", "1-2"]).realtime.resolve(),
            Err(ConfigError::Rooms)
        ));
        assert!(matches!(
            config(&["--rooms", ","]).realtime.resolve(),
            Err(ConfigError::Rooms)
        ));
    }
}
