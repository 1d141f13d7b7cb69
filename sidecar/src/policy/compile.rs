//! AccessPolicy documents compiled once into a [`PolicySet`]: validated, timestamps and durations parsed,
//! globs split, names shared, so that narrowing to a caller and deciding allocate little.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, SystemTime},
};

use dbward_crds::{
    AccessPolicySpec, Action, ApprovalMode, Document, Enforcement, Operation, Subject, parse_duration,
    parse_rfc3339,
};

use super::{
    caller::EffectiveLimits,
    decide::RuleRef,
    glob::{ColumnGlob, TableGlob},
    masking::{DetectorSpec, MaskSpec},
};

/// Why a set of AccessPolicy documents was refused. Each error names the policy and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The document failed `validate()` (the same checks the operator runs).
    #[error("AccessPolicy {policy:?}: {field}: {message}")]
    Invalid {
        /// `namespace/name`, or the name when the document has no namespace.
        policy: String,
        /// The offending field, e.g. `spec.rules[2].tables[0]`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// Two documents have the same namespace and name.
    #[error("AccessPolicy {policy:?} is defined more than once: give each policy its own name")]
    Duplicate {
        /// `namespace/name`, or the name.
        policy: String,
    },
}

/// How statements held by a requireApproval rule wait, from its policy's `spec.approval`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalSettings {
    /// The policy these settings come from.
    pub policy: Arc<str>,
    /// wait or reject.
    pub mode: ApprovalMode,
    /// How long the approval request stays open.
    pub timeout: Duration,
    /// Mode reject: how long after approval the statement may run (default: the timeout).
    pub grant_window: Duration,
    /// Mode reject without an explicit grantWindow: an approval lets the statement run once.
    pub grant_once: bool,
}

/// Compiled AccessPolicy documents. Cheap to clone (shared); immutable: a changed configuration
/// compiles a new set, and callers narrow it again with [`PolicySet::for_caller`].
#[derive(Debug, Clone)]
pub struct PolicySet {
    pub(crate) inner: Arc<Compiled>,
}

#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) policies: Vec<CompiledPolicy>,
    pub(crate) sa_issuers: BTreeSet<String>,
}

#[derive(Debug)]
pub(crate) struct CompiledPolicy {
    pub(crate) id: Arc<str>,
    pub(crate) namespace: Option<String>,
    pub(crate) connections: Vec<String>,
    pub(crate) subjects: Vec<Subject>,
    pub(crate) enforcement: Enforcement,
    pub(crate) not_before: Option<SystemTime>,
    pub(crate) valid_until: Option<SystemTime>,
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) columns: Vec<(ColumnGlob, MaskSpec)>,
    pub(crate) detectors: Vec<DetectorSpec>,
    pub(crate) limits: EffectiveLimits,
    pub(crate) approval: ApprovalSettings,
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) rule_ref: RuleRef,
    pub(crate) action: Action,
    pub(crate) operations: Vec<Operation>,
    pub(crate) tables: Vec<TableGlob>,
    pub(crate) missing_where: Option<bool>,
    pub(crate) rows_over: bool,
    pub(crate) message: Option<String>,
}

impl PolicySet {
    /// Validates and compiles `docs`. `sa_issuers` are the issuers of Kubernetes service-account tokens:
    /// only tokens from them (and the ambient identity) can match `serviceAccount` subjects.
    ///
    /// Every document is checked; all problems are returned together.
    pub fn new(
        docs: Vec<Document<AccessPolicySpec>>,
        sa_issuers: BTreeSet<String>,
    ) -> Result<Self, Vec<PolicyError>> {
        let mut errors = Vec::new();
        let mut seen = BTreeMap::new();
        let mut policies = Vec::with_capacity(docs.len());
        for doc in docs {
            let id = policy_id(&doc);
            if seen.insert(id.clone(), ()).is_some() {
                errors.push(PolicyError::Duplicate { policy: id });
                continue;
            }
            if let Err(field_errors) = doc.validate() {
                errors.extend(field_errors.into_iter().map(|e| PolicyError::Invalid {
                    policy: id.clone(),
                    field: e.field,
                    message: e.message,
                }));
                continue;
            }
            match compile(id, doc) {
                Ok(policy) => policies.push(policy),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            inner: Arc::new(Compiled { policies, sa_issuers }),
        })
    }

    /// Number of policies in the set.
    pub fn len(&self) -> usize {
        self.inner.policies.len()
    }

