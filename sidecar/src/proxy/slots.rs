//! The connections a running proxy serves, each replaceable while it runs: a changed DatabaseConnection
//! (its host, database, TLS, credentials or trusted issuers) applies to the sessions that start after
//! the change. Sessions already open keep the upstream session they logged in with, as a pooler does
//! when its configuration is reloaded.
//!
//! What cannot change without a restart is said, not done: a connection's local port (the app was told
//! it) and connections that were not there at start (nothing listens for them). A connection that goes
//! away stops taking sessions at once; its listener stays bound and refuses them with a message.

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, RwLock},
};

use super::session::ConnectionContext;

/// Digests of what a [`ConnectionContext`] was built from, by part, so a reload can tell what changed
/// without keeping a second copy of any secret and without ever logging one.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint {
    /// Host, port, database, TLS mode and CA.
    pub upstream: [u8; 32],
    /// User name and password.
    pub credentials: [u8; 32],
    /// Ambient identity and trusted issuers with their keys' sources.
    pub identity: [u8; 32],
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fingerprint(..)")
    }
}

impl Fingerprint {
    /// The parts that differ from `old`, named for a log line.
    pub fn changed_since(&self, old: &Fingerprint) -> Vec<&'static str> {
        let mut parts = Vec::new();
        if self.upstream != old.upstream {
            parts.push("server (host, port, database or TLS)");
        }
        if self.credentials != old.credentials {
            parts.push("credentials");
        }
        if self.identity != old.identity {
            parts.push("identity (ambient access or trusted issuers)");
        }
        parts
    }
}

/// A running SHA-256 over length-prefixed fields, for [`Fingerprint`]s.
pub struct Digest(aws_lc_rs::digest::Context);

impl Default for Digest {
    fn default() -> Self {
        Self(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256))
    }
}

impl Digest {
    /// Adds one field; the length prefix keeps `("ab", "c")` apart from `("a", "bc")`.
    pub fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(&(bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
        self
    }

    pub fn finish(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}

struct Slot {
    /// The local port the connection was configured with at start.
    port: u16,
    current: RwLock<Option<Arc<ConnectionContext>>>,
}

/// The served connections by name. Cheap to clone; every clone sees the same slots.
#[derive(Clone, Default)]
pub struct ConnectionSlots(Arc<BTreeMap<String, Slot>>);

/// What [`ConnectionSlots::update`] did or could not do, one entry per connection concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotChange {
    /// New sessions use the new settings; the parts that changed.
    Changed {
        connection: String,
        parts: Vec<&'static str>,
    },
    /// Gone from the configuration: new sessions are refused.
    Removed { connection: String },
    /// Back in the configuration after a removal: new sessions are served again.
    Restored { connection: String },
    /// The local port changed; the listener stays on the old one until a restart.
    PortNotChanged { connection: String, from: u16, to: u16 },
    /// New in the configuration; not served until a restart.
    AddedNotServed { connection: String },
}

impl ConnectionSlots {
    /// Slots for the connections the proxy starts with, each with its configured local port.
    pub fn new(connections: &[(Arc<ConnectionContext>, u16)]) -> Self {
        let slots = connections
            .iter()
            .map(|(ctx, port)| {
                (
                    ctx.name.clone(),
                    Slot {
                        port: *port,
                        current: RwLock::new(Some(ctx.clone())),
                    },
                )
            })
            .collect();
        Self(Arc::new(slots))
    }

