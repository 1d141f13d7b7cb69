//! What the applicable policies add up to: per operation (deny beats requireApproval beats allow, what
//! no rule allows is denied), masking (the strongest strategy per column), detectors, limits (the minimum)
//! and approval settings. The meaning is the sidecar's; each function names the sidecar code it mirrors
//! (see also the module docs of [`super::explain`]).

use std::time::Duration;

use dbward_crds::{
    AccessPolicySpec, Action, ApprovalMode, Detector, Enforcement, MaskStrategy, MaskingRule, Operation,
    Rule, parse_duration,
};

/// A rule of a policy, named as an ApprovalRequest's `spec.rule` names it: `<namespace>/<policy>/<rule>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuleRef {
    /// `namespace/name` of the policy.
    pub policy: String,
    /// The rule's name, `rules[i]` for an unnamed rule, `masking[i]` for a masking rule.
    pub rule: String,
}

impl std::fmt::Display for RuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.policy, self.rule)
    }
}

/// The verdict for a statement, mildest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// It runs.
    Allow,
    /// It waits for a person.
    RequireApproval,
    /// It is refused.
    Deny,
}

impl Verdict {
    fn of(action: Action) -> Self {
        match action {
            Action::Allow => Self::Allow,
            Action::RequireApproval => Self::RequireApproval,
            Action::Deny => Self::Deny,
        }
    }

    /// `allow`, `requireApproval` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::RequireApproval => "requireApproval",
            Self::Deny => "deny",
        }
    }
}

/// A rule as it bears on one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleEffect {
    /// The rule.
    pub rule: RuleRef,
    /// What it does.
    pub verdict: Verdict,
    /// Its table globs (empty: any table, and statements touching none).
    pub tables: Vec<String>,
    /// `when.missingWhere`.
    pub missing_where: Option<bool>,
    /// `when.rowsOver`.
    pub rows_over: Option<u64>,
    /// The message the caller sees when it denies or holds.
    pub message: Option<String>,
}

/// A rule listing an operation that can never match it, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InertRule {
    /// The rule.
    pub rule: RuleRef,
    /// Why it never matches this operation.
    pub reason: String,
}

/// What the applicable rules say about one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationEffect {
    /// The operation.
    pub operation: Operation,
    /// The verdict for its statements that no narrowed rule singles out.
    pub verdict: Verdict,
    /// The rule deciding that verdict; `None` when no rule covers the operation without narrowing: it
    /// is denied because no rule allows it.
    pub decided_by: Option<RuleEffect>,
    /// Rules narrowed by tables or `when`, strictest first: they decide statements they match, unless
    /// `shadowed`.
    pub narrowed: Vec<(RuleEffect, Shadowed)>,
    /// Rules listing the operation that can never match it.
    pub inert: Vec<InertRule>,
}

/// Whether a narrowed rule changes anything: a rule covering the whole operation that is at least as
/// strict wins over it.
pub type Shadowed = bool;

/// One masking choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    /// The strategy.
    pub strategy: MaskStrategy,
    /// Strategy redact: the replacement text (default `****`).
    pub replacement: Option<String>,
    /// Strategy partial: leading characters kept.
    pub keep_first: u32,
    /// Strategy partial: trailing characters kept.
    pub keep_last: u32,
    /// The masking rule, `masking[i]` of a policy.
    pub source: RuleRef,
}

impl Mask {
    fn from_rule(rule: &MaskingRule, source: RuleRef) -> Self {
        let partial = rule.strategy == MaskStrategy::Partial;
        Self {
            strategy: rule.strategy,
            replacement: rule.replacement.clone(),
            keep_first: rule.keep_first.filter(|_| partial).unwrap_or(0),
            keep_last: rule.keep_last.filter(|_| partial).unwrap_or(0),
            source,
        }
    }

    /// Whether `self` hides strictly more than `other`. The sidecar's order
    /// (`sidecar/src/policy/masking.rs`, `MaskSpec::strength_cmp`): null > redact > hash > email >
    /// partial, and between partials the one keeping fewer characters; ties keep the earlier rule.
    pub fn stronger_than(&self, other: &Self) -> bool {
        let kept = |m: &Self| u64::from(m.keep_first) + u64::from(m.keep_last);
        rank(self.strategy)
            .cmp(&rank(other.strategy))
            .then_with(|| kept(other).cmp(&kept(self)))
            .is_gt()
    }
}

