//! The hook points where the policy engine looks at the session: every statement on its way to the
//! server, and every result on its way back. With no hooks installed the relay forwards bytes untouched.
//!
//! A session's hooks come in two halves because the two directions of the relay run as two tasks: the
//! [`StatementHook`] sees what the client sends, the [`ResultHook`] what the server answers. The
//! statement half can tell the result half what to expect through a channel of its own making.

use std::net::SocketAddr;

use bytes::BytesMut;

use super::messages::frontend::Bind;
use crate::identity::CallerIdentity;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it.
    Allow,
    /// Refuse it: the client gets an ErrorResponse with this SQLSTATE and message, in the place and
    /// with the transaction effect the server's own error would have. In the extended protocol the rest
    /// of the batch up to `Sync` is discarded.
    Deny { code: String, message: String },
}

/// The client-to-server half of a session's hooks.
pub trait StatementHook: Send {
    fn check(&mut self, statement: &Statement<'_>) -> Verdict;
}

/// What happens to one DataRow.
#[derive(Debug, PartialEq, Eq)]
pub enum RowAction {
    /// Forward the original bytes.
    Forward,
    /// The hook wrote a replacement body (without tag and length) into the output buffer.
    Replaced,
}

/// The server-to-client half of a session's hooks.
pub trait ResultHook: Send {
    /// A RowDescription (message body). Returns whether the DataRows that follow must be shown to
    /// [`ResultHook::data_row`]; if not, they stream through untouched.
    fn row_description(&mut self, body: &[u8]) -> bool;

    /// A DataRow body of a result that asked for rows. To change it, write the new body into `out`
    /// and return [`RowAction::Replaced`].
    fn data_row(&mut self, body: &[u8], out: &mut BytesMut) -> RowAction;

    /// The current result ended (CommandComplete, PortalSuspended, EmptyQueryResponse or an error).
    fn result_end(&mut self) {}
}

/// The two halves of one session's hooks; either may be absent.
#[derive(Default)]
pub struct Hooks {
    pub statements: Option<Box<dyn StatementHook>>,
    pub results: Option<Box<dyn ResultHook>>,
}

/// Makes the hooks of each new session.
pub trait SessionHooks: Send + Sync + 'static {
    fn open(&self, session: &SessionInfo) -> Hooks;
}
