//! The handoff transport on Unix: a stream socket that the primary listens on, and the
//! secondary's connect, send and wait for the reply.
//!
//! The unit both sides agree on is *one connected `UnixStream` whose first bytes are
//! [`wire::MAGIC`]*: the [`Server`] takes such streams from a [`Source`] (accepted from the socket
//! beside the lock file, or handed over by the abstract lock's own listener, whose draining
//! thread leaves the magic unread: it peeks), checks each peer's uid, reads and checks one
//! request without blocking, and gives the application an [`Activation`] that answers on the
//! same stream.
//!
//! Relies on unix(7): `SO_PEERCRED` / `getpeereid(3)` for the sender's uid, a non-blocking
//! `connect(2)` that fails with `EAGAIN` on a full backlog instead of hanging, and socket
//! timeouts (`SO_RCVTIMEO`, `SO_SNDTIMEO`) for every blocking read and write.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use nix::sys::socket::{UnixAddr, connect};

use super::wire::{self, Refusal, Reply, WireError};
use super::{Activation, ConnectError, Exchange, deliver, refuse};
use crate::error::{Error, ErrorKind};
use crate::lock::Guard;

/// One connection between a secondary and the primary.
pub(crate) type Stream = UnixStream;

/// What the primary checks requests against.
pub(crate) struct Serve {
    /// Largest request body accepted.
    pub limit: usize,
    /// How long a sender may take to send its request once connected.
    pub read_timeout: Duration,
    /// The uid senders must have (the primary's effective uid).
    pub uid: u32,
}

impl Serve {
    /// Requests up to `limit` bytes, read within `read_timeout`, from senders of our uid.
    pub(crate) fn new(limit: usize, read_timeout: Duration) -> Serve {
        Serve {
            limit,
            read_timeout,
            uid: nix::unistd::geteuid().as_raw(),
        }
    }
}

/// Writes `reply` on `stream`; failures are the sender's problem (it went away).
pub(crate) fn send_reply(stream: &UnixStream, reply: &Reply) -> io::Result<()> {
    crate::os::send_all(stream.as_fd(), &wire::encode_reply(reply))
}

/// The sender's pid and uid, or `None` after refusing it: a sender of another uid is refused
/// before anything is read from it.
fn check_peer(stream: &UnixStream, serve: &Serve) -> Option<(Option<u32>, u32)> {
    let (pid, uid) = match crate::os::peer_credentials(stream.as_fd()) {
        Ok(c) => c,
        Err(e) => {
            refuse(
                stream,
                Refusal::OtherUser,
                format!("cannot read the sender's credentials: {e}"),
            );
            return None;
        }
    };
    if uid != serve.uid {
        refuse(
            stream,
            Refusal::OtherUser,
            format!(
                "the primary runs as uid {}, the sender as uid {uid}: refused",
                serve.uid
            ),
        );
        return None;
    }
    Some((pid, uid))
}

/// The primary's socket beside the lock file, bound and listening, removed on drop.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    /// Device and inode of the socket we bound, so that drop never removes a newer one.
    id: (u64, u64),
}

