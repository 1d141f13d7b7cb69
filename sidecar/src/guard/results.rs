//! The result half: masks rows, COPY data and messages on their way to the client, and ends results
//! that exceed the caller's limits.
//!
//! Every result column is traced to its sources: RowDescription names the table and column of a
//! column that is a plain reference (whatever its alias, through subqueries and CTEs); the catalog
//! turns that into `schema.table.column` (a view's column is traced through the view's definition);
//! any other column (an expression, aggregate, whole-row reference, UNION branch...) is traced through
//! the statement's syntax tree ([`crate::sql::lineage`]). A column into which a masked column flows is
//! masked with the strongest strategy among them; a column whose sources cannot be traced gets the
//! strongest of the caller's masks (fail closed).

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopyTarget};

use super::context::{CatalogErrorSlot, CatalogSchema, StatementContext, ViewCache, reload, take_error};
use crate::{
    catalog::CatalogSnapshot,
    mask::{
        ColumnAction, ColumnFormat, ColumnPlan, CopyFormat, CopyMasker, MaskKey, RowPlan, Strategy,
        is_binary_copy, rewrite_data_row,
    },
    proxy::{
        hook::{Context, ResultHook, RowAction, Rows, StatementEnd},
        messages::{
            backend::{put_cstr, put_message, tag as be},
            error::sqlstate,
        },
    },
    sql::lineage::Flow,
};

/// One field of a RowDescription.
struct Field {
    table_oid: u32,
    attnum: i16,
    type_oid: u32,
    format: i16,
}

/// The fields of a RowDescription body; `None` if malformed.
fn parse_row_description(body: &[u8]) -> Option<Vec<Field>> {
    let count = usize::try_from(i16::from_be_bytes(body.get(..2)?.try_into().ok()?)).ok()?;
    let mut pos = 2;
    let mut fields = Vec::with_capacity(count);
    for _ in 0..count {
        let name_end = pos + body.get(pos..)?.iter().position(|&b| b == 0)?;
        pos = name_end + 1;
        let rest = body.get(pos..pos + 18)?;
        fields.push(Field {
            table_oid: u32::from_be_bytes(rest[0..4].try_into().ok()?),
            attnum: i16::from_be_bytes(rest[4..6].try_into().ok()?),
            type_oid: u32::from_be_bytes(rest[6..10].try_into().ok()?),
            format: i16::from_be_bytes(rest[16..18].try_into().ok()?),
        });
        pos += 18;
    }
    (pos == body.len()).then_some(fields)
}

pub(super) struct GuardResults {
    key: MaskKey,
    plan: RowPlan,
    /// Whether rows need rewriting (else only counted).
    masking: bool,
    copy: Option<CopyMasker>,
    max_rows: Option<u64>,
    max_bytes: Option<u64>,
    rows: u64,
    bytes: u64,
    /// The catalog version past which this session already reloaded for an unknown table.
    reloaded_past: u64,
    catalog_error: CatalogErrorSlot,
    views: ViewCache,
    /// The caller's masks apply to messages: errors, notices and notifications are scrubbed.
    scrub: bool,
    /// Set by the statement half when the caller masks anything: messages are scrubbed even for
    /// statements whose rows needed no inspection (an error can quote a value they read).
    masks: Arc<std::sync::atomic::AtomicBool>,
    last_reload: Option<std::time::Instant>,
    /// The session's journal.
    log: Option<Arc<crate::journal::SessionLog>>,
}

impl GuardResults {
    pub(super) fn new(
        key: MaskKey,
        masks: Arc<std::sync::atomic::AtomicBool>,
        log: Option<Arc<crate::journal::SessionLog>>,
    ) -> Self {
        Self {
            key,
            plan: RowPlan::default(),
            masking: false,
            copy: None,
            max_rows: None,
            max_bytes: None,
            rows: 0,
            bytes: 0,
            reloaded_past: 0,
            catalog_error: Arc::default(),
            views: ViewCache::default(),
            scrub: false,
            masks,
            last_reload: None,
            log,
        }
    }

    fn start(&mut self, ctx: &StatementContext) {
        self.scrub = ctx.caller.policy.masks_anything();
        self.max_rows = ctx.caller.limits.max_rows;
        self.max_bytes = ctx.caller.limits.max_bytes;
        self.rows = 0;
        self.bytes = 0;
        self.masking = false;
        self.copy = None;
    }

