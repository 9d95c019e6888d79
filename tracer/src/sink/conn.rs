//! Bounds on what connecting costs the daemon, for the socket and `/metrics` alike.
//!
//! - A connection that has not sent its request holds a place among at most `max`; a new
//!   one past that closes the oldest waiting one (it had its time), so idle connections
//!   can neither exhaust the daemon's descriptors nor shut out a client that asks at once.
//! - An accept that fails for want of descriptors or memory (EMFILE, ENFILE, ENOBUFS,
//!   ENOMEM) pauses, doubling up to a second, instead of being retried at once (what used
//!   to spin a core), and says so once per burst.
//! - The daemon raises its soft limit on open files to the hard one at start-up.

use std::{
    collections::VecDeque,
    io,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::oneshot;

/// Connections waiting for their request.
pub struct Waiting {
    max: usize,
    queue: Mutex<VecDeque<(u64, oneshot::Sender<()>)>>,
    next: AtomicU64,
    /// Connections closed to make room.
    pub evicted: AtomicU64,
}

impl Waiting {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            queue: Mutex::new(VecDeque::new()),
            next: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        })
    }

    /// A place for a new connection, closing the oldest waiting one when all are taken.
    pub fn enter(self: &Arc<Self>) -> Place {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        while q.len() >= self.max {
            if let Some((_, oldest)) = q.pop_front() {
                let _ = oldest.send(());
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        q.push_back((id, tx));
        Place {
            id,
            waiting: self.clone(),
            evicted: rx,
        }
    }

    /// Connections waiting now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A waiting connection's place; given up when dropped (its request came, or it ended).
pub struct Place {
    id: u64,
    waiting: Arc<Waiting>,
    evicted: oneshot::Receiver<()>,
}

impl Place {
    /// Resolves when a newer connection took this place.
    pub async fn evicted(&mut self) {
        let _ = (&mut self.evicted).await;
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut q = self.waiting.queue.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = q.iter().position(|(id, _)| *id == self.id) {
            q.remove(i);
        }
    }
}

/// The pause after a failed accept.
pub struct Backoff {
    pause: Duration,
    what: &'static str,
}

const FIRST_PAUSE: Duration = Duration::from_millis(10);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

impl Backoff {
    pub fn new(what: &'static str) -> Self {
        Self {
            pause: Duration::ZERO,
            what,
        }
    }

    /// The connection, or None after pausing as the error asks.
    pub async fn accepted<T>(&mut self, r: io::Result<T>) -> Option<T> {
        match r {
            Ok(conn) => {
                if !self.pause.is_zero() {
                    tracing::info!("{}: accepting connections again", self.what);
                    self.pause = Duration::ZERO;
                }
                Some(conn)
            }
            Err(e) if out_of_resources(&e) => {
                if self.pause.is_zero() {
                    tracing::warn!(
                        "{}: cannot accept connections: {e} (pausing; raise LimitNOFILE= if this lasts)",
                        self.what
                    );
                    self.pause = FIRST_PAUSE;
                } else {
                    self.pause = (self.pause * 2).min(LONGEST_PAUSE);
                }
                tokio::time::sleep(self.pause).await;
                None
            }
            // The peer gave up before it was accepted (ECONNABORTED and the like).
            Err(e) => {
                tracing::debug!("{}: accept: {e}", self.what);
                None
            }
        }
    }
}

fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Raises the soft limit on open files to the hard one (systemd's default soft limit is
/// 1024, its hard one far higher); returns the limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_new_connection_closes_the_oldest_waiting_one() {
        let w = Waiting::new(2);
        let mut a = w.enter();
        let b = w.enter();
        assert_eq!(w.len(), 2);
        let _c = w.enter();
        assert_eq!(w.len(), 2, "still two waiting");
        tokio::time::timeout(Duration::from_secs(1), a.evicted())
            .await
            .expect("the oldest was told to close");
        assert_eq!(w.evicted.load(Ordering::Relaxed), 1);
        drop(b);
        assert_eq!(w.len(), 1, "a place is given up with its request");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_accept_pauses_longer_each_time() {
        let mut b = Backoff::new("test");
        let emfile = || Err::<(), _>(io::Error::from_raw_os_error(libc::EMFILE));
        let t = tokio::time::Instant::now();
        assert!(b.accepted(emfile()).await.is_none());
        assert!(b.accepted(emfile()).await.is_none());
        assert!(b.accepted(emfile()).await.is_none());
        assert_eq!(t.elapsed(), Duration::from_millis(10 + 20 + 40));
        assert_eq!(b.accepted(Ok(())).await, Some(()));
        let t = tokio::time::Instant::now();
        let aborted = Err::<(), _>(io::Error::from_raw_os_error(libc::ECONNABORTED));
        assert!(b.accepted(aborted).await.is_none());
        assert_eq!(t.elapsed(), Duration::ZERO, "no pause for a peer that left");
    }
}