impl SocketFile {
    /// Binds `path` (mode 0600) and listens. Only the lock holder calls this, so a socket file
    /// already there is a former holder's leftover and is replaced.
    pub(crate) fn bind(path: &Path) -> io::Result<(SocketFile, UnixListener)> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let meta = std::fs::symlink_metadata(path)?;
        Ok((
            SocketFile {
                path: path.to_owned(),
                id: (meta.dev(), meta.ino()),
            },
            listener,
        ))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.id {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// A connection whose request is still arriving.
struct Incoming {
    stream: UnixStream,
    pid: Option<u32>,
    uid: u32,
    buf: Vec<u8>,
    /// Bytes the frame has: the header's until it is read, then the whole frame's.
    need: usize,
    deadline: Instant,
}

enum Progress {
    More,
    Done(Option<Activation>),
}

/// Reads what has arrived on `c` (non-blocking); when its frame is complete, refuses or delivers
/// it. `Done` means the connection is finished with (an activation, refused or gone).
fn progress(c: &mut Incoming, serve: &Serve) -> Progress {
    use std::io::Read;
    loop {
        if c.buf.len() < c.need {
            let have = c.buf.len();
            c.buf.resize(c.need, 0);
            match (&c.stream).read(&mut c.buf[have..]) {
                Ok(0) => return Progress::Done(None), // gone mid-frame: nothing to deliver
                Ok(n) => c.buf.truncate(have + n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.buf.truncate(have);
                    return Progress::More;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => c.buf.truncate(have),
                Err(_) => return Progress::Done(None),
            }
            continue;
        }
        let head: &[u8; wire::HEADER] = c.buf[..wire::HEADER].try_into().expect("header");
        let (kind, len) = match wire::decode_header(head, serve.limit) {
            Ok(h) => h,
            Err(e) => {
                refuse_blocking(&c.stream, e);
                return Progress::Done(None);
            }
        };
        if c.need == wire::HEADER && len > 0 {
            c.need = wire::HEADER + len;
            c.buf.reserve_exact(len);
            continue;
        }
        let request = match wire::request_from(kind, &c.buf[wire::HEADER..]) {
            Ok(r) => r,
            Err(e) => {
                refuse_blocking(&c.stream, e);
                return Progress::Done(None);
            }
        };
        let activation = c
            .stream
            .try_clone()
            .ok()
            .filter(|s| s.set_nonblocking(false).is_ok())
            .and_then(|s| deliver(s, request, c.pid, c.uid));
        return Progress::Done(activation);
    }
}

fn refuse_blocking(stream: &UnixStream, e: WireError) {
    if let WireError::Bad(reason, message) = e {
        if stream.set_nonblocking(false).is_ok() {
            refuse(stream, reason, message);
        }
    }
}

/// Where the [`Server`]'s connections come from.
pub(crate) enum Source {
    /// The socket file beside the lock file: accepted here.
    Listener(UnixListener),
    #[cfg_attr(
        not(all(
            feature = "abstract-socket",
            any(target_os = "linux", target_os = "android")
        )),
        allow(dead_code)
    )]
    /// Streams handed over by another thread (the abstract lock's draining thread, through the
    /// handler [`handed`] makes): each is sent on the channel, then a byte written to the other
    /// end of `wake` makes it readable.
    Handed {
        wake: UnixStream,
        rx: mpsc::Receiver<UnixStream>,
    },
}

impl Source {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Source::Listener(l) => l.as_fd(),
            Source::Handed { wake, .. } => wake.as_fd(),
        }
    }

    /// The next connection ready to be taken, without blocking.
    fn take(&self) -> Option<UnixStream> {
        match self {
            Source::Listener(l) => loop {
                match l.accept() {
                    Ok((s, _)) => return Some(s),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // WouldBlock: all taken; anything else (EMFILE): try on the next wake-up.
                    Err(_) => return None,
                }
            },
            Source::Handed { wake, rx } => {
                // Empty the wake-up socket first, then the channel: a stream sent after the
                // channel was found empty writes a byte afterwards, so it is not missed.
                use std::io::Read;
                let mut buf = [0u8; 256];
                while matches!((&*wake).read(&mut buf), Ok(n) if n > 0) {}
                rx.try_recv().ok()
            }
        }
    }
}

/// The receiving half of a [`Source::Handed`] and the handler that feeds it: the handler runs
/// on the draining thread, so it never blocks (an unbounded channel, a non-blocking write of one
/// byte; a full wake-up socket already has bytes to wake the server). The third value wakes the
/// server on its own (to stop a serving thread).
#[cfg_attr(
    not(all(
        feature = "abstract-socket",
        any(target_os = "linux", target_os = "android")
    )),
    allow(dead_code)
)]
pub(crate) fn handed() -> io::Result<(Source, Handler, Waker)> {
    let (wake, waker) = UnixStream::pair()?;
    wake.set_nonblocking(true)?;
    waker.set_nonblocking(true)?;
    let waker = Waker(Arc::new(waker));
    let (tx, rx) = mpsc::channel::<UnixStream>();
    let tx = std::sync::Mutex::new(tx);
    let w = waker.clone();
    let handler: Handler = Box::new(move |stream| {
        let sent = tx.lock().map(|tx| tx.send(stream).is_ok()).unwrap_or(false);
        // Not sent: the server is gone and the stream dropped, unread; its sender sees the
        // connection reset and tries again (see `secondary`).
        if sent {
            w.wake();
        }
    });
    Ok((Source::Handed { wake, rx }, handler, waker))
}

