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

use std::collections::{BTreeSet, HashMap};
use std::fmt::{self, Display};
use std::io::Write as _;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

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

/// One bad setting.
///
/// Displays as one line: `HERALD_LISTEN: invalid value "abc": expected address:port`, or
/// `setting: reason` when there is no single offending value (an unknown key, say). The
/// value of a secret (a setting whose name contains `SECRET` or `KEY`) is never shown.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The setting as the user wrote it: an environment name (`HERALD_LISTEN`), a key in
    /// the file (`history_size`) or a key path (`namespaces.chat.presence`).
    pub setting: String,
    /// The offending value as given; empty when the problem is not one value.
    pub value: String,
    /// What is wrong, or what was expected.
    pub reason: String,
}

impl ConfigError {
    /// An error about `setting`.
    pub fn new(
        setting: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError {
            setting: setting.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// Whether the setting holds a secret, whose value must never be printed: its name
    /// contains `SECRET` or `KEY` (any case).
    pub fn is_secret(&self) -> bool {
        let name = self.setting.to_ascii_uppercase();
        name.contains("SECRET") || name.contains("KEY")
    }
}

impl Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", one_line(&self.setting))?;
        if !self.value.is_empty() {
            if self.is_secret() {
                f.write_str("invalid value <redacted>: ")?;
            } else {
                // Debug quoting escapes newlines and quotes: one line whatever the value.
                write!(f, "invalid value {:?}: ", self.value)?;
            }
        }
        f.write_str(&one_line(&self.reason))
    }
}

/// `s` with control characters (newlines from a multi-line parser message) as spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The lines [`exit_with`] prints: one per error, each prefixed
/// `herald: configuration error: `.
pub fn format_errors(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| format!("herald: configuration error: {e}\n"))
        .collect()
}

/// Prints every error to stderr, one line each, and exits with [`EXIT_CONFIG`].
pub fn exit_with(errors: &[ConfigError]) -> ! {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(format_errors(errors).as_bytes());
    let _ = err.flush();
    std::process::exit(EXIT_CONFIG)
}

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

/// Parses a boolean: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off` (any case).
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false (or 1/0, yes/no, on/off)".into()),
    }
}

/// Parses an integer within `range`.
pub fn parse_int_in<T>(text: &str, range: &impl RangeBounds<T>) -> Result<T, String>
where
    T: FromStr + PartialOrd + Display,
{
    let expected = || {
        // A type that cannot parse "-1" is unsigned: say so, "-5" users need to know.
        let kind = if "-1".parse::<T>().is_err() {
            "a non-negative integer"
        } else {
            "an integer"
        };
        format!(
            "expected {kind}{}",
            describe_range(range, |v| v.to_string(), "")
        )
    };
    match text.trim().parse::<T>() {
        Ok(v) if range.contains(&v) => Ok(v),
        _ => Err(expected()),
    }
}

/// Parses a byte count: digits, optionally followed by `B`, `KiB`, `MiB` or `GiB` (any
/// case, 1024-based).
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    const EXPECTED: &str = "expected a byte count such as 65536, 64KiB or 16MiB";
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: usize = number.parse().map_err(|_| EXPECTED.to_owned())?;
    let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(EXPECTED.into()),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| "byte count too large".to_owned())
}

/// Parses a byte count (see [`parse_bytes`]) within `range`.
pub fn parse_bytes_in(text: &str, range: &impl RangeBounds<usize>) -> Result<usize, String> {
    let n = parse_bytes(text)?;
    if range.contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "expected a byte count{}",
            describe_range(range, |v| v.to_string(), " bytes")
        ))
    }
}

/// Parses seconds: a non-negative integer or decimal (`25`, `0.5`, `.25`), exactly (no
/// floating point), to the nanosecond.
pub fn parse_secs(text: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "expected seconds, such as 25 or 0.5";
    let text = text.trim();
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !all_digits(whole) || !all_digits(frac) {
        return Err(EXPECTED.into());
    }
    if text.ends_with('.') {
        return Err(EXPECTED.into());
    }
    let secs: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| "too many seconds".to_owned())?
    };
    // Nanoseconds: the first nine fractional digits, right-padded with zeros.
    let nanos = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    Ok(Duration::new(secs, nanos))
}

