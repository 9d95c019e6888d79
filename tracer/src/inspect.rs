//! A look at a file an exec was refused (its mode, owner, noexec mount, `#!` line), made so
//! that the file cannot decide how long the look takes, and in the mount namespace of the
//! process that used the path.
//!
//! - The path is resolved with `openat2(O_PATH, RESOLVE_IN_ROOT)` under the process's root
//!   (`/proc/PID/root` while it lives, else pid 1's): a `PrivateTmp=` unit's `/tmp/x.sh`
//!   or a container's file is the one it ran, and no symlink leads out of that root.
//!   `O_PATH` opens nothing: no FIFO waits for a writer, no lease is broken, no device
//!   is touched. `fstat` and `fstatvfs` (noexec) work on that descriptor.
//! - The first line is read only from a regular file, reopened `O_NONBLOCK`, so a lease
//!   holder makes the open fail at once instead of for `fs.lease-break-time`.
//! - In the daemon, [`Lookups`] makes each look on one of a few worker threads, off the
//!   event path: a bounded queue, a rate per user, and a look hung on a dead filesystem
//!   costs one worker, never the ring reader. What could not be looked at says why.

use std::{
    collections::HashMap,
    ffi::CString,
    fs::File,
    io::{self, Read as _},
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    },
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, Receiver, SyncSender, TrySendError},
    },
    time::{Duration, Instant},
};

use crate::{
    model::{
        cause::OwnerNames,
        facts::{
            Facts, FileInfo, FileLookup, LiveFacts, Looked, UnitFile, UserLookup, noexec_mount_of,
            user_exists_now,
        },
    },
    rate::Bucket,
    users,
};

/// Where a path is resolved: a root directory and the mount table that goes with it.
pub struct Root {
    dir: OwnedFd,
    /// The process whose root it is (its mountinfo names a noexec mount).
    pid: Option<u32>,
}

impl Root {
    /// The root of process `pid` while it lives, else pid 1's (the host's: the daemon's
    /// own may be private), else ours.
    pub fn of(pid: Option<u32>) -> Self {
        if let Some(pid) = pid
            && let Ok(dir) = open_dir(&format!("/proc/{pid}/root"))
        {
            return Self {
                dir,
                pid: Some(pid),
            };
        }
        match open_dir("/proc/1/root") {
            Ok(dir) => Self { dir, pid: Some(1) },
            Err(_) => Self::here(),
        }
    }

    /// Our own root ("/"), for reports: the paths as whoever runs them sees them.
    pub fn here() -> Self {
        Self {
            dir: open_dir("/").expect("/ can be opened"),
            pid: None,
        }
    }

    fn mountinfo(&self) -> Option<String> {
        let own = match self.pid {
            Some(pid) => format!("/proc/{pid}/mountinfo"),
            None => "/proc/self/mountinfo".to_owned(),
        };
        std::fs::read_to_string(own)
            .or_else(|_| std::fs::read_to_string("/proc/1/mountinfo"))
            .ok()
    }
}

fn open_dir(path: &str) -> io::Result<OwnedFd> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(path)
        .map(OwnedFd::from)
}

/// Opens `path` (absolute) under `root` with `O_PATH`: symlinks followed but kept inside
/// the root, no magic links. Where openat2 is refused (ENOSYS: before Linux 5.6, or under
/// systemd's RestrictSUIDSGID=, which cannot inspect openat2's flags and so refuses it),
/// the same walk is made a component at a time.
fn open_in(root: &OwnedFd, path: &str) -> io::Result<OwnedFd> {
    match openat2_in_root(root, path) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => walk_in_root(root, path),
        r => r,
    }
}

/// Symlinks followed on a walk before it gives up (the kernel's own limit).
const MAX_LINKS: usize = 40;

