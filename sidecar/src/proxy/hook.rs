//! The hook points where the policy engine looks at the session: every statement on its way to the
//! server, and every result on its way back. With no hooks installed the relay forwards bytes untouched.
//!
//! A session's hooks come in two halves because the two directions of the relay run as two tasks: the
//! [`StatementHook`] sees what the client sends, the [`ResultHook`] what the server answers. The
//! statement half hands each statement's [`Context`] to the result half through the relay, which
//! pairs every result with the statement (simple `Query` or `Execute`) that produced it.

use std::{any::Any, net::SocketAddr, sync::Arc};

use bytes::BytesMut;

use super::{messages::frontend::Bind, pump::Wait};
use crate::identity::CallerIdentity;

/// What the statement half knows about a statement that its result half needs (e.g. where the
/// statement's derived columns come from). Opaque to the relay.
pub type Context = Arc<dyn Any + Send + Sync>;

/// Who opened a session, on which connection: handed to [`SessionHooks::open`].
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The DatabaseConnection's name.
    pub connection: String,
    /// The verified caller.
    pub identity: CallerIdentity,
    /// The client's address on the local listener.
    pub peer: SocketAddr,
    /// What the client said about itself (recorded, never trusted).
    pub client_user: String,
    pub application_name: String,
    /// The session's `search_path` as the server reported it when the session started (`SHOW`
    /// output), when the sidecar asked.
    pub search_path: Option<String>,
    /// The startup parameters the upstream session was opened with (after
    /// [`SessionHooks::upstream_params`]).
    pub settings: Vec<(String, String)>,
    /// Notices to the client outside any statement's answer, and the client's cancel requests.
    pub signals: super::signals::SessionSignals,
    /// The session's journal, when the sidecar keeps one.
    pub journal: Option<Arc<crate::journal::SessionLog>>,
}

/// A statement on its way to the server.
#[derive(Debug)]
pub enum Statement<'a> {
    /// A simple-protocol `Query`: one or more statements separated by `;`.
    Simple { sql: &'a str },
    /// An extended-protocol `Parse`.
    Parse {
        name: &'a str,
        sql: &'a str,
        param_types: &'a [u32],
    },
    /// A `Bind`: the statement it binds (text when known) and the message, whose parameters are read
    /// with [`Bind::params`] and [`Bind::param_format`].
    Bind { sql: Option<&'a str>, bind: Bind<'a> },
    /// An `Execute` of a portal (text when known).
    Execute {
        portal: &'a str,
        sql: Option<&'a str>,
        max_rows: i32,
    },
    /// A `FunctionCall` (fast-path function call) by OID.
    FunctionCall { oid: u32 },
}

/// What to do with a statement.
pub enum Verdict {
    /// Forward it.
    Allow,
    /// Forward it; its results reach the [`ResultHook`] with this context.
    AllowWith(Context),
    /// Refuse it: the client gets an ErrorResponse with this SQLSTATE and message, in the place and
    /// with the transaction effect the server's own error would have. In the extended protocol the rest
    /// of the batch up to `Sync` is discarded.
    Deny { code: String, message: String },
    /// Not decidable yet (e.g. the catalog must be read first): the relay forwards what came before,
    /// awaits this, then shows the same statement to [`StatementHook::check`] again.
    Wait(Wait),
}

impl std::fmt::Debug for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Allow => f.write_str("Allow"),
            Self::AllowWith(_) => f.write_str("AllowWith(..)"),
            Self::Deny { code, message } => f
                .debug_struct("Deny")
                .field("code", code)
                .field("message", message)
                .finish(),
            Self::Wait(_) => f.write_str("Wait(..)"),
        }
    }
}

/// The client-to-server half of a session's hooks.
pub trait StatementHook: Send {
    fn check(&mut self, statement: &Statement<'_>) -> Verdict;

    /// After a `Query`, `FunctionCall` or `Execute` was let through: the number under which the hook
    /// recorded it, when its end is to be reported to [`ResultHook::statement_end`].
    fn recorded(&mut self) -> Option<u64> {
        None
    }
}

/// How a recorded statement's result ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndStatus {
    /// CommandComplete (or EmptyQueryResponse).
    Ok,
    /// An ErrorResponse (from the server, or the sidecar's own).
    Error,
    /// PortalSuspended: the client's row limit of the Execute was reached.
    Suspended,
    /// Never run: an earlier message of its extended-protocol batch failed.
    Skipped,
}

impl EndStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Suspended => "suspended",
            Self::Skipped => "skipped",
        }
    }
}

