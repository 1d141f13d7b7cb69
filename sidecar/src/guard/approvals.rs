//! `requireApproval` in a session: a statement a rule holds waits for a person's decision through the
//! approval store (DESIGN section 6).
//!
//! Mode `wait` holds the statement on the live connection: the relay keeps the message (and everything
//! the client sends after it) while the store is asked for a request and watched; the client hears a
//! notice at once naming the request and the command that approves it, and a reminder now and then.
//! When the wait ends, the relay shows the same message to the guard again, which finds the outcome
//! here: approved, it runs as if nothing happened; denied, expired or cancelled, it fails. A client
//! that goes away withdraws its request.
//!
//! Mode `reject` fails the statement at once with the request's name; once approved, the same
//! statement (same exact text, and in the extended protocol the same bound parameters) from the same
//! caller runs, once — or as often as it likes within the policy's `grantWindow`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use aws_lc_rs::digest;
use dbward_crds::{ApprovalMode, ApprovalPhase, Requester, format_duration};
use tracing::{info, warn};

use super::record::ApprovalOutcome;
use crate::{
    approval::{ApprovalStore, NewRequest},
    identity::CallerIdentity,
    journal::{
        SessionLog,
        event::{self, Time},
    },
    policy::ApprovalSettings,
    proxy::{messages::frontend::Bind, pump::Wait, signals::SessionSignals},
};

/// How often a waiting client is reminded that its statement is held.
pub const DEFAULT_REMINDER: Duration = Duration::from_secs(15);
/// Portals whose bound parameters are remembered (for statements that need approval only).
const MAX_PORTALS: usize = 1024;

/// SQLSTATEs of the outcomes.
const HELD_NOTICE: &str = "01000";
const QUERY_CANCELED: &str = "57014";
const CANNOT_ASK: &str = "58000";

/// How a held statement's wait ended.
#[derive(Debug)]
enum Ended {
    Approved {
        name: String,
        by: Option<String>,
    },
    Denied {
        name: String,
        by: Option<String>,
        reason: Option<String>,
    },
    Expired {
        name: String,
        reason: Option<String>,
    },
    Cancelled {
        name: String,
    },
    /// Mode reject: the request waits for a person; the statement fails for now.
    Asked {
        name: String,
    },
    /// The store could not be used.
    Failed(String),
}

/// What the guard does with a statement that needs approval, about to run.
pub(super) enum Hold {
    /// It was approved: run it.
    Proceed,
    /// It fails with this SQLSTATE and message.
    Refuse { code: &'static str, message: String },
    /// Wait for this, then judge the same statement again.
    Wait(Wait),
}

/// A statement that needs approval, as the guard judged it.
pub(super) struct Held<'a> {
    pub sql: &'a str,
    /// The portal executed (extended protocol), whose bound parameters the approval covers.
    pub portal: Option<&'a str>,
    /// Why approval is needed (the rule's message).
    pub message: &'a str,
    /// `<policy>/<rule>`.
    pub rule: &'a str,
    pub settings: &'a ApprovalSettings,
}

type Slot = Arc<Mutex<Option<(String, Ended)>>>;

/// How many sessions of this sidecar wait on each request (identical requests are shared): a client
/// that cancels or goes away withdraws the request only when nobody else waits on it.
#[derive(Debug, Default)]
pub(crate) struct Waiters(Mutex<HashMap<String, usize>>);

impl Waiters {
    fn join(self: &Arc<Self>, name: &str) -> Waiting {
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_default() += 1;
        Waiting {
            waiters: self.clone(),
            name: name.to_owned(),
            left: false,
        }
    }
}

/// One session's place among a request's waiters.
struct Waiting {
    waiters: Arc<Waiters>,
    name: String,
    left: bool,
}

