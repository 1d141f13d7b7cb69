//! Classification of one parsed statement into its [`Effects`].

use sqlparser::ast::{
    CloseCursor, CommentObject, CopySource, CopyTarget, DiscardObject, Expr, ObjectName, ObjectType, Reset,
    ResetStatement, Set, SetExpr, Statement, UtilityOption, Value,
};

use super::{
    effects::{Effects, Operation, SessionChange},
    names, walk,
};

/// The effects of one parsed statement. Never fails: what is not understood is `unknown`.
pub(crate) fn classify(stmt: &Statement) -> Effects {
    let mut e = Effects::default();
    let ops = |e: &mut Effects, list: &[Operation]| e.operations.extend(list.iter().copied());
    match stmt {
        Statement::Query(q) => {
            // `WITH ... INSERT/UPDATE/DELETE/MERGE` is a query whose body is the DML statement.
            if !is_dml_body(&q.body) {
                ops(&mut e, &[Operation::Select]);
            }
            walk::walk(q, &mut e);
        }
        Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) | Statement::Merge(_) => {
            walk::walk(stmt, &mut e);
        }
        Statement::Explain {
            analyze,
            options,
            statement,
            ..
        } => {
            ops(&mut e, &[Operation::Utility]);
            if *analyze || options.as_deref().is_some_and(explain_analyzes) {
                merge(&mut e, classify(statement));
            }
        }
        Statement::Prepare { name, statement, .. } => {
            let inner = classify(statement);
            merge(&mut e, inner.clone());
            e.session.push(SessionChange::Prepare {
                name: names::ident(name),
                effects: Box::new(inner),
            });
        }
        Statement::Execute {
            name: Some(name),
            parameters,
            immediate: false,
            into,
            using,
            ..
        } if into.is_empty() && using.is_empty() => {
            // Parameters may call functions; the statement's own effects are the prepared ones.
            walk::walk(parameters, &mut e);
            e.session.push(SessionChange::Execute {
                name: names::function(name),
            });
        }
        Statement::Deallocate { name, .. } => {
            ops(&mut e, &[Operation::Utility]);
            let all = name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all");
            e.session
                .push(SessionChange::Deallocate((!all).then(|| names::ident(name))));
        }
        Statement::Declare { stmts } => {
            for d in stmts {
                match &d.for_query {
                    Some(q) => {
                        let mut inner = Effects::default();
                        inner.operations.insert(Operation::Select);
                        walk::walk(q, &mut inner);
                        for n in &d.names {
                            let effects = Box::new(inner.clone());
                            e.session.push(SessionChange::DeclareCursor {
                                name: names::ident(n),
                                effects,
                            });
                        }
                        merge(&mut e, inner);
                    }
                    None => return Effects::unknown(),
                }
            }
        }
        Statement::Fetch { name, into: None, .. } => {
            e.session.push(SessionChange::Fetch {
                cursor: names::ident(name),
            });
        }
        Statement::Close { cursor } => {
            ops(&mut e, &[Operation::Utility]);
            let c = match cursor {
                CloseCursor::All => None,
                CloseCursor::Specific { name } => Some(names::ident(name)),
            };
            e.session.push(SessionChange::CloseCursor(c));
        }
        Statement::LISTEN { channel } | Statement::UNLISTEN { channel } => {
            ops(&mut e, &[Operation::Utility]);
            e.session.push(SessionChange::Listen(names::ident(channel)));
        }
        Statement::NOTIFY { channel, .. } => {
            ops(&mut e, &[Operation::Utility]);
            e.session.push(SessionChange::Notify(names::ident(channel)));
        }
        Statement::Copy {
            source, to, target, ..
        } => copy(source, *to, target, &mut e),
        Statement::Call(f) => {
            ops(&mut e, &[Operation::Call]);
            // The procedure itself is listed with the other calls by the walk.
            walk::walk(stmt, &mut e);
            e.functions.insert(names::function(&f.name));
        }
        Statement::Set(set) => self::set(set, &mut e),
        Statement::Reset(ResetStatement { reset }) => match reset {
            Reset::ALL => {
                ops(&mut e, &[Operation::Set]);
                e.session.push(SessionChange::SearchPath(None));
            }
            Reset::SessionAuthorization => ops(&mut e, &[Operation::Role]),
            Reset::ConfigurationParameter(name) => match names::function(name).as_str() {
                "search_path" => {
                    ops(&mut e, &[Operation::Set]);
                    e.session.push(SessionChange::SearchPath(None));
                }
                "role" | "session_authorization" => ops(&mut e, &[Operation::Role]),
                _ => ops(&mut e, &[Operation::Set]),
            },
        },
        Statement::ShowVariable { .. } | Statement::ShowVariables { .. } => ops(&mut e, &[Operation::Set]),
        Statement::StartTransaction { statements, .. } if statements.is_empty() => {
            ops(&mut e, &[Operation::Transaction])
        }
        Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => ops(&mut e, &[Operation::Transaction]),
        Statement::Grant(_) | Statement::Revoke(_) => ops(&mut e, &[Operation::Grant]),
        Statement::CreateRole(_)
        | Statement::AlterRole { .. }
        | Statement::CreateUser(_)
        | Statement::AlterUser(_) => ops(&mut e, &[Operation::Role]),
        Statement::Drop {
            object_type: ObjectType::Role | ObjectType::User,
            ..
        } => ops(&mut e, &[Operation::Role]),
        Statement::Drop {
            object_type,
            names: objects,
            ..
        } => {
            ops(&mut e, &[Operation::Ddl]);
            if is_relation_kind(object_type) {
                write_all(objects.iter(), &mut e);
            }
        }
        Statement::Truncate(t) => {
            ops(&mut e, &[Operation::Truncate]);
            write_all(t.table_names.iter().map(|t| &t.name), &mut e);
        }
        Statement::CreateTable(ct) => {
            ops(&mut e, &[Operation::Ddl]);
            write_all([&ct.name], &mut e);
            if ct.query.is_some() {
                ops(&mut e, &[Operation::Select]);
            }
            walk::walk(stmt, &mut e);
        }
        Statement::CreateView(cv) => {
            ops(&mut e, &[Operation::Ddl]);
            write_all([&cv.name], &mut e);
            walk::walk(stmt, &mut e);
        }
        Statement::CreateIndex(ci) => {
            ops(&mut e, &[Operation::Ddl]);
            write_all([&ci.table_name], &mut e);
            walk::walk(stmt, &mut e);
        }
        Statement::AlterTable(at) => {
            ops(&mut e, &[Operation::Ddl]);
            write_all([&at.name], &mut e);
            walk::walk(stmt, &mut e);
        }
        Statement::AlterView { name, .. } | Statement::CreateSequence { name, .. } => {
            ops(&mut e, &[Operation::Ddl]);
            write_all([name], &mut e);
            walk::walk(stmt, &mut e);
        }
        Statement::CreateTrigger(t) => {
            ops(&mut e, &[Operation::Ddl]);
            write_all([&t.table_name], &mut e);
        }
        Statement::Comment {
            object_type,
            object_name,
            ..
        } => {
            ops(&mut e, &[Operation::Ddl]);
            comment_target(object_type, object_name, &mut e);
        }
        Statement::CreateSchema { .. }
        | Statement::CreateDatabase { .. }
        | Statement::CreateFunction(_)
        | Statement::CreateProcedure { .. }
        | Statement::CreateExtension(_)
        | Statement::CreateType { .. }
        | Statement::CreateDomain(_)
        | Statement::CreatePolicy(_)
        | Statement::CreateServer(_)
        | Statement::CreateOperator(_)
        | Statement::CreateOperatorFamily(_)
        | Statement::CreateOperatorClass(_)
        | Statement::CreateCollation(_)
        | Statement::CreateTextSearch(_)
        | Statement::AlterSchema(_)
        | Statement::AlterIndex { .. }
        | Statement::AlterFunction(_)
        | Statement::AlterType(_)
        | Statement::AlterCollation(_)
        | Statement::AlterOperator(_)
        | Statement::AlterOperatorFamily(_)
        | Statement::AlterOperatorClass(_)
        | Statement::AlterTextSearch(_)
        | Statement::AlterPolicy(_)
        | Statement::DropFunction(_)
        | Statement::DropDomain(_)
        | Statement::DropProcedure { .. }
        | Statement::DropPolicy(_)
        | Statement::DropTrigger(_)
        | Statement::DropExtension(_)
        | Statement::DropOperator(_)
        | Statement::DropOperatorFamily(_)
        | Statement::DropOperatorClass(_) => {
            ops(&mut e, &[Operation::Ddl]);
            walk::walk(stmt, &mut e);
        }
        Statement::Vacuum(_) | Statement::Analyze(_) | Statement::Lock(_) | Statement::Load { .. } => {
            ops(&mut e, &[Operation::Utility])
        }
        Statement::Discard { object_type } => {
            ops(&mut e, &[Operation::Utility]);
            if matches!(object_type, DiscardObject::ALL) {
                e.session.push(SessionChange::DiscardAll);
            }
        }
        _ => return Effects::unknown(),
    }
    e
}

