//! Masking `COPY ... TO STDOUT` data row by row, in text and CSV format. Binary COPY cannot be masked
//! value by value; the caller denies it ([`is_binary_copy`]).

use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use super::{
    ColumnAction, DetectorRule, MaskError, MaskKey, Masked,
    copy_field::{Csv, csv_field_end, decode_csv, decode_text, encode_csv, encode_text, text_field_end},
    row::mask_text,
};

/// The most bytes of one row a [`CopyMasker`] buffers while waiting for the rest of it.
pub const MAX_COPY_ROW: usize = 64 << 20;

/// The format options of a `COPY ... TO STDOUT` (from the statement; the server does not repeat them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyFormat {
    /// `FORMAT text`: fields separated by `delimiter`, backslash escapes, `null` for NULL.
    Text { delimiter: u8, null: Box<[u8]> },
    /// `FORMAT csv`: fields separated by `delimiter`, quoted with `quote`, `escape` before a quote
    /// inside quotes, unquoted `null` for NULL.
    Csv {
        delimiter: u8,
        quote: u8,
        escape: u8,
        null: Box<[u8]>,
    },
}

impl CopyFormat {
    /// Text format with the server's defaults: tab delimiter, `\N` for NULL.
    pub fn text() -> Self {
        Self::Text {
            delimiter: b'\t',
            null: b"\\N"[..].into(),
        }
    }

    /// CSV with the server's defaults: `,` delimiter, `"` quote and escape, NULL as an unquoted empty
    /// field.
    pub fn csv() -> Self {
        Self::Csv {
            delimiter: b',',
            quote: b'"',
            escape: b'"',
            null: Box::default(),
        }
    }

    fn delimiter(&self) -> u8 {
        match self {
            Self::Text { delimiter, .. } | Self::Csv { delimiter, .. } => *delimiter,
        }
    }

    fn null(&self) -> &[u8] {
        match self {
            Self::Text { null, .. } | Self::Csv { null, .. } => null,
        }
    }

    fn csv_settings(&self) -> Option<Csv<'_>> {
        match self {
            Self::Text { .. } => None,
            Self::Csv {
                delimiter,
                quote,
                escape,
                null,
            } => Some(Csv {
                delimiter: *delimiter,
                quote: *quote,
                escape: *escape,
                null,
            }),
        }
    }
}

/// Masks the rows of one COPY TO STDOUT. Feed it each CopyData payload with [`CopyMasker::push`]; it
/// appends the masked form of every complete row to the output and keeps a row split across payloads
/// until its end arrives (at most [`MAX_COPY_ROW`] bytes).
#[derive(Debug)]
pub struct CopyMasker {
    rows: RowMasker,
    columns: Vec<ColumnAction>,
    /// The start of a row whose end has not arrived.
    pending: BytesMut,
    /// Where the row-end scan stands at the end of `pending` (CSV quoting).
    scan: Scan,
    /// A header row is still to come (passed through unchanged).
    header: bool,
    limit: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct Scan {
    in_quotes: bool,
    after_escape: bool,
}

#[derive(Debug)]
struct RowMasker {
    format: CopyFormat,
    detectors: Arc<[DetectorRule]>,
    key: MaskKey,
    /// Reused buffers: one decoded field, and its masked form.
    field: BytesMut,
    masked: BytesMut,
}

impl CopyMasker {
    /// A masker for a COPY of these columns (in COPY order) in this format.
    pub fn new(
        format: CopyFormat,
        columns: Vec<ColumnAction>,
        detectors: Arc<[DetectorRule]>,
        key: MaskKey,
    ) -> Self {
        Self {
            rows: RowMasker {
                format,
                detectors,
                key,
                field: BytesMut::new(),
                masked: BytesMut::new(),
            },
            columns,
            pending: BytesMut::new(),
            scan: Scan::default(),
            header: false,
            limit: MAX_COPY_ROW,
        }
    }

    /// The COPY has `HEADER`: its first row names the columns and passes unchanged.
    pub fn with_header(mut self, header: bool) -> Self {
        self.header = header;
        self
    }

    /// Buffer at most `limit` bytes of a split row (default [`MAX_COPY_ROW`]).
    pub fn with_row_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Append the masked form of every row that `payload` completes to `out`. On an error the COPY
    /// cannot go on; `out` may hold the rows masked before it.
    pub fn push(&mut self, payload: &[u8], out: &mut BytesMut) -> Result<(), MaskError> {
        let mut start = 0;
        while start < payload.len() {
            let rest = &payload[start..];
            let Some(end) = self.row_end(rest) else {
                if self.pending.len() + rest.len() > self.limit {
                    return Err(MaskError::CopyRowTooLong { limit: self.limit });
                }
                self.pending.extend_from_slice(rest);
                break;
            };
            self.scan = Scan::default();
            if self.pending.is_empty() {
                self.emit(&rest[..end], out)?;
            } else {
                if self.pending.len() + end > self.limit {
                    return Err(MaskError::CopyRowTooLong { limit: self.limit });
                }
                let mut row = std::mem::take(&mut self.pending);
                row.extend_from_slice(&rest[..end]);
                let result = self.emit(&row, out);
                row.clear();
                self.pending = row;
                result?;
            }
            start += end + 1;
        }
        Ok(())
    }

