//! The status of a DatabaseConnection, computed from what the reconciler found: the credentials Secret
//! (or its absence), the CA Secret when `spec.tls.caSecretRef` is set, the result of a TCP probe, and the
//! pods that name the connection but run without the sidecar ([`pods`](super::pods)).
//! No I/O here, so every case is a line in a table test.
//!
//! Secrets are only ever looked at for their key names: messages list the keys a Secret has, never a
//! value.

use std::{collections::BTreeSet, time::SystemTime};

use dbward_crds::{
    Condition, ConditionStatus, DatabaseConnection, DatabaseConnectionStatus, condition::types,
};
use k8s_openapi::api::core::v1::Secret;

use super::pods::{PodsSeen, pods_condition};
use crate::{admission::spec::allow_target, reconcile::status::merge_conditions};

/// Reasons of the CredentialsResolved condition.
pub mod reasons {
    /// The credentials Secret and its keys (and the CA Secret, if any) are there.
    pub const RESOLVED: &str = "Resolved";
    /// The credentials Secret does not exist.
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    /// The credentials Secret lacks the user name or password key.
    pub const KEY_MISSING: &str = "KeyMissing";
    /// The Secret named by `spec.tls.caSecretRef` does not exist.
    pub const CA_SECRET_NOT_FOUND: &str = "CaSecretNotFound";
    /// The CA Secret lacks the named key.
    pub const CA_KEY_MISSING: &str = "CaKeyMissing";
    /// Reachable: a TCP connection to host:port succeeded.
    pub const CONNECTED: &str = "Connected";
    /// Reachable: the TCP connection failed or timed out.
    pub const UNREACHABLE: &str = "Unreachable";
    /// Reachable: no probe was made, because the spec's host or port is unusable.
    pub const NOT_PROBED: &str = "NotProbed";
    /// Ready: credentials resolved and the database reachable.
    pub const READY: &str = "Ready";
    /// Ready: the spec fails validation.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Ready: CredentialsResolved is not True.
    pub const CREDENTIALS_NOT_RESOLVED: &str = "CredentialsNotResolved";
}

/// The outcome of the reconciler's TCP probe of `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The TCP connection was accepted.
    Connected,
    /// It failed; the OS error, or that it timed out.
    Unreachable(String),
}

/// What the reconciler found for one connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observed<'a> {
    /// The Secret named by `spec.credentialsSecretRef`, `None` when it does not exist.
    pub credentials: Option<&'a Secret>,
    /// The Secret named by `spec.tls.caSecretRef`, `None` when it does not exist or none is named.
    pub ca: Option<&'a Secret>,
    /// The probe, `None` when none was made.
    pub probe: Option<&'a Probe>,
    /// The pods that name the connection, `None` when they could not be looked at (the pod cache is not
    /// loaded): PodsWithoutSidecar then stays as it is.
    pub pods: Option<&'a PodsSeen>,
}

/// The status to write for `conn`: CredentialsResolved, Reachable, Ready and PodsWithoutSidecar, each
/// stamped with the object's generation, keeping each condition's `lastTransitionTime` from the current
/// status when its status did not change. PodsWithoutSidecar does not count towards Ready.
/// `serverVersion` is left out (`None`, not sent): the operator does not log in to the database; the
/// sidecars, which do, report the version to the control API, which writes it under its own field
/// manager (`control::server_version`). Compare with [`unchanged`], which ignores it.
pub fn connection_status(
    conn: &DatabaseConnection,
    observed: Observed<'_>,
    now: SystemTime,
) -> DatabaseConnectionStatus {
    let generation = conn.metadata.generation;
    let namespace = conn.metadata.namespace.as_deref().unwrap_or_default();
    let credentials = credentials_condition(conn, namespace, observed, now);
    let reachable = reachable_condition(conn, observed.probe, now);
    let ready = ready_condition(conn, &credentials, &reachable, now);
    let old = conn
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let mut computed: Vec<Condition> = [credentials, reachable, ready]
        .into_iter()
        .map(|c| c.with_generation(generation))
        .collect();
    match observed.pods {
        Some(seen) => computed.push(pods_condition(seen, namespace, now).with_generation(generation)),
        None => computed.extend(dbward_crds::condition::find(old, types::PODS_WITHOUT_SIDECAR).cloned()),
    }
    DatabaseConnectionStatus {
        conditions: merge_conditions(old, computed),
        observed_generation: generation,
        server_version: None,
    }
}

/// Whether `computed` (from [`connection_status`]) says nothing new about `stored`: equal but for
/// `serverVersion`, which the reconciler neither computes nor writes, so that a reported version does
/// not make every reconcile write.
pub fn unchanged(stored: Option<&DatabaseConnectionStatus>, computed: &DatabaseConnectionStatus) -> bool {
    // Spelled out field by field, so that a field added to the status must be placed here.
    let DatabaseConnectionStatus {
        conditions,
        observed_generation,
        server_version: _,
    } = computed;
    stored.is_some_and(|s| s.conditions == *conditions && s.observed_generation == *observed_generation)
}

/// Whether the reconciler can probe: the spec's host and port pass validation.
pub fn can_probe(conn: &DatabaseConnection) -> bool {
    match conn.spec.validate() {
        Ok(()) => true,
        Err(errors) => !errors
            .iter()
            .any(|e| e.field == "spec.host" || e.field == "spec.port"),
    }
}

