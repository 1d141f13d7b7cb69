//! [`CatalogSnapshot`]: an immutable picture of one database's relations, columns and view
//! dependencies, with the lookups the proxy needs on its hot path.

use std::collections::HashMap;

/// What kind of relation a `pg_class` row is (its `relkind`). Other kinds (indexes, composite types,
/// TOAST tables) are not part of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelationKind {
    /// `r`
    Table,
    /// `p`
    PartitionedTable,
    /// `v`
    View,
    /// `m`
    MaterializedView,
    /// `f`
    ForeignTable,
    /// `S`
    Sequence,
}

impl RelationKind {
    /// The kind for a `relkind` character, `None` for kinds a snapshot does not hold.
    pub fn from_relkind(relkind: &str) -> Option<Self> {
        Some(match relkind {
            "r" => RelationKind::Table,
            "p" => RelationKind::PartitionedTable,
            "v" => RelationKind::View,
            "m" => RelationKind::MaterializedView,
            "f" => RelationKind::ForeignTable,
            "S" => RelationKind::Sequence,
            _ => return None,
        })
    }

    /// The `relkind` character.
    pub fn relkind(self) -> char {
        match self {
            RelationKind::Table => 'r',
            RelationKind::PartitionedTable => 'p',
            RelationKind::View => 'v',
            RelationKind::MaterializedView => 'm',
            RelationKind::ForeignTable => 'f',
            RelationKind::Sequence => 'S',
        }
    }

    /// Views and materialized views: relations defined by a query, with [`RelationInfo::depends_on`].
    pub fn is_view(self) -> bool {
        matches!(self, RelationKind::View | RelationKind::MaterializedView)
    }
}

/// One column of a relation (`pg_attribute`, not dropped, `attnum > 0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub attnum: i16,
    pub name: String,
    pub type_oid: u32,
}

/// One relation (`pg_class` row of a kind in [`RelationKind`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationInfo {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub kind: RelationKind,
    /// The live user columns, ordered by `attnum` (which has gaps where columns were dropped).
    pub columns: Vec<ColumnInfo>,
    /// For views and materialized views: the `(relation oid, attnum)` of every column their query
    /// references, sorted and without duplicates; empty for other kinds. References to a whole row
    /// (`SELECT t FROM t`) are recorded by PostgreSQL against the relation, not a column, and are not
    /// in this list.
    pub depends_on: Vec<(u32, i16)>,
    /// For views and materialized views: `pg_get_viewdef(oid, true)`.
    pub definition: Option<String>,
}

impl RelationInfo {
    /// The column with this `attnum`, if it exists and is not dropped.
    pub fn column(&self, attnum: i16) -> Option<&ColumnInfo> {
        let i = self.columns.binary_search_by_key(&attnum, |c| c.attnum).ok()?;
        self.columns.get(i)
    }

    /// The column with this exact (case-sensitive, already unquoted) name.
    pub fn column_named(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// The catalog of one database as it was when loaded. Never changes; a newer load makes a new one.
#[derive(Debug, Default)]
pub struct CatalogSnapshot {
    version: u64,
    relations: Vec<RelationInfo>,
    /// oid -> index into `relations`.
    by_oid: HashMap<u32, usize>,
    /// schema name -> relation name -> index into `relations`. Every schema of `pg_namespace` is a
    /// key, also those without relations.
    by_schema: HashMap<String, HashMap<String, usize>>,
    /// relation name -> oids in every schema, ascending.
    by_name: HashMap<String, Vec<u32>>,
}

impl CatalogSnapshot {
    /// Builds a snapshot from plain data, for tests and tools (the loader uses it as well).
    ///
    /// `schemas` lists the schemas that exist; the schema of every relation is added when missing.
    /// Columns are sorted by `attnum` and `depends_on` is sorted and deduplicated. When two relations
    /// have the same oid, or the same schema and name, the first one wins.
    pub fn from_parts(
        version: u64,
        schemas: impl IntoIterator<Item = String>,
        relations: impl IntoIterator<Item = RelationInfo>,
    ) -> Self {
        let mut snap = CatalogSnapshot {
            version,
            ..Default::default()
        };
        for s in schemas {
            snap.by_schema.entry(s).or_default();
        }
        for mut rel in relations {
            if snap.by_oid.contains_key(&rel.oid) {
                continue;
            }
            let names = snap.by_schema.entry(rel.schema.clone()).or_default();
            if names.contains_key(&rel.name) {
                continue;
            }
            let index = snap.relations.len();
            names.insert(rel.name.clone(), index);
            snap.by_oid.insert(rel.oid, index);
            snap.by_name.entry(rel.name.clone()).or_default().push(rel.oid);
            rel.columns.sort_by_key(|c| c.attnum);
            rel.columns.dedup_by_key(|c| c.attnum);
            rel.depends_on.sort_unstable();
            rel.depends_on.dedup();
            snap.relations.push(rel);
        }
        for oids in snap.by_name.values_mut() {
            oids.sort_unstable();
        }
        snap
    }

    /// Increases by one with every successful load of a [`Catalog`](super::Catalog), starting at 1.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Every relation, in no particular order.
    pub fn relations(&self) -> impl ExactSizeIterator<Item = &RelationInfo> {
        self.relations.iter()
    }

    /// The relation with this oid.
    pub fn relation(&self, oid: u32) -> Option<&RelationInfo> {
        self.relations.get(*self.by_oid.get(&oid)?)
    }

    /// The relation and column a result column comes from (RowDescription's table OID and attnum).
    pub fn column(&self, oid: u32, attnum: i16) -> Option<(&RelationInfo, &ColumnInfo)> {
        let rel = self.relation(oid)?;
        Some((rel, rel.column(attnum)?))
    }

    /// The relation `schema.name` (both already unquoted, case-sensitive).
    pub fn lookup(&self, schema: &str, name: &str) -> Option<&RelationInfo> {
        self.relations.get(*self.by_schema.get(schema)?.get(name)?)
    }

    /// The oids of every relation called `name`, in any schema, ascending.
    pub fn schemas_with(&self, name: &str) -> &[u32] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }

    /// Whether the schema exists (it may hold no relations). `pg_temp_N` and `pg_toast_temp_N`
    /// schemas are ordinary schemas here.
    pub fn has_schema(&self, name: &str) -> bool {
        self.by_schema.contains_key(name)
    }

    /// Resolves an unqualified relation name as PostgreSQL does for the `search_path` entries
    /// `search_path` (already split and unquoted): `pg_catalog` first unless the path names it, then
    /// the entries in order, where `$user` (or `"$user"`) stands for `user` and schemas that do not
    /// exist are skipped. The first schema holding a relation of that name wins.
    ///
    /// The session's temporary schema is not searched: a caller that knows it replaces `pg_temp` in
    /// the path by the real `pg_temp_N` name, and puts it first when the path does not name it.
    pub fn resolve(&self, name: &str, search_path: &[String], user: &str) -> Option<&RelationInfo> {
        let implicit_catalog = (!search_path.iter().any(|s| s == "pg_catalog")).then_some("pg_catalog");
        implicit_catalog
            .into_iter()
            .chain(search_path.iter().map(|s| match s.as_str() {
                "$user" | "\"$user\"" => user,
                schema => schema,
            }))
            .find_map(|schema| self.lookup(schema, name))
    }
}
