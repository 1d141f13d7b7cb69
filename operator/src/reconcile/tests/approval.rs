//! The ApprovalRequest reconciler against the scripted API server.

use std::sync::Arc;

use dbward_crds::ApprovalRequest;
use serde_json::{Value, json};

use super::*;
use crate::reconcile::approval;

const PATH: &str = "/apis/dbward.dev/v1alpha1/namespaces/shop/approvalrequests/ar-1";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events?";

fn request_json(expires_at: &str, status: Option<Value>) -> Value {
    approval_json("2026-01-01T09:00:00Z", expires_at, status)
}

fn request(value: &Value) -> Arc<ApprovalRequest> {
    Arc::new(serde_json::from_value(value.clone()).unwrap())
}

#[tokio::test]
async fn a_pending_request_past_expires_at_gets_expired() {
    let req = request_json("2026-01-01T09:10:00Z", Some(json!({"phase": "Pending"})));
    let (ctx, mut api) = context();
    let reply = req.clone();
    let server = tokio::spawn(async move {
        let path = format!("{PATH}/status{APPLY}");
        let (head, applied) = api.answer("PATCH", &path, ok(reply)).await;
        api.done().await;
        (head, applied)
    });
    approval::reconcile(request(&req), ctx).await.unwrap();
    let (head, applied) = server.await.unwrap();

    assert_eq!(head.headers["content-type"], "application/apply-patch+yaml");
    assert_eq!(applied["apiVersion"], "dbward.dev/v1alpha1");
    assert_eq!(applied["kind"], "ApprovalRequest");
    let status = &applied["status"];
    assert_eq!(status["phase"], "Expired");
    assert_eq!(status["reason"], "nobody decided before expiresAt");
    assert!(status["decidedAt"].as_str().unwrap().ends_with('Z'), "{status}");
    assert!(status.get("decidedBy").is_none(), "nobody decided: {status}");
}

#[tokio::test]
async fn a_decided_request_past_its_retention_is_deleted() {
    let decided = json!({"phase": "Approved", "decidedBy": "alice", "decidedAt": "2026-01-01T09:05:00Z"});
    let req = request_json("2026-01-01T09:10:00Z", Some(decided));
    let (ctx, mut api) = context();
    let reply = req.clone();
    let server = tokio::spawn(async move {
        let (_, body) = api.answer("DELETE", &format!("{PATH}?"), ok(reply)).await;
        api.done().await;
        body
    });
    let action = approval::reconcile(request(&req), ctx).await.unwrap();
    let body = server.await.unwrap();
    assert_eq!(
        body["preconditions"],
        json!({"uid": "u-1"}),
        "only this request, not a newer namesake"
    );
    assert_eq!(action, kube::runtime::controller::Action::await_change());
}

#[tokio::test]
async fn a_decided_request_already_gone_is_fine() {
    let req = request_json("2026-01-01T09:10:00Z", Some(json!({"phase": "Denied"})));
    let (ctx, mut api) = context();
    let server = tokio::spawn(async move {
        api.answer(
            "DELETE",
            &format!("{PATH}?"),
            not_found("approvalrequests", "ar-1"),
        )
        .await;
        api.done().await;
    });
    approval::reconcile(request(&req), ctx).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_new_pending_request_is_announced_once() {
    let req = request_json("2999-01-01T00:00:00Z", None);
    let (ctx, mut api) = context();
    let server = tokio::spawn(async move {
        let (_, event) = api.answer("POST", EVENTS, created()).await;
        api.done().await;
        event
    });
    let first = approval::reconcile(request(&req), ctx.clone()).await.unwrap();
    // Seen again (e.g. requeued): no second Event, no write of any kind.
    approval::reconcile(request(&req), ctx.clone()).await.unwrap();
    assert_eq!(
        first,
        kube::runtime::controller::Action::requeue(Duration::from_secs(3600))
    );
    drop(ctx);
    let event = server.await.unwrap();

    assert_eq!(event["type"], "Normal");
    assert_eq!(event["reason"], "ApprovalRequested");
    assert_eq!(event["reportingController"], "dbward-operator");
    assert_eq!(event["regarding"]["kind"], "ApprovalRequest");
    assert_eq!(event["regarding"]["name"], "ar-1");
    assert_eq!(event["regarding"]["uid"], "u-1");
    let note = event["note"].as_str().unwrap();
    assert!(note.starts_with("system:serviceaccount:shop:agent asks to run a statement on connection \"orders\", held by rule \"ops/deletes\""), "{note}");
    assert!(
        note.contains("kubectl patch approvalrequest ar-1 -n shop --subresource=status"),
        "{note}"
    );
    assert!(
        !note.contains("DELETE FROM"),
        "the statement stays in the spec: {note}"
    );
}
