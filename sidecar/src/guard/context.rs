//! What the statement half hands the result half with each statement: the caller's masking, the
//! catalog and search paths the statement was judged under, and the statement texts whose rows come
//! back (for the lineage of derived columns).

use std::sync::Arc;

use sqlparser::ast::Statement as Ast;

use super::paths::{SearchPaths, candidates};
use crate::{
    catalog::{Catalog, CatalogSnapshot, RelationInfo},
    mask::{DetectorRule, MaskError, Strategy, strongest},
    policy::{CallerPolicy, EffectiveLimits, MaskSpec},
    sql::{
        RelationName,
        lineage::{self, Flow, Schema},
    },
};

/// The caller's policy with its masking compiled, shared by a session's statements until the policy
/// changes.
pub(crate) struct CallerState {
    pub policy: CallerPolicy,
    pub detectors: Arc<[DetectorRule]>,
    /// What a value of untraceable origin gets: the strongest of the caller's column masks.
    pub opaque: Option<Strategy>,
    pub limits: EffectiveLimits,
    /// Results must be seen: something is masked or a row/byte limit applies.
    pub inspects: bool,
}

pub(crate) fn strategy_of(spec: &MaskSpec) -> Strategy {
    Strategy::new(
        spec.strategy,
        spec.replacement.as_deref(),
        Some(spec.keep_first),
        Some(spec.keep_last),
    )
}

impl CallerState {
    pub fn new(policy: CallerPolicy) -> Result<Self, MaskError> {
        let detectors = policy
            .detectors()
            .iter()
            .map(|d| DetectorRule::new(d.detector, d.pattern.as_deref(), strategy_of(&d.mask)))
            .collect::<Result<Vec<_>, _>>()?;
        let opaque = policy.strongest_column_mask().as_ref().map(strategy_of);
        let limits = policy.limits();
        let inspects = policy.masks_anything() || limits.max_rows.is_some() || limits.max_bytes.is_some();
        Ok(Self {
            policy,
            detectors: detectors.into(),
            opaque,
            limits,
            inspects,
        })
    }

    /// The mask of a base table's column, if any.
    pub fn column(&self, relation: &RelationInfo, column: &str) -> Option<Strategy> {
        self.policy
            .mask_for_column(&relation.schema, &relation.name, column)
            .as_ref()
            .map(strategy_of)
    }
}

/// Handed with each statement whose results the result half must see.
pub(crate) struct StatementContext {
    pub caller: Arc<CallerState>,
    pub catalog: Arc<Catalog>,
    /// The snapshot the statement was judged with.
    pub snapshot: Arc<CatalogSnapshot>,
    pub paths: SearchPaths,
    pub user: Arc<str>,
    /// The statements whose rows may come back, in order (for `EXECUTE` and `FETCH`: the prepared
    /// statement's and the cursor's text).
    pub texts: Arc<[Arc<str>]>,
    /// The output lineage of each statement of `texts` that may return rows (`None`: untraceable),
    /// computed once per statement text by the statement half.
    pub outputs: Arc<[Option<Vec<Flow>>]>,
}

/// Where a catalog load's failure is left for the half that waited on it.
pub(crate) type CatalogErrorSlot = Arc<std::sync::Mutex<Option<crate::catalog::CatalogError>>>;

/// A load of a snapshot newer than `newer_than`, to wait for; a failure lands in `slot`.
pub(crate) fn reload(
    catalog: Arc<Catalog>,
    newer_than: u64,
    slot: CatalogErrorSlot,
) -> crate::proxy::pump::Wait {
    Box::pin(async move {
        if let Err(e) = catalog.refresh(newer_than).await {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        }
    })
}

/// The failure a waited-for load left, if any (taken: the next statement tries again).
pub(crate) fn take_error(slot: &CatalogErrorSlot) -> Option<crate::catalog::CatalogError> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Nested views followed at most when tracing a column; deeper is treated as untraceable.
const MAX_VIEW_DEPTH: usize = 8;

/// The lineage's view of the database: relations resolved as the session would.
pub(crate) struct CatalogSchema<'a> {
    pub snapshot: &'a CatalogSnapshot,
    pub paths: &'a SearchPaths,
    pub user: &'a str,
}

impl Schema for CatalogSchema<'_> {
    fn columns(&self, relation: &RelationName) -> Option<Vec<String>> {
        let found = candidates(self.snapshot, relation, self.paths, self.user);
        let first = found.first()?;
        let names: Vec<String> = first.columns.iter().map(|c| c.name.clone()).collect();
        // Several candidates (an uncertain search path) expand `*` the same way only if they agree.
        found
            .iter()
            .all(|r| r.columns.iter().map(|c| &c.name).eq(names.iter()))
            .then_some(names)
    }

    fn is_transparent_function(&self, name: &str) -> bool {
        transparent_function(name)
    }
}

