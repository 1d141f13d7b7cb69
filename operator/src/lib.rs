//! dbward-operator: turns dbward's custom resources into running sidecars.
//!
//! Decisions live in plain functions over typed data, I/O at the edges (`docs/operator.md` is the
//! contract between the parts). The parts: the admission webhooks ([`admission`], served by [`webhook`]), the sidecar control API
//! ([`control`]), the reconcilers ([`reconcile`], run by the [`leader`]), certificates ([`certs`]), and
//! the binary's wiring ([`run`]).

pub mod admission;
pub mod certs;
pub mod control;
pub mod leader;
pub mod plugin;
pub mod reconcile;
pub mod run;
pub mod serve;
pub mod webhook;
