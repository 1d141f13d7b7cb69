//! The data path: local listeners, client startup, the upstream connection, and the relay.

pub mod cancel;
pub mod hook;
pub mod io;
pub mod listener;
pub mod messages;
pub mod pump;
pub mod relay;
pub mod session;
pub mod signals;
pub mod slots;
pub mod state;
pub mod stream;
pub mod upstream;

pub use listener::{Proxy, ProxyConfig};
pub use messages::Malformed;

/// Why a relay ended with an error. Each ends only its own session.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("reading: {0}")]
    Read(#[source] std::io::Error),
    #[error("writing: {0}")]
    Write(#[source] std::io::Error),
    #[error("message {tag:?} declares an impossible length {length}", tag = char::from(*tag))]
    BadLength { tag: u8, length: usize },
    #[error(
        "message {tag:?} of {length} bytes is larger than the {limit}-byte limit for messages the sidecar inspects",
        tag = char::from(*tag)
    )]
    TooLarge { tag: u8, length: usize, limit: usize },
    #[error(transparent)]
    Malformed(#[from] Malformed),
    #[error("the server sent a {0}")]
    UpstreamMalformed(#[source] Malformed),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("the session journal cannot be written: {0}")]
    Journal(String),
}
