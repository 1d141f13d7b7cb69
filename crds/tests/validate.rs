//! `validate()`: starting from a valid spec, each case breaks one thing and expects exactly one error, on
//! the right field, saying the right thing.
#![allow(clippy::unwrap_used)]

use dbward_crds::{
    AccessPolicySpec, ApprovalRequestSpec, DatabaseConnectionSpec, Detector, Document, FieldError, Limits,
    MaskStrategy, MaskingRule, Operation, RuleWhen, SecretKeyRef, ServiceAccountSubject, Subject, TlsMode,
    TrustedIssuer,
};
use serde::de::DeserializeOwned;

fn spec<S: DeserializeOwned>(yaml: &str) -> S {
    serde_saphyr::from_str::<Document<S>>(yaml).unwrap().spec
}

fn connection() -> DatabaseConnectionSpec {
    spec(include_str!("manifests/connection.yaml"))
}

fn policy() -> AccessPolicySpec {
    spec(include_str!("manifests/policy.yaml"))
}

fn approval() -> ApprovalRequestSpec {
    spec(include_str!("manifests/approval.yaml"))
}

/// Run `validate` on `base` changed by `break_it`; expect exactly one error at `field` containing `says`.
fn expect_one<S: Clone>(
    name: &str,
    base: &S,
    break_it: impl FnOnce(&mut S),
    validate: fn(&S) -> Result<(), Vec<FieldError>>,
    field: &str,
    says: &str,
) {
    let mut s = base.clone();
    break_it(&mut s);
    let errors = validate(&s).expect_err(name);
    assert!(
        errors.len() == 1 && errors[0].field == field && errors[0].message.contains(says),
        "{name}: expected one error at {field} saying {says:?}, got {errors:#?}"
    );
}

