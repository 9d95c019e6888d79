//! The daemon socket's protocol: one JSON request line from the client, then either a
//! stream of event lines (`events`) or one reply line (the reports). The daemon and the
//! command line both speak it through these types; neither depends on the other.

use serde::{Deserialize, Serialize};

/// What a client asks the daemon, as one JSON line tagged by `op`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// The live stream of events that pass the filter.
    Events { filter: Filter },
    /// A report from the daemon's model.
    #[serde(untagged)]
    Query(Query),
}

/// A report the daemon makes from its own model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Query {
    Units {
        json: bool,
        #[serde(default)]
        select: UnitSelect,
    },
    Why {
        unit: String,
        json: bool,
    },
    Restarts {
        unit: Option<String>,
        json: bool,
    },
}

/// The daemon's answer to a [`Query`] (or to a request it could not take): the report's
/// text, or what went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Output(String),
    Error(String),
}

/// How the daemon's refusals for load begin (`busy: ...`).
pub const BUSY: &str = "busy: ";

/// The reply as it is on the wire: `{"ok":true,"output":...}` or `{"ok":false,"error":...}`.
#[derive(Serialize, Deserialize)]
/// (Fields in this order: the replies are byte for byte what earlier daemons sent.)
struct WireReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output: Option<String>,
}

impl Reply {
    /// The reply line, newline included.
    pub fn to_line(&self) -> String {
        let wire = match self {
            Self::Output(o) => WireReply {
                ok: true,
                output: Some(o.clone()),
                error: None,
            },
            Self::Error(e) => WireReply {
                ok: false,
                output: None,
                error: Some(e.clone()),
            },
        };
        let mut line = serde_json::to_string(&wire).expect("strings serialize");
        line.push('\n');
        line
    }

    /// Reads a reply line.
    pub fn from_line(line: &str) -> Result<Self, serde_json::Error> {
        let wire: WireReply = serde_json::from_str(line)?;
        Ok(if wire.ok {
            Self::Output(wire.output.unwrap_or_default())
        } else {
            Self::Error(wire.error.unwrap_or_else(|| "the daemon failed".into()))
        })
    }

    /// A refusal for load (too many reports asked for just now): worth asking again
    /// shortly, unlike every other error.
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Error(e) if e.starts_with(BUSY))
    }

    pub fn into_result(self) -> Result<String, String> {
        match self {
            Self::Output(o) => Ok(o),
            Self::Error(e) => Err(e),
        }
    }
}

/// A line of the event stream that is not an event: the count of events this client
/// missed because it read too slowly (`{"kind":"missed","count":N}`).
pub fn missed_line(buf: &mut Vec<u8>, count: u64) {
    buf.extend_from_slice(b"{\"kind\":\"missed\",\"count\":");
    buf.extend_from_slice(itoa::Buffer::new().format(count).as_bytes());
    buf.extend_from_slice(b"}\n");
}

/// What `tracer events` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Filter {
    /// Unit name patterns (globs); empty: any.
    pub units: Vec<String>,
    pub pids: Vec<u32>,
    pub comms: Vec<String>,
    pub cgroup_prefix: Option<String>,
    pub kinds: Vec<KindFilter>,
    pub failed_only: bool,
}

/// Event kinds `--kind` selects; `cgroup` is all three cgroup kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KindFilter {
    Exec,
    ExecFailed,
    Exit,
    Fork,
    Cgroup,
    CgroupMkdir,
    CgroupRmdir,
    CgroupAttach,
    Signal,
    OomKill,
    AccessFailed,
}

/// Which units `tracer units` lists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct UnitSelect {
    pub types: Vec<String>,
    pub states: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_clients_write_them() {
        let r: Request =
            serde_json::from_str(r#"{"op":"events","filter":{"kinds":["exec"]}}"#).unwrap();
        assert_eq!(
            r,
            Request::Events {
                filter: Filter {
                    kinds: vec![KindFilter::Exec],
                    ..Filter::default()
                }
            }
        );
        let r: Request = serde_json::from_str(r#"{"op":"why","unit":"a","json":false}"#).unwrap();
        assert_eq!(
            r,
            Request::Query(Query::Why {
                unit: "a".into(),
                json: false
            })
        );
        let q = Query::Units {
            json: true,
            select: UnitSelect::default(),
        };
        let line = serde_json::to_string(&q).unwrap();
        assert_eq!(
            serde_json::from_str::<Request>(&line).unwrap(),
            Request::Query(q)
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"reboot"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"events"}"#).is_err());
    }

    #[test]
    fn replies_round_trip() {
        for r in [Reply::Output("a\nb\n".into()), Reply::Error("no".into())] {
            assert_eq!(Reply::from_line(&r.to_line()).unwrap(), r);
        }
        assert_eq!(
            Reply::Error("x".into()).to_line(),
            "{\"error\":\"x\",\"ok\":false}\n"
        );
        let mut buf = Vec::new();
        missed_line(&mut buf, 12);
        assert_eq!(buf, b"{\"kind\":\"missed\",\"count\":12}\n");
    }
}
