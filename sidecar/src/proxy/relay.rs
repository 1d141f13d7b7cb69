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

mod server;

use self::server::{RowState, ServerToClient};
use super::{
    RelayError,
    hook::{Context, Hooks, Statement, StatementHook, Verdict},
    messages::{
        backend::{put_cstr, put_message},
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
    Query(Option<Context>, Option<Recorded>),
    /// The client's Describe: its RowDescription or NoData goes to the client; a portal's description
    /// also describes the results of the Execute that follows it.
    Describe { portal: bool },
    /// A Describe of a portal the relay sent before an Execute: its answer is the Execute's
    /// description and is not forwarded.
    Injected,
    /// An Execute: its rows up to CommandComplete, PortalSuspended, EmptyQueryResponse or an error.
    Execute(Option<Context>, Option<Recorded>),
    /// A Sync: the batch's ReadyForQuery.
    Sync,
}

/// A statement the statement hook recorded, on its way: its number and when it was forwarded.
#[derive(Debug, Clone, Copy)]
struct Recorded {
    seq: u64,
    at: std::time::Instant,
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
    /// Notices from the hooks to write toward the client.
    pub signals: Option<super::signals::SessionSignals>,
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
        signals,
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
        copying: false,
        aborted: false,
        row_buf: BytesMut::new(),
        signals: signals.clone(),
        offset: 0,
        msg_end: 0,
        mark: 0,
        acc: server::Acc::default(),
    };
    let mut up_pump = Pump::with_buffer(&client_buffered);
    // Only the server-to-client pump stops for shutdown: it must not stop inside a message, since the
    // session's closing error follows on the same stream.
    let mut down_pump = Pump::default().stop_on(shutdown);
    if let Some(s) = &signals {
        down_pump = down_pump.wake_on(s.wake());
    }
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

    /// The statement just let through, if the hook recorded it.
    fn recorded(&mut self) -> Option<Recorded> {
        let seq = self.hook.as_mut()?.recorded()?;
        Some(Recorded {
            seq,
            at: std::time::Instant::now(),
        })
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
                let rec = self.recorded();
                self.expect(Expect::Query(context, rec))?;
                Action::Forward
            }
            Checked::Denied { code, message } => {
                self.expect(Expect::Query(None, None))?;
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
                        let rec = self.recorded();
                        // A result the hook must see needs its description: have the server repeat it
                        // unless the client just asked for it.
                        let wanted = self.describe_portals || (self.track && context.is_some());
                        if wanted && described.as_deref() != Some(e.portal) {
                            // The result hook needs this result's description: ask for it first.
                            self.expect(Expect::Injected)?;
                            self.expect(Expect::Execute(context, rec))?;
                            put_message(scratch, fe::DESCRIBE, |b| {
                                b.extend_from_slice(b"P");
                                put_cstr(b, e.portal);
                            });
                            put_message(scratch, fe::EXECUTE, |b| b.extend_from_slice(body));
                            return Ok(Action::Replace);
                        }
                        self.expect(Expect::Execute(context, rec))?;
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
