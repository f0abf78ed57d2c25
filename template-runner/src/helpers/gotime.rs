//! Go time layouts (`2006-01-02T15:04:05Z07:00`): formatting a time the way
//! Go's `time.Time.Format` does, for `timestamp` and `(datetime).Format`.

use chrono::{DateTime, Datelike, FixedOffset, Timelike};

const LONG_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const LONG_DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// RFC 3339, Go's `time.RFC3339`.
pub const RFC3339: &str = "2006-01-02T15:04:05Z07:00";
/// What Go's `time.Time.String()` prints (less the monotonic clock).
pub const GO_STRING: &str = "2006-01-02 15:04:05.999999999 -0700 MST";

/// The zone's abbreviation: "UTC" at offset 0, else Go's numeric form.
fn zone_name(t: &DateTime<FixedOffset>) -> String {
    let secs = t.offset().local_minus_utc();
    if secs == 0 {
        return "UTC".into();
    }
    let (sign, s) = if secs < 0 { ('-', -secs) } else { ('+', secs) };
    if s % 3600 == 0 {
        format!("{sign}{:02}", s / 3600)
    } else {
        format!("{sign}{:02}{:02}", s / 3600, (s % 3600) / 60)
    }
}

fn offset(t: &DateTime<FixedOffset>, z: bool, colon: bool, secs: bool, hours_only: bool) -> String {
    let off = t.offset().local_minus_utc();
    if z && off == 0 {
        return "Z".into();
    }
    let (sign, s) = if off < 0 { ('-', -off) } else { ('+', off) };
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    let sep = if colon { ":" } else { "" };
    let mut out = format!("{sign}{h:02}");
    if !hours_only {
        out.push_str(&format!("{sep}{m:02}"));
    }
    if secs {
        out.push_str(&format!("{sep}{sec:02}"));
    }
    out
}

/// Fractional seconds for `.000` (fixed) or `.999` (trailing zeros cut).
fn fraction(nanos: u32, digits: usize, trim: bool, sep: char) -> String {
    let all = format!("{nanos:09}");
    let mut d = all[..digits.min(9)].to_string();
    if trim {
        d = d.trim_end_matches('0').to_string();
        if d.is_empty() {
            return String::new();
        }
    }
    format!("{sep}{d}")
}

/// Format `t` with Go layout `layout`.
pub fn format(t: &DateTime<FixedOffset>, layout: &str) -> String {
    let b = layout.as_bytes();
    let mut out = String::with_capacity(layout.len() + 8);
    let mut i = 0;
    let at = |i: usize, s: &str| layout[i..].starts_with(s);
    let hour12 = if t.hour().is_multiple_of(12) {
        12
    } else {
        t.hour() % 12
    };
    while i < b.len() {
        // Longest standard chunks first, as Go's nextStdChunk does.
        let (piece, n): (String, usize) = if at(i, "January") {
            (LONG_MONTHS[t.month0() as usize].into(), 7)
        } else if at(i, "Jan") {
            (LONG_MONTHS[t.month0() as usize][..3].into(), 3)
        } else if at(i, "Monday") {
            (
                LONG_DAYS[t.weekday().num_days_from_sunday() as usize].into(),
                6,
            )
        } else if at(i, "Mon") {
            (
                LONG_DAYS[t.weekday().num_days_from_sunday() as usize][..3].into(),
                3,
            )
        } else if at(i, "MST") {
            (zone_name(t), 3)
        } else if at(i, "2006") {
            (format!("{:04}", t.year()), 4)
        } else if at(i, "002") {
            (format!("{:03}", t.ordinal()), 3)
        } else if at(i, "01") {
            (format!("{:02}", t.month()), 2)
        } else if at(i, "02") {
            (format!("{:02}", t.day()), 2)
        } else if at(i, "03") {
            (format!("{hour12:02}"), 2)
        } else if at(i, "04") {
            (format!("{:02}", t.minute()), 2)
        } else if at(i, "05") {
            (format!("{:02}", t.second()), 2)
        } else if at(i, "06") {
            (format!("{:02}", t.year() % 100), 2)
        } else if at(i, "15") {
            (format!("{:02}", t.hour()), 2)
        } else if at(i, "_2") && !at(i, "_2006") {
            (format!("{:>2}", t.day()), 2)
        } else if at(i, "1") {
            (t.month().to_string(), 1)
        } else if at(i, "2") {
            (t.day().to_string(), 1)
        } else if at(i, "3") {
            (hour12.to_string(), 1)
        } else if at(i, "4") {
            (t.minute().to_string(), 1)
        } else if at(i, "5") {
            (t.second().to_string(), 1)
        } else if at(i, "PM") {
            ((if t.hour() >= 12 { "PM" } else { "AM" }).into(), 2)
        } else if at(i, "pm") {
            ((if t.hour() >= 12 { "pm" } else { "am" }).into(), 2)
        } else if let Some((p, n)) = zone_chunk(t, &layout[i..]) {
            (p, n)
        } else if (b[i] == b'.' || b[i] == b',')
            && i + 1 < b.len()
            && (b[i + 1] == b'0' || b[i + 1] == b'9')
        {
            let d = b[i + 1];
            let mut j = i + 1;
            while j < b.len() && b[j] == d {
                j += 1;
            }
            if j < b.len() && b[j].is_ascii_digit() {
                (layout[i..i + 1].to_string(), 1)
            } else {
                let p = fraction(
                    t.nanosecond() % 1_000_000_000,
                    j - i - 1,
                    d == b'9',
                    b[i] as char,
                );
                (p, j - i)
            }
        } else {
            let c = layout[i..].chars().next().unwrap_or(' ');
            (c.to_string(), c.len_utf8())
        };
        out.push_str(&piece);
        i += n;
    }
    out
}

