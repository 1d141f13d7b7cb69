#![allow(clippy::unwrap_used)]

use std::time::{Duration, UNIX_EPOCH};

use dbward_crds::{
    ConditionStatus::{False, True, Unknown},
    condition,
};
use k8s_openapi::ByteString;
use serde_json::json;

use super::*;

const T0: u64 = 1_800_000_000;
const PASSWORD: &str = "s3cret-value";

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn connection(ca: bool) -> DatabaseConnection {
    let mut spec = json!({
        "host": "db.example.com", "port": 5432, "database": "orders",
        "credentialsSecretRef": {"name": "orders-db"},
    });
    if ca {
        spec["tls"] = json!({"mode": "verify-full", "caSecretRef": {"name": "orders-ca"}});
    }
    serde_json::from_value(json!({
        "apiVersion": "dbward.dev/v1alpha1", "kind": "DatabaseConnection",
        "metadata": {"name": "orders", "namespace": "shop", "generation": 3},
        "spec": spec,
    }))
    .unwrap()
}

fn secret(keys: &[&str]) -> Secret {
    Secret {
        data: Some(
            keys.iter()
                .map(|k| ((*k).to_owned(), ByteString(PASSWORD.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

struct Case {
    name: &'static str,
    ca_ref: bool,
    credentials: Option<Secret>,
    ca: Option<Secret>,
    probe: Option<Probe>,
    /// (status, reason) of CredentialsResolved, Reachable and Ready.
    expect: [(ConditionStatus, &'static str); 3],
    /// Text each of these conditions' messages must contain, in the same order ("" for any).
    messages: [&'static str; 3],
}

#[test]
fn conditions_follow_what_was_found() {
    let good = || Some(secret(&["username", "password"]));
    let up = Some(Probe::Connected);
    let cases = [
        Case {
            name: "everything in order",
            ca_ref: false,
            credentials: good(),
            ca: None,
            probe: up.clone(),
            expect: [(True, "Resolved"), (True, "Connected"), (True, "Ready")],
            messages: [
                r#"secret "orders-db" has the keys "username", "password""#,
                "TCP connection to db.example.com:5432 succeeded (login not attempted)",
                "login not attempted",
            ],
        },
        Case {
            name: "secret missing",
            ca_ref: false,
            credentials: None,
            ca: None,
            probe: up.clone(),
            expect: [
                (False, "SecretNotFound"),
                (True, "Connected"),
                (False, "CredentialsNotResolved"),
            ],
            messages: [
                r#"secret "orders-db" not found in namespace "shop": create it with the keys "username", "password""#,
                "",
                r#"secret "orders-db" not found"#,
            ],
        },
        Case {
            name: "password key missing",
            ca_ref: false,
            credentials: Some(secret(&["username", "pass"])),
            ca: None,
            probe: up.clone(),
            expect: [
                (False, "KeyMissing"),
                (True, "Connected"),
                (False, "CredentialsNotResolved"),
            ],
            messages: [
                r#"secret "orders-db" has no key "password" (it has: "pass", "username")"#,
                "",
                r#"has no key "password""#,
            ],
        },
        Case {
            name: "both keys missing from an empty secret",
            ca_ref: false,
            credentials: Some(Secret::default()),
            ca: None,
            probe: up.clone(),
            expect: [
                (False, "KeyMissing"),
                (True, "Connected"),
                (False, "CredentialsNotResolved"),
            ],
            messages: [r#"has no keys "username", "password" (it has no keys)"#, "", ""],
        },
        Case {
            name: "CA secret missing",
            ca_ref: true,
            credentials: good(),
            ca: None,
            probe: up.clone(),
            expect: [
                (False, "CaSecretNotFound"),
                (True, "Connected"),
                (False, "CredentialsNotResolved"),
            ],
            messages: [
                r#"CA secret "orders-ca" (spec.tls.caSecretRef) not found"#,
                "",
                "",
            ],
        },
        Case {
            name: "CA key missing",
            ca_ref: true,
            credentials: good(),
            ca: Some(secret(&["tls.crt"])),
            probe: up.clone(),
            expect: [
                (False, "CaKeyMissing"),
                (True, "Connected"),
                (False, "CredentialsNotResolved"),
            ],
            messages: [
                r#"CA secret "orders-ca" has no key "ca.crt" (it has: "tls.crt")"#,
                "",
                "",
            ],
        },
        Case {
            name: "CA in place",
            ca_ref: true,
            credentials: good(),
            ca: Some(secret(&["ca.crt"])),
            probe: up.clone(),
            expect: [(True, "Resolved"), (True, "Connected"), (True, "Ready")],
            messages: [r#"; CA bundle in secret "orders-ca", key "ca.crt""#, "", ""],
        },
        Case {
            name: "secret and CA both missing: the first problem names the reason, all are told",
            ca_ref: true,
            credentials: None,
            ca: None,
            probe: up.clone(),
            expect: [
                (False, "SecretNotFound"),
                (True, "Connected"),
                (False, "CredentialsNotResolved"),
            ],
            messages: [
                r#""password"; CA secret "orders-ca" (spec.tls.caSecretRef) not found"#,
                "",
                "",
            ],
        },
        Case {
            name: "probe failed",
            ca_ref: false,
            credentials: good(),
            ca: None,
            probe: Some(Probe::Unreachable("Connection refused (os error 111)".into())),
            expect: [(True, "Resolved"), (False, "Unreachable"), (False, "Unreachable")],
            messages: [
                "",
                "TCP connection to db.example.com:5432 failed: Connection refused (os error 111)",
                "Connection refused (os error 111)",
            ],
        },
        Case {
            name: "not probed",
            ca_ref: false,
            credentials: good(),
            ca: None,
            probe: None,
            expect: [(True, "Resolved"), (Unknown, "NotProbed"), (False, "NotProbed")],
            messages: ["", "not probed", ""],
        },
        Case {
            name: "secret missing and unreachable: both in Ready's message",
            ca_ref: false,
            credentials: None,
            ca: None,
            probe: Some(Probe::Unreachable("timed out after 5s".into())),
            expect: [
                (False, "SecretNotFound"),
                (False, "Unreachable"),
                (False, "CredentialsNotResolved"),
            ],
            messages: [
                "",
                "",
                "not found in namespace \"shop\": create it with the keys \"username\", \"password\"; TCP connection to db.example.com:5432 failed: timed out after 5s",
            ],
        },
    ];
    for case in cases {
        let conn = connection(case.ca_ref);
        let observed = Observed {
            credentials: case.credentials.as_ref(),
            ca: case.ca.as_ref(),
            probe: case.probe.as_ref(),
            pods: None,
        };
        let status = connection_status(&conn, observed, at(T0));
        let types = [types::CREDENTIALS_RESOLVED, types::REACHABLE, types::READY];
        for ((type_, (want_status, want_reason)), want_message) in
            types.into_iter().zip(case.expect).zip(case.messages)
        {
            let c = condition::find(&status.conditions, type_).unwrap();
            assert_eq!(
                (c.status, c.reason.as_str()),
                (want_status, want_reason),
                "{}: {type_}",
                case.name
            );
            assert!(
                c.message.contains(want_message),
                "{}: {type_}: {:?}",
                case.name,
                c.message
            );
            assert!(
                !c.message.contains(PASSWORD),
                "{}: a secret value leaked",
                case.name
            );
            assert_eq!(c.observed_generation, Some(3), "{}", case.name);
        }
        assert_eq!(status.observed_generation, Some(3), "{}", case.name);
        assert_eq!(status.server_version, None, "{}", case.name);
    }
}

#[test]
fn string_data_keys_count_as_keys() {
    let s = Secret {
        string_data: Some([("username".to_owned(), "u".to_owned())].into()),
        data: Some([("password".to_owned(), ByteString(b"p".to_vec()))].into()),
        ..Secret::default()
    };
    assert_eq!(
        secret_keys(&s).into_iter().collect::<Vec<_>>(),
        ["password", "username"]
    );
}

#[test]
fn invalid_spec_makes_ready_false_and_skips_the_probe_only_for_host_or_port() {
    let mut conn = connection(false);
    conn.spec.host = "db.example.com:5432".into();
    assert!(!can_probe(&conn));
    let good = secret(&["username", "password"]);
    let observed = Observed {
        credentials: Some(&good),
        ..Observed::default()
    };
    let status = connection_status(&conn, observed, at(T0));
    let ready = condition::find(&status.conditions, types::READY).unwrap();
    assert_eq!((ready.status, ready.reason.as_str()), (False, "InvalidSpec"));
    assert!(ready.message.contains("spec.host: "), "{}", ready.message);

    let mut conn = connection(false);
    conn.spec.database = String::new();
    assert!(
        can_probe(&conn),
        "an empty database name does not stop a TCP probe"
    );
    assert!(can_probe(&connection(true)));
}

#[test]
fn an_unchanged_status_keeps_its_transition_times_and_compares_equal() {
    let good = secret(&["username", "password"]);
    let up = Probe::Connected;
    let observed = Observed {
        credentials: Some(&good),
        probe: Some(&up),
        ..Observed::default()
    };
    let mut conn = connection(false);
    let first = connection_status(&conn, observed, at(T0));
    conn.status = Some(first.clone());

    // An hour later, nothing changed: the same status, so the reconciler writes nothing.
    let again = connection_status(&conn, observed, at(T0 + 3600));
    assert_eq!(again, first);

    // The database goes down: Reachable and Ready transition, CredentialsResolved keeps its time.
    let down = Probe::Unreachable("Connection refused (os error 111)".into());
    let later = connection_status(
        &conn,
        Observed {
            probe: Some(&down),
            ..observed
        },
        at(T0 + 7200),
    );
    let time = |type_| {
        condition::find(&later.conditions, type_)
            .unwrap()
            .last_transition_time
            .clone()
    };
    assert_eq!(time(types::CREDENTIALS_RESOLVED), "2027-01-15T08:00:00Z");
    assert_eq!(time(types::REACHABLE), "2027-01-15T10:00:00Z");
    assert_eq!(time(types::READY), "2027-01-15T10:00:00Z");

    // A new generation is a change even when the conditions hold.
    conn.metadata.generation = Some(4);
    let bumped = connection_status(&conn, observed, at(T0 + 3600));
    assert_ne!(bumped, first);
    assert_eq!(bumped.observed_generation, Some(4));
}

#[test]
fn a_reported_server_version_is_neither_computed_nor_a_change() {
    let good = secret(&["username", "password"]);
    let up = Probe::Connected;
    let observed = Observed {
        credentials: Some(&good),
        probe: Some(&up),
        ..Observed::default()
    };
    let mut conn = connection(false);
    let first = connection_status(&conn, observed, at(T0));
    assert!(!unchanged(None, &first), "no status yet: write");
    assert!(unchanged(Some(&first), &first));

    // A sidecar reported the version: the reconciler still leaves it out, and writes nothing.
    let mut reported = first.clone();
    reported.server_version = Some("16.4".into());
    conn.status = Some(reported.clone());
    let again = connection_status(&conn, observed, at(T0 + 60));
    assert_eq!(again.server_version, None);
    assert!(unchanged(Some(&reported), &again));
    let sent = serde_json::to_value(&again).unwrap();
    assert!(sent.get("serverVersion").is_none(), "{sent}");

    // Anything else that changes is still a change.
    conn.metadata.generation = Some(4);
    let bumped = connection_status(&conn, observed, at(T0 + 120));
    assert!(!unchanged(Some(&reported), &bumped));
    let down = Probe::Unreachable("Connection refused (os error 111)".into());
    conn.metadata.generation = Some(3);
    let failed = connection_status(
        &conn,
        Observed {
            probe: Some(&down),
            ..observed
        },
        at(T0 + 180),
    );
    assert!(!unchanged(Some(&reported), &failed));
}

#[test]
fn ipv6_hosts_are_bracketed_in_messages() {
    let mut conn = connection(false);
    conn.spec.host = "fd00::5".into();
    let up = Probe::Connected;
    let status = connection_status(
        &conn,
        Observed {
            probe: Some(&up),
            ..Observed::default()
        },
        at(T0),
    );
    let reachable = condition::find(&status.conditions, types::REACHABLE).unwrap();
    assert_eq!(
        reachable.message,
        "TCP connection to [fd00::5]:5432 succeeded (login not attempted)"
    );
}

#[test]
fn pods_without_their_sidecar_are_a_condition_of_their_own_that_leaves_ready_alone() {
    use crate::reconcile::{connection::PodsSeen, pods::MissingReason};

    let conn = connection(false);
    let creds = secret(&["username", "password"]);
    let up = Probe::Connected;
    let observed = |pods| Observed {
        credentials: Some(&creds),
        probe: Some(&up),
        pods,
        ..Observed::default()
    };
    let status_of = |conn: &DatabaseConnection, pods, t| connection_status(conn, observed(pods), at(t));
    let summary = |status: &DatabaseConnectionStatus| -> Vec<(String, ConditionStatus, String)> {
        status
            .conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status, c.reason.clone()))
            .collect()
    };
    let row = |t: &str, s, r: &str| (t.to_owned(), s, r.to_owned());

    // Not looked at (the pod cache is not loaded) and never written: no such condition.
    let unknown = status_of(&conn, None, T0);
    assert_eq!(
        condition::find(&unknown.conditions, types::PODS_WITHOUT_SIDECAR),
        None
    );

    let missing = PodsSeen::Missing {
        reason: MissingReason::NamespaceNotOptedIn,
        pods: vec!["web-1".into()],
    };
    let first = status_of(&conn, Some(&missing), T0);
    assert_eq!(
        summary(&first),
        [
            row("CredentialsResolved", True, "Resolved"),
            row("Reachable", True, "Connected"),
            row("Ready", True, "Ready"),
            row("PodsWithoutSidecar", True, "NamespaceNotOptedIn"),
        ]
    );
    let c = condition::find(&first.conditions, types::PODS_WITHOUT_SIDECAR).unwrap();
    assert_eq!(c.observed_generation, Some(3));
    assert!(c.message.contains("\"web-1\""), "{}", c.message);

    // Not looked at this time: the condition stays as it was.
    let mut stored = conn.clone();
    stored.status = Some(first.clone());
    assert_eq!(status_of(&stored, None, T0 + 60), first);
    // Looked at again, unchanged: equal, so nothing is written.
    assert_eq!(status_of(&stored, Some(&missing), T0 + 60), first);

    // The pod was recreated with its sidecar.
    let fixed = status_of(&stored, Some(&PodsSeen::AllInjected), T0 + 120);
    let c = condition::find(&fixed.conditions, types::PODS_WITHOUT_SIDECAR).unwrap();
    assert_eq!((c.status, c.reason.as_str()), (False, "AllInjected"));
    assert_eq!(c.last_transition_time, "2027-01-15T08:02:00Z");
    let ready = condition::find(&fixed.conditions, types::READY).unwrap();
    assert_eq!(
        ready.last_transition_time, "2027-01-15T08:00:00Z",
        "Ready did not change"
    );
}
