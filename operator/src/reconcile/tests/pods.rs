//! The pod reconciler against the scripted API server.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::core::PartialObjectMeta;
use serde_json::{Value, json};

use super::*;
use crate::reconcile::pods::{self, series};

const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events?";

fn pod(annotations: Value) -> Arc<PartialObjectMeta<Pod>> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "p-1", "annotations": annotations},
        }))
        .unwrap(),
    )
}

fn namespace(labels: Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
           "metadata": {"name": "shop", "labels": labels}})
}

fn row(reason: &str, n: i64) -> (String, String, i64) {
    ("shop".to_owned(), reason.to_owned(), n)
}

#[tokio::test]
async fn a_pod_without_its_sidecar_gets_one_warning_and_is_counted() {
    let (ctx, mut api) = context();
    let server = tokio::spawn(async move {
        let (head, _) = api
            .answer(
                "GET",
                "/api/v1/namespaces/shop",
                ok(namespace(json!({"team": "web"}))),
            )
            .await;
        assert!(
            head.headers["accept"]
                .to_str()
                .unwrap()
                .contains("PartialObjectMetadata")
        );
        let (_, event) = api.answer("POST", EVENTS, created()).await;
        // The second look: the namespace is read again (its labels may change), no second Event.
        api.answer(
            "GET",
            "/api/v1/namespaces/shop",
            ok(namespace(json!({"team": "web"}))),
        )
        .await;
        api.done().await;
        event
    });
    let asking = pod(json!({"dbward.dev/inject": "orders"}));
    let action = pods::reconcile(asking.clone(), ctx.clone()).await.unwrap();
    pods::reconcile(asking, ctx.clone()).await.unwrap();
    assert_eq!(action, kube::runtime::controller::Action::requeue(pods::RECHECK));
    assert_eq!(
        series(&ctx.metrics.pods_without_sidecar),
        [row("NamespaceNotOptedIn", 1)]
    );

    // Recreated by its controller with the sidecar (same name, the annotation set by the webhook).
    let injected = pod(json!({"dbward.dev/inject": "orders", "dbward.dev/injected": "orders"}));
    pods::reconcile(injected, ctx.clone()).await.unwrap();
    assert_eq!(series(&ctx.metrics.pods_without_sidecar), []);
    drop(ctx);
    let event = server.await.unwrap();

    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "SidecarMissing");
    assert_eq!(event["regarding"]["kind"], "Pod");
    assert_eq!(event["regarding"]["name"], "web-1");
    let note = event["note"].as_str().unwrap();
    assert!(
        note.contains("namespace \"shop\" is not opted in: label it dbward.dev/injection=enabled"),
        "{note}"
    );
}

#[tokio::test]
async fn in_an_opted_in_namespace_the_webhook_missed_it() {
    let (ctx, mut api) = context();
    let server = tokio::spawn(async move {
        let labels = json!({"dbward.dev/injection": "enabled"});
        api.answer("GET", "/api/v1/namespaces/shop", ok(namespace(labels)))
            .await;
        let (_, event) = api.answer("POST", EVENTS, created()).await;
        api.done().await;
        event
    });
    pods::reconcile(pod(json!({"dbward.dev/inject": "orders"})), ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        series(&ctx.metrics.pods_without_sidecar),
        [row("WebhookMissed", 1)]
    );
    drop(ctx);
    let event = server.await.unwrap();
    assert!(event["note"].as_str().unwrap().contains("webhook was down"));
}

#[tokio::test]
async fn pods_that_do_not_ask_cost_no_request() {
    let (ctx, api) = context();
    let server = tokio::spawn(api.done());
    for annotations in [
        json!({}),
        json!({"dbward.dev/injected": "orders"}),
        json!({"other": "x"}),
    ] {
        let action = pods::reconcile(pod(annotations), ctx.clone()).await.unwrap();
        assert_eq!(action, kube::runtime::controller::Action::await_change());
    }
    assert_eq!(series(&ctx.metrics.pods_without_sidecar), []);
    drop(ctx);
    server.await.unwrap();
}

#[tokio::test]
async fn housekeeping_forgets_pods_that_are_gone() {
    use kube::runtime::{reflector::store::Writer, watcher};

    let (ctx, mut api) = context();
    let server = tokio::spawn(async move {
        for _ in 0..2 {
            api.answer("GET", "/api/v1/namespaces/shop", ok(namespace(json!({}))))
                .await;
            api.answer("POST", EVENTS, created()).await;
        }
        api.done().await;
    });
    let staying = pod(json!({"dbward.dev/inject": "orders"}));
    let mut leaving = (*pod(json!({"dbward.dev/inject": "orders"}))).clone();
    leaving.metadata.name = Some("web-2".into());
    leaving.metadata.uid = Some("p-2".into());
    pods::reconcile(staying.clone(), ctx.clone()).await.unwrap();
    pods::reconcile(Arc::new(leaving), ctx.clone()).await.unwrap();
    assert_eq!(
        series(&ctx.metrics.pods_without_sidecar),
        [row("NamespaceNotOptedIn", 2)]
    );

    // The watch cache holds web-1 only: web-2 was deleted, which no reconcile sees.
    let mut pods_writer: Writer<PartialObjectMeta<Pod>> = Writer::default();
    pods_writer.apply_watcher_event(&watcher::Event::Apply((*staying).clone()));
    let approvals_writer: Writer<dbward_crds::ApprovalRequest> = Writer::default();
    crate::reconcile::prune(&ctx, &pods_writer.as_reader(), &approvals_writer.as_reader());
    assert_eq!(
        series(&ctx.metrics.pods_without_sidecar),
        [row("NamespaceNotOptedIn", 1)]
    );
    drop(ctx);
    server.await.unwrap();
}
