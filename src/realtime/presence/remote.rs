//! The cluster's side of presence: other nodes' changes counted as holders, their users kept online
//! and listed, and the snapshot a node sends when another asks for it.

use super::{Change, Online, PresenceHub, RoomList, Snapshot, State};
use crate::auth::UserId;
use crate::services::users::Author;

impl PresenceHub {
    /// Applies another node's change: `add` counts that node as one more holder of the user (online,
    /// or in a room), `!add` as one less (the change undone).
    pub fn apply_remote(&self, change: Change<'_>, add: bool) {
        let mut state = self.lock();
        let state = &mut *state;
        match change {
            Change::Online(author) if add => {
                Online::of(&mut state.online, author).remote += 1;
                self.came_online(state, author.id);
            }
            Change::Online(author) => self.remote_offline(state, author.id),
            Change::Offline(user) => self.remote_offline(state, user),
            Change::Enter(room, user) if add => {
                let list = state
                    .rooms
                    .entry(room.to_owned())
                    .or_insert_with(RoomList::new);
                let holders = list.members.entry(user).or_default();
                holders.remote += 1;
                if holders.total() == 1 {
                    self.listed(list);
                    if !state.online.contains_key(&user) {
                        state
                            .awaiting
                            .entry(user)
                            .or_default()
                            .push(room.to_owned());
                    }
                }
            }
            Change::Enter(room, user) | Change::Leave(room, user) => {
                let Some(holders) = state
                    .rooms
                    .get_mut(room)
                    .and_then(|l| l.members.get_mut(&user))
                else {
                    return;
                };
                holders.remote = holders.remote.saturating_sub(1);
                if holders.total() == 0 {
                    self.unlisted(state, room, user);
                }
            }
        }
    }

    /// Another node's profile update of a user it counts as online.
    pub fn refresh_remote(&self, author: &Author) {
        if let Some(online) = self.lock().online.get_mut(&author.id) {
            online.author = author.clone();
        }
    }

    fn remote_offline(&self, state: &mut State, user: UserId) {
        if let Some(entry) = state.online.get_mut(&user) {
            entry.remote = entry.remote.saturating_sub(1);
            if entry.sockets == 0 && entry.remote == 0 {
                state.forget_online(user);
            }
        }
    }

    /// Hands this node's own presence (its online users and where their sockets are) to `f`, which
    /// runs under the hub's lock: no change is told to the observer between the snapshot and `f`.
    pub fn with_snapshot(&self, f: impl FnOnce(Snapshot)) {
        let state = self.lock();
        let snapshot = Snapshot {
            online: state
                .online
                .values()
                .filter(|o| o.sockets > 0)
                .map(|o| o.author.clone())
                .collect(),
            rooms: state
                .rooms
                .iter()
                .map(|(room, list)| {
                    let users = list
                        .members
                        .iter()
                        .filter(|(_, h)| h.local > 0)
                        .map(|(id, _)| *id)
                        .collect::<Vec<_>>();
                    (room.clone(), users)
                })
                .filter(|(_, users)| !users.is_empty())
                .collect(),
        };
        f(snapshot);
    }

    /// Hands this node's own users in `room` to `f`, under the hub's lock (as
    /// [`with_snapshot`](Self::with_snapshot)).
    pub fn with_room(&self, room: &str, f: impl FnOnce(Vec<UserId>)) {
        let state = self.lock();
        let users = state
            .rooms
            .get(room)
            .map(|list| {
                list.members
                    .iter()
                    .filter(|(_, h)| h.local > 0)
                    .map(|(id, _)| *id)
                    .collect()
            })
            .unwrap_or_default();
        f(users);
    }
}
