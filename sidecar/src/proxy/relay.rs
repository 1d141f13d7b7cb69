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
    hook::{Context, Hooks, ResultHook, RowAction, Rows, Statement, StatementHook, Verdict},
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
/// Results awaited at most (statements and describes sent but not yet answered). A client that
/// pipelines more without reading is refused.
const MAX_EXPECTED: usize = 1 << 20;

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

/// What the server will answer to a client message, in order, when a result hook must pair results with
/// the statements that produced them. Parse, Bind and Close are answered by completions nobody needs
/// to pair, so they are not listed.
enum Expect {
    /// A simple Query or FunctionCall: everything up to its ReadyForQuery.
    Query(Option<Context>),
    /// The client's Describe: its RowDescription or NoData goes to the client; a portal's description
    /// also describes the results of the Execute that follows it.
    Describe { portal: bool },
    /// A Describe of a portal the relay sent before an Execute: its answer is the Execute's
    /// description and is not forwarded.
    Injected,
    /// An Execute: its rows up to CommandComplete, PortalSuspended, EmptyQueryResponse or an error.
    Execute(Option<Context>),
    /// A Sync: the batch's ReadyForQuery.
    Sync,
}

/// What the two halves share.
struct Shared {
    nonce: String,
    denials: Mutex<VecDeque<Denial>>,
    expected: Mutex<VecDeque<Expect>>,
    pending: AtomicUsize,
    /// Index of the last ReadyForQuery that reported an idle session (transaction ended).
    last_idle_rfq: AtomicU64,
}

impl Shared {
    fn new(nonce: String) -> Self {
        Self {
            nonce,
            denials: Mutex::new(VecDeque::new()),
            expected: Mutex::new(VecDeque::new()),
            pending: AtomicUsize::new(0),
            last_idle_rfq: AtomicU64::new(0),
        }
    }

    fn denials(&self) -> std::sync::MutexGuard<'_, VecDeque<Denial>> {
        // A poisoned lock only means another half panicked mid-update; the queue is still consistent.
        self.denials.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn expected(&self) -> std::sync::MutexGuard<'_, VecDeque<Expect>> {
        self.expected.lock().unwrap_or_else(|e| e.into_inner())
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
    let track = hooks.results.is_some();
    let mut up = ClientToServer {
        hook: hooks.statements,
        state: ProtocolState::default(),
        shared: shared.clone(),
        limits,
        discarding: false,
        next_seq: 0,
        seen_idle: 0,
        terminated: false,
        track,
        describe_portals: track && hooks.describe_portals,
        described: None,
    };
    let mut down = ServerToClient {
        hook: hooks.results,
        shared,
        rfq_count: 0,
        drain_until: None,
        rows: RowState::Unknown,
        description: None,
        context: None,
        copying: false,
        aborted: false,
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
    /// A result hook pairs results with statements: list what the server will answer.
    track: bool,
    /// Describe each portal before its Execute unless the client just did.
    describe_portals: bool,
    /// The portal the client described with its previous message, if that was a Describe of a portal.
    described: Option<String>,
}

/// A statement's verdict, as the relay acts on it.
enum Checked {
    Forward(Option<Context>),
    Denied { code: String, message: String },
    Wait(super::pump::Wait),
}

impl From<Verdict> for Checked {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Allow => Checked::Forward(None),
            Verdict::AllowWith(c) => Checked::Forward(Some(c)),
            Verdict::Deny { code, message } => Checked::Denied { code, message },
            Verdict::Wait(w) => Checked::Wait(w),
        }
    }
}

impl ClientToServer {
    fn catch_up_transactions(&mut self) {
        let idle = self.shared.last_idle_rfq.load(Ordering::Acquire);
        if idle != self.seen_idle {
            self.seen_idle = idle;
            self.state.transaction_ended(idle);
        }
    }

