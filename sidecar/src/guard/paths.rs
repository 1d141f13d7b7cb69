//! The search paths a session may be using, and relation names resolved through them.
//!
//! The sidecar learns the session's search_path when the session starts. After that it sees every
//! `SET search_path`, but not always whether the server applied it: a SET inside a transaction that
//! later rolls back, `SET LOCAL`, or a SET in a failed transaction leave the server's path where it
//! was. So the session keeps every path it may be using (the initial one and each one set since) and
//! an unqualified name stands for every relation it resolves to under any of them: a statement is
//! allowed only if it would be allowed whichever of them the server uses (fail closed). Past
//! [`MAX_POSSIBLE`] paths, or after a change the sidecar cannot read (`set_config`), the path is
//! unknown and a name stands for the relations of that name in every schema.
//!
//! Temporary tables shadow everything else for their own session (PostgreSQL searches `pg_temp`
//! first). The catalog connection cannot tell which temporary schema is this session's, so a name
//! also stands for a relation of that name in any temporary schema.

use std::sync::Arc;

use crate::{
    catalog::{CatalogSnapshot, RelationInfo},
    sql::RelationName,
};

/// Paths kept at most before the path counts as unknown.
pub const MAX_POSSIBLE: usize = 4;

/// The search paths a session may be using. `None` stands for an unknown path.
#[derive(Debug, Clone)]
pub struct SearchPaths {
    initial: Option<Arc<[String]>>,
    possible: Vec<Option<Arc<[String]>>>,
    /// Changes whenever `possible` changes (decisions cached under an older version are stale).
    version: u64,
}

impl SearchPaths {
    /// A session whose server reported `initial` (`None`: unknown).
    pub fn new(initial: Option<Vec<String>>) -> Self {
        let initial: Option<Arc<[String]>> = initial.map(Arc::from);
        Self {
            possible: vec![initial.clone()],
            initial,
            version: 0,
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn possible(&self) -> &[Option<Arc<[String]>>] {
        &self.possible
    }

    /// The session may now be using `path` (`None`: something the sidecar cannot read).
    pub fn add(&mut self, path: Option<Vec<String>>) {
        let path: Option<Arc<[String]>> = path.map(Arc::from);
        self.add_shared(path);
    }

    /// `RESET search_path`, `SET search_path TO DEFAULT`, `DISCARD ALL`: the initial path again.
    pub fn add_initial(&mut self) {
        self.add_shared(self.initial.clone());
    }

    fn add_shared(&mut self, path: Option<Arc<[String]>>) {
        if self.possible.iter().any(|p| p.is_none()) || self.possible.contains(&path) {
            return;
        }
        self.version += 1;
        if path.is_none() || self.possible.len() >= MAX_POSSIBLE {
            self.possible = vec![None];
        } else {
            self.possible.push(path);
        }
    }
}

/// Parses a `SHOW search_path` answer (`"$user", public`) into its entries, unquoted.
pub fn parse_search_path(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            break;
        };
        let mut entry = String::new();
        if first == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        entry.push('"');
                    } else {
                        break;
                    }
                } else {
                    entry.push(c);
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                entry.push(c);
                chars.next();
            }
            let trimmed = entry.trim_end().to_owned();
            entry = trimmed;
        }
        out.push(entry);
    }
    out
}

/// Every relation `name` may denote in this session (see the module docs); empty when none exists.
pub fn candidates<'a>(
    snapshot: &'a CatalogSnapshot,
    name: &RelationName,
    paths: &SearchPaths,
    user: &str,
) -> Vec<&'a RelationInfo> {
    let mut out: Vec<&RelationInfo> = Vec::new();
    let mut push = |r: &'a RelationInfo| {
        if !out.iter().any(|o| o.oid == r.oid) {
            out.push(r);
        }
    };
    if let Some(schema) = &name.schema {
        let schema = if schema == "pg_temp" { None } else { Some(schema) };
        match schema {
            Some(s) => {
                if let Some(r) = snapshot.lookup(s, &name.name) {
                    push(r);
                }
            }
            None => {
                for &oid in snapshot.schemas_with(&name.name) {
                    if let Some(r) = snapshot.relation(oid).filter(|r| is_temp_schema(&r.schema)) {
                        push(r);
                    }
                }
            }
        }
        return out;
    }
    for &oid in snapshot.schemas_with(&name.name) {
        if let Some(r) = snapshot.relation(oid).filter(|r| is_temp_schema(&r.schema)) {
            push(r);
        }
    }
    for path in paths.possible() {
        match path {
            Some(path) => {
                if let Some(r) = snapshot.resolve(&name.name, path, user) {
                    push(r);
                }
            }
            None => {
                for &oid in snapshot.schemas_with(&name.name) {
                    if let Some(r) = snapshot.relation(oid) {
                        push(r);
                    }
                }
            }
        }
    }
    out
}

