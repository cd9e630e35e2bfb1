//! Settings from the environment and an optional TOML file.
//!
//! Follows linkerd2-proxy's habits: every setting has an environment name (`HERALD_*`) and
//! a default; reads go through [`Lookup`] so tests never touch the process environment;
//! every bad value is collected rather than stopping at the first, and the binary prints
//! them all and exits with [`EXIT_CONFIG`] (64, `EX_USAGE`).
//!
//! A TOML file (named by e.g. `HERALD_CONFIG`) may hold the same settings: the key for
//! `HERALD_HISTORY_SIZE` is `history_size` (the prefix stripped, lowercased). The
//! environment wins over the file. Values are trimmed and an empty value counts as unset.
//! Unknown keys in the file are errors, so a typo never passes silently.
//!
//! ```
//! use herald_shared::config::{MapLookup, Reader, Settings};
//!
//! let env = MapLookup::from_pairs(&[("APP_WORKERS", "8")]);
//! let mut settings = Settings::new(&env, "APP_");
//! let workers: u32 = settings.int("APP_WORKERS", 4, 1..=64);
//! let verbose = settings.bool("APP_VERBOSE", false);
//! assert_eq!((workers, verbose), (8, false));
//! assert!(settings.finish().is_ok());
//! ```

mod error;
mod lookup;
mod parse;
mod reader;
mod settings;
#[cfg(test)]
mod tests;

pub use error::{exit_with, format_errors, ConfigError};
pub use lookup::{EnvLookup, Lookup, MapLookup, EXIT_CONFIG};
pub use parse::{parse_bool, parse_bytes, parse_bytes_in, parse_int_in, parse_secs, parse_secs_in};
pub use reader::{Raw, Reader, Value};
pub use settings::{NamespaceSettings, Settings};
