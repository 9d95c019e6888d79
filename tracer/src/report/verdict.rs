//! systemd's own verdict on a unit's latest activation: its Result=, the command whose
//! failure it counted, a condition that was not met. systemd decides whether a unit
//! failed; the kernel's record says what happened in it. `tracer why` joins the two: it
//! never calls a unit failed that systemd counts a success, nor the reverse.

use crate::systemd::{ExecCommand, ServiceFacts, SystemdUnit, changes::DependencyFailure};

/// What systemd made of the unit's latest activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// A Condition*= was not met: skipped, not failed. (An Assert*= not met fails the
    /// start: `assert`.)
    Unmet { condition: &'a str, assert: bool },
    /// ExecCondition= exited 1–254: skipped, not failed.
    ExecCondition { command: Option<&'a ExecCommand> },
    /// Its start job ended `dependency`: a unit it requires did not start, so systemd did
    /// not start it (it is not failed: its own Result= is untouched). The unit, when the
    /// recorded jobs name it.
    Dependency {
        failed: Option<&'a DependencyFailure>,
    },
    /// systemd counts it a success.
    Success,
    /// systemd failed it.
    Failed(Failure<'a>),
    /// systemd has not decided (activating, or not a service).
    Open,
}

/// A failure as systemd accounts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure<'a> {
    /// Result=: exit-code, signal, core-dump, timeout, watchdog, start-limit-hit,
    /// resources, protocol, oom-kill, ...
    pub result: &'a str,
    /// The command whose failure systemd counted, with its role.
    pub command: Option<(&'static str, &'a ExecCommand)>,
    service: Option<&'a ServiceFacts>,
    unit: &'a SystemdUnit,
}

impl Verdict<'_> {
    /// As `tracer why --json` names it.
    pub fn name(&self) -> Option<&'static str> {
        match self {
            Self::Unmet { assert: true, .. } | Self::Failed(_) => Some("failed"),
            Self::Unmet { .. } | Self::ExecCondition { .. } => Some("skipped"),
            Self::Dependency { .. } => Some("dependency"),
            Self::Success => Some("success"),
            Self::Open => None,
        }
    }

    /// What systemd's verdict says on its own, for one that says something: a failure,
    /// or a start skipped.
    pub fn explain(&self, name: &str) -> Option<String> {
        Some(match self {
            Self::Unmet {
                condition,
                assert: true,
            } => format!(
                "{name}: its start failed: {condition} was not met (an Assert*= fails the start)"
            ),
            Self::Unmet { condition, .. } => format!(
                "{name}: skipped, not failed: {condition} was not met at its last start, so systemd did not start it"
            ),
            Self::ExecCondition { command } => format!(
                "{name}: skipped, not failed: {} said not to start it",
                command.map_or_else(
                    || "its ExecCondition=".to_owned(),
                    |c| format!("ExecCondition={} ({})", c.line(), c.ending())
                )
            ),
            Self::Dependency { failed: Some(d) } => format!(
                "{name}: not started: {} did not start ({}), and {name} requires it (Requires=, Requisite= or BindsTo=), so systemd's start job for it ended `dependency`",
                d.unit,
                match &d.result {
                    Some(r) if d.job_result == "failed" =>
                        format!("its start job failed, Result={r}"),
                    _ => format!("its job ended `{}`", d.job_result),
                }
            ),
            Self::Dependency { failed: None } => format!(
                "{name}: not started: a unit it requires (Requires=, Requisite= or BindsTo=) did not start, so systemd's start job for it ended `dependency`"
            ),
            Self::Failed(f) => f.explain(name),
            Self::Success | Self::Open => return None,
        })
    }

    /// What to do about it, when that is clear.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Failed(f) => f.hint(),
            Self::Dependency { failed: Some(d) } => Some(format!(
                "find why {0} did not start (`tracer why {0}`); once it does, start this unit again",
                d.unit
            )),
            Self::Dependency { failed: None } => Some(
                "find which of its Requires= did not start (`systemctl list-dependencies UNIT`, `tracer why` of each)".into(),
            ),
            _ => None,
        }
    }
}

