//! The Pusher Channels protocol (version 7), as much as the fan-out scenario needs to
//! drive a Pusher-compatible server (Sockudo) with the same generator as Herald:
//! the client's messages, and the HTTP API's signed `POST /apps/{id}/events`.
//!
//! Publications carry the same stamp as with the Centrifugo protocol
//! ([`crate::protocol::encode_payload`]), as the JSON text inside Pusher's `data`
//! string, so latency, losses and duplicates are counted the same way.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::Sha256;
use std::borrow::Cow;
use std::fmt::Write as _;

/// The event name publications are triggered with.
pub const EVENT: &str = "ev";

/// The query string of a client connection (after `/app/{key}`).
pub const CLIENT_QUERY: &str = "protocol=7&client=herald-loadtest&version=1";

/// Any message from the server: `{"event":"..","channel":"..","data":..}`.
#[derive(Debug, Deserialize)]
pub struct Incoming<'a> {
    /// `pusher:connection_established`, `pusher_internal:subscription_succeeded`,
    /// `pusher:ping`, `pusher:error`, or an application event.
    #[serde(borrow)]
    pub event: Cow<'a, str>,
    /// The channel of channel events.
    #[serde(borrow, default)]
    pub channel: Option<Cow<'a, str>>,
    /// A string for application events (our stamped payload); an object or a string
    /// of JSON for protocol events.
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
}

impl Incoming<'_> {
    /// The `data` string, unescaped; `None` when `data` is absent or not a string.
    pub fn data_str(&self) -> Option<Cow<'_, str>> {
        let raw = self.data?;
        if !raw.get().starts_with('"') {
            return None;
        }
        serde_json::from_str::<Cow<'_, str>>(raw.get()).ok()
    }
}

/// Parses one message.
pub fn decode(text: &[u8]) -> Result<Incoming<'_>, serde_json::Error> {
    serde_json::from_slice(text)
}

/// Appends `{"event":"pusher:subscribe","data":{"channel":"<channel>"}}`.
pub fn encode_subscribe(out: &mut Vec<u8>, channel: &str) {
    out.extend_from_slice(b"{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":");
    let _ = serde_json::to_writer(&mut *out, channel);
    out.extend_from_slice(b"}}");
}

/// The answer to `pusher:ping`.
pub const PONG: &[u8] = b"{\"event\":\"pusher:pong\",\"data\":{}}";

/// An app of a Pusher-compatible server: what the HTTP API signs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    /// `app_id` in the API path.
    pub id: String,
    /// The app key: `auth_key`, and the client URL's `/app/{key}`.
    pub key: String,
    /// The app secret the signature is keyed with.
    pub secret: String,
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Hex HMAC-SHA256 of `POST\n<path>\n<query>` keyed by `secret`, the `auth_signature`
/// of a request whose other query parameters are `query` (sorted by key, `k=v&…`, not
/// URL-escaped).
pub fn signature(secret: &str, path: &str, query: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(b"POST\n");
    mac.update(path.as_bytes());
    mac.update(b"\n");
    mac.update(query.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Path and query (signature included) of `POST /apps/{id}/events` with `body`, signed
/// at `timestamp` (Unix seconds).
pub fn events_target(app: &App, body: &[u8], timestamp: u64) -> String {
    let path = format!("/apps/{}/events", app.id);
    // Already in key order: auth_key < auth_timestamp < auth_version < body_md5.
    let query = format!(
        "auth_key={}&auth_timestamp={timestamp}&auth_version=1.0&body_md5={}",
        app.key,
        hex(&Md5::digest(body))
    );
    let sig = signature(&app.secret, &path, &query);
    format!("{path}?{query}&auth_signature={sig}")
}

/// The body triggering [`EVENT`] on `channel` with `data` (our JSON payload, sent as a
/// string as the protocol wants).
pub fn events_body(channel: &str, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(data.len() * 2 + channel.len() + 48);
    body.extend_from_slice(b"{\"name\":\"");
    body.extend_from_slice(EVENT.as_bytes());
    body.extend_from_slice(b"\",\"channels\":[");
    let _ = serde_json::to_writer(&mut body, channel);
    body.extend_from_slice(b"],\"data\":");
    let _ = serde_json::to_writer(&mut body, &String::from_utf8_lossy(data));
    body.push(b'}');
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of Pusher's HTTP API reference ("Worked authentication
    /// example"): app 3, key 278d425bdf160c739803, secret 7ad3773142a6692b25b8, event
    /// `foo` on `project-3` with `{"some":"data"}`, timestamp 1353088179.
    #[test]
    fn signs_the_worked_example_of_the_docs() {
        let app = App {
            id: "3".into(),
            key: "278d425bdf160c739803".into(),
            secret: "7ad3773142a6692b25b8".into(),
        };
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(hex(&Md5::digest(body)), "ec365a775a4cd0599faeb73354201b6f");
        let target = events_target(&app, body, 1_353_088_179);
        assert_eq!(
            target,
            "/apps/3/events?auth_key=278d425bdf160c739803&auth_timestamp=1353088179\
             &auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f\
             &auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }

    #[test]
    fn the_body_carries_the_payload_as_a_string() {
        let body = events_body("c-1", br#"{"t":1,"g":2,"s":3,"p":"xx"}"#);
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"name":"ev","channels":["c-1"],"data":"{\"t\":1,\"g\":2,\"s\":3,\"p\":\"xx\"}"}"#
        );
    }

    #[test]
    fn reads_an_event_and_its_stamp() {
        let mut payload = Vec::new();
        let stamp = crate::protocol::Stamp {
            sent_micros: 17,
            publisher: 5,
            seq: 9,
        };
        crate::protocol::encode_payload(&mut payload, stamp, 64);
        let data = serde_json::to_string(std::str::from_utf8(&payload).unwrap()).unwrap();
        let text = format!(r#"{{"event":"ev","channel":"c","data":{data}}}"#);
        let msg = decode(text.as_bytes()).unwrap();
        assert_eq!(msg.event, "ev");
        assert_eq!(msg.channel.as_deref(), Some("c"));
        let data = msg.data_str().unwrap();
        assert_eq!(crate::protocol::read_stamp(data.as_bytes()), Some(stamp));
        let ping = decode(br#"{"event":"pusher:ping","data":{}}"#).unwrap();
        assert_eq!(ping.event, "pusher:ping");
        assert!(ping.data_str().is_none());
    }

    #[test]
    fn subscribes() {
        let mut out = Vec::new();
        encode_subscribe(&mut out, "fan-1");
        assert_eq!(
            out,
            br#"{"event":"pusher:subscribe","data":{"channel":"fan-1"}}"#
        );
    }
}
