use std::time::{Duration, UNIX_EPOCH};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{proto::*, *};
use crate::{
    sink::journald::{Kind as FindingKind, wire::Entry},
    testing::{enriched, exec, exit, failed_exec},
};

fn clock() -> BootClock {
    // Boot at 1_800_000_000 s since the epoch.
    BootClock::from_wall_at(UNIX_EPOCH + Duration::from_secs(1_800_000_000), 0)
}

fn host() -> Resource {
    Resource {
        attributes: vec![
            encode::kv("service.name", AnyValue::string("tracer")),
            encode::kv("tracer.boot_id", AnyValue::string("b00")),
        ],
    }
}

fn decoded(body: &[u8]) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest::decode(body).expect("the request decodes")
}

/// The records of a one-resource, one-scope request.
fn records(req: &ExportLogsServiceRequest) -> &[LogRecord] {
    assert_eq!(req.resource_logs.len(), 1);
    assert_eq!(req.resource_logs[0].scope_logs.len(), 1);
    &req.resource_logs[0].scope_logs[0].log_records
}

fn attr<'a>(r: &'a LogRecord, key: &str) -> Option<&'a Value> {
    r.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn s(v: &str) -> Value {
    Value::String(v.into())
}

#[test]
fn an_exec_is_a_record_with_its_process_and_unit() {
    let e = enriched(exec(), Some("/system.slice/mylog.service"));
    let b = Batcher::new(host(), clock());
    let req = decoded(&b.request(&[Record::Event(Box::new(e))]));
    let rl = &req.resource_logs[0];
    assert_eq!(rl.resource.as_ref(), Some(&host()));
    let scope = rl.scope_logs[0].scope.as_ref().unwrap();
    assert_eq!(scope.name, "tracer");
    let r = &records(&req)[0];
    // 1 s after the boot.
    assert_eq!(r.time_unix_nano, 1_800_000_001_000_000_000);
    assert!(r.observed_time_unix_nano > 0);
    assert_eq!((r.severity_number, r.severity_text.as_str()), (9, "INFO"));
    assert_eq!(r.event_name, "tracer.event.exec");
    assert_eq!(
        r.body.as_ref().unwrap().value,
        Some(s(
            "exec mylog.sh (100): /usr/local/bin/mylog.sh  /bin/sh /usr/local/bin/mylog.sh 'a b'"
        ))
    );
    assert_eq!(attr(r, "tracer.kind"), Some(&s("exec")));
    assert_eq!(attr(r, "process.pid"), Some(&Value::Int(100)));
    assert_eq!(attr(r, "process.parent_pid"), Some(&Value::Int(1)));
    assert_eq!(attr(r, "process.user.id"), Some(&Value::Int(0)));
    assert_eq!(attr(r, "process.executable.name"), Some(&s("mylog.sh")));
    assert_eq!(
        attr(r, "process.executable.path"),
        Some(&s("/usr/local/bin/mylog.sh"))
    );
    assert_eq!(attr(r, "tracer.unit"), Some(&s("mylog.service")));
    assert_eq!(
        attr(r, "tracer.cgroup"),
        Some(&s("/system.slice/mylog.service"))
    );
    let Some(Value::Array(argv)) = attr(r, "process.command_args") else {
        panic!("no argv: {r:?}");
    };
    let argv: Vec<_> = argv
        .values
        .iter()
        .map(|v| v.value.clone().unwrap())
        .collect();
    assert_eq!(argv, [s("/bin/sh"), s("/usr/local/bin/mylog.sh"), s("a b")]);
    assert_eq!(attr(r, "tracer.argv_truncated"), None);
    assert_eq!(attr(r, "thread.id"), None);
}

#[test]
fn failures_are_warnings_with_their_errno_or_status() {
    let b = Batcher::new(host(), clock());
    let req = decoded(&b.request(&[
        Record::Event(Box::new(enriched(failed_exec(), None))),
        Record::Event(Box::new(enriched(exit(3 << 8), None))),
        Record::Event(Box::new(enriched(exit(libc::SIGSEGV as u32 | 0x80), None))),
        Record::Event(Box::new(enriched(
            {
                let mut e = exit(0);
                if let crate::event::EventKind::Exit { age_ns, .. } = &mut e.kind {
                    *age_ns = Some(42);
                }
                e
            },
            None,
        ))),
    ]));
    let r = records(&req);
    assert_eq!(r.len(), 4);
    assert_eq!(attr(&r[3], "tracer.process.age_ns"), Some(&Value::Int(42)));
    assert_eq!(attr(&r[1], "tracer.process.age_ns"), None, "age unknown");
    assert_eq!(r[0].severity_text, "WARN");
    assert_eq!(r[0].severity_number, SEVERITY_WARN);
    assert_eq!(r[0].event_name, "tracer.event.exec-failed");
    assert_eq!(attr(&r[0], "tracer.errno"), Some(&s("EACCES")));
    assert_eq!(
        attr(&r[0], "tracer.errno_number"),
        Some(&Value::Int(libc::EACCES.into()))
    );
    assert_eq!(attr(&r[0], "tracer.unit"), None, "no cgroup known");
    assert_eq!(attr(&r[1], "process.exit.code"), Some(&Value::Int(3)));
    assert_eq!(r[1].severity_text, "WARN");
    assert_eq!(attr(&r[2], "tracer.signal"), Some(&s("SIGSEGV")));
    assert_eq!(attr(&r[2], "tracer.core_dumped"), Some(&Value::Bool(true)));
    assert_eq!(attr(&r[2], "process.exit.code"), None);
    assert_eq!(attr(&r[3], "process.exit.code"), Some(&Value::Int(0)));
    assert_eq!(r[3].severity_text, "INFO");
}