    /// The newest snapshot, or a reload to wait for when a column's table is unknown to it.
    fn snapshot_for(
        &mut self,
        ctx: &StatementContext,
        oids: impl Iterator<Item = u32>,
    ) -> Result<Arc<CatalogSnapshot>, Rows> {
        let snapshot = ctx.catalog.current().unwrap_or_else(|| ctx.snapshot.clone());
        let unknown = oids.filter(|&o| o != 0).any(|o| snapshot.relation(o).is_none());
        // One reload per unknown table a second: a table created in the client's open transaction
        // stays invisible to the catalog's own session however often it reloads (its columns then get
        // the caller's strongest mask).
        let recently = self
            .last_reload
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1));
        if !unknown || snapshot.version() <= self.reloaded_past || recently {
            return Ok(snapshot);
        }
        self.last_reload = Some(std::time::Instant::now());
        if let Some(e) = take_error(&self.catalog_error) {
            return Err(Rows::Abort {
                code: "58000".into(),
                message: e.client_message(ctx.catalog.connection()),
            });
        }
        self.reloaded_past = snapshot.version();
        Err(Rows::Wait(reload(
            ctx.catalog.clone(),
            snapshot.version(),
            self.catalog_error.clone(),
        )))
    }

    fn action(&self, ctx: &StatementContext, strategy: Option<Strategy>, text_like: bool) -> ColumnAction {
        let detect = text_like && !ctx.caller.detectors.is_empty();
        match (strategy, detect) {
            (None, false) => ColumnAction::Keep,
            (None, true) => ColumnAction::Detect,
            (Some(s), true) if s.keeps_content() => ColumnAction::MaskAndDetect(s),
            (Some(s), _) => ColumnAction::Mask(s),
        }
    }
}

/// The flows of the derived columns of a result with `count` columns: the statement's lineage, when one
/// of its row-returning statements has that many outputs (merged when several do); `None` when a
/// statement's rows cannot be traced (this result may be its).
fn derived_flows(ctx: &StatementContext, count: usize) -> Option<Vec<Flow>> {
    let mut merged: Option<Vec<Flow>> = None;
    for outputs in ctx.outputs.iter() {
        let outputs = outputs.as_ref()?;
        if outputs.len() != count {
            continue;
        }
        match merged.as_mut() {
            None => merged = Some(outputs.clone()),
            Some(m) => {
                for (a, b) in m.iter_mut().zip(outputs) {
                    a.extend(b.clone());
                }
            }
        }
    }
    merged
}

/// Types whose values are text (detectors scan them).
fn text_like(type_oid: u32) -> bool {
    crate::mask::row::TEXT_LIKE_OIDS.contains(&type_oid) || type_oid == crate::mask::row::JSONB_OID
}

impl ResultHook for GuardResults {
    fn row_description(&mut self, body: &[u8], context: Option<&Context>) -> Rows {
        let Some(ctx) = context.and_then(|c| c.downcast_ref::<StatementContext>()) else {
            return Rows::Pass;
        };
        self.start(ctx);
        let Some(fields) = parse_row_description(body) else {
            return Rows::Abort {
                code: sqlstate::PROTOCOL_VIOLATION.into(),
                message: "dbward: the server sent a malformed RowDescription".into(),
            };
        };
        if !ctx.caller.policy.masks_anything() {
            return self.limited();
        }
        let snapshot = match self.snapshot_for(ctx, fields.iter().map(|f| f.table_oid)) {
            Ok(s) => s,
            Err(rows) => return rows,
        };
        let derived = if fields.iter().any(|f| f.table_oid == 0) {
            derived_flows(ctx, fields.len())
        } else {
            None
        };
        let mut views = std::mem::take(&mut self.views);
        let mut columns = Vec::with_capacity(fields.len());
        for (i, f) in fields.iter().enumerate() {
            let strategy = if f.table_oid != 0 {
                match snapshot.relation(f.table_oid) {
                    Some(relation) => ctx.base_column_strategy(relation, f.attnum, &snapshot, &mut views),
                    None => ctx.caller.opaque.clone(),
                }
            } else {
                match derived.as_ref().and_then(|d| d.get(i)) {
                    Some(flow) => ctx.flow_strategy(flow, &snapshot, &mut views),
                    None => ctx.caller.opaque.clone(),
                }
            };
            columns.push(ColumnPlan {
                action: self.action(ctx, strategy, text_like(f.type_oid)),
                format: if f.format == 1 {
                    ColumnFormat::Binary
                } else {
                    ColumnFormat::Text
                },
                type_oid: f.type_oid,
            });
        }
        self.views = views;
        self.plan = RowPlan::new(columns, ctx.caller.detectors.clone());
        self.masking = !self.plan.is_passthrough();
        if self.masking {
            Rows::Inspect
        } else {
            self.limited()
        }
    }