/// Strength of a strategy, as `sidecar/src/policy/masking.rs` (`rank`) orders them.
pub fn rank(strategy: MaskStrategy) -> u8 {
    match strategy {
        MaskStrategy::Partial => 1,
        MaskStrategy::Email => 2,
        MaskStrategy::Hash => 3,
        MaskStrategy::Redact => 4,
        MaskStrategy::Null => 5,
    }
}

/// The masks for one column pattern: the winner and those it beats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMask {
    /// The `schema.table.column` glob.
    pub pattern: String,
    /// The strongest mask given for this pattern.
    pub mask: Mask,
    /// Weaker masks for the same pattern, which do not apply.
    pub weaker: Vec<Mask>,
}

/// A detector and the mask for what it finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectorMask {
    /// The detector.
    pub detector: Detector,
    /// Detector regex: its pattern.
    pub pattern: Option<String>,
    /// The strongest mask given for it.
    pub mask: Mask,
    /// Weaker masks for the same detector and pattern.
    pub weaker: Vec<Mask>,
}

/// One effective limit and the policy setting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit<T> {
    /// The value.
    pub value: T,
    /// The policy with the smallest value (the first, on a tie).
    pub policy: String,
}

/// The limits on each statement: the minimum of each across the applicable enforce policies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Limits {
    /// Most rows a statement may return.
    pub max_rows: Option<Limit<u64>>,
    /// Most result bytes.
    pub max_bytes: Option<Limit<u64>>,
    /// Longest run time.
    pub statement_timeout: Option<Limit<Duration>>,
}

/// How statements held by one policy's requireApproval rules wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalEffect {
    /// `namespace/name` of the policy.
    pub policy: String,
    /// Its requireApproval rules that can match something.
    pub rules: Vec<String>,
    /// wait or reject.
    pub mode: ApprovalMode,
    /// How long a request stays open.
    pub timeout: Duration,
    /// Mode reject: how long after approval the statement may run; `None`: once, within the timeout.
    pub grant_window: Option<Duration>,
}

/// The combined effect of the applicable policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    /// Only audit policies apply: decisions are recorded, nothing is blocked, masked, limited or held.
    pub audit_only: bool,
    /// Every operation, in the API's order.
    pub operations: Vec<OperationEffect>,
    /// When audit policies apply next to enforce ones: what the rules of all of them would decide.
    pub with_audit: Option<Vec<OperationEffect>>,
    /// Column masks, one per pattern, in the order first given.
    pub columns: Vec<ColumnMask>,
    /// The strongest column mask: what a value whose source cannot be traced gets.
    pub strongest_column_mask: Option<Mask>,
    /// Detectors, one per detector and pattern.
    pub detectors: Vec<DetectorMask>,
    /// Limits.
    pub limits: Limits,
    /// Approval settings, shortest timeout first (the first is used when several policies hold a
    /// statement).
    pub approvals: Vec<ApprovalEffect>,
}

/// The combined effect of the applicable policies (`(id, enforcement, spec)`, in name order); `None`
/// when there are none.
pub(crate) fn combine(applicable: &[(String, Enforcement, &AccessPolicySpec)]) -> Option<Effect> {
    if applicable.is_empty() {
        return None;
    }
    let enforce: Vec<(&str, &AccessPolicySpec)> = applicable
        .iter()
        .filter(|(_, e, _)| *e == Enforcement::Enforce)
        .map(|(id, _, spec)| (id.as_str(), *spec))
        .collect();
    let all: Vec<(&str, &AccessPolicySpec)> = applicable
        .iter()
        .map(|(id, _, spec)| (id.as_str(), *spec))
        .collect();
    if enforce.is_empty() {
        return Some(Effect {
            audit_only: true,
            operations: operations(&all),
            with_audit: None,
            columns: Vec::new(),
            strongest_column_mask: None,
            detectors: Vec::new(),
            limits: Limits::default(),
            approvals: Vec::new(),
        });
    }
    let (columns, detectors) = masking(&enforce);
    let strongest_column_mask = columns.iter().map(|c| &c.mask).fold(None::<&Mask>, |best, m| {
        if best.is_none_or(|b| m.stronger_than(b)) {
            Some(m)
        } else {
            best
        }
    });
    Some(Effect {
        audit_only: false,
        operations: operations(&enforce),
        with_audit: (all.len() > enforce.len()).then(|| operations(&all)),
        strongest_column_mask: strongest_column_mask.cloned(),
        columns,
        detectors,
        limits: limits(&enforce),
        approvals: approvals(&enforce),
    })
}

