//! What the tests hand the cluster and the processes, as plain functions of their inputs, checked
//! offline: the webhook configurations, the operator's and the sidecar's command lines, the operator's
//! kubeconfig, the chart's RBAC as installed, and which kind of sidecar a server runs.

use k8s_openapi::api::{
    admissionregistration::v1::MutatingWebhookConfiguration,
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use kube::config::Kubeconfig;
use serde_json::json;

use crate::{
    cluster::{APPROVAL_WEBHOOK, OPERATOR_SA, POD_WEBHOOK, SIDECAR_IMAGE},
    objects::{self, RUN_LABEL, from_json},
};

/// The two webhook configurations as the chart makes them, but calling the operator by URL at `base`
/// and without caBundle, and only for this run's namespaces (other namespaces of the cluster never see
/// these Fail-policy webhooks, whatever their labels).
pub fn webhook_configurations(run: &str, operator_ns: &str, base: &str) -> [MutatingWebhookConfiguration; 2] {
    let this_run = json!({"key": RUN_LABEL, "operator": "In", "values": [run]});
    let mut pod = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": POD_WEBHOOK},
        "webhooks": [{
            "name": "pod-injector.dbward.dev",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded",
            "matchPolicy": "Equivalent",
            "timeoutSeconds": 10,
            "clientConfig": {"url": format!("{base}/mutate-pod")},
            "rules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
                "operations": ["CREATE"], "scope": "Namespaced",
            }],
            "namespaceSelector": {"matchExpressions": [
                {"key": objects::INJECTION_LABEL, "operator": "In", "values": ["enabled"]},
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [operator_ns]},
                this_run,
            ]},
        }],
    });
    let mut approvals = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": APPROVAL_WEBHOOK},
        "webhooks": [{
            "name": "approvals.dbward.dev",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "matchPolicy": "Equivalent",
            "timeoutSeconds": 10,
            "clientConfig": {"url": format!("{base}/mutate-approval-status")},
            "rules": [{
                "apiGroups": [dbward_crds::GROUP], "apiVersions": [dbward_crds::VERSION],
                "resources": ["approvalrequests/status"], "operations": ["UPDATE"], "scope": "Namespaced",
            }],
            "namespaceSelector": {"matchExpressions": [this_run]},
        }],
    });
    objects::label_json(&mut pod, run);
    objects::label_json(&mut approvals, run);
    [
        from_json(POD_WEBHOOK, pod),
        from_json(APPROVAL_WEBHOOK, approvals),
    ]
}

/// The operator's command line (docs/operator.md, "The binary"), out of cluster: its listen addresses,
/// the control API's URL as local sidecars reach it, and the extra names of its serving certificate.
pub fn operator_args(
    namespace: &str,
    webhook_addr: &str,
    control_addr: &str,
    admin_addr: &str,
    control_url: &str,
    cert_names: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = [
        "--namespace",
        namespace,
        "--pod-name",
        "e2e",
        "--sidecar-image",
        SIDECAR_IMAGE,
        "--webhook-addr",
        webhook_addr,
        "--control-addr",
        control_addr,
        "--admin-addr",
        admin_addr,
        "--control-url",
        control_url,
    ]
    .map(str::to_owned)
    .to_vec();
    for name in cert_names {
        args.extend(["--cert-name".to_owned(), (*name).to_owned()]);
    }
    args
}

/// The sidecar's command line as the test runs it in place of the kubelet: the injected `run
/// --operator URL --connections NAMES`, plus where the kubelet would have put the token and the
/// injector the CA, the session journal in the test's own directory (not the pod volume's path), and
/// loopback only.
pub fn sidecar_run_args(
    control_url: &str,
    connections: &str,
    token_file: &str,
    ca_file: &str,
    journal_dir: &str,
) -> Vec<String> {
    [
        "run",
        "--operator",
        control_url,
        "--connections",
        connections,
        "--token-file",
        token_file,
        "--operator-ca",
        ca_file,
        "--journal",
        journal_dir,
        "--listen",
        "127.0.0.1",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A kubeconfig (JSON, which is YAML) for the operator: the admin kubeconfig's current cluster, with
/// `token` as the user and `namespace` as the default namespace.
pub fn operator_kubeconfig(admin: &Kubeconfig, token: &str, namespace: &str) -> Result<String, String> {
    let current = admin
        .current_context
        .clone()
        .ok_or("the kubeconfig has no current-context")?;
    let context = admin
        .contexts
        .iter()
        .find(|c| c.name == current)
        .and_then(|c| c.context.clone())
        .ok_or_else(|| format!("the kubeconfig has no context {current:?}"))?;
    let cluster = admin
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .cloned()
        .ok_or_else(|| format!("the kubeconfig has no cluster {:?}", context.cluster))?;
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        // certificate-authority paths were made absolute when the admin kubeconfig was read.
        "clusters": [cluster],
        "users": [{"name": OPERATOR_SA, "user": {"token": token}}],
        "contexts": [{
            "name": OPERATOR_SA,
            "context": {"cluster": context.cluster, "user": OPERATOR_SA, "namespace": namespace},
        }],
        "current-context": OPERATOR_SA,
    });
    Ok(doc.to_string())
}

