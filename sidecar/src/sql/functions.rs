//! Functions whose effects go beyond computing their result. Every call is listed in
//! `Effects::functions`; the calls named here also add operations (or make the statement unknown),
//! so that a policy that allows `select` does not silently allow reading server files or running SQL
//! text the analysis never saw.
//!
//! Matching is on the function's own name, whatever schema qualifies it: `public.dblink` and
//! `pg_catalog.pg_read_file` match, and so does a look-alike in another schema (fail closed).

use sqlparser::ast::{Expr, FunctionArg, FunctionArgExpr, FunctionArguments};

use super::{
    effects::{Effects, Operation, SessionChange},
    names,
};

/// What a listed function does beyond its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Touches what the analysis cannot see (server files, large objects, other databases, SQL text):
    /// the statement becomes `unknown`.
    Unknown,
    /// Server administration: adds `utility`.
    Utility,
    /// `pg_notify(channel, payload)`: `utility` + `SessionChange::Notify` when the channel is a literal.
    Notify,
    /// `set_config(name, value, is_local)`: `set` (and the search_path / role change it makes).
    SetConfig,
    /// Advances or sets a sequence given by name: `update` + write of the sequence.
    SequenceWrite,
}

/// How a table entry matches a function name.
#[derive(Debug, Clone, Copy)]
enum Match {
    Exact,
    Prefix,
}

