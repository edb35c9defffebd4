//! Abstract Unix socket backend (Linux, Android): `bind(2)` a `SOCK_STREAM` socket to
//! `"\0onlyone/<scope>/<name>"` and `listen(2)` on it (unix(7)).
//!
//! - **Exclusion:** `bind` fails with `EADDRINUSE` while any stream socket holds the name.
//! - **Release:** the kernel frees the name when the last descriptor closes: when the guard drops,
//!   and when the holder dies, even by SIGKILL, before it is reaped. No file, nothing to clean up,
//!   works in a chroot.
//! - **Holder identity:** a contender connects without blocking and reads `SO_PEERCRED` (pid and
//!   uid of the process that called `listen`), then `/proc/PID` for start time and command line.
//!   Pid 0 means the listener's PID namespace is not visible from ours: the holder is reported as
//!   [`HolderKind::OtherPidNamespace`] with its uid. `Lock::holder` also asks `SO_PEERPIDFD`
//!   (Linux 6.5+), a pidfd of that very listener: if it has exited (a child kept the socket) its
//!   pid may be another process's now, so nothing is read on its strength and the holder is
//!   unidentified; if it runs, it is pinned as [`Holder::process`](crate::Holder::process).
//!   Lookups connect to the holder's listener; the holder drains it (below), so they never meet a
//!   full backlog. Should they (a holder of an older onlyone, which never accepts, after about
//!   4,100 contenders; a listener keeping 512 connections), lookups fall back to `/proc/net/unix`
//!   and the processes' descriptors in `/proc/PID/fd` (visible for your own processes, or all as
//!   root).
//! - **Draining:** a listener's queue is emptied only by `accept(2)`, and every contender that
//!   connects to read the holder's identity stays in it after it left until someone accepts it. The
//!   program holding the lock does not call onlyone while it works, so a thread does it: one per
//!   process, started by the process's first abstract lock, asleep in `epoll_wait(2)` while
//!   nobody connects (a thread is the only way: nothing else runs in the holder's process when a
//!   contender connects). It accepts each connection; one whose peer already left is closed at
//!   once, one that stays (a waiter, of this or an older onlyone, sleeping on its hang-up) is kept
//!   until its peer leaves or the lock is released, when it is closed after the listener. At most
//!   512 are kept per lock; past that it stops accepting until one closes. A connection whose peer
//!   sends bytes goes to the handler registered for the lock (the second-instance handoff), else
//!   it is closed. A `fork`ed child has no such thread: a lock it takes is not drained.
//! - **Waiting:** waiters queue (see [`Lock::acquire_timeout`]): the head of the line stays
//!   connected to the holder's socket; the holder closes that connection when it lets go (the
//!   kernel does when it dies), and the waiter races to bind. A name bound without `listen`
//!   gives no such event: then, and only then, the head retries with a backoff of 1 to 50 ms.
//! - **Scope:** the network namespace. Processes in another one (`unshare -n`, containers, systemd
//!   `PrivateNetwork=`) do not see the name, and anyone may bind any free name: a name held by
//!   another uid, or bound without listening, is reported as such.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, connect, getsockopt, listen,
    socket, sockopt,
};

use crate::backend::{BackendKind, wait_loop};
use crate::error::{Error, ErrorKind, sys};
use crate::lock::{
    Acquire, Guard, HeldLock, Holder, HolderKind, LazyHolder, Lock, WakeSource, WakeUp,
};
use crate::name::{LockName, Scope};

/// A lock held by binding an abstract Unix socket name. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct AbstractSocketLock {
    name: LockName,
    /// `@` and the socket name: what [`Lock::resource`] gives, made once.
    resource: String,
    addr: UnixAddr,
}

/// What connecting to the holder's address told us.
enum Probe {
    /// Connected: the holder listens; `SO_PEERCRED` said pid and uid. The connection is kept
    /// for waiting on its hangup.
    Connected(OwnedFd, i32, u32),
    /// Nobody listens on the name: it is free, or bound without `listen`.
    Refused,
    /// The holder's backlog is full.
    BacklogFull,
}

impl AbstractSocketLock {
    /// The lock `name` in `scope`; see [`LockName::abstract_socket_name`] for the socket name.
    pub fn new(name: LockName, scope: Scope) -> AbstractSocketLock {
        let socket_name = name.abstract_socket_name(scope);
        let addr = UnixAddr::new_abstract(socket_name.as_bytes())
            .expect("mapped names are at most 107 bytes");
        AbstractSocketLock {
            name,
            resource: format!("@{socket_name}"),
            addr,
        }
    }

