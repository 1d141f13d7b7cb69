//! Rewriting one `DataRow` body by a per-column plan.

use std::{cell::RefCell, sync::Arc};

use bytes::{BufMut, BytesMut};

use super::{DetectorRule, MaskError, MaskKey, Masked, ScanResult, Strategy, scan_and_mask};

/// What happens to one result column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnAction {
    /// The value passes unchanged.
    Keep,
    /// The value is replaced by its masked form.
    Mask(Strategy),
    /// The value is scanned by the plan's detectors; findings are masked.
    Detect,
    /// Findings of the detectors are masked first, then the whole value by the strategy (detection only
    /// matters when the strategy keeps part of the value: partial, email).
    MaskAndDetect(Strategy),
}

impl ColumnAction {
    /// Whether the value is left alone.
    pub fn is_keep(&self) -> bool {
        matches!(self, Self::Keep)
    }
}

/// The format code of a result column (from RowDescription, or the Bind's result formats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnFormat {
    /// Format code 0.
    Text,
    /// Format code 1.
    Binary,
}

/// One column of a [`RowPlan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnPlan {
    /// What to do with its values.
    pub action: ColumnAction,
    /// The format the values arrive in.
    pub format: ColumnFormat,
    /// The column's type OID (from RowDescription).
    pub type_oid: u32,
}

/// Type OIDs whose binary form is their text (masked in place like text).
pub const TEXT_LIKE_OIDS: [u32; 6] = [
    25,   // text
    1043, // varchar
    1042, // bpchar
    19,   // name
    114,  // json
    142,  // xml
];

/// jsonb: its binary form is a version byte then the JSON text.
pub const JSONB_OID: u32 = 3802;

/// What to do with each column of a result's rows, and the detectors that `Detect` columns use.
#[derive(Debug, Clone, Default)]
pub struct RowPlan {
    columns: Vec<ColumnPlan>,
    detectors: Arc<[DetectorRule]>,
}

impl RowPlan {
    /// A plan for a result with these columns, in order.
    pub fn new(columns: Vec<ColumnPlan>, detectors: Arc<[DetectorRule]>) -> Self {
        Self { columns, detectors }
    }

    /// The columns, in result order.
    pub fn columns(&self) -> &[ColumnPlan] {
        &self.columns
    }

    /// The detectors used by `Detect` and `MaskAndDetect` columns.
    pub fn detectors(&self) -> &[DetectorRule] {
        &self.detectors
    }

    /// Whether every column is kept: the rows can be forwarded as the original bytes.
    pub fn is_passthrough(&self) -> bool {
        self.columns.iter().all(|c| c.action.is_keep())
            || (self.detectors.is_empty() && self.columns.iter().all(|c| c.action == ColumnAction::Detect))
    }
}