    /// Whether the set has no policies (then nobody has access to anything).
    pub fn is_empty(&self) -> bool {
        self.inner.policies.is_empty()
    }

    /// The next notBefore/validUntil boundary of any policy strictly after `now`.
    pub fn next_change(&self, now: SystemTime) -> Option<SystemTime> {
        next_boundary(self.inner.policies.iter(), now)
    }
}

/// The earliest notBefore/validUntil of `policies` strictly after `now`.
pub(crate) fn next_boundary<'a>(
    policies: impl Iterator<Item = &'a CompiledPolicy>,
    now: SystemTime,
) -> Option<SystemTime> {
    policies
        .flat_map(|p| [p.not_before, p.valid_until])
        .flatten()
        .filter(|t| *t > now)
        .min()
}

impl CompiledPolicy {
    /// Inclusive start, exclusive end, as `AccessPolicySpec::active_at`.
    pub(crate) fn active_at(&self, now: SystemTime) -> bool {
        self.not_before.is_none_or(|start| now >= start) && self.valid_until.is_none_or(|end| now < end)
    }
}

fn policy_id(doc: &Document<AccessPolicySpec>) -> String {
    match &doc.metadata.namespace {
        Some(ns) => format!("{ns}/{}", doc.metadata.name),
        None => doc.metadata.name.clone(),
    }
}

/// Compiles a document that passed `validate()`. The parse errors below cannot happen after it, but are
/// reported rather than assumed away.
fn compile(id: String, doc: Document<AccessPolicySpec>) -> Result<CompiledPolicy, PolicyError> {
    let spec = doc.spec;
    let invalid = |field: &str, message: String| PolicyError::Invalid {
        policy: id.clone(),
        field: field.to_owned(),
        message,
    };
    let time = |field: &str, value: &Option<String>| {
        value
            .as_deref()
            .map(parse_rfc3339)
            .transpose()
            .map_err(|e| invalid(field, e.to_string()))
    };
    let duration =
        |field: &str, value: &str| parse_duration(value).map_err(|e| invalid(field, e.to_string()));

    let not_before = time("spec.notBefore", &spec.not_before)?;
    let valid_until = time("spec.validUntil", &spec.valid_until)?;
    let limits = match &spec.limits {
        None => EffectiveLimits::default(),
        Some(l) => EffectiveLimits {
            max_rows: l.max_rows,
            max_bytes: l.max_bytes,
            statement_timeout: l
                .statement_timeout
                .as_deref()
                .map(|t| duration("spec.limits.statementTimeout", t))
                .transpose()?,
        },
    };
    let approval_spec = spec.approval.clone().unwrap_or_default();
    let timeout = duration("spec.approval.timeout", &approval_spec.timeout)?;
    let grant_window = match &approval_spec.grant_window {
        Some(w) => duration("spec.approval.grantWindow", w)?,
        None => timeout,
    };

    let id: Arc<str> = Arc::from(id.as_str());
    let approval = ApprovalSettings {
        policy: id.clone(),
        mode: approval_spec.mode,
        timeout,
        grant_window,
        grant_once: approval_spec.grant_window.is_none(),
    };
    let rules = spec
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| CompiledRule {
            rule_ref: RuleRef {
                policy: id.clone(),
                rule: Arc::from(rule.display_name(i).as_str()),
            },
            action: rule.action,
            operations: rule.operations.clone(),
            tables: rule.tables.iter().map(|t| TableGlob::new(t)).collect(),
            missing_where: rule.when.as_ref().and_then(|w| w.missing_where),
            rows_over: rule.when.as_ref().is_some_and(|w| w.rows_over.is_some()),
            message: rule.message.clone(),
        })
        .collect();
    let mut columns = Vec::new();
    let mut detectors = Vec::new();
    for (i, m) in spec.masking.iter().enumerate() {
        let mask = MaskSpec::from_rule(
            m,
            RuleRef {
                policy: id.clone(),
                rule: Arc::from(format!("masking[{i}]").as_str()),
            },
        );
        match m.detector {
            Some(detector) => detectors.push(DetectorSpec {
                detector,
                pattern: m.pattern.clone(),
                mask,
            }),
            None => columns.extend(m.columns.iter().map(|c| (ColumnGlob::new(c), mask.clone()))),
        }
    }

    Ok(CompiledPolicy {
        id,
        namespace: doc.metadata.namespace,
        connections: spec.connections,
        subjects: spec.subjects,
        enforcement: spec.enforcement,
        not_before,
        valid_until,
        rules,
        columns,
        detectors,
        limits,
        approval,
    })
}
