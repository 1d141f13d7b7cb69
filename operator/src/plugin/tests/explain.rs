//! `explain`: subjects, activity windows, validity, the per-operation combination, masking, limits and
//! approval settings, and the two "no access" answers.

use std::time::Duration;

use dbward_crds::{AccessPolicy, ApprovalMode, MaskStrategy, Operation, Subject};

use super::{at, policy};
use crate::plugin::{
    effect::{Mask, RuleRef, Verdict},
    explain::{Activity, Explanation, Query, ServiceAccount, SubjectMatch, explain, match_subject},
    report::render,
};

const NOW: &str = "2026-05-01T12:00:00Z";

fn sa(namespace: &str, name: &str) -> ServiceAccount {
    ServiceAccount {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

fn run_with(caller: &ServiceAccount, uid: Option<u32>, policies: &[AccessPolicy]) -> Explanation {
    let existing = ["orders".to_owned(), "analytics".to_owned()];
    explain(&Query {
        caller,
        uid,
        namespace: "shop",
        connection: "orders",
        existing_connections: &existing,
        policies,
        now: at(NOW),
    })
}

fn run(policies: &[AccessPolicy]) -> Explanation {
    run_with(&sa("shop", "api"), None, policies)
}

/// The verdict and deciding rule (`policy/rule`, or `-` for "no rule allows it") for `op`.
fn decision(x: &Explanation, op: Operation) -> (Verdict, String) {
    let effect = x.effect.as_ref().expect("an effect");
    let op = effect.operations.iter().find(|o| o.operation == op).unwrap();
    let rule = op
        .decided_by
        .as_ref()
        .map_or_else(|| "-".to_owned(), |r| r.rule.to_string());
    (op.verdict, rule)
}

#[test]
fn service_account_arguments() {
    // (argument, namespace and name; None: refused)
    let cases: &[(&str, Option<(&str, &str)>)] = &[
        ("shop/api", Some(("shop", "api"))),
        ("system:serviceaccount:shop:api", Some(("shop", "api"))),
        ("api", Some(("ctx", "api"))),
        ("shop/", None),
        ("/api", None),
        ("Shop/api", None),
        ("system:serviceaccount:shop", None),
        ("a/b/c", None),
    ];
    for (arg, want) in cases {
        let got = ServiceAccount::parse(arg, "ctx");
        match want {
            Some((ns, name)) => assert_eq!(got, Ok(sa(ns, name)), "{arg}"),
            None => assert!(got.is_err(), "{arg}: {got:?}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Caller,
    Token,
    Other,
}

#[test]
fn subjects_match_like_the_sidecar() {
    use Want::{Caller, Other, Token};
    // (subject, policy namespace, caller's namespace (name api), expected)
    let cases: &[(&str, Option<&str>, &str, Want)] = &[
        ("{serviceAccount: {name: api}}", Some("shop"), "shop", Caller),
        ("{serviceAccount: {name: api}}", Some("other"), "shop", Other),
        (
            "{serviceAccount: {name: api, namespace: shop}}",
            Some("other"),
            "shop",
            Caller,
        ),
        (
            "{serviceAccount: {name: api, namespace: other}}",
            Some("shop"),
            "shop",
            Other,
        ),
        ("{serviceAccount: {name: web}}", Some("shop"), "shop", Other),
        // No namespace anywhere (a local file): any namespace, as in the sidecar.
        ("{serviceAccount: {name: api}}", None, "elsewhere", Caller),
        ("{group: 'system:serviceaccounts'}", Some("shop"), "shop", Caller),
        ("{group: 'system:serviceaccounts'}", Some("shop"), "other", Caller),
        (
            "{group: 'system:serviceaccounts:shop'}",
            Some("shop"),
            "shop",
            Caller,
        ),
        (
            "{group: 'system:serviceaccounts:shop'}",
            Some("shop"),
            "other",
            Other,
        ),
        (
            "{group: 'system:serviceaccounts:other'}",
            Some("shop"),
            "shop",
            Other,
        ),
        ("{group: dba}", Some("shop"), "shop", Other),
        (
            "{oidc: {issuer: 'https://id.example.com', claim: email, values: [a@example.com]}}",
            Some("shop"),
            "shop",
            Token,
        ),
        ("{}", Some("shop"), "shop", Other),
    ];
    for (subject, ns, caller_ns, want) in cases {
        let subject: Subject = serde_saphyr::from_str(subject).unwrap();
        let got = match match_subject(&subject, *ns, &sa(caller_ns, "api")) {
            SubjectMatch::Caller(_) => Caller,
            SubjectMatch::Token(_) => Token,
            SubjectMatch::Other => Other,
        };
        assert_eq!(got, *want, "{subject:?} in {ns:?} for {caller_ns}/api");
    }
}

#[test]
fn which_policies_apply() {
    let policies = [
        policy(
            "shop",
            "by-name",
            "{connections: [orders], subjects: [{serviceAccount: {name: api}}], rules: [{action: allow, operations: [select]}]}",
        ),
        policy(
            "shop",
            "by-group",
            "{connections: [orders, analytics], subjects: [{group: 'system:serviceaccounts:shop'}], rules: [{action: allow, operations: [insert]}]}",
        ),
        policy(
            "shop",
            "other-connection",
            "{connections: [analytics], subjects: [{serviceAccount: {name: api}}], rules: [{action: allow, operations: [delete]}]}",
        ),
        policy(
            "shop",
            "other-subject",
            "{connections: [orders], subjects: [{serviceAccount: {name: batch}}], rules: [{action: allow, operations: [delete]}]}",
        ),
        policy(
            "shop",
            "humans",
            "{connections: [orders], subjects: [{oidc: {issuer: 'https://id.example.com', claim: email, values: [a@example.com]}}], rules: [{action: allow, operations: [update]}]}",
        ),
        policy(
            "shop",
            "invalid",
            "{connections: [orders], subjects: [{serviceAccount: {name: api}}], rules: [{action: allow, operations: [truncate], tables: ['a b']}]}",
        ),
        policy(
            "shop",
            "agent-uid",
            "{connections: [orders], subjects: [{serviceAccount: {name: api}, uids: [1000]}], rules: [{action: allow, operations: [merge]}]}",
        ),
    ];
    let x = run(&policies);
    let names: Vec<(&str, bool)> = x.policies.iter().map(|p| (p.id.as_str(), p.applies())).collect();
    assert_eq!(
        names,
        [
            ("shop/agent-uid", false),
            ("shop/by-group", true),
            ("shop/by-name", true),
            ("shop/invalid", false),
        ]
    );
    assert_eq!(x.policies[0].uid_narrowed.len(), 1);
    assert_eq!(
        x.policies[1].matched_by,
        ["subjects[0]: group system:serviceaccounts:shop"]
    );
    assert!(
        x.policies[3].errors[0]
            .field
            .starts_with("spec.rules[0].tables[0]")
    );
    let tokens: Vec<&str> = x.token_policies.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(tokens, ["shop/humans"]);
    assert_eq!(x.other_policies, ["shop/other-subject"]);

    assert_eq!(decision(&x, Operation::Select).0, Verdict::Allow);
    assert_eq!(decision(&x, Operation::Insert).0, Verdict::Allow);
    for op in [
        Operation::Delete,
        Operation::Update,
        Operation::Truncate,
        Operation::Merge,
    ] {
        assert_eq!(decision(&x, op), (Verdict::Deny, "-".to_owned()), "{op}");
    }

    // The uid narrows: with --uid 1000 the policy applies, with another uid it does not.
    let with_uid = run_with(&sa("shop", "api"), Some(1000), &policies);
    assert!(with_uid.policies[0].applies());
    assert_eq!(decision(&with_uid, Operation::Merge).0, Verdict::Allow);
    let other_uid = run_with(&sa("shop", "api"), Some(1001), &policies);
    assert!(!other_uid.policies[0].applies());

    let text = render(&x, at(NOW));
    assert!(text.contains("only for uid 1000 (see --uid)"), "{text}");
    assert!(text.contains("may apply to callers presenting tokens"), "{text}");
    assert!(text.contains("invalid: ignored"), "{text}");
}

#[test]
fn activity_windows() {
    // (notBefore, validUntil, expected activity at NOW)
    let cases: &[(Option<&str>, Option<&str>, Activity)] = &[
        (None, None, Activity::Active { until: None }),
        (
            Some("2026-05-01T12:00:00Z"),
            None,
            Activity::Active { until: None },
        ),
        (
            Some("2026-05-01T11:00:00Z"),
            Some("2026-05-01T13:00:00Z"),
            Activity::Active {
                until: Some("2026-05-01T13:00:00Z".into()),
            },
        ),
        (
            Some("2026-05-01T12:00:01Z"),
            None,
            Activity::NotYet {
                from: "2026-05-01T12:00:01Z".into(),
            },
        ),
        (
            None,
            Some("2026-05-01T12:00:00Z"),
            Activity::Ended {
                at: "2026-05-01T12:00:00Z".into(),
            },
        ),
        (
            Some("2026-05-01T14:00:00+02:00"),
            None,
            Activity::Active { until: None },
        ),
        (Some("tomorrow"), None, Activity::Unreadable),
    ];
    for (from, until, want) in cases {
        let mut spec = String::from(
            "{connections: [orders], subjects: [{serviceAccount: {name: api}}], rules: [{action: allow, operations: [select]}]",
        );
        if let Some(t) = from {
            spec.push_str(&format!(", notBefore: '{t}'"));
        }
        if let Some(t) = until {
            spec.push_str(&format!(", validUntil: '{t}'"));
        }
        spec.push('}');
        let p = policy("shop", "jit", &spec);
        let got = Activity::of(&p.spec, at(NOW));
        assert_eq!(&got, want, "{from:?}..{until:?}");
        assert_eq!(got.is_active(), p.spec.active_at(at(NOW)), "{from:?}..{until:?}");
        let x = run(&[p]);
        assert_eq!(x.effect.is_some(), want.is_active(), "{from:?}..{until:?}");
    }
}

#[test]
fn deny_beats_require_approval_beats_allow() {
    let policies = [
        policy(
            "shop",
            "a",
            r#"
connections: [orders]
subjects: [{serviceAccount: {name: api}}]
rules:
  - {name: read, action: allow, operations: [select, insert, update, delete]}
  - {name: hold-writes, action: requireApproval, operations: [insert, update]}
"#,
        ),
        policy(
            "shop",
            "b",
            r#"
connections: [orders]
subjects: [{group: 'system:serviceaccounts'}]
rules:
  - {action: deny, operations: [update], message: no updates}
  - {action: allow, operations: [delete]}
  - {action: requireApproval, operations: [delete]}
"#,
        ),
    ];
    let x = run(&policies);
    // (operation, verdict, deciding rule)
    let cases: &[(Operation, Verdict, &str)] = &[
        (Operation::Select, Verdict::Allow, "shop/a/read"),
        (Operation::Insert, Verdict::RequireApproval, "shop/a/hold-writes"),
        (Operation::Update, Verdict::Deny, "shop/b/rules[0]"),
        (Operation::Delete, Verdict::RequireApproval, "shop/b/rules[2]"),
        (Operation::Ddl, Verdict::Deny, "-"),
        (Operation::Unknown, Verdict::Deny, "-"),
    ];
    for (op, verdict, rule) in cases {
        assert_eq!(decision(&x, *op), (*verdict, (*rule).to_owned()), "{op}");
    }
    let effect = x.effect.as_ref().unwrap();
    assert_eq!(effect.operations.len(), Operation::ALL.len());
    let text = render(&x, at(NOW));
    assert!(
        text.contains(
            "Denied, as no rule allows them: merge, copyIn, copyOut, ddl, truncate, grant, role, call, do, \
             set, transaction, utility, unknown."
        ),
        "{text}"
    );
    assert!(text.contains("message \"no updates\""), "{text}");
}

#[test]
fn narrowed_and_inert_rules() {
    let policies = [policy(
        "shop",
        "p",
        r#"
connections: [orders]
subjects: [{serviceAccount: {name: api}}]
rules:
  - {name: read-all, action: allow, operations: [select, utility]}
  - {name: no-secrets, action: deny, operations: [select], tables: [secrets, 'audit.*']}
  - {name: orders-too, action: allow, operations: [select], tables: [orders]}
  - {name: writes, action: allow, operations: [update, delete, insert], tables: [orders]}
  - {name: blind, action: requireApproval, operations: [update, delete, select], when: {missingWhere: true}}
  - {name: big, action: allow, operations: [select], when: {rowsOver: 1000}}
  - {name: big-deny, action: deny, operations: [copyOut], when: {rowsOver: 1000}}
  - {name: vacuum-orders, action: deny, operations: [utility], tables: [orders]}
"#,
    )];
    let x = run(&policies);
    let ops = &x.effect.as_ref().unwrap().operations;
    let op = |o: Operation| ops.iter().find(|e| e.operation == o).unwrap();
    let rule = |name: &str| RuleRef {
        policy: "shop/p".into(),
        rule: name.into(),
    };

    let select = op(Operation::Select);
    assert_eq!(select.verdict, Verdict::Allow);
    let narrowed: Vec<(String, Verdict, bool)> = select
        .narrowed
        .iter()
        .map(|(r, shadowed)| (r.rule.rule.clone(), r.verdict, *shadowed))
        .collect();
    // Strictest first; an allow narrowed under an allow of the whole operation changes nothing.
    assert_eq!(
        narrowed,
        [
            ("no-secrets".to_owned(), Verdict::Deny, false),
            ("orders-too".to_owned(), Verdict::Allow, true),
        ]
    );
    let inert: Vec<&RuleRef> = select.inert.iter().map(|i| &i.rule).collect();
    assert_eq!(inert, [&rule("blind"), &rule("big")]);

    let update = op(Operation::Update);
    assert_eq!(
        (update.verdict, update.decided_by.is_none()),
        (Verdict::Deny, true)
    );
    let narrowed: Vec<(String, bool)> = update
        .narrowed
        .iter()
        .map(|(r, shadowed)| (r.rule.rule.clone(), *shadowed))
        .collect();
    assert_eq!(
        narrowed,
        [("blind".to_owned(), false), ("writes".to_owned(), false)]
    );

    // rowsOver on a deny fails closed: it covers every copyOut.
    let copy_out = op(Operation::CopyOut);
    assert_eq!(copy_out.verdict, Verdict::Deny);
    assert_eq!(copy_out.decided_by.as_ref().unwrap().rule, rule("big-deny"));

    // utility touches no tables: a rule with tables never matches it.
    let utility = op(Operation::Utility);
    assert_eq!(utility.verdict, Verdict::Allow);
    assert_eq!(utility.inert[0].rule, rule("vacuum-orders"));
    assert!(utility.inert[0].reason.contains("touch no tables"));

    let text = render(&x, at(NOW));
    assert!(text.contains("tables secrets, audit.*"), "{text}");
    assert!(
        text.contains("no effect: allow by shop/p/read-all wins"),
        "{text}"
    );
    assert!(text.contains("without WHERE (missingWhere)"), "{text}");
}

fn mask(strategy: MaskStrategy, first: u32, last: u32) -> Mask {
    Mask {
        strategy,
        replacement: None,
        keep_first: first,
        keep_last: last,
        source: RuleRef {
            policy: "p".into(),
            rule: "masking[0]".into(),
        },
    }
}

#[test]
fn mask_strength_order() {
    use MaskStrategy::*;
    // (a, b, a stronger than b)
    let cases = [
        (mask(Null, 0, 0), mask(Redact, 0, 0), true),
        (mask(Redact, 0, 0), mask(Hash, 0, 0), true),
        (mask(Hash, 0, 0), mask(Email, 0, 0), true),
        (mask(Email, 0, 0), mask(Partial, 0, 1), true),
        (mask(Partial, 2, 0), mask(Null, 0, 0), false),
        (mask(Partial, 1, 1), mask(Partial, 0, 4), true),
        (mask(Partial, 0, 4), mask(Partial, 1, 1), false),
        (mask(Partial, 2, 2), mask(Partial, 0, 4), false),
        (mask(Hash, 0, 0), mask(Hash, 0, 0), false),
    ];
    for (a, b, want) in cases {
        assert_eq!(a.stronger_than(&b), want, "{a:?} vs {b:?}");
    }
}

#[test]
fn strongest_mask_wins_per_column_and_detector() {
    let policies = [
        policy(
            "shop",
            "a",
            r#"
connections: [orders]
subjects: [{serviceAccount: {name: api}}]
masking:
  - {columns: [public.customers.email, '*.*.ssn'], strategy: partial, keepFirst: 2}
  - {detector: creditCard, strategy: partial, keepLast: 4}
  - {columns: [public.customers.phone], strategy: hash}
"#,
        ),
        policy(
            "shop",
            "b",
            r#"
connections: [orders]
subjects: [{serviceAccount: {name: api}}]
masking:
  - {columns: [public.customers.email], strategy: email}
  - {columns: ['*.*.ssn'], strategy: "null"}
  - {detector: creditCard, strategy: redact, replacement: "[card]"}
  - {detector: regex, pattern: 'K-[0-9]+', strategy: hash}
  - {columns: [public.customers.phone], strategy: hash}
"#,
        ),
    ];
    let x = run(&policies);
    let effect = x.effect.as_ref().unwrap();
    let columns: Vec<(&str, MaskStrategy, String, usize)> = effect
        .columns
        .iter()
        .map(|c| {
            (
                c.pattern.as_str(),
                c.mask.strategy,
                c.mask.source.to_string(),
                c.weaker.len(),
            )
        })
        .collect();
    assert_eq!(
        columns,
        [
            (
                "public.customers.email",
                MaskStrategy::Email,
                "shop/b/masking[0]".into(),
                1
            ),
            ("*.*.ssn", MaskStrategy::Null, "shop/b/masking[1]".into(), 1),
            // A tie keeps the earlier rule.
            (
                "public.customers.phone",
                MaskStrategy::Hash,
                "shop/a/masking[2]".into(),
                1
            ),
        ]
    );
    assert_eq!(
        effect.strongest_column_mask.as_ref().unwrap().strategy,
        MaskStrategy::Null
    );
    let detectors: Vec<(MaskStrategy, Option<&str>)> = effect
        .detectors
        .iter()
        .map(|d| (d.mask.strategy, d.pattern.as_deref()))
        .collect();
    assert_eq!(
        detectors,
        [
            (MaskStrategy::Redact, None),
            (MaskStrategy::Hash, Some("K-[0-9]+"))
        ]
    );
    // No rule allows anything: masking still shows, every operation is denied.
    assert_eq!(decision(&x, Operation::Select), (Verdict::Deny, "-".to_owned()));
    let text = render(&x, at(NOW));
    assert!(text.contains("redact as \"[card]\""), "{text}");
    assert!(
        text.contains("Every statement is refused: no rule allows any operation."),
        "{text}"
    );
    assert!(
        text.contains("beats partial (keep first 2) of shop/a/masking[0]"),
        "{text}"
    );
}

#[test]
fn limits_take_the_minimum() {
    let p = |name: &str, limits: &str| {
        policy(
            "shop",
            name,
            &format!(
                "{{connections: [orders], subjects: [{{serviceAccount: {{name: api}}}}], limits: {limits}}}"
            ),
        )
    };
    let policies = [
        p("a", "{maxRows: 1000, statementTimeout: 1m}"),
        p("b", "{maxRows: 50, maxBytes: 1000000}"),
        p("c", "{maxRows: 50, statementTimeout: 30s}"),
    ];
    let x = run(&policies);
    let l = &x.effect.as_ref().unwrap().limits;
    let rows = l.max_rows.as_ref().unwrap();
    assert_eq!((rows.value, rows.policy.as_str()), (50, "shop/b"));
    let bytes = l.max_bytes.as_ref().unwrap();
    assert_eq!((bytes.value, bytes.policy.as_str()), (1_000_000, "shop/b"));
    let timeout = l.statement_timeout.as_ref().unwrap();
    assert_eq!(
        (timeout.value, timeout.policy.as_str()),
        (Duration::from_secs(30), "shop/c")
    );
    let text = render(&x, at(NOW));
    assert!(text.contains("statementTimeout   30s"), "{text}");
}

#[test]
fn approval_settings_shortest_timeout_first() {
    let p = |name: &str, approval: &str| {
        policy(
            "shop",
            name,
            &format!(
                "{{connections: [orders], subjects: [{{serviceAccount: {{name: api}}}}], \
                 rules: [{{action: requireApproval, operations: [delete]}}], approval: {approval}}}"
            ),
        )
    };
    let policies = [
        p("a", "{mode: wait, timeout: 1h}"),
        p("b", "{mode: reject, timeout: 5m}"),
        p("c", "{mode: reject, timeout: 5m, grantWindow: 1m}"),
    ];
    let x = run(&policies);
    let approvals: Vec<(&str, ApprovalMode, u64, Option<u64>)> = x
        .effect
        .as_ref()
        .unwrap()
        .approvals
        .iter()
        .map(|a| {
            (
                a.policy.as_str(),
                a.mode,
                a.timeout.as_secs(),
                a.grant_window.map(|w| w.as_secs()),
            )
        })
        .collect();
    assert_eq!(
        approvals,
        [
            ("shop/b", ApprovalMode::Reject, 300, None),
            ("shop/c", ApprovalMode::Reject, 300, Some(60)),
            ("shop/a", ApprovalMode::Wait, 3600, None),
        ]
    );
    let text = render(&x, at(NOW));
    assert!(text.contains("runs once when approved"), "{text}");
}

#[test]
fn audit_policies() {
    let audit = policy(
        "shop",
        "shadow",
        "{connections: [orders], subjects: [{serviceAccount: {name: api}}], enforcement: audit, \
         rules: [{action: deny, operations: [select]}], masking: [{columns: [a.b.c], strategy: 'null'}]}",
    );
    let enforce = policy(
        "shop",
        "main",
        "{connections: [orders], subjects: [{serviceAccount: {name: api}}], \
         rules: [{action: allow, operations: [select, insert]}]}",
    );

    // Only audit: its decisions, recorded; no masking.
    let x = run(std::slice::from_ref(&audit));
    let effect = x.effect.as_ref().unwrap();
    assert!(effect.audit_only);
    assert!(effect.columns.is_empty());
    assert_eq!(decision(&x, Operation::Select).0, Verdict::Deny);
    assert!(render(&x, at(NOW)).contains("Only audit policies apply"));

    // With an enforce policy: it decides; the audit one is what would change.
    let x = run(&[audit, enforce]);
    let effect = x.effect.as_ref().unwrap();
    assert!(!effect.audit_only);
    assert!(effect.columns.is_empty());
    assert_eq!(decision(&x, Operation::Select).0, Verdict::Allow);
    let with_audit = effect.with_audit.as_ref().unwrap();
    assert_eq!(with_audit[0].verdict, Verdict::Deny);
    assert_eq!(with_audit[1], effect.operations[1]);
    let text = render(&x, at(NOW));
    assert!(
        text.contains("With them enforced these operations would read"),
        "{text}"
    );
}

#[test]
fn unknown_connection() {
    let policies = [policy(
        "shop",
        "p",
        "{connections: [ordrs], subjects: [{serviceAccount: {name: api}}], rules: [{action: allow, operations: [select]}]}",
    )];
    let existing = ["orders".to_owned(), "analytics".to_owned()];
    let caller = sa("shop", "api");
    let x = explain(&Query {
        caller: &caller,
        uid: None,
        namespace: "shop",
        connection: "ordrs",
        existing_connections: &existing,
        policies: &policies,
        now: at(NOW),
    });
    assert!(!x.connection_exists);
    assert!(x.no_access());
    assert_eq!(x.existing_connections, ["analytics", "orders"]);
    let text = render(&x, at(NOW));
    assert!(
        text.contains(
            "DatabaseConnection \"ordrs\" does not exist in namespace shop (existing: analytics, orders)"
        ),
        "{text}"
    );
    assert!(text.contains("Effect: no access: every statement is refused (the connection does not exist)"));
}

#[test]
fn nothing_applies() {
    let cases: &[&[AccessPolicy]] = &[
        &[],
        &[policy(
            "shop",
            "other",
            "{connections: [orders], subjects: [{serviceAccount: {name: web}}], rules: [{action: allow, operations: [select]}]}",
        )],
        &[policy(
            "shop",
            "expired",
            "{connections: [orders], subjects: [{serviceAccount: {name: api}}], validUntil: '2026-01-01T00:00:00Z', rules: [{action: allow, operations: [select]}]}",
        )],
    ];
    for policies in cases {
        let x = run(policies);
        assert!(x.connection_exists);
        assert!(x.effect.is_none() && x.no_access(), "{policies:?}");
        let text = render(&x, at(NOW));
        assert!(
            text.contains("Effect: no access: every statement is refused. No AccessPolicy grants shop/api"),
            "{text}"
        );
    }
}

#[test]
fn another_namespace_is_explained_as_a_token_caller() {
    let policies = [policy(
        "analytics",
        "p",
        "{connections: [orders], subjects: [{serviceAccount: {name: api, namespace: shop}}], rules: [{action: allow, operations: [select]}]}",
    )];
    let existing = ["orders".to_owned()];
    let caller = sa("shop", "api");
    let x = explain(&Query {
        caller: &caller,
        uid: None,
        namespace: "analytics",
        connection: "orders",
        existing_connections: &existing,
        policies: &policies,
        now: at(NOW),
    });
    assert_eq!(decision(&x, Operation::Select).0, Verdict::Allow);
    assert!(render(&x, at(NOW)).contains("presenting its service-account token"));
}

#[test]
fn object_text_cannot_drive_the_terminal() {
    let policies = [policy(
        "shop",
        "p",
        "{connections: [orders], subjects: [{serviceAccount: {name: api}}], rules: [{action: deny, operations: [select], message: \"\\e[2Jok\"}]}",
    )];
    let text = render(&run(&policies), at(NOW));
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(
        text.contains("\\\\u{1b}[2Jok") || text.contains("\\u{1b}[2Jok"),
        "{text}"
    );
}
