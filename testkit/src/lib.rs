//! Test harness shared by dbward test suites.
