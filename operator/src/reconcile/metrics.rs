//! The reconcilers' Prometheus metrics. Labels are bounded: the kind, an error's variant, a pod's
//! namespace and a fixed reason — never object names or messages.

use std::time::Duration;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, exponential_buckets,
};

/// The reconcilers' metrics, registered in the registry the operator serves on `/metrics`.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// `dbward_reconciliations_total{kind}`: reconciles run, successful or not.
    pub(crate) reconciliations: IntCounterVec,
    /// `dbward_reconcile_errors_total{kind, error}`: reconciles that failed, by error variant.
    pub(crate) reconcile_errors: IntCounterVec,
    /// `dbward_reconcile_duration_seconds{kind}`: how long reconciles take (probes included).
    pub(crate) reconcile_duration: HistogramVec,
    /// `dbward_pods_without_sidecar{namespace, reason}`: pods that ask for dbward but run without it.
    pub(crate) pods_without_sidecar: IntGaugeVec,
}

impl Metrics {
    /// Create the metrics and register them in `registry`. Fails when a metric of the same name is
    /// already registered there.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let reconciliations = IntCounterVec::new(
            Opts::new(
                "dbward_reconciliations_total",
                "Reconciles run by the dbward operator, by kind.",
            ),
            &["kind"],
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "dbward_reconcile_errors_total",
                "Reconciles that failed and will be retried, by kind and error.",
            ),
            &["kind", "error"],
        )?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "dbward_reconcile_duration_seconds",
                "How long one reconcile takes, API calls and database probe included.",
            )
            .buckets(exponential_buckets(0.005, 2.0, 12)?),
            &["kind"],
        )?;
        let pods_without_sidecar = IntGaugeVec::new(
            Opts::new(
                "dbward_pods_without_sidecar",
                "Pods annotated dbward.dev/inject that run without the dbward sidecar (so without \
                 database access), by namespace and reason.",
            ),
            &["namespace", "reason"],
        )?;
        registry.register(Box::new(reconciliations.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(pods_without_sidecar.clone()))?;
        Ok(Self {
            reconciliations,
            reconcile_errors,
            reconcile_duration,
            pods_without_sidecar,
        })
    }

    /// Count one reconcile of `kind` that took `took`, failed with `error` if any.
    pub(crate) fn observe(&self, kind: &str, took: Duration, error: Option<&str>) {
        self.reconciliations.with_label_values(&[kind]).inc();
        self.reconcile_duration
            .with_label_values(&[kind])
            .observe(took.as_secs_f64());
        if let Some(error) = error {
            self.reconcile_errors.with_label_values(&[kind, error]).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn registers_once_per_registry() {
        let registry = Registry::new();
        let metrics = Metrics::new(&registry).unwrap();
        metrics.observe("ApprovalRequest", Duration::from_millis(3), Some("apply_status"));
        let names: Vec<String> = registry.gather().iter().map(|f| f.name().to_owned()).collect();
        assert!(
            names.contains(&"dbward_reconcile_errors_total".to_owned()),
            "{names:?}"
        );
        assert!(
            Metrics::new(&registry).is_err(),
            "a second registration must fail"
        );
    }
}
