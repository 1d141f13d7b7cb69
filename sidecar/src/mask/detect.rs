//! Detectors: find sensitive text inside a value (card numbers, e-mail addresses, IBANs, SSNs, a
//! policy's own pattern) and mask each finding by its rule's strategy.

use std::ops::Range;

use bytes::BytesMut;
use dbward_crds::{Detector, MaskingRule, policy::PATTERN_SIZE_LIMIT};

use super::{MaskError, MaskKey, Masked, Strategy, scan};

/// One detector with the strategy that masks what it finds.
#[derive(Debug, Clone)]
pub struct DetectorRule {
    kind: Kind,
    strategy: Strategy,
}

#[derive(Debug, Clone)]
enum Kind {
    CreditCard,
    Email,
    Iban,
    Ssn,
    Regex(regex::bytes::Regex),
}

/// What [`scan_and_mask`] did with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanResult {
    /// Nothing was found; the value was appended unchanged.
    Clean,
    /// Something was found; the value was appended with every finding masked.
    Masked,
    /// A finding's strategy is null, so the whole value must become SQL NULL; nothing was appended.
    Null,
}

impl DetectorRule {
    /// A detector and the strategy for its findings. `pattern` is required for [`Detector::Regex`]
    /// (and ignored otherwise); it is checked with the same compiler the API validation uses
    /// ([`dbward_crds::policy::compile_pattern`]), so a pattern that validated also runs here.
    pub fn new(detector: Detector, pattern: Option<&str>, strategy: Strategy) -> Result<Self, MaskError> {
        let kind = match detector {
            Detector::CreditCard => Kind::CreditCard,
            Detector::Email => Kind::Email,
            Detector::Iban => Kind::Iban,
            Detector::Ssn => Kind::Ssn,
            Detector::Regex => {
                let pattern = pattern.ok_or(MaskError::MissingPattern)?;
                dbward_crds::policy::compile_pattern(pattern).map_err(MaskError::InvalidPattern)?;
                // Values are bytes (not always UTF-8): run the same pattern, with the same limit, on bytes.
                let regex = regex::bytes::RegexBuilder::new(pattern)
                    .size_limit(PATTERN_SIZE_LIMIT)
                    .build()
                    .map_err(MaskError::InvalidPattern)?;
                Kind::Regex(regex)
            }
        };
        Ok(Self { kind, strategy })
    }

    /// The detector rule of a masking rule, or `None` when the rule masks columns instead.
    pub fn from_rule(rule: &MaskingRule) -> Result<Option<Self>, MaskError> {
        rule.detector
            .map(|detector| Self::new(detector, rule.pattern.as_deref(), Strategy::from_rule(rule)))
            .transpose()
    }

    /// The strategy applied to this detector's findings.
    pub fn strategy(&self) -> &Strategy {
        &self.strategy
    }

    /// The leftmost non-empty finding starting at or after `from`.
    fn find(&self, text: &[u8], from: usize) -> Option<Range<usize>> {
        match &self.kind {
            Kind::CreditCard => scan::find_card(text, from),
            Kind::Email => scan::find_email(text, from),
            Kind::Iban => scan::find_iban(text, from),
            Kind::Ssn => scan::find_ssn(text, from),
            Kind::Regex(regex) => {
                let mut at = from;
                while at <= text.len() {
                    let m = regex.find_at(text, at)?;
                    if !m.is_empty() {
                        return Some(m.range());
                    }
                    at = m.end() + 1;
                }
                None
            }
        }
    }
}

/// How many detectors' next findings are remembered between steps of one scan (the rest are searched
/// again each step, which is only slower).
const CACHED: usize = 16;

/// Append `text` to `out` with every finding of `detectors` replaced by its rule's masked form.
///
/// Findings are taken left to right; where findings of several detectors overlap, the one that starts
/// first wins (the longer on a tie, then the earlier detector), and the text it covers is masked whole.
/// If a finding's strategy is null, the whole value must become NULL: `out` is left as it was and
/// [`ScanResult::Null`] returned.
pub fn scan_and_mask(
    text: &[u8],
    detectors: &[DetectorRule],
    key: &MaskKey,
    out: &mut BytesMut,
) -> ScanResult {
    let mark = out.len();
    // The next finding of each of the first CACHED detectors, valid while it starts at or after `pos`.
    let mut next: [Option<Range<usize>>; CACHED] = std::array::from_fn(|_| None);
    let mut searched = [false; CACHED];
    let mut pos = 0;
    let mut found = false;
    loop {
        let mut best: Option<(Range<usize>, usize)> = None;
        for (n, detector) in detectors.iter().enumerate() {
            let finding = if n < CACHED {
                let stale = next[n].as_ref().is_some_and(|r| r.start < pos);
                if !searched[n] || stale {
                    next[n] = detector.find(text, pos);
                    searched[n] = true;
                }
                next[n].clone()
            } else {
                detector.find(text, pos)
            };
            if let Some(r) = finding {
                let better = match &best {
                    None => true,
                    Some((b, _)) => r.start < b.start || (r.start == b.start && r.end > b.end),
                };
                if better {
                    best = Some((r, n));
                }
            }
        }
        let Some((range, n)) = best else { break };
        found = true;
        out.extend_from_slice(&text[pos..range.start]);
        if detectors[n].strategy.apply(&text[range.clone()], key, out) == Masked::Null {
            out.truncate(mark);
            return ScanResult::Null;
        }
        pos = range.end;
    }
    out.extend_from_slice(&text[pos..]);
    if found {
        ScanResult::Masked
    } else {
        ScanResult::Clean
    }
}