/// systemd's verdict on a unit, as its properties say.
pub fn verdict(u: &SystemdUnit) -> Verdict<'_> {
    if let Some(condition) = &u.condition_failed {
        return Verdict::Unmet {
            condition,
            assert: u.assert_failed,
        };
    }
    let service = u.service.as_ref();
    let result = service
        .map(|s| s.result.as_str())
        .or(u.typed.as_ref().map(|t| t.result.as_str()))
        .unwrap_or("");
    if result == "exec-condition" {
        return Verdict::ExecCondition {
            command: service.and_then(|s| s.exec_condition.iter().find(|c| c.failed())),
        };
    }
    // (A start that ended `dependency` after the unit last changed state: a failure of an
    // earlier run is history. systemd's monotonic µs and the daemon's boot-time ns agree
    // but for time suspended.)
    if let Some(job) = &u.last_job
        && job.result == "dependency"
        && matches!(u.active_state.as_str(), "inactive" | "failed" | "")
        && job.at_ns / 1000 >= crate::systemd::changes::latest_transition(u)
    {
        return Verdict::Dependency {
            failed: u.dependency_failed.as_ref(),
        };
    }
    let failed = u.active_state == "failed" || (!result.is_empty() && result != "success");
    if failed {
        return Verdict::Failed(Failure {
            result: if result.is_empty() { "failed" } else { result },
            command: service.and_then(ServiceFacts::failed_command).or_else(|| {
                // A mount's helper (mount(8)), as systemd ran it.
                let t = u.typed.as_ref()?;
                ExecCommand::last_failed(&t.exec_mount).map(|c| ("ExecMount", c))
            }),
            service,
            unit: u,
        });
    }
    match u.active_state.as_str() {
        "activating" | "deactivating" | "reloading" => Verdict::Open,
        _ => Verdict::Success,
    }
}

/// µs as systemd writes a time span: `90s`, `1min 30s`, `500ms`, `infinity`.
pub fn span(us: u64) -> String {
    if us == u64::MAX {
        return "infinity".to_owned();
    }
    if us < 1_000_000 {
        return format!("{}ms", us / 1000);
    }
    let s = us / 1_000_000;
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}min"),
        (m, s) => format!("{m}min {s}s"),
    }
}

