//! Deciding one statement: its effects cut into (operation, relation) items, each judged by the rules
//! that list the operation; the worst item decides (see the module docs).

use std::{fmt, sync::Arc};

use dbward_crds::{Action, Operation};

use super::{
    caller::{CallerPolicy, RuleIdx, RulesByOp},
    compile::{ApprovalSettings, CompiledRule},
};
use crate::sql::effects::{Effects, RelationName};

/// What happens to a statement. Ordered from mildest to strictest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// Run it.
    Allow,
    /// Hold it for a person's approval.
    RequireApproval,
    /// Refuse it (SQLSTATE 42501).
    Deny,
}

impl Verdict {
    /// `allow`, `requireApproval` or `deny`, as in the API and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::RequireApproval => "requireApproval",
            Self::Deny => "deny",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule of a policy: the policy's `namespace/name` (or name) and the rule's name, `rules[i]` for an
/// unnamed rule (`masking[i]` for a masking rule). Cloning shares the strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleRef {
    /// The policy, `namespace/name` or `name`.
    pub policy: Arc<str>,
    /// The rule's name, or `rules[i]` / `masking[i]`.
    pub rule: Arc<str>,
}

impl RuleRef {
    /// `<policy>/<rule>` (the policy being `namespace/name` when it has a namespace), as an
    /// ApprovalRequest's `spec.rule` names it.
    pub fn path(&self) -> String {
        format!("{}/{}", self.policy, self.rule)
    }
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule {:?} of AccessPolicy {:?}", &*self.rule, &*self.policy)
    }
}

/// The decision on one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What the deciding policies say.
    pub verdict: Verdict,
    /// The rule that decided: for allow, the rule that allowed the first item; otherwise the rule that
    /// denied or held the first worst item. `None` when no rule matched (the implicit deny) or no
    /// policy applies.
    pub rule: Option<RuleRef>,
    /// For deny and requireApproval: the rule's message, or a generated one naming the operation and
    /// relation. Empty for allow.
    pub message: String,
    /// Whether the relay must act on `verdict`. `false` when only audit policies apply: record the
    /// verdict and run the statement.
    pub enforced: bool,
    /// For requireApproval: how to wait (from the asking policy; several: the shortest timeout).
    pub approval: Option<ApprovalSettings>,
    /// When audit policies apply alongside enforce ones: what the rules of all applicable policies
    /// together would have decided (`enforced: false`).
    pub audit: Option<Box<Decision>>,
}

impl Decision {
    /// What the relay does: `verdict` when enforced, otherwise allow.
    pub fn effective(&self) -> Verdict {
        if self.enforced {
            self.verdict
        } else {
            Verdict::Allow
        }
    }
}

impl CallerPolicy {
    /// Decides on a statement with these effects. `resolve` gives a relation's `schema.table` through
    /// the session's search_path; it is called once per relation the statement's operations touch.
    pub fn decide(&self, effects: &Effects, resolve: &dyn Fn(&RelationName) -> String) -> Decision {
        if !self.has_access() {
            return Decision {
                verdict: Verdict::Deny,
                rule: None,
                message: format!(
                    "dbward: no AccessPolicy grants this caller access to connection {:?}",
                    &*self.connection
                ),
                enforced: true,
                approval: None,
                audit: None,
            };
        }
        let relations = Relations::resolve(effects, resolve);
        if self.enforce.is_empty() {
            return self.evaluate(&self.all_rules, effects, &relations, false);
        }
        let mut decision = self.evaluate(&self.enforce_rules, effects, &relations, true);
        if !self.audit.is_empty() {
            decision.audit = Some(Box::new(self.evaluate(
                &self.all_rules,
                effects,
                &relations,
                false,
            )));
        }
        decision
    }

