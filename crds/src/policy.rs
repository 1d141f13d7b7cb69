//! AccessPolicy: who may do what through which DatabaseConnections, what they see masked, and what needs a
//! person's approval. The checks behind `validate()` live in `policy/validate.rs`.

use std::time::SystemTime;

#[cfg(feature = "kube")]
use kube::core::Rule as CelRule;
use serde::{Deserialize, Serialize};

use crate::{condition::Condition, timestamp::parse_rfc3339, validate::FieldError};

mod validate;

/// Most connections one policy may name. The list bounds (here and below) keep the API server's CEL cost
/// estimate for the per-item rules small; `validate()` applies them too.
pub const MAX_CONNECTIONS: u32 = 64;
/// Most subjects one policy may list.
pub const MAX_SUBJECTS: u32 = 64;
/// Most rules one policy may have.
pub const MAX_RULES: u32 = 256;
/// Most masking rules one policy may have.
pub const MAX_MASKING: u32 = 128;

/// Which subjects may do what through which connections, what they see masked, and what needs a person's
/// approval.
// clippy reads the repeated `type_ = "string"` of the print columns as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(kube::CustomResource, kube::KubeSchema))]
#[cfg_attr(
    feature = "kube",
    kube(
        group = "dbward.dev",
        version = "v1alpha1",
        kind = "AccessPolicy",
        namespaced,
        status = "AccessPolicyStatus",
        derive = "PartialEq",
        shortname = "dbpolicy",
        category = "dbward",
        doc = "Grants subjects access to DatabaseConnections under ordered rules, with masking, approvals and \
               limits. All policies that match a caller and a connection apply together: deny beats \
               requireApproval beats allow, and what no rule allows is denied.",
        printcolumn(name = "Connections", type_ = "string", json_path = ".spec.connections"),
        printcolumn(name = "Enforcement", type_ = "string", json_path = ".spec.enforcement"),
        printcolumn(name = "Valid", type_ = "string", json_path = r#".status.conditions[?(@.type=="Valid")].status"#),
        printcolumn(name = "Active", type_ = "string", json_path = r#".status.conditions[?(@.type=="Active")].status"#),
        printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    ),
    x_kube(validation = CelRule::new(
        "!has(self.notBefore) || !has(self.validUntil) || timestamp(self.validUntil) > timestamp(self.notBefore)"
    ).message("validUntil must be after notBefore"))
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessPolicySpec {
    /// Names of the DatabaseConnections, in this namespace, the policy applies to.
    #[cfg_attr(feature = "kube", schemars(length(min = 1, max = MAX_CONNECTIONS)))]
    pub connections: Vec<String>,
    /// Who the policy applies to: any matching subject is enough.
    #[cfg_attr(feature = "kube", schemars(length(min = 1, max = MAX_SUBJECTS)))]
    pub subjects: Vec<Subject>,
    /// Ordered rules. For each statement, every rule whose operations and tables match counts; deny beats
    /// requireApproval beats allow, across all applicable policies.
    // The full path matters: kube's KubeSchema derive brings its own `Rule` into scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "kube", schemars(length(max = MAX_RULES)))]
    pub rules: Vec<crate::policy::Rule>,
    /// Columns or values to mask in results. Masking adds up across policies; the strongest strategy per
    /// column wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "kube", schemars(length(max = MAX_MASKING)))]
    pub masking: Vec<MaskingRule>,
    /// How requireApproval statements wait for a person. Default: mode wait, timeout 10m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalSpec>,
    /// Caps on results and run time. Across policies the smallest value wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// enforce (the default) blocks what the rules deny; audit decides and records but blocks nothing.
    #[serde(default)]
    pub enforcement: Enforcement,
    /// The policy applies from this time on (RFC 3339, e.g. 2026-05-01T09:00:00Z).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(regex(pattern = crate::timestamp::TIMESTAMP_PATTERN)))]
    pub not_before: Option<String>,
    /// The policy stops applying at this time (RFC 3339). With notBefore, this gives just-in-time access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(regex(pattern = crate::timestamp::TIMESTAMP_PATTERN)))]
    pub valid_until: Option<String>,
}

/// One kind of caller. Set exactly one of serviceAccount, group or oidc.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(kube::KubeSchema))]
#[cfg_attr(
    feature = "kube",
    x_kube(validation = CelRule::new(
        "(has(self.serviceAccount) ? 1 : 0) + (has(self.group) ? 1 : 0) + (has(self.oidc) ? 1 : 0) == 1"
    ).message("set exactly one of serviceAccount, group or oidc"))
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subject {
    /// A Kubernetes service account: the pod's own identity, or a service-account token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ServiceAccountSubject>,
    /// A group named in the caller's token (`groups` claim, or a service account's groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Callers whose token from this issuer has this claim with one of these values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcSubject>,
    /// Narrow the subject to these Unix uids of the calling process inside the pod (e.g. to tell an agent
    /// from the sub-processes it spawns). Empty: any uid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uids: Vec<u32>,
}

/// A Kubernetes service account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccountSubject {
    /// Name of the service account.
    #[cfg_attr(feature = "kube", schemars(length(min = 1)))]
    pub name: String,
    /// Its namespace. Default: the policy's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Callers identified by a claim in a token from a trusted issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcSubject {
    /// The issuer URL; it must be listed in the DatabaseConnection's identity.issuers.
    #[cfg_attr(feature = "kube", schemars(length(min = 1)))]
    pub issuer: String,
    /// The claim to look at, e.g. `sub`, `email` or `groups`.
    #[cfg_attr(feature = "kube", schemars(length(min = 1)))]
    pub claim: String,
    /// Accepted values; a list-valued claim matches if any element is one of them.
    #[cfg_attr(feature = "kube", schemars(length(min = 1)))]
    pub values: Vec<String>,
}

/// One rule: what to do with statements of these operations on these tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// A name for the rule, shown in decisions, journals and approval requests. Default: `rules[N]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// allow, deny, or requireApproval (hold for a person's decision).
    pub action: Action,
    /// Statement kinds the rule covers: select insert update delete merge copyIn copyOut ddl truncate
    /// grant role call do set transaction utility unknown.
    #[cfg_attr(feature = "kube", schemars(length(min = 1)))]
    pub operations: Vec<Operation>,
    /// Tables the rule covers, as `table` or `schema.table` globs (`*` matches any run of characters,
    /// a bare table name any schema). Empty: all tables, and statements that touch none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// Extra conditions; the rule matches only if all that are set hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<RuleWhen>,
    /// Text the caller sees when this rule denies or holds a statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Let the statement run.
    Allow,
    /// Hold the statement until a person approves it (see spec.approval).
    RequireApproval,
    /// Refuse the statement with SQLSTATE 42501.
    Deny,
}

