//! Leaves held back while their members move to another node.
//!
//! When a node drains, its clients reconnect elsewhere within moments. Pushing
//! "alice left" then "alice joined" to everyone in the room for each of them is noise
//! (and, in a big room during a deploy, a storm). The draining node marks those leaves
//! as moving; each listening node holds such a leave for the rejoin grace, and a join
//! by the same user in that time cancels both. A leave whose grace ends is pushed then.
//! Presence itself is not delayed: it is always asked of the nodes that hold members.

use herald_shared::protocol::ClientInfo;
use std::collections::{HashMap, VecDeque};
use tokio::time::Instant;

/// Held leaves of one channel, by user.
#[derive(Default)]
pub(super) struct HeldLeaves {
    by_user: HashMap<String, VecDeque<(ClientInfo, Instant)>>,
}

impl HeldLeaves {
    /// Holds `info`'s leave until `until`.
    pub(super) fn hold(&mut self, info: ClientInfo, until: Instant) {
        self.by_user
            .entry(info.user.clone())
            .or_default()
            .push_back((info, until));
    }

    /// A join by `user`: true when it cancels a held leave (push neither).
    pub(super) fn rejoined(&mut self, user: &str) -> bool {
        let Some(q) = self.by_user.get_mut(user) else {
            return false;
        };
        q.pop_front();
        if q.is_empty() {
            self.by_user.remove(user);
        }
        true
    }

    /// When the next held leave is due.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.by_user
            .values()
            .filter_map(|q| q.front().map(|(_, at)| *at))
            .min()
    }

    /// Takes the leaves due by `now`, in no particular order.
    pub(super) fn due(&mut self, now: Instant) -> Vec<ClientInfo> {
        let mut out = Vec::new();
        self.by_user.retain(|_, q| {
            while q.front().is_some_and(|(_, at)| *at <= now) {
                if let Some((info, _)) = q.pop_front() {
                    out.push(info);
                }
            }
            !q.is_empty()
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn who(user: &str, client: &str) -> ClientInfo {
        ClientInfo {
            user: user.into(),
            client: client.into(),
            conn_info: None,
            chan_info: None,
        }
    }

    #[test]
    fn a_rejoin_cancels_the_held_leave() {
        let mut h = HeldLeaves::default();
        let t0 = Instant::now();
        h.hold(who("alice", "c1"), t0 + Duration::from_secs(10));
        assert!(!h.rejoined("bob"));
        assert!(h.rejoined("alice"));
        assert!(!h.rejoined("alice"), "one leave cancels one join");
        assert_eq!(h.next_deadline(), None);
        assert!(h.due(t0 + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn leaves_are_pushed_when_their_grace_ends() {
        let mut h = HeldLeaves::default();
        let t0 = Instant::now();
        h.hold(who("alice", "c1"), t0 + Duration::from_secs(1));
        h.hold(who("alice", "c2"), t0 + Duration::from_secs(3));
        h.hold(who("bob", "c3"), t0 + Duration::from_secs(2));
        assert_eq!(h.next_deadline(), Some(t0 + Duration::from_secs(1)));
        let due: Vec<String> = h
            .due(t0 + Duration::from_secs(2))
            .into_iter()
            .map(|i| i.client)
            .collect();
        assert_eq!(due.len(), 2);
        assert!(due.contains(&"c1".to_owned()) && due.contains(&"c3".to_owned()));
        assert_eq!(h.next_deadline(), Some(t0 + Duration::from_secs(3)));
        assert_eq!(h.due(t0 + Duration::from_secs(3)).len(), 1);
        assert_eq!(h.next_deadline(), None);
    }
}
