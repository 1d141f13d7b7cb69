//! The Kubernetes objects the tests create, built from JSON as one would write them in YAML. Every one
//! carries the run's label ([`RUN_LABEL`]), so that what an aborted run leaves can be found.

use std::collections::BTreeMap;

use dbward_crds::{AccessPolicy, DatabaseConnection};
use k8s_openapi::{
    api::core::v1::{Namespace, Pod, Secret, ServiceAccount},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The label every object of a run carries, with the run's suffix.
pub const RUN_LABEL: &str = "dbward.dev/e2e-run";
/// `app.kubernetes.io/managed-by` of every object the tests make.
pub const MANAGED_BY: &str = "dbward-e2e";
/// The label that opts a namespace in to injection.
pub const INJECTION_LABEL: &str = "dbward.dev/injection";
/// A node selector no node matches: the tests' pods stay Pending even on a cluster with nodes.
pub const NO_NODE: (&str, &str) = ("dbward.dev/e2e-no-such-node", "true");
/// The image of the tests' app containers (never pulled: the pods are never scheduled).
pub const APP_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// `value` as a `T`, or a panic naming `what`.
pub fn from_json<T: DeserializeOwned>(what: &str, value: Value) -> T {
    serde_json::from_value(value).unwrap_or_else(|e| panic!("{what} is not a valid object: {e}"))
}

/// The labels of a run's objects.
pub fn labels(run: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (RUN_LABEL.to_owned(), run.to_owned()),
        ("app.kubernetes.io/managed-by".to_owned(), MANAGED_BY.to_owned()),
    ])
}

/// Adds the run's labels to the JSON object `obj` (keeping its own).
pub fn label_json(obj: &mut Value, run: &str) {
    let meta = &mut obj["metadata"];
    if !meta["labels"].is_object() {
        meta["labels"] = json!({});
    }
    for (k, v) in labels(run) {
        meta["labels"][k] = Value::String(v);
    }
}

fn meta(name: &str, namespace: Option<&str>, run: &str) -> Value {
    let mut m = json!({"name": name, "labels": labels(run)});
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    m
}

/// A namespace; `opted_in` labels it for injection. Pod Security admission is told to admit anything
/// (the egress lock is root with NET_ADMIN), whatever the cluster's default level.
pub fn namespace(name: &str, run: &str, opted_in: bool) -> Namespace {
    let mut obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta(name, None, run)});
    obj["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = json!("privileged");
    if opted_in {
        obj["metadata"]["labels"][INJECTION_LABEL] = json!("enabled");
    }
    from_json("the namespace", obj)
}

/// A ServiceAccount (clusters without kube-controller-manager have not even `default`).
pub fn service_account(namespace: &str, name: &str, run: &str) -> ServiceAccount {
    from_json(
        "the service account",
        json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": meta(name, Some(namespace), run),
            "automountServiceAccountToken": false,
        }),
    )
}

/// A Secret holding `data` (as `stringData`).
pub fn secret(namespace: &str, name: &str, run: &str, data: &[(&str, &str)]) -> Secret {
    let data: BTreeMap<&str, &str> = data.iter().copied().collect();
    from_json(
        "the secret",
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": meta(name, Some(namespace), run),
            "type": "Opaque",
            "stringData": data,
        }),
    )
}

/// A DatabaseConnection with `spec`.
pub fn connection(namespace: &str, name: &str, run: &str, spec: Value) -> DatabaseConnection {
    from_json(
        "the DatabaseConnection",
        json!({
            "apiVersion": dbward_crds::API_VERSION, "kind": "DatabaseConnection",
            "metadata": meta(name, Some(namespace), run),
            "spec": spec,
        }),
    )
}

/// An AccessPolicy with `spec`.
pub fn policy(namespace: &str, name: &str, run: &str, spec: Value) -> AccessPolicy {
    from_json(
        "the AccessPolicy",
        json!({
            "apiVersion": dbward_crds::API_VERSION, "kind": "AccessPolicy",
            "metadata": meta(name, Some(namespace), run),
            "spec": spec,
        }),
    )
}

/// A pod of `service_account` with one app container and `annotations`, which no node will run.
pub fn pod(
    namespace: &str,
    name: &str,
    run: &str,
    service_account: &str,
    annotations: &[(&str, &str)],
) -> Pod {
    let annotations: BTreeMap<&str, &str> = annotations.iter().copied().collect();
    let mut metadata = meta(name, Some(namespace), run);
    metadata["annotations"] = json!(annotations);
    from_json(
        "the pod",
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": metadata,
            "spec": {
                "serviceAccountName": service_account,
                "automountServiceAccountToken": false,
                "nodeSelector": {NO_NODE.0: NO_NODE.1},
                "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "app", "image": APP_IMAGE}],
            },
        }),
    )
}

/// The CRDs of the repository's `crds/*.yaml`, as `kubectl apply -f crds/` would install them.
pub fn repository_crds() -> Vec<CustomResourceDefinition> {
    let dir = crate::workspace_root().join("crds");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no CRDs in {}", dir.display());
    files
        .iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let what = path.display().to_string();
            crate::tools::parse_yaml_documents(&text, &what)
                .into_iter()
                .map(move |doc| from_json::<CustomResourceDefinition>(&what, doc))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_crds_read_as_crds() {
        let crds = repository_crds();
        let mut names: Vec<_> = crds.iter().filter_map(|c| c.metadata.name.clone()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "accesspolicies.dbward.dev",
                "approvalrequests.dbward.dev",
                "databaseconnections.dbward.dev"
            ]
        );
        // What the API server needs of them survived YAML → JSON: a schema, with its CEL rules.
        for c in &crds {
            assert_eq!(c.spec.group, dbward_crds::GROUP);
            let schema = c.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref());
            assert!(
                schema.is_some_and(|s| s.properties.is_some()),
                "{:?}",
                c.metadata.name
            );
        }
        // The YAML says `enum: [... "null" ...]` for a masking strategy: it must stay a string.
        let policy = serde_json::to_string(&crds).unwrap_or_default();
        assert!(
            policy.contains("\"null\""),
            "the strategy `null` was read as a YAML null"
        );
    }

    #[test]
    fn objects_carry_the_run_label() {
        let p = pod("ns", "p", "abc", "app", &[("dbward.dev/inject", "orders")]);
        assert_eq!(p.metadata.labels.unwrap_or_default()[RUN_LABEL], "abc");
        assert_eq!(
            p.metadata.annotations.unwrap_or_default()["dbward.dev/inject"],
            "orders"
        );
        let n = namespace("n", "abc", true);
        assert_eq!(n.metadata.labels.unwrap_or_default()[INJECTION_LABEL], "enabled");
        let s = secret("ns", "s", "abc", &[("username", "u")]);
        assert_eq!(s.string_data.unwrap_or_default()["username"], "u");
        let c = connection(
            "ns",
            "orders",
            "abc",
            json!({
                "host": "db", "port": 5432, "database": "orders", "credentialsSecretRef": {"name": "s"},
            }),
        );
        assert_eq!(c.spec.host, "db");
        // What a server-side apply sends names its kind.
        let p = serde_json::to_value(policy(
            "ns",
            "p",
            "abc",
            json!({
                "connections": ["db"], "subjects": [{"group": "g"}],
                "rules": [{"action": "allow", "operations": ["select"]}],
            }),
        ))
        .unwrap_or_default();
        assert_eq!(
            (&p["apiVersion"], &p["kind"]),
            (&json!("dbward.dev/v1alpha1"), &json!("AccessPolicy"))
        );
        assert_eq!(p["metadata"]["labels"][RUN_LABEL], "abc");
    }
}
