//! The extended-protocol state the server keeps, mirrored: prepared statements and portals, each in
//! its own namespace, so a `Bind` or `Execute` can be traced back to the statement text it runs.
//!
//! Lifetimes follow the server: the unnamed statement is replaced by the next unnamed `Parse`; named
//! statements live until `Close` (or SQL `DEALLOCATE`, which the SQL layer reports); portals live until
//! `Close`, the next unnamed `Bind` (for the unnamed portal), or the end of the transaction they were
//! created in. The end of a transaction is seen by the server-to-client half (ReadyForQuery 'I'),
//! which publishes the index of that ReadyForQuery; portals created in a batch at or before it are gone.
//!
//! The common case (unnamed statement, unnamed portal, as `pgbench -M extended` and most drivers do)
//! allocates nothing: the unnamed statement's text lives in a reused buffer.

use std::{collections::HashMap, sync::Arc};

/// Limits that keep a hostile client from growing the maps without end.
pub const MAX_NAMED_STATEMENTS: usize = 65_536;
pub const MAX_NAMED_PORTALS: usize = 65_536;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    #[error(
        "too many prepared statements (limit {MAX_NAMED_STATEMENTS}); close some with Close or DEALLOCATE"
    )]
    TooManyStatements,
    #[error("too many open portals (limit {MAX_NAMED_PORTALS})")]
    TooManyPortals,
    #[error("too many statements sent without reading their results (limit {0})")]
    TooManyPending(usize),
}

/// Where a portal's statement text lives.
#[derive(Debug, Clone)]
enum Source {
    /// The current unnamed statement.
    Unnamed,
    /// A named statement's text, or an unnamed one's text kept after a newer `Parse` replaced it.
    Owned(Arc<str>),
    /// The statement did not exist when bound (the server reports the error).
    Missing,
}

#[derive(Debug, Clone)]
struct Portal {
    source: Source,
    /// The batch (count of sync points sent before it) the portal was created in.
    batch: u64,
}

/// Statements and portals of one session, as seen by the client-to-server half.
#[derive(Debug, Default)]
pub struct ProtocolState {
    unnamed_statement: String,
    unnamed_exists: bool,
    statements: HashMap<String, Arc<str>>,
    unnamed_portal: Option<Portal>,
    portals: HashMap<String, Portal>,
    /// Sync points (Query, Sync, FunctionCall) forwarded so far.
    sync_points: u64,
}

impl ProtocolState {
    /// A `Parse` was forwarded.
    pub fn parse(&mut self, name: &str, query: &str) -> Result<(), StateError> {
        if name.is_empty() {
            self.detach_unnamed();
            self.unnamed_statement.clear();
            self.unnamed_statement.push_str(query);
            self.unnamed_exists = true;
        } else {
            // The server refuses a Parse over an existing named statement; keep the old one then.
            if !self.statements.contains_key(name) {
                if self.statements.len() >= MAX_NAMED_STATEMENTS {
                    return Err(StateError::TooManyStatements);
                }
                self.statements.insert(name.to_owned(), Arc::from(query));
            }
        }
        Ok(())
    }

    /// Portals that point at the unnamed statement keep its current text before it is replaced.
    fn detach_unnamed(&mut self) {
        if !self.unnamed_exists {
            return;
        }
        let mut kept: Option<Arc<str>> = None;
        let text = &self.unnamed_statement;
        let mut detach = |p: &mut Portal| {
            if matches!(p.source, Source::Unnamed) {
                let t = kept.get_or_insert_with(|| Arc::from(text.as_str()));
                p.source = Source::Owned(t.clone());
            }
        };
        if let Some(p) = self.unnamed_portal.as_mut() {
            detach(p);
        }
        self.portals.values_mut().for_each(detach);
    }

    /// The text of a prepared statement, if it exists.
    pub fn statement(&self, name: &str) -> Option<&str> {
        if name.is_empty() {
            self.unnamed_exists.then_some(self.unnamed_statement.as_str())
        } else {
            self.statements.get(name).map(|s| &**s)
        }
    }

    /// A `Bind` was forwarded.
    pub fn bind(&mut self, portal: &str, statement: &str) -> Result<(), StateError> {
        let source = if statement.is_empty() {
            if self.unnamed_exists {
                Source::Unnamed
            } else {
                Source::Missing
            }
        } else {
            self.statements
                .get(statement)
                .map_or(Source::Missing, |s| Source::Owned(s.clone()))
        };
        let p = Portal {
            source,
            batch: self.sync_points,
        };
        if portal.is_empty() {
            self.unnamed_portal = Some(p);
        } else {
            if !self.portals.contains_key(portal) && self.portals.len() >= MAX_NAMED_PORTALS {
                return Err(StateError::TooManyPortals);
            }
            // The server refuses a Bind over an open named portal; keep the old one then.
            self.portals.entry(portal.to_owned()).or_insert(p);
        }
        Ok(())
    }