#[test]
fn long_values_and_argument_lists_are_bounded() {
    let mut ev = exec();
    if let crate::event::EventKind::Exec { argv, filename, .. } = &mut ev.kind {
        *argv = (0..100).map(|i| format!("arg{i}")).collect();
        *filename = "é".repeat(3000);
    }
    let b = Batcher::new(host(), clock());
    let req = decoded(&b.request(&[Record::Event(Box::new(enriched(ev, None)))]));
    let r = &records(&req)[0];
    let Some(Value::Array(argv)) = attr(r, "process.command_args") else {
        panic!("no argv");
    };
    assert_eq!(argv.values.len(), encode::ARGV_MAX);
    assert_eq!(attr(r, "tracer.argv_truncated"), Some(&Value::Bool(true)));
    let Some(Value::String(path)) = attr(r, "process.executable.path") else {
        panic!("no path");
    };
    assert!(
        path.len() <= encode::VALUE_MAX && path.ends_with('…'),
        "{}",
        path.len()
    );
    let Some(Value::String(body)) = r.body.as_ref().unwrap().value.as_ref() else {
        panic!("no body");
    };
    assert!(body.len() <= encode::VALUE_MAX);
}

#[test]
fn a_finding_carries_its_journal_fields_as_attributes() {
    let mut fields = Entry::default();
    fields
        .add("MESSAGE_ID", FindingKind::Failure.message_id())
        .add("SYSLOG_IDENTIFIER", "tracer")
        .add("OBJECT_SYSTEMD_UNIT", "mylog.service")
        .add("TRACER_KIND", "failure")
        .add("TRACER_CAUSE", "exec-refused")
        .add("TRACER_ERRNO", "EACCES")
        .add("TRACER_FIX", "chmod +x /usr/local/bin/mylog.sh");
    let f = Finding {
        unit: "mylog.service".into(),
        kind: FindingKind::Failure,
        priority: 3,
        message: "mylog.service: refused\u{7}; fix: chmod +x".into(),
        fields,
    };
    let b = Batcher::new(host(), clock());
    let at = UNIX_EPOCH + Duration::from_secs(1_800_000_100);
    let req = decoded(&b.request(&[Record::Finding(Box::new(f), at)]));
    let r = &records(&req)[0];
    assert_eq!(r.time_unix_nano, 1_800_000_100_000_000_000);
    assert_eq!((r.severity_number, r.severity_text.as_str()), (17, "ERROR"));
    assert_eq!(r.event_name, "tracer.finding.failure");
    assert_eq!(
        r.body.as_ref().unwrap().value,
        Some(s("mylog.service: refused\\x07; fix: chmod +x")),
        "control characters escaped"
    );
    assert_eq!(
        attr(r, "tracer.message_id"),
        Some(&s("8652b949182b4d948932779599e03b8e"))
    );
    assert_eq!(attr(r, "tracer.systemd_unit"), Some(&s("mylog.service")));
    assert_eq!(attr(r, "tracer.cause"), Some(&s("exec-refused")));
    assert_eq!(attr(r, "tracer.errno"), Some(&s("EACCES")));
    assert_eq!(
        attr(r, "tracer.fix"),
        Some(&s("chmod +x /usr/local/bin/mylog.sh"))
    );
    assert_eq!(attr(r, "tracer.syslog_identifier"), None);
    assert_eq!(r.attributes.len(), 6);
}

fn config(port: u16) -> OtlpConfig {
    OtlpConfig {
        enabled: true,
        endpoint: format!("http://127.0.0.1:{port}/v1/logs"),
        flush_interval_ms: 20,
        timeout_ms: 1000,
        retry_initial_ms: 10,
        ..OtlpConfig::default()
    }
}

