#![no_std]
// The library target exists so that `tracer` can name this crate as a build dependency
// (cargo then rebuilds when the kernel programs change); the programs are in main.rs.
