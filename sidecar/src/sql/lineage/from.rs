//! FROM items: tables, CTEs, subqueries, table functions, VALUES, joins (USING and NATURAL merge
//! columns as PostgreSQL does), LATERAL visibility of the items to the left.

use sqlparser::ast::{
    FunctionArg, JoinConstraint, JoinOperator, ObjectName, TableAlias, TableFactor, TableWithJoins,
};

use super::{
    super::names,
    Flow, RelationName,
    query::{Analyzer, parts, rename},
    scope::{self, Col, Entry, Env, Item, Qualifier, Scope, Scopes},
};

/// Set-returning functions that return one column of a base type (`unnest` returns one per argument).
/// Any other function in FROM has columns only when a column definition list gives them.
const SCALAR_SRFS: &[&str] = &[
    "generate_series",
    "generate_subscripts",
    "unnest",
    "json_array_elements",
    "json_array_elements_text",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "json_object_keys",
    "jsonb_object_keys",
    "regexp_split_to_table",
    "string_to_table",
];

impl Analyzer<'_> {
    /// The items of a FROM list, in order (each sees the earlier ones when LATERAL).
    pub fn items_from(&mut self, from: &[TableWithJoins], env: Env<'_>) -> Vec<Item> {
        let mut items: Vec<Item> = Vec::new();
        for twj in from {
            let left: Vec<&Item> = items.iter().collect();
            let item = self.table_with_joins(twj, env, &left);
            items.push(item);
        }
        items
    }

    fn table_with_joins(&mut self, twj: &TableWithJoins, env: Env<'_>, left: &[&Item]) -> Item {
        if !self.enter() {
            return Item::opaque(None);
        }
        let item = self.joins(twj, env, left);
        self.leave();
        item
    }

    fn joins(&mut self, twj: &TableWithJoins, env: Env<'_>, left: &[&Item]) -> Item {
        let mut item = self.factor(&twj.relation, env, left);
        for join in &twj.joins {
            let right = {
                let mut visible = left.to_vec();
                visible.push(&item);
                self.factor(&join.relation, env, &visible)
            };
            item = join_items(item, right, &join.join_operator);
        }
        item
    }

    /// One FROM item; `left` are the items a LATERAL one may refer to.
    pub fn factor(&mut self, f: &TableFactor, env: Env<'_>, left: &[&Item]) -> Item {
        let lateral = matches!(
            f,
            TableFactor::Derived { lateral: true, .. }
                | TableFactor::Function { .. }
                | TableFactor::Table { args: Some(_), .. }
                | TableFactor::UNNEST { .. }
        );
        let lateral_scope = (lateral && !left.is_empty()).then(|| Scope {
            items: left.iter().map(|i| (*i).clone()).collect(),
            windows: Vec::new(),
        });
        let lateral_scopes = lateral_scope.as_ref().map(|scope| Scopes { scope, parent: env });
        let lenv = lateral_scopes.as_ref().or(env);
        match f {
            TableFactor::Table {
                name,
                alias,
                args: None,
                with_ordinality: false,
                json_path: None,
                ..
            } => match names::relation(name) {
                Some(rel) => self.relation_item(&rel, alias.as_ref(), true),
                None => Item::opaque(alias_qualifier(alias.as_ref())),
            },
            TableFactor::Table {
                name,
                alias,
                args: Some(args),
                with_ordinality,
                ..
            } => self.function_item(name, &args.args, *with_ordinality, alias.as_ref(), lenv),
            TableFactor::Function {
                name,
                args,
                with_ordinality,
                alias,
                ..
            } => self.function_item(name, args, *with_ordinality, alias.as_ref(), lenv),
            TableFactor::UNNEST {
                alias,
                array_exprs,
                with_offset: false,
                with_ordinality,
                ..
            } => {
                let flows = array_exprs.iter().map(|e| self.expr(e, lenv)).collect();
                let transparent = self.schema.is_transparent_function("unnest");
                set_function_item("unnest", flows, transparent, *with_ordinality, alias.as_ref())
            }
            TableFactor::Derived {
                lateral,
                subquery,
                alias,
                ..
            } => {
                let out = self.query(subquery, if *lateral { lenv } else { env });
                let cols = rename(out, alias.as_ref());
                let whole = scope::union(&cols);
                match alias {
                    Some(a) => Item::single(Entry {
                        qualifier: Qualifier::Alias(names::ident(&a.name)),
                        cols,
                        whole,
                    }),
                    None => Item {
                        cols,
                        whole,
                        entries: Vec::new(),
                    },
                }
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let item = self.table_with_joins(table_with_joins, env, left);
                match alias {
                    Some(a) => {
                        let cols = rename(item.cols, Some(a));
                        let whole = match &cols {
                            Some(_) => scope::union(&cols),
                            None => item.whole,
                        };
                        Item::single(Entry {
                            qualifier: Qualifier::Alias(names::ident(&a.name)),
                            cols,
                            whole,
                        })
                    }
                    None => item,
                }
            }
            other => Item::opaque(alias_qualifier(table_alias(other))),
        }
    }

    /// A table, view or (when `ctes`) a visible CTE named `rel`.
    pub fn relation_item(&mut self, rel: &RelationName, alias: Option<&TableAlias>, ctes: bool) -> Item {
        let qualifier = alias_qualifier(alias);
        if ctes
            && rel.schema.is_none()
            && let Some(cols) = self.cte(&rel.name)
        {
            let cols = rename(cols, alias);
            return Item::single(Entry {
                qualifier: qualifier.unwrap_or_else(|| Qualifier::Alias(rel.name.clone())),
                whole: scope::union(&cols),
                cols,
            });
        }
        let cols = self
            .schema
            .columns(rel)
            .map(|names| names.iter().map(|c| Col::new(c, Flow::column(rel, c))).collect());
        Item::single(Entry {
            qualifier: qualifier.unwrap_or_else(|| Qualifier::Relation(rel.clone())),
            cols: rename(cols, alias),
            whole: Flow::whole_row(rel),
        })
    }

    /// A function in FROM: its columns carry its arguments (opaque unless the function is transparent).
    fn function_item(
        &mut self,
        name: &ObjectName,
        args: &[FunctionArg],
        ordinality: bool,
        alias: Option<&TableAlias>,
        env: Env<'_>,
    ) -> Item {
        let fname = names::function(name);
        let flows = args.iter().map(|a| self.function_arg(a, env)).collect();
        let transparent = self.schema.is_transparent_function(&fname);
        set_function_item(&fname, flows, transparent, ordinality, alias)
    }
}