/// The key names of a Secret, from `data` and `stringData`.
pub fn secret_keys(secret: &Secret) -> BTreeSet<&str> {
    let data = secret.data.iter().flat_map(|d| d.keys());
    let string_data = secret.string_data.iter().flat_map(|d| d.keys());
    data.chain(string_data).map(String::as_str).collect()
}

/// A problem found while resolving the credentials: its reason and a sentence for people.
struct Problem {
    reason: &'static str,
    message: String,
}

fn credentials_condition(
    conn: &DatabaseConnection,
    namespace: &str,
    observed: Observed<'_>,
    now: SystemTime,
) -> Condition {
    let creds = &conn.spec.credentials_secret_ref;
    let mut problems = Vec::new();
    let wanted = [creds.username_key.as_str(), creds.password_key.as_str()];
    match observed.credentials {
        None => problems.push(Problem {
            reason: reasons::SECRET_NOT_FOUND,
            message: format!(
                "secret {:?} not found in namespace {namespace:?}: create it with the keys {}",
                creds.name,
                quoted(wanted)
            ),
        }),
        Some(secret) => {
            let keys = secret_keys(secret);
            let missing: Vec<&str> = wanted.into_iter().filter(|k| !keys.contains(k)).collect();
            if !missing.is_empty() {
                let noun = if missing.len() == 1 { "key" } else { "keys" };
                problems.push(Problem {
                    reason: reasons::KEY_MISSING,
                    message: format!(
                        "secret {:?} has no {noun} {} ({})",
                        creds.name,
                        quoted(missing),
                        it_has(&keys)
                    ),
                });
            }
        }
    }
    if let Some(ca) = &conn.spec.tls.ca_secret_ref {
        match observed.ca {
            None => problems.push(Problem {
                reason: reasons::CA_SECRET_NOT_FOUND,
                message: format!(
                    "CA secret {:?} (spec.tls.caSecretRef) not found in namespace {namespace:?}",
                    ca.name
                ),
            }),
            Some(secret) => {
                let keys = secret_keys(secret);
                if !keys.contains(ca.key.as_str()) {
                    problems.push(Problem {
                        reason: reasons::CA_KEY_MISSING,
                        message: format!(
                            "CA secret {:?} has no key {:?} ({})",
                            ca.name,
                            ca.key,
                            it_has(&keys)
                        ),
                    });
                }
            }
        }
    }
    if let Some(first) = problems.first() {
        let message = join(problems.iter().map(|p| p.message.as_str()));
        return Condition::new(types::CREDENTIALS_RESOLVED, false, first.reason, message, now);
    }
    let mut message = format!("secret {:?} has the keys {}", creds.name, quoted(wanted));
    if let Some(ca) = &conn.spec.tls.ca_secret_ref {
        message.push_str(&format!("; CA bundle in secret {:?}, key {:?}", ca.name, ca.key));
    }
    Condition::new(types::CREDENTIALS_RESOLVED, true, reasons::RESOLVED, message, now)
}

fn reachable_condition(conn: &DatabaseConnection, probe: Option<&Probe>, now: SystemTime) -> Condition {
    let target = allow_target(&conn.spec.host, conn.spec.port);
    let (status, reason, message) = match probe {
        Some(Probe::Connected) => (
            ConditionStatus::True,
            reasons::CONNECTED,
            format!("TCP connection to {target} succeeded (login not attempted)"),
        ),
        Some(Probe::Unreachable(error)) => (
            ConditionStatus::False,
            reasons::UNREACHABLE,
            format!("TCP connection to {target} failed: {error}"),
        ),
        None => (
            ConditionStatus::Unknown,
            reasons::NOT_PROBED,
            "not probed: spec.host or spec.port is invalid (see the Ready condition)".to_owned(),
        ),
    };
    Condition::new(types::REACHABLE, status, reason, message, now)
}

fn ready_condition(
    conn: &DatabaseConnection,
    credentials: &Condition,
    reachable: &Condition,
    now: SystemTime,
) -> Condition {
    let mut problems: Vec<(&str, String)> = Vec::new();
    if let Err(errors) = conn.spec.validate() {
        let list = join(errors.iter().map(ToString::to_string));
        problems.push((reasons::INVALID_SPEC, format!("the spec is invalid: {list}")));
    }
    if !credentials.is_true() {
        problems.push((reasons::CREDENTIALS_NOT_RESOLVED, credentials.message.clone()));
    }
    if !reachable.is_true() {
        problems.push((reachable.reason.as_str(), reachable.message.clone()));
    }
    match problems.first() {
        Some((reason, _)) => {
            let message = join(problems.iter().map(|(_, m)| m.as_str()));
            Condition::new(types::READY, false, *reason, message, now)
        }
        None => Condition::new(
            types::READY,
            true,
            reasons::READY,
            "credentials resolved and the database accepts TCP connections (login not attempted)",
            now,
        ),
    }
}

/// `"a", "b"`.
fn quoted<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| format!("{i:?}")).collect();
    items.join(", ")
}

/// `it has: "a", "b"`, or that it has none.
fn it_has(keys: &BTreeSet<&str>) -> String {
    if keys.is_empty() {
        "it has no keys".to_owned()
    } else {
        format!("it has: {}", quoted(keys.iter().copied()))
    }
}

fn join<S: AsRef<str>>(parts: impl Iterator<Item = S>) -> String {
    let parts: Vec<S> = parts.collect();
    let parts: Vec<&str> = parts.iter().map(AsRef::as_ref).collect();
    parts.join("; ")
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
