//! [`Env`]: what a real-cluster test stands on.
//!
//! [`Env::start`] installs the CRDs, makes the operator's namespace and ServiceAccount, installs the
//! chart's RBAC for it (`helm template` of `charts/dbward/templates/rbac.yaml`) and waits until the
//! authorizer applies it, writes a kubeconfig holding that ServiceAccount's token (TokenRequest API),
//! registers the two webhook configurations by URL without a caBundle, runs the operator binary outside
//! the cluster with that kubeconfig (least privilege, as in production), waits for its `/readyz`, and
//! waits until the operator has patched its CA into both webhook configurations.
//!
//! Dropping the [`Env`] stops the operator and deletes what the run made (`src/cleanup.rs`).

use std::{
    fmt::Debug,
    fs::File,
    net::IpAddr,
    path::{Path, PathBuf},
    process::Output,
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use k8s_openapi::{
    ClusterResourceScope, NamespaceResourceScope,
    api::{
        admissionregistration::v1::MutatingWebhookConfiguration,
        authentication::v1::{BoundObjectReference, SelfSubjectReview, TokenRequest, TokenRequestSpec},
        authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
        core::v1::{Pod, Secret, ServiceAccount},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    Binaries, WEBHOOK_HOST_ENV,
    cleanup::{self, Created},
    free_port,
    manifests::{chart_rbac, native_sidecars, operator_args, operator_kubeconfig, webhook_configurations},
    objects::{self, MANAGED_BY, RUN_LABEL},
    process::{Proc, child_env, http_get, machine_lock},
    random_suffix, tools,
    wait::{Deadline, POLL, bounded, until},
};

/// The operator's ServiceAccount (the chart's `dbward.name`, the operator's `--service-account` default).
pub const OPERATOR_SA: &str = "dbward-operator";
/// The operator's certificates Secret, in its namespace (docs/operator.md).
pub const CERTS_SECRET: &str = "dbward-operator-certs";
/// The operator's leader-election Lease, in its namespace.
pub const LEADER_LEASE: &str = "dbward-operator-leader";
/// The Pod webhook configuration (the name the operator patches).
pub const POD_WEBHOOK: &str = "dbward-pod-injector";
/// The approvals webhook configuration (the name the operator patches).
pub const APPROVAL_WEBHOOK: &str = "dbward-approvals";
/// The sidecar image the operator injects (never pulled: the pods are never scheduled).
pub const SIDECAR_IMAGE: &str = "ghcr.io/dbward/dbward-sidecar:e2e";
/// The field manager of the tests' server-side applies.
pub const FIELD_MANAGER: &str = "dbward-e2e";
/// The audience of the sidecar's projected token.
pub const TOKEN_AUDIENCE: &str = "dbward.dev";

/// A SubjectAccessReview's question: (namespace, API group, resource, verb, name).
type Access<'a> = (Option<&'a str>, &'a str, &'a str, &'a str, Option<&'a str>);

/// The operator checks the caBundles at start and every 60 s.
const CA_BUNDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// From start to `/readyz` 200: connect, certificates, first lists of the caches.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A cluster with the CRDs and a running, ready operator; see the module documentation.
pub struct Env {
    /// A client with the admin kubeconfig.
    pub client: Client,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// This run's random suffix (in every name, and the value of [`RUN_LABEL`]).
    pub run: String,
    /// The operator's namespace, `dbward-e2e-<run>`.
    pub operator_ns: String,
    /// This run's temporary directory (kubeconfigs, tokens, logs).
    pub dir: PathBuf,
    /// The control API's URL, as local sidecars reach it.
    pub control_url: String,
    /// Whether the API server runs native sidecars (1.29+), from its version.
    pub native_sidecars: bool,
    /// The API server's `gitVersion`.
    pub server_version: String,
    /// The operator's CA (PEM), from its certificates Secret.
    pub ca_pem: String,
    /// [`Self::ca_pem`] in a file.
    pub ca_file: PathBuf,
    /// The sidecar binary.
    pub sidecar_bin: PathBuf,
    config: kube::Config,
    operator: Mutex<Option<Proc>>,
    created: Mutex<Created>,
    _lock: File,
}

impl Env {
    /// Sets everything up; panics, after cleaning up what it made, when anything fails.
    pub async fn start(kubeconfig: PathBuf, binaries: Binaries) -> Self {
        let lock = machine_lock().await;
        let kc = Kubeconfig::read_from(&kubeconfig)
            .unwrap_or_else(|e| panic!("cannot read the kubeconfig {}: {e}", kubeconfig.display()));
        let config = kube::Config::from_custom_kubeconfig(kc.clone(), &KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("cannot use the kubeconfig {}: {e}", kubeconfig.display()));
        let client = Client::try_from(config.clone())
            .unwrap_or_else(|e| panic!("cannot make a client from {}: {e}", kubeconfig.display()));
        let version = bounded(
            "the API server's /version",
            Duration::from_secs(60),
            client.apiserver_version(),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot reach the API server of {}: {e}", kubeconfig.display()));
        let native_sidecars = native_sidecars(&version.major, &version.minor);
        let run = random_suffix();
        let dir = std::env::temp_dir().join(format!("dbward-e2e-{run}"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        crate::say!(
            "e2e: run {run} against API server {} ({} sidecars); files in {}",
            version.git_version,
            if native_sidecars { "native" } else { "classic" },
            dir.display()
        );
        let control_port = free_port();
        let mut env = Self {
            client,
            kubeconfig,
            operator_ns: format!("dbward-e2e-{run}"),
            control_url: format!("https://127.0.0.1:{control_port}"),
            native_sidecars,
            server_version: version.git_version,
            ca_pem: String::new(),
            ca_file: dir.join("operator-ca.pem"),
            sidecar_bin: binaries.sidecar.clone(),
            config,
            operator: Mutex::new(None),
            created: Mutex::new(Created::default()),
            _lock: lock,
            run,
            dir,
        };
        // From here on a panic drops `env`, which deletes what was made so far.
        env.install_crds().await;
        let ns = env.operator_ns.clone();
        env.create_namespace(&ns, false).await;
        env.service_account(&ns, OPERATOR_SA).await;
        env.install_rbac().await;
        let token = env.token(&ns, OPERATOR_SA, Vec::new(), None, 4 * 3600).await;
        let operator_kubeconfig = env.write_operator_kubeconfig(&kc, &token);
        let webhook_port = free_port();
        env.register_webhooks(webhook_port).await;
        env.start_operator(
            &binaries.operator,
            &operator_kubeconfig,
            control_port,
            webhook_port,
        )
        .await;
        env.await_ca_bundles().await;
        env
    }

    fn created(&self) -> MutexGuard<'_, Created> {
        self.created.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Panics with the operator's last log lines when it has exited.
    pub fn assert_operator_running(&self) {
        let mut operator = self.operator.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = operator.as_mut()
            && let Err(e) = p.check_running()
        {
            drop(operator);
            panic!("{e}");
        }
    }

    // ---- objects -----------------------------------------------------------------------------------

    /// Creates the namespace `dbward-e2e-<run>-<suffix>`, opted in to injection when `opted_in`.
    pub async fn namespace(&self, suffix: &str, opted_in: bool) -> String {
        let name = format!("{}-{suffix}", self.operator_ns);
        self.create_namespace(&name, opted_in).await;
        name
    }

    async fn create_namespace(&self, name: &str, opted_in: bool) {
        self.created().namespaces.push(name.to_owned());
        self.create_cluster(&objects::namespace(name, &self.run, opted_in))
            .await;
    }

    /// Creates a ServiceAccount.
    pub async fn service_account(&self, namespace: &str, name: &str) -> ServiceAccount {
        self.create(&objects::service_account(namespace, name, &self.run))
            .await
    }

    /// Creates a namespaced object (in its `metadata.namespace`).
    pub async fn create<K>(&self, obj: &K) -> K
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + Serialize + DeserializeOwned,
        K::DynamicType: Default,
    {
        let ns = obj.meta().namespace.clone().unwrap_or_default();
        let api: Api<K> = Api::namespaced(self.client.clone(), &ns);
        api.create(&PostParams::default(), obj)
            .await
            .unwrap_or_else(|e| panic!("cannot create {} {ns}/{}: {e}", kind_of(obj), obj.name_any()))
    }

    /// Creates a cluster-scoped object.
    pub async fn create_cluster<K>(&self, obj: &K) -> K
    where
        K: Resource<Scope = ClusterResourceScope> + Clone + Debug + Serialize + DeserializeOwned,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::all(self.client.clone());
        api.create(&PostParams::default(), obj)
            .await
            .unwrap_or_else(|e| panic!("cannot create {} {}: {e}", kind_of(obj), obj.name_any()))
    }

    /// Creates `pod` and returns it as admitted. The operator's caches follow the API a moment behind,
    /// so a refusal for a connection not known yet (or an operator still starting) is retried, for at
    /// most 30 s; any other failure panics.
    pub async fn create_pod(&self, pod: &Pod) -> Pod {
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let (api, ns_ref, name_ref) = (&api, &ns, &name);
        until(
            &format!("pod {ns}/{name} to be admitted"),
            Duration::from_secs(30),
            POLL,
            move || async move {
                match api.create(&PostParams::default(), pod).await {
                    Ok(created) => Ok(created),
                    Err(kube::Error::Api(s))
                        if s.message.contains("no DatabaseConnection")
                            || s.message.contains("is starting") =>
                    {
                        Err(format!("refused: {}", s.message))
                    }
                    // An attempt cut off at the deadline may have been admitted after all.
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        api.get(name_ref).await.map_err(|e| e.to_string())
                    }
                    Err(e) => panic!("cannot create pod {ns_ref}/{name_ref}: {e}"),
                }
            },
        )
        .await
    }

    /// Tries to create `pod`, which must be refused; returns the API server's message.
    pub async fn refused_pod(&self, pod: &Pod) -> String {
        let ns = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        match api.create(&PostParams::default(), pod).await {
            Ok(p) => panic!(
                "pod {ns}/{} was admitted but should have been refused; as admitted: {:?}",
                p.name_any(),
                p.spec
            ),
            Err(kube::Error::Api(s)) => s.message,
            Err(e) => panic!(
                "creating pod {ns}/{} failed otherwise than by a refusal: {e}",
                pod.name_any()
            ),
        }
    }

    /// Server-side applies a namespaced object (field manager [`FIELD_MANAGER`]), as `kubectl apply
    /// --server-side` would.
    pub async fn apply<K>(&self, obj: &K) -> K
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + Serialize + DeserializeOwned,
        K::DynamicType: Default,
    {
        let ns = obj.meta().namespace.clone().unwrap_or_default();
        let name = obj.name_any();
        let api: Api<K> = Api::namespaced(self.client.clone(), &ns);
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot apply {} {ns}/{name}: {e}", kind_of(obj)))
    }

    /// A token of `service_account` from the TokenRequest API (empty `audiences`: the API server's own),
    /// bound to `pod` when given.
    pub async fn token(
        &self,
        namespace: &str,
        service_account: &str,
        audiences: Vec<String>,
        pod: Option<&Pod>,
        seconds: i64,
    ) -> String {
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences,
                bound_object_ref: pod.map(|p| BoundObjectReference {
                    api_version: Some("v1".to_owned()),
                    kind: Some("Pod".to_owned()),
                    name: p.metadata.name.clone(),
                    uid: p.metadata.uid.clone(),
                }),
                expiration_seconds: Some(seconds),
            },
            ..TokenRequest::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let what = format!("a token of service account {namespace}/{service_account}");
        let answer = api
            .create_token_request(service_account, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("the TokenRequest API did not give {what}: {e}"));
        answer
            .status
            .map(|s| s.token)
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| panic!("the TokenRequest API answered without {what}"))
    }

    /// What the kubelet would project into the sidecar: a token of the pod's service account, audience
    /// `dbward.dev`, bound to the pod (name and uid), for an hour.
    pub async fn pod_token(&self, pod: &Pod) -> String {
        let ns = pod.namespace().unwrap_or_default();
        let sa = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| panic!("pod {} names no service account", pod.name_any()));
        self.token(&ns, &sa, vec![TOKEN_AUDIENCE.to_owned()], Some(pod), 3600)
            .await
    }

    /// The admin's user name (SelfSubjectReview, 1.28+), or None when the API server cannot say.
    pub async fn admin_username(&self) -> Option<String> {
        let api: Api<SelfSubjectReview> = Api::all(self.client.clone());
        match api
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await
        {
            Ok(r) => r.status.and_then(|s| s.user_info).and_then(|u| u.username),
            Err(e) => {
                crate::say!("e2e: SelfSubjectReview failed ({e}); the admin's user name is not known");
                None
            }
        }
    }

    /// Runs the pinned kubectl with the admin kubeconfig.
    pub async fn kubectl(&self, args: &[&str]) -> Output {
        tools::kubectl(&self.kubeconfig, args).await
    }

    /// Writes `contents` to `name` in this run's directory, readable by the owner only.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        use std::{io::Write, os::unix::fs::OpenOptionsExt};
        let path = self.dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        f.write_all(contents.as_bytes())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// Starts the sidecar binary with `args`, its output in `<name>.log` of this run's directory.
    pub fn spawn_sidecar(&self, name: &str, args: &[&str]) -> Proc {
        let mut cmd = std::process::Command::new(&self.sidecar_bin);
        cmd.args(args);
        child_env(&mut cmd);
        Proc::spawn(name, cmd, &self.dir.join(format!("{name}.log")))
    }

    // ---- setup -------------------------------------------------------------------------------------

    /// Applies `crds/*.yaml` server-side and waits until each is Established.
    async fn install_crds(&self) {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let crds = objects::repository_crds();
        let mut names = Vec::new();
        for crd in &crds {
            let name = crd.name_any();
            api.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(crd),
            )
            .await
            .unwrap_or_else(|e| panic!("cannot apply the CRD {name} (from crds/): {e}"));
            names.push(name);
        }
        for name in &names {
            let api = &api;
            until(
                &format!("the CRD {name} to be Established"),
                Duration::from_secs(60),
                POLL,
                move || async move {
                    let crd = api.get(name).await.map_err(|e| e.to_string())?;
                    let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
                    if conditions
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                    {
                        Ok(())
                    } else {
                        let seen: Vec<String> = conditions
                            .iter()
                            .map(|c| format!("{}={}", c.type_, c.status))
                            .collect();
                        Err(format!("conditions [{}]", seen.join(", ")))
                    }
                },
            )
            .await;
        }
        crate::say!("e2e: CRDs applied and established: {}", names.join(", "));
    }

    /// The chart's RBAC for the operator's ServiceAccount, the cluster-scoped objects renamed to this
    /// run's; then waits until the authorizer grants what the operator needs.
    async fn install_rbac(&self) {
        let ns = self.operator_ns.clone();
        let docs = tools::render_chart_rbac(&ns, &self.dir).await;
        let rbac = chart_rbac(docs, &self.run, &ns).unwrap_or_else(|e| panic!("{e}"));
        self.created().cluster_roles.push(rbac.cluster_role.name_any());
        self.create_cluster(&rbac.cluster_role).await;
        self.created()
            .cluster_role_bindings
            .push(rbac.cluster_role_binding.name_any());
        self.create_cluster(&rbac.cluster_role_binding).await;
        self.create(&rbac.role).await;
        self.create(&rbac.role_binding).await;
        self.await_rbac().await;
        crate::say!("e2e: the chart's RBAC is installed for {ns}/{OPERATOR_SA}");
    }

    /// Waits until SubjectAccessReviews for the operator's user allow a sample of what it needs from
    /// each of the four objects (RBAC caches in the API server take a moment).
    async fn await_rbac(&self) {
        let ns = self.operator_ns.as_str();
        let user = format!("system:serviceaccount:{ns}:{OPERATOR_SA}");
        let groups = vec![
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{ns}"),
            "system:authenticated".to_owned(),
        ];
        let checks: [Access<'_>; 5] = [
            (Some(ns), "", "secrets", "create", None),
            (
                Some(ns),
                "coordination.k8s.io",
                "leases",
                "update",
                Some(LEADER_LEASE),
            ),
            (None, "authentication.k8s.io", "tokenreviews", "create", None),
            (None, "dbward.dev", "accesspolicies", "watch", None),
            (
                None,
                "admissionregistration.k8s.io",
                "mutatingwebhookconfigurations",
                "patch",
                Some(POD_WEBHOOK),
            ),
        ];
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let (api, user, groups, checks) = (&api, &user, &groups, &checks);
        until(
            &format!("the chart's RBAC to apply to {user}"),
            Duration::from_secs(60),
            POLL,
            move || async move {
                for (namespace, group, resource, verb, name) in checks {
                    let review = SubjectAccessReview {
                        spec: SubjectAccessReviewSpec {
                            user: Some(user.clone()),
                            groups: Some(groups.clone()),
                            resource_attributes: Some(ResourceAttributes {
                                namespace: namespace.map(str::to_owned),
                                group: Some((*group).to_owned()),
                                resource: Some((*resource).to_owned()),
                                verb: Some((*verb).to_owned()),
                                name: name.map(str::to_owned),
                                ..ResourceAttributes::default()
                            }),
                            ..SubjectAccessReviewSpec::default()
                        },
                        ..SubjectAccessReview::default()
                    };
                    let answer = api
                        .create(&PostParams::default(), &review)
                        .await
                        .map_err(|e| format!("SubjectAccessReview failed: {e}"))?;
                    if !answer.status.is_some_and(|s| s.allowed) {
                        return Err(format!("{verb} {resource} is not allowed (yet)"));
                    }
                }
                Ok(())
            },
        )
        .await;
    }

    /// A kubeconfig for the operator: the admin kubeconfig's current cluster, with the operator
    /// ServiceAccount's token as the user.
    fn write_operator_kubeconfig(&self, admin: &Kubeconfig, token: &str) -> PathBuf {
        let text = operator_kubeconfig(admin, token, &self.operator_ns)
            .unwrap_or_else(|e| panic!("{}: {e}", self.kubeconfig.display()));
        self.write_file("operator.kubeconfig", &text)
    }

    /// Creates `dbward-pod-injector` and `dbward-approvals`, calling the operator by URL on
    /// `webhook_port`, without caBundle; replaces a pair an aborted run left.
    async fn register_webhooks(&self, webhook_port: u16) {
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        for name in [POD_WEBHOOK, APPROVAL_WEBHOOK] {
            let Some(existing) = api
                .get_opt(name)
                .await
                .unwrap_or_else(|e| panic!("cannot read MutatingWebhookConfiguration {name}: {e}"))
            else {
                continue;
            };
            let labels = existing.labels();
            assert_eq!(
                labels.get("app.kubernetes.io/managed-by").map(String::as_str),
                Some(MANAGED_BY),
                "MutatingWebhookConfiguration {name} exists and was not made by these tests: dbward seems to \
                 be installed in this cluster. The tests register their own configurations under the same \
                 names; run them on a cluster without dbward"
            );
            crate::say!(
                "e2e: deleting MutatingWebhookConfiguration {name}, left by e2e run {}",
                labels.get(RUN_LABEL).map_or("?", String::as_str)
            );
            delete_ignoring_absent(&api, name).await;
            let api = &api;
            until(
                &format!("the old {name} to be gone"),
                Duration::from_secs(30),
                POLL,
                move || async move {
                    match api.get_opt(name).await {
                        Ok(None) => Ok(()),
                        Ok(Some(_)) => Err("still there".to_owned()),
                        Err(e) => Err(e.to_string()),
                    }
                },
            )
            .await;
        }

        let host = webhook_host();
        let url_host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        let base = format!("https://{url_host}:{webhook_port}");
        for config in webhook_configurations(&self.run, &self.operator_ns, &base) {
            self.created().webhooks.push(config.name_any());
            self.create_cluster(&config).await;
        }
        crate::say!("e2e: webhooks registered at {base} (no caBundle: the operator must patch it in)");
    }

    /// Runs the operator out of cluster and waits for its `/readyz`.
    async fn start_operator(&self, bin: &Path, kubeconfig: &Path, control_port: u16, webhook_port: u16) {
        let admin_port = free_port();
        let host = webhook_host();
        let listen: IpAddr = match host.parse::<IpAddr>() {
            Ok(ip) if ip.is_loopback() => ip,
            _ if host == "localhost" => IpAddr::from([127, 0, 0, 1]),
            // The API server reaches this machine at another address: listen on all of them.
            _ => IpAddr::from([0, 0, 0, 0]),
        };
        let webhook_addr = std::net::SocketAddr::new(listen, webhook_port).to_string();
        let control_addr = format!("127.0.0.1:{control_port}");
        let admin_addr = format!("127.0.0.1:{admin_port}");
        let mut cert_names = vec!["127.0.0.1"];
        if host != "127.0.0.1" {
            cert_names.push(&host);
        }
        let mut cmd = std::process::Command::new(bin);
        cmd.args(operator_args(
            &self.operator_ns,
            &webhook_addr,
            &control_addr,
            &admin_addr,
            &self.control_url,
            &cert_names,
        ));
        child_env(&mut cmd);
        cmd.env("KUBECONFIG", kubeconfig);
        let operator = Proc::spawn("operator", cmd, &self.dir.join("operator.log"));
        *self.operator.lock().unwrap_or_else(PoisonError::into_inner) = Some(operator);

        let deadline = Deadline::new(
            format!("the operator's http://{admin_addr}/readyz to answer 200"),
            READY_TIMEOUT,
        );
        loop {
            self.assert_operator_running();
            let last = match http_get(admin_port, "/readyz").await {
                Ok((200, _)) => break,
                Ok((code, body)) => format!("{code} {body}"),
                Err(e) => e,
            };
            deadline.check(&last);
            deadline.sleep(POLL).await;
        }
        crate::say!(
            "e2e: the operator is ready (control API {}, webhooks {webhook_addr})",
            self.control_url
        );
    }

    /// Waits until both webhook configurations carry the CA of the operator's certificates Secret.
    async fn await_ca_bundles(&mut self) {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.operator_ns);
        let hooks: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let deadline = Deadline::new(
            format!(
                "the operator to patch its CA (Secret {}/{CERTS_SECRET}, ca.crt) into the caBundle of \
                 {POD_WEBHOOK} and {APPROVAL_WEBHOOK}",
                self.operator_ns
            ),
            CA_BUNDLE_TIMEOUT,
        );
        let ca = loop {
            self.assert_operator_running();
            let last = match ca_bundle_state(&secrets, &hooks).await {
                Ok(ca) => break ca,
                Err(state) => state,
            };
            deadline.check(&last);
            deadline.sleep(Duration::from_secs(1)).await;
        };
        self.ca_pem = ca;
        let file = self.write_file("operator-ca.pem", &self.ca_pem);
        self.ca_file = file;
        crate::say!("e2e: the operator patched its CA into {POD_WEBHOOK} and {APPROVAL_WEBHOOK}");
    }
}

