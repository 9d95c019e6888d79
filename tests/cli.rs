//! The command line as a person meets it, without root: a man page for every subcommand
//! with its options (rendered by man-db without a warning where it is installed), and
//! colour for failures on a terminal only (a real pseudo-terminal, from util-linux's
//! `script`), none with NO_COLOR, none in a pipe or in JSON.

use std::{path::PathBuf, process::Command};

use clap::CommandFactory as _;

const CLI: &str = env!("CARGO_BIN_EXE_tracer-cli");
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/vm-bookworm-systemd252.jsonl"
);

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tracer-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every command that is not hidden, at any depth, as its page names it (tracer-why), and
/// the options its page must show (`\-\-json`, `\-b`: roff escapes each hyphen).
fn commands() -> Vec<(String, Vec<String>)> {
    fn walk(cmd: &clap::Command, out: &mut Vec<(String, Vec<String>)>) {
        let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_owned();
        let options = cmd
            .get_arguments()
            .filter(|a| !a.is_hide_set())
            .filter_map(|a| {
                a.get_long()
                    .map(|l| format!("--{l}"))
                    .or_else(|| a.get_short().map(|s| format!("-{s}")))
            })
            .map(|o| o.replace('-', "\\-"))
            .collect();
        out.push((name, options));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, out);
        }
    }
    let mut cmd = tracer::cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    walk(&cmd, &mut out);
    out
}

#[test]
fn every_subcommand_has_a_man_page_with_its_options() {
    let dir = scratch("man");
    let out = Command::new(CLI)
        .args(["manpage", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let written: Vec<PathBuf> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(PathBuf::from)
        .collect();
    let commands = commands();
    assert_eq!(
        written.len(),
        commands.len(),
        "one page a command: {written:?}"
    );
    for name in [
        "tracer",
        "tracer-events",
        "tracer-why",
        "tracer-boot",
        "tracer-units",
    ] {
        assert!(
            commands.iter().any(|(n, _)| n == name),
            "{name} is among the commands"
        );
    }
    for (name, options) in &commands {
        let page = dir.join(format!("{name}.1"));
        assert!(written.contains(&page), "{name}: {written:?}");
        let roff = std::fs::read_to_string(&page).unwrap();
        assert!(roff.contains(&format!(".TH {name} 1")), "{name}'s title");
        for o in options {
            assert!(roff.contains(o.as_str()), "{name}.1 shows {o}");
        }
    }
    let why = std::fs::read_to_string(dir.join("tracer-why.1")).unwrap();
    assert!(why.contains(r"\fB\-\-json\fR") && why.contains(r"\fB\-b\fR"));
    assert!(!dir.join("tracer-manpage.1").exists(), "hidden: no page");
    render_with_man(&written);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// man-db reads each page without a warning (skipped, said, where it is not installed).
fn render_with_man(pages: &[PathBuf]) {
    if Command::new("man").arg("--version").output().is_err() {
        eprintln!("skipped: no man here to render the pages with (apt-get install man-db)");
        return;
    }
    for page in pages {
        let out = Command::new("man")
            .args(["-l", "--warnings"])
            .arg(page)
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .env("MAN_KEEP_FORMATTING", "")
            .output()
            .unwrap();
        let name = page.file_stem().unwrap().to_string_lossy();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "{name}: {stderr}"
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("NAME") && text.contains(&*name) && text.contains("SYNOPSIS"),
            "{name}: {text}"
        );
    }
}

/// `tracer ARGS` run on a pseudo-terminal (`script -qec`), its output as the terminal got
/// it; None (said) where util-linux's script is missing.
fn on_a_terminal(args: &str, no_color: Option<&str>) -> Option<String> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no script(1) here to make a pseudo-terminal (util-linux)");
        return None;
    }
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &format!("{CLI} {args}"), "/dev/null"])
        .env("TRACER_SOCKET", "/nonexistent/tracer.sock")
        .env("TERM", "xterm")
        .env_remove("NO_COLOR");
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{args}: {out:?}");
    Some(String::from_utf8(out.stdout).unwrap().replace("\r\n", "\n"))
}

fn piped(args: &[&str]) -> String {
    let out = Command::new(CLI)
        .args(args)
        .env("TRACER_SOCKET", "/nonexistent/tracer.sock")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn failures_are_coloured_on_a_terminal_only() {
    let units = format!("units --events {FIXTURE}");
    let Some(tty) = on_a_terminal(&units, None) else {
        return;
    };
    let plain = piped(&["units", "--events", FIXTURE]);
    assert!(!plain.contains('\x1b'), "a pipe gets no colour");
    let failed_row = tty
        .lines()
        .find(|l| l.contains("oom.service"))
        .expect("oom.service's row");
    assert!(
        failed_row.starts_with("\x1b[1;31m") && failed_row.ends_with("\x1b[0m"),
        "a failed unit's row is painted: {failed_row:?}"
    );
    let running = tty.lines().find(|l| l.contains("daemon.service")).unwrap();
    assert!(!running.contains('\x1b'), "a running one is not");
    assert_eq!(
        tty.replace("\x1b[1;31m", "").replace("\x1b[0m", ""),
        plain,
        "the codes are all that differ"
    );
    assert_eq!(
        on_a_terminal(&units, Some("1")).unwrap(),
        plain,
        "NO_COLOR=1: none"
    );
    assert!(
        on_a_terminal(&units, Some("")).unwrap().contains('\x1b'),
        "an empty NO_COLOR is as unset"
    );
    let json = on_a_terminal(&format!("{units} --json"), None).unwrap();
    assert!(!json.contains('\x1b'), "JSON never");
    let why = on_a_terminal(&format!("why oom --events {FIXTURE}"), None).unwrap();
    assert!(why.starts_with("\x1b[1;31moom.service: "), "{why:?}");
    assert_eq!(why.matches('\x1b').count(), 2, "the verdict alone: {why:?}");
}

#[test]
fn an_error_is_coloured_on_a_terminal_and_plain_in_a_pipe() {
    let args = format!("why nosuch --events {FIXTURE}");
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no script(1) here to make a pseudo-terminal (util-linux)");
        return;
    }
    // The error line goes to stderr, which script's terminal also is.
    let out = Command::new("script")
        .args(["-qec", &format!("{CLI} {args}"), "/dev/null"])
        .env("TRACER_SOCKET", "/nonexistent/tracer.sock")
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(
        tty.contains("\x1b[1;31mtracer: no events for nosuch"),
        "{tty:?}"
    );
    let out = Command::new(CLI)
        .args(["why", "nosuch", "--events", FIXTURE])
        .env("TRACER_SOCKET", "/nonexistent/tracer.sock")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("tracer: no events for nosuch") && !err.contains('\x1b'),
        "{err:?}"
    );
}
