//! The reconcilers against a scripted API server: kube's `tower-test` mock service plays the server,
//! checking each request (method, path, query, body) and answering with JSON. A test fails on any
//! request it did not script, so "no write" is checked as "no further request".

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use http::{Request, Response, request::Parts};
use kube::{Client, client::Body};
use prometheus::Registry;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

use super::{Metrics, ReconcileContext};

/// An ApprovalRequest `ar-1` in `shop` as the API server returns it, created at `created`.
pub(crate) fn approval_json(created: &str, expires_at: &str, status: Option<Value>) -> Value {
    let mut value = json!({
        "apiVersion": "dbward.dev/v1alpha1", "kind": "ApprovalRequest",
        "metadata": {"name": "ar-1", "namespace": "shop", "uid": "u-1", "creationTimestamp": created},
        "spec": {
            "connection": "orders",
            "requester": {"subject": "system:serviceaccount:shop:agent", "serviceAccount": "shop/agent"},
            "statement": "DELETE FROM orders", "fingerprint": "f1", "rule": "ops/deletes",
            "expiresAt": expires_at,
        },
    });
    if let Some(status) = status {
        value["status"] = status;
    }
    value
}

mod approval;
mod connection;
mod pods;
mod policy;

/// The operator's namespace in these tests.
const OPERATOR_NAMESPACE: &str = "dbward-system";
/// How long the scripted server waits for the next request before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);
/// The query of every status apply.
const APPLY: &str = "?&force=true&fieldManager=dbward-operator";

/// A context whose client talks to the returned scripted server.
pub(crate) fn context() -> (Arc<ReconcileContext>, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let metrics = Arc::new(Metrics::new(&Registry::new()).unwrap());
    let ctx = ReconcileContext::new(
        client,
        OPERATOR_NAMESPACE,
        Duration::from_secs(24 * 3600),
        metrics,
    );
    (Arc::new(ctx), ApiServer { handle })
}

/// The API server's side of the mock.
pub(crate) struct ApiServer {
    handle: Handle<Request<Body>, Response<Body>>,
}

impl ApiServer {
    /// Expect the next request to be `method path_and_query`; answer what `reply` returns for its body
    /// (JSON, `Null` when empty). Returns the request's head and body for further checks.
    pub(crate) async fn answer(
        &mut self,
        method: &str,
        path_and_query: &str,
        reply: impl FnOnce(&Value) -> (u16, Value),
    ) -> (Parts, Value) {
        let (request, send) = tokio::time::timeout(PATIENCE, self.handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request came; expected {method} {path_and_query}"))
            .unwrap_or_else(|| panic!("the client was dropped; expected {method} {path_and_query}"));
        let (parts, body) = request.into_parts();
        assert_eq!(
            format!("{} {}", parts.method, parts.uri),
            format!("{method} {path_and_query}"),
            "unexpected request"
        );
        let bytes = body.collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let (status, answer) = reply(&body);
        let response = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&answer).unwrap()))
            .unwrap();
        send.send_response(response);
        (parts, body)
    }

    /// Expect no further request: the clients (the context) are dropped first.
    pub(crate) async fn done(mut self) {
        let next = tokio::time::timeout(PATIENCE, self.handle.next_request())
            .await
            .expect("the context was not dropped");
        if let Some((request, _)) = next {
            panic!("unexpected request: {} {}", request.method(), request.uri());
        }
    }
}

/// Answer 200 with `body`.
pub(crate) fn ok(body: Value) -> impl FnOnce(&Value) -> (u16, Value) {
    move |_| (200, body)
}

/// Answer 201 with the request's own body, as the API server does for a create.
pub(crate) fn created() -> impl FnOnce(&Value) -> (u16, Value) {
    |body| (201, body.clone())
}

/// Answer 404 for `resource` `name`.
fn not_found(resource: &str, name: &str) -> impl FnOnce(&Value) -> (u16, Value) {
    let status = json!({
        "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
        "message": format!("{resource} {name:?} not found"), "reason": "NotFound", "code": 404,
        "details": {"name": name, "kind": resource},
    });
    move |_| (404, status)
}

/// The conditions of an applied status as `(type, status, reason)`.
fn conditions(applied: &Value) -> Vec<(String, String, String)> {
    let list = applied["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    list.iter()
        .map(|c| {
            let field = |f: &str| c[f].as_str().unwrap_or_default().to_owned();
            (field("type"), field("status"), field("reason"))
        })
        .collect()
}

/// `(type, status, reason)` as owned strings, to compare with [`conditions`].
fn cond(type_: &str, status: &str, reason: &str) -> (String, String, String) {
    (type_.to_owned(), status.to_owned(), reason.to_owned())
}
