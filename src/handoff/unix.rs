//! The handoff transport on Unix: a stream socket that the primary listens on, and the
//! secondary's connect, send and wait for the reply.
//!
//! The unit both sides agree on is *one connected `UnixStream` whose first bytes are
//! [`wire::MAGIC`]*: [`serve_connection`] takes such a stream (accepted from the socket beside
//! the lock file here, or handed over by a listener shared with lock contenders, which must leave
//! the magic unread — peek, do not read), checks the peer's uid, reads and checks one request, and
//! gives the application an [`Activation`] that answers on the same stream.
//!
//! Relies on unix(7): `SO_PEERCRED` / `getpeereid(3)` for the sender's uid, a non-blocking
//! `connect(2)` that fails with `EAGAIN` on a full backlog instead of hanging, and socket
//! timeouts (`SO_RCVTIMEO`, `SO_SNDTIMEO`) for every blocking read and write.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::socket::{UnixAddr, connect};

use super::Activation;
use super::wire::{self, Refusal, Reply, Request, WireError};

/// Where activations go: returns the activation back when nobody takes them any more.
pub(crate) type Sink = Box<dyn Fn(Activation) -> Result<(), Activation> + Send + Sync>;

/// What the primary's connection handlers share.
pub(crate) struct Serve {
    /// Largest request body accepted.
    pub limit: usize,
    /// How long a sender may take to send its request once connected.
    pub read_timeout: Duration,
    /// The uid senders must have (the primary's effective uid).
    pub uid: u32,
    /// Where accepted activations go.
    pub sink: Sink,
}

/// Writes `reply` on `stream`; failures are the sender's problem (it went away).
pub(crate) fn send_reply(stream: &UnixStream, reply: &Reply) -> io::Result<()> {
    crate::os::send_all(stream.as_fd(), &wire::encode_reply(reply))
}

fn refuse(stream: &UnixStream, reason: Refusal, message: String) {
    let _ = send_reply(stream, &Reply::Refusal { reason, message });
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Serves one connection whose first bytes are (or should be) a handoff request: refuses a
/// sender of another uid before reading anything from it, reads one request within the read
/// timeout, refuses malformed, oversized and expired requests, and hands the rest to the sink.
pub(crate) fn serve_connection(stream: UnixStream, serve: &Serve) {
    let (pid, uid) = match crate::os::peer_credentials(stream.as_fd()) {
        Ok(c) => c,
        Err(e) => {
            refuse(
                &stream,
                Refusal::OtherUser,
                format!("cannot read the sender's credentials: {e}"),
            );
            return;
        }
    };
    if uid != serve.uid {
        refuse(
            &stream,
            Refusal::OtherUser,
            format!(
                "the primary runs as uid {}, the sender as uid {uid}: refused",
                serve.uid
            ),
        );
        return;
    }
    if stream.set_read_timeout(Some(serve.read_timeout)).is_err() {
        return;
    }
    let request = match wire::read_request(&mut &stream, serve.limit) {
        Ok(r) => r,
        Err(WireError::Bad(reason, message)) => {
            refuse(&stream, reason, message);
            return;
        }
        // The sender went away or stalled mid-frame: nothing to deliver, nobody to tell.
        Err(WireError::Io(_)) => return,
    };
    if request.expires_ms != 0 && now_ms() > request.expires_ms {
        refuse(
            &stream,
            Refusal::Expired,
            "the request arrived after its sender's deadline".into(),
        );
        return;
    }
    let _ = stream.set_read_timeout(None);
    let activation = Activation::new(request, pid, uid, stream);
    if let Err(mut back) = (serve.sink)(activation) {
        if let Some(s) = back.take_stream() {
            refuse(
                &s,
                Refusal::ShuttingDown,
                "the primary takes no more activations".into(),
            );
        }
    }
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

/// Accepts connections on `listener` until `stop` is set (and a connection wakes the loop), each
/// served on a small thread of its own so that a sender that stalls delays nobody else.
pub(crate) fn accept_loop(listener: UnixListener, serve: Arc<Serve>, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = conn else { continue };
        let serve = Arc::clone(&serve);
        let spawned = std::thread::Builder::new()
            .name("onlyone-handoff-conn".into())
            .stack_size(128 * 1024)
            .spawn(move || serve_connection(stream, &serve));
        // Out of threads: the connection is dropped, its sender sees the hang-up as Unknown
        // (it had sent) or NotDelivered (it had not).
        drop(spawned);
    }
}

/// Wakes an accept loop blocked in accept(2) after its stop flag was set.
pub(crate) fn wake(path: &Path) {
    let _ = UnixStream::connect(path);
}

/// Why a connect did not give a connection.
pub(crate) enum ConnectError {
    /// Nobody listens at the path (no file, or refused): not ready yet, or gone.
    NotListening,
    /// The listener's backlog is full: busy.
    Busy,
    /// Anything else.
    Other(io::Error),
}

/// Connects to `path` without ever blocking on a full backlog (connect(2) on a non-blocking
/// socket returns `EAGAIN` there), then makes the socket blocking again.
pub(crate) fn connect_nonblocking(path: &Path) -> Result<UnixStream, ConnectError> {
    let fd = crate::os::nonblocking_unix_stream().map_err(ConnectError::Other)?;
    let addr = UnixAddr::new(path).map_err(|e| ConnectError::Other(e.into()))?;
    use std::os::fd::AsRawFd;
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

/// What became of a request on a connected stream.
pub(crate) enum Exchange {
    /// The primary replied.
    Replied(Reply),
    /// The request was not sent in full: nothing can have reached the application.
    NotSent(io::Error),
    /// The request was sent in full and no reply came before the deadline, or the connection
    /// broke first.
    NoReply(io::Error),
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

/// Encodes `request` for the wire.
pub(crate) fn encode(request: &Request, limit: usize) -> Result<Vec<u8>, String> {
    wire::encode_request(request, limit)
}
