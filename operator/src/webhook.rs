//! The webhook server's routes (`:9443`): decode the AdmissionReview, look up what the decision needs,
//! call the pure functions of [`crate::admission`], answer.
//!
//! Until the operator's caches are loaded, pods asking for injection are refused with a message (the
//! webhook's failurePolicy is Fail anyway; a clear message is better than a timeout). Pods not asking
//! for injection always pass.
//!
//! The pod webhook also reads the namespace's labels, from a metadata-only watch of Namespaces
//! ([`watch_namespaces`]): when its Pod Security level will refuse the egress lock just injected, the
//! answer carries a warning, and an Event `EgressLockForbidden` is recorded on the Namespace, at most
//! once per namespace every 10 minutes per replica (every replica serves the webhook), never for a
//! dry run. A namespace not in the cache yet gets neither.

use std::{
    sync::{Arc, RwLock},
    time::{Instant, SystemTime},
};

use axum::{Json, Router, extract::State, routing::post};
use dbward_crds::DatabaseConnection;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Pod};
use kube::{
    Api, Client, ResourceExt,
    core::{
        DynamicObject, PartialObjectMeta,
        admission::{AdmissionRequest, AdmissionResponse, AdmissionReview},
    },
    runtime::{
        WatchStreamExt,
        events::{Event, EventType, Recorder, Reporter},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    admission::{
        ApprovalContext, ConnectionTarget, InjectContext, InjectSettings, admit_pod, pod_namespace,
        pod_security::{self, EGRESS_LOCK_FORBIDDEN, EVENT_EVERY, Level, OncePer},
        review_approval_status,
        spec::INJECT_ANNOTATION,
    },
    reconcile::FIELD_MANAGER,
};

/// What the webhooks read.
pub struct WebhookState {
    /// Injection settings; the operator CA in them changes when the CA is renewed.
    pub settings: RwLock<InjectSettings>,
    pub approval: ApprovalContext,
    pub connections: Store<DatabaseConnection>,
    /// The Namespaces' metadata, for their Pod Security labels ([`watch_namespaces`]).
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    pub ready: watch::Receiver<bool>,
    /// Events on Namespaces whose Pod Security level refuses the egress lock.
    pub events: NamespaceEvents,
}

/// Records the `EgressLockForbidden` Event on a Namespace, at most once per namespace per
/// [`EVENT_EVERY`].
pub struct NamespaceEvents {
    recorder: Recorder,
    once: Arc<OncePer>,
}

impl NamespaceEvents {
    /// Events published with `client`, reported by controller `dbward-operator`, instance the host name
    /// (the pod's name in a cluster).
    pub fn new(client: Client) -> Self {
        Self {
            recorder: Recorder::new(client, Reporter::from(FIELD_MANAGER)),
            once: Arc::new(OncePer::new(EVENT_EVERY)),
        }
    }

    /// Publish, in the background, that namespace `namespace` (whose metadata is `meta` when known)
    /// enforces `level`, unless it was published less than [`EVENT_EVERY`] ago. The Event is about the
    /// Namespace and lives in that namespace, where `kubectl get events -n NAMESPACE` shows it next to the
    /// failures of the controllers whose pods are refused. Returns the task, if one was started.
    pub fn egress_lock_forbidden(
        &self,
        namespace: &str,
        meta: Option<&PartialObjectMeta<Namespace>>,
        level: Level,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if !self.once.due(namespace, Instant::now()) {
            return None;
        }
        let reference = ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Namespace".to_owned()),
            name: Some(namespace.to_owned()),
            // A Namespace has no namespace; naming itself puts the Event where its users look.
            namespace: Some(namespace.to_owned()),
            uid: meta.and_then(|m| m.metadata.uid.clone()),
            ..ObjectReference::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: EGRESS_LOCK_FORBIDDEN.to_owned(),
            note: Some(pod_security::event_note(namespace, level)),
            action: "InjectEgressLock".to_owned(),
            secondary: None,
        };
        let recorder = self.recorder.clone();
        let once = self.once.clone();
        let namespace = namespace.to_owned();
        Some(tokio::spawn(async move {
            match recorder.publish(&event, &reference).await {
                Ok(()) => warn!(
                    %namespace, level = %level,
                    "the namespace's Pod Security level refuses the egress lock of injected pods"
                ),
                Err(error) => {
                    once.forget(&namespace);
                    warn!(%namespace, %error, "cannot publish event {EGRESS_LOCK_FORBIDDEN}");
                }
            }
        }))
    }
}