fn is_temp_schema(schema: &str) -> bool {
    schema.starts_with("pg_temp_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ColumnInfo, RelationKind};

    fn rel(oid: u32, schema: &str, name: &str) -> RelationInfo {
        RelationInfo {
            oid,
            schema: schema.into(),
            name: name.into(),
            kind: RelationKind::Table,
            columns: vec![ColumnInfo {
                attnum: 1,
                name: "id".into(),
                type_oid: 23,
            }],
            depends_on: vec![],
            definition: None,
        }
    }

    fn snap() -> CatalogSnapshot {
        CatalogSnapshot::from_parts(
            1,
            ["public", "a", "b", "pg_catalog", "pg_temp_3", "app"].map(String::from),
            [
                rel(10, "public", "t"),
                rel(11, "a", "t"),
                rel(12, "b", "u"),
                rel(13, "pg_temp_3", "tmp"),
                rel(14, "app", "t"),
            ],
        )
    }

    fn names(v: Vec<&RelationInfo>) -> Vec<String> {
        v.iter().map(|r| format!("{}.{}", r.schema, r.name)).collect()
    }

    fn unq(n: &str) -> RelationName {
        RelationName::new(None, n)
    }

    #[test]
    fn parses_show_output() {
        assert_eq!(parse_search_path("\"$user\", public"), vec!["$user", "public"]);
        assert_eq!(parse_search_path("a,\"B c\" , d"), vec!["a", "B c", "d"]);
        assert_eq!(parse_search_path("\"x\"\"y\""), vec!["x\"y"]);
        assert!(parse_search_path("").is_empty());
    }

    #[test]
    fn resolves_through_the_known_path() {
        let s = snap();
        let p = SearchPaths::new(Some(vec!["$user".into(), "public".into()]));
        assert_eq!(names(candidates(&s, &unq("t"), &p, "app")), vec!["app.t"]);
        assert_eq!(names(candidates(&s, &unq("t"), &p, "other")), vec!["public.t"]);
        assert!(candidates(&s, &unq("u"), &p, "app").is_empty());
        let q = RelationName::new(Some("b"), "u");
        assert_eq!(names(candidates(&s, &q, &p, "app")), vec!["b.u"]);
    }

    #[test]
    fn every_possible_path_counts() {
        let s = snap();
        let mut p = SearchPaths::new(Some(vec!["public".into()]));
        let v0 = p.version();
        p.add(Some(vec!["a".into()]));
        assert_ne!(p.version(), v0);
        assert_eq!(names(candidates(&s, &unq("t"), &p, "x")), vec!["public.t", "a.t"]);
        p.add(Some(vec!["a".into()]));
        assert_eq!(p.possible().len(), 2, "no duplicates");
    }

    #[test]
    fn unknown_path_means_every_schema() {
        let s = snap();
        let mut p = SearchPaths::new(Some(vec!["public".into()]));
        for i in 0..MAX_POSSIBLE {
            p.add(Some(vec![format!("s{i}")]));
        }
        assert_eq!(p.possible(), &[None]);
        assert_eq!(names(candidates(&s, &unq("t"), &p, "x")).len(), 3);
        let mut q = SearchPaths::new(None);
        q.add(Some(vec!["a".into()]));
        assert_eq!(q.possible(), &[None], "unknown stays unknown");
    }

    #[test]
    fn temporary_tables_shadow() {
        let s = snap();
        let p = SearchPaths::new(Some(vec!["public".into()]));
        assert_eq!(names(candidates(&s, &unq("tmp"), &p, "x")), vec!["pg_temp_3.tmp"]);
        let q = RelationName::new(Some("pg_temp"), "tmp");
        assert_eq!(names(candidates(&s, &q, &p, "x")), vec!["pg_temp_3.tmp"]);
    }
}