impl Waiting {
    /// Leaves; returns whether this was the last waiter.
    fn leave(&mut self) -> bool {
        if self.left {
            return false;
        }
        self.left = true;
        let mut map = self.waiters.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(n) = map.get_mut(&self.name) else {
            return true;
        };
        *n -= 1;
        if *n == 0 {
            map.remove(&self.name);
            true
        } else {
            false
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.leave();
    }
}

/// A session's approvals.
pub(super) struct SessionApprovals {
    store: Arc<dyn ApprovalStore>,
    signals: SessionSignals,
    connection: String,
    requester: Requester,
    subject: String,
    reminder: Duration,
    /// The outcome of the last wait, keyed by what it covered.
    ended: Slot,
    /// Fingerprints of bound parameters, by portal (only for statements that need approval).
    portals: HashMap<String, String>,
    /// The session's journal.
    log: Option<Arc<SessionLog>>,
    /// The sidecar's waiters per request.
    waiters: Arc<Waiters>,
    /// How the last held statement's approval ended, for its `statement` event.
    note: Option<ApprovalOutcome>,
}

impl SessionApprovals {
    pub fn new(
        store: Arc<dyn ApprovalStore>,
        signals: SessionSignals,
        connection: &str,
        identity: &CallerIdentity,
        reminder: Duration,
        log: Option<Arc<SessionLog>>,
        waiters: Arc<Waiters>,
    ) -> Self {
        let requester = Requester {
            service_account: identity
                .service_account
                .as_ref()
                .map(|sa| format!("{}/{}", sa.namespace, sa.name)),
            pod: identity.pod.clone(),
            subject: identity.subject.clone(),
            uid: identity.uid,
        };
        Self {
            store,
            signals,
            connection: connection.to_owned(),
            subject: identity.subject.clone(),
            requester,
            reminder,
            ended: Arc::default(),
            portals: HashMap::new(),
            log,
            waiters,
            note: None,
        }
    }

    /// How the approval of the statement just judged ended, if it was held.
    pub fn take_note(&mut self) -> Option<ApprovalOutcome> {
        self.note.take()
    }

    /// Remembers the parameters bound to a portal whose statement needs approval.
    pub fn bound(&mut self, bind: &Bind<'_>) {
        let mut ctx = digest::Context::new(&digest::SHA256);
        for (i, p) in bind.params().enumerate() {
            ctx.update(&[u8::from(
                bind.param_format(i) != crate::proxy::messages::frontend::Format::Text,
            )]);
            match p {
                Some(v) => {
                    ctx.update(&(v.len() as u64).to_be_bytes());
                    ctx.update(v);
                }
                None => ctx.update(&u64::MAX.to_be_bytes()),
            }
        }
        if self.portals.len() >= MAX_PORTALS && !self.portals.contains_key(bind.portal) {
            self.portals.clear();
        }
        self.portals
            .insert(bind.portal.to_owned(), crate::hex::encode(ctx.finish().as_ref()));
    }

    /// What to do with a statement that needs approval and is about to run.
    pub fn hold(&mut self, held: &Held<'_>) -> Hold {
        // What an approval covers: this connection, this exact statement, and its bound parameters.
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(self.connection.as_bytes());
        ctx.update(b"\0");
        ctx.update(crate::sql::fingerprint_exact(held.sql).as_bytes());
        if let Some(params) = held.portal.and_then(|p| self.portals.get(p)) {
            ctx.update(b"\0");
            ctx.update(params.as_bytes());
        }
        let key = crate::hex::encode(ctx.finish().as_ref());
        let ended = {
            let mut slot = self.ended.lock().unwrap_or_else(|e| e.into_inner());
            match slot.take() {
                Some((k, e)) if k == key => Some(e),
                _ => None,
            }
        };
        if let Some(e) = ended {
            return self.outcome(e, held);
        }
        let request = NewRequest {
            connection: self.connection.clone(),
            requester: self.requester.clone(),
            statement: held.sql.to_owned(),
            fingerprint: key.clone(),
            rule: held.rule.to_owned(),
            timeout: held.settings.timeout,
        };
        let wait = match held.settings.mode {
            ApprovalMode::Wait => self.wait(request, key, held),
            ApprovalMode::Reject => self.ask(request, key, held.settings),
        };
        Hold::Wait(wait)
    }

    fn outcome(&mut self, ended: Ended, held: &Held<'_>) -> Hold {
        self.note = ended.note();
        let outcome = match &ended {
            Ended::Approved { .. } => "approved",
            Ended::Denied { .. } => "denied",
            Ended::Expired { .. } => "expired",
            Ended::Cancelled { .. } => "cancelled",
            Ended::Asked { .. } => "asked",
            Ended::Failed(_) => "failed",
        };
        crate::admin::metrics()
            .approvals
            .with_label_values(&[outcome])
            .inc();
        let refuse = |code, message| Hold::Refuse { code, message };
        match ended {
            Ended::Approved { name, .. } => {
                info!(connection = %self.connection, request = %name, "approved statement runs");
                Hold::Proceed
            }
            Ended::Denied { name, by, reason } => refuse(
                "42501",
                format!(
                    "dbward: {}: approval request {name} was denied{}{}",
                    held.message,
                    by.map(|b| format!(" by {b}")).unwrap_or_default(),
                    reason.map(|r| format!(": {r}")).unwrap_or_default()
                ),
            ),
            Ended::Expired { name, reason } => refuse(
                QUERY_CANCELED,
                format!(
                    "dbward: approval request {name} expired{}",
                    reason.map(|r| format!(": {r}")).unwrap_or_default()
                ),
            ),
            Ended::Cancelled { name } => refuse(
                QUERY_CANCELED,
                format!("canceling statement due to user request (approval request {name} withdrawn)"),
            ),
            Ended::Asked { name } => refuse(
                "42501",
                format!(
                    "dbward: {}: approval request {name} waits for a person; once approved ({}), run the statement again",
                    held.message,
                    self.store.approve_hint(&name)
                ),
            ),
            Ended::Failed(e) => refuse(CANNOT_ASK, format!("dbward: cannot ask for approval: {e}")),
        }
    }

