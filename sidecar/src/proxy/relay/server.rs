//! The server-to-client half of the relay: transaction status, sentinel replacement, and the result
//! hook, with each result paired with the statement that produced it.

use std::sync::{Arc, atomic::Ordering};

use bytes::{Bytes, BytesMut};
use tracing::debug;

use super::{Expect, Recorded, SENTINEL_PREFIX, Shared};
use crate::proxy::signals::SessionSignals;
use crate::proxy::{
    RelayError,
    hook::{Context, EndStatus, ResultHook, RowAction, Rows, StatementEnd},
    messages::{
        backend::{self, put_message, tag as be},
        error::{self, Report},
    },
    pump::{Action, Handler},
};

/// Whether the rows of the current result go to the result hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RowState {
    /// No description of the current result yet.
    Unknown,
    Pass,
    Inspect,
}

/// Server-to-client: transaction status, sentinel replacement, and the result hook.
pub(super) struct ServerToClient {
    pub(super) hook: Option<Box<dyn ResultHook>>,
    pub(super) shared: Arc<Shared>,
    pub(super) rfq_count: u64,
    /// When set, stop once this many ReadyForQuery have been forwarded.
    pub(super) drain_until: Option<u64>,
    pub(super) rows: RowState,
    /// The description of the coming Execute's rows (a portal's RowDescription body; empty after
    /// NoData), not yet shown to the hook.
    pub(super) description: Option<BytesMut>,
    /// The current COPY TO STDOUT's data goes to the hook.
    pub(super) copying: bool,
    /// The hook ended the current statement: drop everything up to the next ReadyForQuery.
    pub(super) aborted: bool,
    pub(super) row_buf: BytesMut,
    /// Notices the hooks send the client on their own, written between server messages.
    pub(super) signals: Option<SessionSignals>,
    /// Stream offset of the message being handled, and of its end.
    pub(super) offset: u64,
    pub(super) msg_end: u64,
    /// Where the answer to the last finished statement ended.
    pub(super) mark: u64,
    /// What the current statement's answer said so far.
    pub(super) acc: Acc,
}

/// What a statement's answer said so far: rows and command from its tags, its error.
#[derive(Debug, Default)]
pub(super) struct Acc {
    rows: Option<u64>,
    /// The last tag's command (reused buffer).
    command: String,
    error: Option<(String, String)>,
}

impl Acc {
    /// A CommandComplete's tag: `SELECT 5`, `INSERT 0 5`, `CREATE TABLE`.
    fn tag(&mut self, body: &[u8]) {
        let tag = body.strip_suffix(&[0]).unwrap_or(body);
        let Ok(tag) = std::str::from_utf8(tag) else { return };
        let mut command = tag;
        let mut count = None;
        while let Some((head, last)) = command.rsplit_once(' ') {
            if last.is_empty() || !last.bytes().all(|b| b.is_ascii_digit()) {
                break;
            }
            count.get_or_insert(last.parse::<u64>().ok());
            command = head;
        }
        if let Some(Some(n)) = count {
            self.rows = Some(self.rows.unwrap_or(0).saturating_add(n));
        }
        self.command.clear();
        self.command.push_str(command);
    }

    fn error(&mut self, body: &[u8]) {
        if let Ok(r) = error::parse_report(body) {
            self.error = Some((r.code.to_owned(), r.message.to_owned()));
        }
    }

    fn clear(&mut self) {
        self.rows = None;
        self.command.clear();
        self.error = None;
    }
}

