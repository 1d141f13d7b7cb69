//! The control API over real HTTPS (the operator's own certificates), called by the sidecar's own
//! client, with real ES256-signed service-account tokens checked by TokenReview against a stand-in API
//! server (`support/fake_api.rs`).

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use dbward_crds::{
    ApprovalPhase,
    wire::{ApprovalCreate, ClusterIssuer, GrantTake},
};
use dbward_sidecar::config::operator::OperatorError;
use http::StatusCode;
use kube::runtime::watcher;
use support::bed::{NS, POD_UID, Setup, bed as start, connection, pod, policy, secret};

async fn bed() -> support::bed::Bed {
    start(Setup {
        connections: vec![
            connection("orders", NS, "orders-db"),
            connection("analytics", NS, "analytics-db"),
            connection("orders", "elsewhere", "orders-db"),
        ],
        policies: vec![
            policy("orders-read", NS, &["orders"], true),
            policy("analytics-read", NS, &["analytics"], true),
            policy("broken", NS, &["orders"], false),
            policy("other-ns", "elsewhere", &["orders"], true),
        ],
        pods: vec![
            pod("web-1", POD_UID, "web", "orders"),
            pod("batch-1", "uid-batch", "batch", "orders"),
        ],
        secrets: vec![secret(
            "orders-db",
            &[("username", "app"), ("password", "s3cret"), ("unrelated", "x")],
        )],
    })
    .await
}

fn refused(e: OperatorError) -> (StatusCode, String) {
    match e {
        OperatorError::Refused { status, message, .. } => (status, message),
        other => panic!("expected a refusal, got {other}"),
    }
}

fn orders() -> Vec<String> {
    vec!["orders".to_owned()]
}

#[tokio::test]
async fn an_injected_pod_gets_its_connections_credentials_and_policies() {
    let bed = bed().await;
    let cfg = bed
        .web()
        .config(&orders(), None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cfg.identity.namespace, NS);
    assert_eq!(cfg.identity.service_account, "web");
    assert_eq!(cfg.identity.pod, "web-1");
    assert_eq!(cfg.connections.len(), 1);
    assert_eq!(cfg.connections[0].spec.host, "orders.db.internal");
    // Only the keys the connection references, never the rest of the Secret.
    assert_eq!(cfg.secrets.len(), 1);
    let keys: Vec<&str> = cfg.secrets[0].data.keys().map(String::as_str).collect();
    assert_eq!(keys, ["password", "username"]);
    // The namespace's valid policies naming the connection; not another namespace's, not an invalid one,
    // not one for a connection the pod does not use.
    let names: Vec<&str> = cfg.policies.iter().map(|p| p.metadata.name.as_str()).collect();
    assert_eq!(names, ["orders-read"]);
    // The sidecar can run it.
    let file = dbward_sidecar::config::operator::to_file_config(&cfg).unwrap();
    let opts = dbward_sidecar::config::runtime::RunOptions::default();
    dbward_sidecar::config::runtime::build(&file, &opts, None, &dbward_sidecar::config::operator::no_env)
        .unwrap();
}

#[tokio::test]
async fn tokens_that_do_not_prove_an_injected_pod_are_refused() {
    let bed = bed().await;
    let cases = [
        (
            "no pod binding",
            bed.issuer.token(NS, "web", None, "dbward.dev", 600),
            StatusCode::UNAUTHORIZED,
            "not bound to a pod",
        ),
        (
            "wrong audience",
            bed.issuer.token(
                NS,
                "web",
                Some(("web-1", POD_UID)),
                "https://kubernetes.default.svc",
                600,
            ),
            StatusCode::UNAUTHORIZED,
            "not valid",
        ),
        (
            "expired",
            bed.issuer
                .token(NS, "web", Some(("web-1", POD_UID)), "dbward.dev", -120),
            StatusCode::UNAUTHORIZED,
            "not valid",
        ),
        (
            "replaced pod",
            bed.issuer
                .token(NS, "web", Some(("web-1", "another-uid")), "dbward.dev", 600),
            StatusCode::FORBIDDEN,
            "no longer exists",
        ),
        (
            "pod of another service account",
            bed.issuer
                .token(NS, "web", Some(("batch-1", "uid-batch")), "dbward.dev", 600),
            StatusCode::FORBIDDEN,
            "runs as service account",
        ),
    ];
    for (what, token, status, needle) in cases {
        let e = bed
            .client(&token)
            .config(&orders(), None, Duration::ZERO)
            .await
            .unwrap_err();
        let (got, message) = refused(e);
        assert_eq!(got, status, "{what}: {message}");
        assert!(message.contains(needle), "{what}: {message}");
    }
    // Not a JWT at all.
    let (got, _) = refused(
        bed.client("garbage")
            .config(&orders(), None, Duration::ZERO)
            .await
            .unwrap_err(),
    );
    assert_eq!(got, StatusCode::UNAUTHORIZED);
    // A connection the pod was not injected with.
    let e = bed
        .web()
        .config(&["analytics".to_owned()], None, Duration::ZERO)
        .await
        .unwrap_err();
    let (got, message) = refused(e);
    assert_eq!(got, StatusCode::FORBIDDEN);
    assert!(message.contains("analytics"), "{message}");
}