    /// Lists what the server will answer, when a result hook needs results paired with statements.
    fn expect(&mut self, e: Expect) -> Result<(), RelayError> {
        if !self.track {
            return Ok(());
        }
        let mut q = self.shared.expected();
        if q.len() >= MAX_EXPECTED {
            return Err(RelayError::State(super::state::StateError::TooManyPending(
                MAX_EXPECTED,
            )));
        }
        q.push_back(e);
        Ok(())
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

    /// A simple Query or FunctionCall: one sync point, answered up to its ReadyForQuery.
    fn simple(&mut self, statement: &Statement<'_>, scratch: &mut BytesMut) -> Result<Action, RelayError> {
        let action = match check(&mut self.hook, statement) {
            Checked::Wait(w) => return Ok(Action::Wait(w)),
            Checked::Forward(context) => {
                self.expect(Expect::Query(context))?;
                Action::Forward
            }
            Checked::Denied { code, message } => {
                self.expect(Expect::Query(None))?;
                self.deny(&code, &message, true, scratch)
            }
        };
        self.state.sync_point();
        Ok(action)
    }
}

fn check(hook: &mut Option<Box<dyn StatementHook>>, statement: &Statement<'_>) -> Checked {
    match hook.as_mut() {
        Some(h) => h.check(statement).into(),
        None => Checked::Forward(None),
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
                self.expect(Expect::Sync)?;
                return Ok(Action::Forward);
            }
            if tag == fe::TERMINATE {
                self.terminated = true;
                return Ok(Action::Forward);
            }
            return Ok(Action::Drop);
        }
        // Whether the client described a portal with the message just before this one.
        let described = if tag == fe::EXECUTE {
            self.described.take()
        } else {
            self.described = None;
            None
        };
        match tag {
            fe::QUERY => {
                let sql = frontend::query(body)?;
                self.simple(&Statement::Simple { sql }, scratch)
            }
            fe::PARSE => {
                let p = frontend::parse(body)?;
                if p.name.starts_with(SENTINEL_PREFIX) {
                    let msg = "statement names starting with \"dbward-denied-\" are reserved by dbward";
                    return Ok(self.deny(error::sqlstate::INSUFFICIENT_PRIVILEGE, msg, false, scratch));
                }
                let statement = Statement::Parse {
                    name: p.name,
                    sql: p.query,
                    param_types: &p.param_types,
                };
                match check(&mut self.hook, &statement) {
                    Checked::Wait(w) => Ok(Action::Wait(w)),
                    Checked::Denied { code, message } => Ok(self.deny(&code, &message, false, scratch)),
                    Checked::Forward(_) => {
                        self.state.parse(p.name, p.query)?;
                        Ok(Action::Forward)
                    }
                }
            }
            fe::BIND => {
                self.catch_up_transactions();
                let b = frontend::bind(body)?;
                let statement = Statement::Bind {
                    sql: self.state.statement(b.statement),
                    bind: b,
                };
                match check(&mut self.hook, &statement) {
                    Checked::Wait(w) => Ok(Action::Wait(w)),
                    Checked::Denied { code, message } => Ok(self.deny(&code, &message, false, scratch)),
                    Checked::Forward(_) => {
                        self.state.bind(b.portal, b.statement)?;
                        Ok(Action::Forward)
                    }
                }
            }
            fe::EXECUTE => {
                self.catch_up_transactions();
                let e = frontend::execute(body)?;
                let statement = Statement::Execute {
                    portal: e.portal,
                    sql: self.state.portal(e.portal),
                    max_rows: e.max_rows,
                };
                match check(&mut self.hook, &statement) {
                    Checked::Wait(w) => {
                        self.described = described;
                        Ok(Action::Wait(w))
                    }
                    Checked::Denied { code, message } => Ok(self.deny(&code, &message, false, scratch)),
                    Checked::Forward(context) => {
                        // A result the hook must see needs its description: have the server repeat it
                        // unless the client just asked for it.
                        let wanted = self.describe_portals || (self.track && context.is_some());
                        if wanted && described.as_deref() != Some(e.portal) {
                            // The result hook needs this result's description: ask for it first.
                            self.expect(Expect::Injected)?;
                            self.expect(Expect::Execute(context))?;
                            put_message(scratch, fe::DESCRIBE, |b| {
                                b.extend_from_slice(b"P");
                                put_cstr(b, e.portal);
                            });
                            put_message(scratch, fe::EXECUTE, |b| b.extend_from_slice(body));
                            return Ok(Action::Replace);
                        }
                        self.expect(Expect::Execute(context))?;
                        Ok(Action::Forward)
                    }
                }
            }
            fe::CLOSE => {
                match frontend::target(body, "Close")? {
                    (Target::Statement, name) => self.state.close_statement(name),
                    (Target::Portal, name) => self.state.close_portal(name),
                }
                Ok(Action::Forward)
            }
            fe::DESCRIBE => {
                let (target, name) = frontend::target(body, "Describe")?;
                let portal = target == Target::Portal;
                self.expect(Expect::Describe { portal })?;
                if portal && self.track {
                    self.described = Some(name.to_owned());
                }
                Ok(Action::Forward)
            }
            fe::SYNC => {
                self.state.sync_point();
                self.expect(Expect::Sync)?;
                Ok(Action::Forward)
            }
            fe::FUNCTION_CALL => {
                let oid = frontend::function_call_oid(body)?;
                self.simple(&Statement::FunctionCall { oid }, scratch)
            }
            fe::TERMINATE => {
                self.terminated = true;
                Ok(Action::Forward)
            }
            _ => Ok(Action::Forward),
        }
    }
}

