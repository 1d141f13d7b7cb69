//! Masking merge, limits, approval settings, time boundaries, messages and compile errors.

use std::{collections::BTreeSet, time::Duration};

use dbward_crds::{ApprovalMode, Detector, MaskStrategy};

use super::{K8S, NOON, at, caller, doc, fx, resolve, set, who};
use crate::policy::{PolicyError, PolicySet, Verdict};

const API_DBA: &str = "k8s-dba:shop/api";

/// (policies, caller, `schema.table.column`, expected (strategy, keepFirst, keepLast, source)).
type MaskCase = (
    &'static [&'static str],
    &'static str,
    &'static str,
    Option<(MaskStrategy, u32, u32, &'static str)>,
);
/// (policies, caller, maxRows, maxBytes, statementTimeout).
type LimitCase = (
    &'static [&'static str],
    &'static str,
    Option<u64>,
    Option<u64>,
    Option<Duration>,
);

#[test]
fn masking_strongest_strategy_wins() {
    let cases: &[MaskCase] = &[
        (
            &["api"],
            "ambient:shop/api",
            "public.customers.email",
            Some((MaskStrategy::Email, 0, 0, "shop/api#masking[0]")),
        ),
        (
            &["api"],
            "ambient:shop/api",
            "public.customers.ssn",
            Some((MaskStrategy::Partial, 0, 4, "shop/api#masking[1]")),
        ),
        (&["api"], "ambient:shop/api", "public.customers.name", None),
        (&["api"], "ambient:shop/api", "sales.customers.email", None),
        // redact (dba) beats email (api).
        (
            &["api", "dba"],
            API_DBA,
            "public.customers.email",
            Some((MaskStrategy::Redact, 0, 0, "shop/dba#masking[0]")),
        ),
        (
            &["dba", "api"],
            API_DBA,
            "public.customers.email",
            Some((MaskStrategy::Redact, 0, 0, "shop/dba#masking[0]")),
        ),
        // hash (unknown-ok, glob *.customers.ssn) beats partial (api).
        (
            &["api", "dba", "unknown-ok"],
            API_DBA,
            "public.customers.ssn",
            Some((MaskStrategy::Hash, 0, 0, "shop/unknown-ok#masking[2]")),
        ),
        (
            &["api", "dba", "unknown-ok"],
            API_DBA,
            "sales.customers.ssn",
            Some((MaskStrategy::Hash, 0, 0, "shop/unknown-ok#masking[2]")),
        ),
        // An audit policy's masking is not applied.
        (
            &["api", "audit-strict"],
            "ambient:shop/api",
            "public.customers.phone",
            None,
        ),
        // A policy that does not apply masks nothing.
        (&["dba"], "ambient:shop/api", "public.customers.email", None),
    ];
    for (policies, who, column, want) in cases {
        let p = caller(policies, who, "orders", NOON);
        let mut parts = column.splitn(3, '.');
        let (s, t, c) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let got = p.mask_for_column(s, t, c).map(|m| {
            let source = format!("{}#{}", m.source.policy, m.source.rule);
            (m.strategy, m.keep_first, m.keep_last, source)
        });
        let want = want.map(|(s, f, l, src)| (s, f, l, src.to_owned()));
        assert_eq!(got, want, "{policies:?} {who} {column}");
    }
}

#[test]
fn masking_partial_keeps_the_least() {
    let spec = r#"
connections: [orders]
subjects: [{serviceAccount: {name: api}}]
masking:
  - {columns: [public.t.c], strategy: partial, keepFirst: 2, keepLast: 2}
  - {columns: ["public.*.c"], strategy: partial, keepFirst: 1}
  - {columns: ["*.*.c"], strategy: partial, keepLast: 3}
"#;
    let set = PolicySet::new(vec![doc(Some("shop"), "p", spec)], BTreeSet::new()).unwrap();
    let p = set.for_caller("orders", &who("ambient:shop/api"), at(NOON));
    let m = p.mask_for_column("public", "t", "c").unwrap();
    assert_eq!(
        (m.strategy, m.keep_first, m.keep_last),
        (MaskStrategy::Partial, 1, 0)
    );
    assert_eq!(&*m.source.rule, "masking[1]");
    let m = p.mask_for_column("other", "t", "c").unwrap();
    assert_eq!((m.keep_first, m.keep_last), (0, 3));
}