    fn data_row(&mut self, body: &[u8], out: &mut BytesMut) -> RowAction {
        self.rows += 1;
        self.bytes += body.len() as u64;
        if let Some(abort) = self.over_limit() {
            return abort;
        }
        if !self.masking {
            return RowAction::Forward;
        }
        match rewrite_data_row(body, &self.plan, &self.key, out) {
            Ok(()) => RowAction::Replaced,
            Err(e) => RowAction::Abort {
                code: sqlstate::INTERNAL_ERROR.into(),
                message: format!("dbward: a row could not be masked, so the result is withheld: {e}"),
            },
        }
    }

    fn copy_out(&mut self, body: &[u8], context: Option<&Context>) -> Rows {
        let Some(ctx) = context.and_then(|c| c.downcast_ref::<StatementContext>()) else {
            return Rows::Pass;
        };
        self.start(ctx);
        if !ctx.caller.policy.masks_anything() {
            return self.limited();
        }
        let refuse = |why: &str| Rows::Abort {
            code: sqlstate::INSUFFICIENT_PRIVILEGE.into(),
            message: format!("dbward: {why}"),
        };
        let binary = match is_binary_copy(body) {
            Ok(b) => b,
            Err(e) => return refuse(&e.to_string()),
        };
        let snapshot = ctx.catalog.current().unwrap_or_else(|| ctx.snapshot.clone());
        let schema = CatalogSchema {
            snapshot: &snapshot,
            paths: &ctx.paths,
            user: &ctx.user,
        };
        let Some(text) = ctx.texts.first() else {
            return refuse("COPY of masked data cannot be traced");
        };
        let statements = crate::sql::parse_statements(text).unwrap_or_default();
        let Some(Some(statement)) = statements
            .iter()
            .find(|s| matches!(s, Some(sqlparser::ast::Statement::Copy { .. })))
        else {
            return refuse("COPY of masked data cannot be traced");
        };
        let flows = crate::sql::lineage::output_flows(statement, &schema);
        let mut views = std::mem::take(&mut self.views);
        let strategies: Option<Vec<Option<Strategy>>> = flows.map(|flows| {
            flows
                .iter()
                .map(|f| ctx.flow_strategy(f, &snapshot, &mut views))
                .collect()
        });
        self.views = views;
        let Some(strategies) = strategies else {
            return refuse("the columns of this COPY cannot be traced, and this caller's results are masked");
        };
        let detect = !ctx.caller.detectors.is_empty();
        if strategies.iter().all(Option::is_none) && !detect {
            return self.limited();
        }
        if binary {
            return refuse("COPY in binary format of masked columns is refused; use text or CSV format");
        }
        let Some((format, header)) = copy_format(statement) else {
            return refuse("the options of this COPY cannot be read, and it includes masked columns");
        };
        let columns = strategies
            .into_iter()
            .map(|s| self.action(ctx, s, true))
            .collect();
        self.copy = Some(
            CopyMasker::new(format, columns, ctx.caller.detectors.clone(), self.key.clone())
                .with_header(header),
        );
        Rows::Inspect
    }

    fn copy_data(&mut self, payload: &[u8], out: &mut BytesMut) -> RowAction {
        self.bytes += payload.len() as u64;
        if let Some(abort) = self.over_limit() {
            return abort;
        }
        let Some(copy) = self.copy.as_mut() else {
            return RowAction::Forward;
        };
        match copy.push(payload, out) {
            Ok(()) => RowAction::Replaced,
            Err(e) => RowAction::Abort {
                code: sqlstate::INTERNAL_ERROR.into(),
                message: format!("dbward: COPY data could not be masked, so it is withheld: {e}"),
            },
        }
    }

    fn copy_done(&mut self, _out: &mut BytesMut) -> RowAction {
        let Some(copy) = self.copy.as_mut() else {
            return RowAction::Forward;
        };
        match copy.finish() {
            Ok(()) => RowAction::Forward,
            Err(e) => RowAction::Abort {
                code: sqlstate::INTERNAL_ERROR.into(),
                message: format!("dbward: COPY data could not be masked, so it is withheld: {e}"),
            },
        }
    }

    fn result_end(&mut self) {
        self.masking = false;
        self.copy = None;
    }

    fn wants_messages(&self) -> bool {
        self.scrub || self.masks.load(std::sync::atomic::Ordering::Acquire)
    }

    fn message(&mut self, tag: u8, body: &[u8], out: &mut BytesMut) -> bool {
        scrub_message(tag, body, out)
    }

