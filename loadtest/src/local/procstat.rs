//! CPU time and resident memory of server processes, read from `/proc`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`, usually 100).
fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU seconds (user + system) and resident set size of a process.
pub fn read(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of stat(5); utime is 14 and stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    Some(((utime + stime) as f64 / clk_tck(), rss_kb))
}

/// What is known about one server process (or its successors after restarts).
#[derive(Clone, Debug, Default)]
pub struct Track {
    /// Current pid.
    pub pid: Option<u32>,
    /// CPU seconds of earlier incarnations (before restarts).
    pub cpu_base: f64,
    /// CPU seconds of the current incarnation at the last sample.
    pub cpu_now: f64,
    /// Resident memory at the last sample, KiB.
    pub rss_kb: u64,
    /// Highest resident memory seen, KiB.
    pub rss_peak_kb: u64,
}

impl Track {
    /// Total CPU seconds over every incarnation.
    pub fn cpu_total(&self) -> f64 {
        self.cpu_base + self.cpu_now
    }
}

/// Samples of every server process, by label.
#[derive(Debug, Default)]
pub struct Monitor {
    /// Label (node id, `nats-server`, `herald-router`) → its track.
    pub procs: BTreeMap<String, Track>,
}

impl Monitor {
    /// Reads every process once; a changed pid (a restart) starts a new incarnation.
    pub fn sample(&mut self, pids: &[(String, Option<u32>)]) {
        for (label, pid) in pids {
            let t = self.procs.entry(label.clone()).or_default();
            if t.pid != *pid {
                t.cpu_base += t.cpu_now;
                t.cpu_now = 0.0;
                t.pid = *pid;
            }
            match pid.and_then(read) {
                Some((cpu, rss)) => {
                    t.cpu_now = cpu;
                    t.rss_kb = rss;
                    t.rss_peak_kb = t.rss_peak_kb.max(rss);
                }
                None => t.rss_kb = 0,
            }
        }
    }

    /// CPU seconds of every process, summed.
    pub fn cpu_total(&self) -> f64 {
        self.procs.values().map(Track::cpu_total).sum()
    }

    /// CPU seconds by label.
    pub fn cpu_by_label(&self) -> BTreeMap<String, f64> {
        self.procs
            .iter()
            .map(|(k, t)| (k.clone(), t.cpu_total()))
            .collect()
    }

    /// Resident memory of processes whose label starts with `prefix`, KiB.
    pub fn rss_kb(&self, prefix: &str) -> u64 {
        self.procs
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, t)| t.rss_kb)
            .sum()
    }
}