/// A kind of statement, as the sidecar classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum Operation {
    /// SELECT, VALUES, TABLE, and reads inside other statements.
    Select,
    /// INSERT.
    Insert,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
    /// MERGE.
    Merge,
    /// COPY ... FROM STDIN.
    CopyIn,
    /// COPY ... TO STDOUT.
    CopyOut,
    /// CREATE, ALTER, DROP, COMMENT and other schema changes.
    Ddl,
    /// TRUNCATE.
    Truncate,
    /// GRANT and REVOKE.
    Grant,
    /// CREATE/ALTER/DROP ROLE or USER, SET ROLE, SET SESSION AUTHORIZATION.
    Role,
    /// CALL of a procedure.
    Call,
    /// DO blocks (anonymous code).
    Do,
    /// SET, RESET and SHOW of settings.
    Set,
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT and friends.
    Transaction,
    /// Other utility statements: VACUUM, ANALYZE, EXPLAIN, LISTEN, PREPARE, DISCARD, ...
    Utility,
    /// Anything that could not be parsed or classified. Denied unless a rule allows it.
    Unknown,
}

impl Operation {
    /// Every operation, in the documented order.
    pub const ALL: [Operation; 17] = [
        Self::Select,
        Self::Insert,
        Self::Update,
        Self::Delete,
        Self::Merge,
        Self::CopyIn,
        Self::CopyOut,
        Self::Ddl,
        Self::Truncate,
        Self::Grant,
        Self::Role,
        Self::Call,
        Self::Do,
        Self::Set,
        Self::Transaction,
        Self::Utility,
        Self::Unknown,
    ];

