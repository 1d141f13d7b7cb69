//! The statement half: judges every statement before it reaches the server.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use dbward_crds::Operation;
use tracing::warn;

use super::{
    GuardConnection, GuardShared,
    approvals::{Held, Hold, SessionApprovals},
    context::{
        CallerState, CatalogErrorSlot, CatalogSchema, StatementContext, flow_strategy, reload, take_error,
    },
    decisions::{DecisionCache, Note, Outcome, Results, Versions},
    judgment::{
        advance_paths, calls_set_config, log_decision, merge, resolve, timeout_exceeds_limit, writes_data,
    },
    paths::{SearchPaths, parse_search_path},
    record::Judged,
};
use crate::{
    catalog::CatalogSnapshot,
    identity::CallerIdentity,
    journal::SessionLog,
    policy::Verdict as PolicyVerdict,
    proxy::{
        hook::{SessionInfo, Statement, StatementHook, Verdict},
        messages::error::sqlstate,
    },
    sql::{
        Analysis, Effects, RelationName, SessionChange,
        lineage::{self, Flow},
    },
};

/// Prepared statements and cursors tracked per session (the server's own limits are higher, but a
/// session that needs more than this is refused rather than judged wrongly).
const MAX_NAMED: usize = 65_536;
/// A statement naming relations the catalog does not know reloads the catalog at most this often.
const MISSING_RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// SQLSTATE when the sidecar cannot judge a statement because the catalog cannot be read.
const CANNOT_JUDGE: &str = "58000";

/// A prepared statement (`PREPARE`) or a cursor (`DECLARE`): what it runs, judged again when used.
#[derive(Clone)]
struct Named {
    effects: Arc<Effects>,
    /// The text of the PREPARE or DECLARE (its rows' lineage).
    text: Arc<str>,
}

pub(super) struct GuardStatements {
    shared: Arc<GuardShared>,
    conn: Option<Arc<GuardConnection>>,
    identity: CallerIdentity,
    connection: String,
    /// The policy store's version the caller was computed from.
    store_version: u64,
    /// Changes whenever the caller is recomputed (cached decisions of older generations are stale).
    policy_version: u64,
    caller: Option<Arc<CallerState>>,
    /// Why the caller's policy could not be compiled (every statement is refused with it).
    caller_error: Option<String>,
    next_change: Option<SystemTime>,
    paths: SearchPaths,
    prepared: HashMap<String, Named>,
    cursors: HashMap<String, Named>,
    decisions: DecisionCache,
    /// requireApproval: the session's requests and held statements.
    approvals: Option<SessionApprovals>,
    /// The statement just judged at Bind needs approval (its parameters are remembered).
    binding_held: bool,
    /// The portal being executed, while an Execute is judged.
    executing: Option<String>,
    /// Tells the result half the caller masks anything (so it scrubs error messages).
    masks: Arc<std::sync::atomic::AtomicBool>,
    /// The session's journal.
    pub(super) log: Option<Arc<SessionLog>>,
    /// What the journal records of the statement being judged.
    pub(super) judged: Judged,
    /// The number of the statement just let through, for the relay.
    pub(super) recorded: Option<u64>,
    /// Parameters bound to the unnamed portal.
    pub(super) unnamed_params: Option<usize>,
    /// The session's statement_timeout when it opened, in ms (0 or `None`: none).
    opened_timeout: Option<u64>,
    /// A load of the catalog this session waited for failed.
    catalog_error: CatalogErrorSlot,
    /// The catalog must be newer than this version (after DDL this session ran).
    stale_before: u64,
    last_missing_reload: Option<Instant>,
}

