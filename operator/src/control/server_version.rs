//! `POST /v1/server-version`: a sidecar says which `server_version` its database announced when it
//! logged in, and the operator writes it into the connection's `status.serverVersion`. The operator never
//! logs in itself (the credential is the sidecar's to use), so this is where the version comes from.
//!
//! Every login of every sidecar may report, so a report the connection cache already shows costs no
//! write ([`needs_write`]); a new version is written with server-side apply under
//! [`SERVER_VERSION_FIELD_MANAGER`], apart from the reconciler's manager, which never sends the field.

use dbward_crds::{
    DatabaseConnection, DatabaseConnectionStatus,
    wire::{PodIdentity, ServerVersionReport},
};
use kube::{
    Api,
    runtime::reflector::{ObjectRef, Store},
};
use tracing::{debug, info};

use crate::reconcile::{SERVER_VERSION_FIELD_MANAGER, status::apply_status_as};

/// Why a report is not recorded. Each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The body is not a valid report (400).
    #[error("the server version report is not valid: {0}")]
    Invalid(String),
    /// The connection is not in the pod's namespace (404).
    #[error("DatabaseConnection {name:?} does not exist in namespace {namespace}")]
    NoConnection { namespace: String, name: String },
    /// The API server refused or could not be asked (503: the sidecar asks again).
    #[error("writing status.serverVersion of DatabaseConnection {namespace}/{name}: {source}")]
    Write {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl ReportError {
    /// The HTTP status the control API answers with.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::Invalid(_) => http::StatusCode::BAD_REQUEST,
            Self::NoConnection { .. } => http::StatusCode::NOT_FOUND,
            Self::Write { source, .. } => match source {
                kube::Error::Api(e) if e.code == 404 => http::StatusCode::NOT_FOUND,
                _ => http::StatusCode::SERVICE_UNAVAILABLE,
            },
        }
    }
}

/// The report's body, or why it is refused (every problem, each naming its field).
pub fn parse(body: &[u8]) -> Result<ServerVersionReport, ReportError> {
    let report: ServerVersionReport = serde_json::from_slice(body).map_err(|e| {
        ReportError::Invalid(format!(
            "{e}; send {{\"connection\": NAME, \"serverVersion\": VERSION}}"
        ))
    })?;
    report.validate().map_err(|errors| {
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        ReportError::Invalid(all.join("; "))
    })?;
    Ok(report)
}

/// The version to replace, when `reported` differs from what `connection`'s status shows: `Some(old)`
/// (`None` inside when it shows none) means write; `None` means it already says so.
pub fn needs_write(connection: &DatabaseConnection, reported: &str) -> Option<Option<String>> {
    let shown = connection
        .status
        .as_ref()
        .and_then(|s| s.server_version.as_deref());
    (shown != Some(reported)).then(|| shown.map(str::to_owned))
}

/// Records `report` from the pod `who` (already checked to be injected for the connection): looks the
/// connection up in `cache`, and writes the version unless the cache already shows it.
pub async fn record(
    client: &kube::Client,
    cache: &Store<DatabaseConnection>,
    who: &PodIdentity,
    report: &ServerVersionReport,
) -> Result<(), ReportError> {
    let namespace = who.namespace.as_str();
    let name = report.connection.as_str();
    let version = report.server_version.as_str();
    let key = ObjectRef::<DatabaseConnection>::new(name).within(namespace);
    let connection = cache.get(&key).ok_or_else(|| ReportError::NoConnection {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    })?;
    let Some(old) = needs_write(&connection, version) else {
        debug!(namespace, connection = name, pod = %who.pod, "server version unchanged");
        return Ok(());
    };
    let status = DatabaseConnectionStatus {
        server_version: Some(version.to_owned()),
        ..DatabaseConnectionStatus::default()
    };
    let api: Api<DatabaseConnection> = Api::namespaced(client.clone(), namespace);
    apply_status_as(&api, name, &status, SERVER_VERSION_FIELD_MANAGER)
        .await
        .map_err(|source| ReportError::Write {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        })?;
    info!(
        namespace, connection = name, old = old.as_deref().unwrap_or(""), new = version, pod = %who.pod,
        "server version changed"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn connection(status: serde_json::Value) -> DatabaseConnection {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "dbward.dev/v1alpha1", "kind": "DatabaseConnection",
            "metadata": {"name": "orders", "namespace": "shop"},
            "spec": {"host": "db", "database": "orders", "credentialsSecretRef": {"name": "creds"}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn only_a_version_the_status_does_not_show_is_written() {
        let none = connection(serde_json::json!({}));
        let shown = connection(serde_json::json!({"serverVersion": "16.4"}));
        assert_eq!(needs_write(&none, "16.4"), Some(None));
        assert_eq!(needs_write(&shown, "16.4"), None);
        assert_eq!(needs_write(&shown, "17.0"), Some(Some("16.4".into())));
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let cases = [
            (
                &br#"{"connection": "orders"}"#[..],
                "missing field `serverVersion`",
            ),
            (b"not json", "expected ident"),
            (
                br#"{"connection": "orders", "serverVersion": ""}"#,
                "serverVersion: must not be empty",
            ),
            (
                br#"{"connection": "", "serverVersion": "\u0007"}"#,
                "connection: must not be empty; serverVersion: holds the control character U+0007",
            ),
        ];
        for (body, want) in cases {
            let e = parse(body).unwrap_err();
            assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
            assert!(e.to_string().contains(want), "{e}");
        }
        let ok = parse(br#"{"connection": "orders", "serverVersion": "16.4"}"#).unwrap();
        assert_eq!(ok.server_version, "16.4");
    }
}
