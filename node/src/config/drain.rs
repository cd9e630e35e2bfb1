//! Drain settings: how a node leaves (SIGTERM or `POST /admin/drain`).
//!
//! The three fit inside Kubernetes' defaults: readiness turns 503 at once, clients
//! stay `grace` seconds (routers and load balancers notice the 503 meanwhile), are then
//! disconnected evenly over `window`, and the whole drain ends within `timeout`, below
//! the default `terminationGracePeriodSeconds` of 30.

use herald_shared::config::{Reader, Settings};
use std::time::Duration;

const ENV_DRAIN_GRACE: &str = "HERALD_DRAIN_GRACE";
const ENV_DRAIN_WINDOW: &str = "HERALD_DRAIN_WINDOW";
const ENV_DRAIN_TIMEOUT: &str = "HERALD_DRAIN_TIMEOUT";
/// Longest drain accepted: beyond an hour a value is surely a typo.
const MAX_DRAIN: Duration = Duration::from_secs(3600);

/// How a node drains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrainOptions {
    /// `HERALD_DRAIN_GRACE` (seconds): from the start of the drain (readiness 503,
    /// upgrades refused) until clients start being disconnected. Default 5: routers
    /// probe every second and Kubernetes' readiness probe runs every few seconds.
    pub grace: Duration,
    /// `HERALD_DRAIN_WINDOW` (seconds): clients are disconnected evenly over this time,
    /// so the nodes they reconnect to never see a herd. Default 10.
    pub window: Duration,
    /// `HERALD_DRAIN_TIMEOUT` (seconds): bound of the whole drain, from its start to
    /// exit; must exceed grace + window. Default 25 (under Kubernetes' default
    /// `terminationGracePeriodSeconds` of 30).
    pub timeout: Duration,
}

impl Default for DrainOptions {
    fn default() -> Self {
        DrainOptions {
            grace: Duration::from_secs(5),
            window: Duration::from_secs(10),
            timeout: Duration::from_secs(25),
        }
    }
}

/// Reads the drain settings; bad values are reported to `s`.
pub(super) fn drain(s: &mut Settings<'_>) -> DrainOptions {
    let d = DrainOptions::default();
    let grace = s.secs_in(ENV_DRAIN_GRACE, d.grace, ..=MAX_DRAIN);
    let window = s.secs_in(ENV_DRAIN_WINDOW, d.window, ..=MAX_DRAIN);
    let timeout = s.secs_in(ENV_DRAIN_TIMEOUT, d.timeout, ..=MAX_DRAIN);
    if timeout <= grace + window {
        let reason = format!(
            "must exceed {ENV_DRAIN_GRACE} + {ENV_DRAIN_WINDOW} ({}s): the drain needs time to close the last clients and NATS",
            (grace + window).as_secs_f64()
        );
        let named = [ENV_DRAIN_TIMEOUT, ENV_DRAIN_WINDOW, ENV_DRAIN_GRACE]
            .into_iter()
            .find_map(|name| s.value(name));
        // The defaults fit together, so one of the three was set.
        if let Some(v) = named {
            s.report(v.error(reason));
        }
    }
    DrainOptions {
        grace,
        window,
        timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_shared::config::MapLookup;

    fn read(pairs: &[(&str, &str)]) -> Result<DrainOptions, String> {
        let lookup = MapLookup::from_pairs(pairs);
        let mut s = Settings::new(&lookup, "HERALD_");
        let d = drain(&mut s);
        s.finish()
            .map(|()| d)
            .map_err(|e| herald_shared::config::format_errors(&e))
    }

    #[test]
    fn defaults_fit_together_and_can_be_changed() {
        let d = read(&[]).unwrap();
        assert!(d.timeout > d.grace + d.window);
        let d = read(&[
            ("HERALD_DRAIN_GRACE", "0"),
            ("HERALD_DRAIN_WINDOW", "2.5"),
            ("HERALD_DRAIN_TIMEOUT", "5"),
        ])
        .unwrap();
        assert_eq!(d.window, Duration::from_millis(2500));
    }

    #[test]
    fn a_timeout_shorter_than_grace_and_window_names_the_setting() {
        let err = read(&[("HERALD_DRAIN_TIMEOUT", "12")]).unwrap_err();
        assert!(err.contains("HERALD_DRAIN_TIMEOUT"), "{err}");
        let err = read(&[("HERALD_DRAIN_WINDOW", "30")]).unwrap_err();
        assert!(err.contains("HERALD_DRAIN_WINDOW"), "{err}");
        assert!(read(&[("HERALD_DRAIN_GRACE", "-1")]).is_err());
    }
}
