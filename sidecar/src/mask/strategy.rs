//! How one value is rewritten, and which rewrite wins when several rules mask the same column.

use bytes::{BufMut, BytesMut};
use dbward_crds::{MaskStrategy, MaskingRule};

use super::MaskKey;

/// The replacement text of redact when the rule names none, and of the parts that email and partial hide
/// whole.
pub const DEFAULT_REDACTION: &str = "****";

/// The prefix of a hashed value, so a reader sees it is not the data.
pub const HASH_PREFIX: &str = "h:";

/// How many bytes of the HMAC tag are shown (as hex: twice as many characters).
const HASH_BYTES: usize = 8;

/// A masking strategy with its parameters, ready to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// Replace the value with fixed text.
    Redact { replacement: Box<str> },
    /// Replace the value with SQL NULL.
    Null,
    /// Replace the value with `h:` and 16 hex characters of HMAC-SHA256 under the [`MaskKey`].
    Hash,
    /// Keep `keep_first` leading and `keep_last` trailing characters; each other character becomes `*`.
    Partial { keep_first: u32, keep_last: u32 },
    /// Keep the domain of an e-mail address; the local part becomes `****`.
    Email,
}

/// What [`Strategy::apply`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Masked {
    /// The masked value was appended to the output.
    Value,
    /// The value must become SQL NULL; nothing was appended.
    Null,
}

impl Strategy {
    /// The strategy of a masking rule (its parameters taken from the rule; missing ones default).
    pub fn from_rule(rule: &MaskingRule) -> Self {
        Self::new(
            rule.strategy,
            rule.replacement.as_deref(),
            rule.keep_first,
            rule.keep_last,
        )
    }

    /// A strategy from its API kind and parameters: `replacement` for redact (default `****`),
    /// `keep_first` / `keep_last` for partial (default 0). Parameters of other kinds are ignored.
    pub fn new(
        kind: MaskStrategy,
        replacement: Option<&str>,
        keep_first: Option<u32>,
        keep_last: Option<u32>,
    ) -> Self {
        match kind {
            MaskStrategy::Redact => Self::Redact {
                replacement: replacement.unwrap_or(DEFAULT_REDACTION).into(),
            },
            MaskStrategy::Null => Self::Null,
            MaskStrategy::Hash => Self::Hash,
            MaskStrategy::Partial => Self::Partial {
                keep_first: keep_first.unwrap_or(0),
                keep_last: keep_last.unwrap_or(0),
            },
            MaskStrategy::Email => Self::Email,
        }
    }

    /// Append the masked form of `value` to `out`, or say it must be NULL.
    pub fn apply(&self, value: &[u8], key: &MaskKey, out: &mut BytesMut) -> Masked {
        match self {
            Self::Null => return Masked::Null,
            Self::Redact { replacement } => out.extend_from_slice(replacement.as_bytes()),
            Self::Hash => hash(value, key, out),
            Self::Partial {
                keep_first,
                keep_last,
            } => partial(value, *keep_first as usize, *keep_last as usize, out),
            Self::Email => email(value, out),
        }
        Masked::Value
    }

    /// How much the strategy hides, for "the strongest strategy per column wins":
    /// null (4) > redact (3) > hash (2) > email (1) > partial (0).
    ///
    /// Null shows nothing at all. Redact shows only that a value exists. Hash also shows which values
    /// are equal (rows can be linked and counted), so it hides less. Email shows the domain, a real part
    /// of the value. Partial shows characters of the value and its length, so it hides least.
    pub fn strength(&self) -> u8 {
        match self {
            Self::Null => 4,
            Self::Redact { .. } => 3,
            Self::Hash => 2,
            Self::Email => 1,
            Self::Partial { .. } => 0,
        }
    }

    /// Whether the output can still contain parts of the value (so detectors have something to find).
    pub fn keeps_content(&self) -> bool {
        matches!(self, Self::Partial { .. } | Self::Email)
    }
}

/// The strategy that hides the most of `a` and `b` (by [`Strategy::strength`]). Two partial strategies
/// combine into one that keeps no more than either (the smaller keepFirst and the smaller keepLast); on
/// any other tie `a` wins.
pub fn strongest(a: Strategy, b: Strategy) -> Strategy {
    match (a, b) {
        (
            Strategy::Partial {
                keep_first: f1,
                keep_last: l1,
            },
            Strategy::Partial {
                keep_first: f2,
                keep_last: l2,
            },
        ) => Strategy::Partial {
            keep_first: f1.min(f2),
            keep_last: l1.min(l2),
        },
        (a, b) if b.strength() > a.strength() => b,
        (a, _) => a,
    }
}

fn hash(value: &[u8], key: &MaskKey, out: &mut BytesMut) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let tag = key.tag(value);
    out.reserve(HASH_PREFIX.len() + 2 * HASH_BYTES);
    out.extend_from_slice(HASH_PREFIX.as_bytes());
    for byte in &tag.as_ref()[..HASH_BYTES] {
        out.put_u8(HEX[usize::from(byte >> 4)]);
        out.put_u8(HEX[usize::from(byte & 0x0f)]);
    }
}

/// Walk `value` as characters: valid UTF-8 sequences count one each, every byte of an invalid sequence
/// counts one. Calls `f(byte_offset)` at the start of each character and returns the character count.
fn for_each_char(value: &[u8], mut f: impl FnMut(usize)) -> usize {
    let mut count = 0;
    let mut offset = 0;
    for chunk in value.utf8_chunks() {
        for c in chunk.valid().chars() {
            f(offset);
            offset += c.len_utf8();
            count += 1;
        }
        for _ in chunk.invalid() {
            f(offset);
            offset += 1;
            count += 1;
        }
    }
    count
}

fn partial(value: &[u8], keep_first: usize, keep_last: usize, out: &mut BytesMut) {
    let chars = if value.is_ascii() {
        value.len()
    } else {
        for_each_char(value, |_| {})
    };
    if chars <= keep_first.saturating_add(keep_last) {
        // Too short to hide anything while keeping what was asked: hide it all.
        out.put_bytes(b'*', chars);
        return;
    }
    let hidden = chars - keep_first - keep_last;
    let (head_end, tail_start) = if value.is_ascii() {
        (keep_first, value.len() - keep_last)
    } else {
        let (mut head_end, mut tail_start) = (value.len(), value.len());
        let mut index = 0;
        for_each_char(value, |offset| {
            if index == keep_first {
                head_end = offset;
            }
            if index == chars - keep_last {
                tail_start = offset;
            }
            index += 1;
        });
        (head_end, tail_start)
    };
    out.reserve(head_end + hidden + (value.len() - tail_start));
    out.extend_from_slice(&value[..head_end]);
    out.put_bytes(b'*', hidden);
    out.extend_from_slice(&value[tail_start..]);
}

fn email(value: &[u8], out: &mut BytesMut) {
    out.extend_from_slice(DEFAULT_REDACTION.as_bytes());
    // The last '@' starts the domain: a quoted local part may itself contain '@'.
    if let Some(at) = value.iter().rposition(|&b| b == b'@')
        && at + 1 < value.len()
    {
        out.extend_from_slice(&value[at..]);
    }
}
