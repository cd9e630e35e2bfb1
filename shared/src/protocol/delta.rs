//! Fossil deltas of publication data, in Centrifugo's JSON wire form.
//!
//! A subscription in delta mode (`delta: "fossil"` asked, `delta: true` answered) gets
//! every publication's `data` as a JSON *string*: either the publication's JSON text
//! itself (`delta` absent: a full payload the SDK parses and keeps as its base), or a
//! fossil delta (<https://fossil-scm.org/home/doc/tip/www/delta_format.wiki>) turning the
//! previous payload's text into this one's (`delta: true`). That is what centrifuge-js's
//! `JsonCodec.applyDeltaIfNeeded` decodes.
//!
//! The algorithm is the `fossil-delta` crate's; the tests here check its output
//! against vectors that centrifuge-js's decoder (5.7.4, and 5.8.0 since) accepted, and
//! `node/tests/js` checks the SDK decoding live deltas.

use super::RawJson;

/// A fossil delta turning `source` into `target`, when it is smaller than `target`
/// and valid UTF-8 (a JSON string must be: a delta whose literal run splits a
/// multi-byte character cannot travel in JSON, so that publication goes in full).
pub fn fossil(source: &str, target: &str) -> Option<String> {
    let delta = fossil_delta::delta(target, source);
    if delta.len() >= target.len() {
        return None;
    }
    String::from_utf8(delta).ok()
}

/// `text` as a JSON string value (the delta-mode form of a payload or a delta).
pub fn as_json_string(text: &str) -> RawJson {
    RawJson::from_value(&text).expect("a string always serialises")
}

/// Applies a fossil delta (for tests and tools: the node only encodes).
pub fn apply(source: &str, delta: &str) -> Option<String> {
    let out = fossil_delta::apply(source, delta).ok()?;
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2 KiB state document where one field changes.
    fn state(n: u64) -> String {
        let rows: Vec<String> = (0..40)
            .map(|i| format!(r#""row{i:02}":{{"bid":{},"ask":{}}}"#, 1000 + i, 1010 + i))
            .collect();
        format!(r#"{{"seq":{n},{}}}"#, rows.join(","))
    }

    #[test]
    fn deltas_round_trip_and_are_small() {
        let (a, b) = (state(1), state(2));
        assert!(a.len() > 1000);
        let d = fossil(&a, &b).expect("a delta");
        assert!(d.len() < 40, "{} bytes: {d:?}", d.len());
        assert_eq!(apply(&a, &d).as_deref(), Some(b.as_str()));
    }

    #[test]
    fn no_delta_when_it_would_not_be_smaller() {
        assert_eq!(fossil(r#"{"a":1}"#, r#"{"b":2}"#), None);
        assert_eq!(fossil("", "x"), None);
    }

    #[test]
    fn round_trips_over_many_edits() {
        // Deterministic pseudo-random edits of a JSON-ish text, with multi-byte text.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut doc: Vec<char> = state(0).chars().collect();
        for _ in 0..300 {
            let before: String = doc.iter().collect();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % doc.len();
                match next() % 3 {
                    0 => doc[at] = ['é', '7', 'z', '€'][(next() % 4) as usize],
                    1 => doc.insert(at, 'ß'),
                    _ => {
                        doc.remove(at);
                    }
                }
            }
            let after: String = doc.iter().collect();
            if let Some(d) = fossil(&before, &after) {
                assert_eq!(apply(&before, &d).as_deref(), Some(after.as_str()));
            }
        }
    }

    /// The vectors node/tests/js decodes with centrifuge-js's own (5.8.0) `applyDelta`
    /// (`delta.test.mjs`): they must be what this encoder produces today, so that test
    /// speaks for it. Regenerate with `HERALD_WRITE_FOSSIL_VECTORS=1 cargo test -p
    /// herald-shared fossil_vectors` after a change of the encoder.
    #[test]
    fn fossil_vectors_are_this_encoders() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/protocol/fossil_vectors.json"
        );
        let cases: Vec<(String, String)> = vec![
            (state(1), state(2)),
            (state(7), state(7).replace("1003", "99999")),
            ("{\"name\":\"Zoë\",\"city\":\"Zürich\",\"n\":1,\"pad\":\"abcdefghijklmnopqrstuvwxyz\"}".into(),
             "{\"name\":\"Zoë\",\"city\":\"Zürich\",\"n\":2,\"pad\":\"abcdefghijklmnopqrstuvwxyz\"}".into()),
            (state(3), state(4).replace("row2", "line2")),
        ];
        let vectors: Vec<serde_json::Value> = cases
            .iter()
            .map(|(s, t)| {
                let d = fossil(s, t).expect("a delta");
                assert_eq!(apply(s, &d).as_deref(), Some(t.as_str()));
                serde_json::json!({"source": s, "target": t, "delta": d})
            })
            .collect();
        if std::env::var_os("HERALD_WRITE_FOSSIL_VECTORS").is_some() {
            let text = serde_json::to_string_pretty(&vectors).unwrap();
            std::fs::write(path, text + "\n").unwrap();
        }
        let stored: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(stored, vectors);
    }
}
