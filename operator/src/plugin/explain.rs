//! `kubectl dbward explain`: which AccessPolicies apply to a service account on a DatabaseConnection, and
//! what they add up to, per operation.
//!
//! The meaning mirrors the sidecar's policy engine (`sidecar/src/policy/mod.rs` documents it; DESIGN §3)
//! and what the operator hands a sidecar (`operator/src/control/config.rs`: only valid policies of the
//! pod's namespace that name the connection):
//!
//! - **Which policies apply** (`sidecar/src/policy/caller.rs`, `PolicySet::for_caller`): the policy names
//!   the connection, passes `validate()` (the operator hands a sidecar only valid policies), is active
//!   now (`notBefore <= now < validUntil`; a timestamp that does not parse makes it inactive), and one of
//!   its subjects matches (`sidecar/src/policy/subject.rs`):
//!   - `serviceAccount {name, namespace?}`: same name, and the namespace, defaulting to the policy's, is
//!     the service account's;
//!   - `group`: the groups Kubernetes gives every service account, `system:serviceaccounts` and
//!     `system:serviceaccounts:<namespace>`;
//!   - `oidc`: a claim of a token from an OIDC issuer. A service account alone says nothing about such
//!     tokens, so these policies are listed apart as "may apply to callers presenting tokens";
//!   - `uids`, when set, narrows the subject to processes running as those Unix uids. Without `--uid`
//!     the caller's uid is unknown, and (as in the sidecar) an unknown uid matches no narrowed subject:
//!     such policies are listed apart.
//! - **Rules** (`sidecar/src/policy/decide.rs`, `rule_matches` and `touches`): the rules of all
//!   applicable policies apply together; per operation, deny beats requireApproval beats allow, and an
//!   operation no rule allows is denied. A rule with `tables` only matches statements touching those
//!   tables, and never the operations that touch no table (grant role call do set transaction utility
//!   unknown); `when.missingWhere` only matches update and delete; `when.rowsOver` fails closed (a deny or
//!   requireApproval rule with it matches as if the rows were over, an allow rule with it never matches).
//! - **Audit** (`enforcement: audit`): when enforce policies apply, only their rules decide; audit ones
//!   are recorded, not enforced. When only audit policies apply, their decisions are recorded and
//!   nothing is blocked. Audit policies do not mask, limit or hold for approval.
//! - **Masking** (`sidecar/src/policy/masking.rs`): rules add up; per column the strongest strategy wins,
//!   null > redact > hash > email > partial, and between partials the one keeping fewer characters; ties
//!   keep the earlier rule. Detectors add up, one per detector and pattern, the strongest mask winning.
//! - **Limits** (`sidecar/src/policy/caller.rs`, `EffectiveLimits::tighten`): the minimum of each.
//! - **Approval** (`sidecar/src/policy/decide.rs`, `judge`): a held statement waits per the settings of
//!   the policy whose rule held it; when several did, the one with the shortest timeout.

use std::time::SystemTime;

use dbward_crds::{AccessPolicy, AccessPolicySpec, Enforcement, FieldError, Subject, parse_rfc3339};
use kube::ResourceExt;

use super::effect::{Effect, combine};

/// The caller being explained: a Kubernetes service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl ServiceAccount {
    /// Reads `NAMESPACE/NAME`, `system:serviceaccount:NAMESPACE:NAME`, or a bare `NAME` (in
    /// `default_namespace`).
    pub fn parse(value: &str, default_namespace: &str) -> Result<Self, String> {
        let value = value.trim();
        let (namespace, name) = if let Some(rest) = value.strip_prefix("system:serviceaccount:") {
            rest.split_once(':').ok_or_else(|| {
                format!("{value:?}: write system:serviceaccount:NAMESPACE:NAME, or NAMESPACE/NAME")
            })?
        } else if let Some((namespace, name)) = value.split_once('/') {
            (namespace, name)
        } else {
            (default_namespace, value)
        };
        let well_formed = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
        };
        if !well_formed(namespace) || !well_formed(name) {
            return Err(format!(
                "{value:?} is not a service account: write NAMESPACE/NAME, e.g. shop/orders-api"
            ));
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The groups Kubernetes puts every service account in.
    pub fn groups(&self) -> [String; 2] {
        [
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{}", self.namespace),
        ]
    }
}

