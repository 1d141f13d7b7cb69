//! Column lineage: which base-table columns flow into each column a statement returns, and into the
//! data it writes.
//!
//! The relay masks a result column when PostgreSQL's RowDescription names a masked table column; for
//! every other column (expressions, aggregates, subqueries, set operations, whole-row references...)
//! it asks [`output_flows`]. Statements that store data (INSERT ... SELECT, UPDATE SET, MERGE, CREATE
//! TABLE AS, SELECT INTO, data-modifying CTEs) are judged on [`write_flow`], so masked data is not
//! copied somewhere it can be read back unmasked.
//!
//! What counts as flowing into a value: every column the value is computed from, through operators,
//! casts, CASE (conditions and results), function arguments (with FILTER, ORDER BY and window
//! PARTITION BY / ORDER BY), subqueries in the expression (their output columns), set operations
//! (per position) and CTEs. What does not: WHERE, JOIN ... ON, GROUP BY, HAVING, ORDER BY, LIMIT,
//! DISTINCT ON; they choose rows, they do not copy values into them.
//!
//! The analysis fails closed: what it cannot trace (a function the [`Schema`] does not vouch for, a
//! name that resolves to nothing, a construct it does not handle) makes the flow [`Flow::opaque`],
//! and an output list whose shape it cannot know (`*` over a relation of unknown columns) is `None`.
//! Names are as written and normalized like PostgreSQL does; unqualified relations stay unqualified
//! (the [`Schema`] implementor resolves them through the session's `search_path`).

mod dml;
mod expr;
mod from;
mod query;
mod scope;
#[cfg(test)]
mod tests;

use std::{collections::BTreeSet, fmt, ops::ControlFlow};

use sqlparser::ast::{
    CopySource, CopyTarget, Expr, Ident, ObjectName, Query, Statement, UtilityOption, Value, Visit, Visitor,
};

use super::{effects::RelationName, names, split};
use query::Analyzer;
use scope::Col;

/// A base column: the relation as written in the statement and the column name, both normalized.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceColumn {
    pub relation: RelationName,
    pub column: String,
}

impl fmt::Display for SourceColumn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.relation, self.column)
    }
}

/// What flows into one value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flow {
    /// Base columns whose values flow in.
    pub columns: BTreeSet<SourceColumn>,
    /// Every column of these relations flows in (a whole-row reference, `t.*` inside an expression,
    /// a relation whose column list is unknown).
    pub whole_rows: BTreeSet<RelationName>,
    /// Something flows in that the analysis cannot trace: a call to a function the catalog does not
    /// vouch for, an identifier that resolves to nothing, a construct not handled. Fail closed.
    pub opaque: bool,
}

impl Flow {
    /// A flow the analysis cannot trace.
    pub fn opaque() -> Self {
        Self {
            opaque: true,
            ..Self::default()
        }
    }

    /// One base column.
    pub fn column(relation: &RelationName, column: &str) -> Self {
        Self {
            columns: BTreeSet::from([SourceColumn {
                relation: relation.clone(),
                column: column.to_owned(),
            }]),
            ..Self::default()
        }
    }

    /// Every column of a relation.
    pub fn whole_row(relation: &RelationName) -> Self {
        Self {
            whole_rows: BTreeSet::from([relation.clone()]),
            ..Self::default()
        }
    }

    /// Nothing flows in (literals, parameters, `now()`...).
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty() && self.whole_rows.is_empty() && !self.opaque
    }

    /// Adds everything that flows into `other`.
    pub fn extend(&mut self, other: Flow) {
        self.columns.extend(other.columns);
        self.whole_rows.extend(other.whole_rows);
        self.opaque |= other.opaque;
    }

    /// Whether a value with this flow may carry data of `column` (directly, through a whole-row
    /// reference to its relation, or because the flow is opaque).
    pub fn may_carry(&self, column: &SourceColumn) -> bool {
        self.opaque || self.whole_rows.contains(&column.relation) || self.columns.contains(column)
    }
}