fn is_dml_body(body: &SetExpr) -> bool {
    match body {
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => true,
        SetExpr::Query(q) => is_dml_body(&q.body),
        _ => false,
    }
}

/// Adds `other` into `e`.
pub(crate) fn merge(e: &mut Effects, other: Effects) {
    e.operations.extend(other.operations);
    e.reads.extend(other.reads);
    e.writes.extend(other.writes);
    e.functions.extend(other.functions);
    e.missing_where |= other.missing_where;
    e.session.extend(other.session);
}

/// `EXPLAIN (ANALYZE ...)` runs the statement unless ANALYZE is explicitly off.
fn explain_analyzes(options: &[UtilityOption]) -> bool {
    options.iter().any(|o| {
        o.name.value.eq_ignore_ascii_case("analyze")
            && !o.arg.as_ref().is_some_and(|a| match a {
                Expr::Value(v) => match &v.value {
                    Value::Boolean(b) => !b,
                    Value::Number(n, _) => n == "0",
                    Value::SingleQuotedString(s) => is_off(s),
                    _ => false,
                },
                Expr::Identifier(id) => is_off(&id.value),
                _ => false,
            })
    })
}

fn is_off(word: &str) -> bool {
    ["false", "off", "0", "no"]
        .iter()
        .any(|w| word.eq_ignore_ascii_case(w))
}

