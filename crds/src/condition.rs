//! Status conditions, shaped like Kubernetes' `metav1.Condition` but our own type, so the sidecar and the
//! local file mode use them without the Kubernetes crates.

use std::{fmt, time::SystemTime};

use serde::{Deserialize, Serialize};

use crate::timestamp::format_rfc3339;

/// Condition types written by the reconcilers.
pub mod types {
    /// DatabaseConnection and AccessPolicy: everything is in order and the object is in use.
    pub const READY: &str = "Ready";
    /// DatabaseConnection: the credentials Secret exists and has the named keys.
    pub const CREDENTIALS_RESOLVED: &str = "CredentialsResolved";
    /// DatabaseConnection: the operator opened a TCP connection to `host:port` (it does not log in).
    pub const REACHABLE: &str = "Reachable";
    /// DatabaseConnection: at least one pod that names the connection in its `dbward.dev/inject`
    /// annotation runs without the dbward sidecar, and so without database access (True is the problem;
    /// the reason says why, the message names the pods).
    pub const PODS_WITHOUT_SIDECAR: &str = "PodsWithoutSidecar";
    /// AccessPolicy: the spec passed validation (the reasons are in `status.errors` otherwise).
    pub const VALID: &str = "Valid";
    /// AccessPolicy: now is inside the `notBefore`/`validUntil` window.
    pub const ACTIVE: &str = "Active";
}

/// The state of one aspect of an object, e.g. whether a DatabaseConnection is reachable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The aspect this condition describes, in CamelCase: Ready, CredentialsResolved, Reachable,
    /// PodsWithoutSidecar, Valid, Active.
    #[serde(rename = "type")]
    pub type_: String,
    /// Whether the condition holds: True, False or Unknown.
    pub status: ConditionStatus,
    /// A CamelCase word saying why the condition is in this state, for machines (e.g. SecretNotFound).
    pub reason: String,
    /// A sentence saying why, for people (e.g. `secret "orders-db" has no key "password"`).
    #[serde(default)]
    pub message: String,
    /// When the status last changed, RFC 3339.
    pub last_transition_time: String,
    /// The object's `metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Whether a condition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet (e.g. not checked since the last change).
    #[default]
    Unknown,
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

impl fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        })
    }
}

impl Condition {
    /// A condition that transitioned at `now`.
    pub fn new(
        type_: impl Into<String>,
        status: impl Into<ConditionStatus>,
        reason: impl Into<String>,
        message: impl Into<String>,
        now: SystemTime,
    ) -> Self {
        Self {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: format_rfc3339(now),
            observed_generation: None,
        }
    }

    /// The same condition, stamped with the generation it was computed from.
    pub fn with_generation(mut self, generation: Option<i64>) -> Self {
        self.observed_generation = generation;
        self
    }

    /// Whether the status is True.
    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }
}

/// Find the condition of type `type_`.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Insert or replace the condition of the same type. If its status did not change, the old
/// `lastTransitionTime` is kept, so repeated reconciles do not make the condition look new.
/// Returns whether anything changed.
pub fn set(conditions: &mut Vec<Condition>, mut new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time.clone_from(&old.last_transition_time);
            }
            let changed = *old != new;
            *old = new;
            changed
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn serializes_like_metav1_condition() {
        let c =
            Condition::new(types::READY, true, "Reconciled", "all good", UNIX_EPOCH).with_generation(Some(3));
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "Ready", "status": "True", "reason": "Reconciled", "message": "all good",
                "lastTransitionTime": "1970-01-01T00:00:00Z", "observedGeneration": 3
            })
        );
        assert_eq!(serde_json::from_value::<Condition>(json).unwrap(), c);
    }

    #[test]
    fn set_keeps_transition_time_when_status_is_unchanged() {
        let t0 = UNIX_EPOCH + Duration::from_secs(100);
        let t1 = t0 + Duration::from_secs(60);
        let mut conds = vec![];
        assert!(set(
            &mut conds,
            Condition::new(types::REACHABLE, false, "Timeout", "x", t0)
        ));
        assert!(!set(
            &mut conds,
            Condition::new(types::REACHABLE, false, "Timeout", "x", t1)
        ));
        assert_eq!(conds[0].last_transition_time, "1970-01-01T00:01:40Z");
        assert!(set(
            &mut conds,
            Condition::new(types::REACHABLE, false, "Refused", "y", t1)
        ));
        assert_eq!(conds[0].last_transition_time, "1970-01-01T00:01:40Z");
        assert!(set(
            &mut conds,
            Condition::new(types::REACHABLE, true, "Connected", "", t1)
        ));
        assert_eq!(conds[0].last_transition_time, "1970-01-01T00:02:40Z");
        assert!(set(&mut conds, Condition::new(types::READY, true, "Ok", "", t1)));
        assert_eq!(conds.len(), 2);
        assert!(find(&conds, types::REACHABLE).unwrap().is_true());
        assert!(find(&conds, types::VALID).is_none());
    }
}
