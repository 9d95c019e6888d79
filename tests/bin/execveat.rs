//! Calls execveat(AT_FDCWD, PATH, ...) and exits with the errno it failed with.
use std::ffi::CString;

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: tracer-test-execveat PATH");
    let path = CString::new(path).expect("no NUL in the path");
    let argv = [path.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: NUL-terminated strings and NULL-terminated arrays that outlive the call.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            libc::AT_FDCWD,
            path.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            0,
        )
    };
    std::process::exit(
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(255),
    );
}