impl std::fmt::Display for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What `explain` looks at.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    /// The caller.
    pub caller: &'a ServiceAccount,
    /// The Unix uid of the calling process, when the user says (`--uid`); narrowed subjects need it.
    pub uid: Option<u32>,
    /// The namespace of the connection and of the policies.
    pub namespace: &'a str,
    /// The DatabaseConnection's name.
    pub connection: &'a str,
    /// Names of the DatabaseConnections that exist in `namespace`.
    pub existing_connections: &'a [String],
    /// The AccessPolicies of `namespace`.
    pub policies: &'a [AccessPolicy],
    /// The time to judge notBefore/validUntil at.
    pub now: SystemTime,
}

/// Where a policy stands in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activity {
    /// Active now; `until` is its validUntil, if any.
    Active {
        /// validUntil, as written.
        until: Option<String>,
    },
    /// Starts at notBefore.
    NotYet {
        /// notBefore, as written.
        from: String,
    },
    /// Ended at validUntil.
    Ended {
        /// validUntil, as written.
        at: String,
    },
    /// A timestamp does not parse: the policy is inactive (fails closed).
    Unreadable,
}

impl Activity {
    /// Where `spec` stands at `now`, as `AccessPolicySpec::active_at` decides it.
    pub fn of(spec: &AccessPolicySpec, now: SystemTime) -> Self {
        let start = spec.not_before.as_deref().map(parse_rfc3339).transpose();
        let end = spec.valid_until.as_deref().map(parse_rfc3339).transpose();
        let (Ok(start), Ok(end)) = (start, end) else {
            return Self::Unreadable;
        };
        if start.is_some_and(|start| now < start) {
            return Self::NotYet {
                from: spec.not_before.clone().unwrap_or_default(),
            };
        }
        if end.is_some_and(|end| now >= end) {
            return Self::Ended {
                at: spec.valid_until.clone().unwrap_or_default(),
            };
        }
        Self::Active {
            until: spec.valid_until.clone(),
        }
    }

    /// Whether the policy is active.
    pub fn is_active(&self) -> bool {
        matches!(self, Self::Active { .. })
    }
}

/// One policy naming the connection, and how it relates to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyReport {
    /// `namespace/name`.
    pub id: String,
    /// enforce or audit.
    pub enforcement: Enforcement,
    /// Active now or not.
    pub activity: Activity,
    /// What `validate()` finds wrong; an invalid policy grants nothing.
    pub errors: Vec<FieldError>,
    /// The subjects naming the caller, e.g. `subjects[0]: serviceAccount shop/api`.
    pub matched_by: Vec<String>,
    /// Subjects that name the caller but only for processes running as these uids, which the caller
    /// was not said to (no `--uid`, or another one).
    pub uid_narrowed: Vec<(String, Vec<u32>)>,
    /// OIDC subjects: callers presenting tokens.
    pub token_subjects: Vec<String>,
}

impl PolicyReport {
    /// Whether the policy applies to the caller now.
    pub fn applies(&self) -> bool {
        self.errors.is_empty() && self.activity.is_active() && !self.matched_by.is_empty()
    }
}

/// The answer to `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The caller.
    pub caller: ServiceAccount,
    /// The uid given, if any.
    pub uid: Option<u32>,
    /// The namespace of the connection and the policies.
    pub namespace: String,
    /// The connection.
    pub connection: String,
    /// Whether the DatabaseConnection exists.
    pub connection_exists: bool,
    /// The DatabaseConnections that do exist, sorted.
    pub existing_connections: Vec<String>,
    /// Policies naming the connection and the caller (applying or not), sorted by name.
    pub policies: Vec<PolicyReport>,
    /// Policies naming the connection that may apply to callers presenting OIDC tokens.
    pub token_policies: Vec<PolicyReport>,
    /// Other policies naming the connection: they name other subjects.
    pub other_policies: Vec<String>,
    /// What the applicable policies add up to; `None` when none applies (no access).
    pub effect: Option<Effect>,
}

impl Explanation {
    /// Whether the caller gets no access at all: every statement is refused.
    pub fn no_access(&self) -> bool {
        !self.connection_exists || self.effect.is_none()
    }
}

fn policy_id(policy: &AccessPolicy) -> String {
    match policy.namespace() {
        Some(ns) => format!("{ns}/{}", policy.name_any()),
        None => policy.name_any(),
    }
}