/// What the abstract lock's draining thread calls with each connection whose peer sent bytes.
#[cfg_attr(
    not(all(
        feature = "abstract-socket",
        any(target_os = "linux", target_os = "android")
    )),
    allow(dead_code)
)]
pub(crate) type Handler = Box<dyn Fn(UnixStream) + Send + Sync>;

/// Wakes the server of a [`Source::Handed`].
#[cfg_attr(
    not(all(
        feature = "abstract-socket",
        any(target_os = "linux", target_os = "android")
    )),
    allow(dead_code)
)]
#[derive(Clone)]
pub(crate) struct Waker(Arc<UnixStream>);

#[cfg_attr(
    not(all(
        feature = "abstract-socket",
        any(target_os = "linux", target_os = "android")
    )),
    allow(dead_code)
)]
impl Waker {
    pub(crate) fn wake(&self) {
        use std::io::Write;
        // WouldBlock: the socket is full of wake-ups already.
        let _ = (&*self.0).write(&[1]);
    }
}

/// The primary's connections and those whose requests are still arriving, served by a poll(2)
/// loop on the thread that asks for the next activation: each connection is read without
/// blocking and dropped at its read deadline, so that a sender that stalls delays nobody, and no
/// thread is started per connection.
pub(crate) struct Server {
    source: Source,
    incoming: Vec<Incoming>,
    serve: Serve,
    /// Activations complete but not yet returned (several can complete in one round).
    ready: std::collections::VecDeque<Activation>,
}

impl Server {
    pub(crate) fn new(source: Source, serve: Serve) -> io::Result<Server> {
        if let Source::Listener(l) = &source {
            l.set_nonblocking(true)?;
        }
        Ok(Server {
            source,
            incoming: Vec::new(),
            serve,
            ready: Default::default(),
        })
    }

    /// The next activation; `None` when `deadline` passes, when `stop` is set (and a connection
    /// or a wake-up woke the loop), or when poll(2) fails.
    pub(crate) fn next(
        &mut self,
        deadline: Option<Instant>,
        stop: Option<&AtomicBool>,
    ) -> Option<Activation> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        loop {
            if let Some(a) = self.ready.pop_front() {
                return Some(a);
            }
            let now = Instant::now();
            self.incoming.retain(|c| c.deadline > now);
            let wake = self
                .incoming
                .iter()
                .map(|c| c.deadline)
                .chain(deadline)
                .min();
            let timeout = wake.map_or(PollTimeout::NONE, |t| {
                let left = t.saturating_duration_since(now);
                PollTimeout::try_from(left.as_micros().div_ceil(1000)).unwrap_or(PollTimeout::MAX)
            });
            let ready: Vec<bool> = {
                let mut fds = Vec::with_capacity(self.incoming.len() + 1);
                fds.push(PollFd::new(self.source.as_fd(), PollFlags::POLLIN));
                fds.extend(
                    self.incoming
                        .iter()
                        .map(|c| PollFd::new(c.stream.as_fd(), PollFlags::POLLIN)),
                );
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => return None,
                }
                fds.iter()
                    .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                    .collect()
            };
            if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                return None;
            }
            // Connections with data first (their indices are the poll's), then new ones.
            let mut i = self.incoming.len();
            while i > 0 {
                i -= 1;
                if ready[i + 1] {
                    if let Progress::Done(a) = progress(&mut self.incoming[i], &self.serve) {
                        self.incoming.swap_remove(i);
                        self.ready.extend(a);
                    }
                }
            }
            if ready[0] {
                self.take_all();
            }
            if self.ready.is_empty() && deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
        }
    }

    fn take_all(&mut self) {
        while let Some(stream) = self.source.take() {
            let Some((pid, uid)) = check_peer(&stream, &self.serve) else {
                continue;
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let mut c = Incoming {
                stream,
                pid,
                uid,
                buf: Vec::with_capacity(256),
                need: wire::HEADER,
                deadline: Instant::now() + self.serve.read_timeout,
            };
            // The request is usually there already: no poll round for it.
            match progress(&mut c, &self.serve) {
                Progress::More => self.incoming.push(c),
                Progress::Done(a) => self.ready.extend(a),
            }
        }
    }
}

/// Wakes an accept loop blocked in accept(2) after its stop flag was set.
fn wake(path: &Path) {
    let _ = UnixStream::connect(path);
}

