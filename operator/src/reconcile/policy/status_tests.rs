#![allow(clippy::unwrap_used)]

use dbward_crds::{
    ConditionStatus::{False, True},
    FieldError, condition,
};
use serde_json::json;

use super::*;

fn at(rfc3339: &str) -> SystemTime {
    parse_rfc3339(rfc3339).unwrap()
}

fn policy(spec_extra: serde_json::Value) -> AccessPolicy {
    let mut spec = json!({
        "connections": ["orders"],
        "subjects": [{"serviceAccount": {"name": "agent"}}],
        "rules": [{"action": "allow", "operations": ["select"]}],
    });
    for (k, v) in spec_extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "dbward.dev/v1alpha1", "kind": "AccessPolicy",
        "metadata": {"name": "agents", "namespace": "shop", "generation": 2},
        "spec": spec,
    }))
    .unwrap()
}

fn existing(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn find<'a>(status: &'a AccessPolicyStatus, type_: &str) -> &'a Condition {
    condition::find(&status.conditions, type_).unwrap()
}

#[test]
fn active_follows_the_window_and_says_when_it_changes_next() {
    let nb = "2026-05-01T09:00:00Z";
    let vu = "2026-05-01T17:00:00Z";
    /// (case, notBefore, validUntil, now, Active status, Active reason, next boundary).
    type Case = (
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        &'static str,
        ConditionStatus,
        &'static str,
        Option<&'static str>,
    );
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("no window", None, None, "2026-05-01T12:00:00Z", True, "Active", None),
        ("before notBefore", Some(nb), None, "2026-05-01T08:00:00Z", False, "NotYetActive", Some(nb)),
        ("at notBefore (inclusive)", Some(nb), None, nb, True, "Active", None),
        ("inside the window", Some(nb), Some(vu), "2026-05-01T12:00:00Z", True, "Active", Some(vu)),
        ("before a window: the start comes first", Some(nb), Some(vu), "2026-05-01T08:00:00Z", False, "NotYetActive", Some(nb)),
        ("at validUntil (exclusive)", Some(nb), Some(vu), vu, False, "Expired", None),
        ("after validUntil", None, Some(vu), "2026-06-01T00:00:00Z", False, "Expired", None),
        ("only validUntil, before it", None, Some(vu), "2026-05-01T16:59:59Z", True, "Active", Some(vu)),
        ("an offset time", Some("2026-05-01T11:00:00+02:00"), None, "2026-05-01T08:59:59Z", False, "NotYetActive", Some(nb)),
        ("an unreadable time fails closed", Some("2026-02-30T09:00:00Z"), None, "2026-05-01T12:00:00Z", False, "Invalid", None),
    ];
    for (name, not_before, valid_until, now, want_status, want_reason, want_next) in cases {
        let mut extra = json!({});
        if let Some(t) = not_before {
            extra["notBefore"] = json!(t);
        }
        if let Some(t) = valid_until {
            extra["validUntil"] = json!(t);
        }
        let p = policy(extra);
        let report = policy_status(&p, &existing(&["orders"]), at(now));
        let active = find(&report.status, types::ACTIVE);
        assert_eq!(
            (active.status, active.reason.as_str()),
            (*want_status, *want_reason),
            "{name}"
        );
        assert_eq!(report.next_boundary, want_next.map(at), "{name}");
        let ready = find(&report.status, types::READY);
        assert_eq!(
            ready.is_true(),
            *want_status == True,
            "{name}: Ready follows Active"
        );
    }
}

#[test]
fn window_messages_name_the_boundary() {
    let p = policy(json!({"notBefore": "2026-05-01T09:00:00Z", "validUntil": "2026-05-01T17:00:00Z"}));
    let message = |now| {
        find(
            &policy_status(&p, &existing(&["orders"]), at(now)).status,
            types::ACTIVE,
        )
        .message
        .clone()
    };
    assert_eq!(
        message("2026-05-01T08:00:00Z"),
        "the policy applies from notBefore 2026-05-01T09:00:00Z"
    );
    assert_eq!(
        message("2026-05-01T10:00:00Z"),
        "the policy applies until validUntil 2026-05-01T17:00:00Z"
    );
    assert_eq!(
        message("2026-05-01T18:00:00Z"),
        "the policy stopped applying at validUntil 2026-05-01T17:00:00Z"
    );
}

