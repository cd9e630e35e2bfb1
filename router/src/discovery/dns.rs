//! DNS discovery: every address a `name:port` resolves to is a node (a Kubernetes headless
//! Service returns one A record per ready pod). Names are resolved again every interval;
//! the node id is the resolved `ip:port`.
//!
//! A failed lookup keeps the last answer: a DNS hiccup must not empty the ring. An answer
//! with no addresses is believed (the nodes were scaled to zero).

use crate::backends::{Backends, Source};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Resolves `name:port` with the system resolver into sorted, distinct `ip:port` texts.
pub async fn system_resolve(entry: String) -> std::io::Result<Vec<String>> {
    let mut addrs: Vec<String> = tokio::net::lookup_host(entry.as_str())
        .await?
        .map(|a| a.to_string())
        .collect();
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

/// Resolves `entry` with `resolve` now and every `interval` until `stop`, making the
/// answer the nodes named by this entry.
pub async fn watch<R, F>(
    backends: Arc<Backends>,
    entry: String,
    interval: Duration,
    stop: CancellationToken,
    mut resolve: R,
) where
    R: FnMut(String) -> F,
    F: Future<Output = std::io::Result<Vec<String>>>,
{
    let source = Source::Dns(entry.as_str().into());
    let mut last: Option<Vec<String>> = None;
    loop {
        let answer = tokio::select! {
            _ = stop.cancelled() => break,
            a = resolve(entry.clone()) => a,
        };
        match answer {
            Ok(addrs) => {
                if last.as_ref() != Some(&addrs) {
                    tracing::info!(dns = %entry, nodes = ?addrs, "DNS answer changed");
                    backends.set_source(&source, &addrs);
                    last = Some(addrs);
                }
            }
            Err(e) => {
                tracing::warn!(dns = %entry, error = %e, "DNS lookup failed; keeping the last answer")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HealthConfig;
    use std::sync::Mutex;
    use tokio_util::task::TaskTracker;

    fn known(b: &Backends) -> Vec<String> {
        b.view().into_iter().map(|v| v.addr).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn answers_replace_the_nodes_and_failures_keep_them() {
        let health_stop = CancellationToken::new();
        health_stop.cancel();
        let b = Backends::new(HealthConfig::default(), health_stop, TaskTracker::new());
        let answers = Arc::new(Mutex::new(vec![
            Ok(vec!["10.0.0.1:8000".to_owned(), "10.0.0.2:8000".to_owned()]),
            Err(std::io::Error::other("SERVFAIL")),
            Ok(vec!["10.0.0.2:8000".to_owned(), "10.0.0.3:8000".to_owned()]),
        ]));
        let a2 = answers.clone();
        let resolve = move |_entry: String| {
            let mut queue = a2.lock().unwrap();
            let next = (!queue.is_empty()).then(|| queue.remove(0));
            async move { next.unwrap_or_else(|| Ok(vec!["10.0.0.3:8000".to_owned()])) }
        };
        let stop = CancellationToken::new();
        let interval = Duration::from_secs(5);
        let task = tokio::spawn(watch(
            b.clone(),
            "nodes:8000".into(),
            interval,
            stop.clone(),
            resolve,
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(known(&b), ["10.0.0.1:8000", "10.0.0.2:8000"]);
        tokio::time::sleep(interval).await;
        assert_eq!(
            known(&b),
            ["10.0.0.1:8000", "10.0.0.2:8000"],
            "kept after a failure"
        );
        tokio::time::sleep(interval).await;
        assert_eq!(known(&b), ["10.0.0.2:8000", "10.0.0.3:8000"]);
        tokio::time::sleep(interval).await;
        assert_eq!(known(&b), ["10.0.0.3:8000"]);
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn resolves_localhost() {
        let addrs = system_resolve("localhost:8000".into()).await.unwrap();
        assert!(addrs.iter().any(|a| a == "127.0.0.1:8000"), "{addrs:?}");
    }
}