type Case<S> = (&'static str, Box<dyn FnOnce(&mut S)>, &'static str, &'static str);

#[test]
fn the_examples_are_valid() {
    connection().validate().unwrap();
    policy().validate().unwrap();
    approval().validate().unwrap();
}

#[test]
fn connection_errors_name_their_field() {
    let base = connection();
    let cases: Vec<Case<DatabaseConnectionSpec>> = vec![
        (
            "empty host",
            Box::new(|s| s.host = " ".into()),
            "spec.host",
            "must not be empty",
        ),
        (
            "url as host",
            Box::new(|s| s.host = "postgres://db".into()),
            "spec.host",
            "write only the host name",
        ),
        (
            "port in host",
            Box::new(|s| s.host = "db:5432".into()),
            "spec.host",
            "put the port in spec.port",
        ),
        (
            "port 0",
            Box::new(|s| s.port = 0),
            "spec.port",
            "between 1 and 65535",
        ),
        (
            "local port 0",
            Box::new(|s| s.local_port = 0),
            "spec.localPort",
            "between 1 and 65535",
        ),
        (
            "empty database",
            Box::new(|s| s.database = String::new()),
            "spec.database",
            "must not be empty",
        ),
        (
            "secret name",
            Box::new(|s| s.credentials_secret_ref.name = "Orders_DB".into()),
            "spec.credentialsSecretRef.name",
            "not a valid object name",
        ),
        (
            "secret key",
            Box::new(|s| s.credentials_secret_ref.username_key = "user name".into()),
            "spec.credentialsSecretRef.usernameKey",
            "not a valid Secret key",
        ),
        (
            "same keys",
            Box::new(|s| s.credentials_secret_ref.password_key = "user".into()),
            "spec.credentialsSecretRef.passwordKey",
            "same key as usernameKey",
        ),
        (
            "ca key",
            Box::new(|s| {
                s.tls.ca_secret_ref = Some(SecretKeyRef {
                    name: "ca".into(),
                    key: String::new(),
                })
            }),
            "spec.tls.caSecretRef.key",
            "must not be empty",
        ),
        (
            "ca without tls",
            Box::new(|s| s.tls.mode = TlsMode::Disable),
            "spec.tls.caSecretRef",
            "use verify-ca or verify-full",
        ),
        (
            "nobody can connect",
            Box::new(|s| s.identity.issuers.clear()),
            "spec.identity.issuers",
            "no caller could ever connect",
        ),
        (
            "http issuer",
            Box::new(|s| s.identity.issuers[0].issuer = "http://auth.example.com".into()),
            "spec.identity.issuers[0].issuer",
            "must use https",
        ),
        (
            "issuer not a url",
            Box::new(|s| s.identity.issuers[0].issuer = "auth.example.com".into()),
            "spec.identity.issuers[0].issuer",
            "absolute URL",
        ),
        (
            "no audiences",
            Box::new(|s| s.identity.issuers[0].audiences.clear()),
            "spec.identity.issuers[0].audiences",
            "at least one audience",
        ),
        (
            "empty audience",
            Box::new(|s| s.identity.issuers[0].audiences.push(String::new())),
            "spec.identity.issuers[0].audiences[1]",
            "must not be empty",
        ),
        (
            "jwks",
            Box::new(|s| s.identity.issuers[0].jwks_uri = Some("http://keys.example.com/jwks".into())),
            "spec.identity.issuers[0].jwksUri",
            "must use https",
        ),
        (
            "jwks file url",
            Box::new(|s| s.identity.issuers[0].jwks_uri = Some("file://relative/keys".into())),
            "spec.identity.issuers[0].jwksUri",
            "file:///absolute/path",
        ),
        (
            "duplicate issuer",
            Box::new(|s| {
                let again = s.identity.issuers[0].clone();
                s.identity.issuers.push(again)
            }),
            "spec.identity.issuers[1].issuer",
            "duplicate issuer",
        ),
    ];
    for (name, break_it, field, says) in cases {
        expect_one(
            name,
            &base,
            break_it,
            DatabaseConnectionSpec::validate,
            field,
            says,
        );
    }
}

#[test]
fn policy_errors_name_their_field() {
    let base = policy();
    let sa = |name: &str| Subject {
        service_account: Some(ServiceAccountSubject {
            name: name.into(),
            namespace: None,
        }),
        ..Subject::default()
    };
    let cases: Vec<Case<AccessPolicySpec>> = vec![
        (
            "no connections",
            Box::new(|s| s.connections.clear()),
            "spec.connections",
            "at least one DatabaseConnection",
        ),
        (
            "bad connection name",
            Box::new(|s| s.connections[1] = "Analytics".into()),
            "spec.connections[1]",
            "not a valid object name",
        ),
        (
            "duplicate connection",
            Box::new(|s| s.connections.push("orders".into())),
            "spec.connections[2]",
            "duplicate connection \"orders\"",
        ),
        (
            "too many subjects",
            Box::new(|s| {
                s.subjects = vec![
                    Subject {
                        group: Some("g".into()),
                        ..Subject::default()
                    };
                    65
                ]
            }),
            "spec.subjects",
            "has 65 entries; at most 64",
        ),
        (
            "no subjects",
            Box::new(|s| s.subjects.clear()),
            "spec.subjects",
            "applies to no one",
        ),
        (
            "empty subject",
            Box::new(|s| s.subjects.push(Subject::default())),
            "spec.subjects[4]",
            "none is set",
        ),
        (
            "two kinds",
            Box::new(move |s| s.subjects[0].group = Some("x".into())),
            "spec.subjects[0]",
            "more than one is set",
        ),
        (
            "sa name",
            Box::new(move |s| s.subjects.push(sa(""))),
            "spec.subjects[4].serviceAccount.name",
            "must not be empty",
        ),
        (
            "sa namespace",
            Box::new(|s| s.subjects[1].service_account.as_mut().unwrap().namespace = Some("a.b".into())),
            "spec.subjects[1].serviceAccount.namespace",
            "not a valid namespace",
        ),
        (
            "empty group",
            Box::new(|s| s.subjects[2].group = Some(String::new())),
            "spec.subjects[2].group",
            "must not be empty",
        ),
        (
            "oidc issuer",
            Box::new(|s| s.subjects[3].oidc.as_mut().unwrap().issuer = "http://x".into()),
            "spec.subjects[3].oidc.issuer",
            "must use https",
        ),
        (
            "oidc claim",
            Box::new(|s| s.subjects[3].oidc.as_mut().unwrap().claim = String::new()),
            "spec.subjects[3].oidc.claim",
            "must not be empty",
        ),
        (
            "oidc values",
            Box::new(|s| s.subjects[3].oidc.as_mut().unwrap().values.clear()),
            "spec.subjects[3].oidc.values",
            "at least one accepted value",
        ),
        (
            "no operations",
            Box::new(|s| s.rules[1].operations.clear()),
            "spec.rules[1].operations",
            "at least one operation",
        ),
        (
            "repeated operation",
            Box::new(|s| s.rules[1].operations.push(Operation::Insert)),
            "spec.rules[1].operations[2]",
            "insert is listed twice",
        ),
        (
            "table glob",
            Box::new(|s| s.rules[1].tables.push("a.b.c".into())),
            "spec.rules[1].tables[2]",
            "table or schema.table",
        ),
        (
            "empty table part",
            Box::new(|s| s.rules[1].tables[0] = "public.".into()),
            "spec.rules[1].tables[0]",
            "table or schema.table",
        ),
        (
            "duplicate rule name",
            Box::new(|s| s.rules[3].name = Some("read".into())),
            "spec.rules[3].name",
            "duplicate rule name \"read\" (first at index 0)",
        ),
        (
            "empty when",
            Box::new(|s| s.rules[0].when = Some(RuleWhen::default())),
            "spec.rules[0].when",
            "set missingWhere or rowsOver",
        ),
        (
            "missingWhere on select",
            Box::new(|s| s.rules[2].operations = vec![Operation::Select]),
            "spec.rules[2].when.missingWhere",
            "only applies to update and delete",
        ),
        (
            "empty message",
            Box::new(|s| s.rules[4].message = Some(String::new())),
            "spec.rules[4].message",
            "must not be empty",
        ),
        (
            "neither columns nor detector",
            Box::new(|s| s.masking[0].columns.clear()),
            "spec.masking[0]",
            "none is set",
        ),
        (
            "columns and detector",
            Box::new(|s| s.masking[0].detector = Some(Detector::Email)),
            "spec.masking[0]",
            "both are set",
        ),
        (
            "two-part column",
            Box::new(|s| s.masking[0].columns[0] = "customers.email".into()),
            "spec.masking[0].columns[0]",
            "schema.table.column",
        ),
        (
            "four-part column",
            Box::new(|s| s.masking[1].columns[0] = "db.public.customers.phone".into()),
            "spec.masking[1].columns[0]",
            "3 dot-separated parts",
        ),
        (
            "regex without pattern",
            Box::new(|s| s.masking[3].pattern = None),
            "spec.masking[3].pattern",
            "needs a pattern",
        ),
        (
            "bad regex",
            Box::new(|s| s.masking[3].pattern = Some("sk_(live".into())),
            "spec.masking[3].pattern",
            "not a valid regular expression",
        ),
        (
            "pattern without regex",
            Box::new(|s| s.masking[2].pattern = Some("x".into())),
            "spec.masking[2].pattern",
            "only used with detector regex",
        ),
        (
            "partial without counts",
            Box::new(|s| s.masking[2].keep_last = None),
            "spec.masking[2]",
            "needs keepFirst or keepLast",
        ),
        (
            "partial keeps nothing",
            Box::new(|s| s.masking[2].keep_last = Some(0)),
            "spec.masking[2]",
            "keeps nothing",
        ),
        (
            "keep on hash",
            Box::new(|s| s.masking[3].keep_first = Some(2)),
            "spec.masking[3].keepFirst",
            "only used with strategy partial",
        ),
        (
            "replacement on null",
            Box::new(|s| s.masking[1].strategy = MaskStrategy::Null),
            "spec.masking[1].replacement",
            "only used with strategy redact",
        ),
        (
            "approval timeout",
            Box::new(|s| s.approval.as_mut().unwrap().timeout = "10".into()),
            "spec.approval.timeout",
            "has no unit",
        ),
        (
            "zero timeout",
            Box::new(|s| s.approval.as_mut().unwrap().timeout = "0s".into()),
            "spec.approval.timeout",
            "longer than zero",
        ),
        (
            "grant window",
            Box::new(|s| s.approval.as_mut().unwrap().grant_window = Some("1d".into())),
            "spec.approval.grantWindow",
            "unknown unit \"d\"",
        ),
        (
            "max rows 0",
            Box::new(|s| s.limits.as_mut().unwrap().max_rows = Some(0)),
            "spec.limits.maxRows",
            "at least 1",
        ),
        (
            "max bytes 0",
            Box::new(|s| s.limits.as_mut().unwrap().max_bytes = Some(0)),
            "spec.limits.maxBytes",
            "at least 1",
        ),
        (
            "statement timeout",
            Box::new(|s| s.limits.as_mut().unwrap().statement_timeout = Some("30m1h".into())),
            "spec.limits.statementTimeout",
            "out of order",
        ),
        (
            "no effect",
            Box::new(|s| {
                s.rules.clear();
                s.masking.clear();
                s.limits = None
            }),
            "spec.rules",
            "has no effect",
        ),
        (
            "not before",
            Box::new(|s| s.not_before = Some("2026-05-01 09:00".into())),
            "spec.notBefore",
            "not RFC 3339",
        ),
        (
            "valid until",
            Box::new(|s| s.valid_until = Some("2026-02-30T00:00:00Z".into())),
            "spec.validUntil",
            "day is out of range",
        ),
        (
            "window reversed",
            Box::new(|s| s.valid_until = Some("2026-05-01T10:59:59+02:00".into())),
            "spec.validUntil",
            "after notBefore",
        ),
    ];
    for (name, break_it, field, says) in cases {
        expect_one(name, &base, break_it, AccessPolicySpec::validate, field, says);
    }
}

#[test]
fn approval_request_errors_name_their_field() {
    let base = approval();
    let cases: Vec<Case<ApprovalRequestSpec>> = vec![
        (
            "connection",
            Box::new(|s| s.connection = String::new()),
            "spec.connection",
            "must not be empty",
        ),
        (
            "subject",
            Box::new(|s| s.requester.subject = String::new()),
            "spec.requester.subject",
            "must not be empty",
        ),
        (
            "service account",
            Box::new(|s| s.requester.service_account = Some("agent".into())),
            "spec.requester.serviceAccount",
            "namespace/name",
        ),
        (
            "pod",
            Box::new(|s| s.requester.pod = Some("Pod_1".into())),
            "spec.requester.pod",
            "not a valid object name",
        ),
        (
            "statement",
            Box::new(|s| s.statement = "  ".into()),
            "spec.statement",
            "must not be empty",
        ),
        (
            "fingerprint",
            Box::new(|s| s.fingerprint = String::new()),
            "spec.fingerprint",
            "must not be empty",
        ),
        (
            "rule",
            Box::new(|s| s.rule = String::new()),
            "spec.rule",
            "must not be empty",
        ),
        (
            "expiry",
            Box::new(|s| s.expires_at = "in 10 minutes".into()),
            "spec.expiresAt",
            "not RFC 3339",
        ),
    ];
    for (name, break_it, field, says) in cases {
        expect_one(name, &base, break_it, ApprovalRequestSpec::validate, field, says);
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut spec = policy();
    spec.connections.clear();
    spec.rules[0].operations.clear();
    spec.masking.push(MaskingRule {
        columns: vec!["email".into()],
        detector: None,
        pattern: None,
        strategy: MaskStrategy::Partial,
        replacement: None,
        keep_first: None,
        keep_last: None,
    });
    spec.limits = Some(Limits {
        max_rows: Some(0),
        ..Limits::default()
    });
    let errors = spec.validate().unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.connections",
            "spec.rules[0].operations",
            "spec.masking[4].columns[0]",
            "spec.masking[4]",
            "spec.limits.maxRows"
        ]
    );
    assert_eq!(
        errors[2].to_string(),
        "spec.masking[4].columns[0]: \"email\" must be a schema.table.column glob (3 dot-separated parts, * \
         allowed), e.g. \"public.customers.email\" or \"*.*.ssn\""
    );
}

#[test]
fn issuers_only_without_ambient_is_fine() {
    let mut spec = connection();
    spec.identity.issuers = vec![TrustedIssuer {
        issuer: "https://kubernetes.default.svc.cluster.local".into(),
        audiences: vec!["dbward.dev".into()],
        jwks_uri: None,
    }];
    spec.validate().unwrap();
    spec.identity.allow_ambient = true;
    spec.identity.issuers.clear();
    spec.validate().unwrap();
}
