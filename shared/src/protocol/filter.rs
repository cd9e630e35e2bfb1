//! Tags filters: a subscriber's condition on publication tags (`tf` in a subscribe
//! request), Centrifugo v6's `FilterNode` (`definitions/client.proto` of
//! `centrifugal/protocol`, evaluated as its `centrifuge` library's `internal/filter`).
//!
//! A node is a leaf comparison (`op` empty: `key`, `cmp`, `val` or `vals`) or a logical
//! `and`, `or` (one or more children) or `not` (exactly one child). Leaf comparisons:
//! `eq`, `neq`, `in`, `nin`, `ex`, `nex`, `sw` (starts with), `ew` (ends with), `ct`
//! (contains), `lt`, `lte`, `gt`, `gte` (decimal numbers; a tag that is not a number
//! does not match).
//!
//! Bounded: [`FilterNode::validate`] refuses a tree deeper than [`MAX_DEPTH`], with more
//! than [`MAX_NODES`] nodes or [`MAX_VALUES`] values, or holding more than [`MAX_TEXT`]
//! bytes of keys and values, so one evaluation costs at most a few thousand string
//! comparisons whatever a client sends.

use serde::Deserialize;
use std::collections::BTreeMap;

/// Deepest tree accepted (a leaf alone has depth 1).
pub const MAX_DEPTH: usize = 8;
/// Most nodes in one tree.
pub const MAX_NODES: usize = 64;
/// Most values (`val` and `vals` items) in one tree.
pub const MAX_VALUES: usize = 256;
/// Most bytes of keys and values in one tree.
pub const MAX_TEXT: usize = 8192;

/// One node of a tags filter, as on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
pub struct FilterNode {
    /// `""` (leaf), `and`, `or` or `not`.
    #[serde(default)]
    pub op: String,
    /// The tag compared (leaves).
    #[serde(default)]
    pub key: String,
    /// The comparison (leaves).
    #[serde(default)]
    pub cmp: String,
    /// The value most comparisons use.
    #[serde(default)]
    pub val: String,
    /// The values of `in` and `nin`.
    #[serde(default)]
    pub vals: Vec<String>,
    /// Children of `and`, `or`, `not`.
    #[serde(default)]
    pub nodes: Vec<FilterNode>,
}

/// Why a filter is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The tree is not well formed (the text says where).
    #[error("invalid tags filter: {0}")]
    Invalid(String),
    /// The tree is over one of the bounds.
    #[error("tags filter too large: {0}")]
    TooLarge(&'static str),
}

#[derive(Default)]
struct Size {
    nodes: usize,
    values: usize,
    text: usize,
}

impl FilterNode {
    /// Checks the tree's shape and bounds (once, at subscribe time).
    pub fn validate(&self) -> Result<(), FilterError> {
        self.check(1, &mut Size::default())
    }

    fn check(&self, depth: usize, size: &mut Size) -> Result<(), FilterError> {
        if depth > MAX_DEPTH {
            return Err(FilterError::TooLarge("deeper than 8 levels"));
        }
        size.nodes += 1;
        size.values += usize::from(!self.val.is_empty()) + self.vals.len();
        size.text +=
            self.key.len() + self.val.len() + self.vals.iter().map(String::len).sum::<usize>();
        if size.nodes > MAX_NODES {
            return Err(FilterError::TooLarge("more than 64 nodes"));
        }
        if size.values > MAX_VALUES {
            return Err(FilterError::TooLarge("more than 256 values"));
        }
        if size.text > MAX_TEXT {
            return Err(FilterError::TooLarge(
                "more than 8192 bytes of keys and values",
            ));
        }
        let invalid = |why: String| Err(FilterError::Invalid(why));
        match self.op.as_str() {
            "" => {
                if !self.nodes.is_empty() {
                    return invalid("a leaf has no child nodes".into());
                }
                match self.cmp.as_str() {
                    "eq" | "neq" | "sw" | "ew" | "ct" | "lt" | "lte" | "gt" | "gte" => {
                        if self.val.is_empty() || !self.vals.is_empty() {
                            return invalid(format!("{} takes val, not vals", self.cmp));
                        }
                    }
                    "in" | "nin" => {
                        if self.vals.is_empty() || !self.val.is_empty() {
                            return invalid(format!("{} takes vals, not val", self.cmp));
                        }
                    }
                    "ex" | "nex" => {
                        if !self.val.is_empty() || !self.vals.is_empty() {
                            return invalid(format!("{} takes neither val nor vals", self.cmp));
                        }
                    }
                    "" => return invalid("a leaf needs cmp".into()),
                    other => return invalid(format!("unknown cmp {other:?}")),
                }
                if self.key.is_empty() {
                    return invalid("a leaf needs key".into());
                }
                Ok(())
            }
            "and" | "or" | "not" => {
                if !self.key.is_empty() || !self.cmp.is_empty() {
                    return invalid(format!("{} takes only nodes", self.op));
                }
                if self.op == "not" && self.nodes.len() != 1 {
                    return invalid("not takes exactly one node".into());
                }
                if self.nodes.is_empty() {
                    return invalid(format!("{} needs at least one node", self.op));
                }
                self.nodes.iter().try_for_each(|n| n.check(depth + 1, size))
            }
            other => invalid(format!("unknown op {other:?}")),
        }
    }