impl FromIterator<Flow> for Flow {
    fn from_iter<I: IntoIterator<Item = Flow>>(iter: I) -> Self {
        let mut out = Flow::default();
        for f in iter {
            out.extend(f);
        }
        out
    }
}

/// Compact form: `customers.email,whole:a.t,opaque` (empty for an empty flow).
impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = self
            .columns
            .iter()
            .map(ToString::to_string)
            .chain(self.whole_rows.iter().map(|r| format!("whole:{r}")))
            .chain(self.opaque.then(|| "opaque".to_owned()));
        let parts: Vec<String> = parts.collect();
        f.write_str(&parts.join(","))
    }
}

/// What the analysis needs to know about the database.
pub trait Schema {
    /// The columns of a relation named as written (the implementor resolves an unqualified name
    /// through the search path), in attnum order; `None` if unknown.
    fn columns(&self, relation: &RelationName) -> Option<Vec<String>>;

    /// Whether a function (name as written, lower case, `schema.name` when qualified) only computes
    /// from its arguments (a built-in like lower, coalesce, count, to_json, row_to_json, md5...).
    /// Functions that are not transparent make their result opaque. COALESCE, NULLIF, GREATEST,
    /// LEAST, ROW(...), ARRAY(subquery) and the SQL value keywords (CURRENT_TIMESTAMP, CURRENT_USER...)
    /// are syntax, not catalog functions, and are always transparent when written unqualified.
    fn is_transparent_function(&self, name: &str) -> bool;
}

/// Both analyses of one statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lineage {
    /// See [`output_flows`].
    pub outputs: Option<Vec<Flow>>,
    /// See [`write_flow`].
    pub writes: Flow,
}

/// Lineage of the rows a statement returns: one [`Flow`] per output column, in output order (`*` and
/// `t.*` expanded with [`Schema::columns`], in PostgreSQL's order, JOIN ... USING / NATURAL merged
/// columns first). `None` when the statement returns no rows or cannot be analyzed (the caller treats
/// `None` for a row-returning statement as all-opaque).
///
/// Row-returning statements: SELECT, VALUES, TABLE, INSERT/UPDATE/DELETE/MERGE ... RETURNING (over
/// the target table, plus UPDATE's FROM and DELETE's USING items), `DECLARE c CURSOR FOR query` (the
/// rows a later FETCH returns), `COPY (query) TO STDOUT` and `COPY t [(cols)] TO STDOUT`. EXPLAIN
/// returns one column of plan text: it may show constants of the statement, never table data, so it
/// is one empty flow. CREATE TABLE AS and SELECT INTO return no rows (`None`; see [`write_flow`]).
pub fn output_flows(statement: &Statement, schema: &dyn Schema) -> Option<Vec<Flow>> {
    lineage(statement, schema).outputs
}

/// Everything that flows into data the statement writes: INSERT source rows (and ON CONFLICT DO
/// UPDATE values), UPDATE SET values, MERGE insert/update values, CREATE TABLE AS / CREATE
/// MATERIALIZED VIEW / SELECT INTO rows, data-modifying CTEs, COPY ... TO a server file or program,
/// EXPLAIN ANALYZE of a writing statement, and the statement a PREPARE prepares. Empty for
/// statements that write nothing or only literals and parameters.
///
/// CREATE VIEW contributes nothing: reading a view over masked columns is masked through the catalog.
/// CALL is opaque (the procedure's body is not visible). Calls to functions that are not transparent
/// are NOT counted as writes (they make the outputs they feed opaque; the policy sees them in
/// `Effects::functions`).
pub fn write_flow(statement: &Statement, schema: &dyn Schema) -> Flow {
    lineage(statement, schema).writes
}

/// Both [`output_flows`] and [`write_flow`], in one pass.
pub fn lineage(statement: &Statement, schema: &dyn Schema) -> Lineage {
    let mut a = Analyzer::new(schema);
    let outputs = statement_outputs(&mut a, statement);
    Lineage {
        outputs: outputs.map(|cols| cols.into_iter().map(|c| c.flow).collect()),
        writes: a.writes,
    }
}

