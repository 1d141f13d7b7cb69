//! Lookups and name resolution over a hand-built snapshot.

use super::*;

fn rel(oid: u32, schema: &str, name: &str, kind: RelationKind, columns: &[(i16, &str)]) -> RelationInfo {
    RelationInfo {
        oid,
        schema: schema.into(),
        name: name.into(),
        kind,
        columns: columns
            .iter()
            .map(|&(attnum, name)| ColumnInfo {
                attnum,
                name: name.into(),
                type_oid: 25,
            })
            .collect(),
        depends_on: Vec::new(),
        definition: None,
    }
}

/// pg_catalog.pg_class (1259), pg_catalog.t (10), public.t (20), app.t (30), app.only_app (31),
/// "Mixed".t (40), pg_temp_3.t (50), public.v (60, a view over app.t.secret); schema `empty`
/// without relations.
fn snapshot() -> CatalogSnapshot {
    let mut view = rel(60, "public", "v", RelationKind::View, &[(1, "s")]);
    view.depends_on = vec![(30, 3), (30, 3), (30, 1)];
    view.definition = Some(" SELECT secret AS s\n   FROM app.t;".into());
    CatalogSnapshot::from_parts(
        7,
        ["pg_catalog", "public", "app", "Mixed", "pg_temp_3", "empty"].map(String::from),
        [
            rel(
                1259,
                "pg_catalog",
                "pg_class",
                RelationKind::Table,
                &[(1, "oid"), (2, "relname")],
            ),
            rel(10, "pg_catalog", "t", RelationKind::Table, &[]),
            rel(20, "public", "t", RelationKind::Table, &[(1, "x")]),
            // Out of order, with a gap where column 2 was dropped.
            rel(30, "app", "t", RelationKind::Table, &[(3, "secret"), (1, "id")]),
            rel(31, "app", "only_app", RelationKind::Sequence, &[]),
            rel(40, "Mixed", "t", RelationKind::Table, &[]),
            rel(50, "pg_temp_3", "t", RelationKind::Table, &[]),
            view,
            // Duplicates of an existing oid and of an existing name are ignored.
            rel(20, "other", "dup", RelationKind::Table, &[]),
            rel(99, "public", "t", RelationKind::View, &[]),
        ],
    )
}

fn path(entries: &[&str]) -> Vec<String> {
    entries.iter().map(|s| s.to_string()).collect()
}

fn resolved(s: &CatalogSnapshot, name: &str, entries: &[&str], user: &str) -> Option<u32> {
    s.resolve(name, &path(entries), user).map(|r| r.oid)
}

#[test]
fn looks_up_relations_and_columns_by_oid() {
    let s = snapshot();
    assert_eq!(s.version(), 7);
    assert_eq!(s.relations().len(), 8);
    let t = s.relation(30).unwrap();
    assert_eq!(
        (t.schema.as_str(), t.name.as_str(), t.kind),
        ("app", "t", RelationKind::Table)
    );
    assert_eq!(t.columns.iter().map(|c| c.attnum).collect::<Vec<_>>(), [1, 3]);
    let (r, c) = s.column(30, 3).unwrap();
    assert_eq!(
        (r.name.as_str(), c.name.as_str(), c.type_oid),
        ("t", "secret", 25)
    );
    assert!(s.column(30, 2).is_none(), "dropped column");
    assert!(s.column(30, 0).is_none());
    assert!(s.column(30, -1).is_none(), "system column");
    assert!(s.column(12345, 1).is_none());
    assert!(s.relation(99).is_none());
    assert_eq!(t.column_named("id").map(|c| c.attnum), Some(1));
    assert_eq!(s.relation(20).unwrap().schema, "public");
}

#[test]
fn views_keep_their_dependencies_sorted_and_unique() {
    let s = snapshot();
    let v = s.lookup("public", "v").unwrap();
    assert!(v.kind.is_view());
    assert_eq!(v.depends_on, [(30, 1), (30, 3)]);
    assert!(v.definition.as_deref().unwrap().contains("secret"));
    assert!(!RelationKind::Sequence.is_view());
}