    /// Whether a publication with `tags` passes. Only for validated trees (anything
    /// else does not match).
    pub fn matches(&self, tags: &BTreeMap<String, String>) -> bool {
        match self.op.as_str() {
            "" => {
                let tag = tags.get(&self.key).map(String::as_str);
                match (self.cmp.as_str(), tag) {
                    ("eq", t) => t == Some(self.val.as_str()),
                    ("neq", t) => t != Some(self.val.as_str()),
                    // A missing tag compares as the empty string, as in centrifuge.
                    ("in", t) => self.vals.iter().any(|v| v == t.unwrap_or("")),
                    ("nin", t) => !self.vals.iter().any(|v| v == t.unwrap_or("")),
                    ("ex", t) => t.is_some(),
                    ("nex", t) => t.is_none(),
                    ("sw", Some(t)) => t.starts_with(self.val.as_str()),
                    ("ew", Some(t)) => t.ends_with(self.val.as_str()),
                    ("ct", Some(t)) => t.contains(self.val.as_str()),
                    (cmp @ ("lt" | "lte" | "gt" | "gte"), Some(t)) => {
                        match (decimal(t), decimal(&self.val)) {
                            (Some(a), Some(b)) => {
                                let o = compare(&a, &b);
                                match cmp {
                                    "lt" => o.is_lt(),
                                    "lte" => o.is_le(),
                                    "gt" => o.is_gt(),
                                    _ => o.is_ge(),
                                }
                            }
                            _ => false,
                        }
                    }
                    _ => false,
                }
            }
            "and" => self.nodes.iter().all(|n| n.matches(tags)),
            "or" => self.nodes.iter().any(|n| n.matches(tags)),
            "not" => self.nodes.len() == 1 && !self.nodes[0].matches(tags),
            _ => false,
        }
    }
}

/// A decimal number as sign, integer digits and fraction digits, without leading or
/// trailing zeros: compared exactly, never through a float.
struct Decimal<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
}

fn decimal(text: &str) -> Option<Decimal<'_>> {
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return None;
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    // -0 is 0.
    let negative = negative && !(int.is_empty() && frac.is_empty());
    Some(Decimal {
        negative,
        int,
        frac,
    })
}

