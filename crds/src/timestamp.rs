//! RFC 3339 timestamps as the API writes them: `2026-05-01T09:00:00Z`, `2026-05-01T11:00:00.5+02:00`.
//!
//! A small strict parser (no date crate): an upper-case `T` between date and time, seconds required,
//! optional fraction, and `Z` or a `±HH:MM` offset. This is the subset Kubernetes (Go's `time.RFC3339`)
//! accepts, so a value `validate()` passes is one the API server's CEL `timestamp()` also reads.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The pattern the CRD schema puts on timestamp fields (shape only; the calendar is checked by
/// [`parse_rfc3339`]).
pub const TIMESTAMP_PATTERN: &str =
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$";

/// Why a timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// Not of the shape `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
    #[error(
        "timestamp {0:?} is not RFC 3339: write e.g. \"2026-05-01T09:00:00Z\" or \"2026-05-01T11:00:00+02:00\""
    )]
    Format(String),
    /// The shape is right but a field is out of range (month 13, 31 April, hour 24, ...).
    #[error("timestamp {input:?}: {what} is out of range")]
    Range {
        /// The whole string.
        input: String,
        /// Which field: "month", "day", "hour", "minute", "second", "offset".
        what: &'static str,
    },
}

/// Parse a strict RFC 3339 timestamp into a [`SystemTime`].
pub fn parse_rfc3339(input: &str) -> Result<SystemTime, TimestampError> {
    let format = || TimestampError::Format(input.to_owned());
    let range = |what| TimestampError::Range {
        input: input.to_owned(),
        what,
    };
    let b = input.as_bytes();
    if b.len() < 20 {
        return Err(format());
    }
    let num = |from: usize, len: usize| -> Result<u32, TimestampError> {
        let part = b.get(from..from + len).ok_or_else(format)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(format());
        }
        Ok(part.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let sep = |at: usize, want: u8| {
        if b.get(at) == Some(&want) {
            Ok(())
        } else {
            Err(format())
        }
    };
    let year = num(0, 4)?;
    sep(4, b'-')?;
    let month = num(5, 2)?;
    sep(7, b'-')?;
    let day = num(8, 2)?;
    sep(10, b'T')?;
    let hour = num(11, 2)?;
    sep(13, b':')?;
    let minute = num(14, 2)?;
    sep(16, b':')?;
    let second = num(17, 2)?;
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return Err(format());
        }
        for _ in (i - start)..9 {
            nanos *= 10;
        }
    }
    let offset_secs: i64 = match b.get(i) {
        Some(b'Z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() => {
            let oh = num(i + 1, 2)?;
            sep(i + 3, b':')?;
            let om = num(i + 4, 2)?;
            if oh > 23 || om > 59 {
                return Err(range("offset"));
            }
            let secs = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return Err(format()),
    };
    if !(1..=12).contains(&month) {
        return Err(range("month"));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(range("day"));
    }
    if hour > 23 {
        return Err(range("hour"));
    }
    if minute > 59 {
        return Err(range("minute"));
    }
    if second > 59 {
        return Err(range("second"));
    }
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
    let time = if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs.unsigned_abs(), nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(u64::from(nanos))
    };
    Ok(time)
}