/// Parses seconds (see [`parse_secs`]) within `range`.
pub fn parse_secs_in(text: &str, range: &impl RangeBounds<Duration>) -> Result<Duration, String> {
    let d = parse_secs(text)?;
    if range.contains(&d) {
        Ok(d)
    } else {
        Err(format!(
            "expected seconds{}",
            describe_range(range, |d| fmt_secs(*d), "")
        ))
    }
}

/// `d` as seconds, without a fraction when there is none.
fn fmt_secs(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        d.as_secs_f64().to_string()
    }
}

/// " from 1 to 10 unit", " of at least 1 unit"..., or "" for an unbounded range.
fn describe_range<T>(
    range: &impl RangeBounds<T>,
    show: impl Fn(&T) -> String,
    unit: &str,
) -> String {
    let lower = match range.start_bound() {
        Bound::Included(v) => Some(("at least", v)),
        Bound::Excluded(v) => Some(("above", v)),
        Bound::Unbounded => None,
    };
    let upper = match range.end_bound() {
        Bound::Included(v) => Some(("at most", v)),
        Bound::Excluded(v) => Some(("below", v)),
        Bound::Unbounded => None,
    };
    match (lower, upper) {
        (None, None) => String::new(),
        (Some(("at least", a)), Some(("at most", b))) => {
            format!(" from {} to {}{unit}", show(a), show(b))
        }
        (Some((w, v)), None) | (None, Some((w, v))) => format!(" {w} {}{unit}", show(v)),
        (Some((w1, a)), Some((w2, b))) => {
            format!(" {w1} {} and {w2} {}{unit}", show(a), show(b))
        }
    }
}

/// The file's table and where it came from (for messages).
struct FileTable {
    /// The path, or a description for tables handed over with [`Settings::with_table`].
    origin: String,
    /// The parsed file.
    table: toml::Table,
}

/// The TOML key of namespace tables.
const NAMESPACES: &str = "namespaces";

/// Settings from a [`Lookup`] and, optionally, a TOML file, with every error collected.
///
/// Read with the [`Reader`] methods, then call [`finish`](Settings::finish): it adds the
/// file's unknown keys to the errors found while reading.
pub struct Settings<'a> {
    /// The environment (or a map in tests); wins over the file.
    lookup: &'a dyn Lookup,
    /// Stripped from environment names to make file keys: `HERALD_` or `HERALD_ROUTER_`.
    prefix: String,
    /// The TOML file, if any.
    file: Option<FileTable>,
    /// Key paths that were read, to find unknown keys in the file.
    used: BTreeSet<String>,
    /// Whether the program reads `[namespaces.NAME]` tables (otherwise `namespaces` is an
    /// unknown key).
    namespaces_listed: bool,
    /// Everything wrong so far.
    errors: Vec<ConfigError>,
}

impl<'a> Settings<'a> {
    /// Settings from `lookup` only. `prefix` (`HERALD_`) maps environment names to file keys.
    pub fn new(lookup: &'a dyn Lookup, prefix: &str) -> Self {
        Settings {
            lookup,
            prefix: prefix.to_owned(),
            file: None,
            used: BTreeSet::new(),
            namespaces_listed: false,
            errors: Vec::new(),
        }
    }

    /// Settings from `lookup` and the TOML file it names in `file_setting` (e.g.
    /// `HERALD_CONFIG`), if set. A missing, unreadable or invalid file is an error naming
    /// `file_setting`.
    pub fn load(lookup: &'a dyn Lookup, prefix: &str, file_setting: &str) -> Self {
        let mut settings = Settings::new(lookup, prefix);
        let path = lookup.get(file_setting).map(|p| p.trim().to_owned());
        if let Some(path) = path.filter(|p| !p.is_empty()) {
            match read_toml(Path::new(&path)) {
                Ok(table) => settings = settings.with_table(table, path),
                Err(reason) => settings
                    .errors
                    .push(ConfigError::new(file_setting, path, reason)),
            }
        }
        settings
    }

