//! `AccessPolicySpec::validate()`: everything a user can get wrong in a policy, each error naming its field.

use super::{
    AccessPolicySpec, Detector, MAX_CONNECTIONS, MAX_MASKING, MAX_RULES, MAX_SUBJECTS, MaskStrategy,
    MaskingRule, Operation, Rule, Subject, compile_pattern,
};
use crate::validate::{Errors, FieldError};

const TABLE_SHAPE: &str = "a table or schema.table glob, e.g. \"orders\", \"public.*\" or \"audit.log_*\"";
const COLUMN_SHAPE: &str = "a schema.table.column glob (3 dot-separated parts, * allowed), e.g. \
                            \"public.customers.email\" or \"*.*.ssn\"";

impl AccessPolicySpec {
    /// Check everything the schema cannot: returns every problem, each naming its field.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Errors::default();

        e.at_most("spec.connections", self.connections.len(), MAX_CONNECTIONS);
        e.at_most("spec.subjects", self.subjects.len(), MAX_SUBJECTS);
        e.at_most("spec.rules", self.rules.len(), MAX_RULES);
        e.at_most("spec.masking", self.masking.len(), MAX_MASKING);
        if self.connections.is_empty() {
            e.push("spec.connections", "must name at least one DatabaseConnection");
        }
        for (i, name) in self.connections.iter().enumerate() {
            e.object_name(format_args!("spec.connections[{i}]"), name);
        }
        e.unique(
            |i| format!("spec.connections[{i}]"),
            self.connections.iter().map(String::as_str),
            "connection",
        );

        if self.subjects.is_empty() {
            e.push(
                "spec.subjects",
                "must list at least one subject, or the policy applies to no one",
            );
        }
        for (i, subject) in self.subjects.iter().enumerate() {
            check_subject(&mut e, &format!("spec.subjects[{i}]"), subject);
        }

        for (i, rule) in self.rules.iter().enumerate() {
            check_rule(&mut e, &format!("spec.rules[{i}]"), rule);
        }
        let named = self
            .rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((i, r.name.as_deref()?)));
        let mut seen = std::collections::BTreeMap::new();
        for (i, name) in named {
            if let Some(first) = seen.get(name) {
                e.push(
                    format_args!("spec.rules[{i}].name"),
                    format!("duplicate rule name {name:?} (first at index {first})"),
                );
            } else {
                seen.insert(name, i);
            }
        }

        for (i, masking) in self.masking.iter().enumerate() {
            check_masking(&mut e, &format!("spec.masking[{i}]"), masking);
        }

        if let Some(approval) = &self.approval {
            e.duration("spec.approval.timeout", &approval.timeout, false);
            if let Some(window) = &approval.grant_window {
                e.duration("spec.approval.grantWindow", window, false);
            }
        }

        if let Some(limits) = &self.limits {
            if limits.max_rows == Some(0) {
                e.push(
                    "spec.limits.maxRows",
                    "must be at least 1 (leave it out for no limit)",
                );
            }
            if limits.max_bytes == Some(0) {
                e.push(
                    "spec.limits.maxBytes",
                    "must be at least 1 (leave it out for no limit)",
                );
            }
            if let Some(timeout) = &limits.statement_timeout {
                e.duration("spec.limits.statementTimeout", timeout, false);
            }
        }

        if self.rules.is_empty() && self.masking.is_empty() && self.limits.is_none() {
            e.push(
                "spec.rules",
                "the policy has no rules, masking or limits, so it has no effect",
            );
        }

        let start = self
            .not_before
            .as_ref()
            .and_then(|t| e.timestamp("spec.notBefore", t));
        let end = self
            .valid_until
            .as_ref()
            .and_then(|t| e.timestamp("spec.validUntil", t));
        if let (Some(start), Some(end)) = (start, end)
            && end <= start
        {
            e.push("spec.validUntil", "must be after notBefore");
        }

        e.finish()
    }
}

