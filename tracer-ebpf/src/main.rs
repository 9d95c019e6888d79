//! tracer's kernel programs: one module per concern. Each program is a thin entry point
//! that calls a `try_*` function; anything that goes wrong is counted in `STATS`, never
//! silently lost.
#![no_std]
#![no_main]

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

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
