use bytes::BytesMut;
use dbward_crds::MaskStrategy;

use super::key;
use crate::mask::{MaskError, MaskKey, Masked, Strategy, strongest};

fn apply(strategy: &Strategy, value: &[u8]) -> Option<Vec<u8>> {
    let mut out = BytesMut::from(&b"prefix:"[..]);
    match strategy.apply(value, &key(), &mut out) {
        Masked::Value => Some(out[7..].to_vec()),
        Masked::Null => {
            assert_eq!(&out[..], b"prefix:", "null appends nothing");
            None
        }
    }
}

fn partial(keep_first: u32, keep_last: u32) -> Strategy {
    Strategy::Partial {
        keep_first,
        keep_last,
    }
}

/// (strategy, value, masked value; `None` for NULL)
type Case<'a> = (&'a Strategy, &'a [u8], Option<&'a [u8]>);

#[test]
fn strategies_mask_as_documented() {
    let redact = Strategy::new(MaskStrategy::Redact, None, None, None);
    let custom = Strategy::new(MaskStrategy::Redact, Some("[hidden]"), None, None);
    let cases: &[Case<'_>] = &[
        (&redact, b"secret", Some(b"****")),
        (&redact, b"", Some(b"****")),
        (&custom, "ünïcode".as_bytes(), Some(b"[hidden]")),
        (&Strategy::Null, b"secret", None),
        (&Strategy::Null, b"", None),
        (&partial(2, 2), b"4111111111111111", Some(b"41************11")),
        (&partial(0, 4), b"4111111111111111", Some(b"************1111")),
        (&partial(3, 0), b"abcdef", Some(b"abc***")),
        (&partial(2, 2), b"abcd", Some(b"****")),
        (&partial(2, 2), b"abc", Some(b"***")),
        (&partial(2, 2), b"", Some(b"")),
        (&partial(0, 0), b"abc", Some(b"***")),
        (&partial(1, 1), "żółw!".as_bytes(), Some("ż***!".as_bytes())),
        (
            &partial(2, 1),
            "日本語テキスト".as_bytes(),
            Some("日本****ト".as_bytes()),
        ),
        (&partial(1, 1), "éé".as_bytes(), Some(b"**")),
        // Invalid UTF-8: each bad byte counts as one character.
        (&partial(1, 1), b"a\xff\xfeb", Some(b"a**b")),
        (&partial(1, 1), b"\xffxy\xfe", Some(b"\xff**\xfe")),
        (&Strategy::Email, b"alice@example.com", Some(b"****@example.com")),
        (
            &Strategy::Email,
            b"\"a@b\"@corp.example",
            Some(b"****@corp.example"),
        ),
        (&Strategy::Email, b"no-at-sign", Some(b"****")),
        (&Strategy::Email, b"trailing@", Some(b"****")),
        (&Strategy::Email, b"", Some(b"****")),
        (
            &Strategy::Email,
            "jürgen@bücher.de".as_bytes(),
            Some("****@bücher.de".as_bytes()),
        ),
    ];
    for (strategy, value, want) in cases {
        assert_eq!(
            apply(strategy, value).as_deref(),
            *want,
            "{strategy:?} on {:?}",
            String::from_utf8_lossy(value)
        );
    }
}

#[test]
fn hash_is_keyed_stable_and_not_a_bare_digest() {
    let a = apply(&Strategy::Hash, b"alice@example.com").unwrap();
    assert_eq!(a.len(), 18);
    assert!(a.starts_with(b"h:"));
    assert!(
        a[2..]
            .iter()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(apply(&Strategy::Hash, b"alice@example.com").unwrap(), a, "stable");
    assert_ne!(
        apply(&Strategy::Hash, b"bob@example.com").unwrap(),
        a,
        "distinct values"
    );
    assert_ne!(apply(&Strategy::Hash, b"").unwrap(), a);

    let other = MaskKey::from_bytes(&[8u8; 32]).unwrap();
    let mut out = BytesMut::new();
    Strategy::Hash.apply(b"alice@example.com", &other, &mut out);
    assert_ne!(&out[..], &a[..], "another key gives another output");

    // Not the plain SHA-256 of the value.
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"alice@example.com");
    let hex: String = digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    assert_ne!(&a[2..], hex.as_bytes());
}

#[test]
fn keys_need_32_bytes() {
    assert!(matches!(
        MaskKey::from_bytes(&[1u8; 31]),
        Err(MaskError::KeyTooShort { len: 31 })
    ));
    assert!(MaskKey::from_bytes(&[1u8; 64]).is_ok());
    let (a, b) = (MaskKey::random().unwrap(), MaskKey::random().unwrap());
    let (mut x, mut y) = (BytesMut::new(), BytesMut::new());
    Strategy::Hash.apply(b"v", &a, &mut x);
    Strategy::Hash.apply(b"v", &b, &mut y);
    assert_ne!(x, y);
    assert_eq!(format!("{a:?}"), "MaskKey(..)");
}

#[test]
fn strongest_strategy_wins() {
    let redact = Strategy::Redact {
        replacement: "x".into(),
    };
    let cases: &[(Strategy, Strategy, Strategy)] = &[
        (Strategy::Null, redact.clone(), Strategy::Null),
        (redact.clone(), Strategy::Null, Strategy::Null),
        (Strategy::Hash, redact.clone(), redact.clone()),
        (Strategy::Email, Strategy::Hash, Strategy::Hash),
        (partial(2, 2), Strategy::Email, Strategy::Email),
        (partial(4, 0), partial(2, 2), partial(2, 0)),
        (Strategy::Hash, Strategy::Hash, Strategy::Hash),
    ];
    for (a, b, want) in cases {
        assert_eq!(&strongest(a.clone(), b.clone()), want, "{a:?} vs {b:?}");
    }
    let order = [
        Strategy::Null,
        redact,
        Strategy::Hash,
        Strategy::Email,
        partial(1, 1),
    ];
    assert!(order.windows(2).all(|w| w[0].strength() > w[1].strength()));
}

#[test]
fn strategy_from_rule_takes_its_parameters() {
    let rule: dbward_crds::MaskingRule = serde_json::from_value(serde_json::json!({
        "columns": ["public.cards.number"], "strategy": "partial", "keepLast": 4
    }))
    .unwrap();
    assert_eq!(Strategy::from_rule(&rule), partial(0, 4));
    let rule: dbward_crds::MaskingRule = serde_json::from_value(serde_json::json!({
        "columns": ["*.*.ssn"], "strategy": "redact", "replacement": "XXX"
    }))
    .unwrap();
    assert_eq!(
        Strategy::from_rule(&rule),
        Strategy::Redact {
            replacement: "XXX".into()
        }
    );
}
