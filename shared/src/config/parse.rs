//! Parsing of setting values: booleans, integers, byte sizes and seconds.

use std::fmt::Display;
use std::ops::{Bound, RangeBounds};
use std::str::FromStr;
use std::time::Duration;

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
pub(super) fn fmt_secs(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        d.as_secs_f64().to_string()
    }
}

/// " from 1 to 10 unit", " of at least 1 unit"..., or "" for an unbounded range.
pub(super) fn describe_range<T>(
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