/// The operator's RBAC from the chart, ready to create.
#[derive(Debug, Clone)]
pub struct ChartRbac {
    pub cluster_role: ClusterRole,
    pub cluster_role_binding: ClusterRoleBinding,
    pub role: Role,
    pub role_binding: RoleBinding,
}

/// The objects `helm template` rendered from `charts/dbward/templates/rbac.yaml` for namespace `ns`,
/// labelled for run `run`, the cluster-scoped two renamed `dbward-operator-e2e-<run>` (so that neither
/// a real installation's nor another run's are touched). Their rules are the chart's, unchanged. An
/// error when the chart renders other objects, or binds anyone but the operator's ServiceAccount.
pub fn chart_rbac(docs: Vec<serde_json::Value>, run: &str, ns: &str) -> Result<ChartRbac, String> {
    let cluster_name = format!("{OPERATOR_SA}-e2e-{run}");
    let operator = json!([{"kind": "ServiceAccount", "name": OPERATOR_SA, "namespace": ns}]);
    let (mut cluster_role, mut cluster_role_binding, mut role, mut role_binding) = (None, None, None, None);
    for mut doc in docs {
        objects::label_json(&mut doc, run);
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let what = format!("the chart's {kind}");
        if kind.ends_with("Binding") && doc["subjects"] != operator {
            return Err(format!("{what} binds {} instead of {operator}", doc["subjects"]));
        }
        if matches!(kind.as_str(), "Role" | "RoleBinding") && doc["metadata"]["namespace"] != json!(ns) {
            return Err(format!(
                "{what} is for namespace {}, not {ns}",
                doc["metadata"]["namespace"]
            ));
        }
        let slot = match kind.as_str() {
            "ClusterRole" => {
                doc["metadata"]["name"] = json!(cluster_name);
                cluster_role
                    .replace(from_json::<ClusterRole>(&what, doc))
                    .is_some()
            }
            "ClusterRoleBinding" => {
                doc["metadata"]["name"] = json!(cluster_name);
                doc["roleRef"]["name"] = json!(cluster_name);
                cluster_role_binding
                    .replace(from_json::<ClusterRoleBinding>(&what, doc))
                    .is_some()
            }
            "Role" => role.replace(from_json::<Role>(&what, doc)).is_some(),
            "RoleBinding" => role_binding
                .replace(from_json::<RoleBinding>(&what, doc))
                .is_some(),
            other => {
                return Err(format!(
                    "charts/dbward/templates/rbac.yaml renders a {other:?}, which these tests do not install; \
                     teach e2e/src/cluster.rs about it"
                ));
            }
        };
        if slot {
            return Err(format!("charts/dbward/templates/rbac.yaml renders two of {kind}"));
        }
    }
    let missing = |what: &str| format!("charts/dbward/templates/rbac.yaml renders no {what}");
    Ok(ChartRbac {
        cluster_role: cluster_role.ok_or_else(|| missing("ClusterRole"))?,
        cluster_role_binding: cluster_role_binding.ok_or_else(|| missing("ClusterRoleBinding"))?,
        role: role.ok_or_else(|| missing("Role"))?,
        role_binding: role_binding.ok_or_else(|| missing("RoleBinding"))?,
    })
}

