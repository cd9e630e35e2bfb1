//! Structure-aware fuzzing of the two decoders that read bytes from the outside, on the
//! stable toolchain (cargo-fuzz needs nightly).
//!
//! - [`decode_frame`]: every text frame a JSON client sends.
//! - [`decode_protobuf_frame`]: every binary frame a Protobuf client sends (random
//!   well-formed `Command`s, encoded by prost, then mutated byte-wise and at the level
//!   of the length prefixes: overlong, overflowing and past-the-end varints).
//! - [`codec::decode`] and [`codec::decode_publication`]: every NATS message, from other
//!   nodes or (plain JSON) from backends.
//!
//! No coverage feedback: a seeded xorshift PRNG mutates a corpus of valid frames and
//! envelopes (bit flips, truncation, splicing, repeated ranges, inserted tokens such as
//! deep nesting, huge numbers, NUL, lone surrogates and invalid UTF-8) and also builds
//! random well-formed envelopes. Each input is checked for:
//!
//! - no panic (a panic prints the input as a Rust literal, ready to become a named
//!   regression test below);
//! - errors are errors: invalid UTF-8 is `InvalidUtf8`, more commands than allowed is
//!   `TooManyCommands`, a decoded frame has one command per non-blank line;
//! - JSON the node forwards verbatim (`data`, `info`) is valid JSON and holds no `\n`,
//!   the separator of the frames it is copied into;
//! - a decoded envelope re-encodes and decodes to the same value;
//! - a Protobuf frame decodes exactly when an independent length-delimited reader
//!   (prost's own) finds whole messages back to back, with one command each, and every
//!   payload it accepted is JSON as above; an unmutated frame of well-formed commands
//!   decodes to the values it was built from.
//!
//! Run: `cargo test -p herald-shared --test fuzz` (200 000 inputs in all by default, a few
//! seconds in a debug build). `HERALD_FUZZ_ITERS=5000000` runs longer;
//! `HERALD_FUZZ_SEED=<n>` changes the seed (printed when an input fails, so a run can be
//! repeated exactly).

// Cargo links each test crate with every dependency of the package, and a test uses a
// few: an unused one shows on the library target, where it means something.
#![allow(unused_crate_dependencies)]

use herald_shared::codec::{
    self, decode, decode_publication, encode, encode_publication, Control, Envelope, NodeStatus,
    WireClientInfo, WirePublication,
};
use herald_shared::protocol::protobuf::{decode_protobuf_frame, pb};
use herald_shared::protocol::{decode_frame, Command, DecodeError, Method, RawJson};
use prost::Message;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Commands per frame, as the node allows (`handler::MAX_COMMANDS_PER_FRAME`).
const MAX_COMMANDS: usize = 100;

// -- PRNG --------------------------------------------------------------------------------

/// xorshift64*: tiny, fast, and reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Total inputs across the fuzz tests, and the seed.
fn budget(share_percent: u64) -> (u64, u64) {
    let total = env_u64("HERALD_FUZZ_ITERS", 200_000);
    let seed = env_u64("HERALD_FUZZ_SEED", 0x4845_5241_4C44); // "HERALD"
    (total * share_percent / 100, seed)
}

// -- mutation ----------------------------------------------------------------------------

/// Bytes that matter to JSON, UTF-8 and bincode's varints.
const INTERESTING_BYTES: &[u8] = &[
    0x00, 0x01, 0x09, b'\n', b'\r', b' ', b'"', b'\\', b',', b':', b'[', b']', b'{', b'}', b'0',
    b'-', b'e', 0x7f, 0x80, 0xbf, 0xc0, 0xc1, 0xed, 0xf4, 0xf5, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff,
];