fn check_subject(e: &mut Errors, at: &str, subject: &Subject) {
    let kinds = usize::from(subject.service_account.is_some())
        + usize::from(subject.group.is_some())
        + usize::from(subject.oidc.is_some());
    if kinds != 1 {
        let found = if kinds == 0 {
            "none is set"
        } else {
            "more than one is set"
        };
        e.push(
            at,
            format!("set exactly one of serviceAccount, group or oidc ({found})"),
        );
    }
    if let Some(sa) = &subject.service_account {
        e.object_name(format_args!("{at}.serviceAccount.name"), &sa.name);
        if let Some(ns) = &sa.namespace {
            e.namespace(format_args!("{at}.serviceAccount.namespace"), ns);
        }
    }
    if let Some(group) = &subject.group {
        e.non_empty(format_args!("{at}.group"), group);
    }
    if let Some(oidc) = &subject.oidc {
        e.https_url(format_args!("{at}.oidc.issuer"), &oidc.issuer);
        e.non_empty(format_args!("{at}.oidc.claim"), &oidc.claim);
        if oidc.values.is_empty() {
            e.push(
                format_args!("{at}.oidc.values"),
                "must list at least one accepted value",
            );
        }
        for (j, value) in oidc.values.iter().enumerate() {
            e.non_empty(format_args!("{at}.oidc.values[{j}]"), value);
        }
    }
}

fn check_rule(e: &mut Errors, at: &str, rule: &Rule) {
    if let Some(name) = &rule.name {
        e.non_empty(format_args!("{at}.name"), name);
    }
    if rule.operations.is_empty() {
        e.push(
            format_args!("{at}.operations"),
            "must list at least one operation (e.g. select, insert, update, delete)",
        );
    }
    let mut seen = Vec::new();
    for (j, op) in rule.operations.iter().enumerate() {
        if seen.contains(op) {
            e.push(
                format_args!("{at}.operations[{j}]"),
                format!("{op} is listed twice"),
            );
        }
        seen.push(*op);
    }
    for (j, table) in rule.tables.iter().enumerate() {
        e.glob(format_args!("{at}.tables[{j}]"), table, &[1, 2], TABLE_SHAPE);
    }
    if let Some(when) = &rule.when {
        if when.missing_where.is_none() && when.rows_over.is_none() {
            e.push(
                format_args!("{at}.when"),
                "is empty: set missingWhere or rowsOver, or leave when out",
            );
        }
        if when.missing_where.is_some()
            && !rule
                .operations
                .iter()
                .any(|op| matches!(op, Operation::Update | Operation::Delete))
        {
            e.push(
                format_args!("{at}.when.missingWhere"),
                "only applies to update and delete, and the rule lists neither",
            );
        }
    }
    if let Some(message) = &rule.message {
        e.non_empty(format_args!("{at}.message"), message);
    }
}

fn check_masking(e: &mut Errors, at: &str, m: &MaskingRule) {
    match (m.columns.is_empty(), m.detector) {
        (true, None) => e.push(at, "set exactly one of columns or detector (none is set)"),
        (false, Some(_)) => e.push(at, "set exactly one of columns or detector (both are set)"),
        _ => {}
    }
    for (j, column) in m.columns.iter().enumerate() {
        e.glob(format_args!("{at}.columns[{j}]"), column, &[3], COLUMN_SHAPE);
    }
    match (m.detector, &m.pattern) {
        (Some(Detector::Regex), None) => {
            e.push(format_args!("{at}.pattern"), "detector regex needs a pattern")
        }
        (Some(Detector::Regex), Some(pattern)) => {
            if pattern.is_empty() {
                e.push(format_args!("{at}.pattern"), "must not be empty");
            } else if let Err(err) = compile_pattern(pattern) {
                e.push(
                    format_args!("{at}.pattern"),
                    format!("is not a valid regular expression: {err}"),
                );
            }
        }
        (_, Some(_)) => e.push(format_args!("{at}.pattern"), "is only used with detector regex"),
        (_, None) => {}
    }
    if m.strategy == MaskStrategy::Partial {
        match (m.keep_first, m.keep_last) {
            (None, None) => e.push(at, "strategy partial needs keepFirst or keepLast"),
            (Some(0) | None, Some(0) | None) => e.push(
                at,
                "strategy partial keeps nothing: raise keepFirst or keepLast, or use redact",
            ),
            _ => {}
        }
    } else {
        for (value, field) in [(m.keep_first, "keepFirst"), (m.keep_last, "keepLast")] {
            if value.is_some() {
                e.push(format_args!("{at}.{field}"), "is only used with strategy partial");
            }
        }
    }
    if m.replacement.is_some() && m.strategy != MaskStrategy::Redact {
        e.push(
            format_args!("{at}.replacement"),
            "is only used with strategy redact",
        );
    }
}