    fn statement_end(&mut self, end: &StatementEnd<'_>) {
        if let Some(log) = &self.log {
            super::record::result(log, end);
        }
    }

    fn before_ready(&mut self) -> Result<(), String> {
        match &self.log {
            Some(log) => super::record::before_ready(log),
            None => Ok(()),
        }
    }
}

impl GuardResults {
    /// Rows pass unless a limit needs counting.
    fn limited(&mut self) -> Rows {
        self.masking = false;
        if self.max_rows.is_some() || self.max_bytes.is_some() {
            Rows::Inspect
        } else {
            Rows::Pass
        }
    }

    fn over_limit(&self) -> Option<RowAction> {
        if let Some(max) = self.max_rows
            && self.rows > max
        {
            return Some(RowAction::Abort {
                code: sqlstate::PROGRAM_LIMIT_EXCEEDED.into(),
                message: format!(
                    "dbward: the result exceeds the caller's limit of {max} rows (maxRows), so the statement was ended"
                ),
            });
        }
        if let Some(max) = self.max_bytes
            && self.bytes > max
        {
            return Some(RowAction::Abort {
                code: sqlstate::PROGRAM_LIMIT_EXCEEDED.into(),
                message: format!(
                    "dbward: the result exceeds the caller's limit of {max} bytes (maxBytes), so the statement was ended"
                ),
            });
        }
        None
    }
}

/// The format of a `COPY ... TO STDOUT` from its options; `None` for binary or what cannot be read.
fn copy_format(statement: &sqlparser::ast::Statement) -> Option<(CopyFormat, bool)> {
    let sqlparser::ast::Statement::Copy {
        to,
        target,
        options,
        legacy_options,
        ..
    } = statement
    else {
        return None;
    };
    if !*to || !matches!(target, CopyTarget::Stdout) {
        return None;
    }
    let mut csv = false;
    let mut delimiter = None;
    let mut null = None;
    let mut quote = None;
    let mut escape = None;
    let mut header = false;
    for o in options {
        match o {
            CopyOption::Format(f) => match f.value.to_ascii_lowercase().as_str() {
                "csv" => csv = true,
                "text" => csv = false,
                _ => return None,
            },
            CopyOption::Delimiter(c) => delimiter = Some(*c),
            CopyOption::Null(n) => null = Some(n.clone()),
            CopyOption::Header(h) => header = *h,
            CopyOption::Quote(c) => quote = Some(*c),
            CopyOption::Escape(c) => escape = Some(*c),
            CopyOption::Encoding(_) => return None,
            _ => {}
        }
    }
    for o in legacy_options {
        match o {
            CopyLegacyOption::Binary => return None,
            CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
            CopyLegacyOption::Null(n) => null = Some(n.clone()),
            CopyLegacyOption::Csv(opts) => {
                csv = true;
                for c in opts {
                    match c {
                        CopyLegacyCsvOption::Header => header = true,
                        CopyLegacyCsvOption::Quote(q) => quote = Some(*q),
                        CopyLegacyCsvOption::Escape(e) => escape = Some(*e),
                        _ => {}
                    }
                }
            }
            _ => return None,
        }
    }
    let byte = |c: char| u8::try_from(c).ok().filter(u8::is_ascii);
    let format = if csv {
        let quote = match quote {
            Some(q) => byte(q)?,
            None => b'"',
        };
        CopyFormat::Csv {
            delimiter: match delimiter {
                Some(d) => byte(d)?,
                None => b',',
            },
            quote,
            escape: match escape {
                Some(e) => byte(e)?,
                None => quote,
            },
            null: null.unwrap_or_default().into_bytes().into(),
        }
    } else {
        CopyFormat::Text {
            delimiter: match delimiter {
                Some(d) => byte(d)?,
                None => b'\t',
            },
            null: null.unwrap_or_else(|| "\\N".into()).into_bytes().into(),
        }
    };
    Some((format, header))
}

