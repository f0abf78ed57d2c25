//! Go durations: `time.ParseDuration`'s grammar and limits, so `10s`,
//! `1m30s`, `1.5h`, `250ms`, `100µs` read as Consul, confd and
//! consul-template read them, and the short form Consul prints.
//!
//! One deliberate difference: a negative duration is refused (no tribune
//! setting takes one; Go parses it and the Go tools refuse it later).

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("time: invalid duration {0:?}")]
    Invalid(String),
    #[error("time: missing unit in duration {0:?}")]
    MissingUnit(String),
    #[error("time: unknown unit {unit:?} in duration {input:?}")]
    UnknownUnit { unit: String, input: String },
    #[error("time: negative duration {0:?}")]
    Negative(String),
}

/// Nanoseconds per unit, as Go's `unitMap` (both spellings of micro).
fn unit(u: &str) -> Option<u64> {
    Some(match u {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// The leading digits of `s` as an integer; `None` on overflow.
fn leading_int(s: &str) -> Option<(u64, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let mut x: u64 = 0;
    for b in s[..end].bytes() {
        x = x.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        if x > 1 << 63 {
            return None;
        }
    }
    Some((x, &s[end..]))
}

/// The leading digits of a fraction: value and scale; digits past what
/// fits are dropped, as Go does.
fn leading_fraction(s: &str) -> (u64, f64, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (mut x, mut scale, mut overflow) = (0u64, 1f64, false);
    for b in s[..end].bytes() {
        if overflow {
            continue;
        }
        match x
            .checked_mul(10)
            .and_then(|y| y.checked_add(u64::from(b - b'0')))
            .filter(|y| *y <= 1 << 63)
        {
            Some(y) => {
                x = y;
                scale *= 10.0;
            }
            None => overflow = true,
        }
    }
    (x, scale, &s[end..])
}

/// Parse a Go duration (`time.ParseDuration`), refusing negative ones.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(input.to_string());
    let mut s = input;
    if s.starts_with('-') {
        return Err(DurationError::Negative(input.to_string()));
    }
    s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !s.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        let before = s.len();
        let (mut v, rest) = leading_int(s).ok_or_else(invalid)?;
        let pre = rest.len() != before;
        s = rest;
        let (mut frac, mut scale, mut post) = (0u64, 1f64, false);
        if let Some(rest) = s.strip_prefix('.') {
            let before = rest.len();
            let (f, sc, rest) = leading_fraction(rest);
            (frac, scale, post) = (f, sc, rest.len() != before);
            s = rest;
        }
        if !pre && !post {
            return Err(invalid());
        }
        let end = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if end == 0 {
            return Err(DurationError::MissingUnit(input.to_string()));
        }
        let u = &s[..end];
        s = &s[end..];
        let per = unit(u).ok_or_else(|| DurationError::UnknownUnit {
            unit: u.to_string(),
            input: input.to_string(),
        })?;
        if v > (1 << 63) / per {
            return Err(invalid());
        }
        v *= per;
        if frac > 0 {
            v += (frac as f64 * (per as f64 / scale)) as u64;
            if v > 1 << 63 {
                return Err(invalid());
            }
        }
        total = total
            .checked_add(v)
            .filter(|t| *t <= 1 << 63)
            .ok_or_else(invalid)?;
    }
    if total > (1 << 63) - 1 {
        return Err(invalid());
    }
    Ok(Duration::from_nanos(total))
}

/// [`parse`] of the trimmed text, `None` when it is not a duration.
pub fn parse_duration(s: &str) -> Option<Duration> {
    parse(s.trim()).ok()
}

/// The short form Consul shows for check intervals and timeouts: `10s`,
/// `1m30s`, `1h0m0s`, `250ms` (milliseconds unless whole seconds), and
/// nothing for zero.
pub fn short(d: Duration) -> String {
    if d.is_zero() {
        return String::new();
    }
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) || d.as_secs() == 0 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 || h > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_grammar() {
        let ok = |s: &str| parse(s).unwrap();
        assert_eq!(ok("10s"), Duration::from_secs(10));
        assert_eq!(ok("55000ms"), Duration::from_secs(55));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("1.s"), Duration::from_secs(1));
        assert_eq!(ok("+2m"), Duration::from_secs(120));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("100us"), Duration::from_micros(100));
        assert_eq!(ok("100\u{b5}s"), Duration::from_micros(100));
        assert_eq!(ok("100\u{3bc}s"), Duration::from_micros(100));
        assert_eq!(ok("1h2m3s4ms5us6ns"), Duration::new(3723, 4_005_006));
        // Go's largest: 2^63-1 ns.
        assert_eq!(
            ok("2562047h47m16.854775807s"),
            Duration::from_nanos(i64::MAX as u64)
        );
    }

    #[test]
    fn go_errors() {
        assert_eq!(parse(""), Err(DurationError::Invalid("".into())));
        assert_eq!(parse("10"), Err(DurationError::MissingUnit("10".into())));
        assert_eq!(
            parse("5x"),
            Err(DurationError::UnknownUnit {
                unit: "x".into(),
                input: "5x".into()
            })
        );
        assert_eq!(parse("-1s"), Err(DurationError::Negative("-1s".into())));
        for bad in [
            "s",
            ".s",
            "abc",
            "1e400s",
            "2562047h47m16.854775808s",
            "99999999999999999999s",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse("10").unwrap_err().to_string(),
            "time: missing unit in duration \"10\""
        );
    }

    #[test]
    fn short_form() {
        assert_eq!(short(Duration::ZERO), "");
        assert_eq!(short(Duration::from_millis(250)), "250ms");
        assert_eq!(short(Duration::from_secs(10)), "10s");
        assert_eq!(short(Duration::from_secs(90)), "1m30s");
        assert_eq!(short(Duration::from_secs(3600)), "1h0m0s");
    }
}
