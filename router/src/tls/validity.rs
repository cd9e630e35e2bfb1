//! The validity period of an X.509 certificate, read straight from its DER: rustls does
//! not look at our own certificate's dates, and a router that starts (or reloads) with
//! an expired one would fail every handshake while looking healthy.
//!
//! Only the path to `tbsCertificate.validity` is walked (RFC 5280 §4.1): the optional
//! `[0]` version, the serial number, the signature algorithm and the issuer are skipped
//! whole, then the two times are read. Anything else in the certificate is rustls's
//! business.

/// When a certificate becomes and stops being valid, seconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// `notBefore`.
    pub not_before: i64,
    /// `notAfter`.
    pub not_after: i64,
}

/// DER tags met on the way.
const SEQUENCE: u8 = 0x30;
const VERSION: u8 = 0xA0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// Reads the validity of the DER certificate `der`, or says what is malformed.
pub fn of(der: &[u8]) -> Result<Validity, &'static str> {
    let (tag, cert, _) = tlv(der)?;
    if tag != SEQUENCE {
        return Err("not a certificate (no outer SEQUENCE)");
    }
    let (tag, tbs, _) = tlv(cert)?;
    if tag != SEQUENCE {
        return Err("not a certificate (no tbsCertificate)");
    }
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == VERSION {
        rest = after;
    }
    // serialNumber, signature, issuer.
    for _ in 0..3 {
        let (_, _, after) = tlv(rest)?;
        rest = after;
    }
    let (tag, validity, _) = tlv(rest)?;
    if tag != SEQUENCE {
        return Err("no validity in the certificate");
    }
    let (tag, before, rest) = tlv(validity)?;
    let not_before = time(tag, before)?;
    let (tag, after, _) = tlv(rest)?;
    let not_after = time(tag, after)?;
    Ok(Validity {
        not_before,
        not_after,
    })
}

/// Splits one DER element off `input`: its tag, its contents, and what follows.
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), &'static str> {
    const SHORT: &str = "certificate DER ends early";
    let (&tag, input) = input.split_first().ok_or(SHORT)?;
    let (&first, mut input) = input.split_first().ok_or(SHORT)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || input.len() < n {
            return Err("bad DER length in the certificate");
        }
        let (bytes, after) = input.split_at(n);
        input = after;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if input.len() < len {
        return Err(SHORT);
    }
    let (contents, rest) = input.split_at(len);
    Ok((tag, contents, rest))
}

/// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as Unix seconds.
fn time(tag: u8, text: &[u8]) -> Result<i64, &'static str> {
    const BAD: &str = "bad time in the certificate's validity";
    let digits = text.strip_suffix(b"Z").ok_or(BAD)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(BAD);
    }
    let num = |s: &[u8]| {
        s.iter()
            .fold(0i64, |acc, &d| acc * 10 + i64::from(d - b'0'))
    };
    let (year, rest) = match (tag, digits.len()) {
        // RFC 5280: two-digit years 50..99 are 19xx, 00..49 are 20xx.
        (UTC_TIME, 12) => {
            let yy = num(&digits[..2]);
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (GENERALIZED_TIME, 14) => (num(&digits[..4]), &digits[4..]),
        _ => return Err(BAD),
    };
    let (month, day) = (num(&rest[0..2]), num(&rest[2..4]));
    let (h, m, s) = (num(&rest[4..6]), num(&rest[6..8]), num(&rest[8..10]));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return Err(BAD);
    }
    Ok(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days from 1970-01-01 to `y-m-d` in the proleptic Gregorian calendar (Howard
/// Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`, for messages.
pub fn format(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_dates_rcgen_wrote() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2021, 3, 4);
        params.not_after = rcgen::date_time_ymd(2051, 12, 31);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let v = of(cert.der()).expect("parsed");
        assert_eq!(format(v.not_before), "2021-03-04T00:00:00Z");
        // 2051 is past 2049: a GeneralizedTime.
        assert_eq!(format(v.not_after), "2051-12-31T00:00:00Z");
    }

    #[test]
    fn known_instants() {
        assert_eq!(time(UTC_TIME, b"700101000000Z"), Ok(0));
        assert_eq!(time(UTC_TIME, b"000229123456Z"), Ok(951_827_696));
        assert_eq!(
            time(GENERALIZED_TIME, b"20380119031408Z"),
            Ok(2_147_483_648)
        );
        assert_eq!(format(951_827_696), "2000-02-29T12:34:56Z");
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert!(of(b"").is_err());
        assert!(of(b"\x30\x05\x30").is_err());
        assert!(of(b"\x30\x84\xff\xff\xff\xff").is_err());
        assert!(of(b"-----BEGIN CERTIFICATE-----").is_err());
        assert!(time(UTC_TIME, b"701301000000Z").is_err());
        assert!(time(UTC_TIME, b"7001010000Z").is_err());
        assert!(time(GENERALIZED_TIME, b"700101000000Z").is_err());
    }
}