    /// The abstract socket name, without the leading NUL.
    pub fn socket_name(&self) -> &str {
        &self.resource[1..]
    }

    fn new_socket(&self, flags: SockFlag) -> Result<OwnedFd, Error> {
        socket(
            AddressFamily::Unix,
            SockType::Stream,
            flags | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| {
            sys(
                ErrorKind::Io,
                format!("cannot create a socket for {}", self.resource()),
                e,
            )
        })
    }

    /// Binds and listens; `None` when the name is taken. Non-blocking, for the draining thread's
    /// `accept4`.
    fn bind_listener(&self) -> Result<Option<OwnedFd>, Error> {
        let fd = self.new_socket(SockFlag::SOCK_NONBLOCK)?;
        match bind(fd.as_raw_fd(), &self.addr) {
            Ok(()) => {}
            Err(Errno::EADDRINUSE) => return Ok(None),
            Err(e) => {
                return Err(sys(
                    ErrorKind::Io,
                    format!("cannot bind {}", self.resource()),
                    e,
                ));
            }
        }
        listen(&fd, Backlog::MAXCONN).map_err(|e| {
            sys(
                ErrorKind::Io,
                format!("cannot listen on {}", self.resource()),
                e,
            )
        })?;
        Ok(Some(fd))
    }

    /// Connects to the holder and reads its credentials (`SO_PEERCRED`).
    fn probe(&self) -> Result<Probe, Error> {
        let fd = self.new_socket(SockFlag::SOCK_NONBLOCK)?;
        match connect(fd.as_raw_fd(), &self.addr) {
            Ok(()) => {}
            Err(Errno::ECONNREFUSED) | Err(Errno::ENOENT) => return Ok(Probe::Refused),
            Err(Errno::EAGAIN) => return Ok(Probe::BacklogFull),
            Err(e) => {
                return Err(sys(
                    ErrorKind::Io,
                    format!("cannot connect to the holder of {}", self.resource()),
                    e,
                ));
            }
        }
        let creds = getsockopt(&fd, sockopt::PeerCredentials).map_err(|e| {
            sys(
                ErrorKind::Io,
                format!(
                    "cannot read the holder's credentials on {}",
                    self.resource()
                ),
                e,
            )
        })?;
        Ok(Probe::Connected(fd, creds.pid(), creds.uid()))
    }

    /// Who holds the name, for a try whose `bind` failed: read when the holder is first asked
    /// for (see [`LazyHolder`]), so that a failed try costs a `socket` + `bind` + `close`.
    fn lazy_holder(&self) -> LazyHolder {
        let lock = self.clone();
        LazyHolder::new(move || lock.look_up_holder())
    }

    /// Connects to the holder and reads who it is (unproven: no `SO_PEERPIDFD`). A name that
    /// refuses connections is looked up in `/proc/net/unix` after a few tries (a holder may be
    /// between `bind` and `listen`); a name that has become free meanwhile gives an unidentified
    /// holder: it was held when the try failed.
    fn look_up_holder(&self) -> Holder {
        for round in 0..4 {
            match self.probe() {
                Ok(Probe::Connected(_, pid, uid)) => return peer_holder(None, pid, uid),
                Ok(Probe::Refused) if round < 3 => std::thread::yield_now(),
                Ok(Probe::Refused) => {}
                Ok(Probe::BacklogFull) | Err(_) => break,
            }
        }
        self.proc_lookup().unwrap_or_else(Holder::unidentified)
    }

    /// Looks the name up in `/proc/net/unix`: `None` if unbound, else whether it listens and
    /// which process holds it (when its descriptors are visible to us).
    fn proc_lookup(&self) -> Option<Holder> {
        let table = fs::read_to_string("/proc/net/unix").ok()?;
        let want = &self.resource;
        // Every connection waiting in the holder's backlog is listed under the holder's name too
        // (not listening, owned by no process): the listening entry is the holder.
        let mut entries = table
            .lines()
            .skip(1)
            .filter_map(parse_proc_net_unix)
            .filter(|e| &e.path == want && e.stream);
        let first = entries.next()?;
        let entry = if first.listening {
            first
        } else {
            entries.find(|e| e.listening).unwrap_or(first)
        };
        let mut holder = find_socket_owner(entry.inode)
            .map(|pid| Holder::from_pid(pid, None, None))
            .unwrap_or_else(Holder::unidentified);
        if !entry.listening {
            holder.kind = HolderKind::Unresponsive;
        }
        Some(holder)
    }

