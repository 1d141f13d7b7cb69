//! The CRDs: the committed YAML matches the types, every field is documented, and the CEL rules accept
//! and refuse what they should (evaluated with kube-cel, the evaluator behind kube's `cel` feature).
#![cfg(feature = "kube")]
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use dbward_crds::{AccessPolicy, ApprovalRequest, DatabaseConnection, crdgen};
use kube::CustomResourceExt;
use kube_cel::Validator;
use serde_json::{Value, json};

/// The workspace root, and the two directories (relative to it) that hold the generated CRDs.
fn dirs() -> (PathBuf, [&'static str; 2]) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    (root, ["crds", "charts/dbward/crds"])
}

/// `crds/*.yaml` and `charts/dbward/crds/*.yaml` are what the types generate. With
/// `DBWARD_UPDATE_CRDS=1` the test rewrites them instead.
#[test]
fn committed_yaml_matches_the_types() {
    let update = std::env::var_os("DBWARD_UPDATE_CRDS").is_some_and(|v| v == "1");
    let (root, dirs) = dirs();
    let mut stale = Vec::new();
    for (file, crd) in crdgen::all() {
        let want = crdgen::render(&crd).unwrap();
        for dir in dirs {
            let path = root.join(dir).join(file);
            if update {
                std::fs::create_dir_all(root.join(dir)).unwrap();
                std::fs::write(&path, &want).unwrap();
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(want.as_str()) {
                stale.push(format!("{dir}/{file}"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "generated CRDs differ from the committed files:\n  {}\nthe API types changed; regenerate with\n  \
         DBWARD_UPDATE_CRDS=1 cargo test -p dbward-crds --test crds\nand commit the result",
        stale.join("\n  ")
    );
}

#[test]
fn generated_yaml_reads_back_as_the_same_crd() {
    for (file, crd) in crdgen::all() {
        let yaml = crdgen::render(&crd).unwrap();
        assert!(yaml.starts_with(crdgen::HEADER), "{file}");
        let back: Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(back, serde_json::to_value(&crd).unwrap(), "{file}");
    }
    let all = crdgen::render_all().unwrap();
    assert_eq!(
        all.matches("\n---\n").count() + usize::from(all.starts_with("---\n")),
        3
    );
}

#[test]
fn names_scope_and_columns() {
    let cases = [
        (
            DatabaseConnection::crd(),
            "databaseconnections.dbward.dev",
            "dbconn",
            vec!["Host", "Database", "Ready"],
        ),
        (
            AccessPolicy::crd(),
            "accesspolicies.dbward.dev",
            "dbpolicy",
            vec!["Connections", "Enforcement", "Valid", "Active"],
        ),
        (
            ApprovalRequest::crd(),
            "approvalrequests.dbward.dev",
            "dbapproval",
            vec!["Connection", "Requester", "Phase"],
        ),
    ];
    for (crd, name, short, columns) in cases {
        assert_eq!(crd.metadata.name.as_deref(), Some(name));
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&[short.to_owned()][..])
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["dbward".to_owned()][..])
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version.subresources.as_ref().unwrap().status.is_some(),
            "{name} has a status subresource"
        );
        let printed: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        for column in columns.iter().chain(&["Age"]) {
            assert!(printed.contains(column), "{name} prints {column}: {printed:?}");
        }
    }
}

fn schema_of(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Value {
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .unwrap()
        .open_api_v3_schema
        .as_ref()
        .unwrap();
    serde_json::to_value(schema).unwrap()
}

/// Every property of every schema has a description: it is what `kubectl explain` shows.
#[test]
fn every_field_is_documented() {
    fn walk(path: &str, schema: &Value, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (name, prop) in props {
                let here = format!("{path}.{name}");
                let documented = prop
                    .get("description")
                    .and_then(Value::as_str)
                    .is_some_and(|d| !d.trim().is_empty());
                if !documented && !["metadata", "apiVersion", "kind"].contains(&name.as_str()) {
                    missing.push(here.clone());
                }
                walk(&here, prop, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    for (file, crd) in crdgen::all() {
        walk(file, &schema_of(&crd), &mut missing);
    }
    assert!(missing.is_empty(), "fields without a description: {missing:#?}");
}

#[test]
fn schema_carries_cel_rules_and_defaults() {
    let policy = schema_of(&AccessPolicy::crd());
    let spec = &policy["properties"]["spec"];
    let rules = |v: &Value| -> Vec<String> {
        v["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r["rule"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        rules(spec)
            .iter()
            .any(|r| r.contains("timestamp(self.validUntil) > timestamp(self.notBefore)"))
    );
    assert!(rules(&spec["properties"]["subjects"]["items"])[0].contains("has(self.serviceAccount)"));
    assert_eq!(rules(&spec["properties"]["masking"]["items"]).len(), 6);
    assert_eq!(spec["properties"]["enforcement"]["default"], "enforce");
    assert_eq!(
        spec["properties"]["approval"]["properties"]["timeout"]["default"],
        "10m"
    );

    let approval = schema_of(&ApprovalRequest::crd());
    assert_eq!(rules(&approval["properties"]["spec"]), ["self == oldSelf"]);
    assert_eq!(
        approval["properties"]["status"]["properties"]["phase"]["default"],
        "Pending"
    );

    let conn = schema_of(&DatabaseConnection::crd());
    let spec = &conn["properties"]["spec"]["properties"];
    assert_eq!(spec["tls"]["properties"]["mode"]["default"], "verify-full");
    assert_eq!(spec["port"]["default"], 5432);
    assert_eq!(spec["localPort"]["default"], 5432);
    assert_eq!(spec["egressLock"]["default"], true);
    assert_eq!(spec["identity"]["properties"]["allowAmbient"]["default"], true);
    assert!(
        spec["host"]["description"]
            .as_str()
            .unwrap()
            .contains("Host name or IP address")
    );
}

/// Run the CRD's CEL rules on an object the way the API server would; returns the failure messages.
fn cel(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    object: Value,
    old: Option<Value>,
) -> Vec<String> {
    match Validator::new().validate(&schema_of(crd), &object, old.as_ref()) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec().into_iter().map(|e| e.to_string()).collect(),
    }
}

fn policy(spec: Value) -> Value {
    json!({"apiVersion": "dbward.dev/v1alpha1", "kind": "AccessPolicy", "metadata": {"name": "p"}, "spec": spec})
}

#[test]
fn cel_rules_on_access_policies() {
    let crd = AccessPolicy::crd();
    let base = |subject: Value, masking: Value, window: Value| {
        let mut spec = json!({
            "connections": ["orders"],
            "subjects": [subject],
            "rules": [{"action": "allow", "operations": ["select"]}],
            "masking": [masking],
        });
        spec.as_object_mut()
            .unwrap()
            .extend(window.as_object().unwrap().clone());
        policy(spec)
    };
    let sa = json!({"serviceAccount": {"name": "agent"}});
    let cols = json!({"columns": ["public.customers.email"], "strategy": "email"});
    let none = json!({});
    assert_eq!(
        cel(&crd, base(sa.clone(), cols.clone(), none.clone()), None),
        Vec::<String>::new()
    );

    let cases: Vec<(Value, Value, Value, &str)> = vec![
        (
            json!({}),
            cols.clone(),
            none.clone(),
            "exactly one of serviceAccount, group or oidc",
        ),
        (
            json!({"group": "a", "serviceAccount": {"name": "x"}}),
            cols.clone(),
            none.clone(),
            "exactly one of serviceAccount",
        ),
        (
            sa.clone(),
            json!({"strategy": "null"}),
            none.clone(),
            "exactly one of columns or detector",
        ),
        (
            sa.clone(),
            json!({"columns": ["a.b.c"], "detector": "email", "strategy": "null"}),
            none.clone(),
            "exactly one of columns or detector",
        ),
        (
            sa.clone(),
            json!({"detector": "regex", "strategy": "redact"}),
            none.clone(),
            "detector regex needs a pattern",
        ),
        (
            sa.clone(),
            json!({"detector": "email", "pattern": "x", "strategy": "redact"}),
            none.clone(),
            "pattern is only used with detector regex",
        ),
        (
            sa.clone(),
            json!({"detector": "creditCard", "strategy": "partial"}),
            none.clone(),
            "partial needs keepFirst or keepLast",
        ),
        (
            sa.clone(),
            json!({"detector": "ssn", "strategy": "hash", "keepLast": 4}),
            none.clone(),
            "only used with strategy partial",
        ),
        (
            sa.clone(),
            json!({"detector": "ssn", "strategy": "null", "replacement": "x"}),
            none.clone(),
            "replacement is only used",
        ),
        (
            sa.clone(),
            cols.clone(),
            json!({"notBefore": "2026-05-02T00:00:00Z", "validUntil": "2026-05-01T00:00:00Z"}),
            "validUntil must be after notBefore",
        ),
    ];
    for (subject, masking, window, want) in cases {
        let got = cel(&crd, base(subject.clone(), masking.clone(), window.clone()), None);
        assert!(
            got.len() == 1 && got[0].contains(want),
            "{subject} {masking} {window}: want {want:?}, got {got:?}"
        );
    }

    let ok = [
        (
            json!({"group": "dba"}),
            json!({"detector": "regex", "pattern": "k-[0-9]+", "strategy": "redact", "replacement": "#"}),
            none.clone(),
        ),
        (
            json!({"oidc": {"issuer": "https://i", "claim": "sub", "values": ["a"]}}),
            json!({"detector": "creditCard", "strategy": "partial", "keepLast": 4}),
            json!({"validUntil": "2026-05-01T00:00:00Z"}),
        ),
        (
            sa.clone(),
            cols.clone(),
            json!({"notBefore": "2026-05-01T00:00:00Z", "validUntil": "2026-05-01T02:00:00+01:00"}),
        ),
    ];
    for (subject, masking, window) in ok {
        assert_eq!(
            cel(&crd, base(subject.clone(), masking.clone(), window), None),
            Vec::<String>::new(),
            "{subject} {masking}"
        );
    }
}

#[test]
fn cel_rules_on_approval_requests() {
    let crd = ApprovalRequest::crd();
    let object = |statement: &str, phase: &str, decided_by: Option<&str>| {
        let mut status = json!({"phase": phase});
        if let Some(who) = decided_by {
            status["decidedBy"] = json!(who);
        }
        json!({
            "apiVersion": "dbward.dev/v1alpha1", "kind": "ApprovalRequest", "metadata": {"name": "r"},
            "spec": {
                "connection": "orders", "requester": {"subject": "system:serviceaccount:shop:agent"},
                "statement": statement, "fingerprint": "f1", "rule": "p/r", "expiresAt": "2026-05-01T09:10:00Z",
            },
            "status": status,
        })
    };
    let pending = object("DELETE FROM orders", "Pending", None);
    assert!(cel(&crd, pending.clone(), None).is_empty());
    let approved = object("DELETE FROM orders", "Approved", Some("alice"));
    assert_eq!(
        cel(&crd, approved.clone(), Some(pending.clone())),
        Vec::<String>::new()
    );

    let edited = object("DROP TABLE orders", "Pending", None);
    let got = cel(&crd, edited, Some(pending.clone()));
    assert!(got.len() == 1 && got[0].contains("spec is immutable"), "{got:?}");

    let reopened = object("DELETE FROM orders", "Pending", Some("alice"));
    let got = cel(&crd, reopened, Some(approved.clone()));
    assert!(got.len() == 1 && got[0].contains("already decided"), "{got:?}");
    let flipped = object("DELETE FROM orders", "Denied", Some("mallory"));
    assert_eq!(cel(&crd, flipped, Some(approved)).len(), 1);
}
