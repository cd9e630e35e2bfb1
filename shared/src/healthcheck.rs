//! `herald-node healthcheck` / `herald-router healthcheck`: a probe for container
//! engines (Docker's HEALTHCHECK) that runs inside a minimal image with no curl or
//! shell: one HTTP/1.1 GET to the process's own port, exit 0 on a 200.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// How long the probe may take in all.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// Where to reach a server listening on `listen` from the same host: an unspecified
/// address (`0.0.0.0`, `[::]`) becomes loopback.
pub fn local_target(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

/// GETs `path` from `target`; `Ok` on a 200, else why not.
pub fn probe(target: SocketAddr, path: &str) -> Result<(), String> {
    match request(target, "GET", path, &[])? {
        200 => Ok(()),
        code => Err(format!("{path} answered {code}")),
    }
}

/// Sends one bodiless HTTP/1.1 request and returns the response's status code.
pub fn request(
    target: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<u16, String> {
    let mut s = TcpStream::connect_timeout(&target, TIMEOUT)
        .map_err(|e| format!("connect {target}: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let status = String::from_utf8_lossy(&head[..n]);
    status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {status:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(answer: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = c.read(&mut buf);
            let _ = c.write_all(answer.as_bytes());
        });
        addr
    }

    #[test]
    fn ok_only_on_200() {
        let up = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        assert!(probe(up, "/healthz").is_ok());
        let down = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert!(probe(down, "/healthz").unwrap_err().contains("503"));
    }

    #[test]
    fn unspecified_listen_addresses_become_loopback() {
        let any: SocketAddr = "0.0.0.0:8000".parse().unwrap();
        assert_eq!(local_target(any), "127.0.0.1:8000".parse().unwrap());
        let any6: SocketAddr = "[::]:8000".parse().unwrap();
        assert_eq!(local_target(any6), "[::1]:8000".parse().unwrap());
    }

    #[test]
    fn nothing_listening_is_an_error() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(probe(addr, "/healthz").is_err());
    }
}
