//! The control API and approvals against a real API server, driven as the kubelet would drive them: the
//! test asks the TokenRequest API for the pod's projected token (audience `dbward.dev`, bound to the
//! Pod) and hands it to a sidecar process it runs here, in front of a real PostgreSQL. Through the
//! operator's control API that sidecar gets its connection, credential and policies; it masks, denies,
//! follows a policy edit, and holds a `DELETE` until `kubectl patch --subresource=status` approves its
//! ApprovalRequest. The reconcilers' status conditions, and the server version the sidecar reports, are
//! checked along the way.
//!
//! `approvals` is one test function, so that its steps share one operator (see e2e/README.md).

use std::time::{Duration, Instant};

use dbward_crds::{
    AccessPolicy, ApprovalPhase, ApprovalRequest, Condition, ConditionStatus, DatabaseConnection,
};
use dbward_e2e::{
    Env, binaries, free_port, kubeconfig_or_skip,
    manifests::sidecar_run_args,
    objects,
    process::Proc,
    say,
    wait::{Deadline, POLL, bounded, until},
};
use kube::{Api, Resource, ResourceExt, api::ListParams};
use serde_json::json;

const APPROVE: &str = r#"{"status":{"phase":"Approved"}}"#;
const DENY: &str = r#"{"status":{"phase":"Denied","reason":"changed my mind"}}"#;

fn orders_policy(ns: &str, run: &str, table: &str, allow_insert: bool) -> AccessPolicy {
    let mut operations = vec!["select", "set", "transaction"];
    if allow_insert {
        operations.push("insert");
    }
    objects::policy(
        ns,
        "orders-policy",
        run,
        json!({
            "connections": ["orders"],
            "subjects": [{"serviceAccount": {"name": "app"}}],
            "rules": [
                {"name": "read", "action": "allow", "operations": operations},
                {"name": "deletes", "action": "requireApproval", "operations": ["delete"]},
            ],
            "masking": [{"columns": [format!("public.{table}.email")], "strategy": "redact"}],
            "approval": {"mode": "wait", "timeout": "2m"},
        }),
    )
}

/// `orders`: the PostgreSQL at `(host, port, database)`, served by the sidecar on `local_port`.
fn orders_connection(
    ns: &str,
    run: &str,
    (host, port, database): (&str, u16, &str),
    local_port: u16,
) -> DatabaseConnection {
    objects::connection(
        ns,
        "orders",
        run,
        json!({
            "host": host, "port": port, "database": database,
            "credentialsSecretRef": {"name": "orders-db"},
            "tls": {"mode": "disable"},
            "localPort": local_port,
        }),
    )
}

/// Valid, but its `validUntil` has passed; for a connection no pod here uses.
fn expired_policy(ns: &str, run: &str) -> AccessPolicy {
    objects::policy(
        ns,
        "expired",
        run,
        json!({
            "connections": ["analytics"],
            "subjects": [{"serviceAccount": {"name": "app"}}],
            "rules": [{"action": "allow", "operations": ["select"]}],
            "validUntil": "2020-01-01T00:00:00Z",
        }),
    )
}

/// Accepted by the CRD's schema, refused by validation: a masking column that is not
/// `schema.table.column`.
fn invalid_policy(ns: &str, run: &str) -> AccessPolicy {
    objects::policy(
        ns,
        "invalid",
        run,
        json!({
            "connections": ["analytics"],
            "subjects": [{"serviceAccount": {"name": "app"}}],
            "rules": [{"action": "allow", "operations": ["select"]}],
            "masking": [{"columns": ["email"], "strategy": "redact"}],
        }),
    )
}

/// The field `invalid_policy` gets wrong.
const INVALID_FIELD: &str = "spec.masking[0].columns[0]";

