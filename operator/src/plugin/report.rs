//! An [`Explanation`] as the text `kubectl dbward explain` prints. Everything that comes from an object
//! (names, globs, messages) goes through [`terminal_safe`].

use std::fmt::Write as _;

use dbward_crds::{ApprovalMode, Enforcement, MaskStrategy, format_duration, format_rfc3339};

use super::{
    effect::{ColumnMask, DetectorMask, Effect, Mask, OperationEffect, RuleEffect},
    explain::{Activity, Explanation, PolicyReport},
    text::{join_names, table, terminal_safe},
};

/// The whole explanation.
pub fn render(x: &Explanation, now: std::time::SystemTime) -> String {
    let mut out = String::new();
    let uid = x.uid.map(|u| format!(" (process uid {u})")).unwrap_or_default();
    let _ = writeln!(
        out,
        "Service account {}{uid} on DatabaseConnection {}/{}, at {}",
        x.caller,
        x.namespace,
        terminal_safe(&x.connection),
        format_rfc3339(now)
    );
    if x.caller.namespace != x.namespace {
        let _ = writeln!(
            out,
            "Note: {} lives in namespace {}; its pods use that namespace's connections. Here it is a \
             caller presenting its service-account token to a sidecar in {}.",
            x.caller, x.caller.namespace, x.namespace
        );
    }
    out.push('\n');

    if !x.connection_exists {
        let existing = if x.existing_connections.is_empty() {
            "there are none".to_owned()
        } else {
            format!("existing: {}", safe_join(&x.existing_connections))
        };
        let _ = writeln!(
            out,
            "DatabaseConnection {:?} does not exist in namespace {} ({existing}). No pod can be injected \
             with it, and a sidecar refuses every statement on it until it exists.\n",
            x.connection, x.namespace
        );
    }

    policies_section(&mut out, x);

    match (&x.effect, x.connection_exists) {
        (_, false) => {
            out.push_str("Effect: no access: every statement is refused (the connection does not exist).\n");
        }
        (None, true) => {
            let _ = writeln!(
                out,
                "Effect: no access: every statement is refused. No AccessPolicy grants {} access to \
                 connection {:?} now.",
                x.caller, x.connection
            );
        }
        (Some(effect), true) => effect_section(&mut out, x, effect),
    }
    out
}

fn safe_join(names: &[String]) -> String {
    let safe: Vec<String> = names.iter().map(|n| terminal_safe(n)).collect();
    safe.join(", ")
}

fn policies_section(out: &mut String, x: &Explanation) {
    if x.policies.is_empty() {
        let _ = writeln!(
            out,
            "No AccessPolicy on connection {:?} names {}.\n",
            x.connection, x.caller
        );
    } else {
        out.push_str("Policies naming this service account:\n");
        policy_table(out, &x.policies, |p| {
            p.matched_by.iter().chain(p.uid_narrowed.iter().map(|(s, _)| s))
        });
        out.push('\n');
    }
    if !x.token_policies.is_empty() {
        out.push_str(
            "Policies that may apply to callers presenting tokens (OIDC subjects cannot be resolved for a \
             service account):\n",
        );
        policy_table(out, &x.token_policies, |p| p.token_subjects.iter());
        out.push('\n');
    }
    if !x.other_policies.is_empty() {
        let _ = writeln!(
            out,
            "Other policies on this connection name other subjects: {}.\n",
            safe_join(&x.other_policies)
        );
    }
}

fn policy_table<'a, I>(out: &mut String, policies: &'a [PolicyReport], via: impl Fn(&'a PolicyReport) -> I)
where
    I: Iterator<Item = &'a String>,
{
    let mut rows = vec![vec![
        "NAME".to_owned(),
        "ENFORCEMENT".to_owned(),
        "STATUS".to_owned(),
        "SUBJECT".to_owned(),
    ]];
    let mut details = Vec::new();
    for p in policies {
        let mut subjects = via(p).map(|s| terminal_safe(s));
        rows.push(vec![
            terminal_safe(&p.id),
            enforcement(p.enforcement).to_owned(),
            status(p),
            subjects.next().unwrap_or_default(),
        ]);
        for more in subjects {
            rows.push(vec![String::new(), String::new(), String::new(), more]);
        }
        for e in &p.errors {
            details.push(format!(
                "  {} is invalid: {}",
                terminal_safe(&p.id),
                terminal_safe(&e.to_string())
            ));
        }
    }
    out.push_str(&table(&rows, "  "));
    for d in details {
        out.push_str(&d);
        out.push('\n');
    }
}

fn enforcement(e: Enforcement) -> &'static str {
    match e {
        Enforcement::Enforce => "enforce",
        Enforcement::Audit => "audit",
    }
}

