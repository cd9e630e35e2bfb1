//! The API key check, shared by `/api/*` and `/admin/drain`.

use crate::node::Node;
use hyper::body::Incoming;
use hyper::Request;
use subtle::ConstantTimeEq;

/// Whether the request carries the API key (constant-time comparison).
pub fn key_ok(node: &Node, req: &Request<Incoming>) -> bool {
    let Some(expected) = node.config.api_key.as_deref() else {
        return false;
    };
    let given = req
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            req.headers()
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("apikey "))
        });
    given.is_some_and(|g| key_matches(expected.as_bytes(), g.as_bytes()))
}

/// Compares a guessed API key with the real one in constant time: the work depends only
/// on the guess's length, never on how much of it is right nor on the key's length
/// (`subtle`'s slice comparison returns at once when the lengths differ).
fn key_matches(expected: &[u8], given: &[u8]) -> bool {
    if expected.is_empty() {
        return false;
    }
    let mut same = given.len().ct_eq(&expected.len());
    for (i, b) in given.iter().enumerate() {
        same &= b.ct_eq(&expected[i % expected.len()]);
    }
    same.into()
}

#[cfg(test)]
mod tests {
    use super::key_matches;

    #[test]
    fn api_key_comparison() {
        let key = b"s3cret-api-key";
        assert!(key_matches(key, b"s3cret-api-key"));
        assert!(!key_matches(key, b"s3cret-api-kez"));
        assert!(!key_matches(key, b"s3cret-api-ke"), "a prefix");
        assert!(
            !key_matches(key, b"s3cret-api-keys3"),
            "longer, wrapping around"
        );
        assert!(
            !key_matches(key, b"s3cret-api-keys3cret-api-key"),
            "the key twice"
        );
        assert!(!key_matches(key, b""));
        assert!(!key_matches(b"", b""), "no key configured matches nothing");
    }
}
