//! Durations, truncation, terminal safety, tables, and API error messages.

use std::time::Duration;

use crate::plugin::{
    errors::{Access, api_error},
    text::{first_line, human_duration, join_names, table, terminal_safe},
};

#[test]
fn durations_like_kubectl() {
    let cases: &[(u64, &str)] = &[
        (0, "0s"),
        (59, "59s"),
        (119, "119s"),
        (120, "2m"),
        (185, "3m5s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 12 * 60, "5h12m"),
        (20 * 3600, "20h"),
        (3 * 86_400 + 4 * 3600, "3d4h"),
        (90 * 86_400, "90d"),
        (2 * 365 * 86_400 + 30 * 86_400, "2y30d"),
        (9 * 365 * 86_400, "9y"),
    ];
    for (secs, want) in cases {
        assert_eq!(human_duration(Duration::from_secs(*secs)), *want, "{secs}");
    }
}

#[test]
fn lines_and_escapes() {
    let cases: &[(&str, usize, &str)] = &[
        ("SELECT 1", 60, "SELECT 1"),
        ("  SELECT 1\n  FROM t", 60, "SELECT 1..."),
        ("\n\nSELECT 1\n\n", 60, "SELECT 1"),
        ("abcdefghij", 8, "abcde..."),
        ("ééééé", 5, "ééééé"),
        ("a\u{1b}[31mb", 60, "a\\u{1b}[31mb"),
        ("a\tb", 60, "a b"),
    ];
    for (text, max, want) in cases {
        assert_eq!(first_line(text, *max), *want, "{text:?}");
    }
    assert_eq!(terminal_safe("x\r\ny\u{2066}"), "x\\r\\ny\\u{2066}");
    assert_eq!(join_names(&["a"]), "a");
    assert_eq!(join_names(&["a", "b", "c"]), "a, b and c");
}

#[test]
fn aligned_tables() {
    let rows = vec![
        vec!["NAME".to_owned(), "AGE".to_owned()],
        vec!["a-long-name".to_owned(), "5m".to_owned()],
    ];
    assert_eq!(table(&rows, "  "), "  NAME          AGE\n  a-long-name   5m\n");
}

#[test]
fn api_errors_say_what_to_do() {
    let patch = Access::dbward("patch", "approvalrequests/status", Some("shop"));
    let list_all = Access::dbward("list", "approvalrequests", None);
    // (code, reason, message, access, pieces expected)
    let cases: &[(u16, &str, &str, Access<'_>, &[&str])] = &[
        (
            403,
            "Forbidden",
            "admission webhook \"approvals.dbward.dev\" denied the request: dbward: ApprovalRequest \"r\": \
             system:serviceaccount:shop:agent sent this statement and cannot approve it",
            patch,
            &[
                "refused: admission webhook \"approvals.dbward.dev\" denied the request: dbward: ApprovalRequest \
               \"r\": system:serviceaccount:shop:agent sent this statement and cannot approve it",
            ],
        ),
        (
            403,
            "Forbidden",
            "approvalrequests.dbward.dev \"r\" is forbidden: User \"bob\" cannot patch resource \
             \"approvalrequests/status\" in API group \"dbward.dev\" in the namespace \"shop\"",
            patch,
            &[
                "forbidden: you need RBAC verb \"patch\" on resource \"approvalrequests/status\" (API group \
                 dbward.dev) in namespace shop",
                "kubectl auth can-i patch approvalrequests.dbward.dev --subresource=status -n shop",
                "User \"bob\" cannot patch",
            ],
        ),
        (
            403,
            "Forbidden",
            "forbidden",
            list_all,
            &[
                "in all namespaces",
                "kubectl auth can-i list approvalrequests.dbward.dev -A",
            ],
        ),
        (
            404,
            "NotFound",
            "the server could not find the requested resource",
            list_all,
            &["CustomResourceDefinitions installed"],
        ),
        (401, "Unauthorized", "Unauthorized", patch, &["not authenticated"]),
        (
            422,
            "Invalid",
            "ApprovalRequest.dbward.dev \"r\" is invalid: status: the request is already decided",
            patch,
            &["is invalid: status: the request is already decided (HTTP 422)"],
        ),
    ];
    for (code, reason, message, access, pieces) in cases {
        let got = api_error(*code, reason, message, access);
        for piece in *pieces {
            assert!(got.contains(piece), "{got}\n  wanted: {piece}");
        }
    }
}