/// Errors, notices and notifications for a caller whose results are masked: whatever may quote a
/// value is removed. Detail, context and internal-query fields go; messages of data errors (class 22)
/// and constraint violations (class 23) lose their quoted parts; messages raised by user code (class
/// P0, and notices with the generic codes 00000/01000) and notification payloads are withheld.
fn scrub_message(tag: u8, body: &[u8], out: &mut BytesMut) -> bool {
    if tag == be::NOTIFICATION_RESPONSE {
        // pid (4), channel, payload.
        let Some(pid) = body.get(..4) else {
            return false;
        };
        let rest = &body[4..];
        let Some(end) = rest.iter().position(|&b| b == 0) else {
            return false;
        };
        let channel = &rest[..end];
        let payload = &rest[end + 1..];
        if payload.len() <= 1 {
            return false;
        }
        put_message(out, tag, |b| {
            b.extend_from_slice(pid);
            b.extend_from_slice(channel);
            b.put_u8(0);
            put_cstr(b, "(payload withheld by dbward: it may carry masked data)");
        });
        return true;
    }
    let mut fields: Vec<(u8, &[u8])> = Vec::new();
    let mut pos = 0;
    while pos < body.len() && body[pos] != 0 {
        let kind = body[pos];
        let Some(end) = body[pos + 1..].iter().position(|&b| b == 0) else {
            return false;
        };
        fields.push((kind, &body[pos + 1..pos + 1 + end]));
        pos += end + 2;
    }
    let code = fields
        .iter()
        .find(|(k, _)| *k == b'C')
        .map(|(_, v)| *v)
        .unwrap_or(b"");
    let withheld =
        code.starts_with(b"P0") || (tag == be::NOTICE_RESPONSE && (code == b"00000" || code == b"01000"));
    let quoted = code.starts_with(b"22") || code.starts_with(b"23");
    let mut changed = false;
    put_message(out, tag, |b| {
        for (kind, value) in &fields {
            match kind {
                b'D' | b'W' | b'q' | b'P' | b'p' => {
                    changed = true;
                    continue;
                }
                b'M' if withheld => {
                    changed = true;
                    b.put_u8(b'M');
                    put_cstr(b, "(message withheld by dbward: it may carry masked data)");
                    continue;
                }
                b'M' if quoted => {
                    let scrubbed = scrub_quotes(value);
                    changed |= scrubbed.as_slice() != *value;
                    b.put_u8(b'M');
                    b.extend_from_slice(&scrubbed);
                    b.put_u8(0);
                    continue;
                }
                _ => {}
            }
            b.put_u8(*kind);
            b.extend_from_slice(value);
            b.put_u8(0);
        }
        b.put_u8(0);
    });
    if !changed {
        out.clear();
    }
    changed
}

/// Replaces the content of every `"..."` and `'...'` segment with `****`, and everything after the
/// first `: ` of a message such as `invalid input syntax for type integer: "..."`.
fn scrub_quotes(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut i = 0;
    while i < message.len() {
        let c = message[i];
        if c == b'"' || c == b'\'' {
            let close = message[i + 1..].iter().position(|&b| b == c).map(|p| i + 1 + p);
            out.push(c);
            out.extend_from_slice(b"****");
            match close {
                Some(end) => {
                    out.push(c);
                    i = end + 1;
                }
                None => break,
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_scrubbed() {
        assert_eq!(
            scrub_quotes(br#"invalid input syntax for type integer: "alice@example.com""#),
            br#"invalid input syntax for type integer: "****""#.to_vec()
        );
        assert_eq!(
            scrub_quotes(b"value 'x' and \"y"),
            b"value '****' and \"****".to_vec()
        );
    }

    #[test]
    fn details_go_and_raised_messages_are_withheld() {
        let mut body = Vec::new();
        for (k, v) in [
            (b'S', "ERROR"),
            (b'C', "23505"),
            (b'M', "duplicate key value violates unique constraint \"c_email\""),
            (b'D', "Key (email)=(a@b.c) already exists."),
        ] {
            body.push(k);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut out = BytesMut::new();
        assert!(scrub_message(be::ERROR_RESPONSE, &body, &mut out));
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains("a@b.c"));
        assert!(text.contains("duplicate key value"));

        let mut body = Vec::new();
        for (k, v) in [(b'S', "NOTICE"), (b'C', "00000"), (b'M', "alice@example.com")] {
            body.push(k);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        out.clear();
        assert!(scrub_message(be::NOTICE_RESPONSE, &body, &mut out));
        assert!(!String::from_utf8_lossy(&out).contains("alice"));
    }

    #[test]
    fn parses_row_descriptions() {
        let mut b = BytesMut::new();
        b.put_i16(2);
        for (name, oid, att) in [("id", 16384u32, 1i16), ("x", 0, 0)] {
            put_cstr(&mut b, name);
            b.put_u32(oid);
            b.put_i16(att);
            b.put_u32(23);
            b.put_i16(4);
            b.put_i32(-1);
            b.put_i16(0);
        }
        let f = parse_row_description(&b).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].table_oid, f[0].attnum, f[0].type_oid, f[0].format),
            (16384, 1, 23, 0)
        );
        assert!(parse_row_description(&b[..b.len() - 1]).is_none());
    }
}
