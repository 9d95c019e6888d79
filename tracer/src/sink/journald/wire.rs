//! journald's native protocol, the client side (systemd's JOURNAL_NATIVE_PROTOCOL):
//! one datagram per entry to `/run/systemd/journal/socket`, each field `NAME=value\n`,
//! or, for a value holding a newline (or a NUL), `NAME\n`, its length as a 64-bit
//! little-endian number, the bytes and `\n`; an entry too large for a datagram goes in a
//! sealed memfd passed alone (SCM_RIGHTS) in an empty datagram. Sends never block: a
//! journal that is not there, or too busy to take it now, costs a counted error.

use std::{
    io,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::net::UnixDatagram,
    },
    path::{Path, PathBuf},
};

/// Where journald listens for the native protocol.
pub const SOCKET: &str = "/run/systemd/journal/socket";

/// One journal entry: fields in order, names fixed by the code that makes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    fields: Vec<(&'static str, Vec<u8>)>,
}

/// Whether `name` is a field name journald takes from a client: 1–64 of `A-Z`, `0-9`
/// and `_`, not starting with a digit or `_` (those are journald's own, trusted fields).
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && !b[0].is_ascii_digit()
        && b[0] != b'_'
        && b.iter()
            .all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
}

impl Entry {
    /// Adds a field. The names are the program's own (never from input); one that
    /// journald would not take is a bug, and left out.
    pub fn add(&mut self, name: &'static str, value: impl AsRef<[u8]>) -> &mut Self {
        debug_assert!(valid_name(name), "journal field name {name:?}");
        if valid_name(name) {
            self.fields.push((name, value.as_ref().to_vec()));
        }
        self
    }

    pub fn fields(&self) -> &[(&'static str, Vec<u8>)] {
        &self.fields
    }

    /// The entry as the protocol carries it. A value with a newline or a NUL takes the
    /// length-prefixed form, so that no value can end its field early and add another.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.fields
                .iter()
                .map(|(n, v)| n.len() + v.len() + 10)
                .sum(),
        );
        for (name, value) in &self.fields {
            out.extend_from_slice(name.as_bytes());
            if value.iter().any(|&b| b == b'\n' || b == 0) {
                out.push(b'\n');
                out.extend_from_slice(&(value.len() as u64).to_le_bytes());
            } else {
                out.push(b'=');
            }
            out.extend_from_slice(value);
            out.push(b'\n');
        }
        out
    }
}

/// Why a datagram could not be read as entries.
#[cfg(test)]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("a field name with no '=' or newline after it at byte {0}")]
    NoSeparator(usize),
    #[error("a binary field at byte {0} is cut short")]
    Truncated(usize),
    #[error("a binary field at byte {0} does not end with a newline")]
    NoNewline(usize),
}

/// Reads an entry as journald would (for the tests, and for anyone checking what the
/// writer sends): the fields in order, values as bytes.
#[cfg(test)]
pub fn parse(mut data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ParseError> {
    let total = data.len();
    let mut fields = Vec::new();
    while !data.is_empty() {
        let at = total - data.len();
        let sep = data
            .iter()
            .position(|&b| b == b'=' || b == b'\n')
            .ok_or(ParseError::NoSeparator(at))?;
        let name = String::from_utf8_lossy(&data[..sep]).into_owned();
        if data[sep] == b'=' {
            let rest = &data[sep + 1..];
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            fields.push((name, rest[..end].to_vec()));
            data = rest.get(end + 1..).unwrap_or_default();
        } else {
            let rest = &data[sep + 1..];
            let len_bytes: [u8; 8] = rest
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .ok_or(ParseError::Truncated(at))?;
            let len = usize::try_from(u64::from_le_bytes(len_bytes))
                .map_err(|_| ParseError::Truncated(at))?;
            let value = rest
                .get(8..8usize.saturating_add(len))
                .ok_or(ParseError::Truncated(at))?;
            if rest.get(8 + len) != Some(&b'\n') {
                return Err(ParseError::NoNewline(at));
            }
            fields.push((name, value.to_vec()));
            data = &rest[8 + len + 1..];
        }
    }
    Ok(fields)
}

/// Why an entry did not reach the journal.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The journal is not there, or refuses the writer (not root, journald stopped).
    #[error(
        "the systemd journal at {path} cannot be written: {source} (is systemd-journald running? findings are counted, not journaled, until it is)"
    )]
    Unavailable { path: PathBuf, source: io::Error },
    /// journald is behind: its socket's queue is full, and the writer does not wait.
    #[error("the systemd journal is busy (its socket's queue is full): the entry is dropped")]
    Busy,
    /// The entry was too large for a datagram and could not be passed in a memfd.
    #[error("an entry too large for a datagram could not be passed in a memfd: {0}")]
    Memfd(io::Error),
}

