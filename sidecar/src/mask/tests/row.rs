use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use dbward_crds::Detector;

use super::{XorShift, key};
use crate::mask::{
    ColumnAction, ColumnFormat, ColumnPlan, DetectorRule, MaskError, RowPlan, Strategy, rewrite_data_row,
};

type Value = Option<Vec<u8>>;
/// A row's values as input (`None` is NULL).
type Input<'a> = &'a [Option<&'a [u8]>];

fn body(values: &[Option<&[u8]>]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_i16(values.len() as i16);
    for v in values {
        match v {
            None => b.put_i32(-1),
            Some(v) => {
                b.put_i32(v.len() as i32);
                b.extend_from_slice(v);
            }
        }
    }
    b.to_vec()
}

/// A strict DataRow parser, independent of the code under test.
fn parse(body: &[u8]) -> Vec<Value> {
    let n = i16::from_be_bytes([body[0], body[1]]) as usize;
    let mut pos = 2;
    let mut values = Vec::new();
    for _ in 0..n {
        let len = i32::from_be_bytes(body[pos..pos + 4].try_into().unwrap());
        pos += 4;
        if len == -1 {
            values.push(None);
        } else {
            let len = usize::try_from(len).unwrap();
            values.push(Some(body[pos..pos + len].to_vec()));
            pos += len;
        }
    }
    assert_eq!(pos, body.len(), "no trailing bytes");
    values
}

fn col(action: ColumnAction, format: ColumnFormat, type_oid: u32) -> ColumnPlan {
    ColumnPlan {
        action,
        format,
        type_oid,
    }
}

fn text(action: ColumnAction) -> ColumnPlan {
    col(action, ColumnFormat::Text, 25)
}

fn redact() -> ColumnAction {
    ColumnAction::Mask(Strategy::Redact {
        replacement: "****".into(),
    })
}

fn rewrite(values: &[Option<&[u8]>], plan: &RowPlan) -> Vec<Value> {
    let mut out = BytesMut::new();
    rewrite_data_row(&body(values), plan, &key(), &mut out).unwrap();
    parse(&out)
}

fn v(s: &[u8]) -> Value {
    Some(s.to_vec())
}

#[test]
fn kept_rows_are_byte_identical() {
    let plan = RowPlan::new(vec![text(ColumnAction::Keep); 3], Arc::from([]));
    assert!(plan.is_passthrough());
    let original = body(&[Some(b"a"), None, Some(b"")]);
    let mut out = BytesMut::from(&b"xx"[..]);
    rewrite_data_row(&original, &plan, &key(), &mut out).unwrap();
    assert_eq!(&out[2..], &original[..], "appended after what was there");
}

#[test]
fn text_columns_are_masked() {
    let detectors: Arc<[DetectorRule]> = Arc::from([DetectorRule::new(
        Detector::CreditCard,
        None,
        Strategy::Redact {
            replacement: "[card]".into(),
        },
    )
    .unwrap()]);
    let plan = RowPlan::new(
        vec![
            text(ColumnAction::Keep),
            text(redact()),
            text(ColumnAction::Mask(Strategy::Null)),
            text(ColumnAction::Detect),
            text(ColumnAction::MaskAndDetect(Strategy::Partial {
                keep_first: 9,
                keep_last: 0,
            })),
        ],
        detectors,
    );
    assert!(!plan.is_passthrough());
    let cases: &[(Input<'_>, &[Value])] = &[
        (
            &[
                Some(b"1"),
                Some(b"secret"),
                Some(b"x"),
                Some(b"pay 4111111111111111"),
                Some(b"card 4111111111111111"),
            ],
            &[v(b"1"), v(b"****"), None, v(b"pay [card]"), v(b"card [car**")],
        ),
        // NULLs stay NULL; zero-length values are masked like any value.
        (&[None, None, None, None, None], &[None, None, None, None, None]),
        (
            &[Some(b""), Some(b""), Some(b""), Some(b""), Some(b"")],
            &[v(b""), v(b"****"), None, v(b""), v(b"")],
        ),
    ];
    for (input, want) in cases {
        assert_eq!(rewrite(input, &plan), *want, "{input:?}");
    }
}

#[test]
fn binary_columns_are_masked_in_place_or_nulled() {
    let bin = |oid| col(redact(), ColumnFormat::Binary, oid);
    let plan = RowPlan::new(
        vec![
            bin(25),
            bin(1043),
            bin(1042),
            bin(19),
            bin(114),
            bin(142),
            bin(3802),
            bin(3802),
            bin(23),
            bin(17),
        ],
        Arc::from([]),
    );
    let input: &[Option<&[u8]>] = &[
        Some(b"t"),
        Some(b"v"),
        Some(b"c "),
        Some(b"n"),
        Some(b"{}"),
        Some(b"<a/>"),
        Some(b"\x01{\"a\":1}"),
        Some(b""),
        Some(&[0, 0, 0, 42]),
        Some(b"\x00\x01"),
    ];
    let r = v(b"****");
    assert_eq!(
        rewrite(input, &plan),
        vec![
            r.clone(),
            r.clone(),
            r.clone(),
            r.clone(),
            r.clone(),
            r,
            v(b"\x01****"),
            None,
            None,
            None
        ]
    );
    // Keep on a binary column of any type passes it through.
    let plan = RowPlan::new(
        vec![col(ColumnAction::Keep, ColumnFormat::Binary, 23)],
        Arc::from([]),
    );
    assert_eq!(rewrite(&[Some(&[0, 0, 0, 42])], &plan), vec![v(&[0, 0, 0, 42])]);
}

#[test]
fn malformed_rows_are_errors() {
    let plan = RowPlan::new(vec![text(redact()), text(ColumnAction::Keep)], Arc::from([]));
    let cases: &[(&[u8], &str)] = &[
        (b"", "too short"),
        (b"\x00", "too short"),
        (b"\xff\xff", "negative column count"),
        (b"\x00\x01\x00\x00\x00\x00", "mismatch"),
        (b"\x00\x02\x00\x00", "truncated"),
        (b"\x00\x02\x00\x00\x00\x05abc", "past the end"),
        (b"\x00\x02\xff\xff\xff\xfe", "negative column length"),
        (b"\x00\x02\x00\x00\x00\x01a\x00\x00\x00\x01", "past the end"),
        (b"\x00\x02\xff\xff\xff\xff\xff\xff\xff\xffZ", "after the last"),
        (b"\x00\x02\x00\x00\x00\x01a\x7f\xff\xff\xff", "past the end"),
    ];
    for (input, want) in cases {
        let mut out = BytesMut::from(&b"keep"[..]);
        let err = rewrite_data_row(input, &plan, &key(), &mut out).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(want)
                || (*want == "mismatch" && matches!(err, MaskError::ColumnCountMismatch { .. })),
            "{input:?}: {message}"
        );
        assert_eq!(&out[..], b"keep", "{input:?}: output left as it was");
    }
}

#[test]
fn passthrough_plans() {
    let none: Arc<[DetectorRule]> = Arc::from([]);
    assert!(RowPlan::new(vec![], none.clone()).is_passthrough());
    assert!(RowPlan::new(vec![text(ColumnAction::Detect)], none.clone()).is_passthrough());
    assert!(!RowPlan::new(vec![text(ColumnAction::Keep), text(redact())], none).is_passthrough());
}

#[test]
fn random_rows_always_rewrite_to_valid_rows() {
    let detectors: Arc<[DetectorRule]> = Arc::from([
        DetectorRule::new(Detector::Email, None, Strategy::Hash).unwrap(),
        DetectorRule::new(Detector::CreditCard, None, Strategy::Null).unwrap(),
    ]);
    let actions = [
        ColumnAction::Keep,
        redact(),
        ColumnAction::Mask(Strategy::Null),
        ColumnAction::Mask(Strategy::Hash),
        ColumnAction::Mask(Strategy::Email),
        ColumnAction::Mask(Strategy::Partial {
            keep_first: 1,
            keep_last: 2,
        }),
        ColumnAction::Detect,
        ColumnAction::MaskAndDetect(Strategy::Partial {
            keep_first: 3,
            keep_last: 0,
        }),
    ];
    let alphabet: &[u8] = b"ab@.c 4111-\xc3\xa9\xff\x00com";
    let mut rng = XorShift::new(0x5eed);
    let mut out = BytesMut::new();
    for _ in 0..3000 {
        let n = rng.below(8) as usize;
        let columns: Vec<ColumnPlan> = (0..n)
            .map(|_| {
                let format = if rng.below(4) == 0 {
                    ColumnFormat::Binary
                } else {
                    ColumnFormat::Text
                };
                let oid = [25, 23, 3802, 1043][rng.below(4) as usize];
                col(
                    actions[rng.below(actions.len() as u64) as usize].clone(),
                    format,
                    oid,
                )
            })
            .collect();
        let values: Vec<Value> = (0..n)
            .map(|_| {
                (rng.below(5) != 0).then(|| {
                    let len = rng.below(40) as usize;
                    (0..len)
                        .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                        .collect()
                })
            })
            .collect();
        let refs: Vec<Option<&[u8]>> = values.iter().map(|v| v.as_deref()).collect();
        let plan = RowPlan::new(columns, detectors.clone());
        out.clear();
        rewrite_data_row(&body(&refs), &plan, &key(), &mut out).unwrap();
        let got = parse(&out);
        assert_eq!(got.len(), n);
        for ((column, before), after) in plan.columns().iter().zip(&values).zip(&got) {
            if column.action == ColumnAction::Keep || before.is_none() {
                assert_eq!(after, before, "{column:?}");
            }
        }
        // A row cut anywhere is an error, never a panic.
        let full = body(&refs);
        let cut = rng.below(full.len() as u64) as usize;
        let mut scratch = BytesMut::new();
        assert!(rewrite_data_row(&full[..cut], &plan, &key(), &mut scratch).is_err());
    }
}
