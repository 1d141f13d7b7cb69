//! A stand-in for the Kubernetes API server, as a tower service behind a real `kube::Client`: it
//! answers TokenReviews by verifying real ES256-signed service-account tokens, serves Pods and Secrets
//! from maps, keeps ApprovalRequests (create, get, merge-patch of the object and of its status),
//! mirroring each write into the reflector store the control API reads, as the watch would, and takes
//! patches of DatabaseConnections' status, recording each.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use dbward_crds::ApprovalRequest;
use dbward_operator::control::ControlState;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::{
    client::Body,
    runtime::{reflector::store::Writer, watcher},
};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// What the fake API server holds.
pub struct World {
    pub pods: BTreeMap<(String, String), Pod>,
    pub secrets: BTreeMap<(String, String), Secret>,
    pub approvals: BTreeMap<(String, String), Value>,
    /// DatabaseConnections, as the API server has them (the test mirrors them into the store).
    pub connections: BTreeMap<(String, String), Value>,
    /// Every patch of a DatabaseConnection's status: path and query, and the body.
    pub status_patches: Vec<(String, Value)>,
    pub approval_writer: Writer<ApprovalRequest>,
    pub state: Option<Arc<ControlState>>,
    pub resource_version: u64,
    /// Every request seen, as "METHOD path".
    pub log: Vec<String>,
}

/// The signing key of the fake cluster's service-account issuer.
pub struct Issuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Issuer {
    pub fn new() -> Self {
        let key = rcgen::KeyPair::generate().expect("key");
        Self {
            encoding: EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).expect("encoding key"),
            decoding: DecodingKey::from_ec_pem(key.public_key_pem().as_bytes()).expect("decoding key"),
        }
    }

    /// A projected token as the kubelet makes it: bound to the pod `pod` (uid `uid`) of service account
    /// `sa` in `ns`, for `aud`, expiring in `ttl` seconds (negative: already expired).
    pub fn token(&self, ns: &str, sa: &str, pod: Option<(&str, &str)>, aud: &str, ttl: i64) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let mut k8s = json!({"namespace": ns, "serviceaccount": {"name": sa, "uid": "sa-uid"}});
        if let Some((name, uid)) = pod {
            k8s["pod"] = json!({"name": name, "uid": uid});
        }
        let claims = json!({
            "iss": ISSUER, "sub": format!("system:serviceaccount:{ns}:{sa}"), "aud": [aud],
            "iat": now, "nbf": now - 5, "exp": now + ttl, "kubernetes.io": k8s,
        });
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.encoding).expect("sign")
    }

    fn review(&self, token: &str, audiences: &[String]) -> Value {
        let mut v = Validation::new(Algorithm::ES256);
        v.set_issuer(&[ISSUER]);
        v.set_audience(audiences);
        match jsonwebtoken::decode::<Value>(token, &self.decoding, &v) {
            Ok(data) => {
                let c = data.claims;
                let mut extra = serde_json::Map::new();
                if let Some(pod) = c["kubernetes.io"].get("pod") {
                    extra.insert(
                        "authentication.kubernetes.io/pod-name".into(),
                        json!([pod["name"]]),
                    );
                    extra.insert("authentication.kubernetes.io/pod-uid".into(), json!([pod["uid"]]));
                }
                json!({"authenticated": true, "audiences": audiences,
                       "user": {"username": c["sub"], "uid": "sa-uid", "groups": ["system:serviceaccounts"], "extra": extra}})
            }
            Err(e) => json!({"authenticated": false, "error": e.to_string()}),
        }
    }
}

fn respond(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

fn status(code: u16, reason: &str, message: &str) -> Response<Full<Bytes>> {
    respond(
        StatusCode::from_u16(code).expect("code"),
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code}),
    )
}

