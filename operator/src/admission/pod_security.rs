//! Pod Security admission and the egress lock.
//!
//! The egress-lock init container runs as root with `NET_ADMIN` and `NET_RAW`, which the Pod Security
//! Standards `baseline` and `restricted` forbid. In a namespace labelled
//! `pod-security.kubernetes.io/enforce: baseline` (or `restricted`) the PodSecurity admission plugin,
//! which runs after the mutating webhooks, refuses every pod dbward injected with an egress lock. The
//! webhook cannot change that, but it can say so in words: an admission warning to whoever creates the
//! pod, and an Event on the Namespace for pods a controller creates, whose warnings nobody reads.
//!
//! Only the `enforce` label refuses pods; `warn` and `audit` only report, and are left alone. A value
//! that is not a level is read by Pod Security as `restricted`, and so here. What the webhook cannot
//! see: the cluster-wide defaults and exemptions of the PodSecurity admission configuration (a namespace
//! without the label may still enforce a default level, and an exempted one enforces nothing), and other
//! policy engines.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::spec::EGRESS_LOCK_CONTAINER;

/// The namespace label whose level the PodSecurity admission plugin enforces.
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";
/// The level that allows the egress lock.
pub const PRIVILEGED: &str = "privileged";
/// The reason of the Event on a Namespace whose Pod Security level refuses the egress lock.
pub const EGRESS_LOCK_FORBIDDEN: &str = "EgressLockForbidden";
/// At most one [`EGRESS_LOCK_FORBIDDEN`] Event per namespace in this time, per operator replica.
pub const EVENT_EVERY: Duration = Duration::from_secs(600);

/// A Pod Security level that refuses the egress lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `baseline`: no capabilities beyond the runtime's defaults, so no `NET_ADMIN` or `NET_RAW`.
    Baseline,
    /// `restricted`: `baseline`, and no root either.
    Restricted,
}

impl Level {
    /// The level's name, as in the label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Restricted => "restricted",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The level a namespace with `labels` enforces when that level refuses the egress lock: `baseline` or
/// `restricted` in [`ENFORCE_LABEL`], or a value that is no level (Pod Security reads it as
/// `restricted`). `None` for `privileged`, no label, or unknown labels.
pub fn forbidding_level(labels: Option<&BTreeMap<String, String>>) -> Option<Level> {
    match labels?.get(ENFORCE_LABEL)?.as_str() {
        PRIVILEGED => None,
        "baseline" => Some(Level::Baseline),
        _ => Some(Level::Restricted),
    }
}

/// The admission warning for a pod that got an egress lock in a namespace enforcing `level`. Kept
/// under 256 characters, beyond which the API server may cut warnings.
pub fn warning(level: Level) -> String {
    format!(
        "dbward: this namespace enforces Pod Security \"{level}\", which refuses {EGRESS_LOCK_CONTAINER} (root, \
         NET_ADMIN): label it {ENFORCE_LABEL}={PRIVILEGED}, exempt it, or set egressLock: false"
    )
}

/// The note of the [`EGRESS_LOCK_FORBIDDEN`] Event on namespace `namespace`.
pub fn event_note(namespace: &str, level: Level) -> String {
    format!(
        "pods that dbward injects with an egress lock in namespace {namespace:?} are refused by Pod Security \
         admission: the namespace enforces level {level:?} ({ENFORCE_LABEL}), which forbids the \
         {EGRESS_LOCK_CONTAINER} init container (it runs as root with NET_ADMIN and NET_RAW to install the \
         firewall rules that let only the sidecar reach the database). Label the namespace \
         {ENFORCE_LABEL}={PRIVILEGED} (the warn and audit labels may stay), exempt it in the PodSecurity \
         admission configuration, or set egressLock: false on the DatabaseConnections its pods use (they \
         then have no egress lock)",
        level = level.as_str()
    )
}

/// Remembers when each key was last let through, to do something at most once per period per key.
#[derive(Debug)]
pub struct OncePer {
    every: Duration,
    last: Mutex<HashMap<String, Instant>>,
}

impl OncePer {
    /// At most once per `every` for each key.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` is due at `now` (never let through, or last more than `every` ago); if so, it is
    /// recorded as let through now. Keys whose period is over are forgotten.
    pub fn due(&self, key: &str, now: Instant) -> bool {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        last.retain(|_, at| now.saturating_duration_since(*at) < self.every);
        if last.contains_key(key) {
            return false;
        }
        last.insert(key.to_owned(), now);
        true
    }