/// The item of a set-returning function whose arguments carry `flows` (its result is opaque too
/// unless the function is transparent).
fn set_function_item(
    fname: &str,
    mut flows: Vec<Flow>,
    transparent: bool,
    ordinality: bool,
    alias: Option<&TableAlias>,
) -> Item {
    let base = fname.strip_prefix("pg_catalog.").unwrap_or(fname);
    if !transparent {
        flows.iter_mut().for_each(|f| f.opaque = true);
    }
    let mut all: Flow = flows.iter().cloned().collect();
    all.opaque |= !transparent;
    let mut cols = if base == "unnest" && flows.len() > 1 {
        Some(
            flows
                .into_iter()
                .map(|f| Col::new("unnest", f))
                .collect::<Vec<_>>(),
        )
    } else if SCALAR_SRFS.contains(&base) {
        // A function of a base type names its column after the table alias, if any.
        let name = alias.map_or_else(|| base.to_owned(), |a| names::ident(&a.name));
        Some(vec![Col::new(&name, all.clone())])
    } else {
        None
    };
    match (&mut cols, alias) {
        (Some(cols), _) if ordinality => cols.push(Col::new("ordinality", Flow::default())),
        // A column definition list (every column typed) gives a record function's columns.
        (None, Some(a))
            if !ordinality && !a.columns.is_empty() && a.columns.iter().all(|c| c.data_type.is_some()) =>
        {
            cols = Some(
                a.columns
                    .iter()
                    .map(|c| Col::new(&names::ident(&c.name), all.clone()))
                    .collect(),
            );
        }
        _ => {}
    }
    let cols = rename(cols, alias);
    let qualifier = alias_qualifier(alias)
        .unwrap_or_else(|| Qualifier::Alias(base.rsplit('.').next().unwrap_or(base).to_owned()));
    Item::single(Entry {
        qualifier,
        cols,
        whole: all,
    })
}

