//! A [`PolicySet`] narrowed to one caller on one connection at one time: the applicable policies' rules
//! indexed by operation, their masking, limits and time boundaries, precomputed so that each statement's
//! decision only walks the rules that can match.

use std::{sync::Arc, time::Duration, time::SystemTime};

use dbward_crds::{Enforcement, Operation};

use super::{
    compile::{Compiled, CompiledPolicy, CompiledRule, PolicySet, next_boundary},
    masking::{DetectorSpec, MaskSpec, add_detector},
    subject,
};
use crate::identity::{CallerIdentity, IdentityKind};

/// Caps on one statement, the minimum of each across the applicable enforce policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EffectiveLimits {
    /// Most rows a statement may return.
    pub max_rows: Option<u64>,
    /// Most result bytes a statement may return.
    pub max_bytes: Option<u64>,
    /// Longest a statement may run.
    pub statement_timeout: Option<Duration>,
}

impl EffectiveLimits {
    fn tighten(&mut self, other: &Self) {
        fn min<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        self.max_rows = min(self.max_rows, other.max_rows);
        self.max_bytes = min(self.max_bytes, other.max_bytes);
        self.statement_timeout = min(self.statement_timeout, other.statement_timeout);
    }
}

/// Index of a rule: (policy, rule) positions in the compiled set.
pub(crate) type RuleIdx = (usize, usize);

/// Rules by operation (`Operation as usize`).
pub(crate) type RulesByOp = [Vec<RuleIdx>; Operation::ALL.len()];

/// What applies to one caller on one connection, from [`PolicySet::for_caller`]. Cheap to query; it
/// shares the compiled set, so it stays valid (and unchanged) when the configuration changes — compute
/// a new one for the next statement then, and at [`CallerPolicy::next_change`].
#[derive(Debug, Clone)]
pub struct CallerPolicy {
    pub(crate) set: Arc<Compiled>,
    pub(crate) connection: Arc<str>,
    /// Applicable enforce and audit policies (indices into the set).
    pub(crate) enforce: Vec<usize>,
    pub(crate) audit: Vec<usize>,
    /// The enforce policies' rules, by operation, in policy then rule order.
    pub(crate) enforce_rules: RulesByOp,
    /// The rules of all applicable policies (enforce and audit), by operation.
    pub(crate) all_rules: RulesByOp,
    columns: Vec<(usize, usize)>,
    detectors: Vec<DetectorSpec>,
    limits: EffectiveLimits,
    /// Policies on this connection naming this caller, active now or not: their time boundaries.
    candidates: Vec<usize>,
}

impl PolicySet {
    /// What applies to `identity` on `connection` at `now` (see the module docs for when a policy
    /// applies).
    pub fn for_caller(&self, connection: &str, identity: &CallerIdentity, now: SystemTime) -> CallerPolicy {
        let set = &self.inner;
        let sa_trusted = match identity.kind {
            IdentityKind::Ambient => true,
            IdentityKind::Token => identity
                .issuer
                .as_ref()
                .is_some_and(|iss| set.sa_issuers.contains(iss)),
        };
        let mut caller = CallerPolicy {
            set: set.clone(),
            connection: Arc::from(connection),
            enforce: Vec::new(),
            audit: Vec::new(),
            enforce_rules: Default::default(),
            all_rules: Default::default(),
            columns: Vec::new(),
            detectors: Vec::new(),
            limits: EffectiveLimits::default(),
            candidates: Vec::new(),
        };
        for (pi, policy) in set.policies.iter().enumerate() {
            let names_caller = policy.connections.iter().any(|c| c == connection)
                && policy
                    .subjects
                    .iter()
                    .any(|s| subject::matches(s, policy.namespace.as_deref(), identity, sa_trusted));
            if !names_caller {
                continue;
            }
            caller.candidates.push(pi);
            if !policy.active_at(now) {
                continue;
            }
            caller.add(pi, policy);
        }
        caller
    }
}

