//! The DatabaseConnection reconciler against the scripted API server.

use std::sync::Arc;

use dbward_crds::DatabaseConnection;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    core::PartialObjectMeta,
    runtime::{reflector::store::Writer, watcher},
};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::*;
use crate::reconcile::connection::{self, Pods};

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

/// A loaded pod cache holding pods named `name` in `shop` with `annotations`.
fn pods(list: &[(&str, Value)]) -> Pods {
    let mut writer: Writer<PartialObjectMeta<Pod>> = Writer::default();
    writer.apply_watcher_event(&watcher::Event::Init);
    for (name, annotations) in list {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": name, "namespace": "shop", "annotations": annotations}});
        writer.apply_watcher_event(&watcher::Event::InitApply(serde_json::from_value(pod).unwrap()));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    writer.as_reader()
}

/// A pod cache that never loads (its watch is gone).
fn unloaded_pods() -> Pods {
    Writer::<PartialObjectMeta<Pod>>::default().as_reader()
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
    // A sidecar has reported the server's version (the control API wrote it under its own manager).
    let conn = connection_json(port, Some(json!({"serverVersion": "16.4"})));
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
    // Without a loaded pod cache, PodsWithoutSidecar is left out (as it was: absent).
    connection::reconcile(Arc::new(obj), ctx, unloaded_pods())
        .await
        .unwrap();
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
    // Not sent, so server-side apply leaves the reported version to its own field manager.
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
        // Reported by a sidecar; the reconciler computes no version, and that is no change.
        "serverVersion": "16.4 (Debian 16.4-1.pgdg120+1)",
        "conditions": [
            condition("CredentialsResolved", "Resolved",
                      "secret \"orders-db\" has the keys \"username\", \"password\"".into()),
            condition("Reachable", "Connected",
                      format!("TCP connection to 127.0.0.1:{port} succeeded (login not attempted)")),
            condition("Ready", "Ready",
                      "credentials resolved and the database accepts TCP connections (login not attempted)".into()),
            json!({"type": "PodsWithoutSidecar", "status": "False", "reason": "AllInjected",
                   "message": "every pod that names this connection in dbward.dev/inject runs with the dbward sidecar",
                   "lastTransitionTime": since, "observedGeneration": 2}),
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
    // Injected pods and pods of other connections do not count.
    let cache = pods(&[
        (
            "web-1",
            json!({"dbward.dev/inject": "orders", "dbward.dev/injected": "orders"}),
        ),
        ("batch-1", json!({"dbward.dev/inject": "analytics"})),
    ]);
    let action = connection::reconcile(Arc::new(obj), ctx, cache).await.unwrap();
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
    connection::reconcile(Arc::new(obj), ctx, pods(&[]))
        .await
        .unwrap();
    let applied = server.await.unwrap();
    assert_eq!(
        conditions(&applied),
        [
            cond("CredentialsResolved", "False", "KeyMissing"),
            cond("Reachable", "False", "Unreachable"),
            cond("Ready", "False", "CredentialsNotResolved"),
            cond("PodsWithoutSidecar", "False", "AllInjected"),
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

#[tokio::test]
async fn pods_running_without_their_sidecar_are_a_condition_with_the_namespaces_reason() {
    let database = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = database.local_addr().unwrap().port();
    let conn = connection_json(port, None);
    let (ctx, mut api) = context();
    let reply = conn.clone();
    let server = tokio::spawn(async move {
        api.answer("GET", SECRET_PATH, ok(secret(&["username", "password"])))
            .await;
        // Some pods run without the sidecar: the namespace's labels say why.
        let (head, _) = api
            .answer(
                "GET",
                "/api/v1/namespaces/shop",
                ok(
                    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                          "metadata": {"name": "shop", "labels": {"dbward.dev/injection": "enabled"}}}),
                ),
            )
            .await;
        assert!(
            head.headers["accept"]
                .to_str()
                .unwrap()
                .contains("PartialObjectMetadata")
        );
        let (_, applied) = api
            .answer("PATCH", &format!("{STATUS_PATH}{APPLY}"), ok(reply))
            .await;
        api.done().await;
        applied
    });
    let obj: DatabaseConnection = serde_json::from_value(conn).unwrap();
    let cache = pods(&[
        ("web-2", json!({"dbward.dev/inject": "analytics,orders"})),
        ("web-1", json!({"dbward.dev/inject": "orders"})),
        (
            "web-3",
            json!({"dbward.dev/inject": "orders", "dbward.dev/injected": "orders"}),
        ),
    ]);
    connection::reconcile(Arc::new(obj), ctx, cache).await.unwrap();
    let applied = server.await.unwrap();
    assert_eq!(
        conditions(&applied),
        [
            cond("CredentialsResolved", "True", "Resolved"),
            cond("Reachable", "True", "Connected"),
            cond("Ready", "True", "Ready"),
            cond("PodsWithoutSidecar", "True", "WebhookMissed"),
        ]
    );
    let message = applied["status"]["conditions"][3]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "2 pods that name this connection in dbward.dev/inject run without the dbward sidecar, so without \
             database access (\"web-1\", \"web-2\"): they were created while the injection webhook was down"
        ),
        "{message}"
    );
}