    /// The name used in the API, e.g. `copyIn`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Select => "select",
            Self::Insert => "insert",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Merge => "merge",
            Self::CopyIn => "copyIn",
            Self::CopyOut => "copyOut",
            Self::Ddl => "ddl",
            Self::Truncate => "truncate",
            Self::Grant => "grant",
            Self::Role => "role",
            Self::Call => "call",
            Self::Do => "do",
            Self::Set => "set",
            Self::Transaction => "transaction",
            Self::Utility => "utility",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Extra conditions on a rule.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleWhen {
    /// true: match only UPDATE or DELETE statements without a WHERE clause (false: only those with one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_where: Option<bool>,
    /// Match only when the statement returns or affects more than this many rows (checked as rows stream
    /// back for reads, from the planner's estimate for writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_over: Option<u64>,
}

/// One masking rule: which values to mask, and how. Set exactly one of columns or detector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(kube::KubeSchema))]
#[cfg_attr(
    feature = "kube",
    x_kube(
        validation = CelRule::new("(has(self.columns) && size(self.columns) > 0) != has(self.detector)")
            .message("set exactly one of columns or detector"),
        validation = CelRule::new("!has(self.detector) || self.detector != 'regex' || has(self.pattern)")
            .message("detector regex needs a pattern"),
        validation = CelRule::new("!has(self.pattern) || (has(self.detector) && self.detector == 'regex')")
            .message("pattern is only used with detector regex"),
        validation = CelRule::new("self.strategy != 'partial' || has(self.keepFirst) || has(self.keepLast)")
            .message("strategy partial needs keepFirst or keepLast"),
        validation = CelRule::new("self.strategy == 'partial' || (!has(self.keepFirst) && !has(self.keepLast))")
            .message("keepFirst and keepLast are only used with strategy partial"),
        validation = CelRule::new("self.strategy == 'redact' || !has(self.replacement)")
            .message("replacement is only used with strategy redact"),
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MaskingRule {
    /// Result columns to mask, as `schema.table.column` globs (`*` matches any run of characters), e.g.
    /// `public.customers.email` or `*.*.ssn`. Matched on the column's source, so aliases do not escape.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Mask any text value this built-in detector recognises: creditCard, email, iban, ssn, or regex (with
    /// pattern).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<Detector>,
    /// The regular expression for detector regex (Rust regex syntax); matching parts of a value are masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// How to mask: redact (fixed text), null, hash (keyed, stable), partial (keep the first/last
    /// characters), or email (keep only the domain).
    pub strategy: MaskStrategy,
    /// The fixed text for strategy redact. Default: `****`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
    /// Strategy partial: how many leading characters to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_first: Option<u32>,
    /// Strategy partial: how many trailing characters to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
}

/// Mask any text value this built-in detector recognises: creditCard, email, iban, ssn, or regex (with
/// pattern).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum Detector {
    /// Payment card numbers (13-19 digits, Luhn-checked, spaces or dashes allowed).
    CreditCard,
    /// E-mail addresses.
    Email,
    /// International bank account numbers (checksum-verified).
    Iban,
    /// US social security numbers (NNN-NN-NNNN).
    Ssn,
    /// The rule's own pattern.
    Regex,
}

/// How a masked value is rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum MaskStrategy {
    /// Replace with fixed text (replacement, default `****`).
    Redact,
    /// Replace with SQL NULL.
    Null,
    /// Replace with a keyed hash: equal inputs give equal outputs, so joins and counts still work.
    Hash,
    /// Keep keepFirst leading and keepLast trailing characters, mask the rest.
    Partial,
    /// Keep the domain of an e-mail address, mask the local part.
    Email,
}

/// How statements held by requireApproval rules wait for a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalSpec {
    /// wait (the default) holds the statement on the open connection until decided or timed out; reject
    /// fails it at once, and the same statement from the same caller runs once approved.
    #[serde(default)]
    pub mode: ApprovalMode,
    /// How long an approval request stays open before it expires (e.g. 10m, 1h). Default 10m.
    #[serde(default = "default_approval_timeout")]
    #[cfg_attr(feature = "kube", schemars(regex(pattern = crate::duration::DURATION_PATTERN)))]
    pub timeout: String,
    /// Mode reject: how long after approval the caller may run the approved statement. Default: the
    /// timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(regex(pattern = crate::duration::DURATION_PATTERN)))]
    pub grant_window: Option<String>,
}

impl Default for ApprovalSpec {
    fn default() -> Self {
        Self {
            mode: ApprovalMode::default(),
            timeout: default_approval_timeout(),
            grant_window: None,
        }
    }
}

fn default_approval_timeout() -> String {
    "10m".into()
}

/// How an approval is waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum ApprovalMode {
    /// Hold the statement on the live connection until decided. The default.
    #[default]
    Wait,
    /// Fail the statement at once, naming the approval request; re-run it once approved.
    Reject,
}

/// Caps on what one statement may do.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Most rows a statement may return; past it the statement fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(range(min = 1)))]
    pub max_rows: Option<u64>,
    /// Most result bytes a statement may return; past it the statement fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(range(min = 1)))]
    pub max_bytes: Option<u64>,
    /// Longest a statement may run (e.g. 30s), enforced as the server's statement_timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(regex(pattern = crate::duration::DURATION_PATTERN)))]
    pub statement_timeout: Option<String>,
}

/// Whether a policy blocks or only records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum Enforcement {
    /// Block what the rules deny. The default.
    #[default]
    Enforce,
    /// Decide and record, but block nothing.
    Audit,
}

/// What the operator last saw of an AccessPolicy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicyStatus {
    /// Valid (the spec passed validation) and Active (now is inside notBefore/validUntil).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// What is wrong with the spec, one entry per offending field. An invalid policy grants nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl AccessPolicySpec {
    /// Whether `now` is inside the policy's notBefore/validUntil window (inclusive start, exclusive end).
    /// A timestamp that does not parse makes the policy inactive: it fails closed.
    pub fn active_at(&self, now: SystemTime) -> bool {
        let after_start = match &self.not_before {
            None => true,
            Some(t) => parse_rfc3339(t).is_ok_and(|start| now >= start),
        };
        let before_end = match &self.valid_until {
            None => true,
            Some(t) => parse_rfc3339(t).is_ok_and(|end| now < end),
        };
        after_start && before_end
    }
}

impl Rule {
    /// The name used to refer to this rule: its own name, or `rules[index]`.
    pub fn display_name(&self, index: usize) -> String {
        self.name.clone().unwrap_or_else(|| format!("rules[{index}]"))
    }
}

/// Most compiled size a detector pattern may have, so a policy cannot make the sidecar build a huge
/// automaton. The sidecar compiles with [`compile_pattern`] too, so what validates also runs.
pub const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// Compile a detector pattern the way the sidecar does.
pub fn compile_pattern(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
}
