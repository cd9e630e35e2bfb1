//! The token verification settings (`HERALD_TOKEN_*`): at most one key kind, an
//! algorithm that fits it, never `none`; a JWKS endpoint beside it or alone.

use crate::config::JwksOptions;
use herald_shared::auth::{
    Algorithm, AuthConfig, KeySetCell, PreviousKey, Verifier, VerifyKey, MAX_LEEWAY_SECS,
};
use herald_shared::config::{ConfigError, Reader, Settings, Value};
use std::time::Duration;

const ENV_TOKEN_HMAC_SECRET: &str = "HERALD_TOKEN_HMAC_SECRET";
/// Shortest HMAC secret accepted, bytes: shorter ones can be brute-forced from one token.
const MIN_HMAC_SECRET: usize = 16;
const ENV_TOKEN_RSA_PUBLIC_KEY: &str = "HERALD_TOKEN_RSA_PUBLIC_KEY";
const ENV_TOKEN_ECDSA_PUBLIC_KEY: &str = "HERALD_TOKEN_ECDSA_PUBLIC_KEY";
const ENV_TOKEN_ED25519_PUBLIC_KEY: &str = "HERALD_TOKEN_ED25519_PUBLIC_KEY";
const ENV_TOKEN_ALGORITHM: &str = "HERALD_TOKEN_ALGORITHM";
const ENV_TOKEN_AUDIENCE: &str = "HERALD_TOKEN_AUDIENCE";
const ENV_TOKEN_ISSUER: &str = "HERALD_TOKEN_ISSUER";
const ENV_TOKEN_LEEWAY: &str = "HERALD_TOKEN_LEEWAY";
const ENV_TOKEN_JWKS_URL: &str = "HERALD_TOKEN_JWKS_URL";
const ENV_TOKEN_JWKS_REFRESH_INTERVAL: &str = "HERALD_TOKEN_JWKS_REFRESH_INTERVAL";
const DEFAULT_JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(3600);
const ENV_TOKEN_JWKS_MIN_REFETCH_INTERVAL: &str = "HERALD_TOKEN_JWKS_MIN_REFETCH_INTERVAL";
const DEFAULT_JWKS_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
const ENV_TOKEN_JWKS_TIMEOUT: &str = "HERALD_TOKEN_JWKS_TIMEOUT";
const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds of the JWKS intervals: below a second would hammer the endpoint, above a week
/// keeps removed keys alive.
const MIN_JWKS_INTERVAL: Duration = Duration::from_secs(1);
const MAX_JWKS_INTERVAL: Duration = Duration::from_secs(7 * 86_400);
const ENV_TOKEN_HMAC_PREVIOUS_SECRET: &str = "HERALD_TOKEN_HMAC_PREVIOUS_SECRET";
const ENV_TOKEN_HMAC_PREVIOUS_SECRET_VALID_UNTIL: &str =
    "HERALD_TOKEN_HMAC_PREVIOUS_SECRET_VALID_UNTIL";