/// Whether an API server reporting `major`.`minor` runs native sidecars (1.29+; managed distributions
/// append `+` and such to the minor version).
pub fn native_sidecars(major: &str, minor: &str) -> bool {
    let number = |s: &str| -> Option<u64> {
        let digits: String = s.trim().chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    match (number(major), number(minor)) {
        (Some(major), _) if major > 1 => true,
        (Some(1), Some(minor)) => minor >= 29,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::{net::IpAddr, path::Path};

    use kube::{ResourceExt, config::KubeConfigOptions};

    use super::*;

    #[test]
    fn native_sidecars_from_1_29() {
        for (major, minor, want) in [
            ("1", "28", false),
            ("1", "28+", false),
            ("1", "29", true),
            ("1", "33+", true),
            ("2", "0", true),
            ("1", "", false),
            ("", "30", false),
        ] {
            assert_eq!(native_sidecars(major, minor), want, "{major}.{minor}");
        }
    }

    #[test]
    fn the_operator_takes_its_command_line() {
        let args = operator_args(
            "dbward-e2e-x",
            "0.0.0.0:1",
            "127.0.0.1:2",
            "127.0.0.1:3",
            "https://127.0.0.1:2",
            &["127.0.0.1", "10.1.2.3"],
        );
        let argv = std::iter::once("dbward-operator".to_owned()).chain(args);
        let parsed = <dbward_operator::run::Args as clap::Parser>::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("the operator refuses the tests' command line: {e}"));
        assert_eq!(parsed.namespace, "dbward-e2e-x");
        assert_eq!(parsed.pod_name.as_deref(), Some("e2e"));
        assert_eq!(parsed.sidecar_image, SIDECAR_IMAGE);
        assert_eq!(parsed.webhook_addr.to_string(), "0.0.0.0:1");
        assert_eq!(parsed.control_addr.to_string(), "127.0.0.1:2");
        assert_eq!(parsed.admin_addr.to_string(), "127.0.0.1:3");
        assert_eq!(parsed.control_url.as_deref(), Some("https://127.0.0.1:2"));
        assert_eq!(parsed.cert_names, ["127.0.0.1", "10.1.2.3"]);
        assert_eq!(parsed.service_account, OPERATOR_SA);
    }

    #[test]
    fn the_sidecar_takes_its_command_line() {
        let args = sidecar_run_args(
            "https://127.0.0.1:2",
            "orders",
            "/run/e2e/token",
            "/run/e2e/ca.pem",
            "/run/e2e/journal",
        );
        let argv = std::iter::once("dbward-sidecar".to_owned()).chain(args);
        let cli = <dbward_sidecar::cli::Cli as clap::Parser>::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("the sidecar refuses the tests' command line: {e}"));
        let dbward_sidecar::cli::Command::Run(run) = cli.command else {
            panic!("not the run command: {:?}", cli.command)
        };
        assert_eq!(run.operator.as_deref(), Some("https://127.0.0.1:2"));
        assert_eq!(run.connections, ["orders"]);
        assert_eq!(run.token_file, Path::new("/run/e2e/token"));
        assert_eq!(run.operator_ca.as_deref(), Some("/run/e2e/ca.pem"));
        assert_eq!(
            run.journal.journal.as_deref(),
            Some(Path::new("/run/e2e/journal"))
        );
        assert_eq!(run.listen, [IpAddr::from([127, 0, 0, 1])]);
    }

    #[test]
    fn webhook_configurations_are_the_charts_but_by_url() {
        let [pod, approvals] = webhook_configurations("abc", "dbward-e2e-abc", "https://127.0.0.1:9");
        for (config, name, path, resource, operation) in [
            (&pod, POD_WEBHOOK, "/mutate-pod", "pods", "CREATE"),
            (
                &approvals,
                APPROVAL_WEBHOOK,
                "/mutate-approval-status",
                "approvalrequests/status",
                "UPDATE",
            ),
        ] {
            assert_eq!(config.name_any(), name);
            assert_eq!(config.labels().get(RUN_LABEL).map(String::as_str), Some("abc"));
            let hooks = config.webhooks.clone().unwrap_or_default();
            assert_eq!(hooks.len(), 1, "{name}");
            let w = &hooks[0];
            let url = format!("https://127.0.0.1:9{path}");
            assert_eq!(w.client_config.url.as_deref(), Some(url.as_str()));
            assert!(w.client_config.ca_bundle.is_none() && w.client_config.service.is_none());
            assert_eq!(w.failure_policy.as_deref(), Some("Fail"));
            assert_eq!(w.side_effects, "None");
            assert_eq!(w.admission_review_versions, ["v1"]);
            let rule = &w.rules.clone().unwrap_or_default()[0];
            assert_eq!(rule.resources.as_deref().unwrap_or_default(), [resource]);
            assert_eq!(rule.operations.as_deref().unwrap_or_default(), [operation]);
            let selector = w.namespace_selector.clone().unwrap_or_default();
            let keys: Vec<String> = selector
                .match_expressions
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.key)
                .collect();
            assert!(keys.contains(&RUN_LABEL.to_owned()), "{name}: {keys:?}");
            if name == POD_WEBHOOK {
                assert!(keys.contains(&objects::INJECTION_LABEL.to_owned()), "{keys:?}");
                assert_eq!(w.reinvocation_policy.as_deref(), Some("IfNeeded"));
            }
        }
    }

    #[tokio::test]
    async fn the_operator_kubeconfig_is_the_admins_cluster_with_the_token() {
        let admin = Kubeconfig::from_yaml(
            "apiVersion: v1
kind: Config
current-context: admin@test
clusters:
- name: other
  cluster: {server: 'https://10.9.9.9:6443'}
- name: test
  cluster:
    server: https://127.0.0.1:6443
    insecure-skip-tls-verify: true
    tls-server-name: kubernetes
contexts:
- name: admin@test
  context: {cluster: test, user: admin, namespace: default}
users:
- name: admin
  user: {token: admin-token}
",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let text =
            operator_kubeconfig(&admin, "operator-token", "dbward-e2e-x").unwrap_or_else(|e| panic!("{e}"));
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json["users"][0]["user"]["token"], "operator-token");
        assert_eq!(
            json["users"].as_array().map(Vec::len),
            Some(1),
            "the admin's credentials leaked"
        );
        let read = Kubeconfig::from_yaml(&text).unwrap_or_else(|e| panic!("kube cannot read it: {e}"));
        assert_eq!(read.clusters.len(), 1);
        let cluster = read.clusters[0].cluster.clone().unwrap_or_default();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert_eq!(cluster.insecure_skip_tls_verify, Some(true));
        assert_eq!(cluster.tls_server_name.as_deref(), Some("kubernetes"));
        let config = kube::Config::from_custom_kubeconfig(read, &KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("kube cannot use it: {e}"));
        assert_eq!(config.cluster_url.to_string(), "https://127.0.0.1:6443/");
        assert_eq!(config.default_namespace, "dbward-e2e-x");

        let mut no_context = admin;
        no_context.current_context = None;
        assert!(operator_kubeconfig(&no_context, "t", "n").is_err());
    }

    fn rbac_docs(ns: &str) -> Vec<serde_json::Value> {
        let subjects = json!([{"kind": "ServiceAccount", "name": OPERATOR_SA, "namespace": ns}]);
        let rules = json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]);
        let meta = |namespaced: bool| {
            let mut m = json!({"name": OPERATOR_SA, "labels": {"helm.sh/chart": "dbward-0.1.0"}});
            if namespaced {
                m["namespace"] = json!(ns);
            }
            m
        };
        let role_ref =
            |kind: &str| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": OPERATOR_SA});
        vec![
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta(false), "rules": rules}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": meta(false),
                   "roleRef": role_ref("ClusterRole"), "subjects": subjects}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(true), "rules": rules}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta(true),
                   "roleRef": role_ref("Role"), "subjects": subjects}),
        ]
    }

    #[test]
    fn the_charts_rbac_is_renamed_and_labelled_not_changed() {
        let rbac =
            chart_rbac(rbac_docs("dbward-e2e-x"), "x", "dbward-e2e-x").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rbac.cluster_role.name_any(), "dbward-operator-e2e-x");
        assert_eq!(rbac.cluster_role_binding.name_any(), "dbward-operator-e2e-x");
        assert_eq!(rbac.cluster_role_binding.role_ref.name, "dbward-operator-e2e-x");
        assert_eq!(rbac.role.name_any(), OPERATOR_SA);
        assert_eq!(rbac.role_binding.role_ref.name, OPERATOR_SA);
        assert_eq!(
            rbac.cluster_role.labels().get(RUN_LABEL).map(String::as_str),
            Some("x")
        );
        assert_eq!(
            rbac.cluster_role
                .labels()
                .get("helm.sh/chart")
                .map(String::as_str),
            Some("dbward-0.1.0")
        );
        assert_eq!(rbac.role.rules.unwrap_or_default()[0].verbs, ["get"]);

        let mut other = rbac_docs("dbward-e2e-x");
        other[3]["subjects"][0]["name"] = json!("someone");
        assert!(chart_rbac(other, "x", "dbward-e2e-x").is_err());
        assert!(chart_rbac(rbac_docs("elsewhere"), "x", "dbward-e2e-x").is_err());
        let mut extra = rbac_docs("dbward-e2e-x");
        extra.push(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}}));
        assert!(chart_rbac(extra, "x", "dbward-e2e-x").is_err());
        assert!(chart_rbac(rbac_docs("dbward-e2e-x")[..3].to_vec(), "x", "dbward-e2e-x").is_err());
    }
}
