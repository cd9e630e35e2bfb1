//! [`Settings`]: the environment plus an optional TOML file, with every error collected.

use super::error::ConfigError;
use super::lookup::Lookup;
use super::reader::{Raw, Reader, Value};
use std::collections::BTreeSet;
use std::path::Path;

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

/// The log filter `tracing` reads (not prefixed); see [`Settings::load`].
const ENV_RUST_LOG: &str = "RUST_LOG";

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
    /// `file_setting`. `RUST_LOG`, which `tracing` reads, is checked here too, so that a
    /// typo in it is reported instead of logging with another filter.
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
        if let Some(filter) = settings.value(ENV_RUST_LOG) {
            if let Err(reason) = crate::telemetry::check_log_filter(&filter.text) {
                settings.report(filter.error(reason));
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
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
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