/// One row: name (or prefix), how it matches, its effect.
type Entry = (&'static str, Match, Effect);

use Effect::*;
use Match::*;

/// The table. Keep one comment per entry saying why it is here.
const TABLE: &[Entry] = &[
    // Reads any file the server can read (superuser or pg_read_server_files).
    ("pg_read_file", Exact, Unknown),
    // Same, as bytea.
    ("pg_read_binary_file", Exact, Unknown),
    // Lists server directories.
    ("pg_ls_dir", Exact, Unknown),
    // Server log, WAL, temp and archive directory listings.
    ("pg_ls_logdir", Exact, Unknown),
    ("pg_ls_waldir", Exact, Unknown),
    ("pg_ls_tmpdir", Exact, Unknown),
    ("pg_ls_archive_statusdir", Exact, Unknown),
    ("pg_ls_logicalmapdir", Exact, Unknown),
    ("pg_ls_logicalsnapdir", Exact, Unknown),
    ("pg_ls_replslotdir", Exact, Unknown),
    // Stats of server files.
    ("pg_stat_file", Exact, Unknown),
    // adminpack: writes, renames and removes server files.
    ("pg_file_", Prefix, Unknown),
    // Large objects: lo_import/lo_export touch server files, the rest read and write lo data.
    ("lo_", Prefix, Unknown),
    // Large-object descriptor reads and writes.
    ("loread", Exact, Unknown),
    ("lowrite", Exact, Unknown),
    // dblink, dblink_exec, dblink_connect...: SQL run on another (or this) database.
    ("dblink", Prefix, Unknown),
    // Run the SQL text or cursor given as an argument and return its rows as XML.
    ("query_to_xml", Prefix, Unknown),
    ("query_to_xmlschema", Exact, Unknown),
    ("cursor_to_xml", Prefix, Unknown),
    // Read a table/schema/database named by a string (not visible as a relation).
    ("table_to_xml", Prefix, Unknown),
    ("schema_to_xml", Prefix, Unknown),
    ("database_to_xml", Prefix, Unknown),
    // ts_stat runs the query text it is given.
    ("ts_stat", Exact, Unknown),
    // Logical decoding reads every change in the database.
    ("pg_logical_slot_", Prefix, Unknown),
    // Replication slots and origins: server-wide state.
    ("pg_create_logical_replication_slot", Exact, Unknown),
    ("pg_create_physical_replication_slot", Exact, Unknown),
    ("pg_drop_replication_slot", Exact, Unknown),
    ("pg_replication_slot_advance", Exact, Unknown),
    ("pg_copy_logical_replication_slot", Exact, Unknown),
    ("pg_copy_physical_replication_slot", Exact, Unknown),
    ("pg_replication_origin_", Prefix, Unknown),
    // Writes arbitrary messages into the WAL stream read by logical consumers.
    ("pg_logical_emit_message", Exact, Unknown),
    // Sends a notification: utility + Notify.
    ("pg_notify", Exact, Notify),
    // Changes a setting (search_path and role included).
    ("set_config", Exact, SetConfig),
    // Ends or interrupts other sessions.
    ("pg_terminate_backend", Exact, Utility),
    ("pg_cancel_backend", Exact, Utility),
    // Server configuration, logs, failover, backups and WAL.
    ("pg_reload_conf", Exact, Utility),
    ("pg_rotate_logfile", Exact, Utility),
    ("pg_promote", Exact, Utility),
    ("pg_switch_wal", Exact, Utility),
    ("pg_create_restore_point", Exact, Utility),
    ("pg_backup_start", Exact, Utility),
    ("pg_backup_stop", Exact, Utility),
    ("pg_log_backend_memory_contexts", Exact, Utility),
    ("pg_wal_replay_pause", Exact, Utility),
    ("pg_wal_replay_resume", Exact, Utility),
    // Reset statistics (server-wide observability state).
    ("pg_stat_reset", Prefix, Utility),
    ("pg_stat_statements_reset", Exact, Utility),
    // Advance or set a sequence: an update of the sequence relation.
    ("nextval", Exact, SequenceWrite),
    ("setval", Exact, SequenceWrite),
];

/// The listed effect of a function, by its unqualified name (lower case).
pub(crate) fn effect_of(unqualified: &str) -> Option<Effect> {
    TABLE.iter().find_map(|(name, how, effect)| {
        let hit = match how {
            Exact => unqualified == *name,
            Prefix => unqualified.starts_with(name),
        };
        hit.then_some(*effect)
    })
}

/// The positional argument expressions of a call (`None` for a wildcard or a named argument).
pub(crate) fn positional(args: &[FunctionArg]) -> Vec<Option<&Expr>> {
    args.iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect()
}

/// Whether calling `name` (possibly schema-qualified) does something beyond computing its result,
/// as listed in this module's table.
pub fn has_own_effect(name: &str) -> bool {
    effect_of(name.rsplit('.').next().unwrap_or(name)).is_some()
}

/// The argument list of a scalar call.
pub(crate) fn call_args(args: &FunctionArguments) -> &[FunctionArg] {
    match args {
        FunctionArguments::List(list) => &list.args,
        FunctionArguments::None | FunctionArguments::Subquery(_) => &[],
    }
}

/// Records a call to `name` with `args` in `effects`: the name, and its listed effect.
pub(crate) fn record_call(name: &str, args: &[Option<&Expr>], effects: &mut Effects) {
    effects.functions.insert(name.to_owned());
    let unqualified = name.rsplit('.').next().unwrap_or(name);
    let Some(effect) = effect_of(unqualified) else {
        return;
    };
    let literal = |i: usize| args.get(i).copied().flatten().and_then(names::literal_text);
    let ops = &mut effects.operations;
    match effect {
        Unknown => {
            ops.insert(Operation::Unknown);
        }
        Utility => {
            ops.insert(Operation::Utility);
        }
        Notify => {
            ops.insert(Operation::Utility);
            match literal(0) {
                Some(channel) => effects.session.push(SessionChange::Notify(channel.to_owned())),
                None => {
                    ops.insert(Operation::Unknown);
                }
            }
        }
        SetConfig => {
            ops.insert(Operation::Set);
            match literal(0).map(str::to_lowercase).as_deref() {
                Some("search_path") => match literal(1).and_then(names::search_path_from_text) {
                    Some(path) => effects.session.push(SessionChange::SearchPath(Some(path))),
                    None => {
                        ops.insert(Operation::Unknown);
                    }
                },
                Some("role" | "session_authorization") => {
                    ops.insert(Operation::Role);
                }
                Some(name) => {
                    let value = literal(1).ok_or(());
                    super::classify::setting_value(name, value.map(Some), effects);
                }
                None => {
                    ops.insert(Operation::Unknown);
                }
            }
        }
        SequenceWrite => match literal(0).and_then(names::relation_from_text) {
            Some(seq) => {
                ops.insert(Operation::Update);
                effects.writes.insert(seq);
            }
            None => {
                ops.insert(Operation::Unknown);
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lookup() {
        let cases = [
            ("pg_read_file", Some(Unknown)),
            ("lo_import", Some(Unknown)),
            ("dblink_exec", Some(Unknown)),
            ("query_to_xml_and_xmlschema", Some(Unknown)),
            ("pg_stat_reset_shared", Some(Utility)),
            ("pg_notify", Some(Notify)),
            ("nextval", Some(SequenceWrite)),
            ("lower", None),
            ("pg_stat_activity", None),
            ("currval", None),
        ];
        for (name, want) in cases {
            assert_eq!(effect_of(name), want, "{name}");
        }
    }
}
