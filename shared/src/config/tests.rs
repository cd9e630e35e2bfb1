use super::parse::describe_range;
use super::settings::edit_distance;
use super::*;
use std::io::Write as _;
use std::time::Duration;

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
