//! The `approvalrequests/status` webhook: patches applied to the new object, read back as an
//! `ApprovalRequest`.

use std::time::{Duration, SystemTime};

use dbward_crds::{ApprovalPhase, ApprovalRequest, parse_rfc3339};
use kube::core::{
    DynamicObject,
    admission::{AdmissionRequest, AdmissionResponse},
};
use serde_json::{Value, json};

use crate::admission::{ApprovalContext, ApprovalRefusal, check_status_update, review_approval_status};

const OPERATOR: &str = "system:serviceaccount:dbward-system:dbward-operator";
const REQUESTER_SA: &str = "system:serviceaccount:shop:agent";
const ALICE: &str = "alice@example.com";

fn ctx() -> ApprovalContext {
    ApprovalContext::new("dbward-system", "dbward-operator")
}

/// Half a second past 2026-05-01T09:00:00Z: the stamp keeps whole seconds.
fn now() -> SystemTime {
    parse_rfc3339("2026-05-01T09:00:00Z").unwrap() + Duration::from_millis(500)
}

/// An ApprovalRequest from pod `agent-0` (service account `shop/agent`), with `status`.
fn object(status: Value) -> Value {
    let mut obj = json!({
        "apiVersion": "dbward.dev/v1alpha1",
        "kind": "ApprovalRequest",
        "metadata": {"name": "orders-7f3a", "namespace": "shop"},
        "spec": {
            "connection": "orders",
            "requester": {
                "serviceAccount": "shop/agent",
                "pod": "agent-0",
                "subject": "https://issuer.example.com#agent-17",
                "uid": 1000
            },
            "statement": "DELETE FROM orders WHERE created < now() - interval '1 year'",
            "fingerprint": "9f2c",
            "rule": "cleanup/deletes",
            "expiresAt": "2026-05-01T10:00:00Z"
        }
    });
    if !status.is_null() {
        obj["status"] = status;
    }
    obj
}

fn request(old: &Value, new: &Value, user: Option<&str>) -> AdmissionRequest<DynamicObject> {
    serde_json::from_value(json!({
        "uid": "b1c9",
        "kind": {"group": "dbward.dev", "version": "v1alpha1", "kind": "ApprovalRequest"},
        "resource": {"group": "dbward.dev", "version": "v1alpha1", "resource": "approvalrequests"},
        "subResource": "status",
        "name": "orders-7f3a",
        "namespace": "shop",
        "operation": "UPDATE",
        "userInfo": {"username": user, "groups": ["system:authenticated"]},
        "object": new,
        "oldObject": old,
        "dryRun": false
    }))
    .unwrap()
}

fn review(old: &Value, new: &Value, user: &str) -> AdmissionResponse {
    review_approval_status(&request(old, new, Some(user)), &ctx(), now())
}

fn decide(old: &Value, new: &Value, user: &str) -> Result<Option<json_patch::Patch>, ApprovalRefusal> {
    check_status_update(old, new, user, &ctx(), now())
}

/// The stored object after the update: `new` with the response's patch, if any.
fn stored(new: &Value, resp: &AdmissionResponse) -> ApprovalRequest {
    assert!(resp.allowed, "{}", resp.result.message);
    let mut doc = new.clone();
    if let Some(bytes) = &resp.patch {
        let patch: json_patch::Patch = serde_json::from_slice(bytes).unwrap();
        json_patch::patch(&mut doc, &patch).unwrap();
    }
    serde_json::from_value(doc).unwrap()
}

fn pending() -> Value {
    object(json!({"phase": "Pending"}))
}

#[test]
fn an_approval_is_stamped_with_the_user_and_time() {
    for old in [object(Value::Null), pending()] {
        let new = object(json!({"phase": "Approved", "reason": "reviewed the WHERE clause"}));
        let status = stored(&new, &review(&old, &new, ALICE)).status.unwrap();
        assert_eq!(status.phase, ApprovalPhase::Approved);
        assert_eq!(status.decided_by.as_deref(), Some(ALICE));
        assert_eq!(status.decided_at.as_deref(), Some("2026-05-01T09:00:00Z"));
        assert_eq!(status.reason.as_deref(), Some("reviewed the WHERE clause"));
    }
}

#[test]
fn a_denial_is_stamped_too() {
    let new = object(json!({"phase": "Denied"}));
    let status = stored(&new, &review(&pending(), &new, ALICE)).status.unwrap();
    assert_eq!(status.phase, ApprovalPhase::Denied);
    assert_eq!(status.decided_by.as_deref(), Some(ALICE));
    assert_eq!(status.decided_at.as_deref(), Some("2026-05-01T09:00:00Z"));
}

#[test]
fn what_the_client_claims_about_the_decision_is_overwritten() {
    let new = object(json!({
        "phase": "Approved",
        "decidedBy": "security-lead@example.com",
        "decidedAt": "2020-01-01T00:00:00Z"
    }));
    let status = stored(&new, &review(&pending(), &new, ALICE)).status.unwrap();
    assert_eq!(status.decided_by.as_deref(), Some(ALICE));
    assert_eq!(status.decided_at.as_deref(), Some("2026-05-01T09:00:00Z"));
}

