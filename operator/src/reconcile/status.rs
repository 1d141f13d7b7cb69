//! Writing statuses: conditions that keep their `lastTransitionTime` while their status holds, and a
//! server-side apply of the status subresource under the operator's field manager.

use dbward_crds::{Condition, condition};
use kube::{
    Api, Resource,
    api::{Patch, PatchParams},
};
use serde::{Serialize, de::DeserializeOwned};

/// The field manager of every write the operator makes (`docs/operator.md`), except
/// [`SERVER_VERSION_FIELD_MANAGER`]'s.
pub const FIELD_MANAGER: &str = "dbward-operator";
/// The field manager of a DatabaseConnection's `status.serverVersion`, written by the control API from
/// the sidecars' reports. Apart from [`FIELD_MANAGER`] so that the reconciler, which applies the rest of
/// the status and never sends `serverVersion`, neither removes nor fights over it.
pub const SERVER_VERSION_FIELD_MANAGER: &str = "dbward-operator/server-version";

/// The conditions to write: `computed`, each keeping the `lastTransitionTime` of the condition of the
/// same type in `old` when its status did not change ([`condition::set`]). The operator owns the whole
/// list, so types it no longer computes are dropped. The order of `old` is kept, so that an unchanged
/// status compares equal and nothing is written.
pub fn merge_conditions(old: &[Condition], computed: Vec<Condition>) -> Vec<Condition> {
    let mut conditions: Vec<Condition> = old
        .iter()
        .filter(|c| computed.iter().any(|n| n.type_ == c.type_))
        .cloned()
        .collect();
    for new in computed {
        condition::set(&mut conditions, new);
    }
    conditions
}

/// Server-side apply `status` to the status subresource of `name` under [`FIELD_MANAGER`], forcing
/// ownership of the fields (the operator is the only writer of these statuses, except an approver's
/// decision, which it never overwrites: see `approval`).
pub async fn apply_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    apply_status_as(api, name, status, FIELD_MANAGER).await
}

/// [`apply_status`] under the field manager `manager`. Fields the status leaves out (`None`, skipped in
/// serialization) stay as they are when another manager owns them.
pub async fn apply_status_as<K, S>(
    api: &Api<K>,
    name: &str,
    status: &S,
    manager: &str,
) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(manager).force();
    api.patch_status(name, &params, &Patch::Apply(&body)).await
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use dbward_crds::condition::types;

    use super::*;

    #[test]
    fn unchanged_statuses_keep_their_transition_time_and_order() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000);
        let t1 = t0 + Duration::from_secs(60);
        let old = vec![
            Condition::new(types::REACHABLE, true, "Connected", "ok", t0),
            Condition::new(types::READY, false, "Unreachable", "down", t0),
            Condition::new("Obsolete", true, "X", "", t0),
        ];
        let merged = merge_conditions(
            &old,
            vec![
                Condition::new(types::READY, true, "Ready", "up", t1),
                Condition::new(types::REACHABLE, true, "Connected", "ok", t1),
                Condition::new(types::CREDENTIALS_RESOLVED, true, "Resolved", "", t1),
            ],
        );
        let summary: Vec<(&str, &str)> = merged
            .iter()
            .map(|c| (c.type_.as_str(), c.last_transition_time.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                (types::REACHABLE, "1970-01-01T00:16:40Z"),
                (types::READY, "1970-01-01T00:17:40Z"),
                (types::CREDENTIALS_RESOLVED, "1970-01-01T00:17:40Z"),
            ]
        );
        assert_eq!(merge_conditions(&merged, merged.clone()), merged);
    }
}