    fn attempt_once(&self) -> Result<Attempt, Error> {
        // A bind can fail because a holder is between bind and listen, or a holder released
        // between our bind and connect: retry a few times before calling the name squatted.
        for round in 0..4 {
            if let Some(fd) = self.bind_listener()? {
                return Ok(Attempt::Acquired(self.guard(fd)));
            }
            match self.probe()? {
                Probe::Connected(conn, pid, uid) => {
                    let holder = LazyHolder::new(move || peer_holder(None, pid, uid));
                    return Ok(Attempt::Held(holder, Some(conn)));
                }
                Probe::BacklogFull => {
                    let holder = self.lazy_proc_lookup(HolderKind::Unidentified);
                    return Ok(Attempt::Held(holder, None));
                }
                Probe::Refused if round < 3 => std::thread::yield_now(),
                Probe::Refused => {}
            }
        }
        Ok(Attempt::Held(
            self.lazy_proc_lookup(HolderKind::Unresponsive),
            None,
        ))
    }

    /// The holder `/proc/net/unix` names, read when first asked for; a holder of kind `unknown`
    /// when it names none.
    fn lazy_proc_lookup(&self, unknown: HolderKind) -> LazyHolder {
        let lock = self.clone();
        LazyHolder::new(move || {
            lock.proc_lookup().unwrap_or_else(|| Holder {
                kind: unknown,
                ..Holder::unidentified()
            })
        })
    }

    fn guard(&self, fd: OwnedFd) -> Guard {
        let drain = drain::register(fd.as_fd());
        Guard::new(
            Box::new(AbstractSocketHeld {
                fd: Some(fd),
                drain,
                owner: std::process::id(),
            }),
            BackendKind::AbstractSocket,
            self.resource(),
        )
    }
}

enum Attempt {
    Acquired(Guard),
    /// Held; with the connection to the holder when it listens, to wait on.
    Held(LazyHolder, Option<OwnedFd>),
}

impl Lock for AbstractSocketLock {
    fn try_acquire(&self) -> Result<Acquire, Error> {
        // A failed bind is the answer: the name is held. Who holds it is read when asked.
        Ok(match self.bind_listener()? {
            Some(fd) => Acquire::Acquired(self.guard(fd)),
            None => Acquire::Held(self.lazy_holder()),
        })
    }

    fn acquire_timeout(&self, timeout: Option<Duration>) -> Result<Acquire, Error> {
        wait_loop(self, timeout)
    }

    fn attempt(&self) -> Result<crate::Attempt, Error> {
        Ok(match self.attempt_once()? {
            Attempt::Acquired(g) => crate::Attempt::Acquired(g),
            // The kernel hangs this connection up when the holder's socket closes.
            Attempt::Held(h, Some(conn)) => {
                crate::Attempt::Held(h, WakeUp::on_event(vec![WakeSource::new(conn)]))
            }
            // No listener to wait on (a squatted name, a full backlog): back off.
            Attempt::Held(h, None) => crate::Attempt::Held(h, WakeUp::backoff(Vec::new())),
        })
    }

    fn holder(&self) -> Result<Option<Holder>, Error> {
        match self.probe()? {
            Probe::Connected(conn, pid, uid) => Ok(Some(peer_holder(Some(&conn), pid, uid))),
            Probe::BacklogFull => Ok(Some(
                self.proc_lookup().unwrap_or_else(Holder::unidentified),
            )),
            Probe::Refused => Ok(self.proc_lookup()),
        }
    }

    fn backend(&self) -> BackendKind {
        BackendKind::AbstractSocket
    }

    fn name(&self) -> &LockName {
        &self.name
    }

    fn resource(&self) -> String {
        self.resource.clone()
    }
}

/// The bound, listening socket. Closing it frees the name.
#[derive(Debug)]
struct AbstractSocketHeld {
    fd: Option<OwnedFd>,
    /// Its registration with the draining thread, in the process that took the lock.
    drain: Option<drain::Token>,
    /// The process that took the lock: a `fork`ed child's copy of the guard only closes.
    owner: u32,
}