#[test]
fn the_requester_cannot_approve_its_own_statement() {
    let new = object(json!({"phase": "Approved"}));
    for user in [REQUESTER_SA, "https://issuer.example.com#agent-17"] {
        assert_eq!(
            decide(&pending(), &new, user),
            Err(ApprovalRefusal::SelfApproval {
                user: user.to_owned()
            })
        );
        let resp = review(&pending(), &new, user);
        assert!(!resp.allowed);
        assert!(
            resp.result.message.contains("cannot approve it"),
            "{}",
            resp.result.message
        );
    }
    // A service account of the same name in another namespace is someone else.
    assert!(decide(&pending(), &new, "system:serviceaccount:other:agent").is_ok());
}

#[test]
fn the_requester_may_deny_its_own_statement() {
    let new = object(json!({"phase": "Denied"}));
    let status = stored(&new, &review(&pending(), &new, REQUESTER_SA))
        .status
        .unwrap();
    assert_eq!(status.decided_by.as_deref(), Some(REQUESTER_SA));
}

#[test]
fn a_decided_request_cannot_change() {
    let approved =
        object(json!({"phase": "Approved", "decidedBy": ALICE, "decidedAt": "2026-05-01T08:00:00Z"}));
    let denied = object(json!({"phase": "Denied", "decidedBy": ALICE, "decidedAt": "2026-05-01T08:00:00Z"}));
    let expired = object(json!({"phase": "Expired", "decidedAt": "2026-05-01T08:00:00Z"}));
    let cases = [
        (&approved, json!({"phase": "Pending"}), ApprovalPhase::Approved),
        (
            &approved,
            json!({"phase": "Denied", "decidedBy": ALICE, "decidedAt": "2026-05-01T08:00:00Z"}),
            ApprovalPhase::Approved,
        ),
        (
            &approved,
            json!({"phase": "Approved", "decidedBy": ALICE, "decidedAt": "2026-05-01T08:00:00Z", "reason": "late"}),
            ApprovalPhase::Approved,
        ),
        (
            &approved,
            json!({"phase": "Approved", "decidedBy": "bob", "decidedAt": "2026-05-01T08:00:00Z"}),
            ApprovalPhase::Approved,
        ),
        (
            &denied,
            json!({"phase": "Approved", "decidedBy": ALICE, "decidedAt": "2026-05-01T08:00:00Z"}),
            ApprovalPhase::Denied,
        ),
        (&expired, json!({"phase": "Approved"}), ApprovalPhase::Expired),
        (&expired, Value::Null, ApprovalPhase::Expired),
    ];
    for (old, status, phase) in cases {
        let new = object(status.clone());
        for user in [ALICE, OPERATOR] {
            assert_eq!(
                decide(old, &new, user),
                Err(ApprovalRefusal::AlreadyDecided { phase }),
                "{status} by {user}"
            );
        }
        let resp = review(old, &new, ALICE);
        assert!(!resp.allowed);
        assert!(
            resp.result.message.contains(&format!("already {phase}")),
            "{}",
            resp.result.message
        );
    }
}

#[test]
fn resending_a_final_status_is_a_no_op() {
    let approved =
        object(json!({"phase": "Approved", "decidedBy": ALICE, "decidedAt": "2026-05-01T08:00:00Z"}));
    let resp = review(&approved, &approved, "bob@example.com");
    assert!(resp.allowed);
    assert!(resp.patch.is_none());
    // A merge patch's nulls remove nothing that is there.
    let with_null = object(
        json!({"phase": "Approved", "decidedBy": ALICE, "decidedAt": "2026-05-01T08:00:00Z", "reason": null}),
    );
    assert_eq!(decide(&approved, &with_null, "bob@example.com"), Ok(None));
}

#[test]
fn the_spec_is_immutable() {
    let mut new = object(json!({"phase": "Approved"}));
    new["spec"]["statement"] = json!("DROP TABLE orders");
    assert_eq!(decide(&pending(), &new, ALICE), Err(ApprovalRefusal::SpecChanged));
    let mut new = pending();
    new["spec"]["requester"]["serviceAccount"] = json!("shop/someone-else");
    assert_eq!(decide(&pending(), &new, ALICE), Err(ApprovalRefusal::SpecChanged));
    let resp = review(&pending(), &new, ALICE);
    assert!(!resp.allowed);
    assert!(resp.result.message.contains("spec is immutable"));
}

#[test]
fn unknown_phases_are_refused() {
    for phase in [
        json!("approved"),
        json!("Approve"),
        json!(""),
        json!(1),
        json!({"x": 1}),
    ] {
        let new = object(json!({"phase": phase}));
        assert_eq!(
            decide(&pending(), &new, ALICE),
            Err(ApprovalRefusal::UnknownPhase {
                value: phase.to_string()
            }),
            "{phase}"
        );
    }
    let resp = review(&pending(), &object(json!({"phase": "approved"})), ALICE);
    assert!(!resp.allowed);
    assert!(
        resp.result
            .message
            .contains("status.phase \"approved\" is not a phase: use \"Approved\" or \"Denied\""),
        "{}",
        resp.result.message
    );
}