/// A receiver that answers `replies` in turn (then 200s), and hands back each request's
/// decoded records.
async fn receiver(
    replies: Vec<&'static [u8]>,
) -> (u16, mpsc::UnboundedReceiver<ExportLogsServiceRequest>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut replies = replies.into_iter();
        loop {
            let (mut c, _) = l.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 8192];
            let body_at = loop {
                let n = c.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8_lossy(&got[..body_at]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            while got.len() < body_at + len {
                let n = c.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            let reply = replies
                .next()
                .unwrap_or(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            if reply.starts_with(b"HTTP/1.1 200") {
                let _ = tx.send(decoded(&got[body_at..]));
            }
            c.write_all(reply).await.unwrap();
        }
    });
    (port, rx)
}

#[tokio::test]
async fn records_are_batched_posted_and_counted_and_a_busy_receiver_is_tried_again() {
    let (port, mut got) = receiver(vec![b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"]).await;
    let cfg = OtlpConfig {
        batch_size: 4,
        ..config(port)
    };
    let x = Exporter::start(&cfg, host(), clock()).unwrap().unwrap();
    for _ in 0..10 {
        x.event(&enriched(exec(), None));
    }
    // Not exported: forks are not among the default kinds.
    let mut fork = exec();
    fork.kind = crate::event::EventKind::Fork { child_pid: 7 };
    x.event(&enriched(fork, None));
    let mut n = 0;
    let mut requests = 0;
    while n < 10 {
        let req = tokio::time::timeout(Duration::from_secs(10), got.recv())
            .await
            .expect("the records arrive")
            .unwrap();
        let r = records(&req);
        assert!(r.len() <= 4, "batch_size holds: {}", r.len());
        n += r.len();
        requests += 1;
    }
    assert_eq!(n, 10);
    assert!(requests >= 3);
    let (t, left) = x.finish().await;
    assert_eq!(left, 0);
    assert_eq!(
        t,
        Tally {
            offered: 10,
            sent: 10,
            dropped: 0,
            failed: 0
        }
    );
}

#[tokio::test]
async fn rejected_records_and_refusals_count_as_failed() {
    // partial_success { rejected_log_records: 2 }: field 1 (len 2) { field 1 varint 2 }.
    let (port, mut got) = receiver(vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n\x0a\x02\x08\x02",
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nbad",
    ])
    .await;
    let cfg = OtlpConfig {
        batch_size: 3,
        flush_interval_ms: 5000,
        ..config(port)
    };
    let x = Exporter::start(&cfg, host(), clock()).unwrap().unwrap();
    for _ in 0..6 {
        x.event(&enriched(exec(), None));
    }
    assert_eq!(records(&got.recv().await.unwrap()).len(), 3);
    let t = loop {
        let t = x.counts.tally();
        if t.sent + t.failed == 6 {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // 3 posted, 2 of them rejected; 3 refused with a 400 (not tried again).
    assert_eq!((t.sent, t.failed, t.dropped), (1, 5, 0));
}

#[tokio::test]
async fn a_dead_endpoint_costs_counted_drops_and_failures_only() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = OtlpConfig {
        queue_capacity: 4,
        batch_size: 2,
        retries: 2,
        ..config(port)
    };
    let x = Exporter::start(&cfg, host(), clock()).unwrap().unwrap();
    let started = std::time::Instant::now();
    for _ in 0..50 {
        x.event(&enriched(exec(), None));
    }
    // Offering never waits: 50 offers into a queue of 4 are drops, at once.
    assert!(started.elapsed() < Duration::from_millis(500));
    assert!(x.counts.tally().dropped >= 40);
    let t = loop {
        let t = x.counts.tally();
        if t.failed >= 2 {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(t.sent, 0);
    let (t, _) = x.finish().await;
    assert_eq!(t.offered, 50);
    assert_eq!(t.sent, 0);
    assert_eq!(t.dropped + t.failed, 50, "{t:?}");
}

#[test]
fn the_configuration_is_checked() {
    assert!(!OtlpConfig::default().enabled);
    let off = Exporter::start(&OtlpConfig::default(), host(), clock()).unwrap();
    assert!(off.is_none());
    let bad = |cfg: OtlpConfig| {
        Exporter::start(&cfg, host(), clock())
            .err()
            .unwrap()
            .to_string()
    };
    let on = || OtlpConfig {
        enabled: true,
        ..OtlpConfig::default()
    };
    assert!(
        bad(OtlpConfig {
            endpoint: "https://collector:4318/v1/logs".into(),
            ..on()
        })
        .contains("https is not supported")
    );
    assert!(
        bad(OtlpConfig {
            event_kinds: vec!["exce".into()],
            ..on()
        })
        .contains("\"exce\" is no kind of event")
    );
    assert!(
        bad(OtlpConfig {
            queue_capacity: 0,
            ..on()
        })
        .contains("queue_capacity must be at least 1")
    );
}

#[test]
fn a_sandbox_without_network_is_named_with_its_fix() {
    let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
    assert_eq!(sandbox_hint(&refused), None);
    let forbidden = std::io::Error::from_raw_os_error(libc::EAFNOSUPPORT);
    assert!(
        sandbox_hint(&forbidden)
            .unwrap()
            .contains("tracer-otlp.conf")
    );
}
