//! Where events and the model's changes go besides the journal: the live stream's clients,
//! the Prometheus endpoint, and findings in the systemd journal.

pub mod conn;
pub mod journald;
pub mod metrics;
pub mod stream;
