//! # herald-shared
//!
//! Parts used by every Herald binary.
//!
//! # Layout
//! - [`protocol`]: the Centrifugo v2 client protocol (JSON): commands, replies, pushes, codes.
//! - [`codec`]: node-to-node envelopes (bincode 2 behind a version byte).
//! - [`auth`]: JWT verification for connection and subscription tokens, and minting.
//! - [`config`]: reading settings from the environment or a TOML file; exit code 64 on a bad value.
//! - [`telemetry`]: tracing (plain or JSON) and the Prometheus recorder.
//! - [`http`]: response helpers of the node's and the router's HTTP routes.
//! - [`net`]: runtime, listening, serving HTTP/1, signals and exit codes of both binaries.

pub mod auth;
pub mod codec;
pub mod config;
pub mod healthcheck;
pub mod http;
pub mod net;
pub mod otel;
pub mod protocol;
pub mod telemetry;
