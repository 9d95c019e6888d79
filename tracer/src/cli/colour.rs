//! Colour for failures in text output: on a terminal only, and never with `NO_COLOR` set
//! to anything but the empty string (no-color.org) or with `TERM=dumb`. What is painted is
//! decided on the finished text, here at the edge, so the reports render the same bytes
//! wherever they are made (the daemon's model or ours) and a pipe, a file or `--json` gets
//! them untouched.

use std::{ffi::OsStr, io::IsTerminal as _};

/// Bold red, and back to normal.
const FAIL: &str = "\x1b[1;31m";
const RESET: &str = "\x1b[0m";

/// Whether to paint: the output is a terminal, `NO_COLOR` is unset or empty, and the
/// terminal is not a dumb one.
pub fn wanted(is_terminal: bool, no_color: Option<&OsStr>, term: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty) && term.is_none_or(|t| t != "dumb")
}

/// [`wanted`] for stdout, from this process's environment.
pub fn stdout() -> bool {
    wanted(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("TERM").as_deref(),
    )
}

/// [`wanted`] for stderr (where the error line goes).
pub fn stderr() -> bool {
    wanted(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("TERM").as_deref(),
    )
}

/// `line` (without its newline) painted as a failure.
pub fn fail(line: &str) -> String {
    format!("{FAIL}{line}{RESET}")
}

/// Paints the lines `failed` picks out; the others, and every newline, stay as they are.
fn paint_lines(text: &str, mut failed: impl FnMut(&str) -> bool) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if failed(body) {
            out.push_str(&fail(body));
        } else {
            out.push_str(body);
        }
        out.push_str(nl);
    }
    out
}

/// `tracer units`: the rows of failed units (STATE, the fourth column, is `failed`; unit
/// names have no spaces, systemd escapes them).
pub fn units(text: &str) -> String {
    let mut header = true;
    paint_lines(text, |line| {
        let is_header = std::mem::take(&mut header);
        !is_header && line.split_whitespace().nth(3) == Some("failed")
    })
}

/// `tracer why`: the verdict (the first line) of a unit seen failed, and its fix stays
/// plain; a unit that did not fail is not painted.
pub fn why(text: &str) -> String {
    if !text.lines().any(|l| l.ends_with("state as seen: failed")) {
        return text.to_owned();
    }
    let mut first = true;
    paint_lines(text, |_| std::mem::take(&mut first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_without_no_color_is_painted() {
        let none: Option<&OsStr> = None;
        let set = Some(OsStr::new("1"));
        let empty = Some(OsStr::new(""));
        assert!(wanted(true, none, none));
        assert!(wanted(true, none, Some(OsStr::new("xterm-256color"))));
        assert!(wanted(true, empty, none), "an empty NO_COLOR is as unset");
        assert!(!wanted(true, set, none), "NO_COLOR=1");
        assert!(
            !wanted(true, Some(OsStr::new("0")), none),
            "any value, even 0"
        );
        assert!(!wanted(true, none, Some(OsStr::new("dumb"))));
        for no_color in [none, set, empty] {
            assert!(!wanted(false, no_color, none), "a pipe or a file: never");
        }
    }

    #[test]
    fn failed_units_and_failed_verdicts_are_painted_the_rest_is_untouched() {
        let units_text = "UNIT                                     RUNS RESTARTS STATE     LAST EXIT                    CAUSE\n\
                          badcwd.service                              1        0 failed    exit 200                     200/CHDIR\n\
                          daemon.service                              1        0 running   -                            -\n";
        let painted = units(units_text);
        let lines: Vec<&str> = painted.lines().collect();
        assert!(!lines[0].contains('\x1b'), "the header: {painted:?}");
        assert!(
            lines[1].starts_with(FAIL) && lines[1].ends_with(RESET),
            "{painted:?}"
        );
        assert!(!lines[2].contains('\x1b'), "a running unit: {painted:?}");
        let stripped = painted.replace(FAIL, "").replace(RESET, "");
        assert_eq!(stripped, units_text, "only the codes are added");

        let failed = "oom.service: /usr/bin/tail was killed by the kernel's OOM killer\n  fix: raise MemoryMax=\n  runs: 1 (0 restarts), state as seen: failed\n";
        let painted = why(failed);
        assert!(painted.starts_with(FAIL), "{painted:?}");
        assert_eq!(painted.matches(FAIL).count(), 1, "the verdict alone");
        assert_eq!(painted.replace(FAIL, "").replace(RESET, ""), failed);
        let fine =
            "mylog.service: ran to completion\n  runs: 2 (1 restarts), state as seen: inactive\n";
        assert_eq!(why(fine), fine);
    }
}
