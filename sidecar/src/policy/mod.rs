//! The policy engine: AccessPolicy documents compiled into a [`PolicySet`], narrowed to a
//! [`CallerPolicy`] per (caller identity, connection), which decides on each statement's
//! [`Effects`](crate::sql::effects::Effects) (DESIGN §3).
//!
//! # Which policies apply
//!
//! A policy applies to a caller on a connection when all of these hold:
//! - the connection is listed in `spec.connections`;
//! - the policy is active: `notBefore <= now < validUntil` (either bound may be absent). The relay asks
//!   [`CallerPolicy::next_change`] when the answer next changes and recomputes then;
//! - any of its subjects matches the caller:
//!   - `serviceAccount {name, namespace?}` matches the caller's service account. The namespace defaults
//!     to the policy's `metadata.namespace`; with neither, any namespace matches. Only identities whose
//!     service account can be trusted match: the ambient (pod) identity, or a token from one of the
//!     Kubernetes service-account issuers given to [`PolicySet::new`] — any other OIDC issuer could
//!     mint `sub: system:serviceaccount:...`;
//!   - `group` matches one of the caller's `groups`;
//!   - `oidc {issuer, claim, values}` matches a token from exactly that issuer whose top-level `claim` is
//!     a string among `values`, or an array with a string among `values`;
//!   - `uids`, when non-empty, additionally requires the caller's Unix uid to be one of them (an unknown
//!     uid matches no such subject).
//!
//! No applicable policy means no access: every statement is denied, saying that no AccessPolicy grants
//! this caller access to this connection.
//!
//! # Deciding a statement
//!
//! The rules of all applicable policies apply together. The statement is cut into items: each
//! operation in `effects.operations` paired with each relation it touches — `select` and `copyOut`
//! touch `effects.reads`; `insert update delete merge copyIn truncate ddl` touch `effects.writes`; the
//! other operations touch none, and an operation whose relation set is empty is one item without a
//! relation. A rule matches an item when
//! - it lists the operation;
//! - its `tables` are empty, or one of its globs matches the relation's resolved name `schema.table`
//!   (the caller resolves unqualified names through the session's search_path). A glob without a dot
//!   matches the table in any schema; `*` and `?` stay within one part; matching is case-sensitive,
//!   since names arrive folded as PostgreSQL folds unquoted identifiers. An item without a relation is
//!   matched only by rules without `tables`;
//! - its `when` holds: `missingWhere: true` only for update/delete when the statement has an UPDATE or
//!   DELETE without WHERE (`false`: only update/delete when it has none). `rowsOver` cannot be known
//!   before the statement runs, so it fails closed: a deny or requireApproval rule with `rowsOver`
//!   matches as if the rows were over, an allow rule with `rowsOver` never matches.
//!
//! Per item, deny beats requireApproval beats allow, and an item no rule matches is denied. The
//! statement's verdict is its worst item's (the first such item names the rule and message).
//! `unknown` is an ordinary operation here: denied unless a rule allows `unknown`.
//!
//! # Audit
//!
//! Policies with `enforcement: audit` are decided but never block:
//! - a caller matched only by audit policies gets their decision with `enforced: false` (the implicit
//!   deny included): the relay records it and runs the statement;
//! - when enforce and audit policies both apply, only the enforce policies' rules make the decision
//!   (`enforced: true`); [`Decision::audit`] reports what the rules of all of them together would
//!   have decided, i.e. what switching the audit policies to enforce would change.
//!
//! Audit policies do not mask, limit or hold for approval: those would change what the caller gets.
//!
//! # Masking, limits, approval
//!
//! Masking rules of the applicable enforce policies add up. Per column (`schema.table.column` globs),
//! the strongest strategy wins: null > redact > hash > email > partial; between partial rules the one
//! revealing fewest characters wins, and it keeps its own keepFirst/keepLast. Detectors add up,
//! deduplicated by detector and pattern (the strongest strategy wins there too). Limits take the
//! minimum of each of maxRows, maxBytes and statementTimeout. A requireApproval decision carries the
//! approval settings of the policy whose rule asked for approval; if several did, the one with the
//! shortest timeout.

mod caller;
mod compile;
mod decide;
mod glob;
mod masking;
mod subject;
#[cfg(test)]
mod tests;

pub use self::{
    caller::{CallerPolicy, EffectiveLimits},
    compile::{ApprovalSettings, PolicyError, PolicySet},
    decide::{Decision, RuleRef, Verdict},
    masking::{DetectorSpec, MaskSpec},
};