/// Parses `sql` (exactly one statement, PostgreSQL dialect, within the module's length and nesting
/// limits) and runs [`lineage`]; `None` when it does not parse as exactly one statement.
pub fn analyze_lineage(sql: &str, schema: &dyn Schema) -> Option<Lineage> {
    let pieces = split::split(sql)?;
    match pieces.as_slice() {
        [piece] => piece.parsed.as_ref().map(|stmt| lineage(stmt, schema)),
        _ => None,
    }
}

/// The output columns of one statement; write flows accumulate in `a.writes`.
fn statement_outputs(a: &mut Analyzer<'_>, statement: &Statement) -> Option<Vec<Col>> {
    match statement {
        Statement::Query(q) => {
            let out = a.query(q, None);
            if query::has_into(&q.body) {
                a.write_all(&out);
                None
            } else {
                out
            }
        }
        Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) | Statement::Merge(_) => {
            a.dml(statement, None)
        }
        Statement::CreateTable(ct) => {
            if let Some(q) = &ct.query {
                let out = a.query(q, None);
                a.write_all(&out);
            }
            None
        }
        Statement::CreateView(cv) => {
            if cv.materialized {
                let out = a.query(&cv.query, None);
                a.write_all(&out);
            }
            None
        }
        Statement::Explain {
            analyze,
            options,
            statement,
            ..
        } => {
            if *analyze || options.as_deref().is_some_and(explain_analyzes) {
                statement_outputs(a, statement);
            }
            Some(vec![Col::new("QUERY PLAN", Flow::default())])
        }
        Statement::Declare { stmts } => match stmts.as_slice() {
            [d] => d.for_query.as_ref().and_then(|q| a.query(q, None)),
            _ => {
                a.writes.opaque |= contains_query(statement);
                None
            }
        },
        Statement::Copy {
            source,
            to: true,
            target,
            ..
        } => {
            let out = match source {
                CopySource::Query(q) => a.query(q, None),
                CopySource::Table { table_name, columns } => copy_table(a.schema, table_name, columns),
            };
            if *target == CopyTarget::Stdout {
                out
            } else {
                // A server file or program: the rows leave the database where masking cannot follow.
                a.write_all(&out);
                None
            }
        }
        Statement::Prepare { statement, .. } => {
            // The prepared statement writes when executed; count it now, when it is first seen.
            statement_outputs(a, statement);
            None
        }
        Statement::Call(_) => {
            a.writes.opaque = true;
            None
        }
        other => {
            // Statements without a query write no table data; one this module does not know that holds
            // a query is opaque.
            a.writes.opaque |= contains_query(other);
            None
        }
    }
}

/// `COPY t [(cols)] TO ...`: the listed columns of `t`, all of them without a list.
fn copy_table(schema: &dyn Schema, table: &ObjectName, columns: &[Ident]) -> Option<Vec<Col>> {
    let rel = names::relation(table)?;
    let columns = match columns {
        [] => schema.columns(&rel)?,
        list => list.iter().map(names::ident).collect(),
    };
    Some(
        columns
            .iter()
            .map(|c| Col::new(c, Flow::column(&rel, c)))
            .collect(),
    )
}

/// Whether a statement holds a query anywhere.
fn contains_query(stmt: &Statement) -> bool {
    struct Finder;
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
            ControlFlow::Break(())
        }
    }
    stmt.visit(&mut Finder).is_break()
}

/// `EXPLAIN (ANALYZE ...)` runs the statement unless ANALYZE is explicitly off.
fn explain_analyzes(options: &[UtilityOption]) -> bool {
    let off = |w: &str| {
        ["false", "off", "0", "no"]
            .iter()
            .any(|o| w.eq_ignore_ascii_case(o))
    };
    options.iter().any(|o| {
        o.name.value.eq_ignore_ascii_case("analyze")
            && !o.arg.as_ref().is_some_and(|arg| match arg {
                Expr::Value(v) => match &v.value {
                    Value::Boolean(b) => !b,
                    Value::Number(n, _) => n == "0",
                    Value::SingleQuotedString(s) => off(s),
                    _ => false,
                },
                Expr::Identifier(id) => off(&id.value),
                _ => false,
            })
    })
}
