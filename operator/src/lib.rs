//! dbward-operator: turns dbward's custom resources into running sidecars.
//!
//! Decisions live in plain functions over typed data, I/O at the edges (`docs/operator.md` is the
//! contract between the parts). So far: the admission webhooks ([`admission`]).

pub mod admission;
