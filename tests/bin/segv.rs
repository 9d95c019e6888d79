//! Dies of SIGSEGV, with the default handler, as a buggy program does.
fn main() {
    // SAFETY: none; writing through a null pointer is the point: the kernel sends SIGSEGV.
    unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
    unreachable!("the write above faults");
}