/// Whether a rule can match an operation's statements, and how.
enum Reach {
    /// Every statement of the operation.
    Always,
    /// Only some (tables, missingWhere).
    Narrowed,
    /// None, for this reason.
    Never(String),
}

/// Mirrors `rule_matches` and `touches` of `sidecar/src/policy/decide.rs` for a rule listing `op`.
fn reach(rule: &Rule, op: Operation) -> Reach {
    let when = rule.when.as_ref();
    let missing_where = when.and_then(|w| w.missing_where);
    let rows_over = when.and_then(|w| w.rows_over);
    if missing_where.is_some() && !matches!(op, Operation::Update | Operation::Delete) {
        return Reach::Never("when.missingWhere only matches update and delete".to_owned());
    }
    if rows_over.is_some() && rule.action == Action::Allow {
        return Reach::Never(
            "an allow rule with when.rowsOver never matches: the row count is not known before the \
             statement runs"
                .to_owned(),
        );
    }
    if !rule.tables.is_empty() && !touches_tables(op) {
        return Reach::Never(format!(
            "{op} statements touch no tables, and the rule only covers tables {}",
            rule.tables.join(", ")
        ));
    }
    if !rule.tables.is_empty() || missing_where.is_some() {
        Reach::Narrowed
    } else {
        Reach::Always
    }
}

/// Whether the sidecar pairs `op` with the tables a statement touches (`touches` in
/// `sidecar/src/policy/decide.rs`): reads for select and copyOut, writes for insert update delete merge
/// copyIn truncate ddl; the others touch none, so only rules without `tables` match them.
pub fn touches_tables(op: Operation) -> bool {
    matches!(
        op,
        Operation::Select
            | Operation::CopyOut
            | Operation::Insert
            | Operation::Update
            | Operation::Delete
            | Operation::Merge
            | Operation::CopyIn
            | Operation::Truncate
            | Operation::Ddl
    )
}

fn rule_effect(id: &str, index: usize, rule: &Rule) -> RuleEffect {
    let when = rule.when.as_ref();
    RuleEffect {
        rule: RuleRef {
            policy: id.to_owned(),
            rule: rule.display_name(index),
        },
        verdict: Verdict::of(rule.action),
        tables: rule.tables.clone(),
        missing_where: when.and_then(|w| w.missing_where),
        rows_over: when.and_then(|w| w.rows_over),
        message: rule.message.clone(),
    }
}

fn operations(policies: &[(&str, &AccessPolicySpec)]) -> Vec<OperationEffect> {
    Operation::ALL.iter().map(|&op| operation(policies, op)).collect()
}

/// The effect of the rules of `policies` on `op`: the first strictest rule covering all of `op` decides
/// (as `judge` in `sidecar/src/policy/decide.rs` keeps the first of the strictest), narrowed rules are
/// listed strictest first.
fn operation(policies: &[(&str, &AccessPolicySpec)], op: Operation) -> OperationEffect {
    let mut decided: Option<RuleEffect> = None;
    let mut narrowed = Vec::new();
    let mut inert = Vec::new();
    for (id, spec) in policies {
        for (i, rule) in spec.rules.iter().enumerate() {
            if !rule.operations.contains(&op) {
                continue;
            }
            match reach(rule, op) {
                Reach::Never(reason) => inert.push(InertRule {
                    rule: RuleRef {
                        policy: (*id).to_owned(),
                        rule: rule.display_name(i),
                    },
                    reason,
                }),
                Reach::Narrowed => narrowed.push(rule_effect(id, i, rule)),
                Reach::Always => {
                    let effect = rule_effect(id, i, rule);
                    if decided.as_ref().is_none_or(|d| effect.verdict > d.verdict) {
                        decided = Some(effect);
                    }
                }
            }
        }
    }
    narrowed.sort_by_key(|n: &RuleEffect| std::cmp::Reverse(n.verdict));
    let narrowed = narrowed
        .into_iter()
        .map(|n| {
            let shadowed = decided.as_ref().is_some_and(|d| n.verdict <= d.verdict);
            (n, shadowed)
        })
        .collect();
    OperationEffect {
        operation: op,
        verdict: decided.as_ref().map_or(Verdict::Deny, |d| d.verdict),
        decided_by: decided,
        narrowed,
        inert,
    }
}