/// Every algorithm a key can be used with, by name as in JWT headers.
const ALGORITHMS: &[(&str, Algorithm)] = &[
    ("HS256", Algorithm::HS256),
    ("HS384", Algorithm::HS384),
    ("HS512", Algorithm::HS512),
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

/// A setting read in two steps (text, then checked): unset, set but bad (already
/// reported), or good.
enum Slot<T> {
    Unset,
    Bad,
    Set(Value, T),
}

impl<T> Slot<T> {
    fn read(
        s: &mut Settings<'_>,
        name: &str,
        check: impl FnOnce(&str) -> Result<T, String>,
    ) -> Self {
        let Some(value) = s.value(name) else {
            return Slot::Unset;
        };
        match check(&value.text) {
            Ok(v) => Slot::Set(value, v),
            Err(reason) => {
                s.report(value.error(reason));
                Slot::Bad
            }
        }
    }

    fn is_unset(&self) -> bool {
        matches!(self, Slot::Unset)
    }
}

/// Token verification: at most one key kind, an algorithm fitting it, the key checked by
/// building a [`Verifier`] now rather than on the first connect; and the JWKS endpoint.
pub(super) fn auth(s: &mut Settings<'_>) -> (Option<AuthConfig>, Option<JwksOptions>) {
    let jwks = jwks(s);
    let auth = key_config(s, jwks.is_some());
    (auth, jwks)
}

/// `HERALD_TOKEN_JWKS_URL` and its intervals; the intervals without the URL are errors.
fn jwks(s: &mut Settings<'_>) -> Option<JwksOptions> {
    let url = Slot::read(s, ENV_TOKEN_JWKS_URL, jwks_url);
    let range = MIN_JWKS_INTERVAL..=MAX_JWKS_INTERVAL;
    let refresh_interval = s.secs_in(
        ENV_TOKEN_JWKS_REFRESH_INTERVAL,
        DEFAULT_JWKS_REFRESH_INTERVAL,
        range.clone(),
    );
    let min_refetch_interval = s.secs_in(
        ENV_TOKEN_JWKS_MIN_REFETCH_INTERVAL,
        DEFAULT_JWKS_MIN_REFETCH_INTERVAL,
        range,
    );
    let timeout = s.secs_in(
        ENV_TOKEN_JWKS_TIMEOUT,
        DEFAULT_JWKS_TIMEOUT,
        Duration::from_millis(100)..=Duration::from_secs(60),
    );
    match url {
        Slot::Set(_, url) => Some(JwksOptions {
            url,
            refresh_interval,
            min_refetch_interval,
            timeout,
        }),
        Slot::Bad => None,
        Slot::Unset => {
            for name in [
                ENV_TOKEN_JWKS_REFRESH_INTERVAL,
                ENV_TOKEN_JWKS_MIN_REFETCH_INTERVAL,
                ENV_TOKEN_JWKS_TIMEOUT,
            ] {
                if let Some(v) = s.value(name) {
                    s.report(v.error(format!("has no effect without {ENV_TOKEN_JWKS_URL}")));
                }
            }
            None
        }
    }
}

/// An absolute `http://` or `https://` URL with a host.
fn jwks_url(text: &str) -> Result<hyper::Uri, String> {
    const HELP: &str = "expected an http:// or https:// URL such as https://auth.example.com/.well-known/jwks.json";
    let uri: hyper::Uri = text.trim().parse().map_err(|_| HELP.to_string())?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(uri),
        _ => Err(HELP.to_string()),
    }
}

