//! Queries: set operations, VALUES, TABLE, select lists, CTEs (recursive ones to a fixed point).

use sqlparser::ast::{
    Cte, Expr, ObjectName, Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, SetOperator,
    SetQuantifier, Table, TableAlias, Values, WildcardAdditionalOptions, With,
};

use super::{
    super::{names, split::RECURSION_LIMIT},
    Flow, RelationName, Schema,
    scope::{self, Col, Env, Scope, Scopes},
};

/// How deep the analysis recurses (expressions and queries together) before giving up (opaque).
/// sqlparser bounds most nesting, but not left-deep chains such as `x::a::b::c...`.
const MAX_DEPTH: usize = 2 * RECURSION_LIMIT;

/// How many rounds a WITH RECURSIVE gets to reach its fixed point before it is opaque.
const MAX_ROUNDS: usize = 32;

/// What a CTE's columns are at a point of the analysis.
#[derive(Debug, Clone, PartialEq)]
enum CteState {
    /// Not computed yet (a recursive WITH before its first round).
    Pending,
    Known(Vec<Col>),
    /// Its output cannot be analyzed.
    Unknown,
}

/// The CTEs of one WITH.
struct Frame {
    names: Vec<String>,
    states: Vec<CteState>,
    /// How many of them a name may refer to at this point (earlier ones only, in a plain WITH).
    visible: usize,
}

/// The analysis of one statement.
pub(super) struct Analyzer<'a> {
    pub schema: &'a dyn Schema,
    /// What flows into data the statement writes, so far.
    pub writes: Flow,
    frames: Vec<Frame>,
    depth: usize,
    /// The outermost frame with a pending CTE the current evaluation referred to: its result is
    /// incomplete and is discarded by that frame's fixed-point loop.
    pending: Option<usize>,
}

impl<'a> Analyzer<'a> {
    pub fn new(schema: &'a dyn Schema) -> Self {
        Self {
            schema,
            writes: Flow::default(),
            frames: Vec::new(),
            depth: 0,
            pending: None,
        }
    }

    /// Enters one level of recursion; `false` when too deep.
    pub fn enter(&mut self) -> bool {
        if self.depth >= MAX_DEPTH {
            return false;
        }
        self.depth += 1;
        true
    }

    pub fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Adds every output of a query to the write flow (opaque when the outputs are unknown).
    pub fn write_all(&mut self, out: &Option<Vec<Col>>) {
        self.writes.extend(scope::union(out));
    }

    /// The output columns of a query; `None` when they cannot be known.
    pub fn query(&mut self, q: &Query, env: Env<'_>) -> Option<Vec<Col>> {
        if !self.enter() {
            // Unseen parts may hold data-modifying CTEs.
            self.writes.opaque = true;
            return None;
        }
        let framed = q.with.as_ref().map(|w| self.with(w, env)).is_some();
        let out = if q.pipe_operators.is_empty() {
            self.set_expr(&q.body, env)
        } else {
            None
        };
        if framed {
            self.frames.pop();
        }
        self.leave();
        out
    }

    /// The union of a query's outputs, as one value (scalar and ARRAY subqueries, EXISTS, IN).
    pub fn query_flow(&mut self, q: &Query, env: Env<'_>) -> Flow {
        let out = self.query(q, env);
        scope::union(&out)
    }