/// `path` resolved under `root` a component at a time, as RESOLVE_IN_ROOT does: `..` stops
/// at the root, a symlink's target is resolved from the root when absolute, from its
/// directory when relative; every step `O_PATH | O_NOFOLLOW`, so nothing is opened.
fn walk_in_root(root: &OwnedFd, path: &str) -> io::Result<OwnedFd> {
    let mut dirs = vec![root.try_clone()?];
    let mut todo: std::collections::VecDeque<String> = path.split('/').map(str::to_owned).collect();
    let mut links = 0;
    while let Some(part) = todo.pop_front() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                if dirs.len() > 1 {
                    dirs.pop();
                }
                continue;
            }
            _ => {}
        }
        let here = dirs.last().expect("the root is never popped");
        let fd = openat_path(here, &part)?;
        let meta = fd.try_clone().map(File::from)?.metadata()?;
        if !meta.file_type().is_symlink() {
            dirs.push(fd);
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        let target = readlink_fd(&fd)?;
        if target.starts_with('/') {
            dirs.truncate(1);
        }
        for (i, p) in target.split('/').enumerate() {
            todo.insert(i, p.to_owned());
        }
    }
    match dirs.len() {
        1 => root.try_clone(),
        _ => Ok(dirs.pop().expect("more than the root")),
    }
}