/// Write a time as RFC 3339 in UTC with whole seconds, e.g. `2026-05-01T09:00:00Z` (the form Kubernetes
/// uses for `lastTransitionTime`). Times before 1970 are written as the epoch.
pub fn format_rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A time that displays as RFC 3339 in UTC with milliseconds, e.g. `2026-05-01T09:00:00.250Z` (the
/// session journal's timestamps). Displaying it allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339Millis(pub SystemTime);

impl std::fmt::Display for Rfc3339Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let (year, month, day) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(i64::MAX));
        let rem = secs % 86_400;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60,
            since.subsec_millis()
        )
    }
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn millis_round_trip() {
        let t = UNIX_EPOCH + Duration::from_millis(1_777_626_000_250);
        let text = Rfc3339Millis(t).to_string();
        assert_eq!(text, "2026-05-01T09:00:00.250Z");
        assert_eq!(parse_rfc3339(&text).unwrap(), t);
        assert_eq!(Rfc3339Millis(UNIX_EPOCH).to_string(), "1970-01-01T00:00:00.000Z");
    }

    fn unix(input: &str) -> i64 {
        let t = parse_rfc3339(input).unwrap();
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap(),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap(),
        }
    }

    #[test]
    fn parses_valid_timestamps() {
        assert_eq!(unix("1970-01-01T00:00:00Z"), 0);
        assert_eq!(unix("2026-05-01T09:00:00Z"), 1_777_626_000);
        assert_eq!(unix("2026-05-01T11:00:00+02:00"), 1_777_626_000);
        assert_eq!(unix("2026-05-01T04:30:00-04:30"), 1_777_626_000);
        assert_eq!(unix("2024-02-29T23:59:59Z"), 1_709_251_199);
        assert_eq!(unix("2000-02-29T00:00:00Z"), 951_782_400);
        assert_eq!(unix("1969-12-31T23:59:59Z"), -1);
        let frac = parse_rfc3339("2026-05-01T09:00:00.25Z").unwrap();
        assert_eq!(frac.duration_since(UNIX_EPOCH).unwrap().subsec_millis(), 250);
        let nanos = parse_rfc3339("2026-05-01T09:00:00.123456789123Z").unwrap();
        assert_eq!(
            nanos.duration_since(UNIX_EPOCH).unwrap().subsec_nanos(),
            123_456_789
        );
    }

    #[test]
    fn refuses_bad_shapes() {
        for bad in [
            "",
            "2026-05-01",
            "2026-05-01 09:00:00Z",
            "2026-05-01t09:00:00Z",
            "2026-05-01T09:00Z",
            "2026-05-01T09:00:00",
            "2026-05-01T09:00:00z",
            "2026-05-01T09:00:00.Z",
            "2026-05-01T09:00:00+0200",
            "2026-05-01T09:00:00Z ",
            "26-05-01T09:00:00Z",
            "2026-5-01T09:00:00Z",
            "2026-05-01T09:00:00+02:00Z",
            "２０２６-05-01T09:00:00Z",
        ] {
            assert_eq!(
                parse_rfc3339(bad),
                Err(TimestampError::Format(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn refuses_impossible_dates() {
        for (bad, what) in [
            ("2026-13-01T00:00:00Z", "month"),
            ("2026-00-01T00:00:00Z", "month"),
            ("2026-04-31T00:00:00Z", "day"),
            ("2026-02-29T00:00:00Z", "day"),
            ("1900-02-29T00:00:00Z", "day"),
            ("2026-05-00T00:00:00Z", "day"),
            ("2026-05-01T24:00:00Z", "hour"),
            ("2026-05-01T23:60:00Z", "minute"),
            ("2026-05-01T23:59:60Z", "second"),
            ("2026-05-01T23:59:59+24:00", "offset"),
        ] {
            assert_eq!(
                parse_rfc3339(bad),
                Err(TimestampError::Range {
                    input: bad.to_owned(),
                    what
                }),
                "{bad}"
            );
        }
    }

    #[test]
    fn formats_in_utc_and_round_trips() {
        assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        for s in [
            "2026-05-01T09:00:00Z",
            "2024-02-29T23:59:59Z",
            "2100-03-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
        ] {
            assert_eq!(format_rfc3339(parse_rfc3339(s).unwrap()), s);
        }
        let t = parse_rfc3339("2026-05-01T11:00:00+02:00").unwrap();
        assert_eq!(format_rfc3339(t), "2026-05-01T09:00:00Z");
    }

    #[test]
    fn schema_pattern_matches_valid_shapes() {
        let re = regex::Regex::new(TIMESTAMP_PATTERN).unwrap();
        assert!(re.is_match("2026-05-01T09:00:00Z"));
        assert!(re.is_match("2026-05-01T11:00:00.5+02:00"));
        assert!(!re.is_match("2026-05-01 09:00:00Z"));
        assert!(!re.is_match("tomorrow"));
    }
}
