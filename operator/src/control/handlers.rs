//! The control API's HTTP handlers (see [`dbward_crds::wire`] for the calls).

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use dbward_crds::{
    ApprovalRequest, format_rfc3339,
    wire::{
        ApiError, ApprovalCreate, ApprovalExpire, ApprovalState, ApprovalTicket, GrantTake, GrantTaken,
        MAX_REQUEST_BODY, MAX_WAIT_SECONDS,
    },
};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
    runtime::reflector::ObjectRef,
};
use serde::Deserialize;
use tracing::{info, warn};

use super::{
    DEFAULT_WAIT, SharedState,
    approvals::{self as ar, USED_AT_ANNOTATION},
    auth::{AuthError, Caller, check_connections},
    config,
    server_version::{self as sv, ReportError},
};
use crate::reconcile::FIELD_MANAGER;

/// The control API's routes.
pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/v1/config", get(get_config))
        .route("/v1/approvals", post(create_approval))
        .route("/v1/approvals/{name}", get(get_approval))
        .route("/v1/approvals/{name}/expire", post(expire_approval))
        .route("/v1/grants", post(take_grant))
        .route("/v1/server-version", post(report_server_version))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY))
        .with_state(state)
}

/// An error answer: a status and a message for a person.
#[derive(Debug)]
pub struct Fail(StatusCode, String);

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

impl From<AuthError> for Fail {
    fn from(e: AuthError) -> Self {
        Fail(e.status(), e.to_string())
    }
}

impl From<ReportError> for Fail {
    fn from(e: ReportError) -> Self {
        Fail(e.status(), e.to_string())
    }
}

fn unavailable(what: impl std::fmt::Display) -> Fail {
    Fail(StatusCode::SERVICE_UNAVAILABLE, what.to_string())
}

type Answer<T> = Result<T, Fail>;

/// The verified caller, after the stores are ready.
async fn caller(state: &SharedState, headers: &HeaderMap) -> Answer<Caller> {
    if !*state.ready.borrow() {
        return Err(unavailable(
            "the operator is starting: its caches are not loaded yet",
        ));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::NoToken)?;
    Ok(state.auth.caller(token).await?)
}

fn wait_of(seconds: Option<u64>) -> Duration {
    seconds
        .map(|s| Duration::from_secs(s.min(MAX_WAIT_SECONDS)))
        .unwrap_or(DEFAULT_WAIT)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigQuery {
    connections: String,
    revision: Option<String>,
    wait_seconds: Option<u64>,
}

async fn get_config(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Query(q): Query<ConfigQuery>,
) -> Answer<Response> {
    let caller = caller(&state, &headers).await?;
    let asked: Vec<&str> = q
        .connections
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if asked.is_empty() {
        return Err(Fail(StatusCode::BAD_REQUEST, "connections is empty".into()));
    }
    check_connections(&caller.identity, &caller.injected, &asked)?;
    let deadline = tokio::time::Instant::now() + wait_of(q.wait_seconds);
    let mut changes = state.config_changes.subscribe();
    loop {
        changes.borrow_and_update();
        let cfg = build_config(&state, &caller, &asked).await?;
        if q.revision.as_deref() != Some(cfg.revision.as_str()) {
            return Ok(Json(cfg).into_response());
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return Err(unavailable("the operator is stopping")) },
            () = tokio::time::sleep_until(deadline) => return Ok(StatusCode::NOT_MODIFIED.into_response()),
            () = state.shutdown.cancelled() => return Err(unavailable("the operator is stopping; ask another replica")),
        }
    }
}

async fn build_config(
    state: &SharedState,
    caller: &Caller,
    asked: &[&str],
) -> Answer<dbward_crds::wire::SidecarConfig> {
    let who = &caller.identity;
    let (connections, policies, keys) =
        config::select(who, asked, &state.connections.state(), &state.policies.state())
            .map_err(|e| Fail(StatusCode::NOT_FOUND, e.to_string()))?;
    let api: Api<Secret> = Api::namespaced(state.client.clone(), &who.namespace);
    let mut secrets = BTreeMap::new();
    for name in keys.keys() {
        let s = api
            .get_opt(name)
            .await
            .map_err(|e| unavailable(format!("reading Secret {}/{name}: {e}", who.namespace)))?;
        secrets.insert(name.clone(), s);
    }
    // A missing Secret or key is the cluster's to fix; the sidecar keeps asking (503) and says why.
    let secrets = config::secret_data(&who.namespace, &keys, &secrets).map_err(unavailable)?;
    Ok(config::assemble(
        who.clone(),
        connections,
        secrets,
        policies,
        state.issuers(),
    ))
}

async fn create_approval(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Json(body): Json<ApprovalCreate>,
) -> Answer<Json<ApprovalTicket>> {
    let caller = caller(&state, &headers).await?;
    let who = &caller.identity;
    check_connections(who, &caller.injected, &[body.connection.as_str()])?;
    let now = SystemTime::now();
    if let Some(found) = ar::reusable(&state.approvals.state(), who, &body, now) {
        return Ok(Json(ticket(found, true)));
    }
    let name = ar::random_name().map_err(|_| unavailable("no random bytes for a request name"))?;
    let object =
        ar::new_request(who, &body, &name, now).map_err(|e| Fail(StatusCode::BAD_REQUEST, e.to_string()))?;
    let api: Api<ApprovalRequest> = Api::namespaced(state.client.clone(), &who.namespace);
    let created = api
        .create(&PostParams::default(), &object)
        .await
        .map_err(|e| unavailable(format!("creating ApprovalRequest {}/{name}: {e}", who.namespace)))?;
    info!(
        namespace = %who.namespace, request = %name, pod = %who.pod, connection = %body.connection,
        rule = %body.rule, "approval requested"
    );
    Ok(Json(ticket(&created, false)))
}

