use bytes::BytesMut;
use dbward_crds::Detector;

use super::key;
use crate::mask::{DetectorRule, MaskError, ScanResult, Strategy, scan_and_mask};

fn redact(d: Detector) -> DetectorRule {
    DetectorRule::new(
        d,
        None,
        Strategy::Redact {
            replacement: "#".into(),
        },
    )
    .unwrap()
}

fn scan(detectors: &[DetectorRule], text: &str) -> (ScanResult, String) {
    let mut out = BytesMut::from(&b">"[..]);
    let result = scan_and_mask(text.as_bytes(), detectors, &key(), &mut out);
    (result, String::from_utf8(out[1..].to_vec()).unwrap())
}

/// (detector, text, masked text; equal to the text when nothing must be found)
const CASES: &[(Detector, &str, &str)] = &[
    // Cards: Luhn-valid numbers, plain or grouped, 13 to 19 digits.
    (Detector::CreditCard, "4111111111111111", "#"),
    (
        Detector::CreditCard,
        "card 4111 1111 1111 1111 exp 12/29",
        "card # exp 12/29",
    ),
    (Detector::CreditCard, "5555-5555-5555-4444.", "#."),
    (Detector::CreditCard, "amex 378282246310005", "amex #"),
    (Detector::CreditCard, "4222222222222 (13)", "# (13)"),
    (
        Detector::CreditCard,
        "a 6011111111111117 b 4111111111111111",
        "a # b #",
    ),
    (
        Detector::CreditCard,
        "4111 1111 1111 1111 4111 1111 1111 1111",
        "# #",
    ),
    (Detector::CreditCard, "id:4111111111111111-2025", "id:#-2025"),
    (Detector::CreditCard, "4111111111111112", "4111111111111112"),
    (Detector::CreditCard, "41111111111111110", "41111111111111110"),
    (Detector::CreditCard, "x94111111111111111", "x94111111111111111"),
    // A valid number inside a longer digit run is not a card.
    (
        Detector::CreditCard,
        "999994111111111111111",
        "999994111111111111111",
    ),
    (
        Detector::CreditCard,
        "4111111111111111999999",
        "4111111111111111999999",
    ),
    (
        Detector::CreditCard,
        "4111  1111 1111 1111",
        "4111  1111 1111 1111",
    ),
    (Detector::CreditCard, "411111111111", "411111111111"),
    (Detector::CreditCard, "", ""),
    // E-mail addresses.
    (Detector::Email, "mail alice@example.com.", "mail #."),
    (Detector::Email, "<bob.smith+tag@mail.corp.example>", "<#>"),
    (Detector::Email, "a@b.co and c_d@e-f.org", "# and #"),
    (Detector::Email, "user@localhost", "user@localhost"),
    (Detector::Email, "@example.com", "@example.com"),
    (Detector::Email, "x@y.c0m", "x@y.c0m"),
    (Detector::Email, "a@@b.com", "a@@b.com"),
    // IBANs of several countries, grouped or not.
    (Detector::Iban, "DE89 3704 0044 0532 0130 00", "#"),
    (
        Detector::Iban,
        "iban DE89370400440532013000, thanks",
        "iban #, thanks",
    ),
    (Detector::Iban, "GB82 WEST 1234 5698 7654 32", "#"),
    (
        Detector::Iban,
        "FR14 2004 1010 0505 0001 3M02 606 is mine",
        "# is mine",
    ),
    (Detector::Iban, "NL91 ABNA 0417 1643 00", "#"),
    (Detector::Iban, "BE68 5390 0754 7034", "#"),
    (Detector::Iban, "NO93 8601 1117 947", "#"),
    (Detector::Iban, "CH93 0076 2011 6238 5295 7", "#"),
    (Detector::Iban, "ES91 2100 0418 4502 0005 1332", "#"),
    (Detector::Iban, "IT60X0542811101000000123456", "#"),
    (Detector::Iban, "MT84 MALT 0110 0001 2345 MTLC AST0 01S", "#"),
    (
        Detector::Iban,
        "DE89 3704 0044 0532 0130 01",
        "DE89 3704 0044 0532 0130 01",
    ),
    (
        Detector::Iban,
        "XDE89370400440532013000",
        "XDE89370400440532013000",
    ),
    (
        Detector::Iban,
        "DE89370400440532013000X",
        "DE89370400440532013000X",
    ),
    (Detector::Iban, "DE89 3704", "DE89 3704"),
    // SSNs by the SSA rules.
    (Detector::Ssn, "ssn 123-45-6789", "ssn #"),
    (Detector::Ssn, "078-05-1120;899-99-9999", "#;#"),
    (Detector::Ssn, "000-12-3456", "000-12-3456"),
    (Detector::Ssn, "666-12-3456", "666-12-3456"),
    (Detector::Ssn, "900-12-3456", "900-12-3456"),
    (Detector::Ssn, "999-12-3456", "999-12-3456"),
    (Detector::Ssn, "123-00-4567", "123-00-4567"),
    (Detector::Ssn, "123-45-0000", "123-45-0000"),
    (Detector::Ssn, "1123-45-6789", "1123-45-6789"),
    (Detector::Ssn, "123-45-67890", "123-45-67890"),
    (Detector::Ssn, "123456789", "123456789"),
    (Detector::Ssn, "12-3-45-6789", "12-3-45-6789"),
];