impl Failure<'_> {
    /// Whether the kernel's account of a process's end says all there is: systemd failed
    /// the unit for how a command ended (its exit status or signal), not for something
    /// only systemd knows (a timeout, the start limit, a protocol).
    pub fn is_how_a_command_ended(&self) -> bool {
        matches!(self.result, "exit-code" | "signal" | "core-dump")
    }

    /// The sentence: what systemd says went wrong.
    pub fn explain(&self, name: &str) -> String {
        let cmd = self
            .command
            .map(|(role, c)| format!("{role}={} ended with {}", c.line(), c.ending()));
        let s = self.service;
        let became_active = self.unit.active_enter_us > 0
            && self.unit.active_enter_us >= self.unit.inactive_exit_us;
        match self.result {
            "timeout" => {
                let (which, limit) = match s {
                    Some(s)
                        if became_active
                            && s.runtime_max_us > 0
                            && s.runtime_max_us != u64::MAX
                            && self
                                .unit
                                .inactive_enter_us
                                .saturating_sub(self.unit.active_enter_us)
                                >= s.runtime_max_us =>
                    {
                        ("it ran longer than RuntimeMaxSec=", s.runtime_max_us)
                    }
                    Some(s) if became_active => {
                        ("it did not stop within TimeoutStopSec=", s.timeout_stop_us)
                    }
                    Some(s) => (
                        "it did not finish starting within TimeoutStartSec=",
                        s.timeout_start_us,
                    ),
                    None => ("it timed out", 0),
                };
                let limit = if limit > 0 {
                    span(limit)
                } else {
                    String::new()
                };
                format!(
                    "{name}: systemd gave up on it: {which}{limit}, and it was killed (Result=timeout){}",
                    if became_active {
                        String::new()
                    } else {
                        s.map_or_else(String::new, waits_for)
                    }
                )
            }
            "watchdog" => format!(
                "{name}: its watchdog expired: no WATCHDOG=1 within WatchdogSec={}, and systemd killed it (Result=watchdog)",
                s.map_or_else(String::new, |s| span(s.watchdog_us))
            ),
            "start-limit-hit" => format!(
                "{name}: started too often: more than StartLimitBurst={} starts within StartLimitIntervalSec={}, so systemd stopped starting it (Result=start-limit-hit)",
                self.unit.start_limit_burst,
                span(self.unit.start_limit_interval_us)
            ),
            "resources" => match s.and_then(missing_environment_file) {
                Some(file) => format!(
                    "{name}: systemd could not set up its start: EnvironmentFile={file} is not there (looked at after the failure), and without a `-` prefix a missing file fails the start (Result=resources)"
                ),
                None => format!(
                    "{name}: systemd could not set up what the unit needs (Result=resources: e.g. an EnvironmentFile= it could not read, a directory or a cgroup it could not make)"
                ),
            },
            "protocol" => match s {
                Some(s)
                    if s.service_type.starts_with("notify")
                        && s.exec_main_code == crate::systemd::CLD_EXITED =>
                {
                    format!(
                        "{name}: Type={}, and its main process exited (status {}) before it sent READY=1, so systemd failed it (Result=protocol): a program that forks into the background and exits is Type=forking; one that never sends READY=1 is Type=simple or Type=exec",
                        s.service_type, s.exec_main_status
                    )
                }
                Some(s) if s.service_type == "forking" && !s.pid_file.is_empty() => format!(
                    "{name}: Type=forking, and its PIDFile={} named no process of the unit once ExecStart= returned, so systemd failed it (Result=protocol)",
                    s.pid_file
                ),
                _ => format!(
                    "{name}: the service broke Type={}'s protocol with systemd (Result=protocol: e.g. a notify service that exited without READY=1, a forking one whose PIDFile= names no process)",
                    s.map_or("", |s| s.service_type.as_str())
                ),
            },
            "oom-kill" => format!(
                "{name}: a process of the unit was killed by the OOM killer and systemd failed the unit for it (Result=oom-kill, OOMPolicy=)"
            ),
            "exit-code" | "signal" | "core-dump"
                if let Some(("ExecMount", c)) = self.command
                    && let Some(t) = &self.unit.typed =>
            {
                format!(
                    "{name}: mounting {} on {} failed: {} ended with {}{} (Result={})",
                    t.what,
                    t.r#where,
                    c.line(),
                    c.ending(),
                    mount_status(c),
                    self.result
                )
            }
            "exit-code" | "signal" | "core-dump" => match cmd {
                Some(cmd) => format!("{name}: {cmd} (Result={})", self.result),
                None => format!("{name}: systemd failed it (Result={})", self.result),
            },
            other => match cmd {
                Some(cmd) => format!("{name}: {cmd}; systemd failed it (Result={other})"),
                None => format!("{name}: systemd failed it (Result={other})"),
            },
        }
    }

    /// Why systemd did not restart it, when its Restart= would have: its exit status is
    /// in RestartPreventExitStatus=.
    pub fn not_restarted(&self) -> Option<String> {
        let s = self.service?;
        if s.restart == "no" || s.restart.is_empty() {
            return None;
        }
        let prevented = match s.exec_main_code {
            crate::systemd::CLD_EXITED => s
                .restart_prevent_exit_status
                .contains(&s.exec_main_status)
                .then(|| format!("exit status {}", s.exec_main_status)),
            crate::systemd::CLD_KILLED | crate::systemd::CLD_DUMPED => s
                .restart_prevent_signals
                .contains(&s.exec_main_status)
                .then(|| crate::event::Signal(s.exec_main_status).to_string()),
            _ => None,
        }?;
        Some(format!(
            "systemd did not restart it (Restart={}): RestartPreventExitStatus= lists {prevented}",
            s.restart
        ))
    }

    /// What to do about it, when that is clear.
    pub fn hint(&self) -> Option<String> {
        match self.result {
            "timeout"
                if self.unit.active_enter_us == 0
                    && self.service.is_some_and(|s| {
                        s.service_type == "forking"
                            && !s.pid_file.is_empty()
                            && std::fs::symlink_metadata(&s.pid_file).is_err()
                    }) =>
            {
                Some(format!(
                    "make the daemon write its pid to {} (its pid-file option), or drop PIDFile= and let systemd find the main process",
                    self.service.map_or("", |s| s.pid_file.as_str())
                ))
            }
            "timeout" => Some(
                "find what it waits for (journalctl -u UNIT), or raise the timeout in the unit file"
                    .into(),
            ),
            "watchdog" => Some(
                "the service must send WATCHDOG=1 (sd_notify) more often than WatchdogSec=, or WatchdogSec= must be raised".into(),
            ),
            // (Its last run ended well: it is not failing, something starts it too often.)
            "start-limit-hit"
                if self.service.is_some_and(|s| {
                    s.exec_main_code == crate::systemd::CLD_EXITED && s.exec_main_status == 0
                }) =>
            {
                Some(
                    "its runs end well: find what starts it so often (`tracer why` counts the starts, and names the systemctl, timer, socket or path unit behind them), or raise StartLimitBurst=; then `systemctl reset-failed UNIT`".into(),
                )
            }
            "start-limit-hit" => Some(
                "fix why each start fails, then `systemctl reset-failed UNIT` and start it again".into(),
            ),
            "resources" => self
                .service
                .and_then(missing_environment_file)
                .map(|f| format!("create {f}, or make it optional: EnvironmentFile=-{f}")),
            "protocol" => match self.service {
                Some(s) if s.service_type.starts_with("notify") => Some(
                    "if the program puts itself in the background, keep it in the foreground (its own option for that) or use Type=forking; if it does not send READY=1 (sd_notify), use Type=exec".into(),
                ),
                Some(s) if s.service_type == "forking" && !s.pid_file.is_empty() => Some(format!(
                    "make the daemon write its pid to {} (its pid-file option), or drop PIDFile= and let systemd find the main process",
                    s.pid_file
                )),
                _ => None,
            },
            _ => None,
        }
    }
}