/// Which policies apply to `query.caller` on `query.connection`, and what they add up to.
pub fn explain(query: &Query<'_>) -> Explanation {
    let mut policies: Vec<&AccessPolicy> = query
        .policies
        .iter()
        .filter(|p| p.spec.connections.iter().any(|c| c == query.connection))
        .collect();
    policies.sort_by_key(|p| policy_id(p));

    let mut named = Vec::new();
    let mut tokens = Vec::new();
    let mut others = Vec::new();
    let mut applicable = Vec::new();
    for policy in policies {
        let report = report(policy, query);
        if report.applies() {
            applicable.push((report.id.clone(), report.enforcement, &policy.spec));
        }
        if !report.matched_by.is_empty() || !report.uid_narrowed.is_empty() {
            named.push(report);
        } else if !report.token_subjects.is_empty() {
            tokens.push(report);
        } else {
            others.push(report.id);
        }
    }
    let mut existing = query.existing_connections.to_vec();
    existing.sort();
    existing.dedup();
    Explanation {
        caller: query.caller.clone(),
        uid: query.uid,
        namespace: query.namespace.to_owned(),
        connection: query.connection.to_owned(),
        connection_exists: existing.iter().any(|c| c == query.connection),
        existing_connections: existing,
        policies: named,
        token_policies: tokens,
        other_policies: others,
        effect: combine(&applicable),
    }
}

fn report(policy: &AccessPolicy, query: &Query<'_>) -> PolicyReport {
    let spec = &policy.spec;
    let mut report = PolicyReport {
        id: policy_id(policy),
        enforcement: spec.enforcement,
        activity: Activity::of(spec, query.now),
        errors: spec.validate().err().unwrap_or_default(),
        matched_by: Vec::new(),
        uid_narrowed: Vec::new(),
        token_subjects: Vec::new(),
    };
    let namespace = policy.namespace();
    for (i, subject) in spec.subjects.iter().enumerate() {
        let at = format!("subjects[{i}]");
        match match_subject(subject, namespace.as_deref(), query.caller) {
            SubjectMatch::Caller(what) if subject.uids.is_empty() => {
                report.matched_by.push(format!("{at}: {what}"));
            }
            SubjectMatch::Caller(what) => {
                let described = format!("{at}: {what}, uids {}", uid_list(&subject.uids));
                if query.uid.is_some_and(|uid| subject.uids.contains(&uid)) {
                    report.matched_by.push(described);
                } else {
                    report.uid_narrowed.push((described, subject.uids.clone()));
                }
            }
            SubjectMatch::Token(what) if subject.uids.is_empty() => {
                report.token_subjects.push(format!("{at}: {what}"));
            }
            SubjectMatch::Token(what) => report
                .token_subjects
                .push(format!("{at}: {what}, uids {}", uid_list(&subject.uids))),
            SubjectMatch::Other => {}
        }
    }
    report
}

fn uid_list(uids: &[u32]) -> String {
    let list: Vec<String> = uids.iter().map(u32::to_string).collect();
    list.join(",")
}

/// How a subject relates to a service account (before uid narrowing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectMatch {
    /// It names the service account; the text says how.
    Caller(String),
    /// An OIDC subject: it names callers presenting tokens, which a service account alone cannot tell.
    Token(String),
    /// It names someone else.
    Other,
}

/// Whether `subject` (of a policy in `policy_namespace`) names `caller`, mirroring
/// `sidecar/src/policy/subject.rs` for a caller whose service account is trusted (the pod's own
/// identity, or a token of the cluster's service-account issuer). `uids` is left to the caller.
pub fn match_subject(
    subject: &Subject,
    policy_namespace: Option<&str>,
    caller: &ServiceAccount,
) -> SubjectMatch {
    if let Some(sa) = &subject.service_account {
        let namespace = sa.namespace.as_deref().or(policy_namespace);
        return if sa.name == caller.name && namespace.is_none_or(|ns| ns == caller.namespace) {
            SubjectMatch::Caller(format!("serviceAccount {}/{}", caller.namespace, caller.name))
        } else {
            SubjectMatch::Other
        };
    }
    if let Some(group) = &subject.group {
        return if caller.groups().iter().any(|g| g == group) {
            SubjectMatch::Caller(format!("group {group}"))
        } else {
            SubjectMatch::Other
        };
    }
    if let Some(oidc) = &subject.oidc {
        return SubjectMatch::Token(format!(
            "oidc issuer {} claim {} in [{}]",
            oidc.issuer,
            oidc.claim,
            oidc.values.join(", ")
        ));
    }
    // validate() refuses a subject of no kind; if one slipped through, it names no one.
    SubjectMatch::Other
}
