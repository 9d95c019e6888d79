//! pid 1's own socket, `/run/systemd/private`: a peer-to-peer D-Bus connection, as
//! systemctl makes as root. It is there from the first moment of boot, before
//! dbus.service, and on hosts without a D-Bus daemon at all.
//!
//! systemd signs what it sends there with its well-known name (`org.freedesktop.systemd1`,
//! set with `sd_bus_set_sender()`), in the header field where a bus puts the sender's
//! unique name (`:1.42`); zbus takes a unique name only, and refuses the message. The read
//! side of this connection ([`Resigned`]) rewrites that one field in place, to a unique
//! name of the same length (the first character becomes `:`), so that nothing else in the
//! message moves. The authentication lines before the first message pass untouched.
//!
//! The write side ([`Pipelined`]) sends `BEGIN` with the `AUTH` line, as systemctl does,
//! not after the server's `OK` as zbus would: sent after the `OK`, with the first call
//! right behind it, `BEGIN` left that call unanswered by systemd's sd-bus server (seen
//! with systemd 252's user manager: three calls of three timed out, and under strace,
//! slower, they did not; with `BEGIN` pipelined, 28 of 28 were answered in milliseconds).

use std::{collections::VecDeque, io, os::fd::OwnedFd, time::Duration};

use zbus::connection::socket::{ReadHalf, Split, WriteHalf};

/// Where pid 1 listens.
pub const PATH: &str = "/run/systemd/private";

/// The D-Bus specification's largest message.
const MAX_MESSAGE: usize = 128 << 20;

/// The header field that names the sender (`SENDER`, signature `s`).
const FIELD_SENDER: u8 = 7;

/// A connection to a service manager over its own socket (`PATH` for pid 1, only root may
/// connect; `$XDG_RUNTIME_DIR/systemd/private` for a user's).
pub async fn connect(path: &str, call_timeout: Duration) -> zbus::Result<zbus::Connection> {
    let stream = tokio::net::UnixStream::connect(path).await?;
    let (read, write) = stream.into_split();
    let split: Split<Box<dyn ReadHalf>, Box<dyn WriteHalf>> = Split::new(
        Box::new(Resigned::new(read)),
        Box::new(Pipelined {
            inner: write,
            begun_early: false,
        }),
    );
    zbus::connection::Builder::socket(split)
        .p2p()
        .method_timeout(call_timeout)
        .build()
        .await
}

/// The write half of the socket, with `BEGIN` sent at once after the `AUTH` line (in the
/// same write) and zbus's own `BEGIN`, sent once the server said `OK`, taken as sent.
#[derive(Debug)]
struct Pipelined<W> {
    inner: W,
    /// `BEGIN` went with the `AUTH` line: zbus's own is not sent again.
    begun_early: bool,
}

const BEGIN: &[u8] = b"BEGIN\r\n";

#[async_trait::async_trait]
impl<W: WriteHalf> WriteHalf for Pipelined<W> {
    async fn sendmsg(
        &mut self,
        buffer: &[u8],
        fds: &[std::os::fd::BorrowedFd<'_>],
    ) -> io::Result<usize> {
        if !self.begun_early && buffer.starts_with(b"\0AUTH ") && buffer.ends_with(b"\r\n") {
            let mut both = buffer.to_vec();
            both.extend_from_slice(BEGIN);
            let mut sent = 0;
            while sent < both.len() {
                // (Descriptors go with the first write only; there are none here.)
                let fds = if sent == 0 { fds } else { &[] };
                match self.inner.sendmsg(&both[sent..], fds).await? {
                    0 => return Err(io::ErrorKind::WriteZero.into()),
                    n => sent += n,
                }
            }
            self.begun_early = true;
            return Ok(buffer.len());
        }
        if self.begun_early && buffer == BEGIN {
            // Sent already, with the AUTH line.
            self.begun_early = false;
            return Ok(buffer.len());
        }
        self.inner.sendmsg(buffer, fds).await
    }

    async fn close(&mut self) -> io::Result<()> {
        self.inner.close().await
    }

    /// Descriptors are not passed (nothing tracer asks systemd for carries any).
    fn can_pass_unix_fd(&self) -> bool {
        false
    }
}

/// The read half of the socket, with each message's sender field made a unique name.
#[derive(Debug)]
struct Resigned<R> {
    inner: R,
    /// Bytes read and not yet passed on (an incomplete line or message).
    raw: Vec<u8>,
    /// Bytes ready to pass on.
    ready: VecDeque<u8>,
    fds: Vec<OwnedFd>,
    /// Past the authentication lines.
    binary: bool,
}

impl<R> Resigned<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            raw: Vec::new(),
            ready: VecDeque::new(),
            fds: Vec::new(),
            binary: false,
        }
    }

    /// Moves what is complete in `raw` (lines, then whole messages) to `ready`.
    fn process(&mut self) -> io::Result<()> {
        loop {
            if !self.binary {
                // A message starts with its byte order, 'l' or 'B'; no line the server
                // sends in the handshake does.
                if matches!(self.raw.first(), Some(b'l' | b'B')) {
                    self.binary = true;
                    continue;
                }
                let Some(end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                    return Ok(());
                };
                self.ready.extend(self.raw.drain(..end + 2));
                continue;
            }
            let Some(total) = message_len(&self.raw)? else {
                return Ok(());
            };
            if self.raw.len() < total {
                return Ok(());
            }
            resign(&mut self.raw[..total]);
            self.ready.extend(self.raw.drain(..total));
        }
    }
}

