//! The relay: both directions of one session, with the protocol state and the hook points.
//!
//! A denied statement is answered in the server's own stream, so its place among pipelined results and
//! its effect on the transaction are exactly those of a server error: the sidecar forwards, in place of
//! the statement, a *sentinel* that the server is certain to refuse without side effects (a Bind of, or an
//! EXECUTE of, a prepared statement named `dbward-denied-<session nonce>-<n>` that cannot exist). The
//! server fails the statement, aborts the implicit or explicit transaction as it would for any error, and
//! discards the rest of the extended-protocol batch; the server-to-client half recognizes the sentinel's
//! ErrorResponse by the nonce and replaces it with the policy's error. If an earlier statement in the
//! batch already failed, the server never reaches the sentinel and the client sees that earlier error,
//! again just as without the sidecar.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use super::{
    RelayError,
    hook::{Hooks, ResultHook, RowAction, Statement, StatementHook, Verdict},
    messages::{
        backend::{self, put_cstr, put_message, tag as be},
        error::{self, Report},
        frontend::{self, Target, tag as fe},
    },
    pump::{Action, Handler, Pump, Stop},
    state::ProtocolState,
};

/// Prefix of sentinel statement names.
const SENTINEL_PREFIX: &str = "dbward-denied-";
/// How long the server may take to answer what a client sent before a message the sidecar refused.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Pending denials kept at most (each is one denied statement whose batch has not ended).
const MAX_PENDING_DENIALS: usize = 1024;

/// Settings of the relay.
#[derive(Debug, Clone)]
pub struct RelayLimits {
    /// The largest client message the sidecar holds whole to inspect (Query, Parse, Bind).
    pub max_message: usize,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            max_message: 64 * 1024 * 1024,
        }
    }
}

/// A denial waiting for its sentinel's error.
struct Denial {
    seq: u64,
    /// The ReadyForQuery index that ends the denied statement's batch.
    rfq: u64,
    response: Bytes,
}

/// What the two halves share.
struct Shared {
    nonce: String,
    denials: Mutex<VecDeque<Denial>>,
    pending: AtomicUsize,
    /// Index of the last ReadyForQuery that reported an idle session (transaction ended).
    last_idle_rfq: AtomicU64,
}

impl Shared {
    fn new(nonce: String) -> Self {
        Self {
            nonce,
            denials: Mutex::new(VecDeque::new()),
            pending: AtomicUsize::new(0),
            last_idle_rfq: AtomicU64::new(0),
        }
    }

    fn denials(&self) -> std::sync::MutexGuard<'_, VecDeque<Denial>> {
        // A poisoned lock only means another half panicked mid-update; the queue is still consistent.
        self.denials.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How a relay ended.
#[derive(Debug, PartialEq, Eq)]
pub enum RelayEnd {
    ClientClosed,
    ClientTerminated,
    ServerClosed,
    /// Shutdown was requested (see `relay`'s `shutdown` flag); the client stream is between messages.
    Shutdown,
}

/// Everything about one session the relay needs besides its four stream halves.
pub struct RelaySession {
    /// Client bytes already read during startup.
    pub client_buffered: BytesMut,
    pub limits: RelayLimits,
    pub hooks: Hooks,
    /// Marks this session's sentinel statements (random, never shown to the client).
    pub nonce: String,
    /// Set to stop at the next message boundary toward the client.
    pub shutdown: Arc<AtomicBool>,
}

/// Relays one session until either side ends it.
pub async fn relay<CR, CW, SR, SW>(
    client_rd: &mut CR,
    client_wr: &mut CW,
    server_rd: &mut SR,
    server_wr: &mut SW,
    session: RelaySession,
) -> Result<RelayEnd, RelayError>
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    SR: AsyncRead + Unpin,
    SW: AsyncWrite + Unpin,
{
    let RelaySession {
        client_buffered,
        limits,
        hooks,
        nonce,
        shutdown,
    } = session;
    let shared = Arc::new(Shared::new(nonce));
    let mut up = ClientToServer {
        hook: hooks.statements,
        state: ProtocolState::default(),
        shared: shared.clone(),
        limits,
        discarding: false,
        next_seq: 0,
        seen_idle: 0,
        terminated: false,
    };
    let mut down = ServerToClient {
        hook: hooks.results,
        shared,
        rfq_count: 0,
        drain_until: None,
        rows_wanted: false,
        row_buf: BytesMut::new(),
    };
    let mut up_pump = Pump::with_buffer(&client_buffered);
    // Only the server-to-client pump stops for shutdown: it must not stop inside a message, since the
    // session's closing error follows on the same stream.
    let mut down_pump = Pump::default().stop_on(shutdown);
    let up_result = tokio::select! {
        r = up_pump.run(client_rd, server_wr, &mut up) => r,
        r = down_pump.run(server_rd, client_wr, &mut down) => {
            return match r? {
                Stop::Shutdown => Ok(RelayEnd::Shutdown),
                Stop::Eof | Stop::Done => Ok(RelayEnd::ServerClosed),
            };
        },
    };
    match up_result {
        Ok(Stop::Eof) => Ok(RelayEnd::ClientClosed),
        Ok(Stop::Done) => Ok(RelayEnd::ClientTerminated),
        Ok(Stop::Shutdown) => Ok(RelayEnd::Shutdown),
        Err(e @ (RelayError::Read(_) | RelayError::Write(_))) => Err(e),
        Err(e) => {
            // The client sent something we refuse. Messages before it were forwarded; let the server's
            // answers to them reach the client before the session's error, as from the server itself.
            if down.rfq_count < up.state.sync_points() {
                down.drain_until = Some(up.state.sync_points());
                let drain = down_pump.run(server_rd, client_wr, &mut down);
                let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
            }
            Err(e)
        }
    }
}

/// Client-to-server: tracks statements and portals, shows statements to the hook, applies denials.
struct ClientToServer {
    hook: Option<Box<dyn StatementHook>>,
    state: ProtocolState,
    shared: Arc<Shared>,
    limits: RelayLimits,
    /// After a denial in the extended protocol: drop messages up to the next Sync, as the server would.
    discarding: bool,
    next_seq: u64,
    seen_idle: u64,
    terminated: bool,
}

impl ClientToServer {
    fn catch_up_transactions(&mut self) {
        let idle = self.shared.last_idle_rfq.load(Ordering::Acquire);
        if idle != self.seen_idle {
            self.seen_idle = idle;
            self.state.transaction_ended(idle);
        }
    }

