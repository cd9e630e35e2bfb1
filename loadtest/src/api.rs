//! A small keep-alive HTTP/1.1 client for the server API: Herald's and Centrifugo's
//! `POST /api/<method>` with `X-API-Key`, or a Pusher server's signed
//! `POST /apps/{id}/events` ([`ApiAuth`]).
//!
//! One request in flight per connection: publishers that need more throughput open
//! more clients. On an error the connection is dropped and the next call goes to the
//! next base URL, so publishing continues while a node restarts.

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait for one API answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// One server API base.
#[derive(Clone, Debug)]
struct Base {
    /// Resolved address.
    addr: SocketAddr,
    /// `Host` header.
    host: String,
}

/// Which API a client calls, and its credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiAuth {
    /// `POST /api/<method>` with this `X-API-Key` (Herald, Centrifugo).
    ApiKey(String),
    /// `POST /apps/{id}/events` signed with the app's secret (Pusher, Sockudo).
    Pusher(crate::pusher::App),
}

/// A server API client.
pub struct Api {
    /// Base URLs to use, in turn after failures.
    bases: Vec<Base>,
    /// The one currently used.
    at: usize,
    /// Which API, and its credentials.
    auth: ApiAuth,
    /// Open connection, if any.
    conn: Option<TcpStream>,
    /// Request and response buffer, reused.
    buf: Vec<u8>,
}

/// The answer to a `publish`.
#[derive(Debug, Default, Deserialize)]
struct Answer {
    /// Present on success.
    #[serde(default)]
    result: Option<Position>,
    /// Present on a refused request.
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// The `offset` of a publish result.
#[derive(Debug, Default, Deserialize)]
struct Position {
    /// Offset of the new publication (0 without history).
    #[serde(default)]
    offset: u64,
}

impl Api {
    /// A client for `bases` (`http://host:port`), starting with base `start`.
    pub async fn new(bases: &[String], auth: &ApiAuth, start: usize) -> anyhow::Result<Api> {
        let mut out = Vec::new();
        for b in bases {
            let host = b
                .strip_prefix("http://")
                .with_context(|| format!("{b:?}: API URLs must start with http://"))?
                .trim_end_matches('/')
                .to_owned();
            let addr = tokio::net::lookup_host(&host)
                .await
                .with_context(|| format!("resolving {host}"))?
                .next()
                .with_context(|| format!("{host}: no address"))?;
            out.push(Base { addr, host });
        }
        if out.is_empty() {
            bail!("no server API URL");
        }
        Ok(Api {
            at: start % out.len(),
            bases: out,
            auth: auth.clone(),
            conn: None,
            buf: Vec::with_capacity(1024),
        })
    }

    /// Publishes `data` (JSON) to `channel`; returns the new offset (0 without history).
    pub async fn publish(
        &mut self,
        channel: &str,
        data: &[u8],
        delta: bool,
    ) -> anyhow::Result<u64> {
        if let ApiAuth::Pusher(app) = &self.auth {
            let body = crate::pusher::events_body(channel, data);
            let unix = crate::protocol::now_micros() / 1_000_000;
            let target = crate::pusher::events_target(app, &body, unix);
            return Ok(self.call(&target, &body).await?.offset);
        }
        let mut body = Vec::with_capacity(data.len() + channel.len() + 32);
        body.extend_from_slice(b"{\"channel\":");
        serde_json::to_writer(&mut body, channel)?;
        body.extend_from_slice(b",\"data\":");
        body.extend_from_slice(data);
        if delta {
            body.extend_from_slice(b",\"delta\":true");
        }
        body.push(b'}');
        Ok(self.call("/api/publish", &body).await?.offset)
    }

    /// One call of `target` (path and query); on failure the connection is dropped and
    /// the next base is used next.
    async fn call(&mut self, target: &str, body: &[u8]) -> anyhow::Result<Position> {
        // For messages: the path without the (signed) query.
        let method = target.split('?').next().unwrap_or(target);
        let result = tokio::time::timeout(CALL_TIMEOUT, self.exchange(target, body))
            .await
            .unwrap_or_else(|_| Err(anyhow!("timed out")));
        match result {
            Ok((200..=299, text)) => {
                let answer: Answer = if text.is_empty() {
                    Answer::default()
                } else {
                    serde_json::from_slice(&text).context("reading the API answer")?
                };
                match (answer.result, answer.error) {
                    (_, Some(e)) => bail!("{method}: {e}"),
                    (Some(p), None) => Ok(p),
                    (None, None) => Ok(Position::default()),
                }
            }
            Ok((status, text)) => {
                self.conn = None;
                bail!(
                    "{method}: HTTP {status}: {}",
                    String::from_utf8_lossy(&text)
                )
            }
            Err(e) => {
                self.conn = None;
                self.at = (self.at + 1) % self.bases.len();
                Err(e)
            }
        }
    }

    /// Writes the request and reads the response: `(status, body)`.
    async fn exchange(&mut self, target: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        let base = self.bases[self.at].clone();
        if self.conn.is_none() {
            let s = TcpStream::connect(base.addr).await?;
            s.set_nodelay(true)?;
            self.conn = Some(s);
        }
        let conn = self.conn.as_mut().expect("just connected");
        self.buf.clear();
        let key_header = match &self.auth {
            ApiAuth::ApiKey(key) => format!("X-API-Key: {key}\r\n"),
            ApiAuth::Pusher(_) => String::new(),
        };
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: {}\r\n{key_header}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            base.host,
            body.len()
        );
        self.buf.extend_from_slice(head.as_bytes());
        self.buf.extend_from_slice(body);
        conn.write_all(&self.buf).await?;
        self.buf.clear();
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > 64 * 1024 {
                bail!("response headers too large");
            }
            if conn.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed");
            }
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("response headers")?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no status")?;
        let mut length = None;
        let mut close = false;
        for line in head.split("\r\n").skip(1) {
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse::<usize>().ok();
                } else if k.eq_ignore_ascii_case("connection")
                    && v.trim().eq_ignore_ascii_case("close")
                {
                    close = true;
                }
            }
        }
        let length = length.context("response without Content-Length")?;
        while self.buf.len() < head_end + length {
            if conn.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed mid-body");
            }
        }
        let body = self.buf[head_end..head_end + length].to_vec();
        if close {
            self.conn = None;
        }
        Ok((status, body))
    }
}
