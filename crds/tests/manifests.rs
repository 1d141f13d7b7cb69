//! Realistic manifests read as the sidecar reads its config file (`Document<S>`, no Kubernetes crates) and,
//! with the `kube` feature, as the operator reads them: defaults, round trips, and typos refused.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, UNIX_EPOCH};

use dbward_crds::{
    AccessPolicySpec, Action, ApprovalMode, ApprovalPhase, ApprovalRequestSpec, ApprovalRequestStatus,
    DatabaseConnectionSpec, Detector, Document, Enforcement, MaskStrategy, Operation, ResultsRecording,
    TlsMode, document::kind_of,
};
use serde::{Serialize, de::DeserializeOwned};

const CONNECTION: &str = include_str!("manifests/connection.yaml");
const CONNECTION_MINIMAL: &str = include_str!("manifests/connection-minimal.yaml");
const POLICY: &str = include_str!("manifests/policy.yaml");
const APPROVAL: &str = include_str!("manifests/approval.yaml");

fn read<T: DeserializeOwned>(yaml: &str) -> T {
    serde_saphyr::from_str(yaml).unwrap()
}

/// YAML -> T -> YAML -> T gives the same T, and the JSON form matches the source document.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(yaml: &str) -> T {
    let first: T = read(yaml);
    let again: T = read(&serde_saphyr::to_string(&first).unwrap());
    assert_eq!(first, again);
    let source: serde_json::Value = read(yaml);
    assert_eq!(
        serde_json::to_value(&first).unwrap(),
        source,
        "serializing loses or adds nothing"
    );
    first
}