impl AbstractSocketHeld {
    fn close(&mut self) -> Result<(), Error> {
        let Some(fd) = self.fd.take() else {
            return Ok(());
        };
        let result = match self.drain.take() {
            Some(token) if std::process::id() == self.owner => drain::unregister(token, fd),
            _ => nix::unistd::close(fd),
        };
        result.map_err(|e| sys(ErrorKind::Io, "cannot close the lock socket", e))
    }
}

impl HeldLock for AbstractSocketHeld {
    fn verify(&self) -> Result<(), Error> {
        // Nobody can unbind a name from a socket we hold.
        Ok(())
    }

    fn release(mut self: Box<Self>) -> Result<(), Error> {
        self.close()
    }

    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd())
    }
}

impl Drop for AbstractSocketHeld {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Passes the connections to the lock `guard` holds (an abstract socket lock taken by this
/// process) whose peer *sends* before it is released to `handler`, on the draining thread: the
/// second-instance handoff's messages come that way (its client writes a magic such as
/// `b"ONLYONE-HANDOFF"` first; the handler reads and checks it). Connections that send nothing
/// (contenders reading `SO_PEERCRED`, waiters of any onlyone version sleeping on the hang-up)
/// are kept until the lock is released or their peer leaves, and never reach the handler.
/// Without a handler a connection that sends is closed. The handler gets the stream in blocking
/// mode, nothing read from it yet, and must not block for long: one thread drains every lock of
/// the process (hand the stream to a thread or channel of your own). `false` when `guard` is not such a lock or no
/// draining thread could be started.
pub(crate) fn set_connection_handler(
    guard: &Guard,
    handler: Box<dyn Fn(std::os::unix::net::UnixStream) + Send + Sync>,
) -> bool {
    guard.backend() == BackendKind::AbstractSocket
        && guard
            .as_fd()
            .is_some_and(|fd| drain::set_handler(fd.as_raw_fd(), handler))
}

/// The thread that drains the holders' listeners: see the module docs ("Draining").
mod drain {
    use std::collections::HashMap;
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
    use std::os::unix::net::UnixStream;
    use std::sync::{Arc, Mutex, OnceLock};

    use nix::errno::Errno;
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
    use nix::sys::socket::{MsgFlags, SockFlag, accept4, recv};

    /// A listener's registration.
    #[derive(Debug)]
    pub(super) struct Token(u64);

    type Handler = Arc<dyn Fn(UnixStream) + Send + Sync>;

    struct Listener {
        fd: RawFd,
        handler: Option<Handler>,
        /// Connections accepted and kept (their peers stay: waiters, handoff clients).
        kept: usize,
        /// Whether accepting is paused at [`MAX_KEPT`].
        paused: bool,
    }

    /// The most connections one listener keeps open: past that, the thread stops accepting
    /// until one closes, and further connections wait in the backlog as with a holder that
    /// never accepts. So peers that connect and stay (any local process may) cannot use up the
    /// holder's descriptors.
    const MAX_KEPT: usize = 512;

    #[derive(Default)]
    struct State {
        next: u64,
        listeners: HashMap<u64, Listener>,
        /// Accepted connections: their listener's token and the connection.
        conns: HashMap<u64, (u64, OwnedFd)>,
    }

    struct Drain {
        epoll: Epoll,
        state: Mutex<State>,
        /// The process the thread runs in: a `fork`ed child has no such thread, and shares the
        /// epoll instance with its parent, so it registers nothing.
        pid: u32,
    }

    /// The process's draining thread, started by the first lock it takes; `None` when it could
    /// not be started (then listeners are not drained, as in onlyone before 0.2).
    fn drain() -> Option<&'static Drain> {
        static DRAIN: OnceLock<Option<&'static Drain>> = OnceLock::new();
        let drain = *DRAIN.get_or_init(|| {
            let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).ok()?;
            let drain: &'static Drain = Box::leak(Box::new(Drain {
                epoll,
                state: Mutex::new(State::default()),
                pid: std::process::id(),
            }));
            crate::backend::spawn_quiet("onlyone-drain", move || drain.run()).ok()?;
            Some(drain)
        });
        drain.filter(|d| d.pid == std::process::id())
    }

    /// Starts draining `fd`, a listener this process just bound; `None` when there is no
    /// draining thread.
    pub(super) fn register(fd: BorrowedFd<'_>) -> Option<Token> {
        let drain = drain()?;
        let mut state = drain.state.lock().ok()?;
        state.next += 1;
        let token = state.next;
        drain
            .epoll
            .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, token))
            .ok()?;
        state.listeners.insert(
            token,
            Listener {
                fd: fd.as_raw_fd(),
                handler: None,
                kept: 0,
                paused: false,
            },
        );
        Some(Token(token))
    }

    /// Stops draining the listener and closes it (freeing the name), then every connection it
    /// accepted (waking the waiters sleeping on their hang-up).
    pub(super) fn unregister(token: Token, fd: OwnedFd) -> Result<(), Errno> {
        let Some(drain) = drain() else {
            return nix::unistd::close(fd);
        };
        let mut state = drain.state.lock().unwrap_or_else(|e| e.into_inner());
        // Removed explicitly: a copy of the descriptor in a child would keep it registered.
        let _ = drain.epoll.delete(fd.as_fd());
        state.listeners.remove(&token.0);
        let result = nix::unistd::close(fd);
        let accepted: Vec<u64> = state
            .conns
            .iter()
            .filter(|(_, (l, _))| *l == token.0)
            .map(|(c, _)| *c)
            .collect();
        let closed: Vec<(u64, OwnedFd)> = accepted
            .into_iter()
            .filter_map(|c| state.conns.remove(&c))
            .collect();
        drop(state);
        drop(closed);
        result
    }

    /// See [`super::set_connection_handler`].
    pub(super) fn set_handler(fd: RawFd, handler: Box<dyn Fn(UnixStream) + Send + Sync>) -> bool {
        let Some(drain) = drain() else { return false };
        let mut state = drain.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.listeners.values_mut().find(|l| l.fd == fd) {
            Some(l) => {
                l.handler = Some(Arc::from(handler));
                true
            }
            None => false,
        }
    }

    impl Drain {
        fn run(&self) {
            let mut events = vec![EpollEvent::empty(); 256];
            loop {
                let n = match self.epoll.wait(&mut events, EpollTimeout::NONE) {
                    Ok(n) => n,
                    Err(Errno::EINTR) => continue,
                    Err(_) => return,
                };
                let mut handed = Vec::new();
                let mut starved = false;
                {
                    let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    for ev in &events[..n] {
                        let token = ev.data();
                        if let Some(fd) = state.listeners.get(&token).map(|l| l.fd) {
                            starved |= self.accept_all(&mut state, token, fd);
                        } else if let Some(conn) = self.settle(&mut state, token) {
                            handed.push(conn);
                        }
                    }
                }
                for (handler, stream) in handed {
                    handler(stream);
                }
                if starved {
                    // Out of descriptors: the listener stays readable, so pause rather than spin.
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }

        /// Accepts every pending connection of the listener `fd` (registered as `token`) and
        /// watches each for data or hang-up. Whether accepting ran out of descriptors.
        fn accept_all(&self, state: &mut State, token: u64, fd: RawFd) -> bool {
            let listener = unsafe_borrow(fd);
            loop {
                match accept4(listener, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC) {
                    Ok(conn) => {
                        // Most contenders have read `SO_PEERCRED` and left by now: closed at
                        // once, without a round through epoll.
                        if peer_left(&conn) {
                            continue;
                        }
                        state.next += 1;
                        let id = state.next;
                        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
                        if self
                            .epoll
                            .add(conn.as_fd(), EpollEvent::new(flags, id))
                            .is_ok()
                        {
                            state.conns.insert(id, (token, conn));
                            let Some(l) = state.listeners.get_mut(&token) else {
                                return false;
                            };
                            l.kept += 1;
                            if l.kept >= MAX_KEPT {
                                l.paused = true;
                                let mut none = EpollEvent::new(EpollFlags::empty(), token);
                                let _ = self.epoll.modify(listener, &mut none);
                                return false;
                            }
                        }
                    }
                    Err(Errno::EINTR | Errno::ECONNABORTED) => continue,
                    Err(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM) => {
                        return true;
                    }
                    Err(_) => return false,
                }
            }
        }

        /// A connection became readable: its peer left (closed here), or sent data (handed to
        /// the listener's handler, else closed).
        fn settle(&self, state: &mut State, id: u64) -> Option<(Handler, UnixStream)> {
            let (_, conn) = state.conns.get(&id)?;
            let sent = match peek(conn) {
                Peek::Left => false,
                Peek::Sent => true,
                Peek::Quiet => return None,
            };
            // Closing it (its only descriptor) also takes it out of the epoll set.
            let (listener, conn) = state.conns.remove(&id)?;
            let l = state.listeners.get_mut(&listener)?;
            l.kept -= 1;
            if l.paused {
                l.paused = false;
                let mut again = EpollEvent::new(EpollFlags::EPOLLIN, listener);
                let _ = self.epoll.modify(unsafe_borrow(l.fd), &mut again);
            }
            let handler = l.handler.clone();
            match handler {
                Some(h) if sent => {
                    // Out of our epoll set before the handler owns it (it stays open).
                    let _ = self.epoll.delete(conn.as_fd());
                    let stream = UnixStream::from(conn);
                    let _ = stream.set_nonblocking(false);
                    Some((h, stream))
                }
                _ => None,
            }
        }
    }

    /// What an accepted connection's peer did.
    enum Peek {
        /// Closed its end (or the connection failed).
        Left,
        /// Sent bytes: not a plain contender.
        Sent,
        /// Nothing yet: a waiter sleeping on the hang-up, or a contender still reading.
        Quiet,
    }

    fn peek(conn: &OwnedFd) -> Peek {
        let mut byte = [0u8; 1];
        match recv(
            conn.as_raw_fd(),
            &mut byte,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(0) => Peek::Left,
            Ok(_) => Peek::Sent,
            Err(Errno::EAGAIN | Errno::EINTR) => Peek::Quiet,
            Err(_) => Peek::Left,
        }
    }

    /// Whether a connection just accepted is already closed by its peer, with nothing sent.
    fn peer_left(conn: &OwnedFd) -> bool {
        matches!(peek(conn), Peek::Left)
    }

    /// The listener's descriptor, borrowed while the registry's lock is held.
    #[allow(unsafe_code)]
    fn unsafe_borrow<'a>(fd: RawFd) -> BorrowedFd<'a> {
        // SAFETY: only called with a registered listener's descriptor while the registry's mutex
        // is held; `unregister` closes it under that mutex, after removing it, so it stays open
        // for as long as the borrow is used (within one `accept_all` or `settle`).
        unsafe { BorrowedFd::borrow_raw(fd) }
    }
}

/// The holder behind a connection to its listening socket: `SO_PEERCRED` said `pid` (in our PID
/// namespace; 0 when the listener's namespace is not visible from ours) and `uid`. With the
/// connection `conn`, also pins the listening process through `SO_PEERPIDFD` (see
/// [`HolderProcess`](crate::HolderProcess)): [`Lock::holder`] proves, a contended try does not
/// pay for it.
///
/// The pid is the one the listener had at `listen(2)`: if it has exited (a child kept the
/// socket) that number may belong to another process now, so nothing is read from `/proc` on its
/// strength unless the listener is pinned by `SO_PEERPIDFD` and still running. Without
/// `SO_PEERPIDFD` (Linux before 6.5) `/proc` is read as before, and the holder is never proven.
fn peer_holder(conn: Option<&OwnedFd>, pid: i32, uid: u32) -> Holder {
    let mine = nix::unistd::geteuid().as_raw() == uid;
    let by_uid = if mine {
        HolderKind::SameUser
    } else {
        HolderKind::OtherUser
    };
    let Ok(pid) = u32::try_from(pid) else {
        return Holder::unidentified();
    };
    if pid == 0 {
        return Holder {
            kind: HolderKind::OtherPidNamespace,
            uid: Some(uid),
            ..Holder::unidentified()
        };
    }
    let Some(conn) = conn else {
        return Holder::from_pid(pid, Some(uid), None);
    };
    match crate::os::peer_pidfd(conn.as_fd()) {
        Ok(pidfd) => {
            let mut holder = Holder::from_pid(pid, Some(uid), None);
            let process = crate::HolderProcess::from_fd(pid, pidfd);
            if process.has_exited() {
                // Exited while we read /proc: what was read may be another process's.
                Holder {
                    kind: by_uid,
                    uid: Some(uid),
                    ..Holder::unidentified()
                }
            } else {
                holder.process = Some(process);
                holder
            }
        }
        Err(e) if e.raw_os_error() == Some(Errno::ENOPROTOOPT as i32) => {
            Holder::from_pid(pid, Some(uid), None)
        }
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
            Holder::from_pid(pid, Some(uid), None)
        }
        // The listener has exited: a process it handed the socket to holds the name, and its
        // pid may be someone else's now.
        Err(_) => Holder {
            kind: by_uid,
            uid: Some(uid),
            ..Holder::unidentified()
        },
    }
}

