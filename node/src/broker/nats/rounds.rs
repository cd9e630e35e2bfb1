//! Lookups shared by the recoveries of one channel.
//!
//! Every recovery asks JetStream two questions besides reading publications: the
//! channel's newest sequence (its top), and whether the client's own position is still
//! stored (the recovery rule of the [module](super)). When a node dies, thousands of its
//! clients ask both about the same channel within a second, mostly with the same
//! position, and each question is one JetStream request: in a 5,000-client failover
//! storm (`loadtest/storm/run.sh`) nats-server alone took 0.14–0.17 CPU-s answering
//! them, 6–10 % of the storm's CPU, besides the node's share of each round trip.
//!
//! [`Rounds`] lets them share, without weakening either answer. Both answers are only
//! valid from a request made after a point in the caller's recovery: the top after the
//! subscriber is registered (a publication stored before that request is read, one
//! stored after it arrives live), the position after the range was read (a position
//! stored at that moment was stored while reading, since JetStream drops oldest first).
//! So a caller may take another caller's answer only when that request *started after
//! this caller arrived*. Lookups take turns; a caller that finds the last answer for
//! its key came from a round started after it arrived takes it, otherwise it makes the
//! next round itself. A herd therefore costs about one request per round trip instead
//! of one per client, and nobody gets an answer older than their own request would be.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

/// How a lookup was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// This caller made the request.
    Asked,
    /// A request started after this caller arrived answered it.
    Shared,
}

impl Answer {
    /// The metric label.
    pub(super) fn label(self) -> &'static str {
        match self {
            Answer::Asked => "asked",
            Answer::Shared => "shared",
        }
    }
}

/// One kind of lookup for one channel, keyed by what the answer depends on.
pub(super) struct Rounds<K, V> {
    /// Rounds started so far; a round's number is this count when it starts.
    started: AtomicU64,
    /// The last round's number, key and answer (only successful rounds are kept). Its
    /// lock makes the rounds take turns.
    last: tokio::sync::Mutex<Option<(u64, K, V)>>,
}

impl<K: PartialEq, V: Clone> Rounds<K, V> {
    /// No round yet.
    pub(super) fn new() -> Self {
        Rounds {
            started: AtomicU64::new(0),
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The answer for `key`: from a round started after this call, either another
    /// caller's or the one this call makes with `ask`. An error is this caller's alone
    /// (the next caller asks again).
    pub(super) async fn get<F, Fut, E>(&self, key: K, ask: F) -> Result<(V, Answer), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        // Any round numbered above this starts after this point.
        let arrived = self.started.load(Ordering::Acquire);
        let mut last = self.last.lock().await;
        if let Some((round, k, v)) = last.as_ref() {
            if *round > arrived && *k == key {
                return Ok((v.clone(), Answer::Shared));
            }
        }
        let round = self.started.fetch_add(1, Ordering::AcqRel) + 1;
        let v = ask().await?;
        *last = Some((round, key, v.clone()));
        Ok((v, Answer::Asked))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use tokio::sync::Notify;

    /// A lookup whose answer is the number of requests made so far, and that waits for
    /// `release` before answering.
    struct Source {
        asked: AtomicUsize,
        release: Notify,
    }

    impl Source {
        async fn ask(&self) -> Result<usize, ()> {
            let n = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
            self.release.notified().await;
            Ok(n)
        }
    }

    #[tokio::test]
    async fn callers_waiting_on_a_round_share_the_next_one_not_the_one_under_way() {
        let rounds = Arc::new(Rounds::<u64, usize>::new());
        let src = Arc::new(Source {
            asked: AtomicUsize::new(0),
            release: Notify::new(),
        });
        let spawn = |rounds: Arc<Rounds<u64, usize>>, src: Arc<Source>| {
            tokio::spawn(async move { rounds.get(7, || src.ask()).await.unwrap() })
        };
        let first = spawn(rounds.clone(), src.clone());
        while src.asked.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // These arrive while round 1 is under way: its answer is older than they are.
        let waiting: Vec<_> = (0..5).map(|_| spawn(rounds.clone(), src.clone())).collect();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        src.release.notify_one();
        assert_eq!(first.await.unwrap(), (1, Answer::Asked));
        while src.asked.load(Ordering::SeqCst) == 1 {
            tokio::task::yield_now().await;
        }
        src.release.notify_one();
        let mut got = Vec::new();
        for w in waiting {
            got.push(w.await.unwrap());
        }
        assert_eq!(
            src.asked.load(Ordering::SeqCst),
            2,
            "one more request for five"
        );
        assert_eq!(got.iter().filter(|g| g.1 == Answer::Asked).count(), 1);
        assert!(got.iter().all(|g| g.0 == 2), "all from round 2: {got:?}");
    }

    #[tokio::test]
    async fn a_later_caller_another_key_or_a_failed_round_asks_again() {
        let rounds = Rounds::<u64, u64>::new();
        let ok = |v: u64| async move { Ok::<u64, ()>(v) };
        assert_eq!(rounds.get(1, || ok(10)).await, Ok((10, Answer::Asked)));
        // Arrives after round 1 ended: that answer may be stale for it.
        assert_eq!(rounds.get(1, || ok(11)).await, Ok((11, Answer::Asked)));
        assert_eq!(rounds.get(2, || ok(20)).await, Ok((20, Answer::Asked)));
        assert_eq!(rounds.get(2, || async { Err(()) }).await, Err(()));
        assert_eq!(rounds.get(2, || ok(21)).await, Ok((21, Answer::Asked)));
    }
}
