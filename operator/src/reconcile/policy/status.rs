//! The status of an AccessPolicy, from its spec, the clock and the names of the DatabaseConnections in
//! its namespace. No I/O.
//!
//! - **Valid**: the spec passes `validate()`; otherwise False (reason `Invalid`) and `status.errors`
//!   lists every offending field.
//! - **Active**: now is inside `notBefore`/`validUntil` (reasons `Active`, `NotYetActive`, `Expired`;
//!   `Invalid` when a time cannot be read — the policy then fails closed).
//! - **Ready**: valid, active, and every name in `spec.connections` is a DatabaseConnection of the
//!   namespace. The warning about connections that do not exist lives here (reason
//!   `UnknownConnection`, the message lists them) rather than on Valid: the spec is not wrong — the
//!   connection may simply be created later — but the policy does not do everything it says.
//!
//! With the status comes the next `notBefore`/`validUntil` boundary, when Active will change by itself.

use std::{collections::BTreeSet, time::SystemTime};

use dbward_crds::{
    AccessPolicy, AccessPolicyStatus, Condition, ConditionStatus, TimestampError, condition::types,
    parse_rfc3339,
};

use crate::reconcile::status::merge_conditions;

/// Reasons of the AccessPolicy conditions.
pub mod reasons {
    /// Valid: the spec passed validation. Active: now is inside the window.
    pub const VALID: &str = "Valid";
    /// Valid, Ready: the spec fails validation. Active: a time in the spec cannot be read.
    pub const INVALID: &str = "Invalid";
    /// Active: now is inside the window.
    pub const ACTIVE: &str = "Active";
    /// Active, Ready: `notBefore` is still ahead.
    pub const NOT_YET_ACTIVE: &str = "NotYetActive";
    /// Active, Ready: `validUntil` has passed.
    pub const EXPIRED: &str = "Expired";
    /// Ready: `spec.connections` names connections that do not exist in the namespace.
    pub const UNKNOWN_CONNECTION: &str = "UnknownConnection";
    /// Ready: all in order.
    pub const READY: &str = "Ready";
}

/// What the reconciler writes for a policy, and when to look again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyReport {
    /// The status to write.
    pub status: AccessPolicyStatus,
    /// The next `notBefore` or `validUntil` after now, when Active changes on its own.
    pub next_boundary: Option<SystemTime>,
}

/// The status of `policy` at `now`, given the names of the DatabaseConnections that exist in its
/// namespace. Conditions keep their `lastTransitionTime` while their status holds.
pub fn policy_status(policy: &AccessPolicy, existing: &BTreeSet<String>, now: SystemTime) -> PolicyReport {
    let generation = policy.metadata.generation;
    let spec = &policy.spec;
    let errors = spec.validate().err().unwrap_or_default();
    let valid = if errors.is_empty() {
        Condition::new(types::VALID, true, reasons::VALID, "the spec is valid", now)
    } else {
        let noun = if errors.len() == 1 { "problem" } else { "problems" };
        let first = &errors[0];
        let message = format!(
            "{} {noun} (see status.errors), the first: {first}; an invalid policy grants nothing",
            errors.len()
        );
        Condition::new(types::VALID, false, reasons::INVALID, message, now)
    };
    let (active, next_boundary) = active_condition(policy, now);
    let unknown: Vec<&str> = unknown_connections(policy, existing);
    let ready = ready_condition(policy, &valid, &active, &unknown, now);
    let computed = [valid, active, ready]
        .into_iter()
        .map(|c| c.with_generation(generation))
        .collect();
    let old = policy
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    PolicyReport {
        status: AccessPolicyStatus {
            conditions: merge_conditions(old, computed),
            observed_generation: generation,
            errors,
        },
        next_boundary,
    }
}

/// The names in `spec.connections` that are not in `existing`, each once, in the order written.
pub fn unknown_connections<'a>(policy: &'a AccessPolicy, existing: &BTreeSet<String>) -> Vec<&'a str> {
    let mut unknown: Vec<&str> = Vec::new();
    for name in &policy.spec.connections {
        if !existing.contains(name) && !unknown.contains(&name.as_str()) {
            unknown.push(name);
        }
    }
    unknown
}

