//! What a statement does, as the policy engine needs to know it: the operations it performs, the
//! relations it reads and writes, the functions it calls, and how it changes the session.
//!
//! These are the shared types between SQL analysis (which produces them) and the policy engine
//! (which decides on them). Names are as written in the statement, normalized as PostgreSQL does
//! (unquoted identifiers folded to lower case); resolving unqualified names through the session's
//! `search_path` is the caller's job, since only the session knows it.

use std::collections::BTreeSet;

pub use dbward_crds::Operation;

/// A relation (table, view, sequence...) as named in a statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelationName {
    /// The schema, when the statement qualified the name.
    pub schema: Option<String>,
    pub name: String,
}

impl RelationName {
    pub fn new(schema: Option<&str>, name: &str) -> Self {
        Self {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        }
    }
}

impl std::fmt::Display for RelationName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A change to session state the relay must track to judge later statements correctly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionChange {
    /// `SET search_path` (schemas as written, normalized); `None` for `RESET`/`SET ... TO DEFAULT`.
    SearchPath(Option<Vec<String>>),
    /// `PREPARE name AS statement`: the prepared statement's own effects, judged again at `EXECUTE`.
    Prepare { name: String, effects: Box<Effects> },
    /// `EXECUTE name`: runs what `PREPARE name` prepared.
    Execute { name: String },
    /// `DEALLOCATE name`; `None` for `DEALLOCATE ALL`.
    Deallocate(Option<String>),
    /// `DECLARE name CURSOR FOR query`: the query's own effects, which `FETCH`/`MOVE` then return.
    DeclareCursor { name: String, effects: Box<Effects> },
    /// `FETCH`/`MOVE` from a cursor.
    Fetch { cursor: String },
    /// `CLOSE name`; `None` for `CLOSE ALL`.
    CloseCursor(Option<String>),
    /// `DISCARD ALL` (drops prepared statements, cursors, temp tables, resets settings).
    DiscardAll,
    /// `LISTEN channel` / `UNLISTEN channel`.
    Listen(String),
    /// `NOTIFY channel[, payload]` or `pg_notify(...)`.
    Notify(String),
    /// `SET statement_timeout` / `set_config('statement_timeout', ...)` with a literal value as
    /// written; `None` for `RESET`/`DEFAULT` (back to the session's starting value).
    StatementTimeout(Option<String>),
}

/// The effects of one statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// Every operation the statement performs (a CTE that deletes makes a SELECT also a delete).
    pub operations: BTreeSet<Operation>,
    /// Relations read.
    pub reads: BTreeSet<RelationName>,
    /// Relations written (inserted into, updated, deleted from, truncated, created, altered, dropped).
    pub writes: BTreeSet<RelationName>,
    /// Functions called, as written (`schema.name` when qualified), lower case.
    pub functions: BTreeSet<String>,
    /// An UPDATE or DELETE (anywhere in the statement, CTEs included) without a WHERE clause.
    pub missing_where: bool,
    /// Session state the statement changes.
    pub session: Vec<SessionChange>,
}

impl Effects {
    /// The effects of a statement that could not be parsed or classified.
    pub fn unknown() -> Self {
        Self {
            operations: BTreeSet::from([Operation::Unknown]),
            ..Self::default()
        }
    }

    pub fn has(&self, op: Operation) -> bool {
        self.operations.contains(&op)
    }
}
