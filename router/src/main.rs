//! `herald-router`: wires configuration, tracing, the listener and signals, then hands
//! over to the library.

// Cargo links the binary with every dependency of the package, and it only wires the
// library: an unused one shows on the library target, where it means something.
#![allow(unused_crate_dependencies)]

/// jemalloc: see the workspace's Cargo.toml for why.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use herald_shared::config::{exit_with, ConfigError, EnvLookup};
use herald_shared::net::exit;
use std::io::Write as _;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

const USAGE: &str =
    "usage: herald-router            run the router (configured by HERALD_ROUTER_* variables)
       herald-router healthcheck    exit 0 if this router's /healthz answers 200
       herald-router --version";

fn main() -> ExitCode {
    let healthcheck = std::env::args().nth(1).as_deref() == Some("healthcheck");
    match std::env::args().nth(1).as_deref() {
        None | Some("healthcheck") => {}
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!("herald-router {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("herald-router: unknown argument {other:?}\n\n{USAGE}");
            return ExitCode::from(exit::USAGE);
        }
    }
    let config = match herald_router::config::load(&EnvLookup) {
        Ok(c) => c,
        Err(errors) => exit_with(&errors),
    };
    if healthcheck {
        // For container engines: probe this router's own /healthz.
        use herald_shared::healthcheck;
        let target = healthcheck::local_target(config.listen);
        let probed = if config.tls.is_some() {
            herald_router::tls::probe::probe(target, "/healthz")
        } else {
            healthcheck::probe(target, "/healthz")
        };
        return match probed {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("herald-router healthcheck: {e}");
                ExitCode::from(exit::FAILURE)
            }
        };
    }
    let otel = config
        .otel
        .endpoint
        .as_ref()
        .map(|endpoint| herald_shared::otel::OtelOptions {
            endpoint: endpoint.clone(),
            sample_ratio: config.otel.sample_ratio,
            service_name: "herald-router",
            instance: config.listen.to_string(),
        });
    // Kept to the end of main: dropping it flushes the spans not exported yet.
    let _otel_guard =
        match herald_shared::telemetry::init_tracing_with(config.log_format, otel.as_ref()) {
            Ok(guard) => guard,
            Err(e) => {
                eprintln!("herald-router: cannot set up tracing: {e}");
                return ExitCode::from(exit::FAILURE);
            }
        };
    // An unreadable, expired or mismatched certificate stops the router here, exit 64,
    // naming the setting whose file is at fault.
    let tls = match &config.tls {
        None => None,
        Some(files) => match herald_router::tls::Terminator::load(files) {
            Ok(t) => Some(t),
            Err(e) => {
                use herald_router::config::{ENV_TLS_CERT, ENV_TLS_KEY};
                let setting = if e.is_key() {
                    ENV_TLS_KEY
                } else {
                    ENV_TLS_CERT
                };
                exit_with(&[ConfigError::new(setting, "", e.to_string())]);
            }
        },
    };
    let runtime = match herald_shared::net::runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("herald-router: cannot start the runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    runtime.block_on(async move {
        let listener = match herald_shared::net::bind(config.listen) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("herald-router: cannot listen on {}: {e}", config.listen);
                return ExitCode::from(exit::CANNOT_BIND);
            }
        };
        let addr = listener.local_addr().unwrap_or(config.listen);
        let shutdown = CancellationToken::new();
        let signals = herald_shared::net::cancel_on_signal(shutdown.clone())
            .and_then(|()| herald_router::tls::reload_on_sighup(tls.clone()));
        if let Err(e) = signals {
            eprintln!("herald-router: cannot install signal handlers: {e}");
            return ExitCode::from(exit::FAILURE);
        }
        // Only now: whoever waits for this line may send SIGTERM right after it.
        print_banner(&config, addr);
        herald_router::run(listener, config, tls, shutdown).await;
        ExitCode::SUCCESS
    })
}

fn print_banner(config: &herald_router::config::RouterConfig, addr: std::net::SocketAddr) {
    let d = &config.discovery;
    let mut sources = Vec::new();
    if !d.nodes.is_empty() {
        sources.push(format!("{} static", d.nodes.len()));
    }
    if !d.dns.is_empty() {
        sources.push(format!("DNS {}", d.dns.join(",")));
    }
    if let Some(nats) = &d.nats {
        sources.push(format!("NATS {}", nats.subject));
    }
    let (tls, scheme) = match &config.tls {
        Some(files) => (format!(", TLS {}", files.cert.display()), "https"),
        None => (String::new(), "http"),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "herald-router {} listening on {addr} (nodes: {}{tls})",
        env!("CARGO_PKG_VERSION"),
        sources.join(", ")
    );
    let _ = writeln!(
        out,
        "  probes     {scheme}://{addr}/healthz  /readyz  /metrics"
    );
    let _ = out.flush();
}