#[test]
fn a_status_that_is_not_an_object_is_refused() {
    let mut new = pending();
    new["status"] = json!("Approved");
    assert_eq!(
        decide(&pending(), &new, ALICE),
        Err(ApprovalRefusal::MalformedStatus)
    );
    let mut old = pending();
    old["status"] = json!({"phase": "Sideways"});
    assert!(matches!(
        decide(&old, &object(json!({"phase": "Approved"})), ALICE),
        Err(ApprovalRefusal::CorruptStoredStatus { .. })
    ));
}

#[test]
fn only_the_operator_expires_requests() {
    let new = object(json!({"phase": "Expired", "reason": "nobody decided before expiresAt"}));
    assert_eq!(
        decide(&pending(), &new, ALICE),
        Err(ApprovalRefusal::ExpiredByUser)
    );
    let status = stored(&new, &review(&pending(), &new, OPERATOR)).status.unwrap();
    assert_eq!(status.phase, ApprovalPhase::Expired);
    assert_eq!(status.decided_by, None);
    assert_eq!(status.decided_at.as_deref(), Some("2026-05-01T09:00:00Z"));
    assert_eq!(status.reason.as_deref(), Some("nobody decided before expiresAt"));
    // Nobody decided, so no decider is recorded even if the update names one.
    let claimed = object(json!({"phase": "Expired", "decidedBy": ALICE}));
    let status = stored(&claimed, &review(&pending(), &claimed, OPERATOR))
        .status
        .unwrap();
    assert_eq!(status.decided_by, None);
}

#[test]
fn a_pending_request_carries_no_decision() {
    let new = object(
        json!({"phase": "Pending", "reason": "looking", "decidedBy": ALICE, "decidedAt": "2026-05-01T08:00:00Z"}),
    );
    let status = stored(&new, &review(&pending(), &new, "bob@example.com"))
        .status
        .unwrap();
    assert_eq!(status.phase, ApprovalPhase::Pending);
    assert_eq!(status.reason.as_deref(), Some("looking"));
    assert_eq!(status.decided_by, None);
    assert_eq!(status.decided_at, None);
    // A reason alone needs no patch.
    let reason = object(json!({"phase": "Pending", "reason": "looking"}));
    assert_eq!(decide(&pending(), &reason, "bob@example.com"), Ok(None));
}

#[test]
fn a_decision_needs_an_authenticated_user() {
    let new = object(json!({"phase": "Approved"}));
    assert_eq!(decide(&pending(), &new, ""), Err(ApprovalRefusal::Anonymous));
    let resp = review_approval_status(&request(&pending(), &new, None), &ctx(), now());
    assert!(!resp.allowed);
}

#[test]
fn other_requests_pass_unchanged() {
    let new = object(json!({"phase": "Approved"}));
    let mut req = request(&pending(), &new, Some(REQUESTER_SA));
    req.sub_resource = None;
    let resp = review_approval_status(&req, &ctx(), now());
    assert!(resp.allowed);
    assert!(resp.patch.is_none());

    let mut req = request(&pending(), &new, Some(REQUESTER_SA));
    req.operation = kube::core::admission::Operation::Create;
    assert!(review_approval_status(&req, &ctx(), now()).allowed);
}

#[test]
fn a_request_without_the_old_object_is_refused() {
    let new = object(json!({"phase": "Approved"}));
    let mut req = request(&pending(), &new, Some(ALICE));
    req.old_object = None;
    let resp = review_approval_status(&req, &ctx(), now());
    assert!(!resp.allowed);
    assert!(
        resp.result.message.contains("no old object"),
        "{}",
        resp.result.message
    );
}

#[test]
fn dry_run_gets_the_same_answer() {
    let new = object(json!({"phase": "Approved"}));
    let mut req = request(&pending(), &new, Some(ALICE));
    let real = review_approval_status(&req, &ctx(), now());
    req.dry_run = true;
    let dry = review_approval_status(&req, &ctx(), now());
    assert!(dry.allowed);
    assert_eq!(dry.patch, real.patch);
}

#[test]
fn typed_requests_work_too() {
    let new = object(json!({"phase": "Approved"}));
    let req: AdmissionRequest<ApprovalRequest> =
        serde_json::from_value(serde_json::to_value(request(&pending(), &new, Some(ALICE))).unwrap())
            .unwrap();
    let resp = review_approval_status(&req, &ctx(), now());
    let status = stored(&new, &resp).status.unwrap();
    assert_eq!(status.decided_by.as_deref(), Some(ALICE));

    let req: AdmissionRequest<ApprovalRequest> =
        serde_json::from_value(serde_json::to_value(request(&pending(), &new, Some(REQUESTER_SA))).unwrap())
            .unwrap();
    assert!(!review_approval_status(&req, &ctx(), now()).allowed);
}

#[test]
fn the_context_names_the_operators_service_account() {
    assert_eq!(ctx().operator_username, OPERATOR);
}