/// How a serving thread is woken to see its stop flag.
pub(crate) enum Wake {
    /// Connect to the socket file (also removed on drop).
    File(SocketFile),
    /// Write to the wake-up socket of the streams the abstract lock's listener hands over.
    #[cfg_attr(
        not(all(
            feature = "abstract-socket",
            any(target_os = "linux", target_os = "android")
        )),
        allow(dead_code)
    )]
    Handed(Waker),
}

impl Wake {
    /// Wakes the serving thread (whose stop flag is set).
    pub(crate) fn wake(&self) {
        match self {
            Wake::File(socket) => wake(socket.path()),
            Wake::Handed(waker) => waker.wake(),
        }
    }
}

/// Where the primary's connections come from: the socket file `path` (bound here), or, when
/// `path` is `@name` (Linux, Android), the abstract lock's own listener, which `guard` holds: its
/// draining thread hands each connection whose peer sends to a handler registered here.
pub(crate) fn listen_on(path: &Path, guard: Option<&Guard>) -> Result<(Source, Wake), Error> {
    let failed = |e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot listen on the handoff socket {}", path.display()),
            e,
        )
    };
    #[cfg(all(
        feature = "abstract-socket",
        any(target_os = "linux", target_os = "android")
    ))]
    if abstract_name(path).is_some() {
        let guard = guard.ok_or_else(|| {
            Error::msg(
                ErrorKind::InvalidInput,
                format!("cannot listen on {}", path.display()),
                "the abstract socket's handoff needs the guard of the lock",
            )
        })?;
        let (source, handler, waker) = handed().map_err(failed)?;
        if !crate::backend::abstract_socket::set_connection_handler(guard, handler) {
            return Err(Error::msg(
                ErrorKind::InvalidInput,
                format!("cannot listen on {}", path.display()),
                format!(
                    "the lock held ({} {}) is not that abstract socket taken by this process, \
                     or its draining thread could not be started",
                    guard.backend(),
                    guard.resource()
                ),
            ));
        }
        return Ok((source, Wake::Handed(waker)));
    }
    let _ = guard; // The socket file does not need it.
    let (socket, listener) = SocketFile::bind(path).map_err(failed)?;
    Ok((Source::Listener(listener), Wake::File(socket)))
}

/// Checks that the listener at the other end of `stream` runs as our uid; `Err` says why not
/// (nothing was sent).
pub(crate) fn check_listener(stream: &UnixStream, path: &Path) -> Result<(), String> {
    let me = nix::unistd::geteuid().as_raw();
    match crate::os::peer_credentials(stream.as_fd()) {
        Ok((_, uid)) if uid == me => Ok(()),
        Ok((_, uid)) => Err(format!(
            "the handoff socket {} is served by uid {uid}, not {me}: nothing sent",
            path.display()
        )),
        Err(e) => Err(format!(
            "cannot tell who serves the handoff socket {}: {e}; nothing sent",
            path.display()
        )),
    }
}

/// `path` names an abstract socket: `@` and the name.
pub(crate) fn abstract_name(path: &Path) -> Option<&[u8]> {
    use std::os::unix::ffi::OsStrExt;
    if !cfg!(all(
        feature = "abstract-socket",
        any(target_os = "linux", target_os = "android")
    )) {
        return None;
    }
    path.as_os_str().as_bytes().strip_prefix(b"@")
}

/// The address of the socket file `path`, or of the abstract socket `@name` (Linux, Android).
fn address(path: &Path) -> nix::Result<UnixAddr> {
    match abstract_name(path) {
        #[cfg(all(
            feature = "abstract-socket",
            any(target_os = "linux", target_os = "android")
        ))]
        Some(name) => UnixAddr::new_abstract(name),
        _ => UnixAddr::new(path),
    }
}

/// Connects to `path` (a socket file, or `@name` for an abstract socket on Linux and Android)
/// without ever blocking on a full backlog (connect(2) on a non-blocking socket returns `EAGAIN`
/// there), then makes the socket blocking again.
pub(crate) fn connect_nonblocking(path: &Path) -> Result<UnixStream, ConnectError> {
    let fd = crate::os::nonblocking_unix_stream().map_err(ConnectError::Other)?;
    let addr = address(path).map_err(|e| ConnectError::Other(e.into()))?;
    match connect(fd.as_raw_fd(), &addr) {
        Ok(()) => {}
        Err(nix::errno::Errno::EAGAIN) => return Err(ConnectError::Busy),
        Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ECONNREFUSED) => {
            return Err(ConnectError::NotListening);
        }
        Err(e) => return Err(ConnectError::Other(e.into())),
    }
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false).map_err(ConnectError::Other)?;
    Ok(stream)
}