    /// Mode wait: ask, tell the client, and wait for the decision, the timeout or a cancel.
    fn wait(&self, request: NewRequest, key: String, held: &Held<'_>) -> Wait {
        let store = self.store.clone();
        let signals = self.signals.clone();
        let slot = self.ended.clone();
        let reminder = self.reminder;
        let connection = self.connection.clone();
        let message = held.message.to_owned();
        let rule = held.rule.to_owned();
        let cancels_before = signals.cancel_count();
        let log = self.log.clone();
        let waiters = self.waiters.clone();
        Box::pin(async move {
            let ended = match store.request(request).await {
                Err(e) => Ended::Failed(e.to_string()),
                Ok(ticket) => {
                    let name = ticket.name;
                    let left = ticket
                        .expires_at
                        .duration_since(SystemTime::now())
                        .unwrap_or_default();
                    info!(%connection, request = %name, %rule, reused = ticket.reused, "statement held for approval");
                    journal_approval(
                        log.as_deref(),
                        &event::Approval {
                            request: &name,
                            stage: "requested",
                            mode: "wait",
                            rule: Some(&rule),
                            reused: ticket.reused,
                            expires_at: Some(Time(ticket.expires_at)),
                            ..event::Approval::default()
                        },
                    );
                    signals.notice(
                        HELD_NOTICE,
                        &format!(
                            "dbward: {message}: statement held for approval as request {name} (rule {rule}); waiting up to {}",
                            format_duration(left)
                        ),
                        Some(&format!("approve it with: {}", store.approve_hint(&name))),
                    );
                    let mut withdraw = Withdraw {
                        store: store.clone(),
                        name: Some(name.clone()),
                        waiting: waiters.join(&name),
                    };
                    let started = tokio::time::Instant::now();
                    let deadline = started + left;
                    let decided = store.decided(&name);
                    tokio::pin!(decided);
                    let ended = loop {
                        tokio::select! {
                            d = &mut decided => break decision(name.clone(), d),
                            () = tokio::time::sleep_until(deadline) => {
                                let reason = format!("nobody decided within {}", format_duration(left));
                                if let Err(e) = store.expire(&name, &reason).await {
                                    warn!(request = %name, error = %e, "could not mark the approval request expired");
                                }
                                break Ended::Expired { name: name.clone(), reason: Some(reason) };
                            }
                            () = signals.cancelled_after(cancels_before) => {
                                // Others waiting on the same request keep it open.
                                if withdraw.waiting.leave()
                                    && let Err(e) = store.expire(&name, "the client cancelled the statement").await
                                {
                                    warn!(request = %name, error = %e, "could not withdraw the approval request");
                                }
                                break Ended::Cancelled { name: name.clone() };
                            }
                            () = tokio::time::sleep(reminder) => {
                                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                                signals.notice(
                                    HELD_NOTICE,
                                    &format!(
                                        "dbward: still waiting for approval of request {name} ({} left)",
                                        format_duration(Duration::from_secs(left.as_secs()))
                                    ),
                                    Some(&format!("approve it with: {}", store.approve_hint(&name))),
                                );
                            }
                        }
                    };
                    // From here a dropped wait has nothing to withdraw; until here, dropping it (the
                    // client went away) withdraws the request if this was its last waiter.
                    withdraw.name = None;
                    let waited = started.elapsed();
                    info!(%connection, request = %name, waited_ms = waited.as_millis() as u64, outcome = ended.word(), "approval wait ended");
                    journal_approval(log.as_deref(), &ended.event(&name, "wait", Some(waited)));
                    ended
                }
            };
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some((key, ended));
        })
    }