thread_local! {
    /// Scratch for `MaskAndDetect` (detected text, before the strategy): reused across rows.
    static SCRATCH: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// Scratch kept between rows is dropped when it grew past this.
const SCRATCH_KEEP: usize = 1 << 20;

/// Append a new DataRow body (without tag and length) to `out`: the column count, then each column's
/// length (-1 for NULL) and bytes, masked by `plan`. Kept columns are copied byte for byte.
///
/// The body is validated first (column count, every length within the body, no trailing bytes); a
/// malformed body is an error and `out` is left as it was.
pub fn rewrite_data_row(
    body: &[u8],
    plan: &RowPlan,
    key: &MaskKey,
    out: &mut BytesMut,
) -> Result<(), MaskError> {
    let mark = out.len();
    let result = rewrite(body, plan, key, out);
    if result.is_err() {
        out.truncate(mark);
    }
    result
}

fn rewrite(body: &[u8], plan: &RowPlan, key: &MaskKey, out: &mut BytesMut) -> Result<(), MaskError> {
    let count = body
        .get(..2)
        .map(|b| i16::from_be_bytes([b[0], b[1]]))
        .ok_or(MaskError::MalformedDataRow("too short for its column count"))?;
    let count = usize::try_from(count).map_err(|_| MaskError::MalformedDataRow("negative column count"))?;
    if count != plan.columns.len() {
        return Err(MaskError::ColumnCountMismatch {
            expected: plan.columns.len(),
            found: count,
        });
    }
    out.reserve(body.len() + 16);
    out.extend_from_slice(&body[..2]);
    let mut pos = 2;
    // Start of the run of kept columns not yet copied.
    let mut copied = pos;
    for column in &plan.columns {
        let (value, next) = read_column(body, pos)?;
        if let Some(value) = value.filter(|_| !column.action.is_keep()) {
            out.extend_from_slice(&body[copied..pos]);
            write_masked(value, column, plan, key, out)?;
            copied = next;
        }
        pos = next;
    }
    if pos != body.len() {
        return Err(MaskError::MalformedDataRow("bytes after the last column"));
    }
    out.extend_from_slice(&body[copied..pos]);
    Ok(())
}

/// The value at `pos` (`None` for NULL) and the offset after it.
fn read_column(body: &[u8], pos: usize) -> Result<(Option<&[u8]>, usize), MaskError> {
    let len = body
        .get(pos..pos + 4)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(MaskError::MalformedDataRow("truncated column length"))?;
    let start = pos + 4;
    if len == -1 {
        return Ok((None, start));
    }
    let len = usize::try_from(len).map_err(|_| MaskError::MalformedDataRow("negative column length"))?;
    let value = body.get(start..start + len).ok_or(MaskError::MalformedDataRow(
        "column value runs past the end of the row",
    ))?;
    Ok((Some(value), start + len))
}

/// Append one masked column (length and bytes) for a non-NULL `value`.
fn write_masked(
    value: &[u8],
    column: &ColumnPlan,
    plan: &RowPlan,
    key: &MaskKey,
    out: &mut BytesMut,
) -> Result<(), MaskError> {
    let len_at = out.len();
    out.put_i32(0);
    let (prefix, text) = match column.format {
        ColumnFormat::Text => (&[][..], value),
        ColumnFormat::Binary if TEXT_LIKE_OIDS.contains(&column.type_oid) => (&[][..], value),
        ColumnFormat::Binary if column.type_oid == JSONB_OID && !value.is_empty() => value.split_at(1),
        ColumnFormat::Binary => return null_at(len_at, out),
    };
    out.extend_from_slice(prefix);
    if mask_text(text, &column.action, &plan.detectors, key, out) == Masked::Null {
        return null_at(len_at, out);
    }
    let len = i32::try_from(out.len() - len_at - 4).map_err(|_| MaskError::ValueTooLong)?;
    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

fn null_at(len_at: usize, out: &mut BytesMut) -> Result<(), MaskError> {
    out.truncate(len_at);
    out.put_i32(-1);
    Ok(())
}

/// Append the masked form of one text value by `action`.
pub(crate) fn mask_text(
    text: &[u8],
    action: &ColumnAction,
    detectors: &[DetectorRule],
    key: &MaskKey,
    out: &mut BytesMut,
) -> Masked {
    match action {
        ColumnAction::Keep => {
            out.extend_from_slice(text);
            Masked::Value
        }
        ColumnAction::Mask(strategy) => strategy.apply(text, key, out),
        ColumnAction::Detect => match scan_and_mask(text, detectors, key, out) {
            ScanResult::Null => Masked::Null,
            ScanResult::Clean | ScanResult::Masked => Masked::Value,
        },
        ColumnAction::MaskAndDetect(strategy) if !strategy.keeps_content() || detectors.is_empty() => {
            strategy.apply(text, key, out)
        }
        ColumnAction::MaskAndDetect(strategy) => SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            scratch.clear();
            let masked = match scan_and_mask(text, detectors, key, &mut scratch) {
                ScanResult::Null => Masked::Null,
                ScanResult::Clean | ScanResult::Masked => strategy.apply(&scratch, key, out),
            };
            if scratch.capacity() > SCRATCH_KEEP {
                *scratch = BytesMut::new();
            }
            masked
        }),
    }
}
