//! Configuration errors: each names its setting; all are printed before exit 64.

use super::EXIT_CONFIG;
use std::fmt::{self, Display};
use std::io::Write as _;

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