#[test]
fn invalid_specs_list_the_offending_fields() {
    let p = policy(
        json!({"rules": [{"action": "allow", "operations": ["select", "select"]},
                                    {"action": "deny", "operations": []}]}),
    );
    let report = policy_status(&p, &existing(&["orders"]), at("2026-05-01T12:00:00Z"));
    assert_eq!(
        report.status.errors,
        [
            FieldError::new("spec.rules[0].operations[1]", "select is listed twice"),
            FieldError::new(
                "spec.rules[1].operations",
                "must list at least one operation (e.g. select, insert, update, delete)"
            ),
        ]
    );
    let valid = find(&report.status, types::VALID);
    assert_eq!((valid.status, valid.reason.as_str()), (False, "Invalid"));
    assert!(
        valid
            .message
            .starts_with("2 problems (see status.errors), the first: spec.rules[0].operations[1]"),
        "{}",
        valid.message
    );
    let ready = find(&report.status, types::READY);
    assert_eq!((ready.status, ready.reason.as_str()), (False, "Invalid"));

    let good = policy_status(
        &policy(json!({})),
        &existing(&["orders"]),
        at("2026-05-01T12:00:00Z"),
    );
    assert!(good.status.errors.is_empty());
    assert_eq!(find(&good.status, types::VALID).reason, "Valid");
    assert_eq!(good.status.observed_generation, Some(2));
    assert!(
        good.status
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(2))
    );
}

#[test]
fn connections_that_do_not_exist_are_listed_on_ready() {
    let now = at("2026-05-01T12:00:00Z");
    let p = policy(json!({"connections": ["orders", "analytics", "billing"]}));
    let cases: &[(&[&str], ConditionStatus, &str, &str)] = &[
        (
            &["orders", "analytics", "billing", "other"],
            True,
            "Ready",
            "every connection it names exists",
        ),
        (
            &["orders", "billing"],
            False,
            "UnknownConnection",
            r#"connection "analytics" does not exist in namespace "shop": the policy grants nothing through it"#,
        ),
        (
            &["orders"],
            False,
            "UnknownConnection",
            r#"connections "analytics", "billing" do not exist in namespace "shop""#,
        ),
        (
            &[],
            False,
            "UnknownConnection",
            r#"connections "orders", "analytics", "billing" do not"#,
        ),
    ];
    for (names, want_status, want_reason, want_message) in cases {
        let report = policy_status(&p, &existing(names), now);
        let ready = find(&report.status, types::READY);
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (*want_status, *want_reason),
            "{names:?}"
        );
        assert!(
            ready.message.contains(want_message),
            "{names:?}: {}",
            ready.message
        );
        // The spec itself is fine: Valid and Active do not depend on which connections exist.
        assert!(find(&report.status, types::VALID).is_true());
        assert!(find(&report.status, types::ACTIVE).is_true());
    }
}

#[test]
fn every_problem_is_told_on_ready_the_first_gives_the_reason() {
    let p = policy(
        json!({"connections": ["orders", "nope"], "validUntil": "2026-01-01T00:00:00Z",
                          "rules": [{"action": "deny", "operations": []}]}),
    );
    let report = policy_status(&p, &existing(&["orders"]), at("2026-05-01T12:00:00Z"));
    let ready = find(&report.status, types::READY);
    assert_eq!(ready.reason, "Invalid");
    let parts: Vec<&str> = ready.message.split("; ").collect();
    assert!(
        parts.iter().any(|m| m.starts_with("the policy stopped applying")),
        "{parts:?}"
    );
    assert!(
        parts
            .iter()
            .any(|m| m.starts_with(r#"connection "nope" does not exist"#)),
        "{parts:?}"
    );
}

#[test]
fn an_unchanged_policy_gets_an_equal_status() {
    let mut p = policy(json!({"validUntil": "2026-05-01T17:00:00Z"}));
    let first = policy_status(&p, &existing(&["orders"]), at("2026-05-01T10:00:00Z"));
    p.status = Some(first.status.clone());
    let again = policy_status(&p, &existing(&["orders"]), at("2026-05-01T11:00:00Z"));
    assert_eq!(again, first);

    // Past validUntil, Active and Ready transition; Valid keeps its time.
    let expired = policy_status(&p, &existing(&["orders"]), at("2026-05-01T17:00:01Z"));
    assert_eq!(
        find(&expired.status, types::VALID).last_transition_time,
        "2026-05-01T10:00:00Z"
    );
    assert_eq!(
        find(&expired.status, types::ACTIVE).last_transition_time,
        "2026-05-01T17:00:01Z"
    );
    assert_eq!(
        find(&expired.status, types::READY).last_transition_time,
        "2026-05-01T17:00:01Z"
    );
}
