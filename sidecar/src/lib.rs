//! dbward-sidecar: a Postgres wire-protocol proxy that holds the database credential, identifies the
//! caller, and gives the policy engine a place to look at every statement and every result row.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod admin;
pub mod approval;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod egress;
pub mod guard;
pub mod hex;
pub mod identity;
pub mod journal;
pub mod mask;
pub mod policy;
pub mod proxy;
pub mod sql;
pub mod tls;