    /// The settings new sessions of `name` use; `None` when it was removed (or never served).
    pub fn current(&self, name: &str) -> Option<Arc<ConnectionContext>> {
        let slot = self.0.get(name)?;
        slot.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the served connections' settings by `next` (the whole new configuration). A connection
    /// whose [`Fingerprint`] did not change keeps its context, and with it its caches (keys fetched
    /// from issuers, the SCRAM key derived from the password).
    pub fn update(&self, next: &[(Arc<ConnectionContext>, u16)]) -> Vec<SlotChange> {
        let mut changes = Vec::new();
        for (name, slot) in self.0.iter() {
            let mut current = slot.current.write().unwrap_or_else(|p| p.into_inner());
            let Some((ctx, port)) = next.iter().find(|(c, _)| &c.name == name) else {
                if current.take().is_some() {
                    changes.push(SlotChange::Removed {
                        connection: name.clone(),
                    });
                }
                continue;
            };
            if *port != slot.port {
                changes.push(SlotChange::PortNotChanged {
                    connection: name.clone(),
                    from: slot.port,
                    to: *port,
                });
            }
            match current.as_ref() {
                None => {
                    *current = Some(ctx.clone());
                    changes.push(SlotChange::Restored {
                        connection: name.clone(),
                    });
                }
                Some(old) => {
                    let parts = ctx.fingerprint.changed_since(&old.fingerprint);
                    if !parts.is_empty() {
                        *current = Some(ctx.clone());
                        changes.push(SlotChange::Changed {
                            connection: name.clone(),
                            parts,
                        });
                    }
                }
            }
        }
        for (ctx, _) in next {
            if !self.0.contains_key(&ctx.name) {
                changes.push(SlotChange::AddedNotServed {
                    connection: ctx.name.clone(),
                });
            }
        }
        changes
    }
}

impl SlotChange {
    /// Logs the change: info for what took effect, warn for what waits for a restart.
    pub fn log(&self) {
        use tracing::{info, warn};
        match self {
            SlotChange::Changed { connection, parts } => info!(
                %connection, changed = %parts.join(", "),
                "connection settings changed: new sessions use them, open sessions keep theirs"
            ),
            SlotChange::Removed { connection } => warn!(
                %connection,
                "connection removed from the configuration: new sessions are refused, open sessions go on"
            ),
            SlotChange::Restored { connection } => {
                info!(%connection, "connection back in the configuration: new sessions are served")
            }
            SlotChange::PortNotChanged { connection, from, to } => warn!(
                %connection, from, to,
                "localPort changed: the sidecar keeps listening on the old port until it restarts"
            ),
            SlotChange::AddedNotServed { connection } => warn!(
                %connection,
                "new connection in the configuration: the sidecar serves it after a restart"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::upstream::{Password, UpstreamTarget};

    fn ctx(name: &str, user: &str) -> Arc<ConnectionContext> {
        let mut d = Digest::default();
        d.field(user.as_bytes());
        Arc::new(ConnectionContext {
            name: name.into(),
            upstream: Arc::new(UpstreamTarget {
                connection: name.into(),
                host: "db".into(),
                port: 5432,
                database: "shop".into(),
                user: user.into(),
                password: Password::new("pw"),
                tls_mode: crate::tls::TlsMode::Disable,
                tls: None,
                server_name: None,
                connect_timeout: std::time::Duration::from_secs(1),
                scram_cache: Default::default(),
            }),
            allow_ambient: true,
            verifier: None,
            fingerprint: Fingerprint {
                credentials: d.finish(),
                ..Fingerprint::default()
            },
        })
    }

    fn user(slots: &ConnectionSlots, name: &str) -> Option<String> {
        slots.current(name).map(|c| c.upstream.user.clone())
    }

    #[test]
    fn unchanged_settings_keep_the_running_context() {
        let first = ctx("orders", "app");
        let slots = ConnectionSlots::new(&[(first.clone(), 5432)]);
        assert_eq!(slots.update(&[(ctx("orders", "app"), 5432)]), vec![]);
        assert!(Arc::ptr_eq(&slots.current("orders").unwrap(), &first));
    }

    #[test]
    fn changes_removals_and_what_needs_a_restart_are_told_apart() {
        let slots = ConnectionSlots::new(&[(ctx("orders", "app"), 5432), (ctx("billing", "app"), 5433)]);
        let changes = slots.update(&[(ctx("orders", "rotated"), 6000), (ctx("audit", "app"), 5434)]);
        assert_eq!(
            changes,
            vec![
                SlotChange::Removed {
                    connection: "billing".into()
                },
                SlotChange::PortNotChanged {
                    connection: "orders".into(),
                    from: 5432,
                    to: 6000
                },
                SlotChange::Changed {
                    connection: "orders".into(),
                    parts: vec!["credentials"]
                },
                SlotChange::AddedNotServed {
                    connection: "audit".into()
                },
            ]
        );
        assert_eq!(user(&slots, "orders").as_deref(), Some("rotated"));
        assert_eq!(user(&slots, "billing"), None, "removed: refused from now on");
        assert_eq!(user(&slots, "audit"), None, "added: not served until a restart");
        // Removing twice says nothing more; coming back is said.
        assert_eq!(slots.update(&[(ctx("orders", "rotated"), 5432)]), vec![]);
        assert_eq!(
            slots.update(&[(ctx("orders", "rotated"), 5432), (ctx("billing", "app"), 5433)]),
            vec![SlotChange::Restored {
                connection: "billing".into()
            }]
        );
        assert_eq!(user(&slots, "billing").as_deref(), Some("app"));
    }

    #[test]
    fn digests_keep_fields_apart() {
        let one = {
            let mut d = Digest::default();
            d.field(b"ab").field(b"c");
            d.finish()
        };
        let two = {
            let mut d = Digest::default();
            d.field(b"a").field(b"bc");
            d.finish()
        };
        assert_ne!(one, two);
        assert_eq!(
            Fingerprint {
                upstream: one,
                ..Default::default()
            }
            .changed_since(&Fingerprint::default()),
            vec!["server (host, port, database or TLS)"]
        );
    }
}