/// What mount(8)'s exit status means (its man page's RETURN CODES), for a mount helper
/// that exited.
fn mount_status(c: &ExecCommand) -> &'static str {
    if c.code != crate::systemd::CLD_EXITED {
        return "";
    }
    match c.status {
        1 => ": incorrect invocation or permissions",
        2 => ": system error",
        4 => ": internal mount bug",
        8 => ": user interrupt",
        16 => ": problems writing or locking /etc/mtab",
        32 => ": mount failure",
        64 => ": some mount succeeded",
        _ => "",
    }
}

/// The first EnvironmentFile= without a `-` prefix that is not there now (looked at
/// after the failure).
fn missing_environment_file(s: &ServiceFacts) -> Option<&str> {
    s.environment_files
        .iter()
        .find(|(path, optional)| !optional && std::fs::symlink_metadata(path).is_err())
        .map(|(path, _)| path.as_str())
}

/// What a start that timed out was waiting for, by its Type=: a forking service's
/// PIDFile= (said whether it is there now), a notify service's READY=1.
fn waits_for(s: &ServiceFacts) -> String {
    match s.service_type.as_str() {
        "forking" if !s.pid_file.is_empty() => format!(
            "; Type=forking waits for the daemon's PIDFile={}, which {} (looked at after the failure)",
            s.pid_file,
            if std::fs::symlink_metadata(&s.pid_file).is_ok() {
                "is there now"
            } else {
                "is not there"
            }
        ),
        "notify" | "notify-reload" => "; Type=notify waits for READY=1 from it (sd_notify)".into(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::CLD_EXITED;

    fn unit(active: &str, result: &str) -> SystemdUnit {
        SystemdUnit {
            id: "u.service".into(),
            active_state: active.into(),
            service: Some(ServiceFacts {
                result: result.into(),
                service_type: "simple".into(),
                ..ServiceFacts::default()
            }),
            ..SystemdUnit::default()
        }
    }

    #[test]
    fn systemd_decides_failed_or_not() {
        assert_eq!(verdict(&unit("inactive", "success")), Verdict::Success);
        assert_eq!(verdict(&unit("activating", "success")), Verdict::Open);
        let mut u = unit("failed", "exit-code");
        let post = ExecCommand {
            path: "/bin/false".into(),
            argv: vec!["/bin/false".into()],
            code: CLD_EXITED,
            status: 1,
            exit_us: 20,
            ..ExecCommand::default()
        };
        let ignored = ExecCommand {
            ignore_failure: true,
            exit_us: 30,
            ..post.clone()
        };
        let s = u.service.as_mut().unwrap();
        s.exec_start_post = vec![post];
        s.exec_stop_post = vec![ignored];
        let Verdict::Failed(f) = verdict(&u) else {
            panic!("failed")
        };
        assert_eq!(
            f.explain("u.service"),
            "u.service: ExecStartPost=/bin/false ended with exit status 1 (Result=exit-code)",
            "the failure systemd counted, not the later one its - prefix ignores"
        );
        u.condition_failed = Some("ConditionPathExists=/nope".into());
        assert_eq!(
            verdict(&u),
            Verdict::Unmet {
                condition: "ConditionPathExists=/nope",
                assert: false
            }
        );
    }

    /// Result=resources, protocol and a failed reload are told by what systemd says of
    /// the service: the missing file, the Type= and how the main process ended.
    #[test]
    fn systemd_s_own_failures_name_what_broke() {
        let mut u = unit("failed", "resources");
        let s = u.service.as_mut().unwrap();
        s.environment_files = vec![
            ("/nonexistent/optional.env".into(), true),
            ("/nonexistent/app.env".into(), false),
        ];
        let Verdict::Failed(f) = verdict(&u) else {
            panic!("failed")
        };
        assert!(
            f.explain("u.service")
                .contains("EnvironmentFile=/nonexistent/app.env is not there"),
            "{}",
            f.explain("u.service")
        );
        assert_eq!(
            f.hint().as_deref(),
            Some(
                "create /nonexistent/app.env, or make it optional: EnvironmentFile=-/nonexistent/app.env"
            )
        );

        let mut u = unit("failed", "protocol");
        let s = u.service.as_mut().unwrap();
        s.service_type = "notify".into();
        s.exec_main_code = CLD_EXITED;
        let Verdict::Failed(f) = verdict(&u) else {
            panic!("failed")
        };
        assert!(
            f.explain("u.service").contains(
                "Type=notify, and its main process exited (status 0) before it sent READY=1"
            ),
            "{}",
            f.explain("u.service")
        );

        let mut u = unit("failed", "exit-code");
        let s = u.service.as_mut().unwrap();
        s.restart = "on-failure".into();
        s.exec_main_code = CLD_EXITED;
        s.exec_main_status = 3;
        s.restart_prevent_exit_status = vec![3];
        let Verdict::Failed(f) = verdict(&u) else {
            panic!("failed")
        };
        assert_eq!(
            f.not_restarted().as_deref(),
            Some(
                "systemd did not restart it (Restart=on-failure): RestartPreventExitStatus= lists exit status 3"
            )
        );
        u.service.as_mut().unwrap().exec_main_status = 4;
        let Verdict::Failed(f) = verdict(&u) else {
            panic!("failed")
        };
        assert_eq!(f.not_restarted(), None);
    }

    /// A mount unit's failure names the mount and how its helper ended.
    #[test]
    fn a_failed_mount_names_its_helper() {
        use crate::systemd::TypedFacts;
        let u = SystemdUnit {
            id: "mnt-x.mount".into(),
            active_state: "failed".into(),
            typed: Some(TypedFacts {
                result: "exit-code".into(),
                what: "/dev/sdz1".into(),
                r#where: "/mnt/x".into(),
                exec_mount: vec![ExecCommand {
                    path: "/usr/bin/mount".into(),
                    argv: vec!["/usr/bin/mount".into(), "/dev/sdz1".into(), "/mnt/x".into()],
                    code: CLD_EXITED,
                    status: 32,
                    exit_us: 5,
                    ..ExecCommand::default()
                }],
                ..TypedFacts::default()
            }),
            ..SystemdUnit::default()
        };
        let Verdict::Failed(f) = verdict(&u) else {
            panic!("failed")
        };
        assert_eq!(
            f.explain("mnt-x.mount"),
            "mnt-x.mount: mounting /dev/sdz1 on /mnt/x failed: /usr/bin/mount /dev/sdz1 /mnt/x ended with exit status 32: mount failure (Result=exit-code)"
        );
    }

    #[test]
    fn a_timeout_says_which() {
        let mut u = unit("failed", "timeout");
        u.inactive_exit_us = 100;
        let s = u.service.as_mut().unwrap();
        s.timeout_start_us = 2_000_000;
        s.timeout_stop_us = 90_000_000;
        let Verdict::Failed(f) = verdict(&u) else {
            panic!("failed")
        };
        assert!(
            f.explain("u.service")
                .contains("did not finish starting within TimeoutStartSec=2s"),
            "{}",
            f.explain("u.service")
        );
        u.active_enter_us = 200;
        let Verdict::Failed(f) = verdict(&u) else {
            panic!("failed")
        };
        assert!(
            f.explain("u.service")
                .contains("did not stop within TimeoutStopSec=1min 30s"),
            "{}",
            f.explain("u.service")
        );
        assert_eq!(span(500_000), "500ms");
        assert_eq!(span(u64::MAX), "infinity");
    }
}
