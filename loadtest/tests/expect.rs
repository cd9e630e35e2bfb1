//! `--expect` targets: parsing and evaluation.

// Cargo links each test crate with every dependency of the package, and a test uses a
// few: an unused one shows on the library target, where it means something.
#![allow(unused_crate_dependencies)]

use herald_loadtest::expect::{evaluate, unknown_metrics, Expect, Op};
use std::collections::BTreeMap;

fn parse(text: &str) -> Expect {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn parses_every_operator() {
    let cases = [
        ("deliveries_per_sec>=50000", Op::Ge, 50000.0),
        ("p99_ms<=25.5", Op::Le, 25.5),
        ("lost==0", Op::Eq, 0.0),
        ("duplicates!=3", Op::Ne, 3.0),
        ("connect_rate>1e3", Op::Gt, 1000.0),
        ("max_ms<-1", Op::Lt, -1.0),
        ("  lost == 0  ", Op::Eq, 0.0),
    ];
    for (text, op, value) in cases {
        let e = parse(text);
        assert_eq!(e.op, op, "{text}");
        assert_eq!(e.value, value, "{text}");
    }
    assert_eq!(
        parse("deliveries_per_sec>=50000").metric,
        "deliveries_per_sec"
    );
}

#[test]
fn two_character_operators_win_over_one() {
    // `>=` must not be read as `>` with the value `=5`.
    let e = parse("a>=5");
    assert_eq!((e.metric.as_str(), e.op, e.value), ("a", Op::Ge, 5.0));
    let e = parse("a<=5");
    assert_eq!(e.op, Op::Le);
}

#[test]
fn rejects_malformed_targets() {
    for bad in [
        "",
        "lost",
        "lost=0",
        "==0",
        "lost==",
        "lost==abc",
        "lo st==0",
        "lost==inf",
        "lost==NaN",
        "a.b<1",
    ] {
        assert!(bad.parse::<Expect>().is_err(), "{bad:?} should not parse");
    }
}

#[test]
fn displays_as_written() {
    assert_eq!(parse("p99_ms<=25").to_string(), "p99_ms<=25");
    assert_eq!(parse("lost == 0").to_string(), "lost==0");
}

#[test]
fn evaluates_against_metrics() {
    let metrics: BTreeMap<String, f64> = [
        ("lost", 0.0),
        ("p99_ms", 12.5),
        ("deliveries_per_sec", 90_000.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let expects = vec![
        parse("lost==0"),
        parse("p99_ms<=10"),
        parse("deliveries_per_sec>=50000"),
        parse("reconnects==0"),
    ];
    let out = evaluate(&expects, &metrics);
    let verdicts: Vec<bool> = out.iter().map(|o| o.passed).collect();
    assert_eq!(verdicts, [true, false, true, false]);
    assert_eq!(out[1].actual, Some(12.5));
    // A metric the report does not have fails rather than passing silently.
    assert_eq!(out[3].actual, None);
}

#[test]
fn operators_hold_as_documented() {
    assert!(Op::Ge.holds(5.0, 5.0) && !Op::Gt.holds(5.0, 5.0));
    assert!(Op::Le.holds(5.0, 5.0) && !Op::Lt.holds(5.0, 5.0));
    assert!(Op::Eq.holds(0.0, 0.0) && Op::Ne.holds(1.0, 0.0));
}

#[test]
fn finds_unknown_metric_names() {
    let expects = vec![parse("lost==0"), parse("lots==0")];
    assert_eq!(unknown_metrics(&expects, &["lost", "p99_ms"]), ["lots"]);
    assert!(unknown_metrics(&expects[..1], herald_loadtest::report::METRICS).is_empty());
}