/// Whether the rows of the current result go to the result hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowState {
    /// No description of the current result yet.
    Unknown,
    Pass,
    Inspect,
}

/// Server-to-client: transaction status, sentinel replacement, and the result hook.
struct ServerToClient {
    hook: Option<Box<dyn ResultHook>>,
    shared: Arc<Shared>,
    rfq_count: u64,
    /// When set, stop once this many ReadyForQuery have been forwarded.
    drain_until: Option<u64>,
    rows: RowState,
    /// The description of the coming Execute's rows (a portal's RowDescription body; empty after
    /// NoData), not yet shown to the hook.
    description: Option<BytesMut>,
    /// The context of the statement whose results are arriving.
    context: Option<Context>,
    /// The current COPY TO STDOUT's data goes to the hook.
    copying: bool,
    /// The hook ended the current statement: drop everything up to the next ReadyForQuery.
    aborted: bool,
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
        if self.hook.is_some() {
            // The batch is over: everything it listed has been answered (or skipped after an error).
            let mut q = self.shared.expected();
            while let Some(e) = q.pop_front() {
                if matches!(e, Expect::Sync | Expect::Query(_)) {
                    break;
                }
            }
            drop(q);
            self.end_result();
            self.description = None;
            self.aborted = false;
        }
        Ok(())
    }

    fn end_result(&mut self) {
        self.rows = RowState::Unknown;
        self.copying = false;
        self.context = None;
        if let Some(h) = self.hook.as_mut() {
            h.result_end();
        }
    }

    /// An Execute's result ended: it is no longer awaited.
    fn end_execute(&mut self) {
        let mut q = self.shared.expected();
        if matches!(q.front(), Some(Expect::Execute(_))) {
            q.pop_front();
        }
        drop(q);
        self.description = None;
        self.end_result();
    }

    /// The context of the statement at the head of the awaited results (Query or Execute).
    fn front_context(&self) -> Option<Context> {
        match self.shared.expected().front() {
            Some(Expect::Query(c) | Expect::Execute(c)) => c.clone(),
            _ => None,
        }
    }

    /// Ends the current statement with an error of the hook's: the client gets it now, and the rest up
    /// to ReadyForQuery is read and dropped. The server is not asked to cancel: a CancelRequest cannot
    /// say which statement it means, and one arriving late would cancel the client's next statement.
    fn abort(&mut self, code: &str, message: &str, scratch: &mut BytesMut) -> Action {
        Report::error(code, message).encode(scratch);
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
                self.context = context;
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
            self.context = context;
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
        self.context = context;
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
        super::pump::MAX_PROTOCOL_MESSAGE
    }

    fn frame(&mut self, tag: u8, body: &[u8], scratch: &mut BytesMut) -> Result<Action, RelayError> {
        if self.aborted && tag != be::READY_FOR_QUERY {
            return Ok(Action::Drop);
        }
        Ok(match tag {
            be::READY_FOR_QUERY => {
                self.ready_for_query(body)?;
                Action::Forward
            }
            be::ERROR_RESPONSE => {
                if self.hook.is_some() {
                    let mut q = self.shared.expected();
                    if !matches!(q.front(), Some(Expect::Query(_))) {
                        // The extended protocol skips to Sync after an error.
                        while q.front().is_some_and(|e| !matches!(e, Expect::Sync)) {
                            q.pop_front();
                        }
                    }
                    drop(q);
                    self.description = None;
                }
                self.end_result();
                if self.shared.pending.load(Ordering::Acquire) > 0
                    && let Some(response) = self.denial_for(body)
                {
                    scratch.extend_from_slice(&response);
                    return Ok(Action::Replace);
                }
                self.message(tag, body, scratch)
            }
            be::ROW_DESCRIPTION => self.row_description(body, scratch),
            be::NO_DATA => self.no_data(),
            be::DATA_ROW => self.data_row(body, scratch),
            be::COPY_OUT_RESPONSE => self.copy_out(body, scratch),
            be::COPY_DATA | be::COPY_DONE => self.copy_data(tag, body, scratch),
            be::COMMAND_COMPLETE | be::PORTAL_SUSPENDED | be::EMPTY_QUERY_RESPONSE => {
                self.end_execute();
                Action::Forward
            }
            be::NOTICE_RESPONSE | be::NOTIFICATION_RESPONSE => self.message(tag, body, scratch),
            _ => Action::Forward,
        })
    }
}
