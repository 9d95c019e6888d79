//! Helpers shared by the test binaries.

/// The unit names of `systemd-analyze critical-chain`'s tree (or of
/// `tracer boot --critical`'s), in order: the first word of each line after the header.
pub fn analyze_chain(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.is_empty())
        .filter_map(|l| {
            let name = l
                .trim_start_matches(|c: char| c.is_whitespace() || "│├└─".contains(c))
                .split_whitespace()
                .next()?;
            name.contains('.').then(|| name.to_owned())
        })
        .collect()
}