    /// Uses `table` as the file; `origin` (its path) appears in messages.
    pub fn with_table(mut self, table: toml::Table, origin: impl Into<String>) -> Self {
        self.file = Some(FileTable {
            origin: origin.into(),
            table,
        });
        self
    }

    /// The lookup, for values outside the prefix that need special handling.
    pub fn lookup(&self) -> &'a dyn Lookup {
        self.lookup
    }

    /// Whether a file was read.
    pub fn has_file(&self) -> bool {
        self.file.is_some()
    }

    /// The file key for an environment name: `HERALD_HISTORY_SIZE` -> `history_size`.
    /// `None` for names outside the prefix (`RUST_LOG`), which are read from the
    /// environment only.
    pub fn file_key(&self, name: &str) -> Option<String> {
        name.strip_prefix(&self.prefix)
            .filter(|k| !k.is_empty())
            .map(str::to_ascii_lowercase)
    }

    /// The names of the file's `[namespaces.NAME]` tables, sorted. Calling this declares
    /// that the program reads namespaces, so a `namespaces` key is no longer unknown.
    pub fn namespace_names(&mut self) -> Vec<String> {
        let first = !self.namespaces_listed;
        self.namespaces_listed = true;
        let Some(value) = self.file.as_ref().and_then(|f| f.table.get(NAMESPACES)) else {
            return Vec::new();
        };
        let Some(tables) = value.as_table() else {
            if first {
                self.errors.push(ConfigError::new(
                    NAMESPACES,
                    "",
                    format!(
                        "expected [namespaces.NAME] tables, not {}",
                        value.type_str()
                    ),
                ));
            }
            return Vec::new();
        };
        let mut names = Vec::new();
        let mut errors = Vec::new();
        for (name, table) in tables {
            if table.is_table() {
                names.push(name.clone());
            } else {
                errors.push(ConfigError::new(
                    format!("{NAMESPACES}.{name}"),
                    "",
                    format!("expected a table, not {}", table.type_str()),
                ));
            }
        }
        if first {
            self.errors.extend(errors);
        }
        names.sort();
        names
    }

    /// A reader for the file's `[namespaces.NAME]` table.
    pub fn namespace(&mut self, name: &str) -> NamespaceSettings<'_, 'a> {
        NamespaceSettings {
            settings: self,
            name: name.to_owned(),
        }
    }

    /// Every error found, the file's unknown keys included; `Ok` when there are none.
    pub fn finish(mut self) -> Result<(), Vec<ConfigError>> {
        if let Some(file) = self.file.take() {
            // Sorted, whatever order the table keeps: stable messages.
            let mut keys: Vec<(Option<&String>, &String)> = Vec::new();
            for (key, value) in &file.table {
                if key == NAMESPACES && self.namespaces_listed {
                    for (ns, table) in value.as_table().into_iter().flatten() {
                        for k in table.as_table().into_iter().flat_map(|t| t.keys()) {
                            keys.push((Some(ns), k));
                        }
                    }
                } else {
                    keys.push((None, key));
                }
            }
            keys.sort();
            for (ns, key) in keys {
                let scope = ns
                    .map(|ns| format!("{NAMESPACES}.{ns}."))
                    .unwrap_or_default();
                self.check_known(&scope, key, &file.origin);
            }
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }

    /// Reports `scope` + `key` if it was never read, suggesting a near key that was.
    fn check_known(&mut self, scope: &str, key: &str, origin: &str) {
        let path = format!("{scope}{key}");
        if self.used.contains(&path) {
            return;
        }
        let known: Vec<&str> = self
            .used
            .iter()
            .filter_map(|u| u.strip_prefix(scope))
            .filter(|u| !u.contains('.'))
            .collect();
        let hint = suggest(key, &self.prefix, &known)
            .map(|s| format!("; did you mean {s}?"))
            .unwrap_or_default();
        self.errors.push(ConfigError::new(
            path,
            "",
            format!("unknown setting in {origin}{hint}"),
        ));
    }
}

