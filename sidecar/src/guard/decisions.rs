//! A session's cache of judgments, so a repeated statement costs a hash lookup instead of a parse.
//!
//! Judgments are keyed by the exact text, and — for statements whose judgment cannot depend on a
//! literal's value — also by the text's shape ([`crate::sql::shape`]: literals blanked), so that the
//! same query with other values (`... where id = 42`, as ORMs without prepared statements and
//! `pgbench` send them) is judged once.

use std::{collections::HashMap, sync::Arc};

use dbward_crds::Operation;

use crate::sql::{Analysis, lineage::Flow};

/// Judgments kept per session, per key kind.
const CAPACITY: usize = 1024;

/// What a judgment was made under; a cached judgment of other versions is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Versions {
    pub policy: u64,
    pub catalog: u64,
    pub paths: u64,
}

/// What the result half needs of a statement's rows.
#[derive(Clone)]
pub(super) enum Results {
    /// Nothing: they stream through untouched.
    Pass,
    /// The texts whose rows come back and their output lineage (one entry per statement).
    Inspect {
        texts: Arc<[Arc<str>]>,
        outputs: Arc<[Option<Vec<Flow>>]>,
    },
}

/// What the journal records of a judgment besides its verdict.
#[derive(Debug, Clone, Default)]
pub(super) struct Note {
    /// The rule that decided (`<namespace>/<policy>/<rule>`), when one did.
    pub rule: Option<Arc<str>>,
    /// What audit-only policies would have done differently (e.g. `deny by shop/audit/no-ddl`).
    pub audit: Option<Arc<str>>,
}

#[derive(Clone)]
pub(super) enum Outcome {
    Allow(Note),
    Deny {
        code: &'static str,
        message: Arc<str>,
        note: Note,
    },
    /// A rule holds it for a person's approval (checked again when it is about to run).
    Approval {
        message: Arc<str>,
        /// `<policy>/<rule>`.
        rule: Arc<str>,
        settings: Arc<crate::policy::ApprovalSettings>,
    },
}

/// A cached judgment of one statement text (or shape).
struct Cached {
    versions: Versions,
    analysis: Arc<Analysis>,
    outcome: Outcome,
    /// What the result half needs of it (settled when it first runs).
    results: Option<Results>,
}

/// A judgment found in the cache, ready for the statement at hand.
pub(super) struct Hit {
    pub analysis: Arc<Analysis>,
    pub outcome: Outcome,
    pub results: Option<Results>,
}

#[derive(Default)]
pub(super) struct DecisionCache {
    exact: HashMap<Arc<str>, Cached>,
    shapes: HashMap<Box<str>, Cached>,
    /// The last shape computed (reused to avoid an allocation per lookup).
    scratch: String,
}

impl DecisionCache {
    /// The judgment of `sql` made under `versions`, by exact text or by shape.
    pub fn get(&mut self, sql: &str, versions: Versions) -> Option<Hit> {
        if let Some(c) = self.exact.get(sql).filter(|c| c.versions == versions) {
            return Some(Hit {
                analysis: c.analysis.clone(),
                outcome: c.outcome.clone(),
                results: c.results.clone(),
            });
        }
        if self.shapes.is_empty() || !crate::sql::shape(sql, &mut self.scratch) {
            return None;
        }
        let c = self
            .shapes
            .get(self.scratch.as_str())
            .filter(|c| c.versions == versions)?;
        // The representative's rows are this statement's own rows: its texts are this text.
        let results = c.results.as_ref().map(|r| match r {
            Results::Pass => Results::Pass,
            Results::Inspect { outputs, .. } => Results::Inspect {
                texts: Arc::from([Arc::<str>::from(sql)]),
                outputs: outputs.clone(),
            },
        });
        Some(Hit {
            analysis: c.analysis.clone(),
            outcome: c.outcome.clone(),
            results,
        })
    }

    /// Keeps the judgment of `sql`.
    pub fn insert(&mut self, sql: &str, versions: Versions, analysis: &Arc<Analysis>, outcome: &Outcome) {
        if sql.len() > crate::sql::MAX_CACHED_TEXT || !cacheable(analysis) {
            return;
        }
        let cached = || Cached {
            versions,
            analysis: analysis.clone(),
            outcome: outcome.clone(),
            results: None,
        };
        if self.exact.len() >= CAPACITY {
            self.exact.clear();
        }
        self.exact.insert(Arc::from(sql), cached());
        if literal_insensitive(analysis) && crate::sql::shape(sql, &mut self.scratch) {
            if self.shapes.len() >= CAPACITY {
                self.shapes.clear();
            }
            self.shapes.insert(self.scratch.as_str().into(), cached());
        }
    }