fn masking(policies: &[(&str, &AccessPolicySpec)]) -> (Vec<ColumnMask>, Vec<DetectorMask>) {
    let mut columns: Vec<ColumnMask> = Vec::new();
    let mut detectors: Vec<DetectorMask> = Vec::new();
    for (id, spec) in policies {
        for (i, rule) in spec.masking.iter().enumerate() {
            let source = RuleRef {
                policy: (*id).to_owned(),
                rule: format!("masking[{i}]"),
            };
            let mask = Mask::from_rule(rule, source);
            if let Some(detector) = rule.detector {
                let found = detectors
                    .iter_mut()
                    .find(|d| d.detector == detector && d.pattern == rule.pattern);
                match found {
                    Some(d) => keep_stronger(&mut d.mask, &mut d.weaker, mask),
                    None => detectors.push(DetectorMask {
                        detector,
                        pattern: rule.pattern.clone(),
                        mask,
                        weaker: Vec::new(),
                    }),
                }
                continue;
            }
            for pattern in &rule.columns {
                match columns.iter_mut().find(|c| &c.pattern == pattern) {
                    Some(c) => keep_stronger(&mut c.mask, &mut c.weaker, mask.clone()),
                    None => columns.push(ColumnMask {
                        pattern: pattern.clone(),
                        mask: mask.clone(),
                        weaker: Vec::new(),
                    }),
                }
            }
        }
    }
    (columns, detectors)
}

fn keep_stronger(best: &mut Mask, weaker: &mut Vec<Mask>, candidate: Mask) {
    if candidate.stronger_than(best) {
        weaker.push(std::mem::replace(best, candidate));
    } else {
        weaker.push(candidate);
    }
}

fn limits(policies: &[(&str, &AccessPolicySpec)]) -> Limits {
    fn tighten<T: Ord + Copy>(slot: &mut Option<Limit<T>>, value: Option<T>, policy: &str) {
        let Some(value) = value else { return };
        if slot.as_ref().is_none_or(|l| value < l.value) {
            *slot = Some(Limit {
                value,
                policy: policy.to_owned(),
            });
        }
    }
    let mut out = Limits::default();
    for (id, spec) in policies {
        let Some(l) = &spec.limits else { continue };
        tighten(&mut out.max_rows, l.max_rows, id);
        tighten(&mut out.max_bytes, l.max_bytes, id);
        let timeout = l
            .statement_timeout
            .as_deref()
            .and_then(|t| parse_duration(t).ok());
        tighten(&mut out.statement_timeout, timeout, id);
    }
    out
}

fn approvals(policies: &[(&str, &AccessPolicySpec)]) -> Vec<ApprovalEffect> {
    let mut out = Vec::new();
    for (id, spec) in policies {
        let rules: Vec<String> = spec
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.action == Action::RequireApproval)
            .filter(|(_, r)| {
                r.operations
                    .iter()
                    .any(|&op| !matches!(reach(r, op), Reach::Never(_)))
            })
            .map(|(i, r)| r.display_name(i))
            .collect();
        if rules.is_empty() {
            continue;
        }
        let settings = spec.approval.clone().unwrap_or_default();
        let timeout = parse_duration(&settings.timeout).unwrap_or(Duration::from_secs(600));
        let grant_window = settings
            .grant_window
            .as_deref()
            .map(|w| parse_duration(w).unwrap_or(timeout));
        out.push(ApprovalEffect {
            policy: (*id).to_owned(),
            rules,
            mode: settings.mode,
            timeout,
            grant_window,
        });
    }
    // Stable: on equal timeouts the first policy (by name) stays first, as the sidecar keeps the first.
    out.sort_by_key(|a| a.timeout);
    out
}
