//! Every open connection of the node, in one place.
//!
//! A connection is counted from the moment its upgrade is accepted (so a connect storm
//! cannot overshoot `max_connections`), listed once its session starts (so shutdown can
//! close it, connected or not), and indexed by client and user id once `connect`
//! succeeded (so the server API can find it).
//!
//! Shutdown closes sessions through this list rather than by each writer watching the
//! node's stop token: every poll of a `CancellationToken` takes its mutex, one for the
//! whole node, so a fan-out that woke a thousand writers had them all queue on that lock.

use super::Conn;
use herald_shared::protocol::DisconnectCode;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The node's connections.
#[derive(Default)]
pub struct Registry {
    /// Upgrades accepted and not finished yet (sessions, and handshakes about to be).
    slots: AtomicUsize,
    inner: Mutex<Lists>,
}

#[derive(Default)]
struct Lists {
    /// Every open session, connected or not.
    open: HashMap<u64, Arc<Conn>>,
    /// Connected sessions by client id.
    by_client: HashMap<String, u64>,
    /// Connected sessions by user id.
    by_user: HashMap<String, HashSet<u64>>,
}

impl Registry {
    /// Takes a slot for a new connection unless `max` are taken already.
    pub fn reserve(&self, max: usize) -> bool {
        if self.slots.fetch_add(1, Ordering::Relaxed) >= max {
            self.slots.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Gives back a slot whose connection never became a session.
    pub fn release(&self) {
        self.slots.fetch_sub(1, Ordering::Relaxed);
    }

    /// Connections holding a slot.
    pub fn slots(&self) -> usize {
        self.slots.load(Ordering::Relaxed)
    }

    /// Lists a session that just started.
    pub fn open(&self, conn: Arc<Conn>) {
        self.inner.lock().open.insert(conn.id, conn);
    }

    /// Indexes a session that completed `connect`.
    pub fn connected(&self, conn: &Conn) {
        let Some(ident) = conn.identity() else {
            return;
        };
        let mut r = self.inner.lock();
        r.by_client.insert(ident.client.clone(), conn.id);
        r.by_user
            .entry(ident.user.clone())
            .or_default()
            .insert(conn.id);
    }

    /// Forgets a session that ended and gives back its slot.
    pub fn close(&self, conn: &Conn) {
        let mut r = self.inner.lock();
        r.open.remove(&conn.id);
        if let Some(ident) = conn.identity() {
            r.by_client.remove(&ident.client);
            if let Some(set) = r.by_user.get_mut(&ident.user) {
                set.remove(&conn.id);
                if set.is_empty() {
                    r.by_user.remove(&ident.user);
                }
            }
        }
        drop(r);
        self.release();
    }

    /// Connected sessions of `user`, optionally only the one with client id `client`.
    pub fn find(&self, user: &str, client: Option<&str>) -> Vec<Arc<Conn>> {
        let r = self.inner.lock();
        let Some(ids) = r.by_user.get(user) else {
            return Vec::new();
        };
        ids.iter()
            .filter_map(|id| r.open.get(id))
            .filter(|c| match client {
                Some(cl) => c.identity().is_some_and(|i| i.client == cl),
                None => true,
            })
            .cloned()
            .collect()
    }

    /// Every connected session.
    pub fn connected_all(&self) -> Vec<Arc<Conn>> {
        let r = self.inner.lock();
        r.by_client
            .values()
            .filter_map(|id| r.open.get(id))
            .cloned()
            .collect()
    }

    /// Number of connected sessions.
    pub fn num_clients(&self) -> usize {
        self.inner.lock().by_client.len()
    }

    /// Number of distinct users connected.
    pub fn num_users(&self) -> usize {
        self.inner.lock().by_user.len()
    }

    /// Closes every open session, connected or not, with `code`.
    pub fn close_all(&self, code: DisconnectCode) {
        let all: Vec<Arc<Conn>> = self.inner.lock().open.values().cloned().collect();
        for conn in all {
            conn.out.close(code);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::Identity;

    fn conn(id: u64, user: &str, client: &str) -> Arc<Conn> {
        let c = Arc::new(Conn::new(id, "127.0.0.1:1".parse().unwrap(), 1024));
        if !client.is_empty() {
            c.set_identity(Identity {
                client: client.into(),
                user: user.into(),
                info: None,
                meta: None,
            });
        }
        c
    }

    #[test]
    fn open_connected_and_closed() {
        let r = Registry::default();
        assert!(r.reserve(2) && r.reserve(2));
        assert!(!r.reserve(2), "over the limit");
        let (a, b) = (conn(1, "u", "c1"), conn(2, "", ""));
        r.open(a.clone());
        r.open(b.clone());
        r.connected(&a);
        assert_eq!(r.find("u", None).len(), 1);
        assert_eq!(r.find("u", Some("c2")).len(), 0);
        assert_eq!((r.num_clients(), r.num_users()), (1, 1));
        r.close_all(DisconnectCode::Shutdown);
        assert!(b.out.is_closing(), "unconnected sessions are closed too");
        r.close(&a);
        r.close(&b);
        assert_eq!((r.num_clients(), r.slots()), (0, 0));
    }
}