impl GuardStatements {
    pub(super) fn new(
        shared: Arc<GuardShared>,
        conn: Option<Arc<GuardConnection>>,
        info: &SessionInfo,
        masks: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        let initial = info.search_path.as_deref().map(parse_search_path);
        let (approvals_store, reminder) = (shared.approvals.clone(), shared.reminder);
        let waiters = shared.waiters.clone();
        Self {
            shared,
            conn,
            identity: info.identity.clone(),
            connection: info.connection.clone(),
            store_version: 0,
            policy_version: 0,
            caller: None,
            caller_error: None,
            next_change: None,
            paths: SearchPaths::new(initial),
            prepared: HashMap::new(),
            cursors: HashMap::new(),
            decisions: DecisionCache::default(),
            approvals: approvals_store.map(|store| {
                SessionApprovals::new(
                    store,
                    info.signals.clone(),
                    &info.connection,
                    &info.identity,
                    reminder,
                    info.journal.clone(),
                    waiters,
                )
            }),
            binding_held: false,
            executing: None,
            masks,
            log: info.journal.clone(),
            judged: Judged::default(),
            recorded: None,
            unnamed_params: None,
            opened_timeout: info
                .settings
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("statement_timeout"))
                .and_then(|(_, v)| super::timeout_ms(v))
                .filter(|&ms| ms > 0),
            catalog_error: Arc::default(),
            stale_before: 0,
            last_missing_reload: None,
        }
    }

    /// Recomputes the caller's policy when the set changed or a policy switched on or off.
    fn refresh_caller(&mut self) {
        let version = self.shared.policies.version();
        let now = SystemTime::now();
        let due = self.next_change.is_some_and(|t| now >= t);
        if version == self.store_version && (self.caller.is_some() || self.caller_error.is_some()) && !due {
            return;
        }
        let (version, set) = self.shared.policies.current();
        let policy = set.for_caller(&self.connection, &self.identity, now);
        self.next_change = policy.next_change(now);
        match CallerState::new(policy) {
            Ok(state) => {
                self.masks.store(
                    state.policy.masks_anything(),
                    std::sync::atomic::Ordering::Release,
                );
                self.caller = Some(Arc::new(state));
                self.caller_error = None;
            }
            Err(e) => {
                warn!(connection = %self.connection, error = %e, "the caller's masking cannot be compiled; refusing its statements");
                self.caller = None;
                self.caller_error = Some(format!("dbward: the caller's masking rules cannot be used: {e}"));
            }
        }
        // A new time boundary or policy set makes every cached decision stale.
        self.store_version = version;
        self.policy_version += 1;
        self.decisions.clear();
    }

    fn wait_for_catalog(&self, newer_than: u64) -> Verdict {
        let Some(conn) = self.conn.clone() else {
            return deny(CANNOT_JUDGE, "dbward: this connection has no catalog".into());
        };
        Verdict::Wait(reload(
            conn.catalog.clone(),
            newer_than,
            self.catalog_error.clone(),
        ))
    }

    /// The catalog to judge with, or what to do instead.
    fn snapshot(&mut self) -> Result<Arc<CatalogSnapshot>, Verdict> {
        let Some(conn) = self.conn.as_ref() else {
            return Err(deny(
                CANNOT_JUDGE,
                "dbward: this connection has no catalog".into(),
            ));
        };
        if let Some(e) = take_error(&self.catalog_error) {
            return Err(deny(CANNOT_JUDGE, e.client_message(&self.connection)));
        }
        match conn.catalog.current() {
            Some(s) if s.version() > self.stale_before => Ok(s),
            Some(s) => {
                let v = s.version();
                Err(self.wait_for_catalog(v))
            }
            None => Err(self.wait_for_catalog(0)),
        }
    }

    /// Judges a statement text; `apply` when it is about to run (session changes take effect).
    fn judge(&mut self, sql: &str, apply: bool) -> Verdict {
        self.refresh_caller();
        let Some(caller) = self.caller.clone() else {
            let message = self
                .caller_error
                .clone()
                .unwrap_or_else(|| "dbward: no policy".into());
            return deny(sqlstate::INSUFFICIENT_PRIVILEGE, message);
        };
        let snapshot = match self.snapshot() {
            Ok(s) => s,
            Err(v) => return v,
        };
        if let Some(refusal) = self.timeout_lowered(&caller) {
            return refusal;
        }
        let versions = Versions {
            policy: self.policy_version,
            catalog: snapshot.version(),
            paths: self.paths.version(),
        };
        if let Some(hit) = self.decisions.get(sql, versions) {
            return self.finish(
                sql,
                &hit.analysis,
                hit.outcome,
                hit.results,
                &caller,
                snapshot,
                apply,
            );
        }
        let analysis = self.shared.analyses.analyze(sql);
        let (outcome, missing) = self.decide(sql, &analysis, &caller, &snapshot);
        if missing && self.may_reload_for_missing() {
            return self.wait_for_catalog(snapshot.version());
        }
        self.decisions.insert(sql, versions, &analysis, &outcome);
        self.finish(sql, &analysis, outcome, None, &caller, snapshot, apply)
    }

    /// A refusal when the caller's statementTimeout is now shorter than the one the session was
    /// opened with: the server would let a statement run longer than the policy allows, and the
    /// sidecar cannot change the session's default safely mid-session.
    fn timeout_lowered(&self, caller: &CallerState) -> Option<Verdict> {
        let limit = caller.limits.statement_timeout?;
        let limit_ms = super::startup::millis(limit);
        if self.opened_timeout.is_some_and(|t| t <= limit_ms) {
            return None;
        }
        Some(deny(
            sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "dbward: the policy's statementTimeout is now {}, shorter than this session was opened with; reconnect to continue",
                dbward_crds::format_duration(limit)
            ),
        ))
    }

    fn may_reload_for_missing(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last_missing_reload
            .is_some_and(|t| now.duration_since(t) < MISSING_RELOAD_INTERVAL)
        {
            return false;
        }
        self.last_missing_reload = Some(now);
        true
    }

    /// The decision on every statement of the text: the first refused one refuses it all. Also says
    /// whether a relation it names is missing from the catalog.
    fn decide(
        &self,
        sql: &str,
        analysis: &Analysis,
        caller: &CallerState,
        snapshot: &CatalogSnapshot,
    ) -> (Outcome, bool) {
        let user = self.user();
        let mut missing = false;
        // Parsed once for the lineage of what the text writes, when that matters.
        let mut parsed: Option<Vec<Option<sqlparser::ast::Statement>>> = None;
        let mut approval = None;
        let mut note = Note::default();
        // A statement that changes the search path changes how the statements after it in the same
        // text resolve their names: each is judged under every path it may run with.
        let mut paths = self.paths.clone();
        for (i, effects) in analysis.statements.iter().enumerate() {
            if i > 0 {
                advance_paths(&mut paths, &analysis.statements[i - 1]);
            }
            let effects = self.substitute(effects);
            let (resolved, miss) = resolve(&effects, snapshot, &paths, user);
            missing |= miss;
            let decision = caller
                .policy
                .decide(&resolved, &|r: &RelationName| match &r.schema {
                    Some(s) => format!("{s}.{}", r.name),
                    None => r.name.clone(),
                });
            log_decision(&self.connection, &self.identity, &decision);
            super::record::note_decision(&mut note, &decision);
            match decision.effective() {
                PolicyVerdict::Allow => {}
                PolicyVerdict::Deny => {
                    return (
                        Outcome::Deny {
                            code: sqlstate::INSUFFICIENT_PRIVILEGE,
                            message: decision.message.into(),
                            note,
                        },
                        missing,
                    );
                }
                PolicyVerdict::RequireApproval => match (&self.approvals, decision.approval) {
                    // The first statement that needs approval decides how the text waits; a later
                    // refused one still refuses it all.
                    (Some(_), Some(settings)) => {
                        if approval.is_none() {
                            approval = Some(Outcome::Approval {
                                message: decision.message.into(),
                                rule: decision.rule.map(|r| r.path()).unwrap_or_default().into(),
                                settings: Arc::new(settings),
                            });
                        }
                    }
                    _ => {
                        let message = format!(
                            "{}; approval is required, and this sidecar has no approval store to ask",
                            decision.message
                        );
                        return (
                            Outcome::Deny {
                                code: sqlstate::INSUFFICIENT_PRIVILEGE,
                                message: message.into(),
                                note,
                            },
                            missing,
                        );
                    }
                },
            }
            if let Some(message) = timeout_exceeds_limit(&effects, caller) {
                return (
                    Outcome::Deny {
                        code: sqlstate::INSUFFICIENT_PRIVILEGE,
                        message: message.into(),
                        note,
                    },
                    missing,
                );
            }
            if caller.policy.masks_anything() && writes_data(&effects) {
                let statements =
                    parsed.get_or_insert_with(|| crate::sql::parse_statements(sql).unwrap_or_default());
                let Some(message) = self.copies_masked_data(
                    statements.get(i).and_then(Option::as_ref),
                    &effects,
                    caller,
                    snapshot,
                    &paths,
                ) else {
                    continue;
                };
                return (
                    Outcome::Deny {
                        code: sqlstate::INSUFFICIENT_PRIVILEGE,
                        message: message.into(),
                        note,
                    },
                    missing,
                );
            }
        }
        (approval.unwrap_or(Outcome::Allow(note)), missing)
    }

    /// A statement that writes (`ast`, when it parses): refused when a masked column would flow into
    /// what it writes (a table, a setting), since the copy could then be read back unmasked.
    fn copies_masked_data(
        &self,
        ast: Option<&sqlparser::ast::Statement>,
        effects: &Effects,
        caller: &CallerState,
        snapshot: &CatalogSnapshot,
        paths: &SearchPaths,
    ) -> Option<String> {
        let refused = "dbward: this statement would copy masked data into a table or setting, where it could be read back unmasked";
        if calls_set_config(effects) && !effects.reads.is_empty() {
            return Some(refused.into());
        }
        let user = self.user();
        let schema = CatalogSchema {
            snapshot,
            paths,
            user,
        };
        let flow = lineage::write_flow(ast?, &schema);
        if flow.is_empty() {
            return None;
        }
        let mut views = super::context::ViewCache::default();
        flow_strategy(caller, &flow, snapshot, paths, user, &mut views, 0).map(|_| refused.into())
    }

    /// The upstream user (`$user` in search paths).
    fn user(&self) -> &str {
        self.conn.as_ref().map(|c| &*c.user).unwrap_or("")
    }

    /// What `EXECUTE` and `FETCH` run, and reads inside writes judged as reads.
    fn substitute<'a>(&self, effects: &'a Effects) -> std::borrow::Cow<'a, Effects> {
        use std::borrow::Cow;
        let mut out = Cow::Borrowed(effects);
        for change in &effects.session {
            let used = match change {
                SessionChange::Execute { name } => Some(self.prepared.get(name)),
                SessionChange::Fetch { cursor } => Some(self.cursors.get(cursor)),
                _ => None,
            };
            if let Some(used) = used {
                let e = out.to_mut();
                match used {
                    Some(named) => merge(e, &named.effects),
                    // Not prepared through this sidecar: the server will refuse it; judge it unknown.
                    None => {
                        e.operations.insert(Operation::Unknown);
                    }
                }
            }
        }
        let writes = [
            Operation::Insert,
            Operation::Update,
            Operation::Delete,
            Operation::Merge,
            Operation::Ddl,
            Operation::CopyIn,
            Operation::Truncate,
        ];
        if !out.reads.is_empty()
            && !out.has(Operation::Select)
            && !out.has(Operation::CopyOut)
            && writes.iter().any(|op| out.has(*op))
        {
            // Rows read inside a write (a subquery, USING, FROM, INSERT ... SELECT) are reads.
            out.to_mut().operations.insert(Operation::Select);
        }
        out
    }

    /// Session changes of a statement about to run, and its context for the result half.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        sql: &str,
        analysis: &Arc<Analysis>,
        outcome: Outcome,
        results: Option<Results>,
        caller: &Arc<CallerState>,
        snapshot: Arc<CatalogSnapshot>,
        apply: bool,
    ) -> Verdict {
        match outcome {
            Outcome::Deny { code, message, note } => {
                self.judged.note = note;
                return deny(code, message.to_string());
            }
            Outcome::Allow(note) => self.judged.note = note,
            Outcome::Approval { .. } if !apply => {
                self.binding_held = true;
                return Verdict::Allow;
            }
            Outcome::Approval {
                message,
                rule,
                settings,
            } => {
                self.judged.held = true;
                self.judged.note.rule = Some(rule.clone());
                let Some(approvals) = self.approvals.as_mut() else {
                    return deny(sqlstate::INSUFFICIENT_PRIVILEGE, message.to_string());
                };
                let held = Held {
                    sql,
                    portal: self.executing.as_deref(),
                    message: &message,
                    rule: &rule,
                    settings: &settings,
                };
                let hold = approvals.hold(&held);
                self.judged.approval = approvals.take_note();
                match hold {
                    Hold::Proceed => {}
                    Hold::Refuse { code, message } => return deny(code, message),
                    Hold::Wait(w) => return Verdict::Wait(w),
                }
            }
        }
        if !apply {
            return Verdict::Allow;
        }
        // Session changes first: the rows of a later statement in the text resolve their names under
        // every search path the session may then use.
        for effects in &analysis.statements {
            self.apply(effects, sql, snapshot.version());
        }
        let results = match results {
            _ if !caller.inspects => Results::Pass,
            Some(r) => r,
            None => {
                let r = self.results(sql, analysis, caller, &snapshot);
                self.decisions.settle(sql, &r);
                r
            }
        };
        let (Results::Inspect { texts, outputs }, Some(conn)) = (results, self.conn.as_ref()) else {
            return Verdict::Allow;
        };
        Verdict::AllowWith(Arc::new(StatementContext {
            caller: caller.clone(),
            catalog: conn.catalog.clone(),
            snapshot,
            paths: self.paths.clone(),
            user: conn.user.clone(),
            texts,
            outputs,
        }))
    }

    /// Whether the statement's rows may carry a masked value or need counting, judged from their
    /// lineage before they run, and that lineage for the result half. When no, results stream through
    /// untouched. It says yes whenever it cannot tell, and for `*` (the result half then checks each
    /// column against the catalog, which may know columns added since this snapshot).
    fn results(
        &self,
        sql: &str,
        analysis: &Analysis,
        caller: &CallerState,
        snapshot: &CatalogSnapshot,
    ) -> Results {
        let texts = self.row_texts(sql, analysis);
        let user = self.user();
        let outputs: Vec<Option<Vec<Flow>>> = if caller.policy.masks_anything() {
            let schema = CatalogSchema {
                snapshot,
                paths: &self.paths,
                user,
            };
            texts
                .iter()
                .flat_map(|t| super::context::statement_outputs(t, &schema))
                .collect()
        } else {
            Vec::new()
        };
        let counted = caller.limits.max_rows.is_some() || caller.limits.max_bytes.is_some();
        let needed = counted
            || !caller.detectors.is_empty()
            || (caller.policy.masks_anything() && {
                let mut views = super::context::ViewCache::default();
                texts.iter().any(|t| t.contains('*'))
                    || outputs.iter().any(|o| {
                        o.as_ref().is_none_or(|flows| {
                            flows.iter().any(|f| {
                                flow_strategy(caller, f, snapshot, &self.paths, user, &mut views, 0).is_some()
                            })
                        })
                    })
            });
        if needed {
            Results::Inspect {
                texts: texts.into(),
                outputs: outputs.into(),
            }
        } else {
            Results::Pass
        }
    }

    /// The texts whose rows the statement returns: its own, or for EXECUTE and FETCH what they run.
    fn row_texts(&self, sql: &str, analysis: &Analysis) -> Vec<Arc<str>> {
        let mut texts = Vec::new();
        let mut own = false;
        for effects in &analysis.statements {
            let mut used = false;
            for change in &effects.session {
                let named = match change {
                    SessionChange::Execute { name } => self.prepared.get(name),
                    SessionChange::Fetch { cursor } => self.cursors.get(cursor),
                    _ => continue,
                };
                used = true;
                if let Some(n) = named {
                    texts.push(n.text.clone());
                }
            }
            own |= !used;
        }
        if own {
            texts.insert(0, Arc::from(sql));
        }
        texts
    }

    fn apply(&mut self, effects: &Effects, sql: &str, catalog_version: u64) {
        if effects.has(Operation::Ddl) {
            // The next statement is judged with a catalog read after this one ran.
            self.stale_before = catalog_version;
        }
        advance_paths(&mut self.paths, effects);
        for change in &effects.session {
            match change {
                SessionChange::SearchPath(_) => {}
                SessionChange::Prepare { name, effects } => {
                    if self.prepared.len() < MAX_NAMED {
                        let named = Named {
                            effects: Arc::new((**effects).clone()),
                            text: Arc::from(sql),
                        };
                        self.prepared.insert(name.clone(), named);
                    }
                }
                SessionChange::DeclareCursor { name, effects } => {
                    if self.cursors.len() < MAX_NAMED {
                        let named = Named {
                            effects: Arc::new((**effects).clone()),
                            text: Arc::from(sql),
                        };
                        self.cursors.insert(name.clone(), named);
                    }
                }
                SessionChange::Deallocate(Some(name)) => {
                    self.prepared.remove(name);
                }
                SessionChange::Deallocate(None) => self.prepared.clear(),
                SessionChange::CloseCursor(Some(name)) => {
                    self.cursors.remove(name);
                }
                SessionChange::CloseCursor(None) => self.cursors.clear(),
                SessionChange::DiscardAll => {
                    self.prepared.clear();
                    self.cursors.clear();
                }
                SessionChange::Execute { .. }
                | SessionChange::Fetch { .. }
                | SessionChange::Listen(_)
                | SessionChange::Notify(_)
                | SessionChange::StatementTimeout(_) => {}
            }
        }
    }
}

