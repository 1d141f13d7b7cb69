//! The DatabaseConnection reconciler against the scripted API server.

use std::sync::Arc;

use dbward_crds::DatabaseConnection;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::*;
use crate::reconcile::connection;

const SECRET_PATH: &str = "/api/v1/namespaces/shop/secrets/orders-db";
const STATUS_PATH: &str = "/apis/dbward.dev/v1alpha1/namespaces/shop/databaseconnections/orders/status";

fn connection_json(port: u16, status: Option<Value>) -> Value {
    let mut value = json!({
        "apiVersion": "dbward.dev/v1alpha1", "kind": "DatabaseConnection",
        "metadata": {"name": "orders", "namespace": "shop", "generation": 2, "uid": "c-1"},
        "spec": {"host": "127.0.0.1", "port": port, "database": "orders",
                 "credentialsSecretRef": {"name": "orders-db"}, "tls": {"mode": "disable"}},
    });
    if let Some(status) = status {
        value["status"] = status;
    }
    value
}

fn secret(keys: &[&str]) -> Value {
    let data: serde_json::Map<String, Value> = keys
        .iter()
        .map(|k| ((*k).to_owned(), json!("c2VjcmV0")))
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": "orders-db", "namespace": "shop"}, "data": data})
}

#[tokio::test]
async fn a_missing_secret_is_applied_as_credentials_resolved_false() {
    let database = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = database.local_addr().unwrap().port();
    let conn = connection_json(port, None);
    let (ctx, mut api) = context();
    let reply = conn.clone();
    let server = tokio::spawn(async move {
        api.answer("GET", SECRET_PATH, not_found("secrets", "orders-db"))
            .await;
        let (_, applied) = api
            .answer("PATCH", &format!("{STATUS_PATH}{APPLY}"), ok(reply))
            .await;
        api.done().await;
        applied
    });
    let obj: DatabaseConnection = serde_json::from_value(conn).unwrap();
    connection::reconcile(Arc::new(obj), ctx).await.unwrap();
    let applied = server.await.unwrap();

    assert_eq!(applied["apiVersion"], "dbward.dev/v1alpha1");
    assert_eq!(applied["kind"], "DatabaseConnection");
    assert_eq!(
        conditions(&applied),
        [
            cond("CredentialsResolved", "False", "SecretNotFound"),
            cond("Reachable", "True", "Connected"),
            cond("Ready", "False", "CredentialsNotResolved"),
        ]
    );
    let status = &applied["status"];
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(
        status["conditions"][0]["message"],
        "secret \"orders-db\" not found in namespace \"shop\": create it with the keys \"username\", \"password\""
    );
    assert_eq!(
        status["conditions"][1]["message"],
        format!("TCP connection to 127.0.0.1:{port} succeeded (login not attempted)")
    );
    assert!(status.get("serverVersion").is_none(), "{status}");
}

#[tokio::test]
async fn an_unchanged_connection_is_read_but_not_written() {
    let database = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = database.local_addr().unwrap().port();
    let since = "2026-01-01T00:00:00Z";
    let condition = |type_: &str, reason: &str, message: String| {
        json!({"type": type_, "status": "True", "reason": reason, "message": message,
               "lastTransitionTime": since, "observedGeneration": 2})
    };
    let status = json!({
        "observedGeneration": 2,
        "conditions": [
            condition("CredentialsResolved", "Resolved",
                      "secret \"orders-db\" has the keys \"username\", \"password\"".into()),
            condition("Reachable", "Connected",
                      format!("TCP connection to 127.0.0.1:{port} succeeded (login not attempted)")),
            condition("Ready", "Ready",
                      "credentials resolved and the database accepts TCP connections (login not attempted)".into()),
        ],
    });
    let conn = connection_json(port, Some(status));
    let (ctx, mut api) = context();
    let server = tokio::spawn(async move {
        api.answer("GET", SECRET_PATH, ok(secret(&["username", "password"])))
            .await;
        api.done().await;
    });
    let obj: DatabaseConnection = serde_json::from_value(conn).unwrap();
    let action = connection::reconcile(Arc::new(obj), ctx).await.unwrap();
    server.await.unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(crate::reconcile::CONNECTION_RESYNC)
    );
}

#[tokio::test]
async fn a_missing_key_and_a_refused_connection_are_applied() {
    let database = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = database.local_addr().unwrap().port();
    drop(database);
    let conn = connection_json(port, None);
    let (ctx, mut api) = context();
    let reply = conn.clone();
    let server = tokio::spawn(async move {
        api.answer("GET", SECRET_PATH, ok(secret(&["user", "password"])))
            .await;
        let (_, applied) = api
            .answer("PATCH", &format!("{STATUS_PATH}{APPLY}"), ok(reply))
            .await;
        api.done().await;
        applied
    });
    let obj: DatabaseConnection = serde_json::from_value(conn).unwrap();
    connection::reconcile(Arc::new(obj), ctx).await.unwrap();
    let applied = server.await.unwrap();
    assert_eq!(
        conditions(&applied),
        [
            cond("CredentialsResolved", "False", "KeyMissing"),
            cond("Reachable", "False", "Unreachable"),
            cond("Ready", "False", "CredentialsNotResolved"),
        ]
    );
    let messages = applied["status"]["conditions"].to_string();
    assert!(
        messages.contains(r#"has no key \"username\" (it has: \"password\", \"user\")"#),
        "{messages}"
    );
    assert!(
        !messages.contains("c2VjcmV0"),
        "a secret value leaked: {messages}"
    );
}