#[async_trait::async_trait]
impl<R: ReadHalf> ReadHalf for Resigned<R> {
    async fn recvmsg(&mut self, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
        while self.ready.is_empty() {
            let mut chunk = vec![0u8; 64 << 10];
            let (n, fds) = self.inner.recvmsg(&mut chunk).await?;
            self.fds.extend(fds);
            if n == 0 {
                return Ok((0, std::mem::take(&mut self.fds)));
            }
            self.raw.extend_from_slice(&chunk[..n]);
            self.process()?;
        }
        let n = buf.len().min(self.ready.len());
        for (dst, src) in buf.iter_mut().zip(self.ready.drain(..n)) {
            *dst = src;
        }
        Ok((n, std::mem::take(&mut self.fds)))
    }

    /// Descriptors are not passed (nothing tracer asks systemd for carries any).
    fn can_pass_unix_fd(&self) -> bool {
        false
    }

    async fn peer_credentials(&mut self) -> io::Result<zbus::fdo::ConnectionCredentials> {
        self.inner.peer_credentials().await
    }
}

fn u32_at(msg: &[u8], at: usize, little: bool) -> Option<u32> {
    let b: [u8; 4] = msg.get(at..at + 4)?.try_into().ok()?;
    Some(if little {
        u32::from_le_bytes(b)
    } else {
        u32::from_be_bytes(b)
    })
}

/// A message's whole length, once its fixed header (16 bytes) is in; an error past the
/// specification's limit.
fn message_len(msg: &[u8]) -> io::Result<Option<usize>> {
    if msg.len() < 16 {
        return Ok(None);
    }
    let little = msg[0] == b'l';
    let (Some(body), Some(fields)) = (u32_at(msg, 4, little), u32_at(msg, 12, little)) else {
        return Ok(None);
    };
    let header = 16 + fields as usize;
    let total = header.next_multiple_of(8) + body as usize;
    if total > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a message of {total} bytes from systemd"),
        ));
    }
    Ok(Some(total))
}

/// Makes a well-known sender name a unique one of the same length, in place: the first
/// character becomes `:` (`org.freedesktop.systemd1` → `:rg.freedesktop.systemd1`), where
/// the result is a valid unique name. Leaves the message as it is where its header fields
/// are not as expected.
fn resign(msg: &mut [u8]) {
    let little = msg[0] == b'l';
    let Some(fields_len) = u32_at(msg, 12, little) else {
        return;
    };
    let end = (16 + fields_len as usize).min(msg.len());
    let mut p = 16;
    while p < end {
        p = p.next_multiple_of(8);
        if p + 3 > end {
            return;
        }
        let code = msg[p];
        let sig_len = msg[p + 1] as usize;
        let Some(sig) = msg.get(p + 2..p + 2 + sig_len) else {
            return;
        };
        let sig = sig.to_vec();
        p += 2 + sig_len + 1;
        match sig.as_slice() {
            b"s" | b"o" => {
                p = p.next_multiple_of(4);
                let Some(len) = u32_at(msg, p, little) else {
                    return;
                };
                let (start, len) = (p + 4, len as usize);
                if start + len > end {
                    return;
                }
                if code == FIELD_SENDER {
                    make_unique(&mut msg[start..start + len]);
                }
                p = start + len + 1;
            }
            b"g" => {
                let Some(&len) = msg.get(p) else {
                    return;
                };
                p += 1 + len as usize + 1;
            }
            b"u" => p = p.next_multiple_of(4) + 4,
            _ => return,
        }
    }
}

