//! What every reconciler shares: the API client, the operator's settings, the metrics, the Event
//! recorder, and the little state this process keeps (retry counts, what it already announced).

use std::{
    borrow::Cow,
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use kube::{
    Client, Resource, ResourceExt,
    runtime::{
        controller::Action,
        events::{Recorder, Reporter},
    },
};
use tracing::warn;

use super::{
    approval::Announced,
    error::{Backoff, Error, Result},
    metrics::Metrics,
    pods::MissingSidecars,
    status::FIELD_MANAGER,
};

/// How long the TCP probe of a DatabaseConnection may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often each DatabaseConnection is checked again without a change.
pub const CONNECTION_RESYNC: Duration = Duration::from_secs(300);
/// How long decided ApprovalRequests are kept by default.
pub const DEFAULT_APPROVAL_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Everything the reconcilers need. Built once by the operator's `main`, handed to [`run`](super::run).
pub struct ReconcileContext {
    /// The API client; its identity is the operator's service account.
    pub client: Client,
    /// The operator's own namespace: never injected, so pods there are reported as such.
    pub operator_namespace: String,
    /// How long a decided (or expired) ApprovalRequest is kept after its decision before it is deleted.
    pub approval_retention: Duration,
    /// The reconcilers' metrics.
    pub metrics: Arc<Metrics>,
    /// How long the TCP probe of a DatabaseConnection may take ([`PROBE_TIMEOUT`]).
    pub probe_timeout: Duration,
    /// How often every DatabaseConnection is checked again ([`CONNECTION_RESYNC`]).
    pub connection_resync: Duration,
    pub(crate) recorder: Recorder,
    pub(crate) backoff: Backoff,
    pub(crate) announced: Announced,
    pub(crate) missing_sidecars: MissingSidecars,
}

impl ReconcileContext {
    /// A context with the default probe timeout and resync interval. Events are reported by controller
    /// `dbward-operator`, instance the host name (the pod's name in a cluster).
    pub fn new(
        client: Client,
        operator_namespace: impl Into<String>,
        approval_retention: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let recorder = Recorder::new(client.clone(), Reporter::from(FIELD_MANAGER));
        Self {
            client,
            operator_namespace: operator_namespace.into(),
            approval_retention,
            metrics,
            probe_timeout: PROBE_TIMEOUT,
            connection_resync: CONNECTION_RESYNC,
            recorder,
            backoff: Backoff::default(),
            announced: Announced::default(),
            missing_sidecars: MissingSidecars::default(),
        }
    }
}

/// The object's namespace and name; every dbward object and every pod has both.
pub(crate) fn namespace_and_name<K: Resource<DynamicType = ()>>(obj: &K) -> Result<(&str, &str)> {
    let missing = |what| Error::MissingMetadata {
        kind: kind_of::<K>(),
        what,
    };
    let meta = obj.meta();
    let namespace = meta.namespace.as_deref().ok_or_else(|| missing("namespace"))?;
    let name = meta.name.as_deref().ok_or_else(|| missing("name"))?;
    Ok((namespace, name))
}

/// The kind of `K`, e.g. `DatabaseConnection` (`Pod` for a pod's metadata), for metrics and errors.
fn kind_of<K: Resource<DynamicType = ()>>() -> Cow<'static, str> {
    K::kind(&())
}

/// `kind/namespace/name`, the key of an object's retry count.
fn backoff_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        kind_of::<K>(),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Run one reconcile of `obj`, counting it in the metrics and clearing its retry count on success.
pub(crate) async fn instrumented<K: Resource<DynamicType = ()>>(
    obj: &K,
    ctx: &ReconcileContext,
    reconcile: impl Future<Output = Result<Action>>,
) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile.await;
    let error = result.as_ref().err().map(Error::metric_label);
    ctx.metrics.observe(&kind_of::<K>(), started.elapsed(), error);
    if result.is_ok() {
        ctx.backoff.succeeded(&backoff_key(obj));
    }
    result
}

/// The controllers' error policy: log the failure at warn (names and API answers only) and try again
/// after 5 s, doubling with each failure in a row up to 5 minutes.
pub(crate) fn error_policy<K: Resource<DynamicType = ()>>(
    obj: Arc<K>,
    error: &Error,
    ctx: Arc<ReconcileContext>,
) -> Action {
    let delay = ctx.backoff.failed(&backoff_key(&*obj));
    warn!(
        kind = %kind_of::<K>(),
        namespace = obj.namespace().unwrap_or_default(),
        name = obj.name_any(),
        error = %error.chain(),
        retry_in_s = delay.as_secs(),
        "reconcile failed"
    );
    Action::requeue(delay)
}