    /// Mode reject: run on an unused approval, or ask and fail for now.
    fn ask(&self, request: NewRequest, key: String, settings: &ApprovalSettings) -> Wait {
        let store = self.store.clone();
        let slot = self.ended.clone();
        let subject = self.subject.clone();
        let (window, once) = (settings.grant_window, settings.grant_once);
        let log = self.log.clone();
        let rule = request.rule.clone();
        Box::pin(async move {
            let ended = match store.take_grant(&subject, &key, window, once).await {
                Ok(Some(name)) => {
                    journal_approval(
                        log.as_deref(),
                        &event::Approval {
                            request: &name,
                            stage: "granted",
                            mode: "reject",
                            rule: Some(&rule),
                            ..event::Approval::default()
                        },
                    );
                    Ended::Approved { name, by: None }
                }
                Ok(None) => match store.request(request).await {
                    Ok(ticket) => {
                        journal_approval(
                            log.as_deref(),
                            &event::Approval {
                                request: &ticket.name,
                                stage: "asked",
                                mode: "reject",
                                rule: Some(&rule),
                                reused: ticket.reused,
                                expires_at: Some(Time(ticket.expires_at)),
                                ..event::Approval::default()
                            },
                        );
                        Ended::Asked { name: ticket.name }
                    }
                    Err(e) => Ended::Failed(e.to_string()),
                },
                Err(e) => Ended::Failed(e.to_string()),
            };
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some((key, ended));
        })
    }
}

/// Writes an approval event to the session's journal at once (a wait may be long; the request must be
/// on record while it lasts).
fn journal_approval(log: Option<&SessionLog>, e: &event::Approval<'_>) {
    let Some(log) = log else { return };
    let e = event::Approval {
        session: log.id(),
        ..*e
    };
    if let Err(err) = log.record_now(|buf| event::approval(buf, &e)) {
        warn!(session = log.id(), error = %err, "could not write the session journal");
    }
}

impl Ended {
    fn word(&self) -> &'static str {
        match self {
            Self::Approved { .. } => "approved",
            Self::Denied { .. } => "denied",
            Self::Expired { .. } => "expired",
            Self::Cancelled { .. } => "cancelled",
            Self::Asked { .. } => "asked",
            Self::Failed(_) => "failed",
        }
    }

    fn name(&self) -> Option<&str> {
        match self {
            Self::Approved { name, .. }
            | Self::Denied { name, .. }
            | Self::Expired { name, .. }
            | Self::Cancelled { name }
            | Self::Asked { name } => Some(name),
            Self::Failed(_) => None,
        }
    }

    fn decided_by(&self) -> Option<&str> {
        match self {
            Self::Approved { by, .. } | Self::Denied { by, .. } => by.as_deref(),
            _ => None,
        }
    }

    /// What the held statement's `statement` event says of it.
    fn note(&self) -> Option<ApprovalOutcome> {
        Some(ApprovalOutcome {
            request: self.name()?.to_owned(),
            outcome: self.word(),
            decided_by: self.decided_by().map(str::to_owned),
        })
    }

    /// The `approval` event of the end of a wait.
    fn event<'a>(
        &'a self,
        name: &'a str,
        mode: &'static str,
        waited: Option<Duration>,
    ) -> event::Approval<'a> {
        let reason = match self {
            Self::Denied { reason, .. } | Self::Expired { reason, .. } => reason.as_deref(),
            Self::Failed(e) => Some(e.as_str()),
            _ => None,
        };
        event::Approval {
            request: name,
            stage: self.word(),
            mode,
            decided_by: self.decided_by(),
            reason,
            waited_ms: waited.map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX)),
            ..event::Approval::default()
        }
    }
}

fn decision(name: String, d: Result<crate::approval::Decision, crate::approval::ApprovalError>) -> Ended {
    match d {
        Err(e) => Ended::Failed(e.to_string()),
        Ok(d) => match d.phase {
            ApprovalPhase::Approved => Ended::Approved {
                name,
                by: d.decided_by,
            },
            ApprovalPhase::Denied => Ended::Denied {
                name,
                by: d.decided_by,
                reason: d.reason,
            },
            ApprovalPhase::Expired | ApprovalPhase::Pending => Ended::Expired {
                name,
                reason: d.reason,
            },
        },
    }
}

/// Withdraws the request when the wait is dropped before it ended (the client went away) and nobody
/// else waits on it.
struct Withdraw {
    store: Arc<dyn ApprovalStore>,
    name: Option<String>,
    /// This session's place among the request's waiters.
    waiting: Waiting,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        let Some(name) = self.name.take() else {
            return;
        };
        if !self.waiting.leave() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let expire = self.store.expire(&name, "the client went away");
            rt.spawn(async move {
                if let Err(e) = expire.await {
                    warn!(request = %name, error = %e, "could not withdraw the approval request");
                }
            });
        }
    }
}