/// `name` (one component) in the directory `dir`, `O_PATH | O_NOFOLLOW`.
fn openat_path(dir: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: the descriptor is open and `c` NUL-terminated.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The target of the symlink `fd` was opened on (`O_PATH | O_NOFOLLOW`).
fn readlink_fd(fd: &OwnedFd) -> io::Result<String> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: an empty path reads the link `fd` itself is (Linux ≥ 2.6.39); `buf` is valid
    // for writes of its length.
    let n = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    String::from_utf8(buf).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

fn openat2_in_root(root: &OwnedFd, path: &str) -> io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: open_how is plain integers; all zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: the descriptor is open, `c` is NUL-terminated and `how` lives across the
    // call, its size passed with it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &raw const how,
            size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether the filesystem holding `fd` is mounted noexec.
fn noexec(fd: &OwnedFd) -> bool {
    // SAFETY: statvfs is plain data; fstatvfs fills it for an open descriptor.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `st` is valid for writes.
    let r = unsafe { libc::fstatvfs(fd.as_raw_fd(), &raw mut st) };
    r == 0 && st.f_flag & libc::ST_NOEXEC != 0
}

/// The first bytes of the regular file behind `fd`, read through a fresh descriptor that
/// does not wait (a lease makes it fail at once).
fn head(fd: &OwnedFd) -> Option<Vec<u8>> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .ok()?;
    let mut buf = vec![0u8; 256];
    let n = f.read(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// Looks at `path` as a process with root `root` sees it.
pub fn look(path: &str, root: &Root) -> Looked {
    if !path.starts_with('/') {
        return Looked::Failed("a relative path, not looked up".into());
    }
    let fd = match open_in(&root.dir, path) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Looked::Absent,
        Err(e) => return Looked::Failed(format!("it could not be opened: {e}")),
    };
    let meta = match fd.try_clone().map(File::from).and_then(|f| f.metadata()) {
        Ok(m) => m,
        Err(e) => return Looked::Failed(format!("it could not be examined: {e}")),
    };
    let noexec_mount = noexec(&fd).then(|| {
        root.mountinfo()
            .and_then(|mi| noexec_mount_of(&mi, path))
            .unwrap_or_else(|| "(its mount)".to_owned())
    });
    let interpreter = if meta.is_file() {
        head(&fd)
            .and_then(|h| crate::model::facts::parse_shebang(&h))
            .map(|i| {
                let exists = open_in(&root.dir, &i).is_ok();
                (i, exists)
            })
    } else {
        None
    };
    let info = FileInfo {
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        is_dir: meta.is_dir(),
        noexec_mount,
        interpreter,
        acl: acl_of(&fd),
        dirs: dirs_of(path, root),
    };
    let owner = owner_names(info.uid, info.gid);
    Looked::Found { info, owner }
}

fn owner_names(uid: u32, gid: u32) -> OwnerNames {
    OwnerNames {
        user: users::user_name(uid).ok().flatten(),
        group: users::group_name(gid).ok().flatten(),
    }
}

/// The access ACL of the file behind `fd` (opened `O_PATH`: read through its
/// /proc/self/fd link), when it has one the kernel's format describes.
fn acl_of(fd: &OwnedFd) -> Option<crate::model::facts::Acl> {
    let link = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let mut buf = [0u8; 1024];
    // SAFETY: both strings are NUL-terminated and `buf` is valid for writes of its length.
    let n = unsafe {
        libc::getxattr(
            link.as_ptr(),
            c"system.posix_acl_access".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = usize::try_from(n).ok()?;
    crate::model::facts::Acl::from_xattr(&buf[..n])
}

/// The directories of `path`, from `/` down to the one holding it, as a process with root
/// `root` sees them (each resolved as the file was; one that cannot be looked at ends the
/// list).
fn dirs_of(path: &str, root: &Root) -> Vec<crate::model::facts::DirInfo> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let mut dirs = Vec::new();
    for n in 0..parts.len() {
        let dir = format!("/{}", parts[..n].join("/"));
        let Ok(fd) = open_in(&root.dir, &dir) else {
            break;
        };
        let Ok(meta) = fd.try_clone().map(File::from).and_then(|f| f.metadata()) else {
            break;
        };
        dirs.push(crate::model::facts::DirInfo {
            owner: owner_names(meta.uid(), meta.gid()),
            path: dir,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            acl: acl_of(&fd),
        });
    }
    dirs
}

/// How the daemon's looks went, for `/metrics`.
#[derive(Debug, Default)]
pub struct LookupCounts {
    /// Looks had.
    pub done: AtomicU64,
    /// Not had: the user's rate was spent.
    pub rate_limited: AtomicU64,
    /// Not had: the queue was full or every worker hung.
    pub refused: AtomicU64,
}

impl LookupCounts {
    /// (result, count) for each result, as `/metrics` names them.
    pub fn by_result(&self) -> [(&'static str, u64); 3] {
        [
            ("done", self.done.load(Ordering::Relaxed)),
            ("rate-limited", self.rate_limited.load(Ordering::Relaxed)),
            ("refused", self.refused.load(Ordering::Relaxed)),
        ]
    }
}

/// Looks per user: this many at once ...
const BURST: f64 = 20.0;
/// ... and this many a second after that.
const PER_SECOND: f64 = 5.0;
/// Users whose rate is kept (beyond, all are forgotten: a fresh start for each).
const MAX_USERS: usize = 4096;

struct Request {
    job: Job,
    queued: Instant,
}

/// What a worker is asked to look up.
enum Job {
    /// A file, as a process with this root sees it.
    File {
        path: String,
        root: Root,
        lookup: FileLookup,
    },
    /// Whether a user exists (NSS may ask a directory server that does not answer).
    User { name: String, lookup: UserLookup },
}

impl Job {
    /// Fills the lookup with why it was not had.
    fn refuse(&self, why: String) {
        match self {
            Job::File { lookup, .. } => lookup.fill(Looked::Failed(why)),
            Job::User { lookup, .. } => lookup.fill(None),
        }
    }
}

/// One worker's state: when it began its current look (ms since `epoch`, +1; 0 idle).
#[derive(Default)]
struct Worker {
    busy_since: AtomicU64,
}

/// The daemon's lookup workers.
pub struct Lookups {
    queue: SyncSender<Request>,
    workers: Arc<[Worker]>,
    epoch: Instant,
    /// A look this long is hung; a request queued this long is answered unseen.
    stuck_after: Duration,
    rates: Mutex<HashMap<u32, Bucket>>,
    pub counts: Arc<LookupCounts>,
}

impl Lookups {
    /// `workers` threads sharing a queue of `queue` requests.
    pub fn start(workers: usize, queue: usize, stuck_after: Duration) -> io::Result<Self> {
        Self::start_with(workers, queue, stuck_after, look)
    }

    fn start_with(
        workers: usize,
        queue: usize,
        stuck_after: Duration,
        look: impl Fn(&str, &Root) -> Looked + Send + Sync + 'static,
    ) -> io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Request>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let slots: Arc<[Worker]> = (0..workers).map(|_| Worker::default()).collect();
        let counts = Arc::new(LookupCounts::default());
        let look = Arc::new(look);
        let epoch = Instant::now();
        for i in 0..workers {
            let (rx, slots, counts, look) =
                (rx.clone(), slots.clone(), counts.clone(), look.clone());
            std::thread::Builder::new()
                .name("tracer-lookup".into())
                .spawn(move || {
                    work(&rx, &slots[i], epoch, stuck_after, &counts, &*look);
                })?;
        }
        Ok(Self {
            queue: tx,
            workers: slots,
            epoch,
            stuck_after,
            rates: Mutex::new(HashMap::new()),
            counts,
        })
    }

    /// Asks for a look at `path` as process `pid` sees it; answers at once, the look
    /// filled in later (or at once, with why it will not be had).
    pub fn request(&self, path: &str, pid: Option<u32>) -> FileLookup {
        let lookup = FileLookup::default();
        let refuse = |why: &str, counter: &AtomicU64| {
            counter.fetch_add(1, Ordering::Relaxed);
            lookup.fill(Looked::Failed(why.to_owned()));
            lookup.clone()
        };
        // The user is the owner of /proc/PID (the process's uid), read before it is gone.
        let uid = pid
            .and_then(|p| std::fs::metadata(format!("/proc/{p}")).ok())
            .map_or(u32::MAX, |m| m.uid());
        if !self.take_token(uid) {
            return refuse(
                "not looked at: too many failed execs of this user's to look at each",
                &self.counts.rate_limited,
            );
        }
        if self.all_hung() {
            return refuse(
                "not looked at: every lookup is hung on an earlier file (a dead filesystem?)",
                &self.counts.refused,
            );
        }
        self.queue_job(Job::File {
            path: path.to_owned(),
            root: Root::of(pid),
            lookup: lookup.clone(),
        });
        lookup
    }

    /// Asks whether user `name` exists; answers at once, filled in later (None when the
    /// lookup will not be had).
    pub fn request_user(&self, name: &str) -> UserLookup {
        let lookup = UserLookup::default();
        if self.all_hung() {
            self.counts.refused.fetch_add(1, Ordering::Relaxed);
            lookup.fill(None);
            return lookup;
        }
        self.queue_job(Job::User {
            name: name.to_owned(),
            lookup: lookup.clone(),
        });
        lookup
    }

    /// Queues a job, or refuses it at once when the queue is full.
    fn queue_job(&self, job: Job) {
        let request = Request {
            job,
            queued: Instant::now(),
        };
        let why = match self.queue.try_send(request) {
            Ok(()) => return,
            Err(TrySendError::Full(r)) => (r, "not looked at: too many looks pending"),
            Err(TrySendError::Disconnected(r)) => (r, "not looked at: the lookup workers stopped"),
        };
        self.counts.refused.fetch_add(1, Ordering::Relaxed);
        why.0.job.refuse(why.1.to_owned());
    }

    fn take_token(&self, uid: u32) -> bool {
        let now = Instant::now();
        let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        if rates.len() >= MAX_USERS && !rates.contains_key(&uid) {
            rates.clear();
        }
        rates
            .entry(uid)
            .or_insert_with(|| Bucket::new(BURST, PER_SECOND, now))
            .take(now)
    }

    fn all_hung(&self) -> bool {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let limit = self.stuck_after.as_millis() as u64;
        self.workers.iter().all(|w| {
            let since = w.busy_since.load(Ordering::Relaxed);
            since != 0 && now.saturating_sub(since) > limit
        })
    }
}

fn work(
    rx: &Mutex<Receiver<Request>>,
    me: &Worker,
    epoch: Instant,
    stuck_after: Duration,
    counts: &LookupCounts,
    look: &dyn Fn(&str, &Root) -> Looked,
) {
    loop {
        let request = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(r) => r,
            Err(_) => return,
        };
        if request.queued.elapsed() > stuck_after {
            // Queued behind a hung look: the file may have changed since; say so.
            request.job.refuse(format!(
                "not looked at: it waited over {stuck_after:?} behind a hung look"
            ));
            counts.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        me.busy_since
            .store(epoch.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
        match request.job {
            Job::File { path, root, lookup } => lookup.fill(look(&path, &root)),
            Job::User { name, lookup } => lookup.fill(user_exists_now(&name)),
        }
        me.busy_since.store(0, Ordering::Relaxed);
        counts.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// The daemon's facts: files and users looked up by [`Lookups`], unit files as
/// [`LiveFacts`] reads them (root's directories).
pub struct DaemonFacts {
    live: LiveFacts,
    pub lookups: Lookups,
}

impl DaemonFacts {
    pub fn start() -> io::Result<Self> {
        Ok(Self {
            live: LiveFacts,
            lookups: Lookups::start(2, 64, Duration::from_secs(2))?,
        })
    }
}

impl Facts for DaemonFacts {
    fn file(&self, path: &str, pid: Option<u32>) -> FileLookup {
        self.lookups.request(path, pid)
    }

    fn unit_file(&self, unit: &str) -> Option<UnitFile> {
        self.live.unit_file(unit)
    }

    fn user_exists(&self, name: &str) -> UserLookup {
        self.lookups.request_user(name)
    }
}

#[cfg(test)]
mod tests;
