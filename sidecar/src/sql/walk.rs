//! A walk over a statement's whole syntax tree that collects what runs inside it wherever it is:
//! relations read (through joins, subqueries, CTEs, set operations, LATERAL), data-modifying
//! statements (top level or in a CTE), `SELECT INTO`, and function calls.

use std::{collections::HashMap, ops::ControlFlow};

use sqlparser::ast::{
    Delete, Expr, FromTable, Insert, Merge, ObjectName, OnConflict, OnConflictAction, OnInsert, Query,
    Select, SelectItem, SetExpr, Statement, TableFactor, TableObject, TableWithJoins, Update, Visit, Visitor,
};

use super::{
    effects::{Effects, Operation, RelationName},
    functions, names,
};

/// Walks `node` and adds what it finds to `effects`.
pub(crate) fn walk<V: Visit>(node: &V, effects: &mut Effects) {
    let mut w = Walker {
        effects,
        seen: HashMap::new(),
        targets: Vec::new(),
        scopes: Vec::new(),
    };
    let _ = node.visit(&mut w);
    let Walker {
        effects,
        mut seen,
        targets,
        ..
    } = w;
    for t in targets {
        if let Some(n) = seen.get_mut(&t) {
            *n = n.saturating_sub(1);
        }
    }
    effects
        .reads
        .extend(seen.into_iter().filter(|(_, n)| *n > 0).map(|(r, _)| r));
}

/// The CTE names one query level defines, and how many of them are visible at this point of the walk.
struct Scope {
    ctes: Vec<String>,
    recursive: bool,
    /// CTE bodies started so far (the walk visits them in order, before the query's body).
    started: usize,
    /// How many of `ctes` an unqualified name may refer to now.
    visible: usize,
}

struct Walker<'e> {
    effects: &'e mut Effects,
    /// Relations seen as table references, with how often.
    seen: HashMap<RelationName, usize>,
    /// Table references that are DML targets rather than reads (one occurrence each).
    targets: Vec<RelationName>,
    scopes: Vec<Scope>,
}

impl Walker<'_> {
    fn unknown(&mut self) {
        self.effects.operations.insert(Operation::Unknown);
    }

    fn is_cte(&self, rel: &RelationName) -> bool {
        rel.schema.is_none()
            && self
                .scopes
                .iter()
                .any(|s| s.ctes[..s.visible.min(s.ctes.len())].contains(&rel.name))
    }

    fn relation(&mut self, name: &ObjectName) -> Option<RelationName> {
        let rel = names::relation(name);
        if rel.is_none() {
            self.unknown();
        }
        rel
    }

    /// A DML target given as a table reference: written, and not counted as a read.
    fn target_factor(&mut self, factor: &TableFactor) -> Option<RelationName> {
        match factor {
            TableFactor::Table { name, args: None, .. } => {
                let rel = self.relation(name)?;
                self.targets.push(rel.clone());
                self.effects.writes.insert(rel.clone());
                Some(rel)
            }
            _ => {
                self.unknown();
                None
            }
        }
    }

    fn returning(&mut self, returning: &Option<Vec<SelectItem>>, targets: Vec<RelationName>) {
        if returning.is_some() {
            self.effects.reads.extend(targets);
        }
    }

    fn insert(&mut self, ins: &Insert) {
        self.effects.operations.insert(Operation::Insert);
        // ON CONFLICT DO UPDATE rewrites existing rows; any other ON clause (other dialects) is not
        // understood.
        match &ins.on {
            None
            | Some(OnInsert::OnConflict(OnConflict {
                action: OnConflictAction::DoNothing,
                ..
            })) => {}
            Some(OnInsert::OnConflict(OnConflict {
                action: OnConflictAction::DoUpdate(_),
                ..
            })) => {
                self.effects.operations.insert(Operation::Update);
            }
            Some(_) => self.unknown(),
        }
        match &ins.table {
            TableObject::TableName(name) => {
                if let Some(rel) = self.relation(name) {
                    self.effects.writes.insert(rel.clone());
                    self.returning(&ins.returning, vec![rel]);
                }
            }
            _ => self.unknown(),
        }
    }

    fn update(&mut self, up: &Update) {
        self.effects.operations.insert(Operation::Update);
        if up.selection.is_none() {
            self.effects.missing_where = true;
        }
        let target = if up.table.joins.is_empty() {
            self.target_factor(&up.table.relation)
        } else {
            None
        };
        if !up.table.joins.is_empty() {
            self.unknown();
        }
        self.returning(&up.returning, target.into_iter().collect());
    }

    fn delete(&mut self, del: &Delete) {
        self.effects.operations.insert(Operation::Delete);
        if del.selection.is_none() {
            self.effects.missing_where = true;
        }
        if !del.tables.is_empty() || del.limit.is_some() {
            self.unknown();
        }
        let from: &[TableWithJoins] = match &del.from {
            FromTable::WithFromKeyword(v) | FromTable::WithoutKeyword(v) => v,
        };
        let mut targets = Vec::new();
        for twj in from {
            if !twj.joins.is_empty() {
                self.unknown();
            }
            targets.extend(self.target_factor(&twj.relation));
        }
        self.returning(&del.returning, targets);
    }

    fn merge(&mut self, m: &Merge) {
        self.effects.operations.insert(Operation::Merge);
        self.target_factor(&m.table);
    }

    fn set_expr_tables(&mut self, body: &SetExpr) {
        match body {
            // `TABLE name` inside a set operation: sqlparser keeps only unquoted text, so the name
            // cannot be normalized reliably; fail closed.
            SetExpr::Table(_) => self.unknown(),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr_tables(left);
                self.set_expr_tables(right);
            }
            _ => {}
        }
    }
}

