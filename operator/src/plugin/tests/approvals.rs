//! `pending`, `approve` and `deny`: which requests are pending, the table, the checks before a decision,
//! the patch, and the messages.

use dbward_crds::{ApprovalPhase, ApprovalRequest, ApprovalRequestSpec, ApprovalRequestStatus, Requester};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::at;
use crate::plugin::approvals::{
    Decision, check_decidable, is_pending, list_document, not_found, outcome, pending, pending_table,
    status_patch,
};

const NOW: &str = "2026-05-01T12:00:00Z";

fn request(
    namespace: &str,
    name: &str,
    created: &str,
    expires: &str,
    status: Option<ApprovalRequestStatus>,
) -> ApprovalRequest {
    let mut req = ApprovalRequest::new(
        name,
        ApprovalRequestSpec {
            connection: "orders".into(),
            requester: Requester {
                service_account: Some(format!("{namespace}/agent")),
                pod: Some("agent-7d9f".into()),
                subject: format!("system:serviceaccount:{namespace}:agent"),
                uid: Some(1000),
            },
            statement: "DELETE FROM orders\nWHERE created < now() - interval '1 year'".into(),
            fingerprint: "f00d".into(),
            rule: format!("{namespace}/agents/hold-deletes"),
            expires_at: expires.into(),
        },
    );
    req.metadata.namespace = Some(namespace.into());
    req.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
    req.status = status;
    req
}

fn status(phase: ApprovalPhase, by: Option<&str>) -> Option<ApprovalRequestStatus> {
    Some(ApprovalRequestStatus {
        phase,
        decided_by: by.map(str::to_owned),
        decided_at: by.map(|_| "2026-05-01T11:00:00Z".to_owned()),
        reason: None,
    })
}

#[test]
fn which_requests_are_pending() {
    let created = "2026-05-01T11:50:00Z";
    // (expiresAt, status, pending at NOW)
    let cases: &[(&str, Option<ApprovalRequestStatus>, bool)] = &[
        ("2026-05-01T12:10:00Z", None, true),
        ("2026-05-01T12:10:00Z", status(ApprovalPhase::Pending, None), true),
        ("2026-05-01T12:00:00Z", None, false),
        (
            "2026-05-01T11:59:00Z",
            status(ApprovalPhase::Pending, None),
            false,
        ),
        (
            "2026-05-01T12:10:00Z",
            status(ApprovalPhase::Approved, Some("alice")),
            false,
        ),
        (
            "2026-05-01T12:10:00Z",
            status(ApprovalPhase::Denied, Some("bob")),
            false,
        ),
        (
            "2026-05-01T12:10:00Z",
            status(ApprovalPhase::Expired, None),
            false,
        ),
        ("not a time", None, true),
    ];
    for (expires, st, want) in cases {
        let req = request("shop", "r", created, expires, st.clone());
        assert_eq!(is_pending(&req, at(NOW)), *want, "{expires} {st:?}");
    }
}

#[test]
fn pending_sorted_and_tabled() {
    let all = [
        request(
            "shop",
            "newer",
            "2026-05-01T11:59:00Z",
            "2026-05-01T12:09:00Z",
            None,
        ),
        request(
            "shop",
            "older",
            "2026-05-01T11:00:00Z",
            "2026-05-01T14:00:00Z",
            None,
        ),
        request(
            "analytics",
            "x",
            "2026-05-01T11:58:00Z",
            "2026-05-01T12:08:00Z",
            None,
        ),
        request(
            "shop",
            "done",
            "2026-05-01T11:00:00Z",
            "2026-05-01T14:00:00Z",
            status(ApprovalPhase::Approved, Some("a")),
        ),
    ];
    let now = at(NOW);
    let p = pending(&all, now);
    let names: Vec<String> = p.iter().map(|r| r.metadata.name.clone().unwrap()).collect();
    assert_eq!(names, ["x", "older", "newer"]);

    let table = pending_table(&p, true, false, now);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4);
    for column in [
        "NAME",
        "NAMESPACE",
        "CONNECTION",
        "REQUESTER",
        "RULE",
        "AGE",
        "EXPIRES IN",
        "STATEMENT",
    ] {
        assert!(lines[0].contains(column), "{}", lines[0]);
    }
    assert!(lines[2].starts_with("older   shop "), "{}", lines[2]);
    assert!(lines[2].contains("system:serviceaccount:shop:agent (pod agent-7d9f)"));
    assert!(lines[2].contains(" 60m "), "age: {}", lines[2]);
    assert!(lines[2].contains(" 120m "), "expires in: {}", lines[2]);
    // First line only, marked as cut because more follows.
    assert!(lines[2].ends_with("DELETE FROM orders..."), "{}", lines[2]);

    let narrow = pending_table(&p, false, false, now);
    assert!(!narrow.lines().next().unwrap().contains("NAMESPACE"));
    let wide = pending_table(&p, false, true, now);
    assert!(
        wide.contains("DELETE FROM orders WHERE created < now() - interval '1 year'"),
        "{wide}"
    );

    let doc = list_document(&p).unwrap();
    assert_eq!(doc["kind"], "List");
    assert_eq!(doc["items"].as_array().unwrap().len(), 3);
    assert_eq!(doc["items"][0]["kind"], "ApprovalRequest");
}