    /// Registers a denial and writes the sentinel that takes the statement's place.
    fn deny(&mut self, code: &str, message: &str, simple: bool, scratch: &mut BytesMut) -> Action {
        self.next_seq += 1;
        let seq = self.next_seq;
        let mut response = BytesMut::new();
        Report::error(code, message).encode(&mut response);
        // The batch is answered by the next ReadyForQuery: for a simple Query the one after this sync
        // point, for the extended protocol the one after the next Sync.
        let rfq = self.state.sync_points() + 1;
        {
            let mut q = self.shared.denials();
            if q.len() >= MAX_PENDING_DENIALS {
                q.pop_front();
            }
            q.push_back(Denial {
                seq,
                rfq,
                response: response.freeze(),
            });
            self.shared.pending.store(q.len(), Ordering::Release);
        }
        let name = format!("{SENTINEL_PREFIX}{}-{seq}", self.shared.nonce);
        if simple {
            put_message(scratch, fe::QUERY, |b| {
                put_cstr(b, &format!("EXECUTE \"{name}\""))
            });
        } else {
            put_message(scratch, fe::BIND, |b| {
                put_cstr(b, "");
                put_cstr(b, &name);
                b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            });
            self.discarding = true;
        }
        debug!(seq, code, "statement denied");
        Action::Replace
    }

    fn verdict_action(&mut self, verdict: Verdict, simple: bool, scratch: &mut BytesMut) -> Option<Action> {
        match verdict {
            Verdict::Allow => None,
            Verdict::Deny { code, message } => Some(self.deny(&code, &message, simple, scratch)),
        }
    }
}

impl Handler for ClientToServer {
    fn inspects(&mut self, tag: u8) -> bool {
        matches!(
            tag,
            fe::QUERY
                | fe::PARSE
                | fe::BIND
                | fe::EXECUTE
                | fe::CLOSE
                | fe::SYNC
                | fe::FUNCTION_CALL
                | fe::TERMINATE
                | fe::FLUSH
                | fe::DESCRIBE
        )
    }

    fn max_inspected(&self) -> usize {
        self.limits.max_message
    }

    fn finished(&self) -> bool {
        self.terminated
    }