/// Whether a policy applies, or why not.
fn status(p: &PolicyReport) -> String {
    if !p.errors.is_empty() {
        return "invalid: ignored".to_owned();
    }
    let window = match &p.activity {
        Activity::Active { until: None } => None,
        Activity::Active { until: Some(t) } => Some(format!("until {}", terminal_safe(t))),
        Activity::NotYet { from } => return format!("not yet: from {}", terminal_safe(from)),
        Activity::Ended { at } => return format!("ended {}", terminal_safe(at)),
        Activity::Unreadable => return "inactive: unreadable notBefore/validUntil".to_owned(),
    };
    let state = if !p.matched_by.is_empty() {
        "applies"
    } else if !p.uid_narrowed.is_empty() {
        let uids: Vec<String> = p
            .uid_narrowed
            .iter()
            .flat_map(|(_, u)| u.iter().map(u32::to_string))
            .collect();
        return format!("only for uid {} (see --uid)", uids.join(","));
    } else {
        "active"
    };
    match window {
        Some(w) => format!("{state} {w}"),
        None => state.to_owned(),
    }
}

fn effect_section(out: &mut String, x: &Explanation, effect: &Effect) {
    let applying: Vec<&str> = x
        .policies
        .iter()
        .filter(|p| p.applies())
        .map(|p| p.id.as_str())
        .collect();
    let _ = writeln!(
        out,
        "Effect of {} (deny beats requireApproval beats allow; what no rule allows is denied):",
        terminal_safe(&join_names(&applying))
    );
    if effect.audit_only {
        out.push_str(
            "  Only audit policies apply: these decisions are recorded, but nothing is blocked, masked, \
             limited or held.\n",
        );
    }
    operations_table(out, &effect.operations);

    if let Some(with_audit) = &effect.with_audit {
        let changed: Vec<OperationEffect> = with_audit
            .iter()
            .zip(&effect.operations)
            .filter(|(a, e)| a != e)
            .map(|(a, _)| a.clone())
            .collect();
        if !changed.is_empty() {
            out.push_str(
                "\n  Audit policies apply too: they are recorded, not enforced. With them enforced these \
                 operations would read:\n",
            );
            operations_table(out, &changed);
        }
    }

    out.push('\n');
    masking_section(out, effect);
    limits_section(out, effect);
    approval_section(out, effect);
}

/// The operations some rule speaks to, as a table; those no rule mentions on one line after it.
fn operations_table(out: &mut String, ops: &[OperationEffect]) {
    let silent =
        |op: &OperationEffect| op.decided_by.is_none() && op.narrowed.is_empty() && op.inert.is_empty();
    let (unmentioned, mentioned): (Vec<OperationEffect>, Vec<OperationEffect>) =
        ops.iter().cloned().partition(|op| silent(op));
    if mentioned.is_empty() {
        out.push_str("  Every statement is refused: no rule allows any operation.\n");
        return;
    }
    out.push_str(&table(&operation_rows(&mentioned), "  "));
    if mentioned.iter().any(|op| !op.narrowed.is_empty()) {
        out.push_str(
            "  A statement is judged for each table it touches (a rule with tables only matches those); the \
             strictest outcome decides it.\n",
        );
    }
    if !unmentioned.is_empty() {
        let names: Vec<String> = unmentioned.iter().map(|op| op.operation.to_string()).collect();
        let _ = writeln!(out, "  Denied, as no rule allows them: {}.", names.join(", "));
    }
}

