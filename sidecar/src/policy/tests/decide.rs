//! The decision table: policies × caller × connection × time × effects → verdict, rule, enforced,
//! and what audit policies would have done.

use super::{NOON, caller, fx, resolve};
use crate::policy::Decision;

/// One case. `want` is `VERDICT RULE [audit]`, where RULE is `ns/policy#rule` or `-` for none and
/// `audit` means not enforced; then, for mixed audit/enforce, `| VERDICT RULE` for the audit view.
struct Case {
    name: &'static str,
    policies: &'static [&'static str],
    who: &'static str,
    conn: &'static str,
    at: &'static str,
    effects: &'static str,
    want: &'static str,
}

const fn case(
    name: &'static str,
    policies: &'static [&'static str],
    who: &'static str,
    effects: &'static str,
    want: &'static str,
) -> Case {
    Case {
        name,
        policies,
        who,
        conn: "orders",
        at: NOON,
        effects,
        want,
    }
}

const fn on(mut c: Case, conn: &'static str) -> Case {
    c.conn = conn;
    c
}

const fn at(mut c: Case, time: &'static str) -> Case {
    c.at = time;
    c
}

const API: &str = "ambient:shop/api";

const CASES: &[Case] = &[
    // No policy, wrong connection, wrong caller.
    case("no policies at all", &[], API, "select r:orders", "deny -"),
    on(
        case(
            "policy for another connection",
            &["api"],
            API,
            "select r:orders",
            "deny -",
        ),
        "analytics",
    ),
    on(
        case(
            "policy on its connection",
            &["analytics"],
            API,
            "select r:x",
            "allow shop/analytics#rules[0]",
        ),
        "analytics",
    ),
    on(
        case(
            "connection names are exact",
            &["api"],
            API,
            "select r:orders",
            "deny -",
        ),
        "Orders",
    ),
    case(
        "caller named by no subject",
        &["api"],
        "ambient:shop/other",
        "select r:orders",
        "deny -",
    ),
    // Time windows: inclusive start, exclusive end.
    at(
        case(
            "before notBefore",
            &["jit"],
            "ambient:shop/debug",
            "select r:x",
            "deny -",
        ),
        "2026-05-01T08:59:59Z",
    ),
    at(
        case(
            "at notBefore",
            &["jit"],
            "ambient:shop/debug",
            "select r:x",
            "allow shop/jit#rules[0]",
        ),
        "2026-05-01T09:00:00Z",
    ),
    case(
        "inside the window",
        &["jit"],
        "ambient:shop/debug",
        "select r:x",
        "allow shop/jit#rules[0]",
    ),
    at(
        case(
            "at validUntil",
            &["jit"],
            "ambient:shop/debug",
            "select r:x",
            "deny -",
        ),
        "2026-05-01T17:00:00Z",
    ),
    at(
        case(
            "after validUntil",
            &["jit"],
            "ambient:shop/debug",
            "select r:x",
            "deny -",
        ),
        "2026-05-02T00:00:00Z",
    ),
    // serviceAccount subjects.
    case(
        "SA token from the cluster issuer",
        &["api"],
        "k8s:shop/api",
        "select r:orders",
        "allow shop/api#read",
    ),
    case(
        "SA subject minted by another issuer",
        &["api"],
        "foreign:shop/api",
        "select r:orders",
        "deny -",
    ),
    case(
        "SA namespace defaults to the policy's",
        &["other-ns"],
        API,
        "ddl",
        "deny -",
    ),
    case(
        "SA in the policy's namespace",
        &["other-ns"],
        "ambient:other/api",
        "ddl",
        "allow other/other-ns#rules[0]",
    ),
    case(
        "SA with explicit namespace",
        &["cross-ns"],
        "ambient:data/etl",
        "select r:x",
        "allow shop/cross-ns#rules[0]",
    ),
    case(
        "SA explicit namespace, other ns",
        &["cross-ns"],
        "ambient:shop/etl",
        "select r:x",
        "deny -",
    ),
    case(
        "SA without any namespace: any",
        &["no-ns"],
        "ambient:x/batch",
        "select r:x",
        "allow no-ns#rules[0]",
    ),
    case(
        "SA without any namespace: other",
        &["no-ns"],
        "ambient:y/batch",
        "select r:x",
        "allow no-ns#rules[0]",
    ),
    case(
        "SA name must match",
        &["no-ns"],
        "ambient:y/batcher",
        "select r:x",
        "deny -",
    ),
    // group and oidc subjects.
    case(
        "group member",
        &["dba"],
        "alice",
        "select r:x",
        "allow shop/dba#rules[0]",
    ),
    case("not a group member", &["dba"], "bob", "select r:x", "deny -"),
    case(
        "SA token carrying the group",
        &["dba"],
        "k8s-dba:shop/api",
        "select r:x",
        "allow shop/dba#rules[0]",
    ),
    case(
        "oidc claim array intersects",
        &["oncall"],
        "alice",
        "select r:x",
        "allow shop/oncall#rules[0]",
    ),
    case(
        "oidc claim string not accepted",
        &["oncall"],
        "bob",
        "select r:x",
        "deny -",
    ),
    case(
        "oidc claim string accepted",
        &["oncall"],
        "dave",
        "select r:x",
        "allow shop/oncall#rules[0]",
    ),
    case(
        "oidc claim from another issuer",
        &["oncall"],
        "carol",
        "select r:x",
        "deny -",
    ),
    case(
        "oidc never matches ambient",
        &["oncall"],
        API,
        "select r:x",
        "deny -",
    ),
    // uids narrow a subject.
    case(
        "uid in the list",
        &["worker"],
        "ambient:shop/worker@1000",
        "select r:x",
        "allow shop/worker#rules[0]",
    ),
    case(
        "uid not in the list",
        &["worker"],
        "ambient:shop/worker@1001",
        "select r:x",
        "deny -",
    ),
    case(
        "uid unknown",
        &["worker"],
        "ambient:shop/worker",
        "select r:x",
        "deny -",
    ),
    // Rules: globs, search_path resolution, precedence, implicit deny.
    case(
        "schema glob",
        &["api"],
        API,
        "select r:public.orders",
        "allow shop/api#read",
    ),
    case(
        "unqualified name via search_path",
        &["api"],
        API,
        "select r:orders",
        "allow shop/api#read",
    ),
    case(
        "search_path finds billing first",
        &["api"],
        API,
        "select r:invoices",
        "allow shop/api#read",
    ),
    case(
        "qualified name outside the globs",
        &["api"],
        API,
        "select r:billing.payments",
        "deny -",
    ),
    case(
        "deny beats allow",
        &["api"],
        API,
        "select r:public.secret_keys",
        "deny shop/api#no-secrets",
    ),
    case(
        "one denied relation denies all",
        &["api"],
        API,
        "select r:orders r:secret_keys",
        "deny shop/api#no-secrets",
    ),
    case(
        "copyOut judged on reads",
        &["api"],
        API,
        "copyOut r:public.secret_x",
        "deny shop/api#no-secrets",
    ),
    case(
        "bare table glob, search_path schema",
        &["api"],
        API,
        "insert w:orders",
        "allow shop/api#write-orders",
    ),
    case(
        "bare table glob, any schema",
        &["api"],
        API,
        "insert w:sales.orders",
        "allow shop/api#write-orders",
    ),
    case(
        "write to an unlisted table",
        &["api"],
        API,
        "insert w:customers",
        "deny -",
    ),
    case(
        "insert ... select reads and writes",
        &["api"],
        API,
        "insert select w:orders r:customers",
        "allow shop/api#read",
    ),
    case(
        "insert ... select from a secret",
        &["api"],
        API,
        "insert select w:orders r:secret_x",
        "deny shop/api#no-secrets",
    ),
    case(
        "delete with where",
        &["api"],
        API,
        "delete w:orders",
        "allow shop/api#write-orders",
    ),
    case(
        "delete without where",
        &["api"],
        API,
        "delete w:orders nowhere",
        "requireApproval shop/api#wide-write",
    ),
    case(
        "update without where",
        &["api"],
        API,
        "update w:orders nowhere",
        "requireApproval shop/api#wide-write",
    ),
    case(
        "missingWhere ignores other ops",
        &["api"],
        API,
        "select r:orders nowhere",
        "allow shop/api#read",
    ),
    case(
        "deny beats requireApproval",
        &["api"],
        API,
        "update select w:orders r:secret_a nowhere",
        "deny shop/api#no-secrets",
    ),
    case(
        "set allowed without tables",
        &["api"],
        API,
        "set",
        "allow shop/api#rules[4]",
    ),
    case(
        "transaction allowed",
        &["api"],
        API,
        "transaction",
        "allow shop/api#rules[4]",
    ),
    case(
        "select without relations vs table rules",
        &["api"],
        API,
        "select",
        "deny -",
    ),
    case(
        "select without relations, no tables",
        &["dba"],
        "alice",
        "select",
        "allow shop/dba#rules[0]",
    ),
    case(
        "operation no rule lists",
        &["api"],
        API,
        "ddl w:public.orders",
        "deny -",
    ),
    case(
        "rowsOver fails closed",
        &["api"],
        API,
        "select r:public.events",
        "requireApproval shop/api#big-reads",
    ),
    case("unknown denied", &["api"], API, "unknown", "deny -"),
    case("empty effects judged unknown", &["api"], API, "", "deny -"),
    case(
        "unknown allowed by a rule",
        &["dba", "unknown-ok"],
        "alice",
        "unknown",
        "allow shop/unknown-ok#allow-unknown",
    ),
    case(
        "unlisted op next to allowed",
        &["dba"],
        "alice",
        "grant",
        "deny -",
    ),
    case(
        "ddl deny on glob",
        &["dba"],
        "alice",
        "ddl w:public.audit_log",
        "deny shop/dba#protect-audit",
    ),
    case(
        "ddl elsewhere",
        &["dba"],
        "alice",
        "ddl w:public.orders",
        "allow shop/dba#rules[0]",
    ),
    case(
        "truncate needs approval",
        &["dba"],
        "alice",
        "truncate w:orders",
        "requireApproval shop/dba#truncate-needs-ok",
    ),
    // Several enforce policies together.
    case(
        "policies add up: ddl from dba",
        &["api", "dba"],
        "k8s-dba:shop/api",
        "ddl w:orders",
        "allow shop/dba#rules[0]",
    ),
    case(
        "policies add up: deny from api",
        &["api", "dba"],
        "k8s-dba:shop/api",
        "select r:secret_x",
        "deny shop/api#no-secrets",
    ),
    case(
        "policies add up: approval from dba",
        &["api", "dba"],
        "k8s-dba:shop/api",
        "truncate w:orders",
        "requireApproval shop/dba#truncate-needs-ok",
    ),
    // Audit.
    case(
        "audit only: allowed",
        &["shadow"],
        "ambient:shop/shadow",
        "select r:orders",
        "allow shop/shadow#rules[0] audit",
    ),
    case(
        "audit only: implicit deny not enforced",
        &["shadow"],
        "ambient:shop/shadow",
        "select r:customers",
        "deny - audit",
    ),
    case(
        "audit only: other op",
        &["shadow"],
        "ambient:shop/shadow",
        "delete w:orders",
        "deny - audit",
    ),
    case(
        "mixed: audit deny reported",
        &["api", "audit-strict"],
        API,
        "delete w:orders",
        "allow shop/api#write-orders | deny shop/audit-strict#audit-no-delete",
    ),
    case(
        "mixed: both allow",
        &["api", "audit-strict"],
        API,
        "select r:orders",
        "allow shop/api#read | allow shop/api#read",
    ),
    case(
        "mixed: enforce deny blocks",
        &["api", "audit-strict"],
        API,
        "ddl",
        "deny - | deny -",
    ),
];

fn show(d: &Decision) -> String {
    let rule = d
        .rule
        .as_ref()
        .map_or_else(|| "-".to_owned(), |r| format!("{}#{}", r.policy, r.rule));
    let audit = if d.enforced { "" } else { " audit" };
    format!("{} {rule}{audit}", d.verdict)
}

#[test]
fn decision_table() {
    assert!(CASES.len() >= 50, "{} cases", CASES.len());
    let mut failures = Vec::new();
    for c in CASES {
        let policy = caller(c.policies, c.who, c.conn, c.at);
        let decision = policy.decide(&fx(c.effects), &resolve);
        let mut got = show(&decision);
        if let Some(audit) = &decision.audit {
            assert!(!audit.enforced, "{}: the audit view is never enforced", c.name);
            let view = show(audit);
            got = format!("{got} | {}", view.trim_end_matches(" audit"));
        }
        if got != c.want {
            failures.push(format!("{}: got {got:?}, want {:?}", c.name, c.want));
        }
        assert_eq!(
            decision.effective() == crate::policy::Verdict::Allow,
            decision.verdict == crate::policy::Verdict::Allow || !decision.enforced,
            "{}",
            c.name
        );
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
