//! systemd's notification protocol (Type=notify): readiness and status.

/// Tells systemd (Type=notify) how the service is doing; nothing without $NOTIFY_SOCKET.
pub fn sd_notify(msg: &str) {
    use std::os::{
        linux::net::SocketAddrExt,
        unix::net::{SocketAddr, UnixDatagram},
    };
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&path),
    };
    let sent = addr.and_then(|a| UnixDatagram::unbound()?.send_to_addr(msg.as_bytes(), &a));
    if let Err(e) = sent {
        tracing::warn!("telling systemd {msg:?} failed: {e}");
    }
}
