//! `herald-node`: wires configuration, tracing, the listener and signals, then hands
//! over to the library. `herald-node token ...` prints a JWT for quick starts.

// The binary's dependencies are the library's; the lint checks them there.
#![allow(unused_crate_dependencies)]

use herald_shared::config::{exit_with, EnvLookup};
use herald_shared::net::exit;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match herald_node::config::load(&EnvLookup) {
        Ok(c) => c,
        Err(errors) => exit_with(&errors),
    };
    match args.first().map(String::as_str) {
        Some("token") => {
            return match herald_node::token_cmd::run(&args[1..], &config) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("herald-node token: {e}");
                    ExitCode::from(exit::USAGE)
                }
            };
        }
        Some("healthcheck") => {
            use herald_shared::healthcheck;
            let target = healthcheck::local_target(config.listen);
            return match healthcheck::probe(target, "/healthz") {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("herald-node healthcheck: {e}");
                    ExitCode::from(exit::FAILURE)
                }
            };
        }
        Some("drain") => return drain_cmd(&config),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!("herald-node {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("herald-node: unknown argument {other:?}\n\n{USAGE}");
            return ExitCode::from(exit::USAGE);
        }
        None => {}
    }
    let otel = config
        .otel_endpoint
        .as_ref()
        .map(|endpoint| herald_shared::otel::OtelOptions {
            endpoint: endpoint.clone(),
            sample_ratio: config.otel_sample_ratio,
            service_name: "herald-node",
            instance: config.node_id.clone(),
        });
    // Kept to the end of main: dropping it flushes the spans not exported yet.
    let _otel_guard =
        match herald_shared::telemetry::init_tracing_with(config.log_format, otel.as_ref()) {
            Ok(guard) => guard,
            Err(e) => {
                eprintln!("herald-node: cannot set up tracing: {e}");
                return ExitCode::from(exit::FAILURE);
            }
        };
    let runtime = match herald_shared::net::runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("herald-node: cannot start the runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    runtime.block_on(async move {
        let listener = match herald_shared::net::bind(config.listen) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("herald-node: cannot listen on {}: {e}", config.listen);
                return ExitCode::from(exit::CANNOT_BIND);
            }
        };
        let addr = listener.local_addr().unwrap_or(config.listen);
        let shutdown = CancellationToken::new();
        if let Err(e) = herald_shared::net::cancel_on_signal(shutdown.clone()) {
            eprintln!("herald-node: cannot install signal handlers: {e}");
            return ExitCode::from(exit::FAILURE);
        }
        // Only now: whoever waits for this line may send SIGTERM right after it.
        print_banner(&config, addr);
        match herald_node::run(listener, config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("herald-node: {e:#}");
                ExitCode::from(exit::FAILURE)
            }
        }
    })
}

const USAGE: &str =
    "usage: herald-node                 run a node (configured by HERALD_* variables)
       herald-node token --user ID [--channels a,b] [--ttl S] [--channel C] [--info JSON]
                                    print a JWT signed with HERALD_TOKEN_HMAC_SECRET
       herald-node healthcheck       exit 0 if this node's /healthz answers 200 (for HEALTHCHECK)
       herald-node drain             ask this node (POST /admin/drain) to drain, wait until it
                                    has exited (a Kubernetes preStop hook)
       herald-node --version";

fn print_banner(config: &herald_node::config::NodeConfig, addr: std::net::SocketAddr) {
    use std::io::Write;
    let broker = if config.nats_url.is_some() {
        "NATS"
    } else {
        "embedded in-process broker"
    };
    let host = if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "herald-node {} listening on {addr} (node {}, {broker})",
        env!("CARGO_PKG_VERSION"),
        config.node_id
    );
    let _ = writeln!(out, "  WebSocket  ws://{host}/connection/websocket");
    let _ = writeln!(
        out,
        "  API        POST http://{host}/api/<method>  (X-API-Key)"
    );
    let _ = writeln!(out, "  probes     http://{host}/healthz  /readyz  /metrics");
    if config.auth.is_some() {
        let _ = writeln!(
            out,
            "  a token:   herald-node token --user alice   (same HERALD_TOKEN_HMAC_SECRET)"
        );
    } else if config.allow_anonymous {
        let _ = writeln!(out, "  anonymous connections allowed (no token needed)");
    } else {
        let _ = writeln!(
            out,
            "  no token key set and anonymous off: set HERALD_TOKEN_HMAC_SECRET or HERALD_ALLOW_ANONYMOUS=true"
        );
    }
    let _ = out.flush();
}

/// `herald-node drain`: asks the node on this host to drain and waits until it stops
/// answering, so a Kubernetes preStop hook ends when the drain does.
fn drain_cmd(config: &herald_node::config::NodeConfig) -> ExitCode {
    use herald_shared::healthcheck;
    let target = healthcheck::local_target(config.listen);
    let Some(key) = config.api_key.as_deref() else {
        eprintln!("herald-node drain: HERALD_API_KEY is not set");
        return ExitCode::from(exit::USAGE);
    };
    match healthcheck::request(target, "POST", "/admin/drain", &[("X-API-Key", key)]) {
        Ok(202) => {}
        Ok(code) => {
            eprintln!("herald-node drain: /admin/drain answered {code}");
            return ExitCode::from(exit::FAILURE);
        }
        Err(e) => {
            eprintln!("herald-node drain: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    }
    let deadline =
        std::time::Instant::now() + config.drain.timeout + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if healthcheck::probe(target, "/healthz").is_err() {
            return ExitCode::SUCCESS; // gone: the drain is over
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    eprintln!("herald-node drain: still answering after the drain timeout");
    ExitCode::from(exit::FAILURE)
}