/// The item of `left JOIN right`. The join's columns are USING / NATURAL merged columns first (each
/// carrying both sides), then the left's other columns, then the right's; qualified names still see
/// both sides' entries.
fn join_items(left: Item, right: Item, op: &JoinOperator) -> Item {
    let constraint = match op {
        JoinOperator::Join(c)
        | JoinOperator::Inner(c)
        | JoinOperator::Left(c)
        | JoinOperator::LeftOuter(c)
        | JoinOperator::Right(c)
        | JoinOperator::RightOuter(c)
        | JoinOperator::FullOuter(c)
        | JoinOperator::CrossJoin(c) => Some(c),
        _ => None,
    };
    let mut whole = left.whole;
    whole.extend(right.whole);
    let mut entries = left.entries;
    entries.extend(right.entries);
    let merged: Option<Vec<String>> = match (constraint, &left.cols, &right.cols) {
        (None, ..) => {
            whole.opaque = true;
            None
        }
        (Some(JoinConstraint::Using(using)), ..) => {
            let names: Option<Vec<String>> = using
                .iter()
                .map(|n| match parts(n)?.as_slice() {
                    [one] => Some(one.clone()),
                    _ => None,
                })
                .collect();
            whole.opaque |= names.is_none();
            names
        }
        (Some(JoinConstraint::Natural), Some(l), Some(r)) => Some(
            l.iter()
                .filter(|c| r.iter().any(|rc| rc.name == c.name))
                .map(|c| c.name.clone())
                .collect(),
        ),
        (Some(JoinConstraint::Natural), ..) => None,
        (Some(JoinConstraint::On(_) | JoinConstraint::None), ..) => Some(Vec::new()),
    };
    let cols = match (merged, left.cols, right.cols) {
        (Some(merged), Some(l), Some(r)) => {
            let mut cols: Vec<Col> = Vec::new();
            for name in &merged {
                if cols.iter().any(|c| &c.name == name) {
                    continue;
                }
                let flow = l
                    .iter()
                    .chain(&r)
                    .filter(|c| &c.name == name)
                    .map(|c| c.flow.clone())
                    .collect();
                cols.push(Col::new(name, flow));
            }
            cols.extend(l.into_iter().filter(|c| !merged.contains(&c.name)));
            cols.extend(r.into_iter().filter(|c| !merged.contains(&c.name)));
            Some(cols)
        }
        _ => None,
    };
    Item { cols, whole, entries }
}

fn alias_qualifier(alias: Option<&TableAlias>) -> Option<Qualifier> {
    alias.map(|a| Qualifier::Alias(names::ident(&a.name)))
}

/// The alias of a FROM item this module does not analyze.
fn table_alias(f: &TableFactor) -> Option<&TableAlias> {
    match f {
        TableFactor::Table { alias, .. }
        | TableFactor::Derived { alias, .. }
        | TableFactor::TableFunction { alias, .. }
        | TableFactor::Function { alias, .. }
        | TableFactor::UNNEST { alias, .. }
        | TableFactor::JsonTable { alias, .. }
        | TableFactor::OpenJsonTable { alias, .. }
        | TableFactor::NestedJoin { alias, .. }
        | TableFactor::Pivot { alias, .. }
        | TableFactor::Unpivot { alias, .. }
        | TableFactor::MatchRecognize { alias, .. }
        | TableFactor::XmlTable { alias, .. }
        | TableFactor::SemanticView { alias, .. } => alias.as_ref(),
        TableFactor::UnpivotExpr { .. } => None,
    }
}
