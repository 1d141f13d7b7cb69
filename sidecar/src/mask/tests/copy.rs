use std::sync::Arc;

use bytes::BytesMut;
use dbward_crds::Detector;

use super::key;
use crate::mask::{ColumnAction, CopyFormat, CopyMasker, DetectorRule, MaskError, Strategy, is_binary_copy};

fn redact(r: &str) -> ColumnAction {
    ColumnAction::Mask(Strategy::Redact {
        replacement: r.into(),
    })
}

fn masker(format: CopyFormat, columns: Vec<ColumnAction>) -> CopyMasker {
    let detectors: Arc<[DetectorRule]> = Arc::from([DetectorRule::new(
        Detector::Ssn,
        None,
        Strategy::Redact {
            replacement: "#".into(),
        },
    )
    .unwrap()]);
    CopyMasker::new(format, columns, detectors, key())
}

/// Feed `data` in pieces cut at `cuts`, and return the concatenated output.
fn run(m: &mut CopyMasker, data: &[u8], cuts: &[usize]) -> Result<Vec<u8>, MaskError> {
    let mut out = BytesMut::new();
    let mut start = 0;
    for &cut in cuts.iter().chain([data.len()].iter()) {
        m.push(&data[start..cut], &mut out)?;
        start = cut;
    }
    m.finish()?;
    Ok(out.to_vec())
}

struct Case {
    name: &'static str,
    format: fn() -> CopyFormat,
    columns: fn() -> Vec<ColumnAction>,
    header: bool,
    input: &'static [u8],
    want: &'static [u8],
}

const CASES: &[Case] = &[
    Case {
        name: "text: masks one column, keeps escapes and nulls of the others",
        format: CopyFormat::text,
        columns: || vec![ColumnAction::Keep, redact("x\ty"), ColumnAction::Keep],
        header: false,
        input: b"1\tsecret\ta\\tb\n2\t\\N\t\\N\n3\t\ts\\\\p\n",
        want: b"1\tx\\ty\ta\\tb\n2\t\\N\t\\N\n3\tx\\ty\ts\\\\p\n",
    },
    Case {
        name: "text: escapes are decoded before masking and the result re-encoded",
        format: CopyFormat::text,
        columns: || {
            vec![
                ColumnAction::Mask(Strategy::Partial {
                    keep_first: 2,
                    keep_last: 1,
                }),
                ColumnAction::Detect,
            ]
        },
        header: false,
        input: b"a\\nb\\\\cd\\101\tssn\\t123-45-6789\\x41\n",
        want: b"a\\n****A\tssn\\t#A\n",
    },
    Case {
        name: "text: null strategy writes the null string",
        format: CopyFormat::text,
        columns: || vec![ColumnAction::Mask(Strategy::Null), ColumnAction::Keep],
        header: true,
        input: b"id\tname\n1\tbob\n",
        want: b"id\tname\n\\N\tbob\n",
    },
    Case {
        name: "text: custom delimiter is escaped in masked values",
        format: || CopyFormat::Text {
            delimiter: b'|',
            null: b"NULL"[..].into(),
        },
        columns: || vec![redact("a|b"), ColumnAction::Keep],
        header: false,
        input: b"x\\|y|z\nNULL|NULL\n",
        want: b"a\\|b|z\nNULL|NULL\n",
    },
    Case {
        name: "csv: quoted fields with delimiters, quotes and newlines",
        format: CopyFormat::csv,
        columns: || vec![ColumnAction::Keep, redact("a,\"b\""), ColumnAction::Detect],
        header: true,
        input: b"id,name,note\n1,\"x,\ny\",\"he said \"\"123-45-6789\"\"\"\n2,,\"\"\n3,plain,\n",
        want: b"id,name,note\n1,\"a,\"\"b\"\"\",\"he said \"\"#\"\"\"\n2,,\"\"\n3,\"a,\"\"b\"\"\",\n",
    },
    Case {
        name: "csv: empty quoted string is a value, empty unquoted is NULL",
        format: CopyFormat::csv,
        columns: || vec![redact("R"), redact("")],
        header: false,
        input: b"\"\",\nv,w\n",
        want: b"R,\nR,\"\"\n",
    },
    Case {
        name: "csv: custom quote, escape, delimiter and null string",
        format: || CopyFormat::Csv {
            delimiter: b';',
            quote: b'\'',
            escape: b'\\',
            null: b"NULL"[..].into(),
        },
        columns: || vec![ColumnAction::Mask(Strategy::Email), ColumnAction::Keep],
        header: false,
        input: b"'it\\'s;@x.org';'a\nb'\nNULL;'NULL'\n'NULL';1\n",
        want: b"****@x.org;'a\nb'\nNULL;'NULL'\n****;1\n",
    },
];