fn operation_rows(ops: &[OperationEffect]) -> Vec<Vec<String>> {
    let mut rows = vec![vec![
        "OPERATION".to_owned(),
        "DECISION".to_owned(),
        "RULE".to_owned(),
        "WHERE".to_owned(),
    ]];
    for op in ops {
        let everything = if op.narrowed.iter().any(|(_, shadowed)| !shadowed) {
            "any other statement"
        } else {
            "every statement"
        };
        match &op.decided_by {
            Some(rule) => rows.push(vec![
                op.operation.to_string(),
                op.verdict.as_str().to_owned(),
                terminal_safe(&rule.rule.to_string()),
                conditions(rule, everything),
            ]),
            None => rows.push(vec![
                op.operation.to_string(),
                "deny".to_owned(),
                "(no rule allows it)".to_owned(),
                everything.to_owned(),
            ]),
        }
        for (rule, shadowed) in &op.narrowed {
            let mut note = conditions(rule, "");
            if *shadowed && let Some(d) = &op.decided_by {
                let _ = write!(
                    note,
                    " -- no effect: {} by {} wins",
                    d.verdict.as_str(),
                    terminal_safe(&d.rule.to_string())
                );
            }
            rows.push(vec![
                String::new(),
                format!("  {}", rule.verdict.as_str()),
                terminal_safe(&rule.rule.to_string()),
                note,
            ]);
        }
        for inert in &op.inert {
            rows.push(vec![
                String::new(),
                "  never".to_owned(),
                terminal_safe(&inert.rule.to_string()),
                terminal_safe(&inert.reason),
            ]);
        }
    }
    rows
}

/// Where a rule applies: its tables and `when`, and its message.
fn conditions(rule: &RuleEffect, unconditional: &str) -> String {
    let mut parts = Vec::new();
    if !rule.tables.is_empty() {
        parts.push(format!("tables {}", rule.tables.join(", ")));
    }
    match rule.missing_where {
        Some(true) => parts.push("without WHERE (missingWhere)".to_owned()),
        Some(false) => parts.push("with a WHERE (missingWhere: false)".to_owned()),
        None => {}
    }
    if let Some(n) = rule.rows_over {
        parts.push(format!(
            "rowsOver {n}: applied before the statement runs, as if over"
        ));
    }
    if parts.is_empty() {
        parts.push(unconditional.to_owned());
    }
    let mut text = parts.join("; ");
    if let Some(message) = &rule.message {
        let _ = write!(text, " (message {message:?})");
    }
    terminal_safe(&text)
}

fn strategy(mask: &Mask) -> String {
    match mask.strategy {
        MaskStrategy::Redact => match &mask.replacement {
            Some(r) => format!("redact as {r:?}"),
            None => "redact as \"****\"".to_owned(),
        },
        MaskStrategy::Null => "null".to_owned(),
        MaskStrategy::Hash => "hash".to_owned(),
        MaskStrategy::Email => "email (keep the domain)".to_owned(),
        MaskStrategy::Partial => match (mask.keep_first, mask.keep_last) {
            (0, 0) => "partial (keeps nothing)".to_owned(),
            (first, 0) => format!("partial (keep first {first})"),
            (0, last) => format!("partial (keep last {last})"),
            (first, last) => format!("partial (keep first {first}, last {last})"),
        },
    }
}

fn weaker_note(weaker: &[Mask]) -> String {
    if weaker.is_empty() {
        return String::new();
    }
    let beaten: Vec<String> = weaker
        .iter()
        .map(|m| format!("{} of {}", strategy(m), m.source))
        .collect();
    format!("beats {}", beaten.join("; "))
}