fn ticket(ar: &ApprovalRequest, reused: bool) -> ApprovalTicket {
    use kube::ResourceExt;
    ApprovalTicket {
        name: ar.name_any(),
        namespace: ar.namespace().unwrap_or_default(),
        reused,
        expires_at: ar.spec.expires_at.clone(),
    }
}

/// The request as the store has it, else as the API server has it (the store may not have seen a
/// request created a moment ago); a request of another service account is not found.
async fn find(state: &SharedState, caller: &Caller, name: &str) -> Answer<ApprovalRequest> {
    let who = &caller.identity;
    let not_found = || {
        Fail(
            StatusCode::NOT_FOUND,
            format!(
                "no approval request {name:?} of this pod's service account in {}",
                who.namespace
            ),
        )
    };
    let key = ObjectRef::<ApprovalRequest>::new(name).within(&who.namespace);
    let found = match state.approvals.get(&key) {
        Some(a) => Some((*a).clone()),
        None => {
            let api: Api<ApprovalRequest> = Api::namespaced(state.client.clone(), &who.namespace);
            api.get_opt(name)
                .await
                .map_err(|e| unavailable(format!("reading ApprovalRequest {name}: {e}")))?
        }
    };
    match found {
        Some(a) if ar::owned_by(&a, who) => Ok(a),
        _ => Err(not_found()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WaitQuery {
    wait_seconds: Option<u64>,
}

async fn get_approval(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Answer<Json<ApprovalState>> {
    let caller = caller(&state, &headers).await?;
    let deadline = tokio::time::Instant::now() + wait_of(q.wait_seconds);
    let mut changes = state.approval_changes.subscribe();
    loop {
        changes.borrow_and_update();
        let found = find(&state, &caller, &name).await?;
        if ar::phase(&found).is_final() {
            return Ok(Json(ar::state_of(&found)));
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return Err(unavailable("the operator is stopping")) },
            () = tokio::time::sleep_until(deadline) => return Ok(Json(ar::state_of(&found))),
            () = state.shutdown.cancelled() => return Ok(Json(ar::state_of(&found))),
        }
    }
}

async fn expire_approval(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(body): Json<ApprovalExpire>,
) -> Answer<Json<ApprovalState>> {
    let caller = caller(&state, &headers).await?;
    let found = find(&state, &caller, &name).await?;
    if ar::phase(&found).is_final() {
        return Ok(Json(ar::state_of(&found)));
    }
    let reason: String = body.reason.chars().take(1024).collect();
    let patch = serde_json::json!({
        "status": {
            "phase": "Expired",
            "reason": reason,
            "decidedAt": format_rfc3339(SystemTime::now()),
        }
    });
    let api: Api<ApprovalRequest> = Api::namespaced(state.client.clone(), &caller.identity.namespace);
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(updated) => Ok(Json(ar::state_of(&updated))),
        // Decided by someone at the same moment: the API refuses to change a final phase; report it.
        Err(kube::Error::Api(e)) if e.code == 422 || e.code == 409 || e.code == 400 => {
            let now = find(&state, &caller, &name).await?;
            Ok(Json(ar::state_of(&now)))
        }
        Err(e) => Err(unavailable(format!("expiring ApprovalRequest {name}: {e}"))),
    }
}

async fn take_grant(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Json(body): Json<GrantTake>,
) -> Answer<Json<GrantTaken>> {
    let caller = caller(&state, &headers).await?;
    let who = &caller.identity;
    let all = state.approvals.state();
    let window = Duration::from_secs(body.window_seconds);
    let candidates = ar::grants(
        &all,
        who,
        &body.subject,
        &body.fingerprint,
        window,
        body.once,
        SystemTime::now(),
    );
    let api: Api<ApprovalRequest> = Api::namespaced(state.client.clone(), &who.namespace);
    for found in candidates {
        use kube::ResourceExt;
        let name = found.name_any();
        if !body.once {
            return Ok(Json(GrantTaken { name: Some(name) }));
        }
        // Marking the grant used is conditional on the version read: of two sidecars taking it at once,
        // one gets a conflict and moves on.
        let patch = serde_json::json!({
            "metadata": {
                "resourceVersion": found.resource_version(),
                "annotations": { USED_AT_ANNOTATION: format_rfc3339(SystemTime::now()) },
            }
        });
        match api
            .patch(
                &name,
                &PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..PatchParams::default()
                },
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => return Ok(Json(GrantTaken { name: Some(name) })),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => {
                warn!(request = %name, error = %e, "cannot mark an approval grant used");
                return Err(unavailable(format!("marking ApprovalRequest {name} used: {e}")));
            }
        }
    }
    Ok(Json(GrantTaken { name: None }))
}

/// `POST /v1/server-version`: the body is read raw so that a bad one is a 400 with a message, after the
/// caller is known. 204 once the connection's status shows the version.
async fn report_server_version(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer<StatusCode> {
    let caller = caller(&state, &headers).await?;
    let report = sv::parse(&body)?;
    check_connections(&caller.identity, &caller.injected, &[report.connection.as_str()])?;
    sv::record(&state.client, &state.connections, &caller.identity, &report).await?;
    Ok(StatusCode::NO_CONTENT)
}
