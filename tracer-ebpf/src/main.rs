//! tracer's kernel programs: one module per concern. Each program is a thin entry point
//! that calls a `try_*` function; anything that goes wrong is counted in `STATS`, never
//! silently lost.
#![no_std]
#![no_main]
// Every `unsafe` says why it is sound; clippy checks that there is a note (run it for the
// BPF target: see the crate's Cargo.toml).
#![warn(clippy::undocumented_unsafe_blocks)]

mod access;
mod cgroup;
mod common;
mod exec;
mod exit;
mod fork;
mod signal;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// SAFETY: the loader reads the program's license from the "license" section, by the
// name LICENSE; nothing else is placed in that section or called that.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
