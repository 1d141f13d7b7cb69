//! SQL analysis: what each statement of a query string does, as [`Effects`] the policy engine
//! decides on, plus statement fingerprints and a cache of analyses.
//!
//! Parsing is sqlparser's PostgreSQL dialect. Analysis never fails: a statement that does not
//! parse, is too long or too deep, or cannot be classified is [`Effects::unknown`] (fail closed).
//! Names are as written and normalized like PostgreSQL does; unqualified names are left for the
//! caller to resolve through the session's `search_path`.

pub mod effects;
pub mod lineage;

mod cache;
mod classify;
mod fallback;
mod fingerprint;
mod functions;
mod names;
mod shape;
mod split;
mod walk;

#[cfg(test)]
mod corpus;

pub use cache::{AnalysisCache, DEFAULT_CAPACITY, MAX_CACHED_TEXT};
pub use classify::{is_on_setting, is_readable_encoding};
pub use effects::{Effects, Operation, RelationName, SessionChange};
pub use fingerprint::{fingerprint, fingerprint_exact, normalize};
pub use functions::has_own_effect;
pub use lineage::{Flow, Lineage, SourceColumn, analyze_lineage};
pub use shape::{MAX_SHAPED_TEXT, shape};
pub use split::{MAX_STATEMENT_BYTES, RECURSION_LIMIT};

/// The analysis of a query string: one [`Effects`] per statement, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Analysis {
    /// The statements' effects; empty for an empty (or comment-only) string.
    pub statements: Vec<Effects>,
}

/// Analyzes every statement of `sql`. Never fails; see the module documentation.
pub fn analyze(sql: &str) -> Analysis {
    let Some(pieces) = split::split(sql) else {
        // Not even tokenizable (an unterminated quote or comment): one unknown statement.
        return Analysis {
            statements: vec![Effects::unknown()],
        };
    };
    let statements = pieces
        .iter()
        .map(|p| match &p.parsed {
            Some(stmt) => classify::classify(stmt),
            None if sql.len() > MAX_STATEMENT_BYTES => Effects::unknown(),
            None => fallback::classify_tokens(&p.tokens),
        })
        .collect();
    Analysis { statements }
}

/// The statements of `sql` parsed one by one (`None` for a statement that does not parse), as
/// [`analyze`] splits them; `None` when the text cannot even be split.
pub fn parse_statements(sql: &str) -> Option<Vec<Option<sqlparser::ast::Statement>>> {
    let pieces = split::split(sql)?;
    Some(pieces.into_iter().map(|p| p.parsed).collect())
}
