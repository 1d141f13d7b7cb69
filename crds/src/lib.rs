//! dbward's API types.
