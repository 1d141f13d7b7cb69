//! Small text helpers for the plugin's output: kubectl's human durations, terminal-safe text, truncation
//! and aligned tables.

use std::time::{Duration, SystemTime};

/// A duration the way kubectl prints ages (`k8s.io/apimachinery/pkg/util/duration.HumanDuration`):
/// `45s`, `3m20s`, `42m`, `5h12m`, `20h`, `3d4h`, `90d`, `2y30d`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        return match secs % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        };
    }
    if days < 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if days < 365 * 8 {
        return match days % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        };
    }
    format!("{years}y")
}

/// How long ago `then` was, as [`human_duration`] (a time slightly in the future reads `0s`).
pub fn age(then: SystemTime, now: SystemTime) -> String {
    human_duration(now.duration_since(then).unwrap_or_default())
}

/// How long until `then`, as [`human_duration`]; `expired` when it has passed.
pub fn time_left(then: SystemTime, now: SystemTime) -> String {
    match then.duration_since(now) {
        Ok(d) if !d.is_zero() => human_duration(d),
        _ => "expired".to_owned(),
    }
}

/// Text that is safe to print on a terminal: control characters (escape sequences, carriage returns)
/// and bidirectional-override characters are written as escapes, so a statement or a reason cannot
/// repaint or reorder what an approver sees. Tabs become spaces; newlines become `\n`.
pub fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' => out.push(' '),
            c if c.is_control() || is_bidi_control(c) => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A statement on one line: its line breaks become spaces (nothing else changes), then
/// [`terminal_safe`].
pub fn one_line(text: &str) -> String {
    let joined: String = text
        .trim()
        .chars()
        .map(|c| if matches!(c, '\n' | '\r') { ' ' } else { c })
        .collect();
    terminal_safe(&joined)
}

/// The first non-empty line of `text`, cut to `max` characters (with `...` when cut, or when more lines
/// follow), terminal-safe.
pub fn first_line(text: &str, max: usize) -> String {
    let text = text.trim();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default().trim_end();
    let more = lines.any(|l| !l.trim().is_empty());
    let count = first.chars().count();
    let (shown, cut) = if count > max {
        let keep = max.saturating_sub(3);
        (first.chars().take(keep).collect::<String>(), true)
    } else {
        (first.to_owned(), more)
    };
    let mut out = terminal_safe(&shown);
    if cut {
        out.push_str("...");
    }
    out
}

/// Rows as aligned columns separated by three spaces (kubectl's layout); the last column is not padded.
/// Each line starts with `indent`.
pub fn table(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::from(indent);
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count() + 3;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `a, b and c`, for lists in sentences.
pub fn join_names<S: AsRef<str>>(names: &[S]) -> String {
    match names {
        [] => String::new(),
        [one] => one.as_ref().to_owned(),
        [rest @ .., last] => {
            let head: Vec<&str> = rest.iter().map(AsRef::as_ref).collect();
            format!("{} and {}", head.join(", "), last.as_ref())
        }
    }
}
