//! The catalog's own upstream session: a logged-in connection speaking the simple query protocol,
//! with every message and every result bounded.

use bytes::BytesMut;

use super::CatalogError;
use crate::proxy::{
    io::{ReadError, read_message, send},
    messages::{
        Malformed, Reader,
        backend::{self, put_cstr, put_message, tag as be, txn},
        error::parse_report,
        frontend::tag as fe,
    },
    stream::UpstreamStream,
    upstream::{self, UpstreamTarget},
};

/// The largest single message accepted from the server.
pub(super) const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Startup parameters of the catalog's session. UTF-8 so that every name arrives as valid text
/// whatever the database's encoding.
const PARAMS: &[(&str, &str)] = &[
    ("application_name", "dbward-catalog"),
    ("client_encoding", "UTF8"),
];

/// How much one load may read: rows per statement and bytes in all.
#[derive(Debug)]
pub(super) struct Budget {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub bytes_read: usize,
}

/// A logged-in session used only by the catalog loader.
pub(super) struct SideConnection {
    stream: UpstreamStream,
    buf: BytesMut,
    out: BytesMut,
    /// Whether the last statement was read up to its ReadyForQuery, and the status it carried.
    /// `None` while a statement is in flight or after it failed halfway: the session is unusable.
    ready: Option<u8>,
}

impl SideConnection {
    pub(super) async fn connect(target: &UpstreamTarget) -> Result<Self, CatalogError> {
        let up = upstream::connect(target, PARAMS)
            .await
            .map_err(|e| CatalogError::Connect(e.to_string()))?;
        Ok(SideConnection {
            stream: up.stream,
            buf: BytesMut::new(),
            out: BytesMut::new(),
            ready: Some(up.facts.status),
        })
    }

    /// Whether the session is in sync with the server and outside a transaction: only then may it
    /// be used for the next load.
    pub(super) fn is_idle(&self) -> bool {
        self.ready == Some(txn::IDLE)
    }

    /// Whether the session is in sync with the server (possibly inside a transaction).
    pub(super) fn is_synced(&self) -> bool {
        self.ready.is_some()
    }

    /// Runs a statement that returns no rows.
    pub(super) async fn execute(&mut self, sql: &str) -> Result<(), CatalogError> {
        let mut budget = Budget {
            max_rows: 0,
            max_bytes: MAX_MESSAGE,
            bytes_read: 0,
        };
        self.query::<0>(sql, &mut budget, |_| Ok(())).await
    }

    /// Runs one statement returning `N` text columns and hands each row to `row` (`None` for NULL).
    ///
    /// A server error is read up to ReadyForQuery and returned as [`CatalogError::Server`]; the
    /// session stays usable. Any other failure, including one returned by `row`, leaves the session
    /// out of sync ([`is_synced`](Self::is_synced) is false) and must be followed by dropping it.
    pub(super) async fn query<const N: usize>(
        &mut self,
        sql: &str,
        budget: &mut Budget,
        mut row: impl FnMut([Option<&str>; N]) -> Result<(), CatalogError>,
    ) -> Result<(), CatalogError> {
        if self.ready.take().is_none() {
            return Err(CatalogError::Protocol(
                "the catalog session is out of sync".into(),
            ));
        }
        self.out.clear();
        put_message(&mut self.out, fe::QUERY, |b| put_cstr(b, sql));
        send(&mut self.stream, &self.out)
            .await
            .map_err(|e| CatalogError::Io(e.to_string()))?;

        let mut rows = 0usize;
        let mut server_error: Option<CatalogError> = None;
        loop {
            let (tag, body) = read_message(&mut self.stream, &mut self.buf, MAX_MESSAGE)
                .await
                .map_err(read_error)?;
            budget.bytes_read += body.len() + 5;
            if budget.bytes_read > budget.max_bytes {
                return Err(CatalogError::TooLarge {
                    what: "bytes of catalog data",
                    limit: budget.max_bytes,
                });
            }
            match tag {
                be::ROW_DESCRIPTION => {
                    let mut r = Reader::new(&body, "RowDescription");
                    if r.count()? != N {
                        return Err(CatalogError::Protocol(format!(
                            "a catalog query returned an unexpected number of columns (expected {N})"
                        )));
                    }
                }
                be::DATA_ROW => {
                    rows += 1;
                    if rows > budget.max_rows {
                        return Err(CatalogError::TooLarge {
                            what: "rows in one catalog query",
                            limit: budget.max_rows,
                        });
                    }
                    row(fields::<N>(&body)?)?;
                }
                be::COMMAND_COMPLETE
                | be::EMPTY_QUERY_RESPONSE
                | be::NOTICE_RESPONSE
                | be::PARAMETER_STATUS => {}
                be::ERROR_RESPONSE => {
                    let report = parse_report(&body)?;
                    server_error.get_or_insert(CatalogError::Server {
                        code: report.code.to_owned(),
                        message: report.message.to_owned(),
                    });
                }
                be::READY_FOR_QUERY => {
                    self.ready = Some(backend::ready_status(&body)?);
                    return server_error.map_or(Ok(()), Err);
                }
                _ => {
                    return Err(CatalogError::Protocol(format!(
                        "unexpected message '{}' in answer to a catalog query",
                        char::from(tag).escape_default()
                    )));
                }
            }
        }
    }
}

/// The columns of a DataRow with exactly `N` columns, as text.
fn fields<const N: usize>(body: &[u8]) -> Result<[Option<&str>; N], CatalogError> {
    let mut r = Reader::new(body, "DataRow");
    if r.count()? != N {
        return Err(CatalogError::Protocol(format!(
            "a catalog row has an unexpected number of columns (expected {N})"
        )));
    }
    let mut out = [None; N];
    for field in &mut out {
        let len = r.i32()?;
        if len < 0 {
            continue;
        }
        let raw = r.bytes(usize::try_from(len).map_err(|_| r.err("bad length"))?)?;
        *field = Some(std::str::from_utf8(raw).map_err(|_| r.err("text is not valid UTF-8"))?);
    }
    r.finish()?;
    Ok(out)
}

fn read_error(e: ReadError) -> CatalogError {
    match e {
        ReadError::Eof => CatalogError::Io("the server closed the connection".into()),
        ReadError::Io(e) => CatalogError::Io(e.to_string()),
        e @ ReadError::BadLength { .. } => CatalogError::Protocol(e.to_string()),
    }
}

impl From<Malformed> for CatalogError {
    fn from(m: Malformed) -> Self {
        CatalogError::Protocol(m.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_data_rows() {
        let body = b"\0\x03\0\0\0\x02ab\xff\xff\xff\xff\0\0\0\0";
        assert_eq!(fields::<3>(body).unwrap(), [Some("ab"), None, Some("")]);
        assert!(fields::<2>(body).is_err());
        assert!(fields::<3>(&body[..body.len() - 1]).is_err());
        assert!(fields::<1>(b"\0\x01\0\0\0\x01\xff").is_err());
    }
}