    /// The statement text behind a portal, if the portal exists.
    pub fn portal(&self, name: &str) -> Option<&str> {
        let p = if name.is_empty() {
            self.unnamed_portal.as_ref()
        } else {
            self.portals.get(name)
        }?;
        match &p.source {
            Source::Unnamed => self.unnamed_exists.then_some(self.unnamed_statement.as_str()),
            Source::Owned(t) => Some(t),
            Source::Missing => None,
        }
    }

    pub fn close_statement(&mut self, name: &str) {
        if name.is_empty() {
            self.detach_unnamed();
            self.unnamed_exists = false;
            self.unnamed_statement.clear();
        } else {
            self.statements.remove(name);
        }
    }

    /// SQL `DEALLOCATE ALL` / `DISCARD ALL` drop every named statement.
    pub fn close_all_statements(&mut self) {
        self.statements.clear();
    }

    pub fn close_portal(&mut self, name: &str) {
        if name.is_empty() {
            self.unnamed_portal = None;
        } else {
            self.portals.remove(name);
        }
    }

    /// A sync point (Query, Sync, FunctionCall) was forwarded; returns its index (1-based), which is the
    /// index of the ReadyForQuery that will answer it.
    pub fn sync_point(&mut self) -> u64 {
        self.sync_points += 1;
        self.sync_points
    }

    pub fn sync_points(&self) -> u64 {
        self.sync_points
    }

    /// The server ended a transaction at ReadyForQuery number `idle_rfq` (status 'I'): portals created
    /// in batches up to and including it no longer exist.
    pub fn transaction_ended(&mut self, idle_rfq: u64) {
        // A portal created in batch b (after b sync points) is answered by ReadyForQuery b + 1.
        if self.unnamed_portal.as_ref().is_some_and(|p| p.batch < idle_rfq) {
            self.unnamed_portal = None;
        }
        if !self.portals.is_empty() {
            self.portals.retain(|_, p| p.batch >= idle_rfq);
        }
    }

    pub fn named_statement_count(&self) -> usize {
        self.statements.len()
    }

    pub fn named_portal_count(&self) -> usize {
        self.portals.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnamed_statement_and_portal() {
        let mut s = ProtocolState::default();
        assert_eq!(s.statement(""), None);
        s.parse("", "select 1").unwrap();
        s.bind("", "").unwrap();
        assert_eq!(s.portal(""), Some("select 1"));
        // A new unnamed Parse does not change what the open portal runs.
        s.parse("", "select 2").unwrap();
        assert_eq!(s.portal(""), Some("select 1"));
        assert_eq!(s.statement(""), Some("select 2"));
        s.bind("", "").unwrap();
        assert_eq!(s.portal(""), Some("select 2"));
    }

    #[test]
    fn statements_and_portals_are_separate_namespaces() {
        let mut s = ProtocolState::default();
        s.parse("x", "select 'stmt'").unwrap();
        s.bind("x", "x").unwrap();
        s.close_statement("x");
        assert_eq!(s.statement("x"), None);
        // The portal survives its statement, as on the server.
        assert_eq!(s.portal("x"), Some("select 'stmt'"));
        s.close_portal("x");
        assert_eq!(s.portal("x"), None);
    }

    #[test]
    fn duplicate_names_keep_the_first_as_the_server_does() {
        let mut s = ProtocolState::default();
        s.parse("a", "select 1").unwrap();
        s.parse("a", "drop table t").unwrap();
        assert_eq!(s.statement("a"), Some("select 1"));
    }

    #[test]
    fn bind_to_missing_statement() {
        let mut s = ProtocolState::default();
        s.bind("", "nope").unwrap();
        assert_eq!(s.portal(""), None);
        s.bind("", "").unwrap();
        assert_eq!(s.portal(""), None);
    }

    #[test]
    fn portals_end_with_their_transaction() {
        let mut s = ProtocolState::default();
        s.parse("q", "select 1").unwrap();
        s.bind("p1", "q").unwrap(); // batch 0, answered by RFQ 1
        let rfq = s.sync_point();
        assert_eq!(rfq, 1);
        s.bind("p2", "q").unwrap(); // batch 1, answered by RFQ 2
        s.transaction_ended(1);
        assert_eq!(s.portal("p1"), None);
        assert_eq!(s.portal("p2"), Some("select 1"));
        s.transaction_ended(2);
        assert_eq!(s.portal("p2"), None);
        assert_eq!(s.statement("q"), Some("select 1"));
    }

    #[test]
    fn bounded() {
        let mut s = ProtocolState::default();
        for i in 0..MAX_NAMED_STATEMENTS {
            s.parse(&format!("s{i}"), "select 1").unwrap();
        }
        assert_eq!(
            s.parse("one-more", "select 1"),
            Err(StateError::TooManyStatements)
        );
        s.close_all_statements();
        assert_eq!(s.named_statement_count(), 0);
    }
}