#[test]
fn detectors_add_up_and_deduplicate() {
    let p = caller(&["api", "dba", "unknown-ok"], API_DBA, "orders", NOON);
    let got: Vec<_> = p
        .detectors()
        .iter()
        .map(|d| (d.detector, d.mask.strategy, d.mask.keep_first))
        .collect();
    // creditCard from dba (redact) and unknown-ok (hash): one entry, redact wins; email from unknown-ok.
    assert_eq!(
        got,
        [
            (Detector::CreditCard, MaskStrategy::Redact, 0),
            (Detector::Email, MaskStrategy::Partial, 1)
        ]
    );
    assert!(p.masks_anything());
    let plain = caller(&["analytics"], "ambient:shop/api", "analytics", NOON);
    assert!(!plain.masks_anything());
    assert!(plain.detectors().is_empty());
    assert!(
        caller(&["api"], "ambient:shop/api", "orders", NOON)
            .detectors()
            .is_empty()
    );
}

#[test]
fn limits_take_the_minimum() {
    let secs = |s| Some(Duration::from_secs(s));
    let cases: &[LimitCase] = &[
        (&["api"], "ambient:shop/api", Some(1000), None, secs(30)),
        (&["dba"], "alice", Some(500), Some(1_000_000), secs(60)),
        (&["api", "dba"], API_DBA, Some(500), Some(1_000_000), secs(30)),
        // Audit policies do not limit.
        (
            &["api", "audit-strict"],
            "ambient:shop/api",
            Some(1000),
            None,
            secs(30),
        ),
        (&["analytics"], "ambient:shop/api", None, None, None),
    ];
    for (policies, who, rows, bytes, timeout) in cases {
        let l = caller(policies, who, "orders", NOON).limits();
        assert_eq!(
            (l.max_rows, l.max_bytes, l.statement_timeout),
            (*rows, *bytes, *timeout),
            "{policies:?}"
        );
    }
}

#[test]
fn approval_settings_from_the_asking_policy() {
    let both = caller(&["api", "dba"], API_DBA, "orders", NOON);
    // Only api's rule asks: its settings (reject, 30m; grant window defaults to the timeout).
    let d = both.decide(&fx("update w:orders nowhere"), &resolve);
    assert_eq!(d.verdict, Verdict::RequireApproval);
    let a = d.approval.unwrap();
    assert_eq!(
        (&*a.policy, a.mode, a.timeout),
        ("shop/api", ApprovalMode::Reject, Duration::from_secs(1800))
    );
    assert_eq!(a.grant_window, Duration::from_secs(1800));
    // Both ask (api: update without where, dba: truncate): the shortest timeout (dba, 5m, wait).
    let d = both.decide(&fx("update truncate w:orders nowhere"), &resolve);
    let a = d.approval.unwrap();
    assert_eq!(
        (&*a.policy, a.mode, a.timeout),
        ("shop/dba", ApprovalMode::Wait, Duration::from_secs(300))
    );
    // No approval on allow or deny.
    assert_eq!(both.decide(&fx("select r:orders"), &resolve).approval, None);
    assert_eq!(
        both.decide(&fx("truncate select w:orders r:secret_x"), &resolve)
            .approval,
        None
    );
}

