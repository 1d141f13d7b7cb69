//! Masking primitives: pure functions over bytes that rewrite result values on their way to the client
//! (DESIGN.md section 5). Nothing here does I/O or allocates per row: every function appends to a
//! caller's reused [`bytes::BytesMut`].
//!
//! - [`strategy`]: how one value is rewritten ([`Strategy`]: redact, null, hash, partial, email) and
//!   which strategy wins when several rules mask the same column ([`strongest`]).
//! - [`detect`]: recognisers for sensitive text inside a value (card numbers, e-mail addresses, IBANs,
//!   SSNs, user patterns) and [`scan_and_mask`].
//! - [`row`]: rewriting a `DataRow` body by a per-column [`RowPlan`].
//! - [`copy`]: rewriting `COPY ... TO STDOUT` data (text and CSV) row by row with a [`CopyMasker`].

pub mod copy;
mod copy_field;
pub mod detect;
mod key;
pub mod row;
mod scan;
pub mod strategy;

#[cfg(test)]
mod tests;

pub use copy::{CopyFormat, CopyMasker, MAX_COPY_ROW, is_binary_copy};
pub use detect::{DetectorRule, ScanResult, scan_and_mask};
pub use key::{MIN_KEY_LEN, MaskKey};
pub use row::{ColumnAction, ColumnFormat, ColumnPlan, RowPlan, rewrite_data_row};
pub use strategy::{Masked, Strategy, strongest};

/// Why a value, row or COPY stream could not be masked. The relay ends the statement (never passes the
/// data through) when it sees one.
#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    /// A masking key was shorter than [`MIN_KEY_LEN`].
    #[error("masking key is {len} bytes; at least {MIN_KEY_LEN} random bytes are needed")]
    KeyTooShort { len: usize },
    /// The system random generator failed while making a key.
    #[error("could not generate a random masking key")]
    RandomUnavailable,
    /// A regex detector's pattern does not compile.
    #[error("masking detector pattern is not a valid regular expression: {0}")]
    InvalidPattern(#[source] regex::Error),
    /// A regex detector has no pattern.
    #[error("masking detector regex needs a pattern")]
    MissingPattern,
    /// A DataRow body is not well formed.
    #[error("malformed DataRow from the server: {0}")]
    MalformedDataRow(&'static str),
    /// A DataRow has a different number of columns than its RowDescription announced.
    #[error("DataRow has {found} columns but the result described {expected}")]
    ColumnCountMismatch { expected: usize, found: usize },
    /// A masked value or row grew past what the protocol can carry.
    #[error("masked value is too long for the protocol")]
    ValueTooLong,
    /// A CopyOutResponse body is not well formed.
    #[error("malformed CopyOutResponse from the server: {0}")]
    MalformedCopyOutResponse(&'static str),
    /// One COPY row is longer than the masker buffers.
    #[error("COPY row longer than {limit} bytes cannot be masked")]
    CopyRowTooLong { limit: usize },
    /// A COPY row has a different number of fields than the plan.
    #[error("COPY row has {found} fields but the plan has {expected}")]
    CopyFieldCountMismatch { expected: usize, found: usize },
    /// COPY data ended in the middle of a row.
    #[error("COPY data ended in the middle of a row")]
    CopyTruncated,
}

/// Masking results.
pub type Result<T, E = MaskError> = std::result::Result<T, E>;