#[test]
fn fixed_detectors_find_what_they_should() {
    for (detector, text, want) in CASES {
        let (result, got) = scan(&[redact(*detector)], text);
        assert_eq!(got, *want, "{detector:?} on {text:?}");
        let expected = if text == want {
            ScanResult::Clean
        } else {
            ScanResult::Masked
        };
        assert_eq!(result, expected, "{detector:?} on {text:?}");
    }
}

#[test]
fn regex_detector_uses_the_policy_pattern() {
    let rule = DetectorRule::new(Detector::Regex, Some(r"ORD-\d{6}"), Strategy::Hash).unwrap();
    let (result, got) = scan(std::slice::from_ref(&rule), "orders ORD-123456 and ORD-12");
    assert_eq!(result, ScanResult::Masked);
    assert!(
        got.starts_with("orders h:") && got.ends_with(" and ORD-12"),
        "{got}"
    );
    assert_eq!(
        scan(std::slice::from_ref(&rule), "ORD-123456").1,
        scan(&[rule], "ORD-123456").1
    );

    // A pattern that matches the empty string masks only non-empty matches.
    let rule = DetectorRule::new(
        Detector::Regex,
        Some("x*"),
        Strategy::Redact {
            replacement: "#".into(),
        },
    );
    assert_eq!(
        scan(&[rule.unwrap()], "axxbx"),
        (ScanResult::Masked, "a#b#".to_string())
    );

    // Non-UTF-8 values are scanned as bytes.
    let rule = DetectorRule::new(Detector::Regex, Some("secret"), Strategy::Null).unwrap();
    let mut out = BytesMut::new();
    assert_eq!(
        scan_and_mask(b"\xff secret", &[rule], &super::key(), &mut out),
        ScanResult::Null
    );

    assert!(matches!(
        DetectorRule::new(Detector::Regex, Some("("), Strategy::Null),
        Err(MaskError::InvalidPattern(_))
    ));
    assert!(matches!(
        DetectorRule::new(Detector::Regex, None, Strategy::Null),
        Err(MaskError::MissingPattern)
    ));
}

#[test]
fn several_detectors_mask_every_finding() {
    let detectors = [
        redact(Detector::Email),
        DetectorRule::new(
            Detector::CreditCard,
            None,
            Strategy::Partial {
                keep_first: 0,
                keep_last: 4,
            },
        )
        .unwrap(),
        redact(Detector::Ssn),
    ];
    let (result, got) = scan(
        &detectors,
        "alice@example.com paid with 4111-1111-1111-1111, ssn 123-45-6789.",
    );
    assert_eq!(result, ScanResult::Masked);
    assert_eq!(got, "# paid with ***************1111, ssn #.");
    assert_eq!(
        scan(&detectors, "nothing here"),
        (ScanResult::Clean, "nothing here".into())
    );
}

#[test]
fn null_strategy_on_a_finding_nulls_the_value() {
    let detectors = [
        redact(Detector::Email),
        DetectorRule::new(Detector::Ssn, None, Strategy::Null).unwrap(),
    ];
    let mut out = BytesMut::from(&b"keep"[..]);
    let result = scan_and_mask(b"a@b.com 123-45-6789", &detectors, &key(), &mut out);
    assert_eq!(result, ScanResult::Null);
    assert_eq!(&out[..], b"keep", "nothing appended");
}

#[test]
fn overlapping_findings_mask_the_earliest() {
    // An e-mail whose local part is an SSN-looking string: the e-mail starts first and wins.
    let detectors = [redact(Detector::Ssn), redact(Detector::Email)];
    assert_eq!(scan(&detectors, "x123-45-6789@ex.com").1, "#");
}

#[test]
fn detector_rule_from_a_masking_rule() {
    let rule: dbward_crds::MaskingRule = serde_json::from_value(serde_json::json!({
        "detector": "regex", "pattern": "[A-Z]{3}", "strategy": "redact"
    }))
    .unwrap();
    let detector = DetectorRule::from_rule(&rule).unwrap().unwrap();
    assert_eq!(
        detector.strategy(),
        &Strategy::Redact {
            replacement: "****".into()
        }
    );
    let rule: dbward_crds::MaskingRule =
        serde_json::from_value(serde_json::json!({"columns": ["a.b.c"], "strategy": "null"})).unwrap();
    assert!(DetectorRule::from_rule(&rule).unwrap().is_none());
}
