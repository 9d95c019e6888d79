//! Reports built from a recorded boot.

pub mod boot;
