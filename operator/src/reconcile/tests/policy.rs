//! The AccessPolicy reconciler against the scripted API server.

use std::sync::Arc;

use dbward_crds::AccessPolicy;
use serde_json::{Value, json};

use super::*;
use crate::reconcile::policy;

const CONNECTIONS: &str = "/apis/dbward.dev/v1alpha1/namespaces/shop/databaseconnections?";
const STATUS_PATH: &str = "/apis/dbward.dev/v1alpha1/namespaces/shop/accesspolicies/agents/status";

fn policy_json(spec_extra: Value, status: Option<Value>) -> Value {
    let mut spec = json!({
        "connections": ["orders", "analytics"],
        "subjects": [{"serviceAccount": {"name": "agent"}}],
        "rules": [{"action": "allow", "operations": ["select"]}],
    });
    for (k, v) in spec_extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let mut value = json!({
        "apiVersion": "dbward.dev/v1alpha1", "kind": "AccessPolicy",
        "metadata": {"name": "agents", "namespace": "shop", "generation": 5},
        "spec": spec,
    });
    if let Some(status) = status {
        value["status"] = status;
    }
    value
}

/// The metadata list of the namespace's DatabaseConnections.
fn connection_list(names: &[&str]) -> Value {
    let items: Vec<Value> = names
        .iter()
        .map(|n| {
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                        "metadata": {"name": n, "namespace": "shop"}})
        })
        .collect();
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
           "metadata": {"resourceVersion": "7"}, "items": items})
}

#[tokio::test]
async fn a_policy_gets_valid_active_and_the_unknown_connections() {
    let p = policy_json(json!({"notBefore": "2026-01-01T00:00:00Z"}), None);
    let (ctx, mut api) = context();
    let reply = p.clone();
    let server = tokio::spawn(async move {
        let (head, _) = api
            .answer("GET", CONNECTIONS, ok(connection_list(&["orders"])))
            .await;
        let accept = head.headers["accept"].to_str().unwrap().to_owned();
        let (_, applied) = api
            .answer("PATCH", &format!("{STATUS_PATH}{APPLY}"), ok(reply))
            .await;
        api.done().await;
        (accept, applied)
    });
    let obj: AccessPolicy = serde_json::from_value(p).unwrap();
    let action = policy::reconcile(Arc::new(obj), ctx).await.unwrap();
    let (accept, applied) = server.await.unwrap();

    assert!(
        accept.contains("as=PartialObjectMetadataList"),
        "only names are listed: {accept}"
    );
    assert_eq!(applied["kind"], "AccessPolicy");
    assert_eq!(
        conditions(&applied),
        [
            cond("Valid", "True", "Valid"),
            cond("Active", "True", "Active"),
            cond("Ready", "False", "UnknownConnection"),
        ]
    );
    let status = &applied["status"];
    assert_eq!(status["observedGeneration"], 5);
    assert!(status.get("errors").is_none(), "{status}");
    assert_eq!(
        status["conditions"][2]["message"],
        "connection \"analytics\" does not exist in namespace \"shop\": the policy grants nothing through it; \
         create it or fix spec.connections"
    );
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(policy::POLICY_RESYNC)
    );
}

#[tokio::test]
async fn an_invalid_policy_gets_its_errors_and_then_no_write() {
    let p = policy_json(json!({"rules": [{"action": "deny", "operations": []}]}), None);
    let (ctx, mut api) = context();
    let (applied_tx, applied_rx) = tokio::sync::oneshot::channel();
    let reply = p.clone();
    let server = tokio::spawn(async move {
        api.answer("GET", CONNECTIONS, ok(connection_list(&["orders", "analytics"])))
            .await;
        let (_, applied) = api
            .answer("PATCH", &format!("{STATUS_PATH}{APPLY}"), ok(reply))
            .await;
        applied_tx.send(applied).unwrap();
        // The same policy again, now carrying what was applied: one read, no write.
        api.answer("GET", CONNECTIONS, ok(connection_list(&["orders", "analytics"])))
            .await;
        api.done().await;
    });
    let obj: AccessPolicy = serde_json::from_value(p.clone()).unwrap();
    policy::reconcile(Arc::new(obj), ctx.clone()).await.unwrap();
    let applied = applied_rx.await.unwrap();
    assert_eq!(
        conditions(&applied),
        [
            cond("Valid", "False", "Invalid"),
            cond("Active", "True", "Active"),
            cond("Ready", "False", "Invalid"),
        ]
    );
    assert_eq!(
        applied["status"]["errors"],
        json!([{"field": "spec.rules[0].operations",
                "message": "must list at least one operation (e.g. select, insert, update, delete)"}])
    );

    let mut stored = p;
    stored["status"] = applied["status"].clone();
    let obj: AccessPolicy = serde_json::from_value(stored).unwrap();
    policy::reconcile(Arc::new(obj), ctx.clone()).await.unwrap();
    drop(ctx);
    server.await.unwrap();
}
