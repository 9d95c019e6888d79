//! Users and groups, looked up through the C library (`getpwnam_r` and friends), so that
//! every source `/etc/nsswitch.conf` names is asked: `/etc/passwd` and `/etc/group`, but
//! also LDAP or SSSD, and systemd's `DynamicUser=` users (nss-systemd).
//!
//! Each lookup says apart "there is no such user" (`Ok(None)`) and "the lookup failed"
//! (`Err`: an NSS source could not be reached, or an entry is larger than
//! [`MAX_BUFFER`]).

use std::{
    ffi::{CStr, CString, c_char, c_int},
    io,
    mem::MaybeUninit,
    ptr,
};

/// A user account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    /// Its primary group.
    pub gid: u32,
}

/// A group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
}

/// The buffer for an entry's strings starts at this size ...
const START_BUFFER: usize = 1024;
/// ... and doubles, while the C library says it is too small (ERANGE), up to this size
/// (a group with thousands of members needs a large one).
pub const MAX_BUFFER: usize = 1 << 20;

/// The user named `name`.
pub fn user_by_name(name: &str) -> io::Result<Option<User>> {
    // A name with a NUL byte in it names no user.
    let Ok(name) = CString::new(name) else {
        return Ok(None);
    };
    lookup(
        |entry, buf, len, result| {
            // SAFETY: `name` is NUL-terminated and outlives the call; `lookup` hands out
            // an entry, a buffer of `len` bytes and a result pointer, all valid for writes.
            unsafe { libc::getpwnam_r(name.as_ptr(), entry, buf, len, result) }
        },
        user_of,
    )
}

/// The user with id `uid`.
pub fn user_by_uid(uid: u32) -> io::Result<Option<User>> {
    lookup(
        |entry, buf, len, result| {
            // SAFETY: `lookup` hands out an entry, a buffer of `len` bytes and a result
            // pointer, all valid for writes.
            unsafe { libc::getpwuid_r(uid, entry, buf, len, result) }
        },
        user_of,
    )
}

/// The group named `name`.
pub fn group_by_name(name: &str) -> io::Result<Option<Group>> {
    let Ok(name) = CString::new(name) else {
        return Ok(None);
    };
    lookup(
        |entry, buf, len, result| {
            // SAFETY: `name` is NUL-terminated and outlives the call; `lookup` hands out
            // an entry, a buffer of `len` bytes and a result pointer, all valid for writes.
            unsafe { libc::getgrnam_r(name.as_ptr(), entry, buf, len, result) }
        },
        group_of,
    )
}

/// The group with id `gid`.
pub fn group_by_gid(gid: u32) -> io::Result<Option<Group>> {
    lookup(
        |entry, buf, len, result| {
            // SAFETY: `lookup` hands out an entry, a buffer of `len` bytes and a result
            // pointer, all valid for writes.
            unsafe { libc::getgrgid_r(gid, entry, buf, len, result) }
        },
        group_of,
    )
}

/// The name of user `uid`.
pub fn user_name(uid: u32) -> io::Result<Option<String>> {
    Ok(user_by_uid(uid)?.map(|u| u.name))
}

/// The name of group `gid`.
pub fn group_name(gid: u32) -> io::Result<Option<String>> {
    Ok(group_by_gid(gid)?.map(|g| g.name))
}

/// The id of the group named `name` (the daemon's `socket_group`).
pub fn group_id(name: &str) -> io::Result<Option<u32>> {
    Ok(group_by_name(name)?.map(|g| g.gid))
}