/// One line of `/proc/net/unix`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UnixSocketEntry {
    pub(crate) inode: u64,
    pub(crate) listening: bool,
    pub(crate) stream: bool,
    /// `@name` for abstract sockets.
    pub(crate) path: String,
}

/// Parses `Num RefCount Protocol Flags Type St Inode Path`; the path (which may contain spaces)
/// is the rest of the line after the seventh field.
pub(crate) fn parse_proc_net_unix(line: &str) -> Option<UnixSocketEntry> {
    let mut rest = line;
    let mut fields = [""; 7];
    for field in &mut fields {
        rest = rest.trim_start_matches(' ');
        let end = rest.find(' ').unwrap_or(rest.len());
        *field = &rest[..end];
        rest = &rest[end..];
    }
    let path = rest.strip_prefix(' ')?;
    const SO_ACCEPTCON: u32 = 0x0001_0000;
    let flags = u32::from_str_radix(fields[3], 16).ok()?;
    Some(UnixSocketEntry {
        inode: fields[6].parse().ok()?,
        listening: flags & SO_ACCEPTCON != 0,
        stream: fields[4] == "0001",
        path: path.to_owned(),
    })
}

/// Lists the abstract socket names onlyone holders have bound in this network namespace.
pub fn list_bound() -> Vec<String> {
    let Ok(table) = fs::read_to_string("/proc/net/unix") else {
        return Vec::new();
    };
    let prefix = format!("@{}", crate::name::ABSTRACT_PREFIX);
    let mut names: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(parse_proc_net_unix)
        .filter(|e| e.stream && e.path.starts_with(&prefix))
        .map(|e| e.path[1..].to_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Finds a process with a descriptor for socket `inode` by reading `/proc/*/fd` links.
fn find_socket_owner(inode: u64) -> Option<u32> {
    let target = format!("socket:[{inode}]");
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.into_iter().find(|pid| {
        fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|fds| {
                fds.filter_map(Result::ok)
                    .any(|fd| fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == &*target))
            })
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hook the second-instance handoff uses: a connection that sends first reaches the
    /// handler, byte for byte; one that sends nothing is kept open until the lock is released.
    #[test]
    fn connections_that_send_go_to_the_handler_the_others_wait_for_the_release() {
        use std::io::{Read, Write};
        use std::os::unix::net::UnixStream;
        let name = LockName::new(format!("test-handler-{}", std::process::id())).unwrap();
        let lock = AbstractSocketLock::new(name, Scope::User);
        let guard = lock.try_acquire().unwrap().guard().expect("free");
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let tx = std::sync::Mutex::new(tx);
        assert!(set_connection_handler(
            &guard,
            Box::new(move |mut stream: UnixStream| {
                let mut got = Vec::new();
                let _ = stream.read_to_end(&mut got);
                let _ = tx.lock().unwrap().send(got);
            })
        ));
        let connect = || {
            let fd = socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            )
            .unwrap();
            connect(fd.as_raw_fd(), &lock.addr).unwrap();
            UnixStream::from(fd)
        };
        let plain = connect();
        let mut client = connect();
        client.write_all(b"ONLYONE-HANDOFF hello").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(rx.recv().unwrap(), b"ONLYONE-HANDOFF hello");
        // The plain connection is still open: a read would block, not see the end.
        plain.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let err = (&plain).read(&mut byte).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
        guard.release().unwrap();
        plain.set_nonblocking(false).unwrap();
        assert_eq!(
            (&plain).read(&mut byte).unwrap(),
            0,
            "hung up at the release"
        );
    }

    #[test]
    fn proc_net_unix_lines() {
        let line = "0000000000000000: 00000002 00000000 00010000 0001 01 123456 @onlyone/u0/my job";
        let e = parse_proc_net_unix(line).unwrap();
        assert_eq!(e.inode, 123456);
        assert!(e.listening && e.stream);
        assert_eq!(e.path, "@onlyone/u0/my job");
        let unbound = "0000000000000000: 00000002 00000000 00000000 0001 01  9876";
        assert_eq!(parse_proc_net_unix(unbound), None);
    }
}
