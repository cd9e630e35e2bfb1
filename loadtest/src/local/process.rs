//! Child processes of a local cluster: start, wait for the line that says where they
//! listen, keep their output in log files, stop them.

use anyhow::{anyhow, bail, Context};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// How long a process may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a drained process may take to exit before it is killed: longer than the
/// node's own bound on a drain (`HERALD_DRAIN_TIMEOUT`, default 25 s), which a node at
/// the default drain pacing (5 s grace + 10 s window) comes close to.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running child and where its output goes.
pub struct Proc {
    /// The process (killed on drop, as a last resort).
    pub child: Child,
    /// Its log file.
    pub log: PathBuf,
}

impl Proc {
    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGTERM, then waits (bounded) for the exit; SIGKILL when it takes too long.
    pub async fn terminate(&mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let status = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await?;
            if !status.success() {
                bail!("kill -TERM {pid} failed");
            }
        }
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
            bail!("did not exit within {STOP_TIMEOUT:?} of SIGTERM; killed");
        }
        Ok(())
    }

    /// SIGKILL and reap.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// Which output stream carries the "listening" line.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    /// Standard output (herald-node's banner).
    Stdout,
    /// Standard error (nats-server's log).
    Stderr,
}

/// Starts `cmd`, and reads the announcing stream until a line containing `marker`;
/// returns the process and the word that follows the marker (an address). Everything
/// the process prints goes to `log`.
pub async fn spawn_announced(
    mut cmd: Command,
    log: &Path,
    announce: Announce,
    marker: &str,
) -> anyhow::Result<(Proc, String)> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    match announce {
        Announce::Stdout => cmd.stdout(Stdio::piped()).stderr(Stdio::from(file)),
        Announce::Stderr => cmd.stdout(Stdio::from(file)).stderr(Stdio::piped()),
    };
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.as_std().get_program()))?;
    let found = match announce {
        Announce::Stdout => {
            let out = child.stdout.take().context("stdout")?;
            wait_for_marker(out, log, marker).await
        }
        Announce::Stderr => {
            let err = child.stderr.take().context("stderr")?;
            wait_for_marker(err, log, marker).await
        }
    };
    match found {
        Ok(word) => Ok((
            Proc {
                child,
                log: log.to_owned(),
            },
            word,
        )),
        Err(e) => {
            let _ = child.kill().await;
            Err(e.context(format!("log: {}", log.display())))
        }
    }
}

/// Reads lines until `marker`, copying them to the log; then keeps copying in the
/// background so the child never blocks on a full pipe.
async fn wait_for_marker<R: AsyncRead + Unpin + Send + 'static>(
    stream: R,
    log: &Path,
    marker: &str,
) -> anyhow::Result<String> {
    let mut file = tokio::fs::OpenOptions::new().append(true).open(log).await?;
    let mut lines = BufReader::new(stream).lines();
    let wait = async {
        while let Some(line) = lines.next_line().await? {
            file.write_all(line.as_bytes()).await?;
            file.write_all(b"\n").await?;
            if let Some(at) = line.find(marker) {
                let word = line[at + marker.len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_owned();
                return Ok(word);
            }
        }
        Err(anyhow!("exited before printing {marker:?}"))
    };
    let word = tokio::time::timeout(START_TIMEOUT, wait)
        .await
        .map_err(|_| anyhow!("did not print {marker:?} within {START_TIMEOUT:?}"))??;
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = file.write_all(line.as_bytes()).await;
            let _ = file.write_all(b"\n").await;
        }
    });
    Ok(word)
}

/// A free TCP port on 127.0.0.1 below the kernel's ephemeral range, for programs that
/// cannot be told to pick one and for nodes restarted on their old port.
///
/// The kernel's pick for port 0 comes from the range it draws outgoing connections'
/// source ports from: while a node restarts, any connect meanwhile (the router's to the
/// other nodes, as clients come back) can take its port. Below the range, a port goes
/// only to whoever asks for it by number. The search starts at a random port, so that
/// concurrent runs do not all try the same one first.
pub fn free_port() -> anyhow::Result<u16> {
    use std::hash::{BuildHasher, Hasher};
    let low = ephemeral_low();
    let floor = low.saturating_sub(12_000).max(1024);
    let span = low.saturating_sub(floor).max(1);
    let start = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        % u64::from(span);
    for i in 0..span {
        let port = floor + ((start + u64::from(i)) % u64::from(span)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port on 127.0.0.1 between {floor} and {low}")
}

/// The first port of the kernel's ephemeral range (Linux's default when unreadable).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// Finds an executable: `explicit`, else `name` next to this binary, else in `dirs`.
pub fn locate(explicit: Option<&Path>, name: &str, dirs: &[&str]) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_owned());
    }
    let beside = std::env::current_exe().ok()?.parent()?.join(name);
    if beside.is_file() {
        return Some(beside);
    }
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(dirs.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The status code of `GET path` on `addr` (HTTP/1.1, connection closed after).
pub async fn http_status(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<u16> {
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(256);
    while !buf.windows(2).any(|w| w == b"\r\n") {
        if buf.len() > 4096 || s.read_buf(&mut buf).await? == 0 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("no HTTP status from {addr}"))
}