/// The configured key (at most one) and the rules shared with JWKS tokens. With a JWKS
/// and no key, a config without key: every token then needs a JWKS key.
fn key_config(s: &mut Settings<'_>, jwks: bool) -> Option<AuthConfig> {
    let keys = [
        (
            ENV_TOKEN_HMAC_SECRET,
            Slot::read(s, ENV_TOKEN_HMAC_SECRET, hmac_secret),
        ),
        (
            ENV_TOKEN_RSA_PUBLIC_KEY,
            Slot::read(s, ENV_TOKEN_RSA_PUBLIC_KEY, |t| {
                pem(t).map(VerifyKey::RsaPem)
            }),
        ),
        (
            ENV_TOKEN_ECDSA_PUBLIC_KEY,
            Slot::read(s, ENV_TOKEN_ECDSA_PUBLIC_KEY, |t| {
                pem(t).map(VerifyKey::EcPem)
            }),
        ),
        (
            ENV_TOKEN_ED25519_PUBLIC_KEY,
            Slot::read(s, ENV_TOKEN_ED25519_PUBLIC_KEY, |t| {
                pem(t).map(VerifyKey::EdPem)
            }),
        ),
    ];
    let algorithm = Slot::read(s, ENV_TOKEN_ALGORITHM, parse_algorithm);
    let audience = s.string(ENV_TOKEN_AUDIENCE);
    let issuer = s.string(ENV_TOKEN_ISSUER);
    let leeway = Slot::read(s, ENV_TOKEN_LEEWAY, |t| {
        herald_shared::config::parse_int_in(t, &(..=MAX_LEEWAY_SECS))
    });
    let previous = previous_secret(s);

    let given: Vec<&str> = keys
        .iter()
        .filter(|(_, slot)| !slot.is_unset())
        .map(|(name, _)| *name)
        .collect();
    if given.len() > 1 {
        s.report(ConfigError::new(
            given[1],
            "",
            format!(
                "only one token key may be set, but {} are",
                given.join(" and ")
            ),
        ));
        return None;
    }
    let Some((_, Slot::Set(key_value, key))) = keys.into_iter().find(|(_, k)| !k.is_unset()) else {
        if given.is_empty() && jwks {
            return jwks_only(s, algorithm, audience, issuer, leeway, previous);
        }
        if given.is_empty() {
            // Without a key nothing is verified: these settings would silently do nothing.
            let orphans = [
                (ENV_TOKEN_HMAC_PREVIOUS_SECRET, previous.is_some()),
                (ENV_TOKEN_ALGORITHM, !algorithm.is_unset()),
                (ENV_TOKEN_AUDIENCE, audience.is_some()),
                (ENV_TOKEN_ISSUER, issuer.is_some()),
                (ENV_TOKEN_LEEWAY, !leeway.is_unset()),
            ];
            for (name, _) in orphans.iter().filter(|(_, set)| *set) {
                s.report(ConfigError::new(
                    *name,
                    "",
                    format!("has no effect without a token key; set {ENV_TOKEN_HMAC_SECRET}, a public key or {ENV_TOKEN_JWKS_URL}"),
                ));
            }
        }
        return None;
    };

    let algorithm = match algorithm {
        Slot::Unset => default_algorithm(&key),
        Slot::Bad => return None,
        Slot::Set(value, alg) => {
            let fitting = algorithms_for(&key);
            if !fitting.contains(&alg) {
                let names: Vec<&str> = ALGORITHMS
                    .iter()
                    .filter(|(_, a)| fitting.contains(a))
                    .map(|(n, _)| *n)
                    .collect();
                s.report(value.error(format!(
                    "cannot be used with {}; expected {}",
                    key_value.setting,
                    names.join(", ")
                )));
                return None;
            }
            alg
        }
    };
    if previous.is_some() && !matches!(key, VerifyKey::Hmac(_)) {
        s.report(ConfigError::new(
            ENV_TOKEN_HMAC_PREVIOUS_SECRET,
            "",
            format!("needs {ENV_TOKEN_HMAC_SECRET}: it is the HMAC secret being rotated out"),
        ));
        return None;
    }
    let config = AuthConfig {
        algorithm,
        key: Some(key),
        audience,
        issuer,
        leeway_secs: match leeway {
            Slot::Set(_, secs) => secs,
            Slot::Unset | Slot::Bad => 0,
        },
        previous,
    };
    let cell = jwks.then(KeySetCell::new);
    match Verifier::with_key_set(&config, cell) {
        Ok(_) => Some(config),
        Err(e) => {
            s.report(key_value.error(e.to_string()));
            None
        }
    }
}

/// JWKS keys only: the algorithm comes from each token (RSA or EC, fitting its key), so
/// pinning one, or an HMAC secret being rotated out, would silently do nothing.
fn jwks_only(
    s: &mut Settings<'_>,
    algorithm: Slot<Algorithm>,
    audience: Option<String>,
    issuer: Option<String>,
    leeway: Slot<u64>,
    previous: Option<PreviousKey>,
) -> Option<AuthConfig> {
    if let Slot::Set(v, _) = algorithm {
        s.report(v.error(format!(
            "applies to a configured key; with only {ENV_TOKEN_JWKS_URL} each token's alg must fit its JWKS key"
        )));
        return None;
    }
    if previous.is_some() {
        s.report(ConfigError::new(
            ENV_TOKEN_HMAC_PREVIOUS_SECRET,
            "",
            format!("needs {ENV_TOKEN_HMAC_SECRET}: it is the HMAC secret being rotated out"),
        ));
        return None;
    }
    Some(AuthConfig {
        key: None,
        audience,
        issuer,
        leeway_secs: match leeway {
            Slot::Set(_, secs) => secs,
            Slot::Unset | Slot::Bad => 0,
        },
        ..AuthConfig::hmac(Algorithm::HS256, b"unused")
    })
}