/// The end of a recorded statement's result, as the relay saw it.
#[derive(Debug)]
pub struct StatementEnd<'a> {
    /// What [`StatementHook::recorded`] returned for it.
    pub seq: u64,
    pub status: EndStatus,
    /// From forwarding the statement to the end of its result.
    pub elapsed: std::time::Duration,
    /// Rows, from the command tags (`SELECT 5`, `INSERT 0 5`, ...), when they give a count.
    pub rows: Option<u64>,
    /// The last command tag's command (`SELECT`, `CREATE TABLE`, ...).
    pub command: Option<&'a str>,
    /// Bytes of the server's answer forwarded to the client for it.
    pub bytes: u64,
    /// SQLSTATE and message of the error the client got.
    pub error: Option<(&'a str, &'a str)>,
}

/// What happens to one DataRow (or one CopyData of a COPY TO STDOUT).
#[derive(Debug, PartialEq, Eq)]
pub enum RowAction {
    /// Forward the original bytes.
    Forward,
    /// The hook wrote a replacement body (without tag and length) into the output buffer.
    Replaced,
    /// End the statement with this error instead: the client gets an ErrorResponse, and the rest of the
    /// result (up to ReadyForQuery) is read and dropped.
    Abort { code: String, message: String },
}

/// What the result hook wants of the rows that follow a RowDescription (or CopyOutResponse).
pub enum Rows {
    /// They stream through untouched.
    Pass,
    /// Show each to [`ResultHook::data_row`] (or [`ResultHook::copy_data`]).
    Inspect,
    /// Refuse the result before any row: as [`RowAction::Abort`].
    Abort { code: String, message: String },
    /// Not decidable yet: the relay awaits this and shows the same description again.
    Wait(Wait),
}

/// The server-to-client half of a session's hooks.
pub trait ResultHook: Send {
    /// The RowDescription (message body) of a result of the statement that `context` came with.
    fn row_description(&mut self, body: &[u8], context: Option<&Context>) -> Rows;

    /// A DataRow body of a result that asked for rows. To change it, write the new body into `out`
    /// and return [`RowAction::Replaced`].
    fn data_row(&mut self, body: &[u8], out: &mut BytesMut) -> RowAction;

    /// A CopyOutResponse (body) of a `COPY ... TO STDOUT` of the statement that `context` came with.
    fn copy_out(&mut self, _body: &[u8], _context: Option<&Context>) -> Rows {
        Rows::Pass
    }

    /// A CopyData payload of a COPY that asked for its data. To change it, write the new payload into
    /// `out` and return [`RowAction::Replaced`] (with an empty `out`, nothing is sent).
    fn copy_data(&mut self, _payload: &[u8], _out: &mut BytesMut) -> RowAction {
        RowAction::Forward
    }

    /// The COPY's data ended (CopyDone). Anything written into `out` is sent as CopyData first.
    fn copy_done(&mut self, _out: &mut BytesMut) -> RowAction {
        RowAction::Forward
    }

    /// The current result ended (CommandComplete, PortalSuspended, EmptyQueryResponse or an error).
    fn result_end(&mut self) {}

    /// An ErrorResponse, NoticeResponse or NotificationResponse (tag and body) on its way to the
    /// client. To change it, write a complete replacement message (tag and length included) into
    /// `out` and return `true`.
    fn message(&mut self, _tag: u8, _body: &[u8], _out: &mut BytesMut) -> bool {
        false
    }

    /// Whether [`ResultHook::message`] wants to see errors, notices and notifications.
    fn wants_messages(&self) -> bool {
        false
    }

    /// A recorded statement's result ended (see [`StatementHook::recorded`]).
    fn statement_end(&mut self, _end: &StatementEnd<'_>) {}

    /// A ReadyForQuery is about to reach the client. An error ends the session instead (the journal
    /// could not be written): the client never sees a result whose record is lost.
    fn before_ready(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// The two halves of one session's hooks; either may be absent.
#[derive(Default)]
pub struct Hooks {
    pub statements: Option<Box<dyn StatementHook>>,
    pub results: Option<Box<dyn ResultHook>>,
    /// Have the relay describe each portal before its `Execute` (unless the client just did), so that
    /// the result hook sees a RowDescription for every extended-protocol result. Needed to inspect
    /// rows of the extended protocol, whose `Execute` results carry no RowDescription of their own.
    pub describe_portals: bool,
}

/// Makes the hooks of each new session.
pub trait SessionHooks: Send + Sync + 'static {
    fn open(&self, session: &SessionInfo) -> Hooks;

    /// The startup parameters to open `identity`'s upstream session on `connection` with, from the
    /// client's (user, database, replication and protocol options already removed); `Err` refuses the
    /// session with that message (SQLSTATE 42501).
    fn upstream_params(
        &self,
        _connection: &str,
        _identity: &CallerIdentity,
        params: &[(&str, &str)],
    ) -> Result<Vec<(String, String)>, String> {
        Ok(params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect())
    }
}