impl Visitor for Walker<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        // Is this query the body of the next CTE of the enclosing query's WITH?
        if let Some(parent) = self.scopes.last_mut()
            && parent.started < parent.ctes.len()
        {
            parent.visible = if parent.recursive {
                parent.ctes.len()
            } else {
                parent.started
            };
            parent.started += 1;
        }
        let (ctes, recursive) = match &q.with {
            Some(w) => (
                w.cte_tables.iter().map(|c| names::ident(&c.alias.name)).collect(),
                w.recursive,
            ),
            None => (Vec::new(), false),
        };
        self.scopes.push(Scope {
            ctes,
            recursive,
            started: 0,
            visible: 0,
        });
        self.set_expr_tables(&q.body);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.scopes.pop();
        if let Some(parent) = self.scopes.last_mut()
            && parent.started >= parent.ctes.len()
        {
            parent.visible = parent.ctes.len();
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        if let Some(into) = &select.into {
            self.effects
                .operations
                .extend([Operation::Select, Operation::Ddl]);
            match into.targets.as_slice() {
                [Expr::Identifier(id)] => {
                    self.effects
                        .writes
                        .insert(RelationName::new(None, &names::ident(id)));
                }
                [Expr::CompoundIdentifier(parts)] => {
                    let name = ObjectName::from(parts.clone());
                    if let Some(rel) = self.relation(&name) {
                        self.effects.writes.insert(rel);
                    }
                }
                _ => self.unknown(),
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table { name, args: None, .. } => {
                if let Some(rel) = self.relation(name)
                    && !self.is_cte(&rel)
                {
                    *self.seen.entry(rel).or_default() += 1;
                }
            }
            TableFactor::Table {
                name,
                args: Some(args),
                ..
            } => {
                let args = functions::positional(&args.args);
                functions::record_call(&names::function(name), &args, self.effects);
            }
            TableFactor::Function { name, args, .. } => {
                let args = functions::positional(args);
                functions::record_call(&names::function(name), &args, self.effects);
            }
            TableFactor::Derived { .. }
            | TableFactor::TableFunction { .. }
            | TableFactor::UNNEST { .. }
            | TableFactor::NestedJoin { .. } => {}
            _ => self.unknown(),
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = expr {
            let args = functions::positional(functions::call_args(&f.args));
            functions::record_call(&names::function(&f.name), &args, self.effects);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, stmt: &Statement) -> ControlFlow<()> {
        match stmt {
            Statement::Insert(ins) => self.insert(ins),
            Statement::Update(up) => self.update(up),
            Statement::Delete(del) => self.delete(del),
            Statement::Merge(m) => self.merge(m),
            _ => {}
        }
        ControlFlow::Continue(())
    }
}