/// A client of the sidecar's listener for connection `orders`, once it listens (it does only after
/// its first configuration from the operator).
async fn connect(port: u16, sidecar: &mut Proc) -> tokio_postgres::Client {
    let conn = format!("host=127.0.0.1 port={port} user=app dbname=orders connect_timeout=5");
    let deadline = Deadline::new(
        format!("the sidecar to serve connection orders on 127.0.0.1:{port}"),
        Duration::from_secs(90),
    );
    loop {
        let attempt = tokio_postgres::connect(&conn, tokio_postgres::NoTls);
        let last = match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Ok(Ok((client, connection))) => {
                tokio::spawn(connection);
                return client;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "a connection attempt hung for 10 s".to_owned(),
        };
        sidecar.assert_running();
        deadline.check(&last);
        deadline.sleep(POLL).await;
    }
}

fn summary(conditions: &[Condition]) -> String {
    let all: Vec<String> = conditions
        .iter()
        .map(|c| format!("{}={} ({})", c.type_, c.status, c.reason))
        .collect();
    format!("[{}]", all.join(", "))
}

/// Whether `conditions` hold each of `want` (type, status, reason when given).
fn holds(conditions: &[Condition], want: &[(&str, ConditionStatus, Option<&str>)]) -> bool {
    want.iter().all(|(type_, status, reason)| {
        conditions
            .iter()
            .any(|c| c.type_ == *type_ && c.status == *status && reason.is_none_or(|r| c.reason == r))
    })
}