impl StatementContext {
    /// How to mask a value into which `flow` flows: the strongest mask of every source, the opaque
    /// mask for anything untraceable, `None` to keep it. `views` caches view lineages.
    pub fn flow_strategy(
        &self,
        flow: &Flow,
        snapshot: &CatalogSnapshot,
        views: &mut ViewCache,
    ) -> Option<Strategy> {
        flow_strategy(
            &self.caller,
            flow,
            snapshot,
            &self.paths,
            self.user.as_ref(),
            views,
            0,
        )
    }

    /// The mask of a result column that RowDescription traced to `relation`'s column `attnum`.
    pub fn base_column_strategy(
        &self,
        relation: &RelationInfo,
        attnum: i16,
        snapshot: &CatalogSnapshot,
        views: &mut ViewCache,
    ) -> Option<Strategy> {
        let Some(column) = relation.column(attnum) else {
            return self.caller.opaque.clone();
        };
        if relation.kind.is_view() {
            return view_column_strategy(
                &self.caller,
                relation,
                &column.name,
                snapshot,
                &self.user,
                views,
                0,
            );
        }
        self.caller.column(relation, &column.name)
    }
}

/// Lineages of view definitions, per snapshot version.
#[derive(Default)]
pub(crate) struct ViewCache {
    version: u64,
    views: std::collections::HashMap<u32, Option<Arc<Vec<Flow>>>>,
}

/// The path a view's definition is read with: pg_get_viewdef qualifies the names not visible on the
/// catalog session's default path (the sidecar's upstream user is `$user` there too).
static VIEWDEF_PATHS: std::sync::LazyLock<SearchPaths> =
    std::sync::LazyLock::new(|| SearchPaths::new(Some(vec!["$user".into(), "public".into()])));

impl ViewCache {
    fn get(&mut self, snapshot: &CatalogSnapshot, view: &RelationInfo, user: &str) -> Option<Arc<Vec<Flow>>> {
        if self.version != snapshot.version() {
            self.views.clear();
            self.version = snapshot.version();
        }
        if let Some(found) = self.views.get(&view.oid) {
            return found.clone();
        }
        let schema = CatalogSchema {
            snapshot,
            paths: &VIEWDEF_PATHS,
            user,
        };
        let flows = view
            .definition
            .as_deref()
            .and_then(|d| lineage::analyze_lineage(d, &schema))
            .and_then(|l| l.outputs)
            .filter(|o| o.len() == view.columns.len())
            .map(Arc::new);
        if self.views.len() > 1024 {
            self.views.clear();
        }
        self.views.insert(view.oid, flows.clone());
        flows
    }
}

fn view_column_strategy(
    caller: &CallerState,
    view: &RelationInfo,
    column: &str,
    snapshot: &CatalogSnapshot,
    user: &str,
    views: &mut ViewCache,
    depth: usize,
) -> Option<Strategy> {
    if depth >= MAX_VIEW_DEPTH {
        return caller.opaque.clone();
    }
    let Some(index) = view.columns.iter().position(|c| c.name == column) else {
        return caller.opaque.clone();
    };
    // A mask written for the view's own column applies as well.
    let own = caller.column(view, column);
    let Some(flows) = views.get(snapshot, view, user) else {
        return join(own, caller.opaque.clone());
    };
    let traced = flow_strategy(
        caller,
        &flows[index],
        snapshot,
        &VIEWDEF_PATHS,
        user,
        views,
        depth + 1,
    );
    join(own, traced)
}

fn join(a: Option<Strategy>, b: Option<Strategy>) -> Option<Strategy> {
    match (a, b) {
        (Some(a), Some(b)) => Some(strongest(a, b)),
        (a, b) => a.or(b),
    }
}

/// How to mask a value into which `flow` flows, for `caller` (see [`StatementContext::flow_strategy`]).
pub(crate) fn flow_strategy(
    caller: &CallerState,
    flow: &Flow,
    snapshot: &CatalogSnapshot,
    paths: &SearchPaths,
    user: &str,
    views: &mut ViewCache,
    depth: usize,
) -> Option<Strategy> {
    if flow.opaque {
        return caller.opaque.clone();
    }
    let mut best = None;
    for source in &flow.columns {
        let found = candidates(snapshot, &source.relation, paths, user);
        if found.is_empty() {
            return caller.opaque.clone();
        }
        for relation in found {
            let s = if relation.kind.is_view() {
                view_column_strategy(caller, relation, &source.column, snapshot, user, views, depth)
            } else {
                caller.column(relation, &source.column)
            };
            best = join(best, s);
        }
    }
    for whole in &flow.whole_rows {
        let found = candidates(snapshot, whole, paths, user);
        if found.is_empty() {
            return caller.opaque.clone();
        }
        for relation in found {
            for column in &relation.columns {
                let s = if relation.kind.is_view() {
                    view_column_strategy(caller, relation, &column.name, snapshot, user, views, depth)
                } else {
                    caller.column(relation, &column.name)
                };
                best = join(best, s);
            }
        }
    }
    best
}

