//! `kubectl dbward pending`, `approve` and `deny` without the I/O: which requests are pending, the table,
//! the checks before a decision, the status patch (the same merge patch as `kubectl patch approvalrequest
//! NAME --subresource=status --type=merge -p '{"status":{"phase":"Approved"}}'`), and how the outcome
//! is told. Who decided is stamped by the admission webhook (`operator/src/admission/approval.rs`);
//! RBAC on `approvalrequests/status` decides who may.

use std::{fmt, time::SystemTime};

use dbward_crds::{ApprovalPhase, ApprovalRequest, parse_rfc3339};
use kube::ResourceExt;
use serde_json::{Value, json};

use super::text::{age, first_line, one_line, table, terminal_safe, time_left};

/// How many characters of a statement the table shows (without `-o wide`).
pub const STATEMENT_WIDTH: usize = 60;

/// How many characters of a statement the lines after a decision show (on one line).
pub const STATEMENT_SHOWN: usize = 500;

/// The request's phase; no status yet means Pending.
pub fn phase(req: &ApprovalRequest) -> ApprovalPhase {
    req.status.as_ref().map_or(ApprovalPhase::Pending, |s| s.phase)
}

/// When the request expires, if `spec.expiresAt` reads.
pub fn expires_at(req: &ApprovalRequest) -> Option<SystemTime> {
    parse_rfc3339(&req.spec.expires_at).ok()
}

/// When the request was created.
pub fn created_at(req: &ApprovalRequest) -> Option<SystemTime> {
    req.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| SystemTime::from(t.0))
}

/// Whether the request waits for a decision: phase Pending and `now` before `spec.expiresAt` (an
/// unreadable expiresAt does not hide it: the operator decides what it means).
pub fn is_pending(req: &ApprovalRequest, now: SystemTime) -> bool {
    phase(req) == ApprovalPhase::Pending && expires_at(req).is_none_or(|t| now < t)
}

/// The pending requests of `all`, by namespace, then oldest first, then name.
pub fn pending(all: &[ApprovalRequest], now: SystemTime) -> Vec<&ApprovalRequest> {
    let mut out: Vec<&ApprovalRequest> = all.iter().filter(|r| is_pending(r, now)).collect();
    out.sort_by(|a, b| {
        (a.namespace(), created_at(a), a.name_any()).cmp(&(b.namespace(), created_at(b), b.name_any()))
    });
    out
}

/// Who sent the statement: the subject, and the pod when known.
pub fn requester(req: &ApprovalRequest) -> String {
    let r = &req.spec.requester;
    let mut who = terminal_safe(&r.subject);
    if let Some(pod) = &r.pod {
        who.push_str(&format!(" (pod {})", terminal_safe(pod)));
    }
    who
}

/// The table of `pending`: NAME, NAMESPACE (with `all_namespaces`), CONNECTION, REQUESTER, RULE, AGE,
/// EXPIRES IN, STATEMENT (its first line cut to [`STATEMENT_WIDTH`]; whole, on one line, when `wide`).
pub fn pending_table(
    pending: &[&ApprovalRequest],
    all_namespaces: bool,
    wide: bool,
    now: SystemTime,
) -> String {
    let mut header = vec!["NAME"];
    if all_namespaces {
        header.push("NAMESPACE");
    }
    header.extend([
        "CONNECTION",
        "REQUESTER",
        "RULE",
        "AGE",
        "EXPIRES IN",
        "STATEMENT",
    ]);
    let mut rows = vec![header.into_iter().map(str::to_owned).collect::<Vec<_>>()];
    for req in pending {
        let mut row = vec![terminal_safe(&req.name_any())];
        if all_namespaces {
            row.push(terminal_safe(&req.namespace().unwrap_or_default()));
        }
        row.extend([
            terminal_safe(&req.spec.connection),
            requester(req),
            terminal_safe(&req.spec.rule),
            created_at(req).map_or_else(|| "<unknown>".to_owned(), |t| age(t, now)),
            expires_at(req).map_or_else(|| "<unknown>".to_owned(), |t| time_left(t, now)),
            if wide {
                one_line(&req.spec.statement)
            } else {
                first_line(&req.spec.statement, STATEMENT_WIDTH)
            },
        ]);
        rows.push(row);
    }
    table(&rows, "")
}

/// What to say when nothing is pending (kubectl's "No resources found" wording).
pub fn nothing_pending(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("No pending approval requests in namespace {ns}."),
        None => "No pending approval requests in any namespace.".to_owned(),
    }
}

/// The requests as one `v1 List`, as `kubectl get -o yaml|json` prints several objects.
pub fn list_document(items: &[&ApprovalRequest]) -> Result<Value, serde_json::Error> {
    let items = items
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": items,
        "metadata": {"resourceVersion": ""},
    }))
}

/// A decision a person makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let the statement run.
    Approve,
    /// Refuse it.
    Deny,
}

impl Decision {
    /// The phase it sets.
    pub fn phase(self) -> ApprovalPhase {
        match self {
            Self::Approve => ApprovalPhase::Approved,
            Self::Deny => ApprovalPhase::Denied,
        }
    }

    /// `approve` or `deny`.
    pub fn verb(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
        }
    }
}

