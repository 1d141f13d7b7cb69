//! INSERT, UPDATE, DELETE and MERGE: what they write (added to the analyzer's write flow) and what
//! their RETURNING lists return: expressions over the target table (whose columns then also carry
//! what the statement wrote into them), plus UPDATE's FROM and DELETE's USING items.

use sqlparser::ast::{
    Assignment, AssignmentTarget, Delete, FromTable, Insert, Merge, MergeAction, MergeInsertKind,
    MergeUpdateKind, ObjectName, OnConflict, OnConflictAction, OnInsert, OutputClause, SelectItem, Statement,
    TableAlias, TableFactor, TableObject, TableWithJoins, Update, UpdateTableFromKind,
};

use super::{
    super::names,
    Flow,
    query::{Analyzer, parts},
    scope::{self, Col, Entry, Env, Item, Qualifier, Scope, Scopes},
};

/// What a statement wrote into its target's columns: RETURNING sees the new values.
#[derive(Default)]
struct Written {
    by_column: Vec<(String, Flow)>,
    /// Written into columns the analysis cannot tell apart.
    any: Flow,
}

impl Written {
    fn extend(&mut self, other: Written) {
        self.by_column.extend(other.by_column);
        self.any.extend(other.any);
    }

    fn all(&self) -> Flow {
        let mut all: Flow = self.by_column.iter().map(|(_, f)| f.clone()).collect();
        all.extend(self.any.clone());
        all
    }

    /// The target as RETURNING sees it.
    fn apply(&self, mut target: Item) -> Item {
        let all = self.all();
        let add = |cols: &mut Option<Vec<Col>>| {
            for c in cols.iter_mut().flatten() {
                for (name, flow) in &self.by_column {
                    if *name == c.name {
                        c.flow.extend(flow.clone());
                    }
                }
                c.flow.extend(self.any.clone());
            }
        };
        add(&mut target.cols);
        target.whole.extend(all.clone());
        for e in &mut target.entries {
            add(&mut e.cols);
            e.whole.extend(all.clone());
        }
        target
    }
}

/// The column an INSERT column list entry or SET target names: `col.field` and `col[1]` write `col`.
fn column_of(name: &ObjectName) -> Option<String> {
    parts(name)?.into_iter().next()
}