#[test]
fn copy_rows_are_masked_however_they_are_split() {
    for case in CASES {
        let new = || masker((case.format)(), (case.columns)()).with_header(case.header);
        assert_eq!(
            String::from_utf8_lossy(&run(&mut new(), case.input, &[]).unwrap()),
            String::from_utf8_lossy(case.want),
            "{}",
            case.name
        );
        // Split at every byte, and into single bytes.
        for cut in 0..=case.input.len() {
            assert_eq!(
                run(&mut new(), case.input, &[cut]).unwrap(),
                case.want,
                "{} cut at {cut}",
                case.name
            );
        }
        let every: Vec<usize> = (1..case.input.len()).collect();
        assert_eq!(
            run(&mut new(), case.input, &every).unwrap(),
            case.want,
            "{} bytewise",
            case.name
        );
    }
}

#[test]
fn kept_columns_round_trip_exactly() {
    let input = b"a\\\\b\t\\N\tc\\td\\x41\n\t\t\n";
    let mut m = masker(CopyFormat::text(), vec![ColumnAction::Keep; 3]);
    assert_eq!(run(&mut m, input, &[5]).unwrap(), input);
    let input = b"\"a,\"\"b\",,\"\"\n,\"\n\",x\n";
    let mut m = masker(CopyFormat::csv(), vec![ColumnAction::Keep; 3]);
    assert_eq!(run(&mut m, input, &[3, 9]).unwrap(), input);
}

#[test]
fn copy_errors() {
    // Wrong field counts.
    let mut m = masker(CopyFormat::text(), vec![redact("x"); 2]);
    assert!(matches!(
        run(&mut m, b"a\tb\tc\n", &[]),
        Err(MaskError::CopyFieldCountMismatch {
            expected: 2,
            found: 3
        })
    ));
    let mut m = masker(CopyFormat::text(), vec![redact("x"); 2]);
    assert!(matches!(
        run(&mut m, b"a\n", &[]),
        Err(MaskError::CopyFieldCountMismatch {
            expected: 2,
            found: 1
        })
    ));
    // Data that ends mid-row.
    let mut m = masker(CopyFormat::csv(), vec![redact("x")]);
    assert!(matches!(
        run(&mut m, b"a\n\"b\nc", &[]),
        Err(MaskError::CopyTruncated)
    ));
    // A row longer than the limit, split or not.
    let mut m = masker(CopyFormat::text(), vec![redact("x")]).with_row_limit(8);
    assert!(matches!(
        run(&mut m, b"0123456789", &[]),
        Err(MaskError::CopyRowTooLong { limit: 8 })
    ));
    let mut m = masker(CopyFormat::text(), vec![redact("x")]).with_row_limit(8);
    assert!(matches!(
        run(&mut m, b"0123456789\n", &[3, 6]),
        Err(MaskError::CopyRowTooLong { .. })
    ));
    let mut m = masker(CopyFormat::text(), vec![redact("x")]).with_row_limit(8);
    assert_eq!(run(&mut m, b"0123\n45\n", &[2, 6]).unwrap(), b"x\nx\n");
}

#[test]
fn zero_column_copy_rows_are_empty_lines() {
    let mut m = masker(CopyFormat::text(), vec![]);
    assert_eq!(run(&mut m, b"\n\n", &[1]).unwrap(), b"\n\n");
}

#[test]
fn copy_out_response_format() {
    let cases: &[(&[u8], Option<bool>)] = &[
        (b"\x00\x00\x02\x00\x00\x00\x00", Some(false)),
        (b"\x01\x00\x01\x00\x01", Some(true)),
        (b"\x00\x00\x00", Some(false)),
        (b"", None),
        (b"\x00\x00", None),
        (b"\x00\x00\x02\x00\x00", None),
        (b"\x00\xff\xff", None),
        (b"\x02\x00\x00", None),
        (b"\x00\x00\x01\x00\x00\x00", None),
    ];
    for (body, want) in cases {
        assert_eq!(is_binary_copy(body).ok(), *want, "{body:?}");
    }
}