/// Fragments inserted whole: nesting, numbers at and past every limit, escapes that decode
/// to NUL or lone surrogates, raw invalid UTF-8 (overlong, surrogate, truncated).
const TOKENS: &[&[u8]] = &[
    b"18446744073709551615",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"4294967296",
    b"-1",
    b"1e999999",
    b"-1e-999999",
    b"0.0000000000000000000000000000001e400",
    b"123456789012345678901234567890123456789012345678901234567890",
    b"\"\\u0000\"",
    b"\"\\ud800\"",
    b"\"\\udfff\\ud800\"",
    b"\"\\uDBFF\\uDFFF\"",
    b"\"\\u\"",
    b"\"\\x41\"",
    b"\x00",
    b"\xff\xfe",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe2\x82",
    b"\n",
    b"\r\n",
    b"\n\n\n",
    b"null",
    b"true",
    b"{}",
    b"[]",
    b"\"offset\":\"99999999999999999999\"",
    b"\"offset\":-5",
    b"\"id\":4294967296",
    b"\"id\":-1",
    b"\"data\":",
    b"\"connect\":{},\"subscribe\":{}",
    b"\"subs\":{\"a\":{\"recover\":\"yes\"}}",
    b"\"limit\":2147483648",
];

fn nesting(rng: &mut Rng) -> Vec<u8> {
    let depth = match rng.below(32) {
        0..=11 => 127 + rng.below(4), // around serde_json's recursion limit (128)
        12..=27 => rng.below(64),
        28..=30 => 1000 + rng.below(1000),
        _ => 20_000 + rng.below(20_000),
    };
    let (open, close): (&[u8], &[u8]) = match rng.below(3) {
        0 => (b"[", b"]"),
        1 => (b"{\"a\":", b"}"),
        _ => (b"[{\"x\":", b"}]"),
    };
    let mut out = Vec::with_capacity(depth * (open.len() + close.len()) + 1);
    for _ in 0..depth {
        out.extend_from_slice(open);
    }
    out.push(b'1');
    if rng.chance(2) {
        for _ in 0..depth {
            out.extend_from_slice(close);
        }
    }
    out
}

/// Applies 1 to 4 random mutations; `others` is the corpus, for splicing.
fn mutate(rng: &mut Rng, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        let at = if len == 0 { 0 } else { rng.below(len + 1) };
        match rng.below(11) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = *rng.pick(INTERESTING_BYTES);
            }
            2 if len > 0 => v.truncate(rng.below(len)),
            3 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(16)).min(len);
                v.drain(start..end);
            }
            4 if len > 0 => {
                // Repeat a range a few times (duplicated fields, repeated commands).
                let start = rng.below(len);
                let end = (start + 1 + rng.below(32)).min(len);
                let chunk = v[start..end].to_vec();
                for _ in 0..1 + rng.below(4) {
                    v.splice(end..end, chunk.iter().copied());
                }
            }
            5 => {
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(at..at, bytes);
            }
            6 => {
                let other = rng.pick(others);
                let cut = if other.is_empty() {
                    0
                } else {
                    rng.below(other.len())
                };
                v.truncate(at);
                v.extend_from_slice(&other[cut..]);
            }
            7 => {
                let t = *rng.pick(TOKENS);
                v.splice(at..at, t.iter().copied());
            }
            8 => {
                let n = nesting(rng);
                v.splice(at..at, n);
            }
            9 => {
                // Replace the first digit run after `at` with a huge or negative number.
                if let Some(p) = v[at.min(len)..].iter().position(u8::is_ascii_digit) {
                    let s = at.min(len) + p;
                    let e = v[s..]
                        .iter()
                        .position(|b| !b.is_ascii_digit())
                        .map_or(v.len(), |q| s + q);
                    let t = *rng.pick(&TOKENS[..9]);
                    v.splice(s..e, t.iter().copied());
                }
            }
            _ => {
                // bincode varint markers (251: u16, 252: u32, 253: u64, 254: u128 follow).
                let b = 251 + rng.below(5) as u8;
                let n = rng.below(9);
                let mut ins = vec![b];
                ins.extend((0..n).map(|_| if rng.chance(2) { 0xff } else { 0 }));
                v.splice(at..at, ins);
            }
        }
    }
    v
}

/// Runs `f`, and on a panic reports the input so it can be kept as a regression test.
fn no_panic(what: &str, seed: u64, iteration: u64, input: &[u8], f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        panic!(
            "{what} panicked (HERALD_FUZZ_SEED={seed}, iteration {iteration}) on input\n\
             b\"{}\"\n",
            input.escape_ascii()
        );
    }
}

