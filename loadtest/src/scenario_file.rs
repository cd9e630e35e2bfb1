//! Scenario files: a TOML table whose keys are the long flags, turned into arguments.
//!
//! ```toml
//! scenario = "fanout"          # optional when the command line names the scenario
//! local = 2
//! subscribers = 5000
//! rate = 200
//! duration = "30s"
//! expect = ["lost==0", "p99_ms<=50"]
//! ```
//!
//! The file's arguments are inserted right after the scenario name, before the command
//! line's own, so a flag given on the command line wins (clap keeps the last value).
//! Lists (`expect`, `url`) add up.

use anyhow::{bail, Context};
use std::path::Path;

/// Expands `--scenario-file PATH` (or `=PATH`) in `args` (program name first).
pub fn expand(args: Vec<String>) -> anyhow::Result<Vec<String>> {
    let Some(path) = find_path(&args) else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let (scenario, extra) =
        to_args(&text).with_context(|| format!("in {}", Path::new(&path).display()))?;
    let mut args = args;
    // Where the scenario name is: the first argument that is not a flag.
    let named = args.get(1).is_some_and(|a| !a.starts_with('-'));
    if !named {
        let Some(name) = scenario else {
            bail!("{path}: no scenario on the command line and no `scenario` key in the file");
        };
        args.insert(1, name);
    }
    let at = 2.min(args.len());
    args.splice(at..at, extra);
    Ok(args)
}

fn find_path(args: &[String]) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--scenario-file" {
            return it.next().cloned();
        }
        if let Some(p) = a.strip_prefix("--scenario-file=") {
            return Some(p.to_owned());
        }
    }
    None
}

/// The file's `scenario` and the arguments its other keys stand for.
pub fn to_args(text: &str) -> anyhow::Result<(Option<String>, Vec<String>)> {
    let table: toml::Table = toml::from_str(text)?;
    let mut scenario = None;
    let mut out = Vec::new();
    for (key, value) in table {
        if key == "scenario" {
            match value {
                toml::Value::String(s) => scenario = Some(s),
                other => bail!("`scenario` must be a string, not {other}"),
            }
            continue;
        }
        if key == "scenario_file" || key == "scenario-file" {
            bail!("a scenario file cannot name another one");
        }
        let flag = format!("--{}", key.replace('_', "-"));
        match value {
            toml::Value::Boolean(true) => out.push(flag),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                for item in items {
                    out.push(flag.clone());
                    out.push(scalar(&key, item)?);
                }
            }
            other => {
                out.push(flag);
                out.push(scalar(&key, other)?);
            }
        }
    }
    Ok((scenario, out))
}

fn scalar(key: &str, value: toml::Value) -> anyhow::Result<String> {
    Ok(match value {
        toml::Value::String(s) => s,
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => bail!("`{key}`: unsupported value {other}"),
    })
}