#[tokio::test]
async fn a_missing_credential_is_named_and_retried_not_leaked() {
    let bed = bed().await;
    bed.world.lock().unwrap().secrets.insert(
        (NS.into(), "orders-db".into()),
        secret("orders-db", &[("username", "app"), ("pasword", "s3cret")]),
    );
    let e = bed
        .web()
        .config(&orders(), None, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    let (status, message) = refused(e);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(message.contains("no key \"password\""), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
}

#[tokio::test]
async fn a_policy_edit_wakes_the_long_poll_and_no_change_answers_not_modified() {
    let mut bed = bed().await;
    let client = bed.web();
    let first = client
        .config(&orders(), None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    // Nothing changes: the poll ends with "not modified" after its wait.
    let same = client
        .config(&orders(), Some(&first.revision), Duration::from_secs(1))
        .await
        .unwrap();
    assert!(same.is_none());
    // A policy is edited while the sidecar waits.
    let waiting = tokio::spawn({
        let client = client.clone();
        let rev = first.revision.clone();
        async move {
            client
                .config(&orders(), Some(&rev), Duration::from_secs(30))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut edited = policy("orders-read", NS, &["orders"], true);
    edited.spec.rules[0]
        .operations
        .push(dbward_crds::Operation::Insert);
    bed.pol_writer.apply_watcher_event(&watcher::Event::Apply(edited));
    bed.state.config_changed();
    let next = waiting.await.unwrap().unwrap().expect("a new configuration");
    assert_ne!(next.revision, first.revision);
    assert!(
        next.policies[0].spec.rules[0]
            .operations
            .contains(&dbward_crds::Operation::Insert)
    );
    // The cluster's issuer joins, and changes the revision too.
    bed.state.set_cluster_issuers(vec![ClusterIssuer {
        issuer: support::fake_api::ISSUER.into(),
        audiences: vec!["dbward.dev".into()],
        jwks: serde_json::json!({"keys": []}),
    }]);
    let third = client
        .config(&orders(), Some(&next.revision), Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third.cluster_issuers.len(), 1);
    // Deleting the connection: the pod's configuration is refused (the sidecar then refuses everything).
    bed.conn_writer
        .apply_watcher_event(&watcher::Event::Delete(connection("orders", NS, "orders-db")));
    bed.state.config_changed();
    let (status, message) = refused(client.config(&orders(), None, Duration::ZERO).await.unwrap_err());
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(message.contains("does not exist"), "{message}");
}

fn create(statement: &str) -> ApprovalCreate {
    ApprovalCreate {
        connection: "orders".into(),
        subject: "system:serviceaccount:shop:web".into(),
        uid: Some(1000),
        statement: statement.into(),
        fingerprint: format!("fp-{statement}"),
        rule: "orders-read/deletes".into(),
        timeout_seconds: 300,
    }
}

#[tokio::test]
async fn approval_requests_are_made_from_the_verified_pod_and_follow_the_decision() {
    let bed = bed().await;
    let client = bed.web();
    let t = client
        .create_approval(&create("delete from orders"))
        .await
        .unwrap();
    assert!(!t.reused);
    assert_eq!(t.namespace, NS);
    {
        let w = bed.world.lock().unwrap();
        let obj = &w.approvals[&(NS.to_owned(), t.name.clone())];
        assert_eq!(obj["spec"]["requester"]["serviceAccount"], "shop/web");
        assert_eq!(obj["spec"]["requester"]["pod"], "web-1");
        assert_eq!(obj["spec"]["statement"], "delete from orders");
    }
    // The same statement from the same caller while pending: the same request.
    let again = client
        .create_approval(&create("delete from orders"))
        .await
        .unwrap();
    assert!(again.reused);
    assert_eq!(again.name, t.name);
    // Pending after a short wait.
    let s = client.approval(&t.name, Duration::from_secs(1)).await.unwrap();
    assert_eq!(s.phase, ApprovalPhase::Pending);
    // A waiting sidecar sees the decision when a person makes it.
    let waiting = tokio::spawn({
        let (client, name) = (client.clone(), t.name.clone());
        async move { client.approval(&name, Duration::from_secs(30)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    bed.world.lock().unwrap().decide(NS, &t.name, "Approved", "alice");
    let decided = waiting.await.unwrap().unwrap();
    assert_eq!(decided.phase, ApprovalPhase::Approved);
    assert_eq!(decided.decided_by.as_deref(), Some("alice"));
    // Expiring a decided request changes nothing.
    client.expire_approval(&t.name, "client went away").await.unwrap();
    assert_eq!(
        client.approval(&t.name, Duration::ZERO).await.unwrap().phase,
        ApprovalPhase::Approved
    );
    // Another request is withdrawn.
    let other = client
        .create_approval(&create("delete from payments"))
        .await
        .unwrap();
    client
        .expire_approval(&other.name, "the client cancelled")
        .await
        .unwrap();
    let s = client.approval(&other.name, Duration::ZERO).await.unwrap();
    assert_eq!(s.phase, ApprovalPhase::Expired);
    assert_eq!(s.reason.as_deref(), Some("the client cancelled"));
    // Another service account's pod cannot see or touch it.
    let batch = bed.client(
        &bed.issuer
            .token(NS, "batch", Some(("batch-1", "uid-batch")), "dbward.dev", 600),
    );
    let (status, _) = refused(batch.approval(&t.name, Duration::ZERO).await.unwrap_err());
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Bad requests say why.
    let mut bad = create("x");
    bad.timeout_seconds = 0;
    let (status, message) = refused(client.create_approval(&bad).await.unwrap_err());
    assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");
    let mut bad = create("x");
    bad.connection = "analytics".into();
    let (status, _) = refused(client.create_approval(&bad).await.unwrap_err());
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_grant_is_taken_once_and_only_by_its_caller() {
    let bed = bed().await;
    let client = bed.web();
    let t = client
        .create_approval(&create("update orders set x = 1"))
        .await
        .unwrap();
    let take = |once| GrantTake {
        subject: "system:serviceaccount:shop:web".into(),
        fingerprint: "fp-update orders set x = 1".into(),
        window_seconds: 600,
        once,
    };
    assert_eq!(
        client.take_grant(&take(true)).await.unwrap(),
        None,
        "not approved yet"
    );
    bed.world.lock().unwrap().decide(NS, &t.name, "Approved", "alice");
    let mut other = take(true);
    other.subject = "someone-else".into();
    assert_eq!(client.take_grant(&other).await.unwrap(), None);
    assert_eq!(
        client.take_grant(&take(true)).await.unwrap(),
        Some(t.name.clone())
    );
    assert_eq!(
        client.take_grant(&take(true)).await.unwrap(),
        None,
        "used once already"
    );
    assert!(
        bed.world.lock().unwrap().approvals[&(NS.to_owned(), t.name.clone())]["metadata"]["annotations"]["dbward.dev/used-at"]
            .is_string()
    );
    // Within a window (not once), it may be used again.
    let t2 = client
        .create_approval(&create("update orders set y = 2"))
        .await
        .unwrap();
    bed.world
        .lock()
        .unwrap()
        .decide(NS, &t2.name, "Approved", "alice");
    let mut window = take(false);
    window.fingerprint = "fp-update orders set y = 2".into();
    assert_eq!(client.take_grant(&window).await.unwrap(), Some(t2.name.clone()));
    assert_eq!(client.take_grant(&window).await.unwrap(), Some(t2.name.clone()));
    let mut expired_window = window.clone();
    expired_window.window_seconds = 0;
    assert_eq!(client.take_grant(&expired_window).await.unwrap(), None);
}

/// The status patches the fake API server received: (path and query, body).
fn status_patches(bed: &support::bed::Bed) -> Vec<(String, serde_json::Value)> {
    bed.world.lock().unwrap().status_patches.clone()
}

/// What the DatabaseConnection watch delivers after a write: the object as the API server has it.
fn mirror_connection(bed: &mut support::bed::Bed, name: &str) {
    let obj = bed.world.lock().unwrap().connections[&(NS.to_owned(), name.to_owned())].clone();
    let typed: dbward_crds::DatabaseConnection = serde_json::from_value(obj).unwrap();
    bed.conn_writer.apply_watcher_event(&watcher::Event::Apply(typed));
}

const VERSION: &str = "16.4 (Debian 16.4-1.pgdg120+1)";

#[tokio::test]
async fn a_reported_server_version_is_applied_once_under_its_own_field_manager() {
    let mut bed = bed().await;
    let client = bed.web();
    client.report_server_version("orders", VERSION).await.unwrap();
    let patches = status_patches(&bed);
    assert_eq!(patches.len(), 1, "{patches:?}");
    let (at, body) = &patches[0];
    let (path, query) = at.split_once('?').unwrap();
    assert_eq!(
        path,
        "/apis/dbward.dev/v1alpha1/namespaces/shop/databaseconnections/orders/status"
    );
    let query: Vec<&str> = query.split('&').collect();
    assert!(query.contains(&"force=true"), "{query:?}");
    assert!(
        query.contains(&"fieldManager=dbward-operator%2Fserver-version"),
        "{query:?}"
    );
    assert_eq!(
        dbward_operator::reconcile::SERVER_VERSION_FIELD_MANAGER,
        "dbward-operator/server-version"
    );
    // Only the version: no conditions or generation to take from the reconciler's manager.
    assert_eq!(
        *body,
        serde_json::json!({
            "apiVersion": "dbward.dev/v1alpha1", "kind": "DatabaseConnection",
            "status": {"serverVersion": VERSION},
        })
    );

    // Once the cache shows it, the same report from every sidecar writes nothing.
    mirror_connection(&mut bed, "orders");
    let batch = bed.client(
        &bed.issuer
            .token(NS, "batch", Some(("batch-1", "uid-batch")), "dbward.dev", 600),
    );
    for c in [&client, &batch, &client] {
        c.report_server_version("orders", VERSION).await.unwrap();
    }
    assert_eq!(status_patches(&bed).len(), 1, "a known version was written again");

    // The database is upgraded: the new version is written.
    client.report_server_version("orders", "17.2").await.unwrap();
    let patches = status_patches(&bed);
    assert_eq!(patches.len(), 2, "{patches:?}");
    assert_eq!(
        patches[1].1["status"],
        serde_json::json!({"serverVersion": "17.2"})
    );
}

#[tokio::test]
async fn server_version_reports_are_refused_for_other_connections_and_bad_versions() {
    let bed = bed().await;
    let client = bed.web();
    // Not injected for the connection (it exists in the namespace): 403.
    let (status, message) = refused(
        client
            .report_server_version("analytics", VERSION)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, StatusCode::FORBIDDEN, "{message}");
    assert!(message.contains("\"analytics\""), "{message}");
    // A token that proves no pod: 401, as for every call.
    let unbound = bed.client(&bed.issuer.token(NS, "web", None, "dbward.dev", 600));
    let (status, message) = refused(
        unbound
            .report_server_version("orders", VERSION)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{message}");
    // Versions that are not one: 400, saying why.
    let too_long = "9".repeat(dbward_crds::wire::MAX_SERVER_VERSION_BYTES + 1);
    let cases = [
        ("", "serverVersion: must not be empty"),
        (" ", "serverVersion: must not be empty"),
        (too_long.as_str(), "serverVersion: is 257 bytes long; at most 256"),
        (
            "16.4\r\nX-Evil: 1",
            "serverVersion: holds the control character U+000D at byte 4",
        ),
    ];
    for (version, want) in cases {
        let e = client.report_server_version("orders", version).await.unwrap_err();
        assert!(!e.is_transient(), "{e}");
        let (status, message) = refused(e);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{version:?}: {message}");
        assert!(message.contains(want), "{version:?}: {message}");
    }
    // Injected for a connection that does not exist: 404.
    let gone = pod("web-2", "uid-web-2", "web", "orders,gone");
    bed.world
        .lock()
        .unwrap()
        .pods
        .insert((NS.into(), "web-2".into()), gone);
    let web2 = bed.client(
        &bed.issuer
            .token(NS, "web", Some(("web-2", "uid-web-2")), "dbward.dev", 600),
    );
    let (status, message) = refused(web2.report_server_version("gone", VERSION).await.unwrap_err());
    assert_eq!(status, StatusCode::NOT_FOUND, "{message}");
    assert!(
        message.contains("\"gone\" does not exist in namespace shop"),
        "{message}"
    );
    assert!(status_patches(&bed).is_empty(), "a refused report was written");
}

#[tokio::test]
async fn the_sidecars_reporter_posts_each_new_version_in_the_background() {
    let bed = bed().await;
    let versions = dbward_sidecar::config::report::ServerVersions::spawn(std::sync::Arc::new(bed.web()));
    let written = |want: usize| {
        let world = bed.world.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let patches = world.lock().unwrap().status_patches.clone();
                if patches.len() >= want {
                    return patches;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{want} status patch(es) expected within 10 s; got {patches:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    versions.note("orders", VERSION);
    let patches = written(1).await;
    assert_eq!(patches[0].1["status"]["serverVersion"], VERSION);
    versions.note("orders", VERSION);
    versions.note("orders", "17.2");
    let patches = written(2).await;
    assert_eq!(patches[1].1["status"]["serverVersion"], "17.2");
}