impl CallerPolicy {
    fn add(&mut self, pi: usize, policy: &CompiledPolicy) {
        let enforced = policy.enforcement == Enforcement::Enforce;
        for (ri, rule) in policy.rules.iter().enumerate() {
            let idx = (pi, ri);
            for op in unique_ops(rule) {
                self.all_rules[op as usize].push(idx);
                if enforced {
                    self.enforce_rules[op as usize].push(idx);
                }
            }
        }
        if !enforced {
            self.audit.push(pi);
            return;
        }
        self.enforce.push(pi);
        self.columns.extend((0..policy.columns.len()).map(|ci| (pi, ci)));
        for d in &policy.detectors {
            add_detector(&mut self.detectors, d);
        }
        self.limits.tighten(&policy.limits);
    }

    pub(crate) fn policy(&self, pi: usize) -> &CompiledPolicy {
        &self.set.policies[pi]
    }

    pub(crate) fn rule(&self, (pi, ri): RuleIdx) -> &CompiledRule {
        &self.policy(pi).rules[ri]
    }

    /// The connection this was computed for.
    pub fn connection(&self) -> &str {
        &self.connection
    }

    /// Whether any policy (enforce or audit) applies; if none does, every statement is denied.
    pub fn has_access(&self) -> bool {
        !self.enforce.is_empty() || !self.audit.is_empty()
    }

    /// Whether only audit policies apply: nothing is blocked, masked or limited.
    pub fn audit_only(&self) -> bool {
        self.enforce.is_empty() && !self.audit.is_empty()
    }

    /// Names (`namespace/name`) of the applicable policies, enforce ones first, for the journal.
    pub fn policy_names(&self) -> impl Iterator<Item = &str> {
        self.enforce
            .iter()
            .chain(&self.audit)
            .map(|&pi| &*self.policy(pi).id)
    }

    /// How to mask `schema.table.column`, if any applicable policy masks it: the strongest strategy
    /// among the matching column rules.
    pub fn mask_for_column(&self, schema: &str, table: &str, column: &str) -> Option<MaskSpec> {
        let mut best: Option<&MaskSpec> = None;
        for &(pi, ci) in &self.columns {
            let (glob, spec) = &self.policy(pi).columns[ci];
            if glob.matches(schema, table, column) && best.is_none_or(|b| spec.stronger_than(b)) {
                best = Some(spec);
            }
        }
        best.cloned()
    }

    /// The strongest of all the caller's column masks: what a value whose source cannot be traced gets
    /// (fail closed). `None` when no column is masked.
    pub fn strongest_column_mask(&self) -> Option<MaskSpec> {
        let mut best: Option<&MaskSpec> = None;
        for &(pi, ci) in &self.columns {
            let (_, spec) = &self.policy(pi).columns[ci];
            if best.is_none_or(|b| spec.stronger_than(b)) {
                best = Some(spec);
            }
        }
        best.cloned()
    }

    /// The detectors to run on text values, deduplicated across policies.
    pub fn detectors(&self) -> &[DetectorSpec] {
        &self.detectors
    }

    /// Whether any column or detector is masked for this caller (if not, results pass untouched).
    pub fn masks_anything(&self) -> bool {
        !self.columns.is_empty() || !self.detectors.is_empty()
    }

    /// The limits on each statement.
    pub fn limits(&self) -> EffectiveLimits {
        self.limits
    }

    /// The next time strictly after `now` at which a policy naming this caller on this connection
    /// switches on or off (its notBefore or validUntil), so the relay can recompute then.
    pub fn next_change(&self, now: SystemTime) -> Option<SystemTime> {
        next_boundary(self.candidates.iter().map(|&pi| self.policy(pi)), now)
    }
}

/// The rule's operations without repeats (validate() refuses repeats; this keeps the index sane anyway).
fn unique_ops(rule: &CompiledRule) -> impl Iterator<Item = Operation> + '_ {
    rule.operations
        .iter()
        .enumerate()
        .filter(|(i, op)| !rule.operations[..*i].contains(op))
        .map(|(_, op)| *op)
}