impl ServerToClient {
    /// If this ErrorResponse is a sentinel's, the policy's error that replaces it.
    fn denial_for(&self, body: &[u8]) -> Option<Bytes> {
        let report = error::parse_report(body).ok()?;
        let marker = format!("{SENTINEL_PREFIX}{}-", self.shared.nonce);
        let at = report.message.find(&marker)?;
        let digits: String = report.message[at + marker.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let seq: u64 = digits.parse().ok()?;
        let mut q = self.shared.denials();
        let mut found = None;
        while let Some(d) = q.front() {
            if d.seq > seq {
                break;
            }
            let d = q.pop_front().expect("front exists");
            if d.seq == seq {
                found = Some(d.response);
            }
        }
        self.shared.pending.store(q.len(), Ordering::Release);
        found
    }

    fn ready_for_query(&mut self, body: &[u8]) -> Result<(), RelayError> {
        let status = backend::ready_status(body).map_err(RelayError::UpstreamMalformed)?;
        self.rfq_count += 1;
        if status == backend::txn::IDLE {
            self.shared.last_idle_rfq.store(self.rfq_count, Ordering::Release);
        }
        if self.shared.pending.load(Ordering::Acquire) > 0 {
            // Denials whose batch ended without reaching their sentinel are obsolete.
            let mut q = self.shared.denials();
            while q.front().is_some_and(|d| d.rfq <= self.rfq_count) {
                q.pop_front();
            }
            self.shared.pending.store(q.len(), Ordering::Release);
        }
        if self.hook.is_some() {
            // The batch is over: everything it listed has been answered (or skipped after an error).
            let mut q = self.shared.expected();
            let mut query = None;
            let mut executes = Vec::new();
            while let Some(e) = q.pop_front() {
                match e {
                    Expect::Sync => break,
                    Expect::Query(_, rec) => {
                        query = Some(rec);
                        break;
                    }
                    // Ended by the sidecar (a limit): the first failed, the rest never ran.
                    Expect::Execute(_, Some(rec)) => executes.push(rec),
                    _ => {}
                }
            }
            drop(q);
            self.finish_failed(&executes);
            if let Some(rec) = query {
                let status = if self.acc.error.is_some() {
                    EndStatus::Error
                } else {
                    EndStatus::Ok
                };
                self.finish(rec, status);
            }
            self.acc.clear();
            self.mark = self.msg_end;
            self.end_result();
            self.description = None;
            self.aborted = false;
            if let Some(h) = self.hook.as_mut() {
                h.before_ready().map_err(RelayError::Journal)?;
            }
        }
        Ok(())
    }

    /// Reports a recorded statement's end to the hook.
    fn finish(&mut self, rec: Option<Recorded>, status: EndStatus) {
        let Some(rec) = rec else {
            self.acc.clear();
            self.mark = self.msg_end;
            return;
        };
        let bytes = if status == EndStatus::Skipped {
            0
        } else {
            let b = self.msg_end.saturating_sub(self.mark);
            self.mark = self.msg_end;
            b
        };
        if let Some(h) = self.hook.as_mut() {
            let acc = &self.acc;
            let skipped = status == EndStatus::Skipped;
            h.statement_end(&StatementEnd {
                seq: rec.seq,
                status,
                elapsed: rec.at.elapsed(),
                rows: if skipped { None } else { acc.rows },
                command: (!skipped && !acc.command.is_empty()).then_some(acc.command.as_str()),
                bytes,
                error: if skipped {
                    None
                } else {
                    acc.error.as_ref().map(|(c, m)| (c.as_str(), m.as_str()))
                },
            });
        }
        if status != EndStatus::Skipped {
            self.acc.clear();
        }
    }

    /// Executes ended by an error: the first failed with it, the rest never ran.
    fn finish_failed(&mut self, executes: &[Recorded]) {
        for (i, rec) in executes.iter().enumerate() {
            let status = if i == 0 {
                EndStatus::Error
            } else {
                EndStatus::Skipped
            };
            self.finish(Some(*rec), status);
        }
    }

    fn end_result(&mut self) {
        self.rows = RowState::Unknown;
        self.copying = false;
        if let Some(h) = self.hook.as_mut() {
            h.result_end();
        }
    }

    /// An Execute's result ended: it is no longer awaited.
    fn end_execute(&mut self, status: EndStatus) {
        let mut q = self.shared.expected();
        let rec = if matches!(q.front(), Some(Expect::Execute(..))) {
            match q.pop_front() {
                Some(Expect::Execute(_, rec)) => Some(rec),
                _ => None,
            }
        } else {
            None
        };
        drop(q);
        if let Some(rec) = rec {
            self.finish(rec, status);
        }
        self.description = None;
        self.end_result();
    }

    /// The context of the statement at the head of the awaited results (Query or Execute).
    fn front_context(&self) -> Option<Context> {
        match self.shared.expected().front() {
            Some(Expect::Query(c, _) | Expect::Execute(c, _)) => c.clone(),
            _ => None,
        }
    }

    /// Ends the current statement with an error of the hook's: the client gets it now, and the rest up
    /// to ReadyForQuery is read and dropped. The server is not asked to cancel: a CancelRequest cannot
    /// say which statement it means, and one arriving late would cancel the client's next statement.
    fn abort(&mut self, code: &str, message: &str, scratch: &mut BytesMut) -> Action {
        Report::error(code, message).encode(scratch);
        self.acc.error = Some((code.to_owned(), message.to_owned()));
        self.aborted = true;
        self.rows = RowState::Unknown;
        self.copying = false;
        debug!(code, "result ended by the sidecar");
        Action::Replace
    }

    /// Applies the hook's answer to a description.
    fn described(&mut self, rows: Rows, copy: bool, scratch: &mut BytesMut) -> Option<Action> {
        match rows {
            Rows::Pass => {
                self.rows = RowState::Pass;
                None
            }
            Rows::Inspect => {
                if copy {
                    self.copying = true;
                    self.rows = RowState::Pass;
                } else {
                    self.rows = RowState::Inspect;
                }
                None
            }
            Rows::Abort { code, message } => Some(self.abort(&code, &message, scratch)),
            Rows::Wait(w) => Some(Action::Wait(w)),
        }
    }

    fn row_description(&mut self, body: &[u8], scratch: &mut BytesMut) -> Action {
        let front = {
            let q = self.shared.expected();
            match q.front() {
                Some(Expect::Describe { portal }) => Some(Some(*portal)),
                Some(Expect::Injected) => Some(None),
                _ => None,
            }
        };
        match front {
            // The client's own Describe: forwarded; a portal's also describes the Execute after it.
            Some(Some(portal)) => {
                self.shared.expected().pop_front();
                self.description = portal.then(|| BytesMut::from(body));
                Action::Forward
            }
            // Ours: keep it for the Execute, do not forward.
            Some(None) => {
                self.shared.expected().pop_front();
                self.description = Some(BytesMut::from(body));
                Action::Drop
            }
            // A simple Query's result (or one nobody listed: no context, the hook fails closed).
            None => {
                let context = self.front_context();
                let Some(h) = self.hook.as_mut() else {
                    return Action::Forward;
                };
                let rows = h.row_description(body, context.as_ref());
                self.described(rows, false, scratch).unwrap_or(Action::Forward)
            }
        }
    }

    fn no_data(&mut self) -> Action {
        let mut q = self.shared.expected();
        match q.front() {
            Some(Expect::Describe { .. }) => {
                q.pop_front();
                drop(q);
                self.description = Some(BytesMut::new());
                Action::Forward
            }
            Some(Expect::Injected) => {
                q.pop_front();
                drop(q);
                self.description = Some(BytesMut::new());
                Action::Drop
            }
            _ => Action::Forward,
        }
    }

    fn data_row(&mut self, body: &[u8], scratch: &mut BytesMut) -> Action {
        if self.rows == RowState::Unknown {
            // An Execute's first row: its description came from a Describe of the portal.
            let context = self.front_context();
            let Some(h) = self.hook.as_mut() else {
                return Action::Forward;
            };
            let rows = match &self.description {
                Some(d) => h.row_description(d, context.as_ref()),
                // The statement came without a context: its results were not asked for.
                None if context.is_none() => Rows::Pass,
                None => Rows::Abort {
                    code: error::sqlstate::INTERNAL_ERROR.into(),
                    message: "dbward: a result arrived without a description; it cannot be checked".into(),
                },
            };
            if let Some(a) = self.described(rows, false, scratch) {
                return a;
            }
        }
        if self.rows != RowState::Inspect {
            return Action::Forward;
        }
        let Some(h) = self.hook.as_mut() else {
            return Action::Forward;
        };
        self.row_buf.clear();
        match h.data_row(body, &mut self.row_buf) {
            RowAction::Forward => Action::Forward,
            RowAction::Replaced => {
                let row = &self.row_buf;
                put_message(scratch, be::DATA_ROW, |b| b.extend_from_slice(row));
                Action::Replace
            }
            RowAction::Abort { code, message } => self.abort(&code, &message, scratch),
        }
    }

    fn copy_out(&mut self, body: &[u8], scratch: &mut BytesMut) -> Action {
        let context = self.front_context();
        let Some(h) = self.hook.as_mut() else {
            return Action::Forward;
        };
        let rows = h.copy_out(body, context.as_ref());
        self.described(rows, true, scratch).unwrap_or(Action::Forward)
    }

    fn copy_data(&mut self, tag: u8, body: &[u8], scratch: &mut BytesMut) -> Action {
        let Some(h) = self.hook.as_mut() else {
            return Action::Forward;
        };
        self.row_buf.clear();
        let done = tag == be::COPY_DONE;
        let action = if done {
            h.copy_done(&mut self.row_buf)
        } else {
            h.copy_data(body, &mut self.row_buf)
        };
        match action {
            RowAction::Forward => Action::Forward,
            RowAction::Replaced => {
                if !self.row_buf.is_empty() {
                    let data = &self.row_buf;
                    put_message(scratch, be::COPY_DATA, |b| b.extend_from_slice(data));
                }
                if done {
                    put_message(scratch, be::COPY_DONE, |_| {});
                }
                Action::Replace
            }
            RowAction::Abort { code, message } => self.abort(&code, &message, scratch),
        }
    }

    fn message(&mut self, tag: u8, body: &[u8], scratch: &mut BytesMut) -> Action {
        match self.hook.as_mut() {
            Some(h) if h.wants_messages() => {
                if h.message(tag, body, scratch) {
                    Action::Replace
                } else {
                    Action::Forward
                }
            }
            _ => Action::Forward,
        }
    }
}

impl Handler for ServerToClient {
    fn idle(&mut self, scratch: &mut BytesMut) {
        if let Some(s) = &self.signals {
            s.take_notices(scratch);
        }
    }