#[test]
fn long_and_hostile_statements() {
    let mut req = request("shop", "r", "2026-05-01T11:59:00Z", "2026-05-01T12:09:00Z", None);
    req.spec.statement = format!("SELECT '{}' \u{1b}[2J", "x".repeat(100));
    req.spec.requester.subject = "evil\u{202e}gnp.exe".into();
    let table = pending_table(&[&req], false, false, at(NOW));
    let row = table.lines().nth(1).unwrap();
    assert!(!row.contains('\u{1b}') && !row.contains('\u{202e}'), "{row}");
    assert!(row.contains("evil\\u{202e}gnp.exe"), "{row}");
    let statement = row.rsplit("   ").next().unwrap();
    assert_eq!(statement.chars().count(), 60, "{statement}");
    assert!(statement.ends_with("..."));
}

#[test]
fn decidable_or_not() {
    let now = at(NOW);
    let expires = "2026-05-01T12:10:00Z";
    let created = "2026-05-01T11:50:00Z";
    // (status, expiresAt, Ok or a piece of the refusal)
    let cases: &[(Option<ApprovalRequestStatus>, &str, Result<(), &str>)] = &[
        (None, expires, Ok(())),
        (status(ApprovalPhase::Pending, None), expires, Ok(())),
        (
            status(ApprovalPhase::Approved, Some("alice@example.com")),
            expires,
            Err("\"r\" is already Approved by alice@example.com at 2026-05-01T11:00:00Z"),
        ),
        (
            status(ApprovalPhase::Denied, Some("bob")),
            expires,
            Err("already Denied by bob"),
        ),
        (
            status(ApprovalPhase::Expired, None),
            expires,
            Err("already Expired: nobody decided in time"),
        ),
        (
            None,
            "2026-05-01T11:55:00Z",
            Err("expired at 2026-05-01T11:55:00Z (5m ago)"),
        ),
    ];
    for (st, exp, want) in cases {
        let req = request("shop", "r", created, exp, st.clone());
        let got = check_decidable(&req, now).map_err(|r| r.to_string());
        match want {
            Ok(()) => assert_eq!(got, Ok(()), "{st:?}"),
            Err(piece) => {
                let message = got.unwrap_err();
                assert!(message.contains(piece), "{message}");
            }
        }
    }
}

#[test]
fn the_status_patch_is_kubectls() {
    assert_eq!(
        status_patch(Decision::Approve, None),
        json!({"status": {"phase": "Approved"}})
    );
    assert_eq!(
        status_patch(Decision::Deny, Some(" not on a Friday ")),
        json!({"status": {"phase": "Denied", "reason": "not on a Friday"}})
    );
    assert_eq!(
        status_patch(Decision::Approve, Some("  ")),
        json!({"status": {"phase": "Approved"}})
    );
}

#[test]
fn outcome_names_the_decider() {
    let mut req = request("shop", "r", "2026-05-01T11:50:00Z", "2026-05-01T12:10:00Z", None);
    req.status = Some(ApprovalRequestStatus {
        phase: ApprovalPhase::Approved,
        decided_by: Some("alice@example.com".into()),
        decided_at: Some("2026-05-01T12:00:03Z".into()),
        reason: Some("checked the WHERE".into()),
    });
    let text = outcome(&req);
    assert!(
        text.starts_with("approvalrequest shop/r approved by alice@example.com at 2026-05-01T12:00:03Z\n"),
        "{text}"
    );
    assert!(text.contains("reason     checked the WHERE"), "{text}");
    assert!(
        text.contains("statement  DELETE FROM orders WHERE created < now() - interval '1 year'\n"),
        "{text}"
    );

    req.status.as_mut().unwrap().decided_by = None;
    assert!(outcome(&req).contains("no decidedBy was stamped"));
}

#[test]
fn not_found_lists_what_exists() {
    let now = at(NOW);
    assert_eq!(
        not_found("r", "shop", &[], now),
        "approvalrequest \"r\" not found in namespace shop; there are no ApprovalRequests there"
    );
    let existing = [
        request(
            "shop",
            "b",
            "2026-05-01T11:50:00Z",
            "2026-05-01T12:10:00Z",
            status(ApprovalPhase::Denied, Some("x")),
        ),
        request("shop", "a", "2026-05-01T11:50:00Z", "2026-05-01T12:10:00Z", None),
        request("shop", "c", "2026-05-01T11:50:00Z", "2026-05-01T11:55:00Z", None),
    ];
    assert_eq!(
        not_found("r", "shop", &existing, now),
        "approvalrequest \"r\" not found in namespace shop; existing: a (pending), b (denied), c (expiring)"
    );
}