/// Serves one request.
pub async fn handle(
    world: Arc<Mutex<World>>,
    issuer: Arc<Issuer>,
    req: Request<Body>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect_bytes().await.unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let mut w = world.lock().expect("world");
    w.log.push(format!("{} {}", parts.method, path));
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let resp = match (&parts.method, seg.as_slice()) {
        (&Method::POST, ["apis", "authentication.k8s.io", "v1", "tokenreviews"]) => {
            let review: Value = serde_json::from_slice(&body).expect("review json");
            let token = review["spec"]["token"].as_str().unwrap_or_default();
            let auds: Vec<String> =
                serde_json::from_value(review["spec"]["audiences"].clone()).unwrap_or_default();
            let mut out = review.clone();
            out["status"] = issuer.review(token, &auds);
            respond(StatusCode::CREATED, &out)
        }
        (&Method::GET, ["api", "v1", "namespaces", ns, "pods", name]) => {
            match w.pods.get(&((*ns).to_owned(), (*name).to_owned())) {
                Some(p) => respond(StatusCode::OK, &serde_json::to_value(p).expect("pod")),
                None => status(404, "NotFound", &format!("pods \"{name}\" not found")),
            }
        }
        (&Method::GET, ["api", "v1", "namespaces", ns, "secrets", name]) => {
            match w.secrets.get(&((*ns).to_owned(), (*name).to_owned())) {
                Some(s) => respond(StatusCode::OK, &serde_json::to_value(s).expect("secret")),
                None => status(404, "NotFound", &format!("secrets \"{name}\" not found")),
            }
        }
        (
            &Method::POST,
            [
                "apis",
                "dbward.dev",
                "v1alpha1",
                "namespaces",
                ns,
                "approvalrequests",
            ],
        ) => {
            let mut obj: Value = serde_json::from_slice(&body).expect("approval json");
            let name = obj["metadata"]["name"].as_str().expect("name").to_owned();
            let key = ((*ns).to_owned(), name.clone());
            if w.approvals.contains_key(&key) {
                status(409, "AlreadyExists", "exists")
            } else {
                w.resource_version += 1;
                obj["metadata"]["resourceVersion"] = json!(w.resource_version.to_string());
                obj["metadata"]["creationTimestamp"] = json!(dbward_crds::format_rfc3339(SystemTime::now()));
                obj.as_object_mut().expect("object").remove("status");
                w.approvals.insert(key, obj.clone());
                w.mirror(&obj);
                respond(StatusCode::CREATED, &obj)
            }
        }
        (
            &Method::GET,
            [
                "apis",
                "dbward.dev",
                "v1alpha1",
                "namespaces",
                ns,
                "approvalrequests",
                name,
            ],
        ) => match w.approvals.get(&((*ns).to_owned(), (*name).to_owned())) {
            Some(o) => respond(StatusCode::OK, o),
            None => status(404, "NotFound", "not found"),
        },
        (
            &Method::PATCH,
            [
                "apis",
                "dbward.dev",
                "v1alpha1",
                "namespaces",
                ns,
                "approvalrequests",
                name,
                rest @ ..,
            ],
        ) => {
            let patch: Value = serde_json::from_slice(&body).expect("patch json");
            let key = ((*ns).to_owned(), (*name).to_owned());
            let rv = w.resource_version + 1;
            match w.approvals.get_mut(&key) {
                None => status(404, "NotFound", "not found"),
                Some(obj) => {
                    let wanted_rv = patch["metadata"]["resourceVersion"].as_str();
                    let final_phase = obj["status"]["phase"].as_str().is_some_and(|p| p != "Pending");
                    if wanted_rv.is_some_and(|v| Some(v) != obj["metadata"]["resourceVersion"].as_str()) {
                        status(409, "Conflict", "the object has been modified")
                    } else if rest == ["status"] && final_phase {
                        status(422, "Invalid", "the request is already decided")
                    } else {
                        let mut patch = patch.clone();
                        if rest == ["status"] {
                            patch = json!({"status": patch["status"]});
                        } else {
                            patch.as_object_mut().expect("patch").remove("status");
                        }
                        json_patch::merge(obj, &patch);
                        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                        let obj = obj.clone();
                        w.resource_version = rv;
                        w.mirror(&obj);
                        respond(StatusCode::OK, &obj)
                    }
                }
            }
        }
        (
            &Method::PATCH,
            [
                "apis",
                "dbward.dev",
                "v1alpha1",
                "namespaces",
                ns,
                "databaseconnections",
                name,
                "status",
            ],
        ) => {
            let patch: Value = serde_json::from_slice(&body).expect("patch json");
            let at = parts
                .uri
                .path_and_query()
                .map(ToString::to_string)
                .unwrap_or_default();
            w.status_patches.push((at, patch.clone()));
            let rv = w.resource_version + 1;
            match w.connections.get_mut(&((*ns).to_owned(), (*name).to_owned())) {
                None => status(
                    404,
                    "NotFound",
                    &format!("databaseconnections.dbward.dev \"{name}\" not found"),
                ),
                Some(obj) => {
                    json_patch::merge(obj, &json!({"status": patch["status"]}));
                    obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                    let obj = obj.clone();
                    w.resource_version = rv;
                    respond(StatusCode::OK, &obj)
                }
            }
        }
        _ => status(
            404,
            "NotFound",
            &format!("the fake API server has no {} {path}", parts.method),
        ),
    };
    Ok(resp)
}

impl World {
    pub fn new(approval_writer: Writer<ApprovalRequest>) -> Self {
        Self {
            pods: BTreeMap::new(),
            secrets: BTreeMap::new(),
            approvals: BTreeMap::new(),
            connections: BTreeMap::new(),
            status_patches: Vec::new(),
            approval_writer,
            state: None,
            resource_version: 1,
            log: Vec::new(),
        }
    }

    /// What the ApprovalRequest watch would deliver after a write.
    pub fn mirror(&mut self, obj: &Value) {
        let typed: ApprovalRequest = serde_json::from_value(obj.clone()).expect("typed approval");
        self.approval_writer
            .apply_watcher_event(&watcher::Event::Apply(typed));
        if let Some(s) = &self.state {
            s.approvals_changed();
        }
    }

    /// A person decides, as `kubectl patch --subresource=status` would after the webhook stamped it.
    pub fn decide(&mut self, ns: &str, name: &str, phase: &str, by: &str) {
        let rv = self.resource_version + 1;
        let obj = self
            .approvals
            .get_mut(&(ns.to_owned(), name.to_owned()))
            .expect("request exists");
        obj["status"] = json!({"phase": phase, "decidedBy": by, "decidedAt": dbward_crds::format_rfc3339(SystemTime::now())});
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let obj = obj.clone();
        self.resource_version = rv;
        self.mirror(&obj);
    }
}