#[test]
fn next_change_tracks_time_windows() {
    let set = set(&["jit", "api"]);
    let debug = who("ambient:shop/debug");
    let cases = [
        ("2026-05-01T08:00:00Z", Some("2026-05-01T09:00:00Z")),
        ("2026-05-01T09:00:00Z", Some("2026-05-01T17:00:00Z")),
        ("2026-05-01T16:59:59Z", Some("2026-05-01T17:00:00Z")),
        ("2026-05-01T17:00:00Z", None),
    ];
    for (now, want) in cases {
        let p = set.for_caller("orders", &debug, at(now));
        assert_eq!(p.next_change(at(now)), want.map(at), "caller at {now}");
        assert_eq!(set.next_change(at(now)), want.map(at), "set at {now}");
    }
    // A caller no time-boxed policy names has no boundary.
    let api = set.for_caller("orders", &who("ambient:shop/api"), at(NOON));
    assert_eq!(api.next_change(at("2026-05-01T08:00:00Z")), None);
}

#[test]
fn messages() {
    let api = caller(&["api"], "ambient:shop/api", "orders", NOON);
    let cases = [
        ("select r:public.secret_x", "secrets are off limits"),
        (
            "select r:billing.payments",
            "dbward: no AccessPolicy rule allows select on billing.payments for this caller",
        ),
        ("ddl", "dbward: no AccessPolicy rule allows ddl for this caller"),
        (
            "delete w:orders nowhere",
            "dbward: delete on public.orders requires approval (rule \"wide-write\" of AccessPolicy \"shop/api\")",
        ),
        ("select r:orders", ""),
    ];
    for (effects, want) in cases {
        assert_eq!(api.decide(&fx(effects), &resolve).message, want, "{effects}");
    }
    let dba = caller(&["dba"], "alice", "orders", NOON);
    assert_eq!(
        dba.decide(&fx("ddl w:public.audit_x"), &resolve).message,
        "dbward: ddl on public.audit_x is denied by rule \"protect-audit\" of AccessPolicy \"shop/dba\""
    );
    let none = caller(&["api"], "ambient:shop/other", "orders", NOON);
    assert!(!none.has_access());
    assert_eq!(
        none.decide(&fx("select r:orders"), &resolve).message,
        "dbward: no AccessPolicy grants this caller access to connection \"orders\""
    );
}

#[test]
fn caller_policy_reports_what_applies() {
    let p = caller(
        &["api", "audit-strict", "dba"],
        "ambient:shop/api",
        "orders",
        NOON,
    );
    assert_eq!(
        p.policy_names().collect::<Vec<_>>(),
        ["shop/api", "shop/audit-strict"]
    );
    assert!(p.has_access() && !p.audit_only());
    assert_eq!(p.connection(), "orders");
    let shadow = caller(&["shadow"], "ambient:shop/shadow", "orders", NOON);
    assert!(shadow.audit_only());
    assert!(!shadow.masks_anything());
    let s = set(&["api", "dba"]);
    assert_eq!((s.len(), s.is_empty()), (2, false));
}

#[test]
fn invalid_policies_are_refused_naming_the_field() {
    let bad = r#"
connections: [orders]
subjects: [{group: dba}]
rules: [{action: allow, operations: [select], tables: ["a..b"]}]
limits: {statementTimeout: "30"}
"#;
    let good = r#"
connections: [orders]
subjects: [{group: dba}]
rules: [{action: allow, operations: [select]}]
"#;
    let docs = vec![
        doc(Some("shop"), "bad", bad),
        doc(Some("shop"), "good", good),
        doc(Some("shop"), "good", good),
    ];
    let errors = PolicySet::new(docs, BTreeSet::from([K8S.to_owned()])).unwrap_err();
    let fields: Vec<_> = errors
        .iter()
        .map(|e| match e {
            PolicyError::Invalid { policy, field, .. } => format!("{policy} {field}"),
            PolicyError::Duplicate { policy } => format!("{policy} duplicate"),
        })
        .collect();
    assert_eq!(
        fields,
        [
            "shop/bad spec.rules[0].tables[0]",
            "shop/bad spec.limits.statementTimeout",
            "shop/good duplicate"
        ]
    );
    assert!(
        errors[0]
            .to_string()
            .starts_with("AccessPolicy \"shop/bad\": spec.rules[0].tables[0]: "),
        "{}",
        errors[0]
    );
}