impl Reader for Settings<'_> {
    fn raw(&mut self, name: &str) -> Option<Raw> {
        let key = self.file_key(name);
        if let Some(k) = &key {
            // Known even when the environment overrides it.
            self.used.insert(k.clone());
        }
        if let Some(v) = self.lookup.get(name) {
            let text = v.trim();
            if !text.is_empty() {
                return Some(Raw::One(Value {
                    setting: name.to_owned(),
                    text: text.to_owned(),
                }));
            }
        }
        let key = key?;
        let value = self.file.as_ref()?.table.get(&key)?;
        match toml_raw(key, value) {
            Ok(raw) => raw,
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    fn report(&mut self, error: ConfigError) {
        self.errors.push(error);
    }
}

/// The settings of one `[namespaces.NAME]` table in the file.
///
/// Names are the top level's (`HERALD_PRESENCE` reads key `presence`), from the file only:
/// the environment holds the default namespace. Errors name `namespaces.NAME.key`.
pub struct NamespaceSettings<'s, 'a> {
    /// Where values, used keys and errors live.
    settings: &'s mut Settings<'a>,
    /// The namespace's name.
    name: String,
}

impl NamespaceSettings<'_, '_> {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Reader for NamespaceSettings<'_, '_> {
    fn raw(&mut self, name: &str) -> Option<Raw> {
        let key = self.settings.file_key(name)?;
        let path = format!("{NAMESPACES}.{}.{key}", self.name);
        self.settings.used.insert(path.clone());
        let value = self
            .settings
            .file
            .as_ref()?
            .table
            .get(NAMESPACES)?
            .get(&self.name)?
            .get(&key)?;
        match toml_raw(path, value) {
            Ok(raw) => raw,
            Err(e) => {
                self.settings.errors.push(e);
                None
            }
        }
    }

    fn report(&mut self, error: ConfigError) {
        self.settings.errors.push(error);
    }
}

/// A TOML string, number or boolean as text (strings trimmed); `None` for other types.
fn scalar_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.trim().to_owned()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A file value as a [`Raw`] (`None` for an empty string), or an error for a wrong type.
fn toml_raw(setting: String, value: &toml::Value) -> Result<Option<Raw>, ConfigError> {
    if let Some(text) = scalar_text(value) {
        return Ok((!text.is_empty()).then_some(Raw::One(Value { setting, text })));
    }
    if let toml::Value::Array(items) = value {
        return match items.iter().map(scalar_text).collect::<Option<Vec<_>>>() {
            Some(items) => Ok(Some(Raw::Many { setting, items })),
            None => Err(ConfigError::new(
                setting,
                "",
                "expected an array of strings, numbers or booleans",
            )),
        };
    }
    Err(ConfigError::new(
        setting,
        "",
        format!(
            "expected a string, number or boolean, not {}",
            value.type_str()
        ),
    ))
}

/// Reads and parses a TOML file; the error is a one-line reason.
fn read_toml(path: &Path) -> Result<toml::Table, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the file: {e}"))?;
    toml::from_str::<toml::Table>(&text).map_err(|e| {
        let at = e
            .span()
            .map(|span| {
                let before = text.get(..span.start).unwrap_or(&text);
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                format!(" at line {line}, column {column}")
            })
            .unwrap_or_default();
        format!("not valid TOML{at}: {}", e.message().trim())
    })
}

/// A known key close to `key`: the same in another case or with the prefix
/// (`HERALD_HISTORY_SIZE`), or within two edits.
fn suggest<'k>(key: &str, prefix: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = key.to_ascii_lowercase();
    let unprefixed = lower
        .strip_prefix(&prefix.to_ascii_lowercase())
        .unwrap_or(&lower);
    if let Some(k) = known.iter().find(|k| **k == unprefixed) {
        return Some(k);
    }
    known
        .iter()
        .map(|k| (edit_distance(unprefixed, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).expect("test TOML is valid")
    }

    fn errors(settings: Settings<'_>) -> Vec<ConfigError> {
        settings.finish().expect_err("errors expected")
    }

    #[test]
    fn defaults_when_unset() {
        let env = MapLookup::default();
        let mut s = Settings::new(&env, "T_");
        assert_eq!(s.string("T_NAME"), None);
        assert_eq!(s.int("T_N", 7u32, ..), 7);
        assert!(s.bool("T_FLAG", true));
        assert_eq!(
            s.secs("T_WAIT", Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        assert_eq!(s.bytes("T_SIZE", 10, ..), 10);
        assert!(s.list("T_LIST").is_empty());
        assert!(s.finish().is_ok());
    }

    #[test]
    fn reads_each_kind_from_the_environment() {
        let env = MapLookup::from_pairs(&[
            ("T_NAME", "  herald "),
            ("T_N", "42"),
            ("T_FLAG", "off"),
            ("T_WAIT", "0.25"),
            ("T_SIZE", "16MiB"),
            ("T_LIST", " a, ,b ,, c "),
            ("T_ADDR", "127.0.0.1:9000"),
        ]);
        let mut s = Settings::new(&env, "T_");
        assert_eq!(s.string("T_NAME").as_deref(), Some("herald"));
        assert_eq!(s.int("T_N", 7u32, 1..=100), 42);
        assert!(!s.bool("T_FLAG", true));
        assert_eq!(s.secs("T_WAIT", Duration::ZERO), Duration::from_millis(250));
        assert_eq!(s.bytes("T_SIZE", 0, ..), 16 << 20);
        assert_eq!(s.list("T_LIST"), ["a", "b", "c"]);
        let addr: std::net::SocketAddr = s.parse("T_ADDR", "0.0.0.0:1".parse().unwrap());
        assert_eq!(addr.port(), 9000);
        assert!(s.finish().is_ok());
    }

    #[test]
    fn empty_value_counts_as_unset() {
        let env = MapLookup::from_pairs(&[("T_NAME", "   "), ("T_N", "")]);
        let mut s = Settings::new(&env, "T_");
        assert_eq!(s.string("T_NAME"), None);
        assert_eq!(s.int("T_N", 5u8, ..), 5);
        assert!(s.finish().is_ok());
    }

    #[test]
    fn every_bad_value_is_reported_with_its_setting() {
        let env = MapLookup::from_pairs(&[
            ("T_N", "abc"),
            ("T_FLAG", "maybe"),
            ("T_WAIT", "-1"),
            ("T_SIZE", "12 parsecs"),
            ("T_RANGE", "0"),
        ]);
        let mut s = Settings::new(&env, "T_");
        assert_eq!(s.int("T_N", 7u32, ..), 7, "default after a bad value");
        assert!(s.bool("T_FLAG", true));
        s.secs("T_WAIT", Duration::ZERO);
        s.bytes("T_SIZE", 0, ..);
        s.int("T_RANGE", 5u16, 1..=10);
        let errs = errors(s);
        let names: Vec<&str> = errs.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(names, ["T_N", "T_FLAG", "T_WAIT", "T_SIZE", "T_RANGE"]);
        assert_eq!(
            errs[0].to_string(),
            r#"T_N: invalid value "abc": expected a non-negative integer"#
        );
        assert_eq!(
            errs[4].to_string(),
            r#"T_RANGE: invalid value "0": expected a non-negative integer from 1 to 10"#
        );
    }

    #[test]
    fn parse_error_text_is_the_reason() {
        let env = MapLookup::from_pairs(&[("T_ADDR", "abc")]);
        let mut s = Settings::new(&env, "T_");
        let _: std::net::SocketAddr = s.parse("T_ADDR", "0.0.0.0:1".parse().unwrap());
        let errs = errors(s);
        assert!(errs[0]
            .to_string()
            .starts_with(r#"T_ADDR: invalid value "abc": "#));
    }

    #[test]
    fn secret_values_are_redacted() {
        let e = ConfigError::new("HERALD_TOKEN_HMAC_SECRET", "hunter2", "too short");
        assert_eq!(
            e.to_string(),
            "HERALD_TOKEN_HMAC_SECRET: invalid value <redacted>: too short"
        );
        let e = ConfigError::new("api_key", "hunter2", "bad");
        assert!(!e.to_string().contains("hunter2"));
        let e = ConfigError::new("HERALD_LISTEN", "abc", "expected address:port");
        assert_eq!(
            e.to_string(),
            r#"HERALD_LISTEN: invalid value "abc": expected address:port"#
        );
    }

    #[test]
    fn errors_display_on_one_line() {
        let e = ConfigError::new("X", "a\nb", "line one\nline two");
        let text = e.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert_eq!(
            format_errors(&[e.clone(), e]).lines().count(),
            2,
            "one line per error"
        );
        assert!(format_errors(&[ConfigError::new("X", "", "r")])
            .starts_with("herald: configuration error: X: r"));
    }

    #[test]
    fn parses_booleans() {
        for t in ["true", "TRUE", "1", "yes", "On"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for t in ["false", "0", "No", "off"] {
            assert_eq!(parse_bool(t), Ok(false), "{t}");
        }
        assert!(parse_bool("2").is_err());
    }

    #[test]
    fn parses_seconds_exactly() {
        assert_eq!(parse_secs("25"), Ok(Duration::from_secs(25)));
        assert_eq!(parse_secs("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_secs(".25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_secs("1.000000001"), Ok(Duration::new(1, 1)));
        for bad in ["", ".", "1.", "-1", "1e3", "inf", "NaN", "1.2.3", "5s", " "] {
            assert!(parse_secs(bad).is_err(), "{bad:?}");
        }
        let range = Duration::from_secs(1)..=Duration::from_secs(3600);
        assert_eq!(
            parse_secs_in("0.5", &range),
            Err("expected seconds from 1 to 3600".to_owned())
        );
    }

    #[test]
    fn parses_byte_counts() {
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert_eq!(parse_bytes("64KiB"), Ok(64 << 10));
        assert_eq!(parse_bytes("16 mib"), Ok(16 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("100B"), Ok(100));
        for bad in ["", "KiB", "-1", "1.5MiB", "10MB", "1 2"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_bytes_in("64", &(128..=1024)),
            Err("expected a byte count from 128 to 1024 bytes".to_owned())
        );
    }

    #[test]
    fn describes_ranges() {
        let show = |v: &u32| v.to_string();
        assert_eq!(describe_range(&(1u32..), show, ""), " at least 1");
        assert_eq!(describe_range(&(..=9u32), show, "s"), " at most 9s");
        assert_eq!(
            describe_range(&(1u32..10), show, ""),
            " at least 1 and below 10"
        );
        assert_eq!(describe_range::<u32>(&(..), show, ""), "");
    }

    #[test]
    fn list_items_are_checked_one_by_one() {
        let env = MapLookup::from_pairs(&[("T_PORTS", "1, x, 3, y")]);
        let mut s = Settings::new(&env, "T_");
        let ports = s.list_with("T_PORTS", |i| i.parse::<u16>().map_err(|e| e.to_string()));
        assert_eq!(ports, [1, 3]);
        let errs = errors(s);
        let values: Vec<&str> = errs.iter().map(|e| e.value.as_str()).collect();
        assert_eq!(values, ["x", "y"]);
    }

    #[test]
    fn file_values_of_every_type_read_like_text() {
        let env = MapLookup::default();
        let file = table(
            r#"
            name = "herald"
            n = 42
            wait = 1.5
            flag = true
            size = "64KiB"
            list = ["a", " b ", ""]
            joined = "x,y"
            "#,
        );
        let mut s = Settings::new(&env, "T_").with_table(file, "test.toml");
        assert_eq!(s.string("T_NAME").as_deref(), Some("herald"));
        assert_eq!(s.int("T_N", 0u64, ..), 42);
        assert_eq!(
            s.secs("T_WAIT", Duration::ZERO),
            Duration::from_millis(1500)
        );
        assert!(s.bool("T_FLAG", false));
        assert_eq!(s.bytes("T_SIZE", 0, ..), 64 << 10);
        assert_eq!(s.list("T_LIST"), ["a", "b"]);
        assert_eq!(s.list("T_JOINED"), ["x", "y"]);
        assert!(s.finish().is_ok());
    }

    #[test]
    fn environment_wins_over_file() {
        let env = MapLookup::from_pairs(&[("T_N", "2"), ("T_EMPTY", "")]);
        let file = table("n = 1\nempty = 3\nother = 4");
        let mut s = Settings::new(&env, "T_").with_table(file, "test.toml");
        assert_eq!(s.int("T_N", 0u8, ..), 2);
        assert_eq!(
            s.int("T_EMPTY", 0u8, ..),
            3,
            "an empty variable does not hide the file"
        );
        assert_eq!(s.int("T_OTHER", 0u8, ..), 4);
        assert!(s.finish().is_ok());
    }

    #[test]
    fn wrong_file_types_name_the_key() {
        let env = MapLookup::default();
        let file = table("n = \"many\"\nflag = [1, 2]\nwait = { a = 1 }\nlist = [[1]]");
        let mut s = Settings::new(&env, "T_").with_table(file, "test.toml");
        s.int("T_N", 0u8, ..);
        s.bool("T_FLAG", false);
        s.secs("T_WAIT", Duration::ZERO);
        s.list("T_LIST");
        let errs = errors(s);
        let names: Vec<&str> = errs.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(names, ["n", "flag", "wait", "list"]);
        assert_eq!(errs[1].reason, "expected a single value, not an array");
        assert_eq!(
            errs[2].to_string(),
            "wait: expected a string, number or boolean, not table"
        );
    }

    #[test]
    fn unknown_file_keys_are_errors_with_a_hint() {
        let env = MapLookup::default();
        let file = table("histroy_size = 5\nHERALD_PRESENCE = true\nzzz = 1");
        let mut s = Settings::new(&env, "HERALD_").with_table(file, "herald.toml");
        s.int("HERALD_HISTORY_SIZE", 0usize, ..);
        s.bool("HERALD_PRESENCE", false);
        let errs = errors(s);
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "HERALD_PRESENCE: unknown setting in herald.toml; did you mean presence?",
                "histroy_size: unknown setting in herald.toml; did you mean history_size?",
                "zzz: unknown setting in herald.toml",
            ]
        );
    }

    #[test]
    fn namespaces_read_their_table_only() {
        let env = MapLookup::from_pairs(&[("HERALD_PRESENCE", "true")]);
        let file = table(
            r#"
            history_size = 10
            [namespaces.chat]
            history_size = 50
            [namespaces.feed]
            presence = false
            "#,
        );
        let mut s = Settings::new(&env, "HERALD_").with_table(file, "herald.toml");
        let size = s.int("HERALD_HISTORY_SIZE", 100usize, ..);
        let presence = s.bool("HERALD_PRESENCE", false);
        assert_eq!((size, presence), (10, true));
        assert_eq!(s.namespace_names(), ["chat", "feed"]);
        let mut chat = s.namespace("chat");
        assert_eq!(chat.name(), "chat");
        assert_eq!(chat.int("HERALD_HISTORY_SIZE", size, ..), 50);
        assert!(
            chat.bool("HERALD_PRESENCE", presence),
            "inherits the default"
        );
        let mut feed = s.namespace("feed");
        assert_eq!(feed.int("HERALD_HISTORY_SIZE", size, ..), 10);
        assert!(!feed.bool("HERALD_PRESENCE", presence));
        assert!(s.finish().is_ok());
    }

    #[test]
    fn namespace_errors_name_the_key_path() {
        let env = MapLookup::default();
        let file = table(
            r#"
            [namespaces.chat]
            history_size = "lots"
            presense = true
            [namespaces]
            broken = 5
            "#,
        );
        let mut s = Settings::new(&env, "HERALD_").with_table(file, "herald.toml");
        s.bool("HERALD_PRESENCE", false);
        assert_eq!(s.namespace_names(), ["chat"]);
        let mut chat = s.namespace("chat");
        chat.int("HERALD_HISTORY_SIZE", 0usize, ..);
        chat.bool("HERALD_PRESENCE", false);
        let errs = errors(s);
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "namespaces.broken: expected a table, not integer",
                r#"namespaces.chat.history_size: invalid value "lots": expected a non-negative integer"#,
                "namespaces.chat.presense: unknown setting in herald.toml; did you mean presence?",
            ]
        );
    }

    #[test]
    fn namespaces_are_unknown_unless_read() {
        let env = MapLookup::default();
        let file = table("[namespaces.chat]\npresence = true");
        let s = Settings::new(&env, "HERALD_ROUTER_").with_table(file, "router.toml");
        let errs = errors(s);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].setting, "namespaces");
    }

    #[test]
    fn loads_the_file_named_by_a_setting() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "history_size = 7\n[namespaces.chat]\npresence = true").unwrap();
        let path = f.path().to_str().unwrap().to_owned();
        let env = MapLookup::from_pairs(&[("HERALD_CONFIG", &path)]);
        let mut s = Settings::load(&env, "HERALD_", "HERALD_CONFIG");
        assert!(s.has_file());
        assert_eq!(s.int("HERALD_HISTORY_SIZE", 0usize, ..), 7);
        for name in s.namespace_names() {
            assert!(s.namespace(&name).bool("HERALD_PRESENCE", false));
        }
        assert!(s.finish().is_ok());
    }

    #[test]
    fn a_missing_or_invalid_file_names_the_setting() {
        let env = MapLookup::from_pairs(&[("HERALD_CONFIG", "/nonexistent/herald.toml")]);
        let errs = errors(Settings::load(&env, "HERALD_", "HERALD_CONFIG"));
        assert_eq!(errs[0].setting, "HERALD_CONFIG");
        assert_eq!(errs[0].value, "/nonexistent/herald.toml");
        assert!(errs[0].reason.starts_with("cannot read the file"));

        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "a = 1\nb = = 2").unwrap();
        let path = f.path().to_str().unwrap().to_owned();
        let env = MapLookup::from_pairs(&[("HERALD_CONFIG", &path)]);
        let errs = errors(Settings::load(&env, "HERALD_", "HERALD_CONFIG"));
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].reason.starts_with("not valid TOML at line 2"),
            "{}",
            errs[0].reason
        );
        assert!(!errs[0].to_string().contains('\n'));
    }

    #[test]
    fn names_outside_the_prefix_come_from_the_environment_only() {
        let env = MapLookup::from_pairs(&[("RUST_LOG", "debug")]);
        let file = table("rust_log = \"info\"");
        let mut s = Settings::new(&env, "HERALD_").with_table(file, "herald.toml");
        assert_eq!(s.file_key("RUST_LOG"), None);
        assert_eq!(
            s.file_key("HERALD_MAX_API_BODY").as_deref(),
            Some("max_api_body")
        );
        assert_eq!(s.string("RUST_LOG").as_deref(), Some("debug"));
        assert_eq!(errors(s)[0].setting, "rust_log");
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("presence", "presence"), 0);
        assert_eq!(edit_distance("presense", "presence"), 1);
        assert_eq!(edit_distance("histroy_size", "history_size"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
