//! What the guard writes to the session journal (see [`crate::journal`]): a `statement` event for
//! every statement it lets through or refuses, with the decision and the rule that made it, and a
//! `result` event when the statement's result ends. The session's buffer is written out before the
//! client sees the ReadyForQuery that ends the exchange.
//!
//! When the journal cannot be written, statements are refused (SQLSTATE 58030) until it can: nothing
//! runs unrecorded.

use std::{sync::Arc, time::SystemTime};

use tracing::warn;

use super::{decisions::Note, statements::GuardStatements};
use crate::{
    journal::{
        SessionLog,
        event::{self, ApprovalNote, ErrorNote, Time},
    },
    policy::{Decision, Verdict as PolicyVerdict},
    proxy::hook::{Statement, StatementEnd, Verdict},
};

/// SQLSTATE io_error: the journal cannot be written.
pub(super) const JOURNAL_DOWN: &str = crate::proxy::messages::error::sqlstate::IO_ERROR;

/// How a held statement's approval ended, for its `statement` event.
#[derive(Debug, Clone)]
pub(super) struct ApprovalOutcome {
    pub request: String,
    /// `approved`, `denied`, `expired`, `cancelled`, `asked`, `granted`, `failed`.
    pub outcome: &'static str,
    pub decided_by: Option<String>,
}

/// What the journal records of the statement being judged besides its verdict.
#[derive(Debug, Default)]
pub(super) struct Judged {
    /// A requireApproval rule held it.
    pub held: bool,
    pub note: Note,
    pub approval: Option<ApprovalOutcome>,
}

/// Folds one statement's decision into the note of the text it belongs to: the rule that refused or
/// held it (else the first that allowed), and the first thing audit-only policies would have done
/// differently.
pub(super) fn note_decision(note: &mut Note, decision: &Decision) {
    let path = || decision.rule.as_ref().map(|r| Arc::<str>::from(r.path()));
    if decision.effective() != PolicyVerdict::Allow || note.rule.is_none() {
        note.rule = path();
    }
    if note.audit.is_some() {
        return;
    }
    let describe = |d: &Decision| {
        let by = d
            .rule
            .as_ref()
            .map_or_else(|| "no matching rule".to_owned(), |r| r.path());
        Arc::<str>::from(format!("{} by {by}", d.verdict))
    };
    if !decision.enforced && decision.verdict != PolicyVerdict::Allow {
        note.audit = Some(describe(decision));
    } else if let Some(audit) = &decision.audit
        && audit.verdict != decision.verdict
    {
        note.audit = Some(describe(audit));
    }
}

impl GuardStatements {
    /// A refusal while the journal cannot be written.
    pub(super) fn journal_down(&self) -> Option<Verdict> {
        let log = self.log.as_ref()?;
        if log.journal().healthy() {
            return None;
        }
        let why = log.journal().failure().unwrap_or_default();
        Some(Verdict::Deny {
            code: JOURNAL_DOWN.to_owned(),
            message: format!(
                "dbward: the session journal cannot be written, so statements are refused until it can: {why}"
            ),
        })
    }

    /// Records a statement the guard let through or refused (a held one once its wait is over), and
    /// counts it.
    pub(super) fn record(&mut self, statement: &Statement<'_>, verdict: &Verdict) {
        self.recorded = None;
        let refusal = match verdict {
            Verdict::Wait(_) => return,
            Verdict::Deny { code, message } => Some(ErrorNote { code, message }),
            Verdict::Allow | Verdict::AllowWith(_) => None,
        };
        let function;
        let (protocol, text, params) = match statement {
            Statement::Simple { sql } => ("simple", *sql, None),
            Statement::Execute { sql, portal, .. } => (
                "extended",
                sql.unwrap_or(""),
                if portal.is_empty() {
                    self.unnamed_params
                } else {
                    None
                },
            ),
            Statement::FunctionCall { oid } => {
                function = format!("<fast-path call of function {oid}>");
                ("functionCall", function.as_str(), None)
            }
            // Parse and Bind are recorded only when refused; otherwise their Execute is.
            Statement::Parse { sql, .. } if refusal.is_some() => ("extended", *sql, None),
            Statement::Bind { sql, bind } if refusal.is_some() => {
                ("extended", sql.unwrap_or(""), Some(bind.param_count()))
            }
            Statement::Parse { .. } | Statement::Bind { .. } => return,
        };
        let metrics = crate::admin::metrics();
        let decision = if self.judged.held {
            metrics.held.inc();
            "requireApproval"
        } else if refusal.is_some() {
            metrics.denied.inc();
            "deny"
        } else {
            metrics.allowed.inc();
            "allow"
        };
        let Some(log) = self.log.as_deref() else { return };
        let seq = log.next_seq();
        let (text, text_bytes) = event::cut_text(text);
        let judged = &self.judged;
        let written = log.record(|buf| {
            event::statement(
                buf,
                &event::Statement {
                    time: Time(SystemTime::now()),
                    event: "statement",
                    session: log.id(),
                    seq,
                    protocol,
                    text,
                    text_bytes,
                    params,
                    decision,
                    rule: judged.note.rule.as_deref(),
                    audit: judged.note.audit.as_deref(),
                    error: refusal,
                    approval: judged.approval.as_ref().map(|a| ApprovalNote {
                        request: &a.request,
                        outcome: a.outcome,
                        decided_by: a.decided_by.as_deref(),
                    }),
                },
            );
        });
        if let Err(e) = written {
            warn!(session = log.id(), error = %e, "could not write the session journal");
        }
        if refusal.is_none() {
            self.recorded = Some(seq);
        }
    }
}

/// Records a statement's result (the result half).
pub(super) fn result(log: &SessionLog, end: &StatementEnd<'_>) {
    let written = log.record(|buf| {
        event::result(
            buf,
            &event::ResultEvent {
                time: Time(SystemTime::now()),
                event: "result",
                session: log.id(),
                seq: end.seq,
                status: end.status.as_str(),
                duration_us: u64::try_from(end.elapsed.as_micros()).unwrap_or(u64::MAX),
                rows: end.rows,
                command: end.command,
                bytes: end.bytes,
                error: end.error.map(|(code, message)| ErrorNote { code, message }),
            },
        );
    });
    if let Err(e) = written {
        warn!(session = log.id(), error = %e, "could not write the session journal");
    }
}

/// Writes the session's buffer out before a ReadyForQuery reaches the client.
pub(super) fn before_ready(log: &SessionLog) -> Result<(), String> {
    log.flush().map_err(|e| e.to_string())
}