/// Waits until the operator has written `want` into the status of AccessPolicy `name`, for its
/// current generation.
async fn await_policy(
    api: &Api<AccessPolicy>,
    name: &str,
    want: &[(&str, ConditionStatus, Option<&str>)],
) -> AccessPolicy {
    until(
        &format!("AccessPolicy {name} to get the conditions {want:?} for its current generation"),
        Duration::from_secs(60),
        POLL,
        move || async move {
            let p = api.get(name).await.map_err(|e| e.to_string())?;
            let status = p.status.clone().unwrap_or_default();
            let generation = p.meta().generation;
            if status.observed_generation != generation || !holds(&status.conditions, want) {
                return Err(format!(
                    "generation {generation:?}, observedGeneration {:?}, conditions {}",
                    status.observed_generation,
                    summary(&status.conditions)
                ));
            }
            Ok(p)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals() {
    let Some(kubeconfig) = kubeconfig_or_skip("approvals") else {
        return;
    };
    let pg = dbward_testkit::shared();
    let env = Env::start(kubeconfig, binaries!()).await;
    let run = env.run.clone();
    let table = format!("e2e_{run}");
    pg.psql(&format!(
        "create table public.{table} (id int primary key, email text not null, note text);
         insert into public.{table} values (1, 'ann@example.com', 'a'), (2, 'bob@example.com', 'b');
         grant select, insert, update, delete on public.{table} to {};",
        pg.app_user()
    ))
    .unwrap_or_else(|e| panic!("cannot make the test table: {e}"));

    // --- An opted-in namespace: a connection to the real PostgreSQL, its Secret, policies, a pod ---
    let ns = env.namespace("app", true).await;
    env.service_account(&ns, "app").await;
    env.create(&objects::secret(
        &ns,
        "orders-db",
        &run,
        &[("username", pg.app_user()), ("password", pg.app_password())],
    ))
    .await;
    let local_port = free_port();
    env.create(&orders_connection(
        &ns,
        &run,
        (pg.host(), pg.port(), pg.database()),
        local_port,
    ))
    .await;
    env.apply(&orders_policy(&ns, &run, &table, false)).await;
    // Two more for the reconciler to judge, naming a connection no pod here uses.
    env.create(&expired_policy(&ns, &run)).await;
    env.create(&invalid_policy(&ns, &run)).await;
    let pod = env
        .create_pod(&objects::pod(
            &ns,
            "orders-app",
            &run,
            "app",
            &[("dbward.dev/inject", "orders")],
        ))
        .await;
    let pod_name = pod.name_any();

    // --- The sidecar, started as the kubelet would: the pod's projected token, the injected CA ---
    let token = env.pod_token(&pod).await;
    let token_file = env.write_file("token", &token).to_string_lossy().into_owned();
    let ca_file = env.ca_file.to_string_lossy().into_owned();
    let journal_dir = std::path::Path::new(&token_file)
        .with_file_name("journal")
        .to_string_lossy()
        .into_owned();
    let args = sidecar_run_args(&env.control_url, "orders", &token_file, &ca_file, &journal_dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut sidecar = env.spawn_sidecar("sidecar", &args);
    let client = connect(local_port, &mut sidecar).await;
    say!("approvals: the sidecar took its configuration from the operator and serves 127.0.0.1:{local_port}");

    // --- The operator's policy: reads allowed and masked, inserts denied ---
    let select = format!("select id, email, note from public.{table} order by id");
    let rows = bounded(
        "a SELECT through the sidecar",
        Duration::from_secs(30),
        client.query(&select, &[]),
    )
    .await
    .unwrap_or_else(|e| panic!("the SELECT failed: {e}"));
    assert_eq!(rows.len(), 2);
    let email: String = rows[0].get(1);
    assert_ne!(email, "ann@example.com", "the masked column came back in clear");
    assert_eq!(rows[0].get::<_, String>(2), "a", "an unmasked column changed");
    let insert = format!("insert into public.{table} values (3, 'cy@example.com', 'c')");
    let err = bounded(
        "an INSERT through the sidecar",
        Duration::from_secs(30),
        client.execute(&insert, &[]),
    )
    .await
    .err()
    .unwrap_or_else(|| panic!("the INSERT ran, though no policy allows it"));
    assert_eq!(err.code().map(|c| c.code()), Some("42501"), "{err}");
    say!("approvals: select masked, insert denied");

    // --- A policy edit reaches the running sidecar ---
    let edited = Instant::now();
    env.apply(&orders_policy(&ns, &run, &table, true)).await;
    let (c, statement) = (&client, insert.as_str());
    until(
        "the edited policy (insert allowed) to reach the running sidecar",
        Duration::from_secs(30),
        Duration::from_millis(100),
        move || async move {
            match c.execute(statement, &[]).await {
                Ok(n) => Ok(n),
                Err(e) if e.code().map(|c| c.code()) == Some("42501") => Err(format!("still denied: {e}")),
                Err(e) => panic!("the INSERT failed otherwise than by policy: {e}"),
            }
        },
    )
    .await;
    say!("policy edit: apply to effect {:?}", edited.elapsed());

    // --- A DELETE waits for a person ---
    let delete = format!("delete from public.{table} where id = 1");
    let held = tokio::spawn(async move {
        let result = client.execute(delete.as_str(), &[]).await;
        (client, result, Instant::now())
    });
    let requests: Api<ApprovalRequest> = Api::namespaced(env.client.clone(), &ns);
    let (api, pod_ref) = (&requests, &pod_name);
    let request = until(
        "the held DELETE's ApprovalRequest (spec.requester.pod = the pod)",
        Duration::from_secs(30),
        POLL,
        move || async move {
            let list = api
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let n = list.items.len();
            list.items
                .into_iter()
                .find(|a| a.spec.requester.pod.as_deref() == Some(pod_ref.as_str()))
                .ok_or_else(|| format!("{n} ApprovalRequest(s), none from pod {pod_ref}"))
        },
    )
    .await;
    let name = request.name_any();
    let spec = &request.spec;
    assert_eq!(spec.connection, "orders");
    assert_eq!(
        spec.requester.service_account.as_deref(),
        Some(format!("{ns}/app").as_str())
    );
    assert_eq!(spec.requester.subject, format!("system:serviceaccount:{ns}:app"));
    assert_eq!(spec.rule, format!("{ns}/orders-policy/deletes"));
    assert!(
        spec.statement.contains(&format!("public.{table} where id = 1")),
        "the request's statement: {:?}",
        spec.statement
    );
    let phase = request.status.as_ref().map(|s| s.phase);
    assert!(
        matches!(phase, None | Some(ApprovalPhase::Pending)),
        "a new request is {phase:?}"
    );
    assert!(!held.is_finished(), "the DELETE finished without an approval");
    say!("approvals: the DELETE waits on ApprovalRequest {ns}/{name}");

    // --- Approved with kubectl, as a person would ---
    let patched = Instant::now();
    let out = env
        .kubectl(&[
            "patch",
            "approvalrequest",
            &name,
            "-n",
            &ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            APPROVE,
        ])
        .await;
    let kubectl_took = patched.elapsed();
    assert!(
        out.status.success(),
        "kubectl patch --subresource=status failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let (client, result, done) = bounded("the approved DELETE to complete", Duration::from_secs(60), held)
        .await
        .unwrap_or_else(|e| panic!("the task running the DELETE failed: {e}"));
    let deleted = result.unwrap_or_else(|e| panic!("the approved DELETE failed: {e}"));
    say!(
        "approval: patch to result {:?}",
        done.saturating_duration_since(patched)
    );
    say!("approval: (of which kubectl patch itself took {kubectl_took:?})");
    assert_eq!(deleted, 1, "rows deleted");
    let left = pg
        .psql(&format!("select count(*) from public.{table} where id = 1"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(left, "0", "the row is still there");

    // The webhook stamped who decided, from the authenticated user.
    let decided = requests
        .get(&name)
        .await
        .unwrap_or_else(|e| panic!("cannot read ApprovalRequest {name}: {e}"));
    let status = decided.status.clone().unwrap_or_default();
    assert_eq!(status.phase, ApprovalPhase::Approved);
    let decided_by = status.decided_by.clone().unwrap_or_default();
    assert!(!decided_by.is_empty(), "decidedBy was not stamped: {status:?}");
    assert!(
        status.decided_at.is_some(),
        "decidedAt was not stamped: {status:?}"
    );
    if let Some(admin) = env.admin_username().await {
        assert_eq!(decided_by, admin, "decidedBy is not the user who approved");
    }
    say!(
        "approvals: decidedBy {decided_by:?}, decidedAt {:?}",
        status.decided_at
    );

    // The sidecar's journal has the held statement with who approved it, written before the client
    // got its result.
    let segments = dbward_sidecar::journal::replay::segments(&[journal_dir.clone().into()])
        .unwrap_or_else(|e| panic!("the sidecar's journal: {e}"));
    let mut recorded = None;
    dbward_sidecar::journal::replay::read_events(&segments, |e, _| {
        if e.get("event").and_then(|v| v.as_str()) == Some("statement")
            && e.get("approval")
                .and_then(|a| a.get("request"))
                .and_then(|r| r.as_str())
                == Some(name.as_str())
        {
            recorded = Some(e.clone());
        }
        Ok(())
    })
    .unwrap_or_else(|e| panic!("reading the sidecar's journal: {e}"));
    let recorded = recorded.unwrap_or_else(|| panic!("the journal does not record request {name}"));
    assert_eq!(recorded["decision"], "requireApproval", "{recorded:?}");
    assert_eq!(recorded["approval"]["outcome"], "approved", "{recorded:?}");
    assert_eq!(
        recorded["approval"]["decidedBy"],
        decided_by.as_str(),
        "{recorded:?}"
    );
    say!(
        "approvals: the journal records the approved DELETE (seq {})",
        recorded["seq"]
    );

    // A decided request cannot change.
    let out = env
        .kubectl(&[
            "patch",
            "approvalrequest",
            &name,
            "-n",
            &ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            DENY,
        ])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a decided request was changed to Denied");
    assert!(
        stderr.contains("already"),
        "the refusal does not say why: {stderr}"
    );
    let after = requests
        .get(&name)
        .await
        .unwrap_or_else(|e| panic!("cannot read ApprovalRequest {name}: {e}"));
    assert_eq!(after.status.map(|s| s.phase), Some(ApprovalPhase::Approved));

    // --- Status from the reconcilers ---
    use ConditionStatus::{False, True};
    let policies: Api<AccessPolicy> = Api::namespaced(env.client.clone(), &ns);
    let current = await_policy(
        &policies,
        "orders-policy",
        &[("Valid", True, None), ("Active", True, None)],
    )
    .await;
    say!(
        "approvals: AccessPolicy orders-policy: {}",
        summary(&current.status.unwrap_or_default().conditions)
    );
    await_policy(
        &policies,
        "expired",
        &[("Valid", True, None), ("Active", False, Some("Expired"))],
    )
    .await;
    let invalid = await_policy(&policies, "invalid", &[("Valid", False, Some("Invalid"))]).await;
    let errors = invalid.status.unwrap_or_default().errors;
    assert!(
        errors.iter().any(|e| e.field == INVALID_FIELD),
        "status.errors does not name the offending field: {errors:?}"
    );
    let connections: Api<DatabaseConnection> = Api::namespaced(env.client.clone(), &ns);
    let api = &connections;
    let want = [("CredentialsResolved", True, None), ("Reachable", True, None)];
    let want = &want;
    until(
        "DatabaseConnection orders to be CredentialsResolved and Reachable",
        Duration::from_secs(60),
        POLL,
        move || async move {
            let c = api.get("orders").await.map_err(|e| e.to_string())?;
            let conditions = c.status.map(|s| s.conditions).unwrap_or_default();
            if holds(&conditions, want) {
                Ok(())
            } else {
                Err(summary(&conditions))
            }
        },
    )
    .await;
    say!("approvals: policy and connection conditions written by the operator");

    // The version the sidecar's login saw, reported through the control API (the operator never logs in).
    let version = pg
        .psql("show server_version")
        .unwrap_or_else(|e| panic!("cannot read the server's version: {e}"));
    let reported = until(
        "DatabaseConnection orders to show status.serverVersion, reported by the sidecar after its login",
        Duration::from_secs(30),
        POLL,
        move || async move {
            let c = api.get("orders").await.map_err(|e| e.to_string())?;
            c.status
                .and_then(|s| s.server_version)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| "status.serverVersion is empty: no sidecar has reported a login".to_owned())
        },
    )
    .await;
    assert_eq!(
        reported, version,
        "status.serverVersion is not the server's server_version"
    );
    say!("approvals: status.serverVersion {reported:?}, as the sidecar saw it at login");

    sidecar.assert_running();
    env.assert_operator_running();
    drop(client);
    drop(sidecar);
    if let Err(e) = pg.psql(&format!("drop table public.{table}")) {
        say!("approvals: could not drop the test table: {e}");
    }
}

/// The objects above are what the test means them to be (no cluster needed).
#[test]
fn the_objects_are_what_they_seem() {
    let c = orders_connection("shop", "offline", ("127.0.0.1", 5432, "shop"), 15432);
    assert_eq!(c.spec.validate(), Ok(()));
    for allow_insert in [false, true] {
        let p = orders_policy("shop", "offline", "t", allow_insert);
        assert_eq!(
            p.spec.validate(),
            Ok(()),
            "orders-policy (insert allowed: {allow_insert})"
        );
    }
    let expired = expired_policy("shop", "offline");
    assert_eq!(expired.spec.validate(), Ok(()));
    assert!(!expired.spec.active_at(std::time::SystemTime::now()));
    let errors = invalid_policy("shop", "offline")
        .spec
        .validate()
        .err()
        .unwrap_or_default();
    assert!(
        errors.iter().any(|e| e.field == INVALID_FIELD),
        "the invalid policy's errors: {errors:?}"
    );
}
