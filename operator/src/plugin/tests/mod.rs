//! Tables of cases for the plugin's decisions: which policies apply and what they add up to
//! ([`explain`]), the approvals commands ([`approvals`]), and the text helpers and error messages
//! ([`text`]).

#![allow(clippy::unwrap_used)]

mod approvals;
mod explain;
mod text;

use std::time::SystemTime;

use dbward_crds::{AccessPolicy, AccessPolicySpec, parse_rfc3339};

/// A policy in `namespace` from its spec as YAML.
fn policy(namespace: &str, name: &str, spec: &str) -> AccessPolicy {
    let spec: AccessPolicySpec =
        serde_saphyr::from_str(spec).unwrap_or_else(|e| panic!("policy {name}: {e}"));
    let mut policy = AccessPolicy::new(name, spec);
    policy.metadata.namespace = Some(namespace.to_owned());
    policy
}

fn at(time: &str) -> SystemTime {
    parse_rfc3339(time).unwrap()
}
