//! Where setting values come from: the process environment, or a map in tests.

use std::collections::HashMap;

/// Exit code for a bad configuration: `EX_USAGE` from `sysexits.h`, as linkerd uses.
pub const EXIT_CONFIG: i32 = 64;

/// Where setting values come from: the process environment, or a map in tests.
pub trait Lookup {
    /// The raw value of `name`, or `None` when it is not set.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
///
/// A value that is not valid UTF-8 is read lossily, so it fails to parse (naming the
/// setting) instead of being silently treated as unset.
#[derive(Clone, Copy, Debug, Default)]
pub struct EnvLookup;

impl Lookup for EnvLookup {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
    }
}

/// A fixed set of values, for tests and embedding.
#[derive(Clone, Debug, Default)]
pub struct MapLookup(pub HashMap<String, String>);

impl MapLookup {
    /// A lookup holding `pairs` of (name, value).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        MapLookup(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
}

impl Lookup for MapLookup {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}
