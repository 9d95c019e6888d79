//! Where events and the model's changes go besides the journal: the live stream's clients,
//! the Prometheus endpoint, findings in the systemd journal, and OTLP logs (opt-in).

pub mod conn;
pub mod journald;
pub mod metrics;
pub mod otlp;
pub mod stream;
