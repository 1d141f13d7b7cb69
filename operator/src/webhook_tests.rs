//! The pod webhook's route with its caches filled directly and a scripted API server for the Events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kube::runtime::{reflector::store::Writer, watcher};
use serde_json::{Value, json};

use super::*;
use crate::reconcile::tests::{ApiServer, context, created};

const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events?";

/// A client talking to the returned scripted server.
fn client() -> (Client, ApiServer) {
    let (ctx, api) = context();
    (ctx.client.clone(), api)
}

/// The webhook's state: namespace `shop` labelled `labels` (unless `None`: not in the cache), with the
/// egress-locked connection `orders`.
fn state(client: Client, labels: Option<Value>) -> Arc<WebhookState> {
    let mut connections: Writer<DatabaseConnection> = Writer::default();
    let orders = json!({
        "apiVersion": "dbward.dev/v1alpha1", "kind": "DatabaseConnection",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {"host": "orders-db", "database": "orders", "credentialsSecretRef": {"name": "db"}},
    });
    connections.apply_watcher_event(&watcher::Event::Apply(serde_json::from_value(orders).unwrap()));
    let mut namespaces: Writer<PartialObjectMeta<Namespace>> = Writer::default();
    if let Some(labels) = labels {
        let shop = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop", "uid": "ns-uid", "labels": labels},
        });
        namespaces.apply_watcher_event(&watcher::Event::Apply(serde_json::from_value(shop).unwrap()));
    }
    let (_, ready) = watch::channel(true);
    Arc::new(WebhookState {
        settings: RwLock::new(InjectSettings::new("dbward-system", "img", None, true)),
        approval: ApprovalContext::new("dbward-system", "dbward-operator"),
        connections: connections.as_reader(),
        namespaces: namespaces.as_reader(),
        ready,
        events: NamespaceEvents::new(client),
    })
}

/// An AdmissionReview of a pod in `shop` that asks for `orders`.
fn review(dry_run: bool) -> AdmissionReview<Pod> {
    serde_json::from_value(json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "", "namespace": "shop", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": "web-", "annotations": {"dbward.dev/inject": "orders"}},
                "spec": {"containers": [{"name": "app", "image": "a"}]},
            },
            "oldObject": null, "dryRun": dry_run,
        },
    }))
    .unwrap()
}

/// The webhook's answer to `review`: (allowed, warnings).
async fn call(state: &Arc<WebhookState>, review: AdmissionReview<Pod>) -> (bool, Vec<String>) {
    let Json(answer) = mutate_pod(State(state.clone()), Json(review)).await;
    let response = answer.response.expect("a response");
    (response.allowed, response.warnings.unwrap_or_default())
}

fn enforce(level: &str) -> Option<Value> {
    Some(json!({"dbward.dev/injection": "enabled", "pod-security.kubernetes.io/enforce": level}))
}

#[tokio::test]
async fn a_namespace_refusing_the_egress_lock_gets_a_warning_per_pod_and_one_event() {
    let (client, mut api) = client();
    let server = tokio::spawn(async move {
        let (_, event) = api.answer("POST", EVENTS, created()).await;
        api.done().await;
        event
    });
    let state = state(client, enforce("baseline"));
    for _ in 0..3 {
        let (allowed, warnings) = call(&state, review(false)).await;
        assert!(allowed);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("Pod Security \"baseline\""), "{warnings:?}");
    }
    drop(state);
    let event = server.await.unwrap();

    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "EgressLockForbidden");
    assert_eq!(event["reportingController"], "dbward-operator");
    let regarding = &event["regarding"];
    assert_eq!(
        (
            &regarding["kind"],
            &regarding["name"],
            &regarding["namespace"],
            &regarding["uid"]
        ),
        (
            &json!("Namespace"),
            &json!("shop"),
            &json!("shop"),
            &json!("ns-uid")
        )
    );
    assert_eq!(event["metadata"]["namespace"], "shop");
    let note = event["note"].as_str().unwrap();
    assert!(
        note.contains("pod-security.kubernetes.io/enforce=privileged"),
        "{note}"
    );
}

#[tokio::test]
async fn a_failed_event_is_tried_again_at_the_next_pod() {
    let (client, mut api) = client();
    let server = tokio::spawn(async move {
        api.answer("POST", EVENTS, |_| (403, json!({"kind": "Status", "code": 403})))
            .await;
        api.answer("POST", EVENTS, created()).await;
        api.done().await;
    });
    let state = state(client, enforce("restricted"));
    call(&state, review(false)).await;
    // The first publication fails in the background; once it has, the next pod publishes again.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    call(&state, review(false)).await;
    drop(state);
    server.await.unwrap();
}

#[tokio::test]
async fn no_event_for_a_dry_run_an_allowing_level_or_an_unknown_namespace() {
    let (client, api) = client();
    let server = tokio::spawn(api.done());
    // A dry run is warned, not recorded.
    let baseline = state(client.clone(), enforce("baseline"));
    let (_, warnings) = call(&baseline, review(true)).await;
    assert_eq!(warnings.len(), 1);
    for labels in [enforce("privileged"), Some(json!({})), None] {
        let state = state(client.clone(), labels.clone());
        let (allowed, warnings) = call(&state, review(false)).await;
        assert!(allowed);
        assert_eq!(warnings, Vec::<String>::new(), "{labels:?}");
    }
    drop((client, baseline));
    server.await.unwrap();
}
