//! Shared by the test binaries; each uses a part.
#![allow(dead_code)]

pub mod bed;
pub mod fake_api;
