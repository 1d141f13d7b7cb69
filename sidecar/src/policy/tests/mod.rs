//! Policy engine tests: a library of policies, callers and statements, and tables of cases over them.
#![allow(clippy::unwrap_used)]

mod decide;
mod extras;

use std::{collections::BTreeSet, time::SystemTime};

use dbward_crds::{AccessPolicySpec, Document, Operation, parse_rfc3339};
use serde_json::{Value, json};

use super::{CallerPolicy, PolicySet};
use crate::{
    identity::{CallerIdentity, IdentityKind, ServiceAccountRef},
    sql::effects::{Effects, RelationName},
};

const K8S: &str = "https://kubernetes.default.svc";
const IDP: &str = "https://idp.example.com";
const OTHER_IDP: &str = "https://other-idp.example.com";
const NOON: &str = "2026-05-01T12:00:00Z";

/// The policies the cases pick from: (namespace, name, spec).
const LIBRARY: &[(Option<&str>, &str, &str)] = &[
    (
        Some("shop"),
        "api",
        r#"
connections: [orders]
subjects: [{serviceAccount: {name: api}}]
rules:
  - {name: read, action: allow, operations: [select, copyOut], tables: ["public.*", billing.invoices]}
  - {name: write-orders, action: allow, operations: [insert, update, delete], tables: [orders]}
  - {name: no-secrets, action: deny, operations: [select, copyOut], tables: ["public.secret_*"],
     message: secrets are off limits}
  - {name: wide-write, action: requireApproval, operations: [update, delete], when: {missingWhere: true}}
  - {action: allow, operations: [set, transaction]}
  - {name: big-reads, action: requireApproval, operations: [select], tables: [public.events],
     when: {rowsOver: 1000}}
masking:
  - {columns: [public.customers.email], strategy: email}
  - {columns: [public.customers.ssn], strategy: partial, keepLast: 4}
limits: {maxRows: 1000, statementTimeout: 30s}
approval: {mode: reject, timeout: 30m}
"#,
    ),
    (
        Some("shop"),
        "dba",
        r#"
connections: [orders]
subjects: [{group: dba}]
rules:
  - {action: allow, operations: [ddl, select, insert, update, delete, truncate]}
  - {name: protect-audit, action: deny, operations: [ddl], tables: ["public.audit_*"]}
  - {name: truncate-needs-ok, action: requireApproval, operations: [truncate]}
masking:
  - {columns: ["public.customers.email"], strategy: redact}
  - {detector: creditCard, strategy: redact}
limits: {maxRows: 500, maxBytes: 1000000, statementTimeout: 1m}
approval: {timeout: 5m}
"#,
    ),
    (
        Some("shop"),
        "unknown-ok",
        r#"
connections: [orders]
subjects: [{group: dba}]
rules: [{name: allow-unknown, action: allow, operations: [unknown]}]
masking:
  - {detector: creditCard, strategy: hash}
  - {detector: email, strategy: partial, keepFirst: 1}
  - {columns: ["*.customers.ssn"], strategy: hash}
"#,
    ),
    (
        Some("shop"),
        "oncall",
        r#"
connections: [orders]
subjects: [{oidc: {issuer: "https://idp.example.com", claim: teams, values: [red]}}]
rules: [{action: allow, operations: [select]}]
"#,
    ),
    (
        Some("shop"),
        "worker",
        r#"
connections: [orders]
subjects: [{serviceAccount: {name: worker}, uids: [1000]}]
rules: [{action: allow, operations: [select]}]
"#,
    ),
    (
        Some("shop"),
        "jit",
        r#"
connections: [orders]
subjects: [{serviceAccount: {name: debug}}]
rules: [{action: allow, operations: [select]}]
notBefore: "2026-05-01T09:00:00Z"
validUntil: "2026-05-01T17:00:00Z"
"#,
    ),
    (
        Some("shop"),
        "cross-ns",
        r#"
connections: [orders]
subjects: [{serviceAccount: {name: etl, namespace: data}}]
rules: [{action: allow, operations: [select, copyOut]}]
"#,
    ),
    (
        None,
        "no-ns",
        r#"
connections: [orders]
subjects: [{serviceAccount: {name: batch}}]
rules: [{action: allow, operations: [select]}]
"#,
    ),
    (
        Some("other"),
        "other-ns",
        r#"
connections: [orders]
subjects: [{serviceAccount: {name: api}}]
rules: [{action: allow, operations: [ddl]}]
"#,
    ),
    (
        Some("shop"),
        "analytics",
        r#"
connections: [analytics]
subjects: [{serviceAccount: {name: api}}]
rules: [{action: allow, operations: [select]}]
"#,
    ),
    (
        Some("shop"),
        "audit-strict",
        r#"
connections: [orders]
subjects: [{serviceAccount: {name: api}}]
enforcement: audit
rules: [{name: audit-no-delete, action: deny, operations: [delete]}]
masking: [{columns: [public.customers.phone], strategy: "null"}]
limits: {maxRows: 10}
"#,
    ),
    (
        Some("shop"),
        "shadow",
        r#"
connections: [orders]
subjects: [{serviceAccount: {name: shadow}}]
enforcement: audit
rules: [{action: allow, operations: [select], tables: [public.orders]}]
"#,
    ),
];