fn masking_section(out: &mut String, effect: &Effect) {
    if effect.audit_only {
        return;
    }
    if effect.columns.is_empty() && effect.detectors.is_empty() {
        out.push_str("Masking: none.\n");
    }
    if !effect.columns.is_empty() {
        out.push_str(
            "Masking (the strongest strategy per column wins: null > redact > hash > email > partial):\n",
        );
        let mut rows = vec![vec![
            "COLUMNS".to_owned(),
            "STRATEGY".to_owned(),
            "RULE".to_owned(),
            String::new(),
        ]];
        rows.extend(effect.columns.iter().map(|c: &ColumnMask| {
            vec![
                terminal_safe(&c.pattern),
                terminal_safe(&strategy(&c.mask)),
                terminal_safe(&c.mask.source.to_string()),
                terminal_safe(&weaker_note(&c.weaker)),
            ]
        }));
        out.push_str(&table(&rows, "  "));
        if let Some(strongest) = &effect.strongest_column_mask {
            let _ = writeln!(
                out,
                "  Where several patterns match one column, the strongest of their strategies applies; a \
                 value whose source cannot be traced gets the strongest of all: {}.",
                terminal_safe(&strategy(strongest))
            );
        }
    }
    if !effect.detectors.is_empty() {
        out.push_str("Detectors (text values they recognise are masked):\n");
        let mut rows = vec![vec![
            "DETECTOR".to_owned(),
            "STRATEGY".to_owned(),
            "RULE".to_owned(),
            String::new(),
        ]];
        rows.extend(effect.detectors.iter().map(|d: &DetectorMask| {
            let name = match &d.pattern {
                Some(p) => format!("{} {p:?}", detector_name(d)),
                None => detector_name(d).to_owned(),
            };
            vec![
                terminal_safe(&name),
                terminal_safe(&strategy(&d.mask)),
                terminal_safe(&d.mask.source.to_string()),
                terminal_safe(&weaker_note(&d.weaker)),
            ]
        }));
        out.push_str(&table(&rows, "  "));
    }
    out.push('\n');
}

fn detector_name(d: &DetectorMask) -> &'static str {
    match d.detector {
        dbward_crds::Detector::CreditCard => "creditCard",
        dbward_crds::Detector::Email => "email",
        dbward_crds::Detector::Iban => "iban",
        dbward_crds::Detector::Ssn => "ssn",
        dbward_crds::Detector::Regex => "regex",
    }
}

fn limits_section(out: &mut String, effect: &Effect) {
    if effect.audit_only {
        return;
    }
    let l = &effect.limits;
    if l.max_rows.is_none() && l.max_bytes.is_none() && l.statement_timeout.is_none() {
        out.push_str("Limits: none.\n\n");
        return;
    }
    out.push_str("Limits (the smallest across policies):\n");
    let row = |name: &str, value: Option<(String, &str)>| match value {
        Some((v, policy)) => vec![name.to_owned(), v, terminal_safe(policy)],
        None => vec![name.to_owned(), "none".to_owned(), String::new()],
    };
    let rows = vec![
        row(
            "maxRows",
            l.max_rows
                .as_ref()
                .map(|m| (m.value.to_string(), m.policy.as_str())),
        ),
        row(
            "maxBytes",
            l.max_bytes
                .as_ref()
                .map(|m| (m.value.to_string(), m.policy.as_str())),
        ),
        row(
            "statementTimeout",
            l.statement_timeout
                .as_ref()
                .map(|m| (format_duration(m.value), m.policy.as_str())),
        ),
    ];
    out.push_str(&table(&rows, "  "));
    out.push('\n');
}

fn approval_section(out: &mut String, effect: &Effect) {
    if effect.audit_only || effect.approvals.is_empty() {
        return;
    }
    out.push_str("Approval (how requireApproval statements wait for a person):\n");
    let rows: Vec<Vec<String>> = effect
        .approvals
        .iter()
        .map(|a| {
            let how = match (a.mode, a.grant_window) {
                (ApprovalMode::Wait, _) => format!(
                    "mode wait: held on the connection up to {}",
                    format_duration(a.timeout)
                ),
                (ApprovalMode::Reject, None) => format!(
                    "mode reject: fails at once; request open {}, runs once when approved",
                    format_duration(a.timeout)
                ),
                (ApprovalMode::Reject, Some(w)) => format!(
                    "mode reject: fails at once; request open {}, re-runs allowed for {} after approval",
                    format_duration(a.timeout),
                    format_duration(w)
                ),
            };
            vec![
                terminal_safe(&a.policy),
                how,
                format!("rules {}", terminal_safe(&a.rules.join(", "))),
            ]
        })
        .collect();
    out.push_str(&table(&rows, "  "));
    if effect.approvals.len() > 1 {
        out.push_str(
            "  When rules of several policies hold one statement, the settings with the shortest timeout \
             (listed first) apply.\n",
        );
    }
}
