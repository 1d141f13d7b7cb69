//! Deleting what a run made, when its [`Env`](crate::Env) is dropped (also when a test failed): the
//! webhook configurations first (their failurePolicy is Fail, and the operator is stopped), the
//! ClusterRoleBinding and ClusterRole, then every namespace, emptied kind by kind before it is deleted
//! (a cluster without kube-controller-manager has no namespace controller to do it) and finalized when
//! nothing else does.

use std::{fmt::Debug, time::Duration};

use dbward_crds::{AccessPolicy, ApprovalRequest, DatabaseConnection};
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        admissionregistration::v1::MutatingWebhookConfiguration,
        coordination::v1::Lease,
        core::v1::{ConfigMap, Event, Namespace, Pod, Secret, ServiceAccount},
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    },
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
};
use serde::de::DeserializeOwned;

use crate::{objects::RUN_LABEL, wait::Deadline};

/// The whole cleanup, so that a hung API server cannot hang the test.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(180);

/// What was made in the cluster, to be deleted; filled before each object is created, so that a
/// half-made one is tried too.
#[derive(Debug, Default)]
pub(crate) struct Created {
    pub(crate) webhooks: Vec<String>,
    pub(crate) cluster_role_bindings: Vec<String>,
    pub(crate) cluster_roles: Vec<String>,
    pub(crate) namespaces: Vec<String>,
}

/// Deletes what `created` lists, on a runtime of its own (the caller's may be unwinding), with a client
/// from `config`; reports what it could not delete, and how to remove that by hand.
pub(crate) fn run(config: kube::Config, created: &Created, run: &str) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            crate::say!("e2e: cannot start a runtime to clean up run {run}: {e}");
            return;
        }
    };
    let problems = runtime.block_on(async {
        tokio::time::timeout(CLEANUP_TIMEOUT, cleanup_cluster(config, created, run))
            .await
            .unwrap_or_else(|_| vec![format!("the cleanup did not finish within {CLEANUP_TIMEOUT:?}")])
    });
    if problems.is_empty() {
        crate::say!("e2e: run {run} cleaned up");
    } else {
        crate::say!(
            "e2e: the cleanup of run {run} left problems:\n  {}\n  remove what is left with: kubectl delete \
             mutatingwebhookconfiguration,clusterrolebinding,clusterrole,namespace -l {RUN_LABEL}={run}",
            problems.join("\n  ")
        );
    }
}

async fn cleanup_cluster(config: kube::Config, created: &Created, run: &str) -> Vec<String> {
    let client = match Client::try_from(config) {
        Ok(c) => c,
        Err(e) => return vec![format!("no client: {e}")],
    };
    let mut problems = Vec::new();
    // The webhooks first: nothing may call the stopped operator (their failurePolicy is Fail).
    let hooks: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    for name in &created.webhooks {
        match hooks.get_opt(name).await {
            Ok(Some(h)) if h.labels().get(RUN_LABEL).map(String::as_str) == Some(run) => {
                delete_reporting(&hooks, name, &mut problems).await;
            }
            Ok(_) => {}
            Err(e) => problems.push(format!("MutatingWebhookConfiguration {name}: {e}")),
        }
    }
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    for name in &created.cluster_role_bindings {
        delete_reporting(&bindings, name, &mut problems).await;
    }
    let roles: Api<ClusterRole> = Api::all(client.clone());
    for name in &created.cluster_roles {
        delete_reporting(&roles, name, &mut problems).await;
    }
    // Namespaces: emptied here, as a cluster without kube-controller-manager has no namespace controller.
    for ns in &created.namespaces {
        empty_namespace(&client, ns, &mut problems).await;
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in &created.namespaces {
        delete_reporting(&namespaces, ns, &mut problems).await;
    }
    let mut left = namespaces_left(&namespaces, &created.namespaces, Duration::from_secs(20)).await;
    if !left.is_empty() {
        // Still Terminating: no namespace controller finalizes them. They are empty; finalize them.
        for ns in &left {
            if let Err(e) = finalize_namespace(&namespaces, ns).await {
                problems.push(format!("finalizing namespace {ns}: {e}"));
            }
        }
        left = namespaces_left(&namespaces, &left, Duration::from_secs(20)).await;
    }
    for ns in left {
        problems.push(format!("namespace {ns} is still there"));
    }
    problems
}

async fn delete_reporting<K>(api: &Api<K>, name: &str, problems: &mut Vec<String>)
where
    K: Resource + Clone + Debug + DeserializeOwned,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => problems.push(format!("deleting {kind} {name}: {e}")),
    }
}

/// Deletes every object of the kinds the tests and the operator make in `ns`.
async fn empty_namespace(client: &Client, ns: &str, problems: &mut Vec<String>) {
    delete_all::<Pod>(client, ns, problems).await;
    delete_all::<ApprovalRequest>(client, ns, problems).await;
    delete_all::<AccessPolicy>(client, ns, problems).await;
    delete_all::<DatabaseConnection>(client, ns, problems).await;
    delete_all::<Secret>(client, ns, problems).await;
    delete_all::<ConfigMap>(client, ns, problems).await;
    delete_all::<ServiceAccount>(client, ns, problems).await;
    delete_all::<RoleBinding>(client, ns, problems).await;
    delete_all::<Role>(client, ns, problems).await;
    delete_all::<Lease>(client, ns, problems).await;
    delete_all::<Event>(client, ns, problems).await;
}

async fn delete_all<K>(client: &Client, ns: &str, problems: &mut Vec<String>)
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + DeserializeOwned,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    match api.delete_collection(&now, &ListParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => problems.push(format!(
            "deleting the {} of namespace {ns}: {e}",
            K::plural(&K::DynamicType::default())
        )),
    }
}

/// Which of `names` still exist after waiting up to `wait` for them to go.
async fn namespaces_left(api: &Api<Namespace>, names: &[String], wait: Duration) -> Vec<String> {
    let deadline = Deadline::new("namespaces to go", wait);
    loop {
        let mut left = Vec::new();
        for ns in names {
            if !matches!(api.get_opt(ns).await, Ok(None)) {
                left.push(ns.clone());
            }
        }
        if left.is_empty() || deadline.left().is_zero() {
            return left;
        }
        deadline.sleep(Duration::from_millis(500)).await;
    }
}

/// Removes the `kubernetes` finalizer of a Terminating namespace (what the namespace controller does
/// once the namespace is empty).
async fn finalize_namespace(api: &Api<Namespace>, name: &str) -> Result<(), kube::Error> {
    let Some(mut ns) = api.get_opt(name).await? else {
        return Ok(());
    };
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(());
    }
    crate::say!("e2e: namespace {name} stays Terminating (no namespace controller?); finalizing it");
    if let Some(spec) = ns.spec.as_mut() {
        spec.finalizers = Some(Vec::new());
    }
    api.replace_subresource("finalize", name, &PostParams::default(), &ns)
        .await?;
    Ok(())
}