/// The operator's CA when both webhook configurations carry it, else what is missing.
async fn ca_bundle_state(
    secrets: &Api<Secret>,
    hooks: &Api<MutatingWebhookConfiguration>,
) -> Result<String, String> {
    let secret = secrets
        .get_opt(CERTS_SECRET)
        .await
        .map_err(|e| format!("cannot read Secret {CERTS_SECRET}: {e}"))?
        .ok_or_else(|| format!("no Secret {CERTS_SECRET} yet"))?;
    let ca = secret
        .data
        .as_ref()
        .and_then(|d| d.get("ca.crt"))
        .map(|b| b.0.clone())
        .ok_or_else(|| format!("Secret {CERTS_SECRET} has no ca.crt"))?;
    for name in [POD_WEBHOOK, APPROVAL_WEBHOOK] {
        let config = hooks
            .get(name)
            .await
            .map_err(|e| format!("cannot read {name}: {e}"))?;
        let webhooks = config.webhooks.unwrap_or_default();
        if webhooks.is_empty() {
            return Err(format!("{name} has no webhooks"));
        }
        for w in webhooks {
            match w.client_config.ca_bundle {
                Some(b) if b.0 == ca => {}
                Some(_) => return Err(format!("{name} ({}): a caBundle other than ca.crt", w.name)),
                None => return Err(format!("{name} ({}): no caBundle", w.name)),
            }
        }
    }
    String::from_utf8(ca).map_err(|_| format!("ca.crt of {CERTS_SECRET} is not text"))
}

/// The host the API server calls the webhooks at.
fn webhook_host() -> String {
    std::env::var(WEBHOOK_HOST_ENV)
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "127.0.0.1".to_owned())
}

fn kind_of<K: Resource>(_: &K) -> String
where
    K::DynamicType: Default,
{
    K::kind(&K::DynamicType::default()).into_owned()
}

async fn delete_ignoring_absent<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => panic!("cannot delete {name}: {e}"),
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        // First the operator (its Drop shows its log when the test failed).
        drop(
            self.operator
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let created = std::mem::take(self.created.get_mut().unwrap_or_else(PoisonError::into_inner));
        let (config, run) = (self.config.clone(), self.run.clone());
        // The test's runtime may be the one unwinding: clean up on a thread with a runtime of its own.
        let cleaner = std::thread::spawn(move || cleanup::run(config, &created, &run));
        if cleaner.join().is_err() {
            crate::say!("e2e: the cleanup of run {} failed (above)", self.run);
        }
        if failed {
            crate::say!(
                "e2e: the files of run {} are kept in {}",
                self.run,
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
