//! Masking rules as the caller's policy sees them: the strategy for a column, and the detectors to run,
//! merged across policies (the strongest strategy wins).

use std::{cmp::Ordering, sync::Arc};

use dbward_crds::{Detector, MaskStrategy, MaskingRule};

use super::decide::RuleRef;

/// How to mask one value: the winning strategy and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskSpec {
    /// The strategy.
    pub strategy: MaskStrategy,
    /// Strategy redact: the replacement text (`None`: the default `****`).
    pub replacement: Option<Arc<str>>,
    /// Strategy partial: leading characters kept (0 otherwise).
    pub keep_first: u32,
    /// Strategy partial: trailing characters kept (0 otherwise).
    pub keep_last: u32,
    /// The masking rule this comes from (`masking[i]` of a policy), for the journal.
    pub source: RuleRef,
}

/// A detector to run on text values, with how to mask what it finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectorSpec {
    /// The built-in detector.
    pub detector: Detector,
    /// Detector regex: the pattern, to compile with `dbward_crds::compile_pattern`.
    pub pattern: Option<String>,
    /// How to mask a detected value.
    pub mask: MaskSpec,
}

impl MaskSpec {
    pub(crate) fn from_rule(rule: &MaskingRule, source: RuleRef) -> Self {
        let partial = rule.strategy == MaskStrategy::Partial;
        Self {
            strategy: rule.strategy,
            replacement: rule.replacement.as_deref().map(Arc::from),
            keep_first: rule.keep_first.filter(|_| partial).unwrap_or(0),
            keep_last: rule.keep_last.filter(|_| partial).unwrap_or(0),
            source,
        }
    }

    /// How much this mask hides: the stronger strategy first (null > redact > hash > email > partial),
    /// then, between partials, the one keeping fewer characters.
    fn strength_cmp(&self, other: &Self) -> Ordering {
        rank(self.strategy).cmp(&rank(other.strategy)).then_with(|| {
            let kept = |m: &Self| u64::from(m.keep_first) + u64::from(m.keep_last);
            kept(other).cmp(&kept(self))
        })
    }

    /// Whether `self` hides strictly more than `other` (ties keep the earlier rule).
    pub(crate) fn stronger_than(&self, other: &Self) -> bool {
        self.strength_cmp(other) == Ordering::Greater
    }
}

fn rank(strategy: MaskStrategy) -> u8 {
    match strategy {
        MaskStrategy::Partial => 1,
        MaskStrategy::Email => 2,
        MaskStrategy::Hash => 3,
        MaskStrategy::Redact => 4,
        MaskStrategy::Null => 5,
    }
}

/// Adds `spec` to `detectors`: a detector already there with the same pattern keeps the stronger mask.
pub(crate) fn add_detector(detectors: &mut Vec<DetectorSpec>, spec: &DetectorSpec) {
    match detectors
        .iter_mut()
        .find(|d| d.detector == spec.detector && d.pattern == spec.pattern)
    {
        Some(existing) => {
            if spec.mask.stronger_than(&existing.mask) {
                existing.mask = spec.mask.clone();
            }
        }
        None => detectors.push(spec.clone()),
    }
}