fn remaining(deadline: Instant) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    // A zero timeout means "none" to the socket options: keep at least a millisecond.
    Some(left.max(Duration::from_millis(1)))
}

/// Sends `frame` and waits for the reply until `deadline`.
pub(crate) fn exchange(stream: &UnixStream, frame: &[u8], deadline: Instant) -> Exchange {
    if let Err(e) = stream.set_write_timeout(remaining(deadline)) {
        return Exchange::NotSent(e);
    }
    if let Err(e) = crate::os::send_all(stream.as_fd(), frame) {
        // A primary that refused early (a frame over its limit) replied and closed before
        // reading the rest: its refusal is already in our receive queue.
        if stream
            .set_read_timeout(Some(Duration::from_millis(1)))
            .is_ok()
        {
            if let Ok(r @ Reply::Refusal { .. }) = wire::read_reply(&mut &*stream, wire::MAX_BODY) {
                return Exchange::Replied(r);
            }
        }
        return Exchange::NotSent(e);
    }
    // Peek at the first byte of the reply: a reset before it is told apart from the end of
    // the stream (both would be a failed read of the reply's header).
    loop {
        if let Err(e) = stream.set_read_timeout(remaining(deadline)) {
            return Exchange::NoReply(e);
        }
        let mut byte = [0u8; 1];
        match nix::sys::socket::recv(
            stream.as_raw_fd(),
            &mut byte,
            nix::sys::socket::MsgFlags::MSG_PEEK,
        ) {
            // A byte of the reply, or the end of the stream: read_reply tells which.
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) if Instant::now() < deadline => {}
            Err(nix::errno::Errno::ECONNRESET) => {
                return Exchange::Unread(nix::errno::Errno::ECONNRESET.into());
            }
            Err(e) => return Exchange::NoReply(e.into()),
        }
    }
    loop {
        if let Err(e) = stream.set_read_timeout(remaining(deadline)) {
            return Exchange::NoReply(e);
        }
        match wire::read_reply(&mut &*stream, wire::MAX_BODY) {
            Ok(r) => return Exchange::Replied(r),
            Err(WireError::Io(e))
                if e.kind() == io::ErrorKind::Interrupted && Instant::now() < deadline => {}
            Err(e) => return Exchange::NoReply(e.into_io()),
        }
    }
}

/// Linux's behaviour (unix_release_sock), which only the abstract socket's secondary relies on.
#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;

    /// The kernel behaviour the abstract socket's secondary relies on (see `secondary`): a
    /// request closed unread by the other end is reported as `Unread` (ECONNRESET), one read to
    /// its end and then closed without a reply as `NoReply` (end of stream).
    #[test]
    fn closed_unread_is_a_reset_read_then_closed_is_the_end_of_the_stream() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let listener = UnixListener::bind(&path).unwrap();
        let frame = wire::encode_request(
            &wire::Request {
                pid: 1,
                expires_ms: 0,
                cwd: "/".into(),
                args: vec!["x".into()],
                env: Vec::new(),
            },
            wire::MAX_BODY,
        )
        .unwrap();
        for read_it in [false, true] {
            let client = UnixStream::connect(&path).unwrap();
            let sent = frame.clone();
            let waiter = std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                exchange(&client, &sent, deadline)
            });
            let (conn, _) = listener.accept().unwrap();
            if read_it {
                let mut got = vec![0u8; frame.len()];
                (&conn).read_exact(&mut got).unwrap();
                assert_eq!(got, frame);
            } else {
                // Wait for the frame (sent with one write: all there once readable), unread.
                use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
                let mut fds = [PollFd::new(conn.as_fd(), PollFlags::POLLIN)];
                poll(&mut fds, PollTimeout::NONE).unwrap();
            }
            drop(conn);
            match (read_it, waiter.join().unwrap()) {
                (false, Exchange::Unread(e)) => {
                    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
                }
                (true, Exchange::NoReply(e)) => {
                    assert_ne!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
                }
                (read_it, _) => panic!("read_it {read_it}: another outcome"),
            }
        }
    }
}