/// The client end: an unbound, non-blocking datagram socket, and the journal's path.
pub struct Writer {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Writer {
    pub fn new(path: &Path) -> io::Result<Self> {
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        // Room for a burst of entries before a busy journald makes sends fail (EAGAIN).
        let size: libc::c_int = 8 << 20;
        // SAFETY: setsockopt with a pointer to a c_int and its size, on our socket.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&raw const size).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        Ok(Self {
            socket,
            path: path.to_owned(),
        })
    }

    /// Sends one entry, never waiting: as a datagram, or, when too large for one, in a
    /// sealed memfd.
    pub fn send(&self, entry: &Entry) -> Result<(), SendError> {
        self.send_bytes(&entry.encode())
    }

    fn send_bytes(&self, data: &[u8]) -> Result<(), SendError> {
        match self.socket.send_to(data, &self.path) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => self.send_memfd(data),
            Err(e) => Err(self.failed(e)),
        }
    }

    fn failed(&self, e: io::Error) -> SendError {
        if e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS) {
            SendError::Busy
        } else {
            SendError::Unavailable {
                path: self.path.clone(),
                source: e,
            }
        }
    }

    fn send_memfd(&self, data: &[u8]) -> Result<(), SendError> {
        let fd = sealed_memfd(data).map_err(SendError::Memfd)?;
        let addr = sockaddr(&self.path).map_err(|source| SendError::Unavailable {
            path: self.path.clone(),
            source,
        })?;
        // One descriptor in the control message, no payload.
        let mut control = [0u8; 64];
        let space = unsafe { libc::CMSG_SPACE(size_of::<libc::c_int>() as u32) } as usize;
        debug_assert!(space <= control.len());
        // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&raw const addr.0).cast_mut().cast();
        msg.msg_namelen = addr.1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer holds `space` bytes, enough for one cmsg with an int.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd.as_raw_fd());
        }
        // SAFETY: a valid msghdr on our socket; MSG_DONTWAIT never blocks.
        let r = unsafe {
            libc::sendmsg(
                self.socket.as_raw_fd(),
                &msg,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if r < 0 {
            return Err(self.failed(io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// A memfd holding `data`, sealed against any change (journald takes only such).
fn sealed_memfd(data: &[u8]) -> io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated name and flags.
    let raw = unsafe {
        libc::memfd_create(
            c"tracer-journal-entry".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut file = std::fs::File::from(fd);
    io::Write::write_all(&mut file, data)?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on our descriptor.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(OwnedFd::from(file))
}

/// A `sockaddr_un` for a path, and its length.
fn sockaddr(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    use std::os::unix::ffi::OsStrExt as _;
    // SAFETY: sockaddr_un is plain data.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the socket path is too long for a unix socket address",
        ));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

/// Receives one datagram on `socket`: its payload, or, when it carries a descriptor, what
/// that descriptor holds (for tests that stand in for journald).
#[cfg(test)]
pub fn receive(socket: &UnixDatagram) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256 << 10];
    let mut control = [0u8; 64];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; its pointers are to the buffers above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len() as _;
    // SAFETY: a valid msghdr on our socket.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    // SAFETY: the kernel filled msg's control buffer; CMSG_* walk it within its length.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if !cmsg.is_null()
            && (*cmsg).cmsg_level == libc::SOL_SOCKET
            && (*cmsg).cmsg_type == libc::SCM_RIGHTS
        {
            let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
            let mut file = std::fs::File::from(OwnedFd::from_raw_fd(fd));
            let seals = libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS);
            if seals & libc::F_SEAL_WRITE == 0 {
                return Err(io::Error::other("the memfd passed is not sealed"));
            }
            io::Seek::seek(&mut file, io::SeekFrom::Start(0))?;
            let mut data = Vec::new();
            io::Read::read_to_end(&mut file, &mut data)?;
            return Ok(data);
        }
    }
    Ok(buf)
}
