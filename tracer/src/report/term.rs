//! Text for a terminal from strings anyone on the host chooses (comm, argv, file paths,
//! cgroup and unit names): control characters (C0, DEL, C1) are shown escaped, `\x1b` or
//! `\u{9b}`, so no recorded string can move the cursor, erase or forge lines, or retitle
//! the admin's window. JSON output is left as it is (its encoder escapes them).

use std::borrow::Cow;

/// `s` with its control characters escaped; borrowed when it has none.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            let n = u32::from(c);
            if n < 0x80 {
                out.push_str(&format!("\\x{n:02x}"));
            } else {
                out.push_str(&format!("\\u{{{n:x}}}"));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped() {
        assert!(matches!(printable("/usr/bin/a b"), Cow::Borrowed(_)));
        assert_eq!(printable("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(printable("x\ny\r\t"), "x\\x0ay\\x0d\\x09");
        assert_eq!(printable("\u{7f}\u{9b}31m"), "\\x7f\\u{9b}31m");
        assert_eq!(printable("naïve → ünïcode"), "naïve → ünïcode");
    }
}