/// `HERALD_TOKEN_HMAC_PREVIOUS_SECRET` and its `_VALID_UNTIL` (unix seconds, or an
/// RFC 3339 time such as `2026-12-31T23:59:59Z`). A valid-until without the secret is an
/// error: it would silently do nothing.
fn previous_secret(s: &mut Settings<'_>) -> Option<PreviousKey> {
    let secret = Slot::read(s, ENV_TOKEN_HMAC_PREVIOUS_SECRET, hmac_secret);
    let until = Slot::read(
        s,
        ENV_TOKEN_HMAC_PREVIOUS_SECRET_VALID_UNTIL,
        unix_or_rfc3339,
    );
    match (secret, until) {
        (Slot::Unset, Slot::Set(v, _)) => {
            s.report(v.error(format!(
                "has no effect without {ENV_TOKEN_HMAC_PREVIOUS_SECRET}"
            )));
            None
        }
        (Slot::Set(_, VerifyKey::Hmac(secret)), Slot::Set(_, at)) => Some(PreviousKey {
            secret,
            valid_until: Some(at),
        }),
        (Slot::Set(_, VerifyKey::Hmac(secret)), Slot::Unset) => Some(PreviousKey {
            secret,
            valid_until: None,
        }),
        _ => None,
    }
}

/// Unix seconds, or RFC 3339 (`2026-12-31T23:59:59Z`, `2026-12-31T23:59:59+02:00`,
/// fractions of a second dropped).
pub(super) fn unix_or_rfc3339(text: &str) -> Result<u64, String> {
    const HELP: &str = "expected unix seconds or an RFC 3339 time such as 2026-12-31T23:59:59Z";
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| HELP.to_string());
    }
    rfc3339(text).ok_or_else(|| HELP.to_string())
}

fn rfc3339(t: &str) -> Option<u64> {
    let b = t.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &t[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let r = rest.as_bytes();
            if r.len() != 6 || r[3] != b':' {
                return None;
            }
            let oh: i64 = rest[1..3].parse().ok()?;
            let om: i64 = rest[4..6].parse().ok()?;
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm), 1970-01-01 = day 0.
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset;
    u64::try_from(secs).ok()
}

fn hmac_secret(text: &str) -> Result<VerifyKey, String> {
    if text.len() < MIN_HMAC_SECRET {
        return Err(format!(
            "weak secret: at least {MIN_HMAC_SECRET} bytes are needed, 32 or more recommended"
        ));
    }
    Ok(VerifyKey::Hmac(text.as_bytes().to_vec()))
}

/// PEM text, or `@/path/to/key.pem` to read a file. A PEM squeezed onto one line with
/// literal `\n` escapes (as in `.env` files) is unfolded.
fn pem(text: &str) -> Result<Vec<u8>, String> {
    if let Some(path) = text.strip_prefix('@') {
        let path = path.trim();
        return std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"));
    }
    if !text.contains('\n') && text.contains("\\n") {
        return Ok(text.replace("\\n", "\n").into_bytes());
    }
    Ok(text.as_bytes().to_vec())
}

fn parse_algorithm(text: &str) -> Result<Algorithm, String> {
    if text.eq_ignore_ascii_case("none") {
        return Err("unsigned tokens (\"none\") are never accepted".into());
    }
    ALGORITHMS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
        .map(|(_, alg)| *alg)
        .ok_or_else(|| {
            let names: Vec<&str> = ALGORITHMS.iter().map(|(n, _)| *n).collect();
            format!("expected one of {}", names.join(", "))
        })
}

fn algorithms_for(key: &VerifyKey) -> &'static [Algorithm] {
    use Algorithm::*;
    match key {
        VerifyKey::Hmac(_) => &[HS256, HS384, HS512],
        VerifyKey::RsaPem(_) => &[RS256, RS384, RS512, PS256, PS384, PS512],
        VerifyKey::EcPem(_) => &[ES256, ES384],
        VerifyKey::EdPem(_) => &[EdDSA],
    }
}

fn default_algorithm(key: &VerifyKey) -> Algorithm {
    match key {
        VerifyKey::Hmac(_) => Algorithm::HS256,
        VerifyKey::RsaPem(_) => Algorithm::RS256,
        VerifyKey::EcPem(_) => Algorithm::ES256,
        VerifyKey::EdPem(_) => Algorithm::EdDSA,
    }
}