fn copy(source: &CopySource, to: bool, target: &CopyTarget, e: &mut Effects) {
    match (source, to) {
        (CopySource::Table { table_name, .. }, false) => {
            e.operations.insert(Operation::CopyIn);
            write_all([table_name], e);
        }
        (CopySource::Table { table_name, .. }, true) => {
            e.operations.insert(Operation::CopyOut);
            match names::relation(table_name) {
                Some(r) => {
                    e.reads.insert(r);
                }
                None => {
                    e.operations.insert(Operation::Unknown);
                }
            }
        }
        (CopySource::Query(q), true) => {
            e.operations.insert(Operation::CopyOut);
            walk::walk(q, e);
        }
        (CopySource::Query(_), false) => {
            e.operations.insert(Operation::Unknown);
        }
    }
    let expected = if to { CopyTarget::Stdout } else { CopyTarget::Stdin };
    if *target != expected {
        // PROGRAM or a server file: the server reads or writes outside the database.
        e.operations.insert(Operation::Unknown);
    }
}

fn set(set: &Set, e: &mut Effects) {
    match set {
        Set::SingleAssignment { variable, values, .. } => assignment(variable, values, e),
        Set::ParenthesizedAssignments { variables, values } => {
            for v in variables {
                assignment(v, values, e);
            }
        }
        Set::MultipleAssignments { assignments } => {
            for a in assignments {
                assignment(&a.name, std::slice::from_ref(&a.value), e);
            }
        }
        Set::SetRole { .. } | Set::SetSessionAuthorization(_) => {
            e.operations.insert(Operation::Role);
        }
        Set::SetTransaction { .. } => {
            e.operations.insert(Operation::Transaction);
        }
        Set::SetNames { charset_name, .. } => {
            e.operations.insert(Operation::Set);
            setting_value("names", Ok(Some(&charset_name.value)), e);
        }
        Set::SetSessionParam(_) | Set::SetTimeZone { .. } | Set::SetNamesDefault {} => {
            e.operations.insert(Operation::Set);
        }
    }
}