#[test]
fn full_connection() {
    let doc: Document<DatabaseConnectionSpec> = round_trip(CONNECTION);
    doc.validate().unwrap();
    assert_eq!(doc.metadata.name, "orders");
    assert_eq!(doc.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!(doc.metadata.labels["team"], "payments");
    let spec = &doc.spec;
    assert_eq!((spec.port, spec.local_port), (5433, 6432));
    assert_eq!(spec.credentials_secret_ref.username_key, "user");
    assert_eq!(spec.tls.mode, TlsMode::VerifyCa);
    assert_eq!(spec.tls.ca_secret_ref.as_ref().unwrap().key, "ca.pem");
    assert!(!spec.identity.allow_ambient);
    assert_eq!(spec.identity.issuers[0].audiences, ["dbward"]);
    assert_eq!(spec.recording.results, ResultsRecording::Sample);
}

#[test]
fn connection_defaults_fail_closed() {
    let doc: Document<DatabaseConnectionSpec> = read(CONNECTION_MINIMAL);
    doc.validate().unwrap();
    let spec = doc.spec;
    assert_eq!(spec.port, 5432);
    assert_eq!(spec.local_port, 5432);
    assert_eq!(spec.credentials_secret_ref.username_key, "username");
    assert_eq!(spec.credentials_secret_ref.password_key, "password");
    assert_eq!(
        spec.tls.mode,
        TlsMode::VerifyFull,
        "TLS verification is on unless turned off"
    );
    assert!(spec.tls.ca_secret_ref.is_none());
    assert!(spec.identity.allow_ambient);
    assert!(spec.identity.issuers.is_empty());
    assert!(spec.egress_lock);
    assert_eq!(spec.recording.results, ResultsRecording::Metadata);
    assert!(doc.status.is_none());
    let tls: dbward_crds::TlsSpec = read("caSecretRef: {name: db-ca}");
    assert_eq!(
        (tls.mode, tls.ca_secret_ref.unwrap().key.as_str()),
        (TlsMode::VerifyFull, "ca.crt")
    );
}

#[test]
fn full_policy() {
    let doc: Document<AccessPolicySpec> = round_trip(POLICY);
    doc.validate().unwrap();
    let spec = &doc.spec;
    assert_eq!(spec.connections, ["orders", "analytics"]);
    assert_eq!(
        spec.subjects[1]
            .service_account
            .as_ref()
            .unwrap()
            .namespace
            .as_deref(),
        Some("jobs")
    );
    assert_eq!(spec.subjects[1].uids, [1000, 1001]);
    assert_eq!(spec.subjects[2].group.as_deref(), Some("dba"));
    assert_eq!(
        spec.rules[0].operations,
        [
            Operation::Select,
            Operation::CopyOut,
            Operation::Set,
            Operation::Transaction
        ]
    );
    assert_eq!(spec.rules[2].action, Action::RequireApproval);
    assert_eq!(spec.rules[2].when.as_ref().unwrap().missing_where, Some(true));
    assert_eq!(spec.rules[3].when.as_ref().unwrap().rows_over, Some(10_000));
    assert_eq!(spec.rules[4].display_name(4), "rules[4]");
    assert_eq!(spec.rules[4].action, Action::Deny);
    assert_eq!(spec.masking[1].replacement.as_deref(), Some("[hidden]"));
    assert_eq!(
        (spec.masking[2].detector, spec.masking[2].keep_last),
        (Some(Detector::CreditCard), Some(4))
    );
    assert_eq!(spec.masking[3].strategy, MaskStrategy::Hash);
    assert_eq!(spec.approval.as_ref().unwrap().mode, ApprovalMode::Reject);
    assert_eq!(spec.limits.as_ref().unwrap().max_bytes, Some(104_857_600));
    assert_eq!(spec.enforcement, Enforcement::Audit);

    let at = |s: &str| dbward_crds::parse_rfc3339(s).unwrap();
    assert!(!spec.active_at(at("2026-05-01T08:59:59Z")));
    assert!(spec.active_at(at("2026-05-01T09:00:00Z")));
    assert!(spec.active_at(at("2026-05-01T14:59:59Z")));
    assert!(
        !spec.active_at(at("2026-05-01T15:00:00Z")),
        "validUntil is +02:00, so 15:00Z is the end"
    );
}

#[test]
fn policy_defaults_and_window() {
    let yaml =
        "connections: [orders]\nsubjects: [{group: dba}]\nrules: [{action: allow, operations: [select]}]\n";
    let spec: AccessPolicySpec = read(yaml);
    spec.validate().unwrap();
    assert_eq!(spec.enforcement, Enforcement::Enforce);
    assert!(spec.approval.is_none() && spec.limits.is_none() && spec.masking.is_empty());
    assert!(spec.rules[0].tables.is_empty(), "no tables means all tables");
    assert!(spec.active_at(UNIX_EPOCH) && spec.active_at(UNIX_EPOCH + Duration::from_secs(4_000_000_000)));
    let approval: dbward_crds::ApprovalSpec = read("mode: wait");
    assert_eq!(approval, dbward_crds::ApprovalSpec::default());
    assert_eq!(approval.timeout, "10m");

    let broken = AccessPolicySpec {
        not_before: Some("soon".into()),
        ..spec
    };
    assert!(
        !broken.active_at(UNIX_EPOCH + Duration::from_secs(1)),
        "an unreadable window grants nothing"
    );
}

#[test]
fn approval_request_with_status() {
    let doc: Document<ApprovalRequestSpec, ApprovalRequestStatus> = round_trip(APPROVAL);
    doc.validate().unwrap();
    assert_eq!(doc.spec.requester.uid, Some(1000));
    let status = doc.status.unwrap();
    assert_eq!(status.phase, ApprovalPhase::Approved);
    assert!(status.phase.is_final());
    assert_eq!(status.decided_by.as_deref(), Some("alice@example.com"));

    let pending: ApprovalRequestStatus = read("{}");
    assert_eq!(pending.phase, ApprovalPhase::Pending);
    assert!(!pending.phase.is_final());
}

#[test]
fn kind_picks_the_type_in_a_multi_document_file() {
    let stream = format!("{CONNECTION}---\n{POLICY}---\n{APPROVAL}");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&stream).unwrap();
    let kinds: Vec<&str> = docs.iter().filter_map(kind_of).collect();
    assert_eq!(kinds, ["DatabaseConnection", "AccessPolicy", "ApprovalRequest"]);
    let policy: Document<AccessPolicySpec> = serde_json::from_value(docs[1].clone()).unwrap();
    assert_eq!(policy.metadata.name, "support-agents");
}