/// Active from [`AccessPolicySpec::active_at`](dbward_crds::AccessPolicySpec::active_at) (the
/// sidecar's own test), with the reason and the next boundary read from the same timestamps.
fn active_condition(policy: &AccessPolicy, now: SystemTime) -> (Condition, Option<SystemTime>) {
    let spec = &policy.spec;
    let not_before = spec.not_before.as_deref().map(|t| (t, parse_rfc3339(t)));
    let valid_until = spec.valid_until.as_deref().map(|t| (t, parse_rfc3339(t)));
    let readable = |bound: &Option<(&str, Result<SystemTime, TimestampError>)>| match bound {
        Some((_, Err(error))) => Err(error.clone()),
        Some((text, Ok(at))) => Ok(Some((text.to_string(), *at))),
        None => Ok(None),
    };
    let (start, end) = match (readable(&not_before), readable(&valid_until)) {
        (Ok(start), Ok(end)) => (start, end),
        (Err(error), _) | (_, Err(error)) => {
            let message = format!("{error}; the policy stays inactive until it is fixed");
            let condition = Condition::new(types::ACTIVE, false, reasons::INVALID, message, now);
            return (condition, None);
        }
    };
    let next_boundary = [&start, &end]
        .into_iter()
        .flatten()
        .map(|(_, at)| *at)
        .filter(|at| *at > now)
        .min();
    let condition = if spec.active_at(now) {
        let message = match &end {
            Some((t, _)) => format!("the policy applies until validUntil {t}"),
            None => "the policy applies with no end date".to_owned(),
        };
        Condition::new(types::ACTIVE, true, reasons::ACTIVE, message, now)
    } else {
        match start {
            Some((t, at)) if now < at => Condition::new(
                types::ACTIVE,
                false,
                reasons::NOT_YET_ACTIVE,
                format!("the policy applies from notBefore {t}"),
                now,
            ),
            _ => {
                let t = end.map(|(t, _)| t).unwrap_or_default();
                Condition::new(
                    types::ACTIVE,
                    false,
                    reasons::EXPIRED,
                    format!("the policy stopped applying at validUntil {t}"),
                    now,
                )
            }
        }
    };
    (condition, next_boundary)
}

fn ready_condition(
    policy: &AccessPolicy,
    valid: &Condition,
    active: &Condition,
    unknown: &[&str],
    now: SystemTime,
) -> Condition {
    let mut problems: Vec<(&str, String)> = Vec::new();
    if !valid.is_true() {
        problems.push((reasons::INVALID, valid.message.clone()));
    }
    if active.status != ConditionStatus::True {
        problems.push((active.reason.as_str(), active.message.clone()));
    }
    if !unknown.is_empty() {
        let namespace = policy.metadata.namespace.as_deref().unwrap_or_default();
        let names: Vec<String> = unknown.iter().map(|n| format!("{n:?}")).collect();
        let (noun, verb) = if unknown.len() == 1 {
            ("connection", "does")
        } else {
            ("connections", "do")
        };
        problems.push((
            reasons::UNKNOWN_CONNECTION,
            format!(
                "{noun} {} {verb} not exist in namespace {namespace:?}: the policy grants nothing through \
                 {}; create {} or fix spec.connections",
                names.join(", "),
                if unknown.len() == 1 { "it" } else { "them" },
                if unknown.len() == 1 { "it" } else { "them" },
            ),
        ));
    }
    match problems.first() {
        Some((reason, _)) => {
            let messages: Vec<&str> = problems.iter().map(|(_, m)| m.as_str()).collect();
            Condition::new(types::READY, false, *reason, messages.join("; "), now)
        }
        None => Condition::new(
            types::READY,
            true,
            reasons::READY,
            "valid, active, and every connection it names exists",
            now,
        ),
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