fn assignment(variable: &ObjectName, values: &[Expr], e: &mut Effects) {
    match names::function(variable).as_str() {
        "search_path" => {
            e.operations.insert(Operation::Set);
            match search_path(values) {
                Some(change) => e.session.push(SessionChange::SearchPath(change)),
                None => {
                    e.operations.insert(Operation::Unknown);
                }
            }
        }
        "role" | "session_authorization" => {
            e.operations.insert(Operation::Role);
        }
        name => {
            e.operations.insert(Operation::Set);
            let value = match values {
                [Expr::Identifier(id)]
                    if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("default") =>
                {
                    None
                }
                [Expr::Identifier(id)] => Some(id.value.as_str()),
                [v] => match names::literal_text(v) {
                    Some(t) => Some(t),
                    None => match v {
                        Expr::Value(v) => match &v.value {
                            Value::Number(n, _) => Some(n.as_str()),
                            _ => {
                                setting_value(name, Err(()), e);
                                return;
                            }
                        },
                        _ => {
                            setting_value(name, Err(()), e);
                            return;
                        }
                    },
                },
                _ => {
                    setting_value(name, Err(()), e);
                    return;
                }
            };
            setting_value(name, Ok(value), e);
        }
    }
}

/// What setting `name` to `value` (`Ok(None)` = its default, `Err` = a value the analysis cannot
/// read) means beyond `set`. Settings that change how the sidecar must read later statements are
/// allowed only at values it reads statements under: `standard_conforming_strings` on (otherwise a
/// backslash in a string would hide text from the parser) and a client encoding that is UTF-8 or
/// ASCII-compatible without conversion (the sidecar reads statements as UTF-8). Anything else is
/// `unknown`. `statement_timeout` is carried for the guard to compare with the policy's limit.
pub(crate) fn setting_value(name: &str, value: Result<Option<&str>, ()>, e: &mut Effects) {
    match name {
        "standard_conforming_strings" if !value.is_ok_and(|v| v.is_none_or(is_on_setting)) => {
            e.operations.insert(Operation::Unknown);
        }
        "client_encoding" | "names" if !value.is_ok_and(|v| v.is_none_or(is_readable_encoding)) => {
            e.operations.insert(Operation::Unknown);
        }
        "statement_timeout" => match value {
            Ok(v) => e
                .session
                .push(SessionChange::StatementTimeout(v.map(str::to_owned))),
            Err(()) => {
                e.operations.insert(Operation::Unknown);
            }
        },
        _ => {}
    }
}

/// A boolean setting's "on" spellings (PostgreSQL accepts unique prefixes; these are the ones a
/// client uses).
pub fn is_on_setting(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "on" | "true" | "yes" | "1" | "t" | "y"
    )
}

/// Client encodings under which the statement bytes the sidecar reads as UTF-8 are the ones the
/// server reads.
pub fn is_readable_encoding(v: &str) -> bool {
    let v: String = v
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    matches!(v.as_str(), "utf8" | "unicode" | "sqlascii")
}

/// The schemas a `SET search_path` names; `Some(None)` for `DEFAULT`; `None` when not understood.
fn search_path(values: &[Expr]) -> Option<Option<Vec<String>>> {
    if let [Expr::Identifier(id)] = values
        && id.quote_style.is_none()
        && id.value.eq_ignore_ascii_case("default")
    {
        return Some(None);
    }
    let mut out = Vec::new();
    for v in values {
        match v {
            Expr::Identifier(id) => out.push(names::ident(id)),
            // A string literal is one schema name, kept as written (search_path quotes it).
            other => out.push(names::literal_text(other)?.to_owned()),
        }
    }
    Some(Some(out))
}

fn is_relation_kind(kind: &ObjectType) -> bool {
    matches!(
        kind,
        ObjectType::Table | ObjectType::View | ObjectType::MaterializedView | ObjectType::Sequence
    )
}

fn write_all<'a>(objects: impl IntoIterator<Item = &'a ObjectName>, e: &mut Effects) {
    for o in objects {
        match names::relation(o) {
            Some(r) => {
                e.writes.insert(r);
            }
            None => {
                e.operations.insert(Operation::Unknown);
            }
        }
    }
}

fn comment_target(kind: &CommentObject, name: &ObjectName, e: &mut Effects) {
    match kind {
        CommentObject::Table
        | CommentObject::View
        | CommentObject::MaterializedView
        | CommentObject::Sequence => write_all([name], e),
        CommentObject::Column => {
            let mut table = name.clone();
            table.0.pop();
            write_all([&table], e);
        }
        _ => {}
    }
}