    /// Forget `key`, so that it is due again (an attempt to act on it failed).
    pub fn forget(&self, key: &str) {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        last.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn only_an_enforced_baseline_or_restricted_level_refuses_the_lock() {
        type Labels = &'static [(&'static str, &'static str)];
        let cases: &[(Labels, Option<Level>)] = &[
            (&[], None),
            (&[("dbward.dev/injection", "enabled")], None),
            (&[(ENFORCE_LABEL, "privileged")], None),
            (&[(ENFORCE_LABEL, "baseline")], Some(Level::Baseline)),
            (&[(ENFORCE_LABEL, "restricted")], Some(Level::Restricted)),
            // Pod Security reads a value that is no level as restricted.
            (&[(ENFORCE_LABEL, "Baseline")], Some(Level::Restricted)),
            (&[(ENFORCE_LABEL, "")], Some(Level::Restricted)),
            // warn and audit refuse nothing; the version label alone sets no level.
            (&[("pod-security.kubernetes.io/warn", "restricted")], None),
            (&[("pod-security.kubernetes.io/audit", "baseline")], None),
            (&[("pod-security.kubernetes.io/enforce-version", "latest")], None),
            (
                &[
                    (ENFORCE_LABEL, "privileged"),
                    ("pod-security.kubernetes.io/warn", "restricted"),
                ],
                None,
            ),
        ];
        for (pairs, want) in cases {
            assert_eq!(forbidding_level(Some(&labels(pairs))), *want, "{pairs:?}");
        }
        assert_eq!(forbidding_level(None), None, "an unknown namespace");
    }

    #[test]
    fn the_warning_is_short_and_says_what_to_do() {
        for level in [Level::Baseline, Level::Restricted] {
            let text = warning(level);
            assert!(text.len() <= 256, "{} characters: {text}", text.len());
            assert!(text.contains(&format!("Pod Security \"{level}\"")), "{text}");
            assert!(
                text.contains("pod-security.kubernetes.io/enforce=privileged"),
                "{text}"
            );
            assert!(text.contains("dbward-egress-lock"), "{text}");
        }
        let note = event_note("shop", Level::Baseline);
        assert!(note.starts_with("pods that dbward injects with an egress lock in namespace \"shop\""));
        assert!(note.contains("enforces level \"baseline\""), "{note}");
        assert!(note.contains("NET_ADMIN"), "{note}");
        assert!(
            note.len() <= 1024,
            "an Event note is at most 1 kB: {}",
            note.len()
        );
    }

    #[test]
    fn once_per_period_per_key() {
        let once = OncePer::new(EVENT_EVERY);
        let t0 = Instant::now();
        assert!(once.due("shop", t0));
        assert!(!once.due("shop", t0 + Duration::from_secs(599)));
        assert!(once.due("lab", t0 + Duration::from_secs(1)), "another key");
        assert!(once.due("shop", t0 + EVENT_EVERY), "the period is over");
        assert!(!once.due("shop", t0 + EVENT_EVERY + Duration::from_secs(1)));
        once.forget("shop");
        assert!(
            once.due("shop", t0 + EVENT_EVERY + Duration::from_secs(2)),
            "forgotten"
        );
        // Keys whose period is over are dropped on the next call: lab's (at 1 s) was, now shop's is.
        let keys = || -> Vec<String> {
            let last = once.last.lock().unwrap_or_else(|e| e.into_inner());
            last.keys().cloned().collect()
        };
        assert_eq!(keys(), ["shop"]);
        assert!(once.due("x", t0 + EVENT_EVERY * 3));
        assert_eq!(keys(), ["x"]);
    }
}
