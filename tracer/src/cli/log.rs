//! Where the log lines go: stderr, and when stderr is the systemd journal's stream (a
//! service's, as systemd sets it up), each line starts with its syslog priority (`<3>` for
//! an error, sd-daemon(3)), which journald takes as the entry's PRIORITY=.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::{
    EnvFilter,
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
    registry::LookupSpan,
};

/// syslog's priority for a level.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Whether stderr is the journal's stream: systemd sets $JOURNAL_STREAM to that stream's
/// `device:inode`, and stderr is still it (not redirected since).
pub fn stderr_is_journal() -> bool {
    use std::os::fd::AsRawFd as _;
    let Ok(var) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let fd = std::io::stderr().as_raw_fd();
    // SAFETY: fstat of stderr into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return false;
    }
    is_stream(&var, st.st_dev, st.st_ino)
}

/// `$JOURNAL_STREAM` (`DEV:INODE`, decimal) names the file with this device and inode.
fn is_stream(var: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = var.split_once(':') else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

/// A line format with the syslog priority first.
struct Prefixed<F>(F);

impl<S, N, F> FormatEvent<S, N> for Prefixed<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Sets up the log: to the journal's stream with priorities and without the time (the
/// journal has it), else plain stderr (colour on a terminal).
pub fn init(filter: EnvFilter, journal: bool) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if journal {
        builder
            .with_ansi(false)
            .event_format(Prefixed(
                tracing_subscriber::fmt::format()
                    .without_time()
                    .with_ansi(false),
            ))
            .init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_stream_is_known_by_device_and_inode() {
        assert!(is_stream("64769:12345", 64769, 12345));
        assert!(
            !is_stream("64769:12345", 64769, 12346),
            "stderr redirected since"
        );
        assert!(!is_stream("64769", 64769, 12345));
        assert!(!is_stream("x:y", 0, 0));
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::INFO), 6);
    }

    #[test]
    fn each_line_starts_with_its_priority() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .event_format(Prefixed(
                tracing_subscriber::fmt::format()
                    .without_time()
                    .with_ansi(false),
            ))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!("journal: disk full");
            tracing::warn!("a warning");
            tracing::info!("ready");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("<3>") && lines[0].ends_with("journal: disk full"),
            "{text}"
        );
        assert!(lines[1].starts_with("<4>"), "{text}");
        assert!(lines[2].starts_with("<6>"), "{text}");
    }
}