/// Why a request cannot be decided (checked before patching; the webhook and the CRD's rules check again
/// on the server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The phase is final.
    AlreadyDecided {
        /// The request.
        name: String,
        /// Its phase.
        phase: ApprovalPhase,
        /// `status.decidedBy`.
        by: Option<String>,
        /// `status.decidedAt`.
        at: Option<String>,
        /// `status.reason`.
        reason: Option<String>,
    },
    /// Still Pending, but past `spec.expiresAt`: the operator is about to mark it Expired.
    Expired {
        /// The request.
        name: String,
        /// `spec.expiresAt`.
        at: String,
        /// How long ago.
        ago: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyDecided {
                name,
                phase,
                by,
                at,
                reason,
            } => {
                write!(f, "approvalrequest {name:?} is already {phase}")?;
                match (phase, by) {
                    (ApprovalPhase::Expired, _) => write!(f, ": nobody decided in time")?,
                    (_, Some(by)) => write!(f, " by {}", terminal_safe(by))?,
                    (_, None) => write!(f, " (decidedBy is not recorded)")?,
                }
                if let Some(at) = at {
                    write!(f, " at {}", terminal_safe(at))?;
                }
                if let Some(reason) = reason {
                    write!(f, " (reason: {})", terminal_safe(reason))?;
                }
                write!(
                    f,
                    "; a decided request cannot change. If the statement is sent again, it gets a new request."
                )
            }
            Self::Expired { name, at, ago } => write!(
                f,
                "approvalrequest {name:?} expired at {} ({ago} ago) and can no longer be decided; the \
                 statement has failed. If it is sent again, it gets a new request.",
                terminal_safe(at)
            ),
        }
    }
}

/// Whether `req` can still be decided at `now`.
pub fn check_decidable(req: &ApprovalRequest, now: SystemTime) -> Result<(), Refusal> {
    let name = req.name_any();
    let current = phase(req);
    if current.is_final() {
        let status = req.status.clone().unwrap_or_default();
        return Err(Refusal::AlreadyDecided {
            name,
            phase: current,
            by: status.decided_by,
            at: status.decided_at,
            reason: status.reason,
        });
    }
    if let Some(expires) = expires_at(req)
        && now >= expires
    {
        return Err(Refusal::Expired {
            name,
            at: req.spec.expires_at.clone(),
            ago: age(expires, now),
        });
    }
    Ok(())
}

/// The merge patch for the status subresource: `{"status":{"phase":"Approved","reason":...}}` (reason
/// only when given). decidedBy and decidedAt are the webhook's to write.
pub fn status_patch(decision: Decision, reason: Option<&str>) -> Value {
    let mut status = json!({"phase": decision.phase().as_str()});
    if let Some(reason) = reason.map(str::trim).filter(|r| !r.is_empty()) {
        status["reason"] = Value::String(reason.to_owned());
    }
    json!({"status": status})
}

/// What the request holds, for the lines printed after a decision.
pub fn describe(req: &ApprovalRequest) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        out.push_str(&format!("  {label:<11}{value}\n"));
    };
    line("connection", terminal_safe(&req.spec.connection));
    line("requester", requester(req));
    line("rule", terminal_safe(&req.spec.rule));
    let statement = req.spec.statement.replace(['\n', '\r'], " ");
    line("statement", first_line(&statement, STATEMENT_SHOWN));
    out
}

/// The outcome as the server stored it: the phase, who decided (as the webhook stamped it), when, and
/// the reason.
pub fn outcome(req: &ApprovalRequest) -> String {
    let status = req.status.clone().unwrap_or_default();
    let ns = req.namespace().unwrap_or_default();
    let mut out = format!(
        "approvalrequest {ns}/{} {}",
        req.name_any(),
        status.phase.as_str().to_lowercase()
    );
    match &status.decided_by {
        Some(by) => out.push_str(&format!(" by {}", terminal_safe(by))),
        None => out.push_str(" (no decidedBy was stamped: is the dbward-approvals webhook registered?)"),
    }
    if let Some(at) = &status.decided_at {
        out.push_str(&format!(" at {}", terminal_safe(at)));
    }
    out.push('\n');
    if let Some(reason) = &status.reason {
        out.push_str(&format!("  {:<11}{}\n", "reason", terminal_safe(reason)));
    }
    out.push_str(&describe(req));
    out
}

/// The message for a request that does not exist: the names that do, pending ones first.
pub fn not_found(name: &str, namespace: &str, existing: &[ApprovalRequest], now: SystemTime) -> String {
    let mut head = format!("approvalrequest {name:?} not found in namespace {namespace}");
    if existing.is_empty() {
        head.push_str("; there are no ApprovalRequests there");
        return head;
    }
    let mut listed: Vec<(bool, String)> = existing
        .iter()
        .map(|r| {
            let pending = is_pending(r, now);
            let state = if pending {
                "pending".to_owned()
            } else if phase(r) == ApprovalPhase::Pending {
                "expiring".to_owned()
            } else {
                phase(r).as_str().to_lowercase()
            };
            (!pending, format!("{} ({state})", terminal_safe(&r.name_any())))
        })
        .collect();
    listed.sort();
    const SHOWN: usize = 20;
    let names: Vec<&str> = listed.iter().take(SHOWN).map(|(_, n)| n.as_str()).collect();
    head.push_str(&format!("; existing: {}", names.join(", ")));
    if listed.len() > SHOWN {
        head.push_str(&format!(" and {} more", listed.len() - SHOWN));
    }
    head
}