    /// Records what the result half needs of `sql`'s rows, once it has been worked out.
    pub fn settle(&mut self, sql: &str, results: &Results) {
        if let Some(c) = self.exact.get_mut(sql) {
            c.results = Some(results.clone());
        }
        if !self.shapes.is_empty()
            && crate::sql::shape(sql, &mut self.scratch)
            && let Some(c) = self.shapes.get_mut(self.scratch.as_str())
            && c.results.is_none()
        {
            c.results = Some(results.clone());
        }
    }

    pub fn clear(&mut self) {
        self.exact.clear();
        self.shapes.clear();
    }
}

/// Statements that name prepared statements or cursors are judged by what those hold now, so their
/// judgment is not kept.
fn cacheable(analysis: &Analysis) -> bool {
    use crate::sql::SessionChange::{DeclareCursor, Execute, Fetch, Prepare};
    !analysis.statements.iter().any(|e| {
        e.session.iter().any(|c| {
            matches!(
                c,
                Execute { .. } | Fetch { .. } | Prepare { .. } | DeclareCursor { .. }
            )
        })
    })
}

/// Whether no literal's value can change the judgment of the statement or what its rows reveal: plain
/// reads and writes that change nothing in the session, call no function with an effect of its own
/// (those read their target from a literal: `nextval('seq')`, `set_config('search_path', ...)`),
/// and are no COPY (whose literal options decide how its rows are read).
fn literal_insensitive(analysis: &Analysis) -> bool {
    analysis.statements.iter().all(|e| {
        e.session.is_empty()
            && e.operations.iter().all(|op| {
                matches!(
                    op,
                    Operation::Select | Operation::Insert | Operation::Update | Operation::Delete
                )
            })
            && e.functions.iter().all(|f| !crate::sql::has_own_effect(f))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::analyze;

    const V: Versions = Versions {
        policy: 1,
        catalog: 1,
        paths: 1,
    };

    fn keep(cache: &mut DecisionCache, sql: &str) {
        cache.insert(sql, V, &Arc::new(analyze(sql)), &Outcome::Allow(Note::default()));
    }

    #[test]
    fn plain_reads_and_writes_are_shared_by_shape() {
        let mut c = DecisionCache::default();
        keep(&mut c, "select abalance from pgbench_accounts where aid = 1");
        assert!(
            c.get("select abalance from pgbench_accounts where aid = 99", V)
                .is_some()
        );
        assert!(
            c.get(
                "select abalance from pgbench_accounts where aid = 99",
                Versions { paths: 2, ..V }
            )
            .is_none()
        );
        assert!(
            c.get("select abalance from pgbench_tellers where aid = 99", V)
                .is_none()
        );
        keep(&mut c, "update t set v = v + -5 where id = 3 and note = 'a'");
        assert!(
            c.get("update t set v = v + -7 where id = 30 and note = 'it''s'", V)
                .is_some()
        );
    }

    #[test]
    fn statements_whose_literals_matter_are_kept_by_exact_text_only() {
        for (sql, other) in [
            ("select nextval('a')", "select nextval('b')"),
            (
                "select set_config('search_path', 'a', false)",
                "select set_config('search_path', 'b', false)",
            ),
            ("set statement_timeout = 5", "set statement_timeout = 0"),
            (
                "copy t to stdout with (delimiter ',')",
                "copy t to stdout with (delimiter '|')",
            ),
            ("select pg_notify('a', 'x')", "select pg_notify('b', 'x')"),
            ("fetch 1 from c", "fetch 2 from c"),
        ] {
            let mut c = DecisionCache::default();
            keep(&mut c, sql);
            assert!(c.get(other, V).is_none(), "{other}");
            let exact = c.get(sql, V).is_some();
            assert_eq!(exact, !sql.starts_with("fetch"), "{sql}");
        }
    }

    #[test]
    fn a_shaped_hit_inspects_its_own_text() {
        let mut c = DecisionCache::default();
        let sql = "select email from customers where id = 1";
        keep(&mut c, sql);
        let results = Results::Inspect {
            texts: Arc::from([Arc::<str>::from(sql)]),
            outputs: Arc::from([None]),
        };
        c.settle(sql, &results);
        let other = "select email from customers where id = 2";
        match c.get(other, V).and_then(|h| h.results) {
            Some(Results::Inspect { texts, .. }) => assert_eq!(&*texts[0], other),
            _ => panic!("expected a settled, inspected result"),
        }
    }
}
