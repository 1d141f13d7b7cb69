//! A control API served over real HTTPS in front of the fake cluster, and builders of the objects
//! it holds.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use dbward_crds::{
    AccessPolicy, AccessPolicySpec, ApprovalRequest, DatabaseConnection, DatabaseConnectionSpec,
};
use dbward_operator::{certs, control, serve};
use dbward_sidecar::config::operator::OperatorClient;
use k8s_openapi::{
    ByteString,
    api::core::v1::{Pod, PodSpec, Secret},
};
use kube::{
    Client,
    api::ObjectMeta,
    runtime::{
        reflector::{self, store::Writer},
        watcher,
    },
};
use tokio_util::sync::CancellationToken;

use super::fake_api::{Issuer, World};

pub const NS: &str = "shop";
pub const POD_UID: &str = "0b6a3f0c-0000-4000-8000-000000000001";

pub struct Bed {
    pub world: Arc<Mutex<World>>,
    pub issuer: Arc<Issuer>,
    pub state: control::SharedState,
    pub conn_writer: Writer<DatabaseConnection>,
    pub pol_writer: Writer<AccessPolicy>,
    pub url: String,
    pub ca: String,
    pub dir: PathBuf,
    _shutdown: tokio_util::sync::DropGuard,
}

pub fn meta(name: &str, ns: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        ..ObjectMeta::default()
    }
}

pub fn connection(name: &str, ns: &str, secret: &str) -> DatabaseConnection {
    let spec: DatabaseConnectionSpec = serde_json::from_value(serde_json::json!({
        "host": format!("{name}.db.internal"), "port": 5432, "database": name,
        "credentialsSecretRef": {"name": secret},
        "localPort": if name == "orders" { 15432 } else { 15433 },
    }))
    .unwrap();
    let mut c = DatabaseConnection::new(name, spec);
    c.metadata = meta(name, ns);
    c
}

pub fn policy(name: &str, ns: &str, connections: &[&str], valid: bool) -> AccessPolicy {
    let mut v = serde_json::json!({
        "connections": connections,
        "subjects": [{"serviceAccount": {"name": "web"}}],
        "rules": [{"action": "allow", "operations": ["select"]}],
    });
    if !valid {
        v["rules"][0]["operations"] = serde_json::json!([]);
    }
    let spec: AccessPolicySpec = serde_json::from_value(v).unwrap();
    let mut p = AccessPolicy::new(name, spec);
    p.metadata = meta(name, ns);
    p
}

pub fn pod(name: &str, uid: &str, sa: &str, injected: &str) -> Pod {
    let mut m = meta(name, NS);
    m.uid = Some(uid.into());
    m.annotations = Some(BTreeMap::from([(
        "dbward.dev/injected".to_owned(),
        injected.to_owned(),
    )]));
    Pod {
        metadata: m,
        spec: Some(PodSpec {
            service_account_name: Some(sa.into()),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

pub fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: meta(name, NS),
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

fn ready<K>(w: &mut Writer<K>, objects: Vec<K>)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    w.apply_watcher_event(&watcher::Event::Init);
    for o in objects {
        w.apply_watcher_event(&watcher::Event::InitApply(o));
    }
    w.apply_watcher_event(&watcher::Event::InitDone);
}

/// What the fake cluster holds at the start.
pub struct Setup {
    pub connections: Vec<DatabaseConnection>,
    pub policies: Vec<AccessPolicy>,
    pub pods: Vec<Pod>,
    pub secrets: Vec<Secret>,
}

/// A control API over HTTPS in front of a fake cluster holding `setup`.
pub async fn bed(setup: Setup) -> Bed {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (connections, mut conn_writer) = reflector::store::<DatabaseConnection>();
    let (policies, mut pol_writer) = reflector::store::<AccessPolicy>();
    let (approvals, mut ar_writer) = reflector::store::<ApprovalRequest>();
    ready(&mut ar_writer, vec![]);
    let mut world = World::new(ar_writer);
    for c in &setup.connections {
        let key = (
            c.metadata.namespace.clone().unwrap_or_default(),
            c.metadata.name.clone().unwrap_or_default(),
        );
        world.connections.insert(key, serde_json::to_value(c).unwrap());
    }
    ready(&mut conn_writer, setup.connections);
    ready(&mut pol_writer, setup.policies);
    for p in setup.pods {
        world
            .pods
            .insert((NS.into(), p.metadata.name.clone().unwrap_or_default()), p);
    }
    for s in setup.secrets {
        world
            .secrets
            .insert((NS.into(), s.metadata.name.clone().unwrap_or_default()), s);
    }
    let world = Arc::new(Mutex::new(world));
    let issuer = Arc::new(Issuer::new());
    let (w, i) = (world.clone(), issuer.clone());
    let service = tower::service_fn(move |req| super::fake_api::handle(w.clone(), i.clone(), req));
    let client = Client::new(service, "default");
    let shutdown = CancellationToken::new();
    let state = Arc::new(control::ControlState::new(
        client,
        connections,
        policies,
        approvals,
        shutdown.clone(),
    ));
    state.ready.send_replace(true);
    world.lock().unwrap().state = Some(state.clone());

    let bundle = certs::new_bundle(&["127.0.0.1".to_owned()], None, SystemTime::now()).unwrap();
    let tls = certs::server_config(Arc::new(certs::Resolver::new(&bundle).unwrap())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(serve::serve(
        listener,
        Some(tls),
        control::router(state.clone()),
        shutdown.clone(),
        "control API",
    ));
    let dir = std::env::temp_dir().join(format!(
        "dbward-control-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    Bed {
        world,
        issuer,
        state,
        conn_writer,
        pol_writer,
        url,
        ca: bundle.ca_pem,
        dir,
        _shutdown: shutdown.drop_guard(),
    }
}

static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Bed {
    /// The sidecar's client, presenting `token`.
    pub fn client(&self, token: &str) -> OperatorClient {
        let file = self.dir.join(format!(
            "token-{}",
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::write(&file, token).unwrap();
        OperatorClient::new(&self.url, Some(self.ca.as_bytes()), file).unwrap()
    }

    pub fn web(&self) -> OperatorClient {
        self.client(
            &self
                .issuer
                .token(NS, "web", Some(("web-1", POD_UID)), "dbward.dev", 600),
        )
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