/// Numeric zone chunks: `-070000 -07:00:00 -0700 -07:00 -07` and their
/// `Z` forms (Z for UTC).
fn zone_chunk(t: &DateTime<FixedOffset>, rest: &str) -> Option<(String, usize)> {
    for (pat, colon, secs, hours) in [
        ("070000", false, true, false),
        ("07:00:00", true, true, false),
        ("0700", false, false, false),
        ("07:00", true, false, false),
        ("07", false, false, true),
    ] {
        for (lead, z) in [("-", false), ("Z", true)] {
            let full = format!("{lead}{pat}");
            if rest.starts_with(&full) {
                return Some((offset(t, z, colon, secs, hours), full.len()));
            }
        }
    }
    None
}

/// Parse what [`GO_STRING`] printed (for `(datetime).Format`).
pub fn parse_go_string(s: &str) -> Option<DateTime<FixedOffset>> {
    let mut parts = s.split(' ');
    let date = parts.next()?;
    let time = parts.next()?;
    let off = parts.next()?;
    DateTime::parse_from_str(&format!("{date} {time} {off}"), "%Y-%m-%d %H:%M:%S%.f %z").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_layouts() {
        let t = DateTime::parse_from_rfc3339("2024-03-05T07:08:09.120+01:00").unwrap();
        assert_eq!(format(&t, RFC3339), "2024-03-05T07:08:09+01:00");
        assert_eq!(
            format(&t, "Jan 2, 2006 at 3:04pm (MST)"),
            "Mar 5, 2024 at 7:08am (+01)"
        );
        assert_eq!(
            format(&t, "Monday January _2 15:04:05.000 -0700"),
            "Tuesday March  5 07:08:09.120 +0100"
        );
        assert_eq!(
            format(&t, "2006-01-02 15:04:05.999999999"),
            "2024-03-05 07:08:09.12"
        );
        let u = DateTime::parse_from_rfc3339("2024-12-31T23:59:59Z").unwrap();
        assert_eq!(format(&u, RFC3339), "2024-12-31T23:59:59Z");
        assert_eq!(format(&u, "002 06 3PM"), "366 24 11PM");
        let s = format(&t, GO_STRING);
        assert_eq!(s, "2024-03-05 07:08:09.12 +0100 +01");
        assert_eq!(parse_go_string(&s), Some(t));
    }
}