fn make_unique(name: &mut [u8]) {
    if name.first() == Some(&b':') || name.len() < 2 {
        return;
    }
    let mut unique = name.to_vec();
    unique[0] = b':';
    // A unique name: `:`, then at least two non-empty elements of [A-Za-z0-9_-].
    let elements: Vec<&[u8]> = unique[1..].split(|&b| b == b'.').collect();
    let valid = elements.len() >= 2
        && elements.iter().all(|e| {
            !e.is_empty()
                && e.iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if valid {
        name.copy_from_slice(&unique);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A method return as systemd sends it on its socket: REPLY_SERIAL, SENDER (its
    /// well-known name), SIGNATURE, and a body of one string.
    fn reply(sender: &str) -> Vec<u8> {
        let mut fields = Vec::new();
        // REPLY_SERIAL (5) 'u' = 2
        fields.extend_from_slice(&[5, 1, b'u', 0]);
        fields.extend_from_slice(&2u32.to_le_bytes());
        // SENDER (7) 's'
        fields.extend_from_slice(&[7, 1, b's', 0]);
        fields.extend_from_slice(&(sender.len() as u32).to_le_bytes());
        fields.extend_from_slice(sender.as_bytes());
        fields.push(0);
        while fields.len() % 8 != 0 {
            fields.push(0);
        }
        // SIGNATURE (8) 'g' = "s"
        fields.extend_from_slice(&[8, 1, b'g', 0, 1, b's', 0]);
        let body = {
            let mut b = 3u32.to_le_bytes().to_vec();
            b.extend_from_slice(b"abc\0");
            b
        };
        let mut msg = vec![b'l', 2, 0, 1];
        msg.extend_from_slice(&(body.len() as u32).to_le_bytes());
        msg.extend_from_slice(&7u32.to_le_bytes());
        msg.extend_from_slice(&(fields.len() as u32).to_le_bytes());
        msg.extend_from_slice(&fields);
        while msg.len() % 8 != 0 {
            msg.push(0);
        }
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn systemd_s_sender_becomes_a_unique_name_of_the_same_length() {
        let mut msg = reply("org.freedesktop.systemd1");
        let before = msg.clone();
        resign(&mut msg);
        let at = before
            .windows(24)
            .position(|w| w == b"org.freedesktop.systemd1")
            .unwrap();
        assert_eq!(&msg[at..at + 24], b":rg.freedesktop.systemd1");
        let changed: Vec<usize> = (0..msg.len()).filter(|&i| msg[i] != before[i]).collect();
        assert_eq!(changed, [at], "one byte, nothing else");
        // A name already unique, or one that cannot be made so, is left.
        for name in [":1.42", "a.b"] {
            let mut m = reply(name);
            let b = m.clone();
            resign(&mut m);
            assert_eq!(m, b, "{name}");
        }
    }

    #[test]
    fn the_handshake_passes_and_messages_are_passed_whole() {
        let mut r = Resigned::new(());
        let msg = reply("org.freedesktop.systemd1");
        let mut stream = b"OK 1234deadbeef\r\nAGREE_UNIX_FD\r\n".to_vec();
        stream.extend_from_slice(&msg);
        stream.extend_from_slice(&msg);
        // Fed a byte at a time: nothing passes before it is complete.
        let mut out = Vec::new();
        for b in &stream {
            r.raw.push(*b);
            r.process().unwrap();
            out.extend(r.ready.drain(..));
        }
        assert!(out.starts_with(b"OK 1234deadbeef\r\nAGREE_UNIX_FD\r\n"));
        assert_eq!(out.len(), stream.len());
        let resigned = String::from_utf8_lossy(&out)
            .matches(":rg.freedesktop.systemd1")
            .count();
        assert_eq!(resigned, 2);
        assert!(
            message_len(&[
                b'l', 1, 0, 1, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0
            ])
            .is_err()
        );
    }
}
