//! Durations as written in the API: `"500ms"`, `"30s"`, `"10m"`, `"1h"`, `"1h30m"`.
//!
//! The grammar is deliberately small: one or more `<digits><unit>` groups, units `h`, `m`, `s`, `ms`, each
//! unit at most once and from the largest to the smallest. No sign, no fractions, no spaces. A bare number
//! is an error (is `30` seconds or minutes?), and so is a unit we do not know (`5d`).

use std::{fmt, time::Duration};

/// The pattern the CRD schema puts on duration fields, so the API server rejects the grossest mistakes.
/// [`parse_duration`] is stricter (unit order, no repeats, overflow); `validate()` reports those.
pub const DURATION_PATTERN: &str = "^([0-9]+(h|ms|m|s))+$";

/// Why a duration string was refused. The message names the input and says how to write it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string is empty.
    #[error("empty duration: write a number and a unit, e.g. \"30s\", \"10m\" or \"1h30m\"")]
    Empty,
    /// A number with no unit after it.
    #[error("duration {input:?}: {number} has no unit: write e.g. \"{number}s\" (units: h, m, s, ms)")]
    MissingUnit {
        /// The whole string.
        input: String,
        /// The number without a unit.
        number: String,
    },
    /// A unit we do not know, such as `d` or `us`.
    #[error("duration {input:?}: unknown unit {unit:?}: use h, m, s or ms")]
    UnknownUnit {
        /// The whole string.
        input: String,
        /// The unit as written.
        unit: String,
    },
    /// Something that is neither a digit nor a unit, e.g. a sign, a dot or a space.
    #[error(
        "duration {input:?}: unexpected {found:?}: write whole numbers with units, e.g. \"1h30m\" or \"500ms\""
    )]
    Unexpected {
        /// The whole string.
        input: String,
        /// The offending character.
        found: char,
    },
    /// A unit appears twice, or after a smaller one (`30m1h`).
    #[error("duration {input:?}: unit {unit:?} is repeated or out of order: write units from h down to ms")]
    UnitOrder {
        /// The whole string.
        input: String,
        /// The unit that came too late.
        unit: String,
    },
    /// The value does not fit.
    #[error("duration {input:?} is too large")]
    Overflow {
        /// The whole string.
        input: String,
    },
}

/// Parse an API duration string. See the module documentation for the grammar.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    let overflow = || DurationError::Overflow {
        input: input.to_owned(),
    };
    let bytes = input.as_bytes();
    let mut total = Duration::ZERO;
    // Rank of the last unit seen: units must strictly descend (h=4, m=3, s=2, ms=1).
    let mut last_rank = u8::MAX;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(unexpected(input, start));
        }
        let number = &input[start..i];
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &input[unit_start..i];
        if unit.is_empty() {
            if i < bytes.len() {
                return Err(unexpected(input, i));
            }
            return Err(DurationError::MissingUnit {
                input: input.to_owned(),
                number: number.to_owned(),
            });
        }
        let (rank, unit_len) = match unit {
            "h" => (4, Duration::from_secs(3600)),
            "m" => (3, Duration::from_secs(60)),
            "s" => (2, Duration::from_secs(1)),
            "ms" => (1, Duration::from_millis(1)),
            _ => {
                return Err(DurationError::UnknownUnit {
                    input: input.to_owned(),
                    unit: unit.to_owned(),
                });
            }
        };
        if rank >= last_rank {
            return Err(DurationError::UnitOrder {
                input: input.to_owned(),
                unit: unit.to_owned(),
            });
        }
        last_rank = rank;
        let n: u32 = number.parse().map_err(|_| overflow())?;
        let part = unit_len.checked_mul(n).ok_or_else(overflow)?;
        total = total.checked_add(part).ok_or_else(overflow)?;
    }
    Ok(total)
}

fn unexpected(input: &str, at: usize) -> DurationError {
    let found = input[at..].chars().next().unwrap_or('?');
    DurationError::Unexpected {
        input: input.to_owned(),
        found,
    }
}