/// The output flows of the statements in `text` that return rows (one list per statement; `None` for
/// a statement whose outputs cannot be traced).
pub(crate) fn statement_outputs(text: &str, schema: &dyn Schema) -> Vec<Option<Vec<Flow>>> {
    let Some(statements) = crate::sql::parse_statements(text) else {
        return vec![None];
    };
    statements
        .iter()
        .map(|s| match s {
            Some(Ast::Prepare { statement, .. }) => lineage::output_flows(statement, schema),
            Some(s) => lineage::output_flows(s, schema),
            None => None,
        })
        .collect()
}

/// Built-in functions that compute only from their arguments (no table access, no SQL text run).
/// Anything else makes a value untraceable (masked when the caller masks anything).
const TRANSPARENT: &[&str] = &[
    "abs",
    "array_agg",
    "array_append",
    "array_cat",
    "array_length",
    "array_position",
    "array_prepend",
    "array_remove",
    "array_replace",
    "array_to_json",
    "array_to_string",
    "array_upper",
    "array_lower",
    "ascii",
    "avg",
    "bit_and",
    "bit_length",
    "bit_or",
    "bool_and",
    "bool_or",
    "btrim",
    "cardinality",
    "cbrt",
    "ceil",
    "ceiling",
    "char_length",
    "character_length",
    "chr",
    "coalesce",
    "concat",
    "concat_ws",
    "convert_from",
    "convert_to",
    "count",
    "date_part",
    "date_trunc",
    "decode",
    "encode",
    "every",
    "exp",
    "extract",
    "first_value",
    "floor",
    "format",
    "greatest",
    "initcap",
    "json_agg",
    "json_build_array",
    "json_build_object",
    "json_object_agg",
    "json_extract_path",
    "json_extract_path_text",
    "jsonb_agg",
    "jsonb_build_array",
    "jsonb_build_object",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "jsonb_object_agg",
    "jsonb_set",
    "jsonb_strip_nulls",
    "lag",
    "last_value",
    "lead",
    "least",
    "left",
    "length",
    "ln",
    "log",
    "lower",
    "lpad",
    "ltrim",
    "max",
    "md5",
    "min",
    "mod",
    "nth_value",
    "nullif",
    "octet_length",
    "overlay",
    "position",
    "power",
    "quote_ident",
    "quote_literal",
    "quote_nullable",
    "regexp_match",
    "regexp_matches",
    "regexp_replace",
    "regexp_split_to_array",
    "repeat",
    "replace",
    "reverse",
    "right",
    "round",
    "row_to_json",
    "rpad",
    "rtrim",
    "sha256",
    "sign",
    "split_part",
    "sqrt",
    "starts_with",
    "string_agg",
    "string_to_array",
    "strpos",
    "substr",
    "substring",
    "sum",
    "to_char",
    "to_date",
    "to_json",
    "to_jsonb",
    "to_number",
    "to_timestamp",
    "translate",
    "trim",
    "trunc",
    "unnest",
    "upper",
    "generate_series",
    "now",
    "current_date",
    "current_timestamp",
    "localtimestamp",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "random",
    "gen_random_uuid",
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "stddev",
    "variance",
    "stddev_pop",
    "stddev_samp",
    "var_pop",
    "var_samp",
    "age",
    "make_date",
    "make_timestamp",
    "make_interval",
    "isfinite",
    "justify_days",
    "justify_hours",
    "num_nulls",
    "num_nonnulls",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "json_array_elements",
    "json_array_elements_text",
    "jsonb_each",
    "jsonb_each_text",
    "json_each",
    "json_each_text",
    "jsonb_typeof",
    "json_typeof",
    "jsonb_array_length",
    "json_array_length",
    "jsonb_pretty",
    "to_hex",
    "int4",
    "int8",
    "float8",
    "numeric",
    "text",
    "varchar",
    "bool",
    "date",
    "timestamp",
    "timestamptz",
    "interval",
    "uuid",
    "array_dims",
    "array_ndims",
    "string_to_table",
    "regexp_count",
    "regexp_substr",
    "regexp_instr",
    "percentile_cont",
    "percentile_disc",
    "mode",
    "xmlagg",
    "bit_count",
    "get_byte",
    "set_byte",
    "sha224",
    "sha384",
    "sha512",
    "crc32",
];

fn transparent_function(name: &str) -> bool {
    let name = name.strip_prefix("pg_catalog.").unwrap_or(name);
    !name.contains('.') && TRANSPARENT.contains(&name)
}