    fn evaluate(
        &self,
        rules: &RulesByOp,
        effects: &Effects,
        relations: &Relations,
        enforced: bool,
    ) -> Decision {
        let mut worst: Option<Item<'_>> = None;
        let mut approval: Option<&ApprovalSettings> = None;
        // Effects without operations are a statement nobody classified: judge it as unknown.
        let unknown = effects.operations.is_empty().then_some(Operation::Unknown);
        'ops: for op in effects.operations.iter().copied().chain(unknown) {
            let names = relations.of(op);
            let items = names.iter().map(|n| Some(n.as_str()));
            let none = names.is_empty().then_some(None);
            for relation in items.chain(none) {
                let item = self.judge(&rules[op as usize], op, relation, effects, &mut approval);
                if worst.as_ref().is_none_or(|w| item.verdict > w.verdict) {
                    let deny = item.verdict == Verdict::Deny;
                    worst = Some(item);
                    if deny {
                        break 'ops;
                    }
                }
            }
        }
        // Every operation yields at least one item, so `worst` is set; were it not, fail closed.
        let item = worst.unwrap_or(Item {
            verdict: Verdict::Deny,
            rule: None,
            op: Operation::Unknown,
            relation: None,
        });
        let rule = item.rule.map(|idx| self.rule(idx));
        Decision {
            verdict: item.verdict,
            message: message(&item, rule),
            rule: rule.map(|r| r.rule_ref.clone()),
            enforced,
            approval: approval
                .filter(|_| item.verdict == Verdict::RequireApproval)
                .cloned(),
            audit: None,
        }
    }

    /// The strongest rule matching one item; deny if none.
    fn judge<'a>(
        &'a self,
        rules: &[RuleIdx],
        op: Operation,
        relation: Option<&'a str>,
        effects: &Effects,
        approval: &mut Option<&'a ApprovalSettings>,
    ) -> Item<'a> {
        let mut best: Option<(Action, RuleIdx)> = None;
        for &idx in rules {
            let rule = self.rule(idx);
            if !rule_matches(rule, op, relation, effects) {
                continue;
            }
            if rule.action == Action::RequireApproval {
                let settings = &self.policy(idx.0).approval;
                if approval.is_none_or(|a| settings.timeout < a.timeout) {
                    *approval = Some(settings);
                }
            }
            if best.is_none_or(|(action, _)| rule.action > action) {
                best = Some((rule.action, idx));
                if rule.action == Action::Deny {
                    break;
                }
            }
        }
        let (verdict, rule) = match best {
            None => (Verdict::Deny, None),
            Some((Action::Allow, idx)) => (Verdict::Allow, Some(idx)),
            Some((Action::RequireApproval, idx)) => (Verdict::RequireApproval, Some(idx)),
            Some((Action::Deny, idx)) => (Verdict::Deny, Some(idx)),
        };
        Item {
            verdict,
            rule,
            op,
            relation,
        }
    }
}

/// Whether `rule` (which lists `op`) matches the item `op` on `relation`.
fn rule_matches(rule: &CompiledRule, op: Operation, relation: Option<&str>, effects: &Effects) -> bool {
    let tables = rule.tables.is_empty()
        || relation.is_some_and(|name| rule.tables.iter().any(|glob| glob.matches(name)));
    let missing_where = rule.missing_where.is_none_or(|want| {
        matches!(op, Operation::Update | Operation::Delete) && effects.missing_where == want
    });
    // rowsOver is only known once rows flow: fail closed (deny and hold match, allow does not).
    let rows_over = !rule.rows_over || rule.action != Action::Allow;
    tables && missing_where && rows_over
}

/// One judged (operation, relation) item.
struct Item<'a> {
    verdict: Verdict,
    rule: Option<RuleIdx>,
    op: Operation,
    relation: Option<&'a str>,
}

fn message(item: &Item<'_>, rule: Option<&CompiledRule>) -> String {
    if item.verdict == Verdict::Allow {
        return String::new();
    }
    if let Some(text) = rule.and_then(|r| r.message.as_deref()) {
        return text.to_owned();
    }
    let what = match item.relation {
        Some(relation) => format!("{} on {relation}", item.op),
        None => item.op.to_string(),
    };
    match (item.verdict, rule) {
        (Verdict::RequireApproval, Some(rule)) => {
            format!("dbward: {what} requires approval ({})", rule.rule_ref)
        }
        (_, Some(rule)) => format!("dbward: {what} is denied by {}", rule.rule_ref),
        (_, None) => format!("dbward: no AccessPolicy rule allows {what} for this caller"),
    }
}

/// The statement's relations, resolved once for every decision on it.
struct Relations {
    reads: Vec<String>,
    writes: Vec<String>,
}

impl Relations {
    fn resolve(effects: &Effects, resolve: &dyn Fn(&RelationName) -> String) -> Self {
        let wants = |t: Touches| effects.operations.iter().any(|&op| touches(op) == t);
        let names = |set: &std::collections::BTreeSet<RelationName>| set.iter().map(resolve).collect();
        Self {
            reads: if wants(Touches::Reads) {
                names(&effects.reads)
            } else {
                Vec::new()
            },
            writes: if wants(Touches::Writes) {
                names(&effects.writes)
            } else {
                Vec::new()
            },
        }
    }

    fn of(&self, op: Operation) -> &[String] {
        match touches(op) {
            Touches::Reads => &self.reads,
            Touches::Writes => &self.writes,
            Touches::None => &[],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Touches {
    Reads,
    Writes,
    None,
}

/// Which relations an operation touches.
fn touches(op: Operation) -> Touches {
    match op {
        Operation::Select | Operation::CopyOut => Touches::Reads,
        Operation::Insert
        | Operation::Update
        | Operation::Delete
        | Operation::Merge
        | Operation::CopyIn
        | Operation::Truncate
        | Operation::Ddl => Touches::Writes,
        Operation::Grant
        | Operation::Role
        | Operation::Call
        | Operation::Do
        | Operation::Set
        | Operation::Transaction
        | Operation::Utility
        | Operation::Unknown => Touches::None,
    }
}
