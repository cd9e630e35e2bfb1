//! WebSocket framing, client commands, the command line and scenario files.

// Cargo links each test crate with every dependency of the package, and a test uses a
// few: an unused one shows on the library target, where it means something.
#![allow(unused_crate_dependencies)]

use clap::Parser;
use herald_loadtest::cli::{parse_duration, Cli, Scenario};
use herald_loadtest::protocol::{
    decode, encode_connect, encode_payload, encode_publish, encode_subscribe, fast_pub, read_stamp,
    Stamp,
};
use herald_loadtest::scenario_file;
use herald_loadtest::shard::Layout;
use herald_loadtest::ws::frame::{parse_header, write_frame, FrameError, MaskGen, OP_TEXT};
use herald_shared::protocol::reply::{encode_pub_push, ClientInfo, Publication};
use herald_shared::protocol::RawJson;
use std::collections::BTreeMap;
use std::time::Duration;

#[test]
fn masked_frames_unmask_to_the_payload() {
    for len in [0usize, 5, 125, 126, 1000, 70_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        let mask = MaskGen::new(7).next_mask();
        write_frame(&mut out, OP_TEXT, &payload, mask);
        assert_eq!(out[0], 0x81);
        assert_ne!(out[1] & 0x80, 0, "client frames are masked");
        let (len_at, hdr) = match out[1] & 0x7F {
            126 => (4, 8),
            127 => (10, 14),
            _ => (2, 6),
        };
        let key = &out[len_at..len_at + 4];
        let unmasked: Vec<u8> = out[hdr..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        assert_eq!(unmasked, payload, "len {len}");
    }
}

#[test]
fn parses_server_frame_headers() {
    assert_eq!(parse_header(&[0x81], 100), Ok(None));
    let h = parse_header(&[0x81, 5, b'h', b'e'], 100).unwrap().unwrap();
    assert!(h.fin);
    assert_eq!((h.opcode, h.payload_at, h.len), (1, 2, 5));
    let h = parse_header(&[0x01, 126, 0x01, 0x00], 1000)
        .unwrap()
        .unwrap();
    assert!(!h.fin);
    assert_eq!((h.payload_at, h.len), (4, 256));
    assert_eq!(
        parse_header(&[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0], 1000),
        Err(FrameError::TooLarge(65536))
    );
    assert_eq!(parse_header(&[0x81, 0x85], 100), Err(FrameError::Masked));
}

#[test]
fn commands_are_what_the_node_expects() {
    let mut out = Vec::new();
    encode_connect(&mut out, 1, "tok");
    assert_eq!(
        out,
        br#"{"id":1,"connect":{"token":"tok","name":"herald-loadtest"}}"#
    );
    out.clear();
    encode_subscribe(&mut out, 2, "room-1", Some(("ep", 42)), false);
    assert_eq!(
        out,
        br#"{"id":2,"subscribe":{"channel":"room-1","recover":true,"epoch":"ep","offset":42}}"#
    );
    out.clear();
    encode_publish(&mut out, 1000, "c", br#"{"t":1}"#);
    assert_eq!(
        out,
        br#"{"id":1000,"publish":{"channel":"c","data":{"t":1}}}"#
    );
}

#[test]
fn decodes_replies_pushes_and_pings() {
    assert!(decode(b"{}").unwrap().is_ping());
    let m = decode(
        br#"{"push":{"channel":"c","pub":{"data":{"t":1},"info":{"user":"u"},"offset":7}}}"#,
    )
    .unwrap();
    assert!(!m.is_ping());
    let p = m.push.unwrap();
    assert_eq!(p.channel, "c");
    assert_eq!(p.publication.unwrap().offset, 7);
    let m = decode(br#"{"id":2,"subscribe":{"epoch":"e","offset":3,"recovered":true,"publications":[{"data":1,"offset":3}]}}"#).unwrap();
    let s = m.subscribe.unwrap();
    assert_eq!(
        (
            s.epoch.as_ref(),
            s.offset,
            s.recovered,
            s.publications.len()
        ),
        ("e", 3, true, 1)
    );
    let m = decode(br#"{"id":3,"error":{"code":102,"message":"unknown channel"}}"#).unwrap();
    assert_eq!(m.error.unwrap().code, 102);
    let m =
        decode(br#"{"push":{"disconnect":{"code":3001,"reason":"shutdown","reconnect":true}}}"#)
            .unwrap();
    assert_eq!(m.push.unwrap().disconnect.unwrap().code, 3001);
}

/// A publication push as the node encodes it.
fn node_push(channel: &str, data: &str, offset: u64, info: Option<ClientInfo>) -> Vec<u8> {
    let publication = Publication {
        data: RawJson::parse(data).unwrap(),
        info,
        offset,
        tags: BTreeMap::new(),
        delta: false,
        delta_publish: false,
    };
    encode_pub_push(channel, &publication).to_vec()
}

#[test]
fn the_fast_publication_path_reads_what_the_full_parse_reads_or_declines() {
    let stamp = Stamp {
        sent_micros: 1_790_000_000_123_456,
        publisher: 7,
        seq: 42,
    };
    for size in [0, 40, 64, 300, 1000] {
        let mut payload = Vec::new();
        encode_payload(&mut payload, stamp, size);
        let payload = String::from_utf8(payload).unwrap();
        for (channel, offset) in [("fanout-2deae5", 9), ("room:7", 0), ("a", u64::MAX)] {
            let line = node_push(channel, &payload, offset, None);
            let fast = fast_pub(&line)
                .unwrap_or_else(|| panic!("declined {}", String::from_utf8_lossy(&line)));
            let full = decode(&line).unwrap().push.unwrap();
            let p = full.publication.unwrap();
            assert_eq!(fast.channel, full.channel);
            assert_eq!(fast.offset, p.offset);
            assert_eq!(Some(fast.stamp), read_stamp(p.data.get().as_bytes()));
        }
    }

    // Anything else goes to the full parse.
    let mut payload = Vec::new();
    encode_payload(&mut payload, stamp, 64);
    let payload = String::from_utf8(payload).unwrap();
    let info = ClientInfo {
        user: "u".into(),
        client: "c".into(),
        ..Default::default()
    };
    let declined = [
        node_push("c", &payload, 3, Some(info)),
        node_push("c\"q", &payload, 3, None),
        node_push("c", r#"{"t":1,"g":2,"s":3,"p":"x}y"}"#, 3, None),
        node_push("c", r#"{"t":1,"g":2,"s":3,"p":"x","q":1}"#, 3, None),
        node_push("c", r#"{"text":"hi"}"#, 3, None),
        br#"{"id":2,"subscribe":{"epoch":"e"}}"#.to_vec(),
        b"{}".to_vec(),
    ];
    for line in declined {
        assert_eq!(fast_pub(&line), None, "{}", String::from_utf8_lossy(&line));
        decode(&line).expect("still valid for the full parse");
    }
}

#[test]
fn layouts_spread_clients_over_channels() {
    let rooms = Layout {
        prefix: "room".into(),
        count: 3,
        group: 2,
    };
    let of: Vec<String> = (0..7).flat_map(|i| rooms.channels_of(i)).collect();
    assert_eq!(
        of,
        ["room-0", "room-0", "room-1", "room-1", "room-2", "room-2", "room-0"]
    );
    assert_eq!(rooms.all(), ["room-0", "room-1", "room-2"]);
    let one = Layout {
        prefix: "fan".into(),
        count: 1,
        group: 1,
    };
    assert_eq!(one.channels_of(9), ["fan"]);
    assert!(Layout::default().channels_of(0).is_empty());
}

#[test]
fn durations() {
    assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
    assert!(parse_duration("10x").is_err());
    assert!(parse_duration("-1s").is_err());
}

#[test]
fn command_line_parses_scenarios_and_targets() {
    let cli = Cli::try_parse_from([
        "herald-loadtest",
        "fanout",
        "--local",
        "1",
        "--duration",
        "2s",
        "--expect",
        "lost==0",
        "--expect",
        "p99_ms<=50",
        "--subscribers",
        "10",
    ])
    .unwrap();
    let Scenario::Fanout(a) = cli.scenario else {
        panic!("not fanout");
    };
    assert_eq!((a.subscribers, a.common.local), (10, Some(1)));
    assert_eq!(a.common.expect.len(), 2);
    assert!(Cli::try_parse_from([
        "herald-loadtest",
        "fanout",
        "--local",
        "1",
        "--url",
        "ws://x:1"
    ])
    .is_err());
    assert!(Cli::try_parse_from(["herald-loadtest", "fanout", "--expect", "lost"]).is_err());
    // A flag given twice: the last one wins (scenario files rely on it).
    let cli = Cli::try_parse_from([
        "herald-loadtest",
        "idle",
        "--connections",
        "5",
        "--connections",
        "7",
    ])
    .unwrap();
    assert!(matches!(cli.scenario, Scenario::Idle(a) if a.connections == 7));
}

#[test]
fn scenario_files_become_flags_that_the_command_line_overrides() {
    let (scenario, args) = scenario_file::to_args(
        "scenario = \"rooms\"\nrooms = 4\nrate = 2.5\nduration = \"3s\"\nquiet = true\nexpect = [\"lost==0\", \"p99_ms<=9\"]\n",
    )
    .unwrap();
    assert_eq!(scenario.as_deref(), Some("rooms"));
    assert_eq!(
        args,
        [
            "--duration",
            "3s",
            "--expect",
            "lost==0",
            "--expect",
            "p99_ms<=9",
            "--quiet",
            "--rate",
            "2.5",
            "--rooms",
            "4"
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.toml");
    std::fs::write(&path, "scenario = \"rooms\"\nrooms = 4\nmembers = 3\n").unwrap();
    let argv = |extra: &[&str]| {
        let mut v = vec!["herald-loadtest".to_owned()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v.push("--scenario-file".into());
        v.push(path.display().to_string());
        scenario_file::expand(v).unwrap()
    };
    let cli = Cli::try_parse_from(argv(&["--rooms", "9"])).unwrap();
    assert!(matches!(cli.scenario, Scenario::Rooms(a) if a.rooms == 9 && a.members == 3));
    let cli = Cli::try_parse_from(argv(&[])).unwrap();
    assert!(matches!(cli.scenario, Scenario::Rooms(a) if a.rooms == 4));
    assert!(scenario_file::to_args("scenario = 3").is_err());
    assert!(scenario_file::to_args("nested = { a = 1 }").is_err());
}
