//! tracer: an eBPF-backed process and service tracer for systemd hosts.
//!
//! The flow is one way: kernel programs → ring buffer → [`probe`] → [`decode`] (bytes →
//! [`event::Event`]) → [`enrich`] (the one cgroup → path → unit resolver) → [`model`]
//! (the one owner of state, which announces its changes) → sinks ([`sink::stream`],
//! [`sink::metrics`]); [`journal`] records every raw record beside them; [`report`]s read
//! the model. [`startup`] is the start-up every tracing command shares, [`daemon`]
//! composes the pipeline, [`cli`] is arguments and dispatch, and the daemon and the
//! command line speak [`protocol`] through [`client`]. Everything after `decode` works on
//! plain values and is tested without root by replaying records ([`replay`]).

pub mod cgroup;
pub mod cli;
pub(crate) mod client;
pub mod clock;
pub mod daemon;
pub mod decode;
pub mod enrich;
pub mod event;
pub(crate) mod filter;
pub(crate) mod idhash;
pub mod inspect;
pub mod journal;
pub mod model;
pub mod probe;
pub mod procfs;
pub mod protocol;
pub(crate) mod rate;
pub mod replay;
pub mod report;
pub(crate) mod sink;
pub(crate) mod startup;
pub mod systemd;
pub mod unit;
pub(crate) mod users;

#[cfg(test)]
mod testing;