#[test]
fn looks_up_by_qualified_name_and_by_name() {
    let s = snapshot();
    assert_eq!(s.lookup("app", "t").map(|r| r.oid), Some(30));
    assert_eq!(s.lookup("Mixed", "t").map(|r| r.oid), Some(40));
    assert!(s.lookup("mixed", "t").is_none(), "names are case-sensitive");
    assert!(s.lookup("app", "T").is_none());
    assert!(s.lookup("nope", "t").is_none());
    assert_eq!(s.schemas_with("t"), [10, 20, 30, 40, 50]);
    assert_eq!(s.schemas_with("only_app"), [31]);
    assert!(s.schemas_with("missing").is_empty());
    for schema in ["empty", "pg_temp_3", "Mixed", "pg_catalog"] {
        assert!(s.has_schema(schema), "{schema}");
    }
    assert!(!s.has_schema("mixed"));
    assert!(!s.has_schema("pg_temp"));
}

#[test]
fn resolves_through_search_path() {
    let s = snapshot();
    #[rustfmt::skip]
    let cases: &[(&str, &[&str], &str, Option<u32>)] = &[
        // pg_catalog comes first when the path does not name it.
        ("t", &["public"], "u", Some(10)),
        ("pg_class", &["app", "public"], "u", Some(1259)),
        // Named explicitly, pg_catalog is searched where it stands.
        ("t", &["public", "pg_catalog"], "u", Some(20)),
        ("t", &["app", "pg_catalog", "public"], "u", Some(30)),
        ("pg_class", &["public", "pg_catalog"], "u", Some(1259)),
        // $user, quoted or not, is the user's schema; skipped when it does not exist.
        ("only_app", &["$user", "public"], "app", Some(31)),
        ("only_app", &["\"$user\"", "public"], "app", Some(31)),
        ("v", &["$user", "public"], "nobody", Some(60)),
        ("v", &["\"$user\"", "public"], "nobody", Some(60)),
        // Missing and empty schemas are skipped.
        ("v", &["nope", "empty", "public"], "u", Some(60)),
        ("only_app", &["public", "pg_catalog", "app"], "u", Some(31)),
        // Not found anywhere on the path, even though it exists elsewhere.
        ("only_app", &["public"], "u", None),
        ("v", &[], "u", None),
        ("missing", &["app", "public"], "u", None),
        // The temporary schema is never searched implicitly, only when named.
        ("t", &["pg_temp", "public", "pg_catalog"], "u", Some(20)),
        ("t", &["pg_temp_3", "pg_catalog"], "u", Some(50)),
        // Case matters.
        ("t", &["mixed", "Mixed", "pg_catalog"], "u", Some(40)),
        ("T", &["public"], "u", None),
    ];
    for &(name, entries, user, want) in cases {
        assert_eq!(
            resolved(&s, name, entries, user),
            want,
            "{name} via {entries:?} as {user}"
        );
    }
}

#[test]
fn errors_read_well_and_carry_sqlstates() {
    let e = CatalogError::Server {
        code: "42501".into(),
        message: "permission denied for table pg_class".into(),
    };
    assert_eq!(
        e.client_message("orders"),
        "dbward could not read the catalog of connection \"orders\": the database reported an error: \
         permission denied for table pg_class (SQLSTATE 42501)"
    );
    assert_eq!(e.sqlstate(), "42501");
    let big = CatalogError::TooLarge {
        what: "rows in one catalog query",
        limit: MAX_ROWS,
    };
    assert!(big.to_string().starts_with("catalog too large"));
    assert_eq!(big.sqlstate(), "54000");
    assert_eq!(
        CatalogError::Timeout(Duration::from_millis(1500)).to_string(),
        "reading the catalog took longer than 1.5 s"
    );
    assert_eq!(CatalogError::Connect("x".into()).sqlstate(), "08006");
}

#[test]
fn relkinds_round_trip() {
    for k in ["r", "p", "v", "m", "f", "S"] {
        let kind = RelationKind::from_relkind(k).unwrap();
        assert_eq!(kind.relkind().to_string(), k);
    }
    assert!(RelationKind::from_relkind("i").is_none());
    assert!(RelationKind::from_relkind("c").is_none());
}
