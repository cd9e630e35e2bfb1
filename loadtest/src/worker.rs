//! Worker processes: above one process's file limit the parent re-executes itself as
//! `herald-loadtest worker --spec JSON`, once per shard.
//!
//! Protocol: the spec comes in argv; the worker writes [`ShardMsg`] JSON lines on
//! stdout; the parent writes [`Control`] JSON lines on the worker's stdin. End of file
//! on stdin stops the worker too, so a parent that dies takes its workers along.

use crate::shard::{self, Control, ShardMsg, ShardSpec};
use anyhow::Context;
use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// The worker's side: runs one shard and reports on stdout.
pub async fn serve(spec_json: &str) -> anyhow::Result<()> {
    let spec: ShardSpec = serde_json::from_str(spec_json).context("reading the shard spec")?;
    let (ctl_tx, ctl_rx) = mpsc::channel(8);
    let (tx, mut rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(ctl) = serde_json::from_str::<Control>(&line) else {
                continue;
            };
            let stop = matches!(ctl, Control::Stop { .. });
            if ctl_tx.send(ctl).await.is_err() || stop {
                break;
            }
        }
    });
    tokio::spawn(shard::run(spec, ctl_rx, tx));
    let mut out = tokio::io::stdout();
    while let Some(msg) = rx.recv().await {
        let mut line = serde_json::to_vec(&msg)?;
        line.push(b'\n');
        out.write_all(&line).await?;
        out.flush().await?;
        if matches!(msg, ShardMsg::Final { .. } | ShardMsg::Error { .. }) {
            break;
        }
    }
    Ok(())
}

/// How the parent reaches a shard.
enum Line {
    /// A shard running in this process.
    InProcess(mpsc::Sender<Control>),
    /// A worker process, through its stdin.
    Worker(ChildStdin),
}

/// The parent's handle on one shard, wherever it runs.
pub struct ShardHandle {
    /// Messages from the shard, until taken by the caller.
    rx: Option<mpsc::Receiver<ShardMsg>>,
    /// How to send it [`Control`]s; `None` once stopped.
    line: Option<Line>,
    /// The worker process, when there is one (killed on drop).
    child: Option<Child>,
}

impl ShardHandle {
    /// Runs a shard on this process's runtime.
    pub fn in_process(spec: ShardSpec) -> Self {
        let (ctl_tx, ctl_rx) = mpsc::channel(8);
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(shard::run(spec, ctl_rx, tx));
        ShardHandle {
            rx: Some(rx),
            line: Some(Line::InProcess(ctl_tx)),
            child: None,
        }
    }

    /// Starts `exe worker --spec ...` and relays its stdout lines.
    pub fn worker(exe: &Path, spec: &ShardSpec) -> anyhow::Result<Self> {
        let mut child = Command::new(exe)
            .arg("worker")
            .arg("--spec")
            .arg(serde_json::to_string(spec)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting worker {}", exe.display()))?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let msg = serde_json::from_str(&line).unwrap_or_else(|e| ShardMsg::Error {
                    message: format!("unreadable worker line ({e}): {line}"),
                });
                if tx.send(msg).await.is_err() {
                    break;
                }
            }
        });
        Ok(ShardHandle {
            rx: Some(rx),
            line: Some(Line::Worker(stdin)),
            child: Some(child),
        })
    }

    /// The shard's messages (once).
    pub fn take_rx(&mut self) -> Option<mpsc::Receiver<ShardMsg>> {
        self.rx.take()
    }

    /// The worker's pid, for CPU accounting.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Sends a control message; after `Stop` the line is closed.
    pub async fn send(&mut self, ctl: Control) {
        let stop = matches!(ctl, Control::Stop { .. });
        match &mut self.line {
            Some(Line::InProcess(tx)) => {
                let _ = tx.send(ctl).await;
            }
            Some(Line::Worker(stdin)) => {
                if let Ok(mut line) = serde_json::to_vec(&ctl) {
                    line.push(b'\n');
                    let _ = stdin.write_all(&line).await;
                    let _ = stdin.flush().await;
                }
            }
            None => {}
        }
        if stop {
            self.line = None;
        }
    }

    /// Waits for the worker process to exit (bounded), killing it if it does not.
    pub async fn reap(&mut self) {
        if let Some(child) = &mut self.child {
            let waited =
                tokio::time::timeout(std::time::Duration::from_secs(5), child.wait()).await;
            if waited.is_err() {
                let _ = child.kill().await;
            }
        }
    }
}
