//! The [`Reader`] trait: typed reads of settings with defaults and ranges.

use super::error::ConfigError;
use super::parse::*;
use std::fmt::Display;
use std::ops::RangeBounds;
use std::str::FromStr;
use std::time::Duration;

/// A set value, before conversion, with the name to report errors under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    /// The environment name, or the key path in the file, that the value came from.
    pub setting: String,
    /// The value: trimmed, never empty. TOML numbers and booleans are in text form.
    pub text: String,
}

impl Value {
    /// An error about this value.
    pub fn error(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(self.setting.clone(), self.text.clone(), reason)
    }
}

/// A set value as found: one value, or a TOML array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Raw {
    /// A single value.
    One(Value),
    /// A TOML array of strings, numbers or booleans (text form, trimmed), and the key path.
    Many {
        /// The key path in the file.
        setting: String,
        /// The items, empty ones included.
        items: Vec<String>,
    },
}

/// Reads typed settings, reporting bad values instead of stopping at them.
///
/// Every method returns the default when the setting is unset, and also when its value is
/// bad (after reporting it), so that reading goes on and every error is found. Implemented
/// by [`Settings`] (environment, then file) and [`NamespaceSettings`] (one
/// `[namespaces.NAME]` table), so code reading a group of settings works with both.
pub trait Reader {
    /// The value of `name` as found, or `None` when unset. A value of the wrong TOML type
    /// (a table, a date) is reported here and reads as unset.
    fn raw(&mut self, name: &str) -> Option<Raw>;

    /// Records an error; [`Settings::finish`] returns them all.
    fn report(&mut self, error: ConfigError);

    /// The single value of `name`, or `None` when unset. An array is reported.
    fn value(&mut self, name: &str) -> Option<Value> {
        match self.raw(name)? {
            Raw::One(v) => Some(v),
            Raw::Many { setting, .. } => {
                self.report(ConfigError::new(
                    setting,
                    "",
                    "expected a single value, not an array",
                ));
                None
            }
        }
    }

    /// The value of `name` converted by `convert` (whose error is the reason reported), or
    /// `default`.
    fn convert<T>(
        &mut self,
        name: &str,
        default: T,
        convert: impl FnOnce(&str) -> Result<T, String>,
    ) -> T
    where
        Self: Sized,
    {
        let Some(value) = self.value(name) else {
            return default;
        };
        match convert(&value.text) {
            Ok(v) => v,
            Err(reason) => {
                self.report(value.error(reason));
                default
            }
        }
    }

    /// The text of `name`, or `None` when unset (or empty).
    fn string(&mut self, name: &str) -> Option<String>
    where
        Self: Sized,
    {
        self.value(name).map(|v| v.text)
    }

    /// The value of `name` parsed with [`FromStr`]; the parse error's text is the reason.
    fn parse<T>(&mut self, name: &str, default: T) -> T
    where
        Self: Sized,
        T: FromStr,
        T::Err: Display,
    {
        self.convert(name, default, |t| {
            t.parse().map_err(|e: T::Err| e.to_string())
        })
    }

    /// A boolean: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off` (any case).
    fn bool(&mut self, name: &str, default: bool) -> bool
    where
        Self: Sized,
    {
        self.convert(name, default, parse_bool)
    }

    /// An integer within `range`.
    fn int<T>(&mut self, name: &str, default: T, range: impl RangeBounds<T>) -> T
    where
        Self: Sized,
        T: FromStr + PartialOrd + Display,
    {
        self.convert(name, default, |t| parse_int_in(t, &range))
    }

    /// A byte count within `range`: `65536`, `64KiB`, `16MiB`, `1GiB`.
    fn bytes(&mut self, name: &str, default: usize, range: impl RangeBounds<usize>) -> usize
    where
        Self: Sized,
    {
        self.convert(name, default, |t| parse_bytes_in(t, &range))
    }

    /// A duration in seconds, integer or decimal (`25`, `0.5`).
    fn secs(&mut self, name: &str, default: Duration) -> Duration
    where
        Self: Sized,
    {
        self.secs_in(name, default, ..)
    }

    /// A duration in seconds, integer or decimal, within `range`.
    fn secs_in(
        &mut self,
        name: &str,
        default: Duration,
        range: impl RangeBounds<Duration>,
    ) -> Duration
    where
        Self: Sized,
    {
        self.convert(name, default, |t| parse_secs_in(t, &range))
    }

    /// A list: comma-separated text, or a TOML array; items trimmed, empty ones dropped.
    fn list(&mut self, name: &str) -> Vec<String>
    where
        Self: Sized,
    {
        self.list_with(name, |item| Ok(item.to_owned()))
    }

    /// A list whose items are each checked by `check`; every bad item is reported (as the
    /// value) and left out.
    fn list_with<T>(
        &mut self,
        name: &str,
        mut check: impl FnMut(&str) -> Result<T, String>,
    ) -> Vec<T>
    where
        Self: Sized,
    {
        let (setting, items) = match self.raw(name) {
            None => return Vec::new(),
            Some(Raw::One(v)) => (v.setting, v.text.split(',').map(str::to_owned).collect()),
            Some(Raw::Many { setting, items }) => (setting, items),
        };
        let mut out = Vec::new();
        for item in items.iter().map(|i| i.trim()).filter(|i| !i.is_empty()) {
            match check(item) {
                Ok(v) => out.push(v),
                Err(reason) => self.report(ConfigError::new(setting.clone(), item, reason)),
            }
        }
        out
    }
}
