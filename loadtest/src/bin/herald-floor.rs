//! The kernel's floor under a fan-out: what one `write()` of one small WebSocket frame
//! to a loopback TCP connection costs on this machine, with no server around it.
//!
//! A sink thread (tokio, one worker) accepts `--connections` connections and reads and
//! discards everything. One writer thread then does `--rounds-per-sec` rounds, each a
//! blocking `write()` of one `--frame-bytes` text frame to every connection, like a
//! server delivering one publication to every subscriber, for `--duration`. The
//! writer's own user and kernel time (`/proc/thread-self/stat`) divided by its writes
//! is the floor a server's cost per delivery can approach but not go below (on
//! loopback the receiver's TCP work runs inside the sender's `write()`, so it is part
//! of the floor, as it is of every server's figure).
//!
//! `herald-floor --connections 1000 --rounds-per-sec 50 --duration 10s`

// A second binary of the load-test package gets all of its dependencies; it uses few.
#![allow(unused_crate_dependencies)]

use anyhow::{bail, Context};
use clap::Parser;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Kernel and user time per small-frame write to loopback TCP connections.
#[derive(Debug, Parser)]
#[command(name = "herald-floor", version)]
struct Args {
    /// Connections written to in each round.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Rounds per second (publications per second, in fan-out terms).
    #[arg(long, default_value_t = 50.0)]
    rounds_per_sec: f64,
    /// Size of each frame written, header included (a 64-byte payload's publication
    /// push from Herald is about 150 bytes).
    #[arg(long, default_value_t = 150)]
    frame_bytes: usize,
    /// How long to write.
    #[arg(long, default_value = "10s", value_parser = humantime_secs)]
    duration: Duration,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn humantime_secs(s: &str) -> Result<Duration, String> {
    let n = s.strip_suffix('s').unwrap_or(s);
    n.parse::<f64>()
        .ok()
        .filter(|v| *v > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("not a duration in seconds: {s}"))
}

/// User and system seconds of the calling thread.
fn thread_cpu() -> anyhow::Result<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat")?;
    let rest = &stat[stat.rfind(')').context("stat")? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tck = 100.0; // USER_HZ: Linux reports these times in 1/100 s everywhere.
    let utime: f64 = f.get(11).context("utime")?.parse()?;
    let stime: f64 = f.get(12).context("stime")?.parse()?;
    Ok((utime / tck, stime / tck))
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if a.connections == 0 || a.frame_bytes < 2 || a.frame_bytes > 125 + 2 + 65535 {
        bail!("--connections must be > 0 and --frame-bytes between 2 and 65537");
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let sink = std::thread::spawn(move || -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            loop {
                let (mut s, _) = listener.accept().await?;
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                });
            }
        })
    });
    let mut conns = Vec::with_capacity(a.connections);
    for _ in 0..a.connections {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        conns.push(s);
    }
    // A text frame as a server sends it: FIN + opcode, unmasked length, payload.
    let payload = a.frame_bytes - if a.frame_bytes - 2 < 126 { 2 } else { 4 };
    let mut frame = vec![0x81u8];
    if payload < 126 {
        frame.push(payload as u8);
    } else {
        frame.push(126);
        frame.extend_from_slice(&(payload as u16).to_be_bytes());
    }
    frame.resize(a.frame_bytes, b'x');

    std::thread::sleep(Duration::from_millis(200)); // let the sink accept them all
    let every = Duration::from_secs_f64(1.0 / a.rounds_per_sec);
    let (u0, s0) = thread_cpu()?;
    let start = Instant::now();
    let mut writes: u64 = 0;
    let mut next = start;
    while start.elapsed() < a.duration {
        for c in &mut conns {
            c.write_all(&frame)?;
            writes += 1;
        }
        next += every;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (u1, s1) = thread_cpu()?;
    drop(conns);
    drop(sink); // the sink thread ends with the process
    let (user_us, sys_us) = (
        (u1 - u0) * 1e6 / writes as f64,
        (s1 - s0) * 1e6 / writes as f64,
    );
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "connections": a.connections, "rounds_per_sec": a.rounds_per_sec,
                "frame_bytes": a.frame_bytes, "writes": writes, "seconds": elapsed,
                "user_us_per_write": user_us, "kernel_us_per_write": sys_us,
                "writes_per_cpu_second": writes as f64 / ((u1 - u0) + (s1 - s0)).max(1e-9),
            })
        );
    } else {
        println!(
            "{writes} writes of {} bytes to {} connections in {elapsed:.1} s: \
             kernel {sys_us:.2} µs + user {user_us:.2} µs per write \
             ({:.0} writes per CPU-second)",
            a.frame_bytes,
            a.connections,
            writes as f64 / ((u1 - u0) + (s1 - s0)).max(1e-9)
        );
    }
    Ok(())
}
