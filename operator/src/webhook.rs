//! The webhook server's routes (`:9443`): decode the AdmissionReview, look up what the decision needs,
//! call the pure functions of [`crate::admission`], answer.
//!
//! Until the operator's caches are loaded, pods asking for injection are refused with a message (the
//! webhook's failurePolicy is Fail anyway; a clear message is better than a timeout). Pods not asking
//! for injection always pass.

use std::{
    sync::{Arc, RwLock},
    time::SystemTime,
};

use axum::{Json, Router, extract::State, routing::post};
use dbward_crds::DatabaseConnection;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    ResourceExt,
    core::{
        DynamicObject,
        admission::{AdmissionRequest, AdmissionResponse, AdmissionReview},
    },
    runtime::reflector::Store,
};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::admission::{
    ApprovalContext, ConnectionTarget, InjectContext, InjectSettings, pod_namespace, review_approval_status,
    review_pod, spec::INJECT_ANNOTATION,
};

/// What the webhooks read.
pub struct WebhookState {
    /// Injection settings; the operator CA in them changes when the CA is renewed.
    pub settings: RwLock<InjectSettings>,
    pub approval: ApprovalContext,
    pub connections: Store<DatabaseConnection>,
    pub ready: watch::Receiver<bool>,
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
    let resp = review_pod(
        &req,
        &InjectContext {
            settings: &settings,
            connections: &targets,
        },
    );
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