/// A cache of every Namespace's metadata (labels), kept by a metadata-only watch until `shutdown`.
/// Reading it needs `list` and `watch` on namespaces.
pub fn watch_namespaces(client: Client, shutdown: CancellationToken) -> Store<PartialObjectMeta<Namespace>> {
    let (store, writer) = reflector::store();
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(client);
    let events = reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    tokio::spawn(async move {
        futures_util::pin_mut!(events);
        loop {
            tokio::select! {
                next = events.next() => match next {
                    Some(Ok(_)) => {}
                    Some(Err(error)) => warn!(%error, "watching Namespaces failed; retrying"),
                    None => return,
                },
                () = shutdown.cancelled() => return,
            }
        }
    });
    store
}

/// The webhook routes.
pub fn router(state: Arc<WebhookState>) -> Router {
    Router::new()
        .route("/mutate-pod", post(mutate_pod))
        .route("/mutate-approval-status", post(mutate_approval_status))
        // AdmissionReviews of big pods are large, but bounded: 3 MiB is the API server's own request cap.
        .layer(axum::extract::DefaultBodyLimit::max(3 * 1024 * 1024))
        .with_state(state)
}

fn invalid(e: impl std::fmt::Display) -> Json<AdmissionReview<DynamicObject>> {
    Json(AdmissionResponse::invalid(format!("dbward: not an AdmissionReview: {e}")).into_review())
}

async fn mutate_pod(
    State(state): State<Arc<WebhookState>>,
    Json(review): Json<AdmissionReview<Pod>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let req: AdmissionRequest<Pod> = match review.try_into() {
        Ok(r) => r,
        Err(e) => return invalid(e),
    };
    let asks = req
        .object
        .as_ref()
        .is_some_and(|p| p.annotations().contains_key(INJECT_ANNOTATION));
    if asks && !*state.ready.borrow() {
        return Json(
            AdmissionResponse::from(&req)
                .deny("dbward-operator is starting and cannot inject this pod yet; retry in a few seconds")
                .into_review(),
        );
    }
    let ns = pod_namespace(&req).unwrap_or_default().to_owned();
    let targets: Vec<ConnectionTarget> = state
        .connections
        .state()
        .iter()
        .filter(|c| c.namespace().as_deref() == Some(ns.as_str()))
        .filter_map(|c| ConnectionTarget::from_resource(c))
        .collect();
    let settings = state
        .settings
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let namespace = state.namespaces.get(&ObjectRef::new(&ns));
    let admission = admit_pod(
        &req,
        &InjectContext {
            settings: &settings,
            connections: &targets,
            namespace_labels: namespace.as_ref().and_then(|n| n.metadata.labels.as_ref()),
        },
    );
    let resp = admission.response;
    if let Some(level) = admission.pod_security
        && !req.dry_run
    {
        state
            .events
            .egress_lock_forbidden(&ns, namespace.as_deref(), level);
    }
    if asks && !req.dry_run {
        if resp.allowed {
            info!(namespace = %ns, pod = %req.name, "pod admitted with the dbward sidecar");
        } else {
            warn!(namespace = %ns, pod = %req.name, reason = %resp.result.message, "pod refused");
        }
    }
    Json(resp.into_review())
}

async fn mutate_approval_status(
    State(state): State<Arc<WebhookState>>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let req: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => return invalid(e),
    };
    let resp = review_approval_status(&req, &state.approval, SystemTime::now());
    if !req.dry_run && req.sub_resource.as_deref() == Some("status") {
        let user = req.user_info.username.as_deref().unwrap_or("(unknown)");
        if resp.allowed {
            info!(namespace = ?req.namespace, request = %req.name, %user, "approval request status change admitted");
        } else {
            warn!(namespace = ?req.namespace, request = %req.name, %user, reason = %resp.result.message, "approval request status change refused");
        }
    }
    Json(resp.into_review())
}

#[cfg(test)]
#[path = "webhook_tests.rs"]
mod tests;