/// Runs one `get*_r` call: `call(entry, buf, len, result)` with an entry to fill, a buffer
/// of `len` bytes for its strings and where to say whether one was found; the buffer grows
/// while the call answers ERANGE. `read` copies the entry out while the buffer its strings
/// point into is alive.
fn lookup<E, T>(
    mut call: impl FnMut(*mut E, *mut c_char, usize, *mut *mut E) -> c_int,
    read: unsafe fn(&E) -> T,
) -> io::Result<Option<T>> {
    let mut len = START_BUFFER;
    loop {
        let mut buf = vec![0 as c_char; len];
        let mut entry = MaybeUninit::<E>::uninit();
        let mut result: *mut E = ptr::null_mut();
        match call(entry.as_mut_ptr(), buf.as_mut_ptr(), buf.len(), &mut result) {
            0 if result.is_null() => return Ok(None),
            0 => {
                // SAFETY: on success the call filled in the entry and pointed `result` at
                // it; the strings it points to are in `buf`, which lives until the end of
                // this iteration.
                return Ok(Some(unsafe { read(&*result) }));
            }
            // Not an error but "not found" for some C libraries (and for glibc when
            // nsswitch.conf names no source at all).
            libc::ENOENT => return Ok(None),
            libc::EINTR => {}
            libc::ERANGE if len < MAX_BUFFER => len *= 2,
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// # Safety
/// `p` is a NUL-terminated string that stays valid while this runs, or null.
unsafe fn string_at(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null, and NUL-terminated and valid by this function's contract.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// # Safety
/// `p` was filled in by a successful `getpw*_r` call whose buffer is still alive.
unsafe fn user_of(p: &libc::passwd) -> User {
    User {
        // SAFETY: a filled-in entry's name is NUL-terminated, in the live buffer.
        name: unsafe { string_at(p.pw_name) },
        uid: p.pw_uid,
        gid: p.pw_gid,
    }
}

/// # Safety
/// `g` was filled in by a successful `getgr*_r` call whose buffer is still alive.
unsafe fn group_of(g: &libc::group) -> Group {
    Group {
        // SAFETY: a filled-in entry's name is NUL-terminated, in the live buffer.
        name: unsafe { string_at(g.gr_name) },
        gid: g.gr_gid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_SUCH_NAME: &str = "tracer-no-such-user-or-group";

    #[test]
    fn root_is_uid_0_and_group_0() {
        let root = User {
            name: "root".into(),
            uid: 0,
            gid: 0,
        };
        assert_eq!(user_by_uid(0).unwrap(), Some(root.clone()));
        assert_eq!(user_by_name("root").unwrap(), Some(root));
        assert_eq!(user_name(0).unwrap().as_deref(), Some("root"));
        assert_eq!(group_name(0).unwrap().as_deref(), Some("root"));
        assert_eq!(group_id("root").unwrap(), Some(0));
    }

    #[test]
    fn unknown_names_and_ids_are_not_found_not_errors() {
        assert_eq!(user_by_name(NO_SUCH_NAME).unwrap(), None);
        assert_eq!(group_id(NO_SUCH_NAME).unwrap(), None);
        assert_eq!(user_by_name("ro\0ot").unwrap(), None);
        assert_eq!(group_by_name("").unwrap(), None);
        assert_eq!(user_name(3_999_999_999).unwrap(), None);
        assert_eq!(group_name(3_999_999_999).unwrap(), None);
    }

    #[test]
    fn the_buffer_grows_until_the_entry_fits_and_no_further() {
        /// Fills in the entry once the buffer holds `need` bytes; ERANGE before.
        fn fits(
            need: usize,
        ) -> impl FnMut(*mut usize, *mut c_char, usize, *mut *mut usize) -> c_int {
            move |entry, _, len, result| {
                if len < need {
                    return libc::ERANGE;
                }
                // SAFETY: `lookup` hands out valid pointers to write to.
                unsafe {
                    *entry = len;
                    *result = entry;
                }
                0
            }
        }
        /// # Safety
        /// None needed: a plain copy.
        unsafe fn copy(n: &usize) -> usize {
            *n
        }
        assert_eq!(lookup(fits(5000), copy).unwrap(), Some(8192));
        let err = lookup(fits(MAX_BUFFER + 1), copy).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ERANGE));
        assert_eq!(
            lookup(|_, _, _, _: *mut *mut usize| libc::EIO, copy)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EIO)
        );
    }
}