    fn set_expr(&mut self, body: &SetExpr, env: Env<'_>) -> Option<Vec<Col>> {
        match body {
            SetExpr::Select(s) => self.select(s, env),
            SetExpr::Query(q) => self.query(q, env),
            SetExpr::SetOperation { .. } => self.set_operation(body, env),
            SetExpr::Values(v) => self.values(v, env),
            SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
                self.dml(s, env)
            }
            SetExpr::Table(t) => self.table(t),
        }
    }

    /// UNION / INTERSECT / EXCEPT: per position, the union of every branch (the left-deep chain of
    /// `a UNION b UNION c` is walked without recursion).
    fn set_operation(&mut self, body: &SetExpr, env: Env<'_>) -> Option<Vec<Col>> {
        let mut rights = Vec::new();
        let mut by_name = false;
        let mut cur = body;
        while let SetExpr::SetOperation {
            left,
            right,
            set_quantifier,
            ..
        } = cur
        {
            by_name |= matches!(
                set_quantifier,
                SetQuantifier::ByName | SetQuantifier::AllByName | SetQuantifier::DistinctByName
            );
            rights.push(right);
            cur = left;
        }
        let mut out = self.set_expr(cur, env);
        for right in rights.into_iter().rev() {
            let r = self.set_expr(right, env);
            out = zip(out, r);
        }
        if by_name { None } else { out }
    }

    /// VALUES rows: per position, the union of every row; columns `column1`, `column2`...
    fn values(&mut self, v: &Values, env: Env<'_>) -> Option<Vec<Col>> {
        let mut out: Option<Vec<Col>> = None;
        for (i, row) in v.rows.iter().enumerate() {
            let cols = row
                .content
                .iter()
                .enumerate()
                .map(|(n, e)| Col::new(&format!("column{}", n + 1), self.expr(e, env)))
                .collect();
            out = if i == 0 { Some(cols) } else { zip(out, Some(cols)) };
        }
        out
    }

    /// `TABLE name`. sqlparser keeps the name's text without its quotes, so only a name that is the
    /// same quoted or not (all lower case) is understood.
    fn table(&mut self, t: &Table) -> Option<Vec<Col>> {
        let certain = |s: &str| (s == s.to_lowercase()).then(|| s.to_owned());
        let name = certain(t.table_name.as_deref()?)?;
        let schema = match &t.schema_name {
            Some(s) => Some(certain(s)?),
            None => None,
        };
        self.relation_item(&RelationName { schema, name }, None, true)
            .cols
    }

    fn select(&mut self, s: &Select, env: Env<'_>) -> Option<Vec<Col>> {
        // Other dialects' clauses that change the output: not understood.
        if s.top.is_some()
            || !s.lateral_views.is_empty()
            || s.value_table_mode.is_some()
            || s.exclude.is_some()
        {
            return None;
        }
        let scope = Scope {
            items: self.items_from(&s.from, env),
            windows: s.named_window.clone(),
        };
        let scopes = Scopes {
            scope: &scope,
            parent: env,
        };
        self.project(&s.projection, &scopes)
    }

    /// A select list (or RETURNING list) over `scopes.scope`, `*` and `t.*` expanded.
    pub fn project(&mut self, items: &[SelectItem], scopes: &Scopes<'_>) -> Option<Vec<Col>> {
        let env = Some(scopes);
        let mut out = Vec::new();
        for item in items {
            match item {
                SelectItem::UnnamedExpr(e) => out.push(Col::new(&output_name(e), self.expr(e, env))),
                SelectItem::ExprWithAlias { expr, alias } => {
                    out.push(Col::new(&names::ident(alias), self.expr(expr, env)))
                }
                SelectItem::Wildcard(opts) if plain(opts) => {
                    if scopes.scope.items.is_empty() {
                        return None;
                    }
                    for i in &scopes.scope.items {
                        out.extend(i.cols.clone()?);
                    }
                }
                SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(name), opts)
                    if plain(opts) =>
                {
                    match scope::entries(env, &parts(name)?)?.as_slice() {
                        [entry] => out.extend(entry.cols.clone()?),
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
        Some(out)
    }

    /// Pushes the frame of a WITH and computes its CTEs.
    fn with(&mut self, w: &With, env: Env<'_>) {
        let n = w.cte_tables.len();
        self.frames.push(Frame {
            names: w.cte_tables.iter().map(|c| names::ident(&c.alias.name)).collect(),
            states: vec![CteState::Pending; n],
            visible: 0,
        });
        let fi = self.frames.len() - 1;
        if w.recursive {
            self.set_visible(fi, n);
            self.fixed_point(fi, &w.cte_tables, env);
        } else {
            for (i, cte) in w.cte_tables.iter().enumerate() {
                self.set_visible(fi, i);
                let out = self.query(&cte.query, env);
                self.set_state(fi, i, merge(&CteState::Pending, rename(out, Some(&cte.alias))));
            }
            self.set_visible(fi, n);
        }
    }

    /// WITH RECURSIVE: every CTE sees every other. Each round evaluates every CTE with the others'
    /// current columns (a pending CTE first from its non-recursive term) and unions the result into
    /// its state, until nothing changes. Results that relied on a pending CTE are dropped for the round.
    fn fixed_point(&mut self, fi: usize, ctes: &[Cte], env: Env<'_>) {
        let mut converged = false;
        for _ in 0..MAX_ROUNDS {
            let mut changed = false;
            for (i, cte) in ctes.iter().enumerate() {
                let Some(current) = self.frames.get(fi).and_then(|f| f.states.get(i)).cloned() else {
                    return;
                };
                let saved = self.pending.take();
                let out = if current == CteState::Pending {
                    self.anchor(&cte.query, env)
                } else {
                    self.query(&cte.query, env)
                };
                let pending = self.pending;
                // A pending CTE of an outer frame makes the outer round's result incomplete as well.
                self.pending = [saved, pending.filter(|&p| p < fi)].into_iter().flatten().min();
                if pending.is_some() {
                    continue;
                }
                let next = merge(&current, rename(out, Some(&cte.alias)));
                if next != current {
                    changed = true;
                    self.set_state(fi, i, next);
                }
            }
            if !changed {
                converged = true;
                break;
            }
        }
        if let Some(frame) = self.frames.get_mut(fi) {
            for s in &mut frame.states {
                if !converged || *s == CteState::Pending {
                    *s = CteState::Unknown;
                }
            }
        }
    }

    /// The non-recursive term of a recursive CTE: the left side of its top-level UNION.
    fn anchor(&mut self, q: &Query, env: Env<'_>) -> Option<Vec<Col>> {
        match q.body.as_ref() {
            SetExpr::SetOperation {
                op: SetOperator::Union,
                left,
                ..
            } if q.with.is_none() => self.set_expr(left, env),
            _ => self.query(q, env),
        }
    }

    fn set_visible(&mut self, fi: usize, visible: usize) {
        if let Some(f) = self.frames.get_mut(fi) {
            f.visible = visible;
        }
    }

    fn set_state(&mut self, fi: usize, i: usize, state: CteState) {
        if let Some(s) = self.frames.get_mut(fi).and_then(|f| f.states.get_mut(i)) {
            *s = state;
        }
    }

    /// The columns of a visible CTE named `name`: `None` when no CTE has that name, `Some(None)` when
    /// its columns are unknown (or pending: the caller's result is then discarded).
    pub fn cte(&mut self, name: &str) -> Option<Option<Vec<Col>>> {
        for (fi, frame) in self.frames.iter().enumerate().rev() {
            let visible = frame.visible.min(frame.names.len());
            let Some(i) = frame.names[..visible].iter().position(|n| n == name) else {
                continue;
            };
            return Some(match frame.states.get(i) {
                Some(CteState::Known(cols)) => Some(cols.clone()),
                Some(CteState::Pending) => {
                    self.pending = Some(self.pending.map_or(fi, |p| p.min(fi)));
                    None
                }
                _ => None,
            });
        }
        None
    }
}

/// Per position, the union of two output lists; `None` when either is unknown or they differ in length.
fn zip(a: Option<Vec<Col>>, b: Option<Vec<Col>>) -> Option<Vec<Col>> {
    let (mut a, b) = (a?, b?);
    if a.len() != b.len() {
        return None;
    }
    for (x, y) in a.iter_mut().zip(b) {
        x.flow.extend(y.flow);
    }
    Some(a)
}

/// A CTE's state after one more evaluation.
fn merge(current: &CteState, out: Option<Vec<Col>>) -> CteState {
    match (current, out) {
        (CteState::Pending, Some(cols)) => CteState::Known(cols),
        (CteState::Known(cols), Some(new)) => match zip(Some(cols.clone()), Some(new)) {
            Some(cols) => CteState::Known(cols),
            None => CteState::Unknown,
        },
        _ => CteState::Unknown,
    }
}

/// Columns renamed by an alias's column list (the first ones, as PostgreSQL does); `None` when the
/// list is longer than the columns.
pub(super) fn rename(cols: Option<Vec<Col>>, alias: Option<&TableAlias>) -> Option<Vec<Col>> {
    let Some(alias) = alias.filter(|a| !a.columns.is_empty()) else {
        return cols;
    };
    let mut cols = cols?;
    if alias.columns.len() > cols.len() {
        return None;
    }
    for (c, a) in cols.iter_mut().zip(&alias.columns) {
        c.name = names::ident(&a.name);
    }
    Some(cols)
}

/// A name's normalized parts; `None` when a part is not a plain identifier.
pub(super) fn parts(name: &ObjectName) -> Option<Vec<String>> {
    name.0.iter().map(|p| p.as_ident().map(names::ident)).collect()
}

fn plain(opts: &WildcardAdditionalOptions) -> bool {
    opts.opt_ilike.is_none()
        && opts.opt_exclude.is_none()
        && opts.opt_except.is_none()
        && opts.opt_replace.is_none()
        && opts.opt_rename.is_none()
        && opts.opt_alias.is_none()
}

/// Whether a statement's query is a `SELECT ... INTO` (anywhere in its top-level set operation).
pub(super) fn has_into(body: &SetExpr) -> bool {
    let mut stack = vec![body];
    while let Some(b) = stack.pop() {
        match b {
            SetExpr::Select(s) if s.into.is_some() => return true,
            SetExpr::Query(q) => stack.push(&q.body),
            SetExpr::SetOperation { left, right, .. } => stack.extend([left.as_ref(), right.as_ref()]),
            _ => {}
        }
    }
    false
}

/// The name PostgreSQL gives an output column computed by `e` (its FigureColname, closely enough:
/// a name it gets wrong only makes a later reference resolve to nothing, which is opaque).
pub(super) fn output_name(e: &Expr) -> String {
    let last = |name: &ObjectName| name.0.last().and_then(|p| p.as_ident()).map(names::ident);
    let name = match e {
        Expr::Identifier(id) => Some(names::ident(id)),
        Expr::CompoundIdentifier(ids) => ids.last().map(names::ident),
        Expr::CompoundFieldAccess { root, access_chain } => {
            match access_chain.iter().rev().find_map(|a| match a {
                sqlparser::ast::AccessExpr::Dot(Expr::Identifier(id)) => Some(names::ident(id)),
                _ => None,
            }) {
                Some(n) => Some(n),
                None => Some(output_name(root)),
            }
        }
        Expr::Function(f) => match &f.args {
            sqlparser::ast::FunctionArguments::Subquery(_) if last(&f.name).as_deref() == Some("array") => {
                Some("array".to_owned())
            }
            _ => last(&f.name),
        },
        Expr::Cast { expr, .. } | Expr::Nested(expr) | Expr::Collate { expr, .. } => Some(output_name(expr)),
        Expr::Case { .. } => Some("case".to_owned()),
        Expr::Array(_) => Some("array".to_owned()),
        Expr::Exists { .. } => Some("exists".to_owned()),
        Expr::Tuple(_) => Some("row".to_owned()),
        Expr::Extract { .. } => Some("extract".to_owned()),
        Expr::Position { .. } => Some("position".to_owned()),
        Expr::Substring { .. } => Some("substring".to_owned()),
        Expr::Overlay { .. } => Some("overlay".to_owned()),
        Expr::Trim { .. } => Some("btrim".to_owned()),
        Expr::Ceil { .. } => Some("ceil".to_owned()),
        Expr::Floor { .. } => Some("floor".to_owned()),
        Expr::AtTimeZone { .. } => Some("timezone".to_owned()),
        Expr::Subquery(q) => match q.body.as_ref() {
            SetExpr::Select(s) => match s.projection.first() {
                Some(SelectItem::UnnamedExpr(e)) => Some(output_name(e)),
                Some(SelectItem::ExprWithAlias { alias, .. }) => Some(names::ident(alias)),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    };
    name.unwrap_or_else(|| "?column?".to_owned())
}