impl Analyzer<'_> {
    /// A data-modifying statement (top level or in a CTE): its RETURNING columns, `None` without one.
    pub fn dml(&mut self, stmt: &Statement, env: Env<'_>) -> Option<Vec<Col>> {
        match stmt {
            Statement::Insert(ins) => self.insert(ins, env),
            Statement::Update(up) => self.update(up, env),
            Statement::Delete(del) => self.delete(del, env),
            Statement::Merge(m) => self.merge(m, env),
            _ => {
                self.writes.opaque = true;
                None
            }
        }
    }

    fn insert(&mut self, ins: &Insert, env: Env<'_>) -> Option<Vec<Col>> {
        let source = ins.source.as_ref().map(|q| self.query(q, env));
        let source_flow = source.as_ref().map(scope::union).unwrap_or_default();
        self.writes.extend(source_flow.clone());
        // MySQL's `INSERT ... SET`.
        let mut written = self.assignments(&ins.assignments, env);
        let rel = match &ins.table {
            TableObject::TableName(name) => names::relation(name),
            _ => None,
        };
        let Some(rel) = rel else {
            self.writes.opaque = true;
            return None;
        };
        let alias = ins.table_alias.as_ref().map(|a| TableAlias {
            explicit: a.explicit,
            name: a.alias.clone(),
            columns: Vec::new(),
            at: None,
        });
        let target = self.relation_item(&rel, alias.as_ref(), false);
        let excluded = self.excluded(&rel, &ins.columns, source.as_ref(), source_flow);
        match &excluded.cols {
            Some(cols) => written
                .by_column
                .extend(cols.iter().map(|c| (c.name.clone(), c.flow.clone()))),
            None => written.any.extend(excluded.whole.clone()),
        }
        match &ins.on {
            None
            | Some(OnInsert::OnConflict(OnConflict {
                action: OnConflictAction::DoNothing,
                ..
            })) => {}
            Some(OnInsert::OnConflict(OnConflict {
                action: OnConflictAction::DoUpdate(du),
                ..
            })) => {
                let scope = Scope {
                    items: vec![target.clone(), excluded],
                    windows: Vec::new(),
                };
                let updated = self.assignments(
                    &du.assignments,
                    Some(&Scopes {
                        scope: &scope,
                        parent: env,
                    }),
                );
                written.extend(updated);
            }
            Some(_) => self.writes.opaque = true,
        }
        if ins.output.is_some() {
            self.writes.opaque = true;
            return None;
        }
        self.returning(ins.returning.as_deref(), vec![written.apply(target)], env)
    }

    /// The inserted row, by target column (`EXCLUDED` in ON CONFLICT DO UPDATE): each column carries
    /// the value inserted into it (matched by position to the column list); when that cannot be
    /// matched, the columns are unknown and the row carries everything inserted.
    fn excluded(
        &mut self,
        rel: &super::RelationName,
        columns: &[ObjectName],
        source: Option<&Option<Vec<Col>>>,
        source_flow: Flow,
    ) -> Item {
        let target_cols = self.schema.columns(rel);
        let listed: Option<Vec<String>> = if columns.is_empty() {
            target_cols.clone()
        } else {
            columns.iter().map(column_of).collect()
        };
        let cols = match (target_cols, listed, source) {
            (Some(target), Some(listed), Some(Some(values))) => Some(
                target
                    .iter()
                    .map(|t| {
                        let flow = listed
                            .iter()
                            .zip(values)
                            .filter(|(l, _)| *l == t)
                            .map(|(_, v)| v.flow.clone())
                            .collect();
                        Col::new(t, flow)
                    })
                    .collect(),
            ),
            // DEFAULT VALUES.
            (Some(target), _, None) => Some(target.iter().map(|t| Col::new(t, Flow::default())).collect()),
            _ => None,
        };
        Item::single(Entry {
            qualifier: Qualifier::Alias("excluded".to_owned()),
            cols,
            whole: source_flow,
        })
    }

    fn update(&mut self, up: &Update, env: Env<'_>) -> Option<Vec<Col>> {
        let Some(target) = self.target(&up.table) else {
            self.writes.opaque = true;
            return None;
        };
        let mut items = vec![target];
        if let Some(UpdateTableFromKind::BeforeSet(from) | UpdateTableFromKind::AfterSet(from)) = &up.from {
            items.extend(self.items_from(from, env));
        }
        let mut scope = Scope {
            items,
            windows: Vec::new(),
        };
        let written = self.assignments(
            &up.assignments,
            Some(&Scopes {
                scope: &scope,
                parent: env,
            }),
        );
        if up.output.is_some() {
            self.writes.opaque = true;
            return None;
        }
        if let Some(target) = scope.items.first_mut() {
            *target = written.apply(target.clone());
        }
        self.returning(up.returning.as_deref(), scope.items, env)
    }

    fn delete(&mut self, del: &Delete, env: Env<'_>) -> Option<Vec<Col>> {
        let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &del.from;
        let target = match from.as_slice() {
            [twj] if del.tables.is_empty() => self.target(twj),
            _ => None,
        };
        // A DELETE writes no values; one it cannot read returns rows it cannot describe.
        let target = target?;
        let mut items = vec![target];
        if let Some(using) = &del.using {
            items.extend(self.items_from(using, env));
        }
        if del.output.is_some() {
            return None;
        }
        self.returning(del.returning.as_deref(), items, env)
    }

    fn merge(&mut self, m: &Merge, env: Env<'_>) -> Option<Vec<Col>> {
        let target = match &m.table {
            TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => names::relation(name).map(|rel| (self.relation_item(&rel, alias.as_ref(), false), rel)),
            _ => None,
        };
        let Some((target, rel)) = target else {
            self.writes.opaque = true;
            return None;
        };
        let source = self.factor(&m.source, env, &[]);
        let source_all = match &source.cols {
            Some(_) => scope::union(&source.cols),
            None => source.whole.clone(),
        };
        let mut scope = Scope {
            items: vec![target, source],
            windows: Vec::new(),
        };
        let mut written = Written::default();
        for clause in &m.clauses {
            let scopes = Scopes {
                scope: &scope,
                parent: env,
            };
            match &clause.action {
                MergeAction::Update(u) => match &u.kind {
                    MergeUpdateKind::Set(assignments) => {
                        written.extend(self.assignments(assignments, Some(&scopes)))
                    }
                    MergeUpdateKind::Wildcard => written.any.extend(source_all.clone()),
                },
                MergeAction::Insert(i) => match &i.kind {
                    MergeInsertKind::Values(v) => {
                        let listed: Option<Vec<String>> = if i.columns.is_empty() {
                            self.schema.columns(&rel)
                        } else {
                            i.columns.iter().map(column_of).collect()
                        };
                        for row in &v.rows {
                            for (n, e) in row.content.iter().enumerate() {
                                let flow = self.expr(e, Some(&scopes));
                                match listed.as_ref().and_then(|l| l.get(n)) {
                                    Some(col) => written.by_column.push((col.clone(), flow)),
                                    None => written.any.extend(flow),
                                }
                            }
                        }
                    }
                    MergeInsertKind::Row | MergeInsertKind::Wildcard => {
                        written.any.extend(source_all.clone())
                    }
                },
                MergeAction::Delete { .. } | MergeAction::DoNothing { .. } => {}
            }
        }
        self.writes.extend(written.all());
        match &m.output {
            None => None,
            Some(OutputClause::Returning { select_items, .. }) => {
                if let Some(target) = scope.items.first_mut() {
                    *target = written.apply(target.clone());
                }
                self.project(
                    select_items,
                    &Scopes {
                        scope: &scope,
                        parent: env,
                    },
                )
            }
            Some(OutputClause::Output { .. }) => {
                self.writes.opaque = true;
                None
            }
        }
    }

    /// The target of an UPDATE or DELETE: one table, never a CTE.
    fn target(&mut self, twj: &TableWithJoins) -> Option<Item> {
        match twj {
            TableWithJoins {
                relation:
                    TableFactor::Table {
                        name,
                        alias,
                        args: None,
                        ..
                    },
                joins,
            } if joins.is_empty() => {
                let rel = names::relation(name)?;
                Some(self.relation_item(&rel, alias.as_ref(), false))
            }
            _ => None,
        }
    }

    /// SET values flow into the written rows (a column of the target itself included).
    fn assignments(&mut self, assignments: &[Assignment], env: Env<'_>) -> Written {
        let mut written = Written::default();
        for a in assignments {
            let flow = self.expr(&a.value, env);
            self.writes.extend(flow.clone());
            let targets: &[ObjectName] = match &a.target {
                AssignmentTarget::ColumnName(name) => std::slice::from_ref(name),
                AssignmentTarget::Tuple(names) => names,
            };
            for t in targets {
                match column_of(t) {
                    Some(col) => written.by_column.push((col, flow.clone())),
                    None => written.any.extend(flow.clone()),
                }
            }
        }
        written
    }

    fn returning(
        &mut self,
        returning: Option<&[SelectItem]>,
        items: Vec<Item>,
        env: Env<'_>,
    ) -> Option<Vec<Col>> {
        let scope = Scope {
            items,
            windows: Vec::new(),
        };
        self.project(
            returning?,
            &Scopes {
                scope: &scope,
                parent: env,
            },
        )
    }
}
