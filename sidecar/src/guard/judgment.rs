//! What the statement half concludes from a statement's effects: the relations its names denote, the
//! search paths it may leave, and the checks beyond the policy's rules (timeouts, writes of data).

use tracing::{debug, info};

use super::{
    context::CallerState,
    paths::{SearchPaths, candidates},
};
use crate::{
    catalog::CatalogSnapshot,
    identity::CallerIdentity,
    policy::{Decision, Verdict as PolicyVerdict},
    sql::{Effects, Operation, RelationName, SessionChange},
};

/// Why a `SET statement_timeout` in the statement is refused: a caller with a statementTimeout limit
/// may lower the timeout, not raise or remove it (`DEFAULT`/`RESET` return to the value the session
/// was opened with, which is within the limit).
pub(super) fn timeout_exceeds_limit(effects: &Effects, caller: &CallerState) -> Option<String> {
    let limit = caller.limits.statement_timeout?;
    let limit_ms = super::startup::millis(limit);
    effects.session.iter().find_map(|c| match c {
        SessionChange::StatementTimeout(Some(value)) => match super::timeout_ms(value) {
            Some(ms) if ms > 0 && ms <= limit_ms => None,
            _ => Some(format!(
                "dbward: statement_timeout may not be set to {value:?}: the policy limits statements to {}",
                dbward_crds::format_duration(limit)
            )),
        },
        _ => None,
    })
}

/// Adds the search paths a statement may leave the session with.
pub(super) fn advance_paths(paths: &mut SearchPaths, effects: &Effects) {
    if calls_set_config(effects) {
        paths.add(None);
    }
    for change in &effects.session {
        match change {
            SessionChange::SearchPath(Some(path)) => paths.add(Some(path.clone())),
            SessionChange::SearchPath(None) | SessionChange::DiscardAll => paths.add_initial(),
            _ => {}
        }
    }
}

/// Whether the statement writes data somewhere it could be read back from.
pub(super) fn writes_data(effects: &Effects) -> bool {
    effects.operations.iter().any(|op| {
        matches!(
            op,
            Operation::Insert | Operation::Update | Operation::Merge | Operation::Ddl | Operation::Set
        )
    })
}

/// Whether the statement calls `set_config` (which can change any setting, the search path included).
pub(super) fn calls_set_config(effects: &Effects) -> bool {
    effects
        .functions
        .iter()
        .any(|f| f == "set_config" || f.ends_with(".set_config"))
}

pub(super) fn merge(into: &mut Effects, from: &Effects) {
    into.operations.extend(from.operations.iter().copied());
    into.reads.extend(from.reads.iter().cloned());
    into.writes.extend(from.writes.iter().cloned());
    into.functions.extend(from.functions.iter().cloned());
    into.missing_where |= from.missing_where;
}

/// The effects with every relation name replaced by the relations it may denote (qualified), and
/// whether some name denotes nothing the catalog knows.
pub(super) fn resolve(
    effects: &Effects,
    snapshot: &CatalogSnapshot,
    paths: &SearchPaths,
    user: &str,
) -> (Effects, bool) {
    let mut missing = false;
    let mut expand = |set: &std::collections::BTreeSet<RelationName>| {
        let mut out = std::collections::BTreeSet::new();
        for name in set {
            let found = candidates(snapshot, name, paths, user);
            if found.is_empty() {
                missing = true;
                out.insert(name.clone());
            }
            for r in found {
                out.insert(RelationName::new(Some(&r.schema), &r.name));
            }
        }
        out
    };
    let reads = expand(&effects.reads);
    let writes = expand(&effects.writes);
    let resolved = Effects {
        operations: effects.operations.clone(),
        reads,
        writes,
        functions: effects.functions.clone(),
        missing_where: effects.missing_where,
        session: Vec::new(),
    };
    (resolved, missing)
}

pub(super) fn log_decision(connection: &str, identity: &CallerIdentity, decision: &Decision) {
    let rule = decision.rule.as_ref().map(|r| r.to_string()).unwrap_or_default();
    if !decision.enforced && decision.verdict != PolicyVerdict::Allow {
        info!(connection, caller = %identity, verdict = %decision.verdict, %rule, "audit: the policy would refuse this statement");
    } else if decision.verdict != PolicyVerdict::Allow {
        info!(connection, caller = %identity, verdict = %decision.verdict, %rule, "statement refused");
    } else {
        debug!(connection, caller = %identity, %rule, "statement allowed");
    }
    if let Some(audit) = &decision.audit
        && audit.verdict != decision.verdict
    {
        info!(connection, caller = %identity, verdict = %audit.verdict, "audit: with the audit policies enforced, this statement would be judged differently");
    }
}