// -- client frames -----------------------------------------------------------------------

fn frame_corpus() -> Vec<Vec<u8>> {
    [
        &br#"{"id":1,"connect":{"token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.sig","name":"js","version":"2.0"}}"#[..],
        br#"{"id":1,"connect":{"token":"t","data":{"x":[1,2,{"y":null}]},"subs":{"news":{"recover":true,"offset":"5","epoch":"abc"}}}}"#,
        br#"{"id":2,"subscribe":{"channel":"chat:1","recover":true,"offset":7,"epoch":"e","flag":2,"join_leave":true}}"#,
        br#"{"id":3,"subscribe":{"channel":"$private","token":"a.b.c","data":"x"}}"#,
        br#"{"id":4,"unsubscribe":{"channel":"chat:1"}}"#,
        br#"{"id":5,"publish":{"channel":"chat:1","data":{"text":"hi \u00e9 \ud83d\ude00","n":-1.5e10}}}"#,
        br#"{"id":6,"presence":{"channel":"c"}}"#,
        br#"{"id":7,"presence_stats":{"channel":"c"}}"#,
        br#"{"id":8,"history":{"channel":"c","limit":-1,"since":{"offset":"3","epoch":"e"},"reverse":true}}"#,
        br#"{"id":9,"ping":{}}"#,
        br#"{"send":{"data":[true,false,null]}}"#,
        br#"{"id":10,"rpc":{"method":"m","data":{}}}"#,
        br#"{"id":11,"refresh":{"token":"x.y.z"}}"#,
        br#"{"id":12,"sub_refresh":{"channel":"$c","token":"x.y.z"}}"#,
        b"{}",
        b"{}\n{}\n\n{}\r\n",
        br#"{"id":13,"teleport":{"where":"mars"}}"#,
        b"{\"id\":1,\"connect\":{}}\n{\"id\":2,\"subscribe\":{\"channel\":\"a\"}}\n{\"id\":3,\"publish\":{\"channel\":\"a\",\"data\":1}}",
        b"",
        b"   \n  ",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect()
}

/// JSON the node forwards verbatim must be one valid JSON value without a raw `\n`.
fn check_raw(where_: &str, raw: &RawJson) {
    let text = raw.as_str();
    assert!(
        !text.contains('\n'),
        "{where_}: raw JSON keeps a newline, which would split the frame it is copied into: {text:?}"
    );
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .unwrap_or_else(|e| panic!("{where_}: raw JSON is not JSON ({e}): {text:?}"));
}

/// Every payload the decoded commands carry is raw JSON the node can forward.
fn check_payloads(commands: Vec<Command>) {
    for command in commands {
        let Ok((_, method)) = command.into_method() else {
            continue;
        };
        match method {
            Method::Connect(c) => {
                if let Some(d) = &c.data {
                    check_raw("connect.data", d);
                }
                for s in c.subs.values() {
                    if let Some(d) = &s.data {
                        check_raw("connect.subs.data", d);
                    }
                }
            }
            Method::Subscribe(s) => {
                if let Some(d) = &s.data {
                    check_raw("subscribe.data", d);
                }
            }
            Method::Publish(p) => {
                if let Some(d) = &p.data {
                    check_raw("publish.data", d);
                }
            }
            Method::Send(s) => {
                if let Some(d) = &s.data {
                    check_raw("send.data", d);
                }
            }
            Method::Rpc(r) => {
                if let Some(d) = &r.data {
                    check_raw("rpc.data", d);
                }
            }
            _ => {}
        }
    }
}

fn check_frame(input: &[u8]) {
    let result = decode_frame(input, MAX_COMMANDS);
    let text = match std::str::from_utf8(input) {
        Ok(t) => t,
        Err(_) => {
            assert!(
                matches!(result, Err(DecodeError::InvalidUtf8)),
                "invalid UTF-8 must be InvalidUtf8, got {result:?}"
            );
            return;
        }
    };
    let lines = text.split('\n').filter(|l| !l.trim().is_empty()).count();
    let commands = match result {
        Ok(c) => c,
        Err(DecodeError::InvalidUtf8) => panic!("valid UTF-8 reported as invalid"),
        Err(DecodeError::TooManyCommands(n)) => {
            assert_eq!(n, MAX_COMMANDS);
            assert!(lines > MAX_COMMANDS, "{lines} lines are not too many");
            return;
        }
        Err(e) => {
            // An error names its problem (its Display does not panic either).
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert_eq!(commands.len(), lines, "one command per non-blank line");
    check_payloads(commands);
}

#[test]
fn fuzz_client_frames() {
    let (iters, seed) = budget(35);
    let mut rng = Rng::new(seed);
    let corpus = frame_corpus();
    for input in &corpus {
        no_panic("decode_frame", seed, 0, input, || check_frame(input));
    }
    for i in 0..iters {
        let base = rng.pick(&corpus);
        let input = mutate(&mut rng, base, &corpus);
        no_panic("decode_frame", seed, i, &input, || check_frame(&input));
    }
}

// -- Protobuf client frames ---------------------------------------------------------------

/// Payload bytes as a Protobuf client might send them: JSON (valid or not), empty, or
/// arbitrary binary.
fn random_payload(rng: &mut Rng, json: &[Vec<u8>]) -> Vec<u8> {
    match rng.below(6) {
        0 => Vec::new(),
        1 => (0..rng.below(16)).map(|_| rng.next() as u8).collect(),
        2 => {
            let base = rng.pick(json).clone();
            mutate(rng, &base, json)
        }
        _ => random_json(rng).into_bytes(),
    }
}

fn random_command(rng: &mut Rng, json: &[Vec<u8>]) -> pb::Command {
    let mut c = pb::Command {
        id: if rng.chance(4) { 0 } else { rng.next() as u32 },
        ..Default::default()
    };
    let channel = random_string(rng);
    // Mostly one method, sometimes none (a pong) or two (malformed).
    for _ in 0..rng.below(3).max(usize::from(rng.chance(2))) {
        match rng.below(12) {
            0 => {
                let mut subs = std::collections::HashMap::new();
                for _ in 0..rng.below(3) {
                    let sub = pb::SubscribeRequest {
                        recover: rng.chance(2),
                        offset: rng.next(),
                        epoch: random_string(rng),
                        data: random_payload(rng, json),
                        ..Default::default()
                    };
                    subs.insert(random_string(rng), sub);
                }
                c.connect = Some(pb::ConnectRequest {
                    token: random_string(rng),
                    data: random_payload(rng, json),
                    subs,
                    name: random_string(rng),
                    version: random_string(rng),
                })
            }
            1 => {
                c.subscribe = Some(pb::SubscribeRequest {
                    channel: channel.clone(),
                    token: random_string(rng),
                    recover: rng.chance(2),
                    epoch: random_string(rng),
                    offset: rng.next(),
                    data: random_payload(rng, json),
                    positioned: rng.chance(2),
                    recoverable: rng.chance(2),
                    join_leave: rng.chance(2),
                    flag: rng.next() as i64,
                })
            }
            2 => {
                c.unsubscribe = Some(pb::UnsubscribeRequest {
                    channel: channel.clone(),
                })
            }
            3 => {
                c.publish = Some(pb::PublishRequest {
                    channel: channel.clone(),
                    data: random_payload(rng, json),
                })
            }
            4 => {
                c.presence = Some(pb::PresenceRequest {
                    channel: channel.clone(),
                })
            }
            5 => {
                c.presence_stats = Some(pb::PresenceStatsRequest {
                    channel: channel.clone(),
                })
            }
            6 => {
                c.history = Some(pb::HistoryRequest {
                    channel: channel.clone(),
                    limit: rng.next() as i32,
                    since: rng.chance(2).then(|| pb::StreamPosition {
                        offset: rng.next(),
                        epoch: random_string(rng),
                    }),
                    reverse: rng.chance(2),
                })
            }
            7 => c.ping = Some(pb::PingRequest {}),
            8 => {
                c.send = Some(pb::SendRequest {
                    data: random_payload(rng, json),
                })
            }
            9 => {
                c.rpc = Some(pb::RpcRequest {
                    data: random_payload(rng, json),
                    method: random_string(rng),
                })
            }
            10 => {
                c.refresh = Some(pb::RefreshRequest {
                    token: random_string(rng),
                })
            }
            _ => {
                c.sub_refresh = Some(pb::SubRefreshRequest {
                    channel: channel.clone(),
                    token: random_string(rng),
                })
            }
        }
    }
    c
}

/// A frame of 0 to 4 length-delimited commands (rarely more than a frame may carry).
fn random_protobuf_frame(rng: &mut Rng, json: &[Vec<u8>]) -> (Vec<pb::Command>, Vec<u8>) {
    let n = if rng.chance(200) {
        MAX_COMMANDS + 1
    } else {
        rng.below(5)
    };
    let commands: Vec<pb::Command> = (0..n).map(|_| random_command(rng, json)).collect();
    let mut frame = Vec::new();
    for c in &commands {
        c.encode_length_delimited(&mut frame).expect("a Vec grows");
    }
    (commands, frame)
}

/// Varints that break length prefixes: overlong, overflowing u64, unterminated, huge.
const VARINTS: &[&[u8]] = &[
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    &[
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ],
    &[
        0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
    ],
    &[0x80],
    &[0xff, 0xff, 0xff, 0x7f],
    &[0x7f],
    &[0x00],
];

fn mutate_protobuf(rng: &mut Rng, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    if !rng.chance(3) {
        return mutate(rng, input, others);
    }
    let mut v = input.to_vec();
    let at = if v.is_empty() { 0 } else { rng.below(v.len()) };
    let varint = *rng.pick(VARINTS);
    if rng.chance(2) {
        v.splice(at..at, varint.iter().copied());
    } else {
        // Replace the frame's first prefix.
        let keep = v.iter().position(|b| b & 0x80 == 0).map_or(0, |p| p + 1);
        v.splice(0..keep.min(v.len()), varint.iter().copied());
    }
    v
}

/// What prost's own reader finds in a frame: the messages, or `None` when the frame is
/// not whole length-delimited messages back to back.
fn reference_split(input: &[u8]) -> Option<Vec<pb::Command>> {
    let mut rest = input;
    let mut out = Vec::new();
    while !rest.is_empty() {
        out.push(pb::Command::decode_length_delimited(&mut rest).ok()?);
    }
    Some(out)
}

fn check_protobuf_frame(input: &[u8]) {
    let result = decode_protobuf_frame(input, MAX_COMMANDS);
    let reference = reference_split(input);
    let commands = match (result, reference) {
        (Ok(c), Some(r)) => {
            assert_eq!(c.len(), r.len(), "one command per message");
            c
        }
        (Ok(c), None) => panic!("decoded {} commands from a frame prost refuses", c.len()),
        (Err(DecodeError::TooManyCommands(n)), r) => {
            assert_eq!(n, MAX_COMMANDS);
            // What came before the cut was whole, so prost reads at least that much.
            assert!(r.is_none_or(|r| r.len() > MAX_COMMANDS));
            return;
        }
        (Err(DecodeError::NotJson(field)), Some(_)) => {
            assert!(field.ends_with(".data"), "{field}");
            return;
        }
        (Err(e), Some(_)) => panic!("prost reads the frame, the decoder says {e}"),
        (Err(e), None) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    check_payloads(commands);
}

/// An unmutated frame decodes to what it was built from (fields the node reads).
fn check_protobuf_round_trip(commands: &[pb::Command], frame: &[u8]) {
    let is_json =
        |b: &[u8]| b.is_empty() || std::str::from_utf8(b).is_ok_and(|t| RawJson::parse(t).is_ok());
    let payload_ok = |c: &pb::Command| {
        c.publish.as_ref().is_none_or(|p| is_json(&p.data))
            && c.send.as_ref().is_none_or(|p| is_json(&p.data))
            && c.rpc.as_ref().is_none_or(|p| is_json(&p.data))
            && c.subscribe.as_ref().is_none_or(|p| is_json(&p.data))
            && c.connect
                .as_ref()
                .is_none_or(|p| is_json(&p.data) && p.subs.values().all(|s| is_json(&s.data)))
    };
    let result = decode_protobuf_frame(frame, MAX_COMMANDS);
    if commands.len() > MAX_COMMANDS {
        // The first problem wins: a bad payload among the first commands, else the count.
        if commands[..MAX_COMMANDS].iter().all(payload_ok) {
            assert!(
                matches!(result, Err(DecodeError::TooManyCommands(_))),
                "{result:?}"
            );
        } else {
            assert!(matches!(result, Err(DecodeError::NotJson(_))), "{result:?}");
        }
        return;
    }
    let payloads_ok = commands.iter().all(payload_ok);
    let decoded = match result {
        Ok(d) => d,
        Err(DecodeError::NotJson(_)) if !payloads_ok => return,
        Err(e) => panic!("a well-formed frame failed: {e}"),
    };
    assert!(payloads_ok, "a payload that is not JSON was accepted");
    assert_eq!(decoded.len(), commands.len());
    for (d, c) in decoded.iter().zip(commands) {
        assert_eq!(d.id, c.id);
        assert_eq!(
            d.subscribe.as_ref().map(|s| (&s.channel, s.offset, s.flag)),
            c.subscribe
                .as_ref()
                .map(|s| (&s.channel, s.offset, s.flag as u64))
        );
        assert_eq!(
            d.history
                .as_ref()
                .map(|h| (h.limit, h.since.as_ref().map(|s| s.offset))),
            c.history
                .as_ref()
                .map(|h| (h.limit, h.since.as_ref().map(|s| s.offset)))
        );
        assert_eq!(
            d.publish.as_ref().map(|p| p.data.as_ref().map(|j| j.len())),
            c.publish
                .as_ref()
                .map(|p| (!p.data.is_empty()).then(|| RawJson::parse(
                    std::str::from_utf8(&p.data).unwrap()
                )
                .unwrap()
                .len()))
        );
        assert_eq!(d.ping.is_some(), c.ping.is_some());
        assert_eq!(
            d.connect.as_ref().map(|x| (&x.token, x.subs.len())),
            c.connect.as_ref().map(|x| (&x.token, x.subs.len()))
        );
    }
}

#[test]
fn fuzz_protobuf_client_frames() {
    let (iters, seed) = budget(15);
    let mut rng = Rng::new(seed ^ 0x0050_524f_544f);
    let json = frame_corpus();
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    for i in 0..iters {
        let (commands, frame) = random_protobuf_frame(&mut rng, &json);
        no_panic("decode_protobuf_frame", seed, i, &frame, || {
            check_protobuf_round_trip(&commands, &frame)
        });
        if corpus.len() < 64 {
            corpus.push(frame.clone());
        } else {
            let k = rng.below(corpus.len());
            corpus[k] = frame.clone();
        }
        let input = mutate_protobuf(&mut rng, &frame, &corpus);
        no_panic("decode_protobuf_frame", seed, i, &input, || {
            check_protobuf_frame(&input)
        });
    }
}

// -- node-to-node envelopes --------------------------------------------------------------

fn random_string(rng: &mut Rng) -> String {
    const PARTS: &[&str] = &[
        "",
        "a",
        "news",
        "chat:1",
        "$private",
        "é",
        "😀",
        "\u{0}",
        "\n",
        "\"",
        "\\",
        "ns:x.y",
        "\u{fffd}",
        "\u{10ffff}",
    ];
    let mut s = String::new();
    for _ in 0..rng.below(5) {
        let part: &&str = rng.pick(PARTS);
        s.push_str(part);
    }
    if rng.chance(1000) {
        // Past 65535 bytes: bincode's length prefix switches from u16 to u32.
        s.push_str(&"x".repeat(60_000 + rng.below(10_000)));
    }
    s
}

fn random_json(rng: &mut Rng) -> String {
    rng.pick(&[
        "null",
        "1",
        "-1.5e300",
        r#""text""#,
        r#"{"a":[1,{"b":null}]}"#,
        "[]",
        r#"{"nested":{"deep":[[[[1]]]]}}"#,
    ])
    .to_string()
}

fn random_info(rng: &mut Rng) -> WireClientInfo {
    WireClientInfo {
        user: random_string(rng),
        client: random_string(rng),
        conn_info: rng.chance(2).then(|| random_json(rng)),
        chan_info: rng.chance(2).then(|| random_json(rng)),
    }
}

fn random_envelope(rng: &mut Rng) -> Envelope {
    let opt = |rng: &mut Rng| rng.chance(2).then(|| random_string(rng));
    match rng.below(11) {
        10 => Envelope::DeltaPublication(WirePublication {
            data: random_json(rng),
            info: None,
            tags: Default::default(),
        }),
        0 => Envelope::Publication(WirePublication {
            data: random_json(rng),
            info: rng.chance(2).then(|| random_info(rng)),
            tags: (0..rng.below(4))
                .map(|_| (random_string(rng), random_string(rng)))
                .collect(),
        }),
        1 => Envelope::Join(random_info(rng)),
        2 => Envelope::Leave(random_info(rng)),
        3 => Envelope::LeaveMoving(random_info(rng)),
        4 => Envelope::Control(match rng.below(3) {
            0 => Control::Disconnect {
                user: random_string(rng),
                client: opt(rng),
                whitelist: (0..rng.below(4)).map(|_| random_string(rng)).collect(),
                code: rng.next() as u16,
                reason: random_string(rng),
            },
            1 => Control::Subscribe {
                user: random_string(rng),
                channel: random_string(rng),
                client: opt(rng),
                info: rng.chance(2).then(|| random_json(rng)),
                recover_offset: rng.chance(2).then(|| rng.next() >> rng.below(64)),
                recover_epoch: opt(rng),
            },
            _ => Control::Unsubscribe {
                user: random_string(rng),
                channel: random_string(rng),
                client: opt(rng),
            },
        }),
        5 => Envelope::Heartbeat(NodeStatus {
            id: random_string(rng),
            version: random_string(rng),
            num_clients: rng.next() >> rng.below(64),
            num_users: rng.next(),
            num_channels: rng.next() >> 40,
            num_subs: 0,
            uptime: u64::MAX,
            draining: rng.chance(2),
        }),
        6 => Envelope::PresenceQuery {
            channel: random_string(rng),
        },
        7 => Envelope::PresenceReply {
            node: random_string(rng),
            members: (0..rng.below(5))
                .map(|_| (random_string(rng), random_info(rng)))
                .collect(),
        },
        8 => Envelope::ChannelsQuery,
        _ => Envelope::ChannelsReply {
            node: random_string(rng),
            channels: (0..rng.below(5))
                .map(|_| (random_string(rng), rng.next() >> rng.below(64)))
                .collect(),
        },
    }
}

fn check_envelope(input: &[u8]) {
    let Ok(env) = decode(input) else {
        return;
    };
    let again = encode(&env);
    assert_eq!(
        decode(&again).as_ref(),
        Ok(&env),
        "a decoded envelope must re-encode to the same value"
    );
}

fn check_publication(input: &[u8]) {
    let Ok(p) = decode_publication(input) else {
        return;
    };
    check_raw("publication.data", &p.data);
    if let Some(info) = &p.info {
        for raw in [&info.conn_info, &info.chan_info].into_iter().flatten() {
            check_raw("publication.info", raw);
        }
    }
    let back = decode_publication(&encode_publication(&p)).expect("re-encoded publication");
    assert_eq!(back.data, p.data);
    assert_eq!(back.info, p.info);
    assert_eq!(back.tags, p.tags);
}

#[test]
fn fuzz_envelopes() {
    let (iters, seed) = budget(35);
    let mut rng = Rng::new(seed ^ 0xE0E0);
    let mut corpus: Vec<Vec<u8>> = (0..64)
        .map(|_| encode(&random_envelope(&mut rng)))
        .collect();
    corpus.push(vec![codec::VERSION]);
    for i in 0..iters {
        // A third of the time: a fresh well-formed envelope must round-trip exactly.
        if rng.chance(3) {
            let env = random_envelope(&mut rng);
            let bytes = encode(&env);
            no_panic("codec::decode", seed, i, &bytes, || {
                assert_eq!(decode(&bytes), Ok(env), "round trip");
            });
            continue;
        }
        let base = rng.pick(&corpus);
        let input = mutate(&mut rng, base, &corpus);
        no_panic("codec::decode", seed, i, &input, || check_envelope(&input));
    }
}

#[test]
fn fuzz_publications() {
    let (iters, seed) = budget(15);
    let mut rng = Rng::new(seed ^ 0x9B9B);
    let mut corpus: Vec<Vec<u8>> = (0..16)
        .map(|_| {
            encode(&Envelope::Publication(WirePublication {
                data: random_json(&mut rng),
                info: Some(random_info(&mut rng)),
                tags: BTreeMap::from([("k".into(), "v".into())]),
            }))
        })
        .collect();
    // Plain JSON as backends publish it on NATS, pretty-printed ones included.
    corpus.extend(
        [
            &br#"{"text":"hello"}"#[..],
            b"{\n  \"text\": \"hello\",\n  \"n\": [1,\n 2]\n}\n",
            b" [1, 2, 3]",
            b"\"just a string\"",
            b"42",
        ]
        .iter()
        .map(|s| s.to_vec()),
    );
    for i in 0..iters {
        let base = rng.pick(&corpus);
        let input = mutate(&mut rng, base, &corpus);
        no_panic("codec::decode_publication", seed, i, &input, || {
            check_publication(&input)
        });
    }
}

// -- regression tests: inputs the fuzzers (or reviews) found ---------------------------

/// A backend publishing pretty-printed JSON on NATS used to reach subscribers with its
/// newlines intact, splitting their frames (each `\n` starts a new message).
#[test]
fn regression_pretty_printed_backend_json_loses_its_newlines() {
    let p = decode_publication(b"{\n  \"a\": 1,\n  \"b\": [\n    2\n  ]\n}\n").unwrap();
    check_raw("publication.data", &p.data);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(p.data.as_str()).unwrap(),
        serde_json::json!({"a": 1, "b": [2]})
    );
}

/// Nesting far past serde_json's recursion limit is an error, not a stack overflow.
#[test]
fn regression_deep_nesting_is_an_error() {
    let mut deep = br#"{"id":1,"publish":{"channel":"c","data":"#.to_vec();
    deep.extend(std::iter::repeat_n(b'[', 100_000));
    assert!(matches!(
        decode_frame(&deep, MAX_COMMANDS),
        Err(DecodeError::Json(_))
    ));
    let mut ignored = br#"{"id":1,"unknown":"#.to_vec();
    ignored.extend(std::iter::repeat_n(b'[', 100_000));
    ignored.extend(std::iter::repeat_n(b']', 100_000));
    ignored.push(b'}');
    // Unknown fields are skipped without recursion; nesting there is bounded by the
    // message size (HERALD_MAX_MESSAGE_SIZE), not by the stack.
    assert!(decode_frame(&ignored, MAX_COMMANDS).is_ok());
}

/// An envelope whose length prefix claims more than `MAX_ENVELOPE` bytes is refused
/// before anything is allocated.
#[test]
fn regression_huge_length_prefix_is_refused_without_allocating() {
    // Heartbeat (variant 4), id: string of length u64::MAX.
    let mut bytes = vec![codec::VERSION, 4, 253];
    bytes.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        decode(&bytes),
        Err(codec::CodecError::Malformed(_))
    ));
    // ChannelsReply (variant 8) with 2^32 members claimed.
    let mut bytes = vec![codec::VERSION, 8, 0, 252];
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        decode(&bytes),
        Err(codec::CodecError::Malformed(_))
    ));
}