fn compare(a: &Decimal<'_>, b: &Decimal<'_>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let magnitude = a
        .int
        .len()
        .cmp(&b.int.len())
        .then_with(|| a.int.cmp(b.int))
        .then_with(|| a.frac.cmp(b.frac));
    match (a.negative, b.negative) {
        (false, false) => magnitude,
        (true, true) => magnitude.reverse(),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(json: &str) -> FilterNode {
        let f: FilterNode = serde_json::from_str(json).unwrap();
        f.validate().unwrap();
        f
    }

    #[test]
    fn leaf_comparisons() {
        let t = tags(&[("ticker", "AAPL"), ("price", "101.50"), ("neg", "-3")]);
        let yes = |j: &str| assert!(parse(j).matches(&t), "{j}");
        let no = |j: &str| assert!(!parse(j).matches(&t), "{j}");
        yes(r#"{"key":"ticker","cmp":"eq","val":"AAPL"}"#);
        no(r#"{"key":"ticker","cmp":"eq","val":"MSFT"}"#);
        no(r#"{"key":"nope","cmp":"eq","val":"AAPL"}"#);
        yes(r#"{"key":"nope","cmp":"neq","val":"AAPL"}"#);
        yes(r#"{"key":"ticker","cmp":"in","vals":["MSFT","AAPL"]}"#);
        no(r#"{"key":"ticker","cmp":"nin","vals":["MSFT","AAPL"]}"#);
        yes(r#"{"key":"ticker","cmp":"ex"}"#);
        yes(r#"{"key":"nope","cmp":"nex"}"#);
        yes(r#"{"key":"ticker","cmp":"sw","val":"AA"}"#);
        yes(r#"{"key":"ticker","cmp":"ew","val":"PL"}"#);
        yes(r#"{"key":"ticker","cmp":"ct","val":"AP"}"#);
        no(r#"{"key":"nope","cmp":"ct","val":"AP"}"#);
        // Exact decimals: 101.50 > 101.5 is false, 101.50 >= 101.5 is true.
        no(r#"{"key":"price","cmp":"gt","val":"101.5"}"#);
        yes(r#"{"key":"price","cmp":"gte","val":"101.5"}"#);
        yes(r#"{"key":"price","cmp":"gt","val":"99.999"}"#);
        yes(r#"{"key":"price","cmp":"lt","val":"1000"}"#);
        yes(r#"{"key":"neg","cmp":"lt","val":"-2.5"}"#);
        no(r#"{"key":"neg","cmp":"lte","val":"-4"}"#);
        // Not a number: no match either way.
        no(r#"{"key":"ticker","cmp":"lt","val":"5"}"#);
        no(r#"{"key":"ticker","cmp":"gte","val":"5"}"#);
    }

    #[test]
    fn logic() {
        let f = parse(
            r#"{"op":"and","nodes":[
                {"key":"kind","cmp":"eq","val":"trade"},
                {"op":"or","nodes":[
                    {"key":"ticker","cmp":"eq","val":"AAPL"},
                    {"op":"not","nodes":[{"key":"venue","cmp":"ex"}]}
                ]}
            ]}"#,
        );
        assert!(f.matches(&tags(&[
            ("kind", "trade"),
            ("ticker", "AAPL"),
            ("venue", "x")
        ])));
        assert!(f.matches(&tags(&[("kind", "trade"), ("ticker", "MSFT")])));
        assert!(!f.matches(&tags(&[
            ("kind", "trade"),
            ("ticker", "MSFT"),
            ("venue", "x")
        ])));
        assert!(!f.matches(&tags(&[("ticker", "AAPL")])));
    }

    #[test]
    fn malformed_trees_are_refused() {
        let bad = |j: &str| {
            let f: FilterNode = serde_json::from_str(j).unwrap();
            assert!(matches!(f.validate(), Err(FilterError::Invalid(_))), "{j}");
        };
        bad(r#"{}"#);
        bad(r#"{"key":"a","cmp":"like","val":"x"}"#);
        bad(r#"{"key":"a","cmp":"eq"}"#);
        bad(r#"{"key":"a","cmp":"eq","val":"x","vals":["y"]}"#);
        bad(r#"{"key":"a","cmp":"in","val":"x"}"#);
        bad(r#"{"key":"a","cmp":"ex","val":"x"}"#);
        bad(r#"{"cmp":"eq","val":"x"}"#);
        bad(r#"{"op":"xor","nodes":[{"key":"a","cmp":"ex"}]}"#);
        bad(r#"{"op":"and","nodes":[]}"#);
        bad(r#"{"op":"not","nodes":[{"key":"a","cmp":"ex"},{"key":"b","cmp":"ex"}]}"#);
        bad(r#"{"op":"and","nodes":[{"key":"a","cmp":"zz","val":"1"}]}"#);
    }

    #[test]
    fn bounds_hold() {
        let leaf = r#"{"key":"a","cmp":"ex"}"#;
        let nest = |n: usize| {
            let mut j = leaf.to_string();
            for _ in 1..n {
                j = format!(r#"{{"op":"not","nodes":[{j}]}}"#);
            }
            serde_json::from_str::<FilterNode>(&j).unwrap()
        };
        assert!(nest(MAX_DEPTH).validate().is_ok());
        assert!(matches!(
            nest(MAX_DEPTH + 1).validate(),
            Err(FilterError::TooLarge(_))
        ));
        let wide = format!(
            r#"{{"op":"or","nodes":[{}]}}"#,
            vec![leaf; MAX_NODES].join(",")
        );
        let wide: FilterNode = serde_json::from_str(&wide).unwrap();
        assert!(matches!(wide.validate(), Err(FilterError::TooLarge(_))));
        let vals: Vec<String> = (0..=MAX_VALUES).map(|i| i.to_string()).collect();
        let many = FilterNode {
            key: "a".into(),
            cmp: "in".into(),
            vals,
            ..Default::default()
        };
        assert!(matches!(many.validate(), Err(FilterError::TooLarge(_))));
        let long = FilterNode {
            key: "a".into(),
            cmp: "eq".into(),
            val: "x".repeat(MAX_TEXT),
            ..Default::default()
        };
        assert!(matches!(long.validate(), Err(FilterError::TooLarge(_))));
    }
}