/// Write a duration in the API's notation, the inverse of [`parse_duration`] (sub-millisecond parts are
/// dropped): `90s` becomes `"1m30s"`, zero becomes `"0s"`.
pub fn format_duration(d: Duration) -> String {
    let mut out = String::new();
    let secs = d.as_secs();
    let (h, m, s, ms) = (secs / 3600, secs / 60 % 60, secs % 60, d.subsec_millis());
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s"), (u64::from(ms), "ms")] {
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(unit);
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// A [`Duration`] that displays in the API's notation, for messages: `format!("{}", Pretty(d))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pretty(pub Duration);

impl fmt::Display for Pretty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("10m", Duration::from_secs(600)),
            ("1h", Duration::from_secs(3600)),
            ("1h30m", Duration::from_secs(5400)),
            ("1h0m5s250ms", Duration::from_millis(3_605_250)),
            ("0s", Duration::ZERO),
            ("90s", Duration::from_secs(90)),
            ("007m", Duration::from_secs(420)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn refuses_with_a_reason() {
        let s = |v: &str| v.to_owned();
        let cases = [
            ("", DurationError::Empty),
            (
                "30",
                DurationError::MissingUnit {
                    input: s("30"),
                    number: s("30"),
                },
            ),
            (
                "1h30",
                DurationError::MissingUnit {
                    input: s("1h30"),
                    number: s("30"),
                },
            ),
            (
                "5d",
                DurationError::UnknownUnit {
                    input: s("5d"),
                    unit: s("d"),
                },
            ),
            (
                "5us",
                DurationError::UnknownUnit {
                    input: s("5us"),
                    unit: s("us"),
                },
            ),
            (
                "5S",
                DurationError::UnknownUnit {
                    input: s("5S"),
                    unit: s("S"),
                },
            ),
            (
                "-5s",
                DurationError::Unexpected {
                    input: s("-5s"),
                    found: '-',
                },
            ),
            (
                "1.5h",
                DurationError::Unexpected {
                    input: s("1.5h"),
                    found: '.',
                },
            ),
            (
                "5 s",
                DurationError::Unexpected {
                    input: s("5 s"),
                    found: ' ',
                },
            ),
            (
                " 5s",
                DurationError::Unexpected {
                    input: s(" 5s"),
                    found: ' ',
                },
            ),
            (
                "s",
                DurationError::Unexpected {
                    input: s("s"),
                    found: 's',
                },
            ),
            (
                "30m1h",
                DurationError::UnitOrder {
                    input: s("30m1h"),
                    unit: s("h"),
                },
            ),
            (
                "1m1m",
                DurationError::UnitOrder {
                    input: s("1m1m"),
                    unit: s("m"),
                },
            ),
            (
                "99999999999h",
                DurationError::Overflow {
                    input: s("99999999999h"),
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn messages_say_what_to_write() {
        let msg = parse_duration("30").unwrap_err().to_string();
        assert_eq!(
            msg,
            "duration \"30\": 30 has no unit: write e.g. \"30s\" (units: h, m, s, ms)"
        );
        let msg = parse_duration("2d").unwrap_err().to_string();
        assert!(msg.contains("unknown unit \"d\": use h, m, s or ms"), "{msg}");
    }

    #[test]
    fn format_round_trips() {
        for input in ["0s", "500ms", "30s", "10m", "1h", "1h30m", "2h5s", "1h1m1s1ms"] {
            assert_eq!(format_duration(parse_duration(input).unwrap()), input);
        }
        assert_eq!(Pretty(Duration::from_secs(90)).to_string(), "1m30s");
    }

    #[test]
    fn schema_pattern_accepts_what_the_parser_accepts() {
        let re = regex::Regex::new(DURATION_PATTERN).unwrap();
        for ok in ["500ms", "1h30m", "0s", "1h0m5s250ms"] {
            assert!(re.is_match(ok), "{ok}");
        }
        for bad in ["", "30", "5d", "1.5h", "-1s"] {
            assert!(!re.is_match(bad), "{bad}");
        }
    }
}
