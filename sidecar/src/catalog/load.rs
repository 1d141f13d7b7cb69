//! Reading a snapshot over the side connection: four catalog queries in one read-only
//! repeatable-read transaction, so that relations, columns and dependencies agree with each other.

use std::collections::HashMap;

use super::{
    CatalogError,
    snapshot::{CatalogSnapshot, ColumnInfo, RelationInfo, RelationKind},
    wire::{Budget, SideConnection},
};

/// The most rows one catalog query may return (schemas, relations, columns or view dependencies);
/// a catalog with more is refused rather than read in part.
pub const MAX_ROWS: usize = 1_000_000;
/// The most bytes one load may read from the server in all.
pub const MAX_BYTES: usize = 256 * 1024 * 1024;

/// The relation kinds a snapshot holds, as an SQL list.
const KINDS: &str = "('r', 'p', 'v', 'm', 'f', 'S')";

fn schemas_sql() -> String {
    format!(
        "SELECT n.nspname FROM pg_catalog.pg_namespace n LIMIT {}",
        MAX_ROWS + 1
    )
}

fn relations_sql() -> String {
    format!(
        "SELECT c.oid, n.nspname, c.relname, c.relkind, \
           CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid, true) END \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN {KINDS} LIMIT {}",
        MAX_ROWS + 1
    )
}

fn columns_sql() -> String {
    format!(
        "SELECT a.attrelid, a.attnum, a.attname, a.atttypid \
         FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
         WHERE c.relkind IN {KINDS} AND a.attnum > 0 AND NOT a.attisdropped LIMIT {}",
        MAX_ROWS + 1
    )
}

fn dependencies_sql() -> String {
    format!(
        "SELECT DISTINCT r.ev_class, d.refobjid, d.refobjsubid \
         FROM pg_catalog.pg_depend d \
           JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid \
           JOIN pg_catalog.pg_class v ON v.oid = r.ev_class \
         WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
           AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass \
           AND d.refobjsubid > 0 AND d.refobjid <> r.ev_class AND v.relkind IN ('v', 'm') LIMIT {}",
        MAX_ROWS + 1
    )
}

/// Loads a snapshot numbered `version`. Whatever happens, the transaction is ended when the session
/// is still in sync; a session that is not idle afterwards must be dropped.
pub(super) async fn load(conn: &mut SideConnection, version: u64) -> Result<CatalogSnapshot, CatalogError> {
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    let parts = read_parts(conn).await;
    if conn.is_synced() {
        let ended = conn
            .execute(if parts.is_ok() { "COMMIT" } else { "ROLLBACK" })
            .await;
        if let (Ok(_), Err(e)) = (&parts, ended) {
            return Err(e);
        }
    }
    let (schemas, relations) = parts?;
    Ok(CatalogSnapshot::from_parts(
        version,
        schemas,
        relations.into_values(),
    ))
}

type Parts = (Vec<String>, HashMap<u32, RelationInfo>);

async fn read_parts(conn: &mut SideConnection) -> Result<Parts, CatalogError> {
    let mut budget = Budget {
        max_rows: MAX_ROWS,
        max_bytes: MAX_BYTES,
        bytes_read: 0,
    };

    let mut schemas = Vec::new();
    conn.query(&schemas_sql(), &mut budget, |[name]| {
        schemas.push(required(name)?.to_owned());
        Ok(())
    })
    .await?;

    let mut relations = HashMap::new();
    conn.query(&relations_sql(), &mut budget, |[oid, schema, name, kind, def]| {
        let oid = number(oid)?;
        let kind = RelationKind::from_relkind(required(kind)?)
            .ok_or_else(|| CatalogError::Protocol("a catalog query returned an unknown relkind".into()))?;
        relations.insert(
            oid,
            RelationInfo {
                oid,
                schema: required(schema)?.to_owned(),
                name: required(name)?.to_owned(),
                kind,
                columns: Vec::new(),
                depends_on: Vec::new(),
                definition: def.map(str::to_owned),
            },
        );
        Ok(())
    })
    .await?;

    conn.query(&columns_sql(), &mut budget, |[rel, attnum, name, type_oid]| {
        if let Some(r) = relations.get_mut(&number::<u32>(rel)?) {
            r.columns.push(ColumnInfo {
                attnum: number(attnum)?,
                name: required(name)?.to_owned(),
                type_oid: number(type_oid)?,
            });
        }
        Ok(())
    })
    .await?;

    conn.query(&dependencies_sql(), &mut budget, |[view, rel, attnum]| {
        if let Some(v) = relations.get_mut(&number::<u32>(view)?) {
            v.depends_on.push((number(rel)?, number(attnum)?));
        }
        Ok(())
    })
    .await?;

    Ok((schemas, relations))
}

fn required(field: Option<&str>) -> Result<&str, CatalogError> {
    field.ok_or_else(|| CatalogError::Protocol("a catalog query returned NULL where a value belongs".into()))
}

fn number<T: std::str::FromStr>(field: Option<&str>) -> Result<T, CatalogError> {
    required(field)?
        .parse()
        .map_err(|_| CatalogError::Protocol("a catalog query returned a malformed number".into()))
}