    fn position(&mut self, offset: u64) {
        self.offset = offset;
    }

    fn inspects(&mut self, tag: u8) -> bool {
        if self.aborted {
            return true;
        }
        match tag {
            be::READY_FOR_QUERY | be::ERROR_RESPONSE => true,
            be::DATA_ROW => self.hook.is_some() && self.rows != RowState::Pass,
            be::COPY_DATA | be::COPY_DONE => self.copying,
            be::ROW_DESCRIPTION
            | be::NO_DATA
            | be::COMMAND_COMPLETE
            | be::PORTAL_SUSPENDED
            | be::EMPTY_QUERY_RESPONSE
            | be::COPY_OUT_RESPONSE => self.hook.is_some(),
            be::NOTICE_RESPONSE | be::NOTIFICATION_RESPONSE => {
                self.hook.as_ref().is_some_and(|h| h.wants_messages())
            }
            _ => false,
        }
    }

    fn finished(&self) -> bool {
        self.drain_until.is_some_and(|n| self.rfq_count >= n)
    }

    fn max_inspected(&self) -> usize {
        // Rows shown to the result hook are held whole; the hook's own limits end a result earlier.
        crate::proxy::pump::MAX_PROTOCOL_MESSAGE
    }

    fn frame(&mut self, tag: u8, body: &[u8], scratch: &mut BytesMut) -> Result<Action, RelayError> {
        self.msg_end = self.offset + 5 + body.len() as u64;
        if self.aborted && tag != be::READY_FOR_QUERY {
            return Ok(Action::Drop);
        }
        Ok(match tag {
            be::READY_FOR_QUERY => {
                self.ready_for_query(body)?;
                Action::Forward
            }
            be::ERROR_RESPONSE => {
                let denial = if self.shared.pending.load(Ordering::Acquire) > 0 {
                    self.denial_for(body)
                } else {
                    None
                };
                let action = match denial {
                    Some(response) => {
                        scratch.extend_from_slice(&response);
                        Action::Replace
                    }
                    None => self.message(tag, body, scratch),
                };
                if self.hook.is_some() {
                    // What the client gets is what the journal records.
                    let sent = match action {
                        Action::Replace if scratch.len() > 5 => &scratch[5..],
                        _ => body,
                    };
                    self.acc.error(sent);
                    let mut q = self.shared.expected();
                    let mut executes = Vec::new();
                    if !matches!(q.front(), Some(Expect::Query(..))) {
                        // The extended protocol skips to Sync after an error.
                        while q.front().is_some_and(|e| !matches!(e, Expect::Sync)) {
                            if let Some(Expect::Execute(_, Some(rec))) = q.pop_front() {
                                executes.push(rec);
                            }
                        }
                    }
                    drop(q);
                    self.finish_failed(&executes);
                    self.description = None;
                }
                self.end_result();
                action
            }
            be::ROW_DESCRIPTION => self.row_description(body, scratch),
            be::NO_DATA => self.no_data(),
            be::DATA_ROW => self.data_row(body, scratch),
            be::COPY_OUT_RESPONSE => self.copy_out(body, scratch),
            be::COPY_DATA | be::COPY_DONE => self.copy_data(tag, body, scratch),
            be::COMMAND_COMPLETE => {
                self.acc.tag(body);
                self.end_execute(EndStatus::Ok);
                Action::Forward
            }
            be::PORTAL_SUSPENDED => {
                self.end_execute(EndStatus::Suspended);
                Action::Forward
            }
            be::EMPTY_QUERY_RESPONSE => {
                self.end_execute(EndStatus::Ok);
                Action::Forward
            }
            be::NOTICE_RESPONSE | be::NOTIFICATION_RESPONSE => self.message(tag, body, scratch),
            _ => Action::Forward,
        })
    }
}