#[test]
fn wrong_kind_or_version_is_reported() {
    let mut doc: Document<AccessPolicySpec> = read(POLICY);
    doc.kind = "DatabaseConnection".into();
    doc.api_version = "dbward.dev/v1".into();
    doc.metadata.name = "Support".into();
    let fields: Vec<String> = doc.validate().unwrap_err().into_iter().map(|e| e.field).collect();
    assert_eq!(fields, ["apiVersion", "kind", "metadata.name"]);
    let fresh = Document::new("x", doc.spec.clone());
    assert_eq!(
        (fresh.api_version.as_str(), fresh.kind.as_str()),
        ("dbward.dev/v1alpha1", "AccessPolicy")
    );
    let decided = Document::new("r", read::<ApprovalRequestSpec>("connection: c\nrequester: {subject: s}\nstatement: x\nfingerprint: f\nrule: p/r\nexpiresAt: \"2026-05-01T09:00:00Z\"\n"))
        .with_status(ApprovalRequestStatus { phase: ApprovalPhase::Denied, ..Default::default() });
    decided.validate().unwrap();
    assert_eq!(decided.status.unwrap().phase, ApprovalPhase::Denied);
}

#[test]
fn typos_are_errors() {
    fn refused<S: DeserializeOwned>(yaml: &str, typo: &str) {
        let message = serde_saphyr::from_str::<Document<S>>(yaml)
            .map(|_| ())
            .expect_err(typo)
            .to_string();
        assert!(message.contains(typo), "the error names {typo:?}: {message}");
    }
    let connections = [
        (CONNECTION_MINIMAL.replace("  host:", "  hots:"), "hots"),
        (
            CONNECTION.replace("    mode: verify-ca", "    mdoe: verify-ca"),
            "mdoe",
        ),
        (CONNECTION.replace("verify-ca", "verify_ca"), "verify_ca"),
        (
            CONNECTION.replace("      key: ca.pem", "      keys: ca.pem"),
            "keys",
        ),
        (CONNECTION.replace("allowAmbient", "allowAmbiant"), "allowAmbiant"),
    ];
    for (yaml, typo) in connections {
        refused::<DatabaseConnectionSpec>(&yaml, typo);
    }
    let policies = [
        (
            POLICY.replace(
                "      operations: [insert, update]",
                "      operation: [insert, update]",
            ),
            "operation",
        ),
        (POLICY.replace("copyOut", "copy_out"), "copy_out"),
        (POLICY.replace("missingWhere", "missingWHERE"), "missingWHERE"),
        (POLICY.replace("keepLast: 4", "keep_last: 4"), "keep_last"),
        (
            POLICY.replace("  enforcement: audit", "  enforcment: audit"),
            "enforcment",
        ),
        (POLICY.replace("maxRows", "maxrows"), "maxrows"),
    ];
    for (yaml, typo) in policies {
        refused::<AccessPolicySpec>(&yaml, typo);
    }
    refused::<ApprovalRequestSpec>(&APPROVAL.replace("  statement:", "  sql:"), "sql");
}

#[test]
fn kubectl_metadata_is_ignored() {
    let yaml = CONNECTION_MINIMAL.replace(
        "  name: analytics\n",
        "  name: analytics\n  uid: 0b7d\n  resourceVersion: \"42\"\n  creationTimestamp: \"2026-05-01T09:00:00Z\"\n",
    );
    let doc: Document<DatabaseConnectionSpec> = read(&yaml);
    assert_eq!(doc.metadata.name, "analytics");
}

#[cfg(feature = "kube")]
mod with_kube {
    use dbward_crds::{AccessPolicy, ApprovalRequest, DatabaseConnection};
    use kube::ResourceExt;

    use super::*;

    #[test]
    fn the_same_yaml_reads_as_the_kube_types() {
        let conn: DatabaseConnection = read(CONNECTION);
        assert_eq!(conn.name_any(), "orders");
        assert_eq!(
            conn.spec,
            read::<Document<DatabaseConnectionSpec>>(CONNECTION).spec
        );
        let policy: AccessPolicy = read(POLICY);
        assert_eq!(policy.spec.rules.len(), 5);
        let request: ApprovalRequest = read(APPROVAL);
        assert_eq!(request.status.unwrap().phase, ApprovalPhase::Approved);
    }

    #[test]
    fn documents_convert_to_and_from_kube_objects() {
        let doc: Document<AccessPolicySpec, dbward_crds::AccessPolicyStatus> = read(POLICY);
        let object = AccessPolicy::from(doc.clone());
        assert_eq!(object.namespace().as_deref(), Some("shop"));
        let back = Document::from(object.clone());
        assert_eq!(back, doc);
        assert_eq!(
            serde_json::to_value(&object).unwrap(),
            serde_json::to_value(&doc).unwrap()
        );
    }
}
