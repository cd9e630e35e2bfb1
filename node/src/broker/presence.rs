//! Presence of this node's own members. The embedded broker answers from it directly;
//! in a cluster each node is the authority for its members and answers queries from it.

use super::PresenceStats;
use herald_shared::protocol::ClientInfo;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};

/// Channel → connection id → who.
#[derive(Default)]
pub struct LocalPresence {
    inner: Mutex<HashMap<String, HashMap<String, ClientInfo>>>,
}

impl LocalPresence {
    /// Records a member.
    pub fn add(&self, channel: &str, client: &str, info: &ClientInfo) {
        let mut p = self.inner.lock();
        p.entry(channel.to_owned())
            .or_default()
            .insert(client.to_owned(), info.clone());
    }

    /// Removes a member.
    pub fn remove(&self, channel: &str, client: &str) {
        let mut p = self.inner.lock();
        if let Some(m) = p.get_mut(channel) {
            m.remove(client);
            if m.is_empty() {
                p.remove(channel);
            }
        }
    }

    /// Members of a channel.
    pub fn get(&self, channel: &str) -> HashMap<String, ClientInfo> {
        let p = self.inner.lock();
        p.get(channel).cloned().unwrap_or_default()
    }
}

/// Numbers for a set of members.
pub fn stats(members: &HashMap<String, ClientInfo>) -> PresenceStats {
    let users: HashSet<&str> = members.values().map(|i| i.user.as_str()).collect();
    PresenceStats {
        clients: members.len(),
        users: users.len(),
    }
}
