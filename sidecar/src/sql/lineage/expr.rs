//! Expressions: the union of what flows into every sub-expression, references resolved through the
//! scopes, calls judged by [`Schema::is_transparent_function`](super::Schema).

use sqlparser::ast::{
    AccessExpr, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause, FunctionArguments,
    ListAggOnOverflow, NamedWindowDefinition, NamedWindowExpr, Subscript, WindowSpec, WindowType,
};

use super::{
    super::names,
    Flow,
    query::{Analyzer, parts},
    scope::{self, Env},
};

/// SQL syntax that sqlparser reads as a function call but PostgreSQL does not look up in the
/// catalog: it only computes from its arguments. Only when written unqualified and unquoted.
const SYNTAX_FUNCTIONS: &[&str] = &[
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "row",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtime",
    "localtimestamp",
    "current_user",
    "current_role",
    "session_user",
    "system_user",
    "user",
    "current_catalog",
    "current_schema",
];

impl Analyzer<'_> {
    pub fn expr(&mut self, e: &Expr, env: Env<'_>) -> Flow {
        if !self.enter() {
            return Flow::opaque();
        }
        let flow = self.expr_inner(e, env);
        self.leave();
        flow
    }

    fn exprs<'e>(&mut self, es: impl IntoIterator<Item = &'e Expr>, env: Env<'_>) -> Flow {
        es.into_iter().map(|e| self.expr(e, env)).collect()
    }

    fn expr_inner(&mut self, e: &Expr, env: Env<'_>) -> Flow {
        match e {
            // `DEFAULT` in VALUES or SET: the column default.
            Expr::Identifier(id) if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("default") => {
                Flow::default()
            }
            Expr::Identifier(id) => self.reference(&[names::ident(id)], env),
            Expr::CompoundIdentifier(ids) => {
                let path: Vec<String> = ids.iter().map(names::ident).collect();
                self.reference(&path, env)
            }
            Expr::CompoundFieldAccess { root, access_chain } => self.field_access(root, access_chain, env),
            Expr::JsonAccess { value, path } => {
                let mut flow = self.expr(value, env);
                for elem in &path.path {
                    match elem {
                        sqlparser::ast::JsonPathElem::Dot { .. } => {}
                        sqlparser::ast::JsonPathElem::Bracket { key }
                        | sqlparser::ast::JsonPathElem::ColonBracket { key } => {
                            flow.extend(self.expr(key, env))
                        }
                    }
                }
                flow
            }
            Expr::IsFalse(x)
            | Expr::IsNotFalse(x)
            | Expr::IsTrue(x)
            | Expr::IsNotTrue(x)
            | Expr::IsNull(x)
            | Expr::IsNotNull(x)
            | Expr::IsUnknown(x)
            | Expr::IsNotUnknown(x)
            | Expr::IsJson { expr: x, .. }
            | Expr::IsNormalized { expr: x, .. }
            | Expr::UnaryOp { expr: x, .. }
            | Expr::Cast { expr: x, .. }
            | Expr::Extract { expr: x, .. }
            | Expr::Ceil { expr: x, .. }
            | Expr::Floor { expr: x, .. }
            | Expr::Collate { expr: x, .. }
            | Expr::Nested(x)
            | Expr::Prefixed { value: x, .. } => self.expr(x, env),
            Expr::IsDistinctFrom(a, b)
            | Expr::IsNotDistinctFrom(a, b)
            | Expr::AnyOp {
                left: a, right: b, ..
            }
            | Expr::AllOp {
                left: a, right: b, ..
            }
            | Expr::AtTimeZone {
                timestamp: a,
                time_zone: b,
            }
            | Expr::Position { expr: a, r#in: b } => self.exprs([a.as_ref(), b.as_ref()], env),
            Expr::BinaryOp { .. } => {
                // Walk the left-deep spine (`a || b || c ...`) without recursion.
                let mut flow = Flow::default();
                let mut cur = e;
                while let Expr::BinaryOp { left, right, .. } = cur {
                    flow.extend(self.expr(right, env));
                    cur = left;
                }
                flow.extend(self.expr(cur, env));
                flow
            }
            Expr::InList { expr, list, .. } => {
                let mut flow = self.expr(expr, env);
                flow.extend(self.exprs(list, env));
                flow
            }
            Expr::InSubquery { expr, subquery, .. } => {
                let mut flow = self.expr(expr, env);
                flow.extend(self.query_flow(subquery, env));
                flow
            }
            Expr::Between { expr, low, high, .. } => {
                self.exprs([expr.as_ref(), low.as_ref(), high.as_ref()], env)
            }
            Expr::Like {
                expr,
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                expr,
                pattern,
                escape_char,
                ..
            }
            | Expr::SimilarTo {
                expr,
                pattern,
                escape_char,
                ..
            } => self.exprs(
                [
                    Some(expr.as_ref()),
                    Some(pattern.as_ref()),
                    escape_char.as_deref(),
                ]
                .into_iter()
                .flatten(),
                env,
            ),
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => self.exprs(
                [
                    Some(expr.as_ref()),
                    substring_from.as_deref(),
                    substring_for.as_deref(),
                ]
                .into_iter()
                .flatten(),
                env,
            ),
            Expr::Trim {
                expr,
                trim_what,
                trim_characters,
                ..
            } => {
                let mut flow = self.exprs(
                    [Some(expr.as_ref()), trim_what.as_deref()].into_iter().flatten(),
                    env,
                );
                flow.extend(self.exprs(trim_characters.iter().flatten(), env));
                flow
            }
            Expr::Overlay {
                expr,
                overlay_what,
                overlay_from,
                overlay_for,
            } => self.exprs(
                [
                    Some(expr.as_ref()),
                    Some(overlay_what.as_ref()),
                    Some(overlay_from.as_ref()),
                    overlay_for.as_deref(),
                ]
                .into_iter()
                .flatten(),
                env,
            ),
            Expr::Value(_) | Expr::TypedString(_) => Flow::default(),
            Expr::Function(f) => self.function(f, env),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let mut flow = self.exprs(operand.as_deref().into_iter().chain(else_result.as_deref()), env);
                for w in conditions {
                    flow.extend(self.exprs([&w.condition, &w.result], env));
                }
                flow
            }
            Expr::Exists { subquery, .. } | Expr::Subquery(subquery) => self.query_flow(subquery, env),
            Expr::Tuple(list) => self.exprs(list, env),
            Expr::Array(a) => self.exprs(&a.elem, env),
            Expr::Interval(i) => self.expr(&i.value, env),
            Expr::QualifiedWildcard(name, _) => self.whole_row(name, env),
            // Other dialects' constructs, and `*` where PostgreSQL has none.
            _ => Flow::opaque(),
        }
    }

    /// A column reference `A[.B[.C...]]`, tried as PostgreSQL does: `schema.table.column`, then
    /// `table.column`, then `column` (the rest being fields of a composite value), then a bare name as
    /// a whole-row reference. Opaque when nothing matches.
    fn reference(&mut self, path: &[String], env: Env<'_>) -> Flow {
        for k in [2, 1] {
            if let (Some(q), Some(col)) = (path.get(..k), path.get(k))
                && let Some(flow) = scope::qualified(env, q, col)
            {
                return flow;
            }
        }
        let Some(first) = path.first() else {
            return Flow::opaque();
        };
        if let Some(flow) = scope::column(env, first) {
            return flow;
        }
        if path.len() == 1
            && let Some(flow) = scope::whole_row(env, path)
        {
            return flow;
        }
        Flow::opaque()
    }

    /// `c.arr[1]`, `(c).field`, `t.col.field`: the reference and every subscript.
    fn field_access(&mut self, root: &Expr, chain: &[AccessExpr], env: Env<'_>) -> Flow {
        let mut path = match root {
            Expr::Identifier(id) => Some(vec![names::ident(id)]),
            Expr::CompoundIdentifier(ids) => Some(ids.iter().map(names::ident).collect()),
            _ => None,
        };
        let mut rest = chain;
        if let Some(p) = &mut path {
            while let [AccessExpr::Dot(Expr::Identifier(id)), tail @ ..] = rest {
                p.push(names::ident(id));
                rest = tail;
            }
        }
        let mut flow = match &path {
            Some(p) => self.reference(p, env),
            None => self.expr(root, env),
        };
        for a in rest {
            match a {
                AccessExpr::Dot(Expr::Identifier(_)) => {}
                AccessExpr::Dot(_) => flow.opaque = true,
                AccessExpr::Subscript(Subscript::Index { index }) => flow.extend(self.expr(index, env)),
                AccessExpr::Subscript(Subscript::Slice {
                    lower_bound,
                    upper_bound,
                    stride,
                }) => flow.extend(self.exprs([lower_bound, upper_bound, stride].into_iter().flatten(), env)),
            }
        }
        flow
    }

    /// `t.*` inside an expression: every column of `t`.
    fn whole_row(&mut self, name: &sqlparser::ast::ObjectName, env: Env<'_>) -> Flow {
        parts(name)
            .and_then(|p| scope::whole_row(env, &p))
            .unwrap_or_else(Flow::opaque)
    }

    /// A call: its arguments, FILTER, WITHIN GROUP, aggregate ORDER BY and window; opaque unless the
    /// function is transparent.
    fn function(&mut self, f: &Function, env: Env<'_>) -> Flow {
        let name = names::function(&f.name);
        let syntax =
            matches!(f.name.0.as_slice(), [p] if p.as_ident().is_some_and(|i| i.quote_style.is_none()));
        let mut flow = Flow::default();
        let mut transparent = syntax && SYNTAX_FUNCTIONS.contains(&name.as_str());
        match &f.args {
            FunctionArguments::None => {}
            FunctionArguments::Subquery(q) => {
                // ARRAY(SELECT ...) is syntax too.
                transparent |= syntax && name == "array";
                flow.extend(self.query_flow(q, env));
            }
            FunctionArguments::List(list) => {
                for a in &list.args {
                    flow.extend(self.function_arg(a, env));
                }
                for clause in &list.clauses {
                    flow.extend(match clause {
                        FunctionArgumentClause::Where(e) | FunctionArgumentClause::Limit(e) => {
                            self.expr(e, env)
                        }
                        FunctionArgumentClause::Having(h) => self.expr(&h.1, env),
                        FunctionArgumentClause::OrderBy(order) => {
                            self.exprs(order.iter().map(|o| &o.expr), env)
                        }
                        FunctionArgumentClause::OnOverflow(ListAggOnOverflow::Truncate {
                            filler, ..
                        }) => self.exprs(filler.as_deref(), env),
                        FunctionArgumentClause::OnOverflow(ListAggOnOverflow::Error)
                        | FunctionArgumentClause::IgnoreOrRespectNulls(_)
                        | FunctionArgumentClause::Separator(_)
                        | FunctionArgumentClause::JsonNullClause(_)
                        | FunctionArgumentClause::JsonReturningClause(_) => Flow::default(),
                    });
                }
            }
        }
        if !matches!(f.parameters, FunctionArguments::None) {
            flow.opaque = true;
        }
        flow.extend(self.exprs(f.within_group.iter().map(|o| &o.expr), env));
        flow.extend(self.exprs(f.filter.as_deref(), env));
        if let Some(over) = &f.over {
            flow.extend(self.window(over, env));
        }
        if !transparent && !self.schema.is_transparent_function(&name) {
            flow.opaque = true;
        }
        if matches!(name.as_str(), "count" | "pg_catalog.count") && f.over.is_none() {
            // An aggregate count says how many values are not NULL, never what they are.
            return Flow::default();
        }
        flow
    }

    pub fn function_arg(&mut self, a: &FunctionArg, env: Env<'_>) -> Flow {
        let (FunctionArg::Named { arg, .. } | FunctionArg::ExprNamed { arg, .. } | FunctionArg::Unnamed(arg)) =
            a;
        match arg {
            FunctionArgExpr::Expr(e) => self.expr(e, env),
            FunctionArgExpr::QualifiedWildcard(name) => self.whole_row(name, env),
            // `count(*)` counts rows.
            FunctionArgExpr::Wildcard => Flow::default(),
            FunctionArgExpr::WildcardWithOptions(_) => Flow::opaque(),
        }
    }

    /// A window's PARTITION BY and ORDER BY, following named windows of the innermost level.
    fn window(&mut self, w: &WindowType, env: Env<'_>) -> Flow {
        let windows: &[NamedWindowDefinition] = env.map_or(&[], |s| s.scope.windows.as_slice());
        let (mut spec, mut name): (Option<&WindowSpec>, _) = match w {
            WindowType::WindowSpec(s) => (Some(s), s.window_name.as_ref()),
            WindowType::NamedWindow(n) => (None, Some(n)),
        };
        let mut flow = Flow::default();
        for _ in 0..=windows.len() {
            if let Some(s) = spec {
                flow.extend(self.exprs(&s.partition_by, env));
                flow.extend(self.exprs(s.order_by.iter().map(|o| &o.expr), env));
            }
            let Some(n) = name else {
                return flow;
            };
            let n = names::ident(n);
            match windows.iter().find(|d| names::ident(&d.0) == n).map(|d| &d.1) {
                Some(NamedWindowExpr::WindowSpec(s)) => (spec, name) = (Some(s), s.window_name.as_ref()),
                Some(NamedWindowExpr::NamedWindow(next)) => (spec, name) = (None, Some(next)),
                None => break,
            }
        }
        // An unknown window name, or a cycle.
        flow.opaque = true;
        flow
    }
}
