//! Pass/fail targets: `--expect deliveries_per_sec>=50000 --expect lost==0`.
//!
//! An expression names one metric of the report's flat `metrics` map, a comparison and a
//! number. Parsing happens before the run starts, so a typo fails in milliseconds rather
//! than after a ten-minute soak.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A comparison between a measured value and a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Op {
    /// `>=`
    Ge,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `<`
    Lt,
}

impl Op {
    /// The operator as written on the command line.
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Ge => ">=",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Lt => "<",
        }
    }

    /// Whether `actual <op> target` holds. Equality is exact: the metrics compared with
    /// `==` are counts, which are whole numbers in an `f64`.
    pub fn holds(self, actual: f64, target: f64) -> bool {
        match self {
            Op::Ge => actual >= target,
            Op::Le => actual <= target,
            Op::Eq => actual == target,
            Op::Ne => actual != target,
            Op::Gt => actual > target,
            Op::Lt => actual < target,
        }
    }
}

/// One `METRIC<op>VALUE` target.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Expect {
    /// Name of a key in the report's `metrics` map.
    pub metric: String,
    /// How the measured value must compare with `value`.
    pub op: Op,
    /// The target.
    pub value: f64,
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.metric, self.op.symbol(), self.value)
    }
}

impl FromStr for Expect {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        // Two-character operators first, so `>=` is not read as `>` followed by `=5`.
        const OPS: [(&str, Op); 6] = [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">", Op::Gt),
            ("<", Op::Lt),
        ];
        let text = text.trim();
        let (at, sym, op) = OPS
            .iter()
            .filter_map(|(sym, op)| text.find(sym).map(|at| (at, *sym, *op)))
            .min_by_key(|(at, sym, _)| (*at, std::cmp::Reverse(sym.len())))
            .ok_or_else(|| {
                format!("{text:?}: expected METRIC<op>VALUE with op one of >= <= == != > <")
            })?;
        let metric = text[..at].trim();
        let value = text[at + sym.len()..].trim();
        if metric.is_empty()
            || !metric
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(format!(
                "{text:?}: the metric name must be letters, digits and _"
            ));
        }
        let value: f64 = value
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| format!("{text:?}: {value:?} is not a number"))?;
        Ok(Expect {
            metric: metric.to_owned(),
            op,
            value,
        })
    }
}

/// The verdict on one target.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The target as written (normalised).
    pub expect: String,
    /// The measured value; `None` when the report has no such metric.
    pub actual: Option<f64>,
    /// True when the metric exists and the comparison holds.
    pub passed: bool,
}

/// Checks every target against the report's metrics. A target naming a metric the
/// report lacks fails: a silent pass would hide a misspelt target.
pub fn evaluate(expects: &[Expect], metrics: &BTreeMap<String, f64>) -> Vec<Outcome> {
    expects
        .iter()
        .map(|e| {
            let actual = metrics.get(&e.metric).copied();
            Outcome {
                expect: e.to_string(),
                actual,
                passed: actual.is_some_and(|a| e.op.holds(a, e.value)),
            }
        })
        .collect()
}

/// The metric names that are not in `known`, for a check before the run starts.
pub fn unknown_metrics<'a>(expects: &'a [Expect], known: &[&str]) -> Vec<&'a str> {
    expects
        .iter()
        .map(|e| e.metric.as_str())
        .filter(|m| !known.contains(m))
        .collect()
}