fn doc(namespace: Option<&str>, name: &str, spec: &str) -> Document<AccessPolicySpec> {
    let spec: AccessPolicySpec =
        serde_saphyr::from_str(spec).unwrap_or_else(|e| panic!("policy {name}: {e}"));
    let mut doc = Document::new(name, spec);
    doc.metadata.namespace = namespace.map(str::to_owned);
    doc
}

/// The named policies of the library, compiled with the cluster's issuer as the only SA issuer.
fn set(names: &[&str]) -> PolicySet {
    let docs = names
        .iter()
        .map(|name| {
            let (ns, name, spec) = LIBRARY
                .iter()
                .find(|(_, n, _)| n == name)
                .unwrap_or_else(|| panic!("no policy {name} in the library"));
            doc(*ns, name, spec)
        })
        .collect();
    PolicySet::new(docs, BTreeSet::from([K8S.to_owned()])).unwrap()
}

fn at(time: &str) -> SystemTime {
    parse_rfc3339(time).unwrap()
}

fn token(issuer: &str, sub: &str, sa: Option<(&str, &str)>, claims: Value) -> CallerIdentity {
    let Value::Object(claims) = claims else {
        panic!("claims must be an object")
    };
    CallerIdentity {
        kind: IdentityKind::Token,
        subject: sub.to_owned(),
        issuer: Some(issuer.to_owned()),
        service_account: sa.map(|(namespace, name)| ServiceAccountRef {
            namespace: namespace.into(),
            name: name.into(),
        }),
        pod: None,
        groups: Vec::new(),
        claims,
        uid: None,
    }
}

/// Callers by short name: `ambient:NS/SA[@UID]`, `k8s:NS/SA` (token from the cluster's issuer),
/// `k8s-dba:NS/SA` (the same, in group dba), `foreign:NS/SA` (an SA subject minted by another issuer),
/// and the OIDC users alice (group dba, teams [red, blue]), bob (teams "blue"), dave (teams "red") and
/// carol (teams [red], from another issuer).
fn who(spec: &str) -> CallerIdentity {
    let sa_of = |s: &str| {
        let (ns, name) = s.split_once('/').unwrap();
        (ns.to_owned(), name.to_owned())
    };
    if let Some(rest) = spec.strip_prefix("ambient:") {
        let (sa, uid) = match rest.split_once('@') {
            Some((sa, uid)) => (sa, Some(uid.parse().unwrap())),
            None => (rest, None),
        };
        return CallerIdentity::ambient(sa, None).unwrap().with_uid(uid);
    }
    let sa_token = |issuer: &str, sa: &str, groups: &[&str]| {
        let (ns, name) = sa_of(sa);
        let mut id = token(
            issuer,
            &format!("system:serviceaccount:{ns}:{name}"),
            Some((&ns, &name)),
            json!({"groups": groups}),
        );
        id.groups = groups.iter().map(|g| (*g).to_owned()).collect();
        id
    };
    if let Some(sa) = spec.strip_prefix("k8s:") {
        return sa_token(K8S, sa, &[]);
    }
    if let Some(sa) = spec.strip_prefix("k8s-dba:") {
        return sa_token(K8S, sa, &["dba"]);
    }
    if let Some(sa) = spec.strip_prefix("foreign:") {
        return sa_token(IDP, sa, &[]);
    }
    match spec {
        "alice" => {
            let mut id = token(
                IDP,
                "alice",
                None,
                json!({"teams": ["red", "blue"], "groups": ["dba"]}),
            );
            id.groups = vec!["dba".into()];
            id
        }
        "bob" => token(IDP, "bob", None, json!({"teams": "blue"})),
        "dave" => token(IDP, "dave", None, json!({"teams": "red"})),
        "carol" => token(OTHER_IDP, "carol", None, json!({"teams": ["red"]})),
        _ => panic!("unknown caller {spec}"),
    }
}

/// Effects from a short description: operation names (`select`, `copyOut`...), `r:NAME` and `w:NAME`
/// for relations read and written (`schema.table` or `table`), and `nowhere` for a missing WHERE.
fn fx(spec: &str) -> Effects {
    let mut effects = Effects::default();
    let rel = |name: &str| match name.split_once('.') {
        Some((schema, table)) => RelationName::new(Some(schema), table),
        None => RelationName::new(None, name),
    };
    for word in spec.split_whitespace() {
        if let Some(name) = word.strip_prefix("r:") {
            effects.reads.insert(rel(name));
        } else if let Some(name) = word.strip_prefix("w:") {
            effects.writes.insert(rel(name));
        } else if word == "nowhere" {
            effects.missing_where = true;
        } else {
            let op: Operation = serde_json::from_value(Value::String(word.into()))
                .unwrap_or_else(|_| panic!("unknown operation {word}"));
            effects.operations.insert(op);
        }
    }
    effects
}

/// The test session's search_path is `billing, public`, and only `billing` has `invoices`.
fn resolve(name: &RelationName) -> String {
    match (&name.schema, name.name.as_str()) {
        (Some(schema), table) => format!("{schema}.{table}"),
        (None, "invoices") => "billing.invoices".to_owned(),
        (None, table) => format!("public.{table}"),
    }
}

fn caller(policies: &[&str], identity: &str, connection: &str, time: &str) -> CallerPolicy {
    set(policies).for_caller(connection, &who(identity), at(time))
}
