//! Name resolution: what the FROM items of each query level make visible, and how column references,
//! whole-row references and `t.*` resolve against them, innermost level first as PostgreSQL does.

use std::iter;

use sqlparser::ast::NamedWindowDefinition;

use super::{Flow, RelationName};

/// One output column (of a query, a FROM item, a CTE): its name and what flows into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Col {
    pub name: String,
    pub flow: Flow,
}

impl Col {
    pub fn new(name: &str, flow: Flow) -> Self {
        Self {
            name: name.to_owned(),
            flow,
        }
    }
}

/// The union of the flows of `cols`; opaque when the columns are unknown.
pub(super) fn union(cols: &Option<Vec<Col>>) -> Flow {
    match cols {
        Some(cols) => cols.iter().map(|c| c.flow.clone()).collect(),
        None => Flow::opaque(),
    }
}

/// How a FROM entry is named in a qualified reference.
#[derive(Debug, Clone)]
pub(super) enum Qualifier {
    /// An alias or a CTE name: matched by that one identifier.
    Alias(String),
    /// A relation without alias: matched by `t` or `s.t`.
    Relation(RelationName),
}

impl Qualifier {
    fn matches(&self, q: &[String]) -> bool {
        match (self, q) {
            (Qualifier::Alias(a), [n]) => a == n,
            (Qualifier::Relation(r), [n]) => &r.name == n,
            // An unqualified relation may be the one `s.t` names once resolved: match (fail closed).
            (Qualifier::Relation(r), [s, n]) => &r.name == n && r.schema.as_ref().is_none_or(|rs| rs == s),
            _ => false,
        }
    }
}

/// A FROM entry that can be named: a table, a CTE, a subquery or function with an alias, an aliased
/// join.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub qualifier: Qualifier,
    /// Its columns, when known.
    pub cols: Option<Vec<Col>>,
    /// What a whole-row reference carries, and a reference to any column when `cols` is unknown.
    pub whole: Flow,
}

/// One item of a FROM list, joins applied.
#[derive(Debug, Clone)]
pub(super) struct Item {
    /// The columns an unqualified name or `*` sees, in `*` order; `None` when unknown.
    pub cols: Option<Vec<Col>>,
    /// Everything the item carries (what an unqualified name resolves to when `cols` is unknown).
    pub whole: Flow,
    /// The entries qualified names see.
    pub entries: Vec<Entry>,
}

impl Item {
    pub fn single(entry: Entry) -> Self {
        Self {
            cols: entry.cols.clone(),
            whole: entry.whole.clone(),
            entries: vec![entry],
        }
    }

    /// An item the analysis cannot see into.
    pub fn opaque(qualifier: Option<Qualifier>) -> Self {
        Self {
            cols: None,
            whole: Flow::opaque(),
            entries: qualifier
                .map(|qualifier| Entry {
                    qualifier,
                    cols: None,
                    whole: Flow::opaque(),
                })
                .into_iter()
                .collect(),
        }
    }
}

/// The FROM items of one query level (or the target and FROM/USING items of a DML statement), with
/// the level's named windows.
#[derive(Debug, Default)]
pub(super) struct Scope {
    pub items: Vec<Item>,
    pub windows: Vec<NamedWindowDefinition>,
}

/// A scope and the levels around it.
pub(super) struct Scopes<'s> {
    pub scope: &'s Scope,
    pub parent: Env<'s>,
}

/// The scopes visible at a point of the statement, innermost first; `None` at the top level.
pub(super) type Env<'s> = Option<&'s Scopes<'s>>;

fn levels<'s>(env: Env<'s>) -> impl Iterator<Item = &'s Scope> {
    iter::successors(env, |s| s.parent).map(|s| s.scope)
}

/// An unqualified column name. At each level, a column of an item whose columns are known wins;
/// items of unknown columns may hold the name too, so their flows are added and the search goes on
/// outward. `None` when nothing can hold it.
pub(super) fn column(env: Env<'_>, name: &str) -> Option<Flow> {
    let mut acc = Flow::default();
    let mut found = false;
    for scope in levels(env) {
        let mut here = false;
        for item in &scope.items {
            match &item.cols {
                Some(cols) => {
                    for c in cols.iter().filter(|c| c.name == name) {
                        acc.extend(c.flow.clone());
                        here = true;
                    }
                }
                None => {
                    acc.extend(item.whole.clone());
                    found = true;
                }
            }
        }
        if here {
            return Some(acc);
        }
    }
    found.then_some(acc)
}

/// The entries a qualifier names, at the innermost level that has any.
pub(super) fn entries<'s>(env: Env<'s>, q: &[String]) -> Option<Vec<&'s Entry>> {
    levels(env).find_map(|scope| {
        let found: Vec<&Entry> = scope
            .items
            .iter()
            .flat_map(|i| &i.entries)
            .filter(|e| e.qualifier.matches(q))
            .collect();
        (!found.is_empty()).then_some(found)
    })
}

/// `q.col`: `None` when no entry is named `q`; opaque when the entry has no such column (PostgreSQL
/// would read `t.f` as the call `f(t)`).
pub(super) fn qualified(env: Env<'_>, q: &[String], col: &str) -> Option<Flow> {
    let found = entries(env, q)?;
    Some(
        found
            .into_iter()
            .map(|e| match &e.cols {
                Some(cols) => match cols.iter().find(|c| c.name == col) {
                    Some(c) => c.flow.clone(),
                    None => Flow::opaque(),
                },
                None => e.whole.clone(),
            })
            .collect(),
    )
}

/// A whole-row reference (`t`, `t.*` inside an expression).
pub(super) fn whole_row(env: Env<'_>, q: &[String]) -> Option<Flow> {
    Some(entries(env, q)?.into_iter().map(|e| e.whole.clone()).collect())
}
