//! Where the sidecar's configuration comes from. Today: a YAML file of DatabaseConnection, AccessPolicy
//! and Secret documents (`run --config FILE`); the operator source comes later and yields the same types.

pub mod file;
pub mod operator;
pub mod report;
pub mod runtime;

pub use file::{ConfigError, FileConfig, load_file, parse_str};