impl StatementHook for GuardStatements {
    fn check(&mut self, statement: &Statement<'_>) -> Verdict {
        self.judged = Judged::default();
        if let Some(refusal) = self.journal_down() {
            return refusal;
        }
        if let Statement::Bind { bind, .. } = statement
            && bind.portal.is_empty()
        {
            self.unnamed_params = Some(bind.param_count());
        }
        let verdict = self.check_statement(statement);
        self.record(statement, &verdict);
        verdict
    }

    fn recorded(&mut self) -> Option<u64> {
        self.recorded.take()
    }
}

impl GuardStatements {
    fn check_statement(&mut self, statement: &Statement<'_>) -> Verdict {
        match statement {
            Statement::Simple { sql } => self.judge(sql, true),
            Statement::Parse { sql, .. } => self.judge(sql, false),
            Statement::Bind { sql: Some(sql), bind } => {
                self.binding_held = false;
                let v = self.judge(sql, false);
                if self.binding_held
                    && let Some(a) = self.approvals.as_mut()
                {
                    a.bound(bind);
                }
                v
            }
            // A statement the sidecar never saw parsed: the server refuses the Bind.
            Statement::Bind { sql: None, .. } => Verdict::Allow,
            Statement::Execute {
                sql: Some(sql),
                portal,
                ..
            } => {
                self.executing = Some((*portal).to_owned());
                let v = self.judge(sql, true);
                self.executing = None;
                v
            }
            Statement::Execute { sql: None, .. } => Verdict::Allow,
            Statement::FunctionCall { .. } => self.function_call(),
        }
    }
}

impl GuardStatements {
    /// A fast-path function call names a function by OID only: it is an `unknown` operation, and
    /// refused outright when the caller masks anything (its result could be a masked value).
    fn function_call(&mut self) -> Verdict {
        self.refresh_caller();
        let Some(caller) = self.caller.clone() else {
            return deny(sqlstate::INSUFFICIENT_PRIVILEGE, "dbward: no policy".into());
        };
        if caller.policy.masks_anything() {
            return deny(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                "dbward: fast-path function calls are refused for callers whose results are masked".into(),
            );
        }
        let decision = caller.policy.decide(&Effects::unknown(), &|r| r.name.clone());
        log_decision(&self.connection, &self.identity, &decision);
        match decision.effective() {
            PolicyVerdict::Allow => Verdict::Allow,
            _ => deny(sqlstate::INSUFFICIENT_PRIVILEGE, decision.message),
        }
    }
}

pub(super) fn deny(code: &str, message: String) -> Verdict {
    Verdict::Deny {
        code: code.to_owned(),
        message,
    }
}
