//! tracer: an eBPF-backed process and service tracer for systemd hosts.
//!
//! The flow is one way: kernel programs → ring buffer → [`probe`] → [`decode`] → [`event`]
//! → enrichment ([`cgroup`]) → consumers ([`cli`]). Everything after `decode` works on
//! plain values and is tested without root by replaying records.

pub mod cgroup;
pub mod cli;
pub mod client;
pub mod clock;
pub mod daemon;
pub mod decode;
pub mod enrich;
pub mod event;
pub mod filter;
pub mod idhash;
pub mod journal;
pub mod model;
pub mod probe;
pub mod procfs;
pub mod protocol;
pub mod replay;
pub mod report;
pub mod sink;
pub mod startup;
pub mod systemd;
pub mod unit;
pub mod users;

#[cfg(test)]
mod testing;