    fn frame(&mut self, tag: u8, body: &[u8], scratch: &mut BytesMut) -> Result<Action, RelayError> {
        if self.discarding {
            if tag == fe::SYNC {
                self.discarding = false;
                self.state.sync_point();
                return Ok(Action::Forward);
            }
            if tag == fe::TERMINATE {
                self.terminated = true;
                return Ok(Action::Forward);
            }
            return Ok(Action::Drop);
        }
        match tag {
            fe::QUERY => {
                let sql = frontend::query(body)?;
                let verdict = check(&mut self.hook, &Statement::Simple { sql });
                let action = self.verdict_action(verdict, true, scratch);
                self.state.sync_point();
                Ok(action.unwrap_or(Action::Forward))
            }
            fe::PARSE => {
                let p = frontend::parse(body)?;
                if p.name.starts_with(SENTINEL_PREFIX) {
                    let msg = "statement names starting with \"dbward-denied-\" are reserved by dbward";
                    let v = Verdict::Deny {
                        code: error::sqlstate::INSUFFICIENT_PRIVILEGE.into(),
                        message: msg.into(),
                    };
                    return Ok(self.verdict_action(v, false, scratch).unwrap_or(Action::Forward));
                }
                let verdict = check(
                    &mut self.hook,
                    &Statement::Parse {
                        name: p.name,
                        sql: p.query,
                        param_types: &p.param_types,
                    },
                );
                if let Some(a) = self.verdict_action(verdict, false, scratch) {
                    return Ok(a);
                }
                self.state.parse(p.name, p.query)?;
                Ok(Action::Forward)
            }
            fe::BIND => {
                self.catch_up_transactions();
                let b = frontend::bind(body)?;
                let verdict = check(
                    &mut self.hook,
                    &Statement::Bind {
                        sql: self.state.statement(b.statement),
                        bind: b,
                    },
                );
                if let Some(a) = self.verdict_action(verdict, false, scratch) {
                    return Ok(a);
                }
                self.state.bind(b.portal, b.statement)?;
                Ok(Action::Forward)
            }
            fe::EXECUTE => {
                self.catch_up_transactions();
                let e = frontend::execute(body)?;
                let verdict = check(
                    &mut self.hook,
                    &Statement::Execute {
                        portal: e.portal,
                        sql: self.state.portal(e.portal),
                        max_rows: e.max_rows,
                    },
                );
                Ok(self
                    .verdict_action(verdict, false, scratch)
                    .unwrap_or(Action::Forward))
            }
            fe::CLOSE => {
                match frontend::target(body, "Close")? {
                    (Target::Statement, name) => self.state.close_statement(name),
                    (Target::Portal, name) => self.state.close_portal(name),
                }
                Ok(Action::Forward)
            }
            fe::DESCRIBE => {
                frontend::target(body, "Describe")?;
                Ok(Action::Forward)
            }
            fe::SYNC => {
                self.state.sync_point();
                Ok(Action::Forward)
            }
            fe::FUNCTION_CALL => {
                let oid = frontend::function_call_oid(body)?;
                let verdict = check(&mut self.hook, &Statement::FunctionCall { oid });
                let action = self.verdict_action(verdict, true, scratch);
                self.state.sync_point();
                Ok(action.unwrap_or(Action::Forward))
            }
            fe::TERMINATE => {
                self.terminated = true;
                Ok(Action::Forward)
            }
            _ => Ok(Action::Forward),
        }
    }
}

fn check(hook: &mut Option<Box<dyn StatementHook>>, statement: &Statement<'_>) -> Verdict {
    match hook.as_mut() {
        Some(h) => h.check(statement),
        None => Verdict::Allow,
    }
}

/// Server-to-client: transaction status, sentinel replacement, and the result hook.
struct ServerToClient {
    hook: Option<Box<dyn ResultHook>>,
    shared: Arc<Shared>,
    rfq_count: u64,
    /// When set, stop once this many ReadyForQuery have been forwarded.
    drain_until: Option<u64>,
    rows_wanted: bool,
    row_buf: BytesMut,
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
        Ok(())
    }

    fn end_result(&mut self) {
        if self.rows_wanted {
            self.rows_wanted = false;
        }
        if let Some(h) = self.hook.as_mut() {
            h.result_end();
        }
    }
}

impl Handler for ServerToClient {
    fn inspects(&mut self, tag: u8) -> bool {
        match tag {
            be::READY_FOR_QUERY => true,
            be::ERROR_RESPONSE => true,
            be::DATA_ROW => self.rows_wanted,
            be::ROW_DESCRIPTION | be::COMMAND_COMPLETE | be::PORTAL_SUSPENDED | be::EMPTY_QUERY_RESPONSE => {
                self.hook.is_some()
            }
            _ => false,
        }
    }

    fn finished(&self) -> bool {
        self.drain_until.is_some_and(|n| self.rfq_count >= n)
    }

    fn max_inspected(&self) -> usize {
        // Rows shown to the result hook are held whole; the hook's own limits end a result earlier.
        super::pump::MAX_PROTOCOL_MESSAGE
    }

    fn frame(&mut self, tag: u8, body: &[u8], scratch: &mut BytesMut) -> Result<Action, RelayError> {
        match tag {
            be::READY_FOR_QUERY => {
                self.ready_for_query(body)?;
                Ok(Action::Forward)
            }
            be::ERROR_RESPONSE => {
                self.end_result();
                if self.shared.pending.load(Ordering::Acquire) > 0
                    && let Some(response) = self.denial_for(body)
                {
                    scratch.extend_from_slice(&response);
                    return Ok(Action::Replace);
                }
                Ok(Action::Forward)
            }
            be::ROW_DESCRIPTION => {
                if let Some(h) = self.hook.as_mut() {
                    self.rows_wanted = h.row_description(body);
                }
                Ok(Action::Forward)
            }
            be::DATA_ROW => {
                let Some(h) = self.hook.as_mut() else {
                    return Ok(Action::Forward);
                };
                self.row_buf.clear();
                match h.data_row(body, &mut self.row_buf) {
                    RowAction::Forward => Ok(Action::Forward),
                    RowAction::Replaced => {
                        let rows = &self.row_buf;
                        put_message(scratch, be::DATA_ROW, |b| b.extend_from_slice(rows));
                        Ok(Action::Replace)
                    }
                }
            }
            _ => {
                self.end_result();
                Ok(Action::Forward)
            }
        }
    }
}