    /// The COPY's data ended (CopyDone): an unfinished row is an error.
    pub fn finish(&mut self) -> Result<(), MaskError> {
        if self.pending.is_empty() {
            Ok(())
        } else {
            Err(MaskError::CopyTruncated)
        }
    }

    fn emit(&mut self, row: &[u8], out: &mut BytesMut) -> Result<(), MaskError> {
        if std::mem::take(&mut self.header) {
            out.extend_from_slice(row);
        } else {
            let mark = out.len();
            if let Err(e) = self.rows.mask_row(row, &self.columns, out) {
                out.truncate(mark);
                return Err(e);
            }
        }
        out.put_u8(b'\n');
        Ok(())
    }

    /// The offset of the newline that ends the current row within `bytes`, continuing the scan state.
    fn row_end(&mut self, bytes: &[u8]) -> Option<usize> {
        let (quote, escape) = match &self.rows.format {
            CopyFormat::Text { .. } => return bytes.iter().position(|&b| b == b'\n'),
            CopyFormat::Csv { quote, escape, .. } => (*quote, *escape),
        };
        let scan = &mut self.scan;
        for (i, &b) in bytes.iter().enumerate() {
            if scan.after_escape {
                scan.after_escape = false;
                if b == quote || b == escape {
                    continue;
                }
            }
            if scan.in_quotes {
                if escape != quote && b == escape {
                    scan.after_escape = true;
                } else if b == quote {
                    scan.in_quotes = false;
                }
            } else if b == quote {
                scan.in_quotes = true;
            } else if b == b'\n' {
                return Some(i);
            }
        }
        None
    }
}

impl RowMasker {
    /// Append the masked row (without its newline) to `out`.
    fn mask_row(
        &mut self,
        row: &[u8],
        columns: &[ColumnAction],
        out: &mut BytesMut,
    ) -> Result<(), MaskError> {
        let expected = columns.len();
        let mut start = 0;
        let mut index = 0;
        loop {
            let (end, quoted) = match self.format.csv_settings() {
                Some(csv) => csv_field_end(row, start, &csv),
                None => (text_field_end(row, start, self.format.delimiter()), false),
            };
            // A row of zero columns is an empty line.
            if expected == 0 && row.is_empty() {
                return Ok(());
            }
            let action = columns.get(index).ok_or(MaskError::CopyFieldCountMismatch {
                expected,
                found: index + 1,
            })?;
            self.mask_field(&row[start..end.min(row.len())], quoted, action, out);
            index += 1;
            if end >= row.len() {
                break;
            }
            out.put_u8(row[end]);
            start = end + 1;
        }
        if index != expected {
            return Err(MaskError::CopyFieldCountMismatch {
                expected,
                found: index,
            });
        }
        Ok(())
    }

    fn mask_field(&mut self, raw: &[u8], quoted: bool, action: &ColumnAction, out: &mut BytesMut) {
        let null = self.format.null();
        if action.is_keep() || (!quoted && raw == null) {
            out.extend_from_slice(raw);
            return;
        }
        self.field.clear();
        self.masked.clear();
        match self.format.csv_settings() {
            Some(csv) => decode_csv(raw, &csv, &mut self.field),
            None => decode_text(raw, &mut self.field),
        }
        if mask_text(&self.field, action, &self.detectors, &self.key, &mut self.masked) == Masked::Null {
            out.extend_from_slice(null);
            return;
        }
        match self.format.csv_settings() {
            Some(csv) => encode_csv(&self.masked, &csv, out),
            None => encode_text(&self.masked, self.format.delimiter(), out),
        }
    }
}

/// Whether a CopyOutResponse (message body) announces binary COPY data, which cannot be masked.
pub fn is_binary_copy(copy_out_response_body: &[u8]) -> Result<bool, MaskError> {
    let body = copy_out_response_body;
    let (&format, rest) = body
        .split_first()
        .ok_or(MaskError::MalformedCopyOutResponse("empty body"))?;
    let columns = rest
        .get(..2)
        .map(|b| i16::from_be_bytes([b[0], b[1]]))
        .ok_or(MaskError::MalformedCopyOutResponse("missing column count"))?;
    let columns =
        usize::try_from(columns).map_err(|_| MaskError::MalformedCopyOutResponse("negative column count"))?;
    if rest.len() != 2 + 2 * columns {
        return Err(MaskError::MalformedCopyOutResponse(
            "column formats do not match the column count",
        ));
    }
    match format {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(MaskError::MalformedCopyOutResponse("unknown overall format")),
    }
}
