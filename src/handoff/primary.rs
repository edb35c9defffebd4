//! The primary's side of handoff: the listener beside the lock (served on the receiving thread,
//! or on one thread of its own for the tokio flavour and the CLI), the [`Primary`] that holds the
//! lock, and the [`Listener`] for callers that took the lock themselves.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Activation, Handoff, Message, Outcome, Sink, hand_to, prepare_dir, send, transport};
use crate::error::{Error, ErrorKind};
use crate::lock::Guard;
use crate::name::LockName;

/// The listening half: served on the receiving thread (`inline`) or on a thread of its own
/// (stopped and joined on drop); its socket file removed on drop (none on the abstract socket,
/// whose lock's own listener carries the messages).
pub(super) struct Listening {
    inline: Option<std::sync::Mutex<transport::Server>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    wake: transport::Wake,
}

impl Drop for Listening {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.store(true, Ordering::SeqCst);
            self.wake.wake();
            let _ = t.join();
        }
    }
}

/// What both primaries (sync and tokio) hold. Fields drop in order: the listener stops and its
/// socket file goes before the lock is released.
pub(super) struct PrimaryCore {
    pub(super) listening: Option<Box<Listening>>,
    pub(super) pending: Option<(transport::Serve, Option<Sink>)>,
    /// The socket file, or `@` and the abstract lock's name (see [`Handoff::socket_path`]).
    pub(super) path: PathBuf,
    /// `None` for a [`Listener`], whose caller holds the lock.
    pub(super) guard: Option<Guard>,
}

impl PrimaryCore {
    pub(super) fn listen(&mut self) -> Result<(), Error> {
        self.listen_holding(None)
    }

    /// Starts listening; `held` is the caller's guard when `self.guard` is `None`.
    pub(super) fn listen_holding(&mut self, held: Option<&Guard>) -> Result<(), Error> {
        if self.pending.is_none() {
            return Ok(());
        }
        let guard = self.guard.as_ref().or(held);
        let (source, wake) = transport::listen_on(&self.path, guard)?;
        let Some((serve, sink)) = self.pending.take() else {
            return Ok(());
        };
        let server = transport::Server::new(source, serve).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!(
                    "cannot listen on the handoff socket {}",
                    self.path.display()
                ),
                e,
            )
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let (inline, thread) = match sink {
            None => (Some(std::sync::Mutex::new(server)), None),
            Some(sink) => {
                let stop = Arc::clone(&stop);
                let t = std::thread::Builder::new()
                    .name("onlyone-handoff".into())
                    .spawn(move || serve_thread(server, sink, stop))
                    .map_err(|e| {
                        Error::new(ErrorKind::Io, "cannot start the handoff listener", e)
                    })?;
                (None, Some(t))
            }
        };
        self.listening = Some(Box::new(Listening {
            inline,
            stop,
            thread,
            wake,
        }));
        Ok(())
    }

    /// The next activation from an inline server, until `deadline`.
    fn next(&self, deadline: Option<Instant>) -> Option<Activation> {
        let server = self.listening.as_ref()?.inline.as_ref()?;
        let mut server = server.lock().unwrap_or_else(|e| e.into_inner());
        server.next(deadline, None).map(Activation::received)
    }
}

/// The primary: holds the lock and receives activations until dropped. Dropping it stops the
/// listener, removes its socket file (the abstract socket has none), then releases the lock;
/// senders whose requests it did not take see the connection close (not delivered, or unknown if
/// they had sent it in full and it may have been read; on the abstract socket a request left
/// unread is reset, and its sender tries again, then follows its [`IfGone`](super::IfGone) policy).
///
/// No thread is started: connections are accepted (on the abstract socket, by the lock's
/// draining thread, which passes them on) and read on the thread that calls
/// [`Primary::recv`] (a poll(2) loop over the listener and the requests still arriving), so a
/// primary that does not call it for a while looks busy to secondaries, which wait up to their
/// timeout and report unknown; the requests they sent are refused as expired, not delivered late.
pub struct Primary {
    pub(super) core: PrimaryCore,
}

impl fmt::Debug for Primary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Primary")
            .field("socket", &self.core.path)
            .field("listening", &self.core.listening.is_some())
            .field("guard", &self.core.guard)
            .finish()
    }
}

impl Primary {
    /// Starts listening, for a primary built with [`Handoff::listen_later`] (otherwise it
    /// already listens and this does nothing).
    pub fn listen(&mut self) -> Result<(), Error> {
        self.core.listen()
    }

    /// The next activation, waiting for it; `None` if the primary does not listen (yet: see
    /// [`Handoff::listen_later`]) or poll(2) failed.
    pub fn recv(&self) -> Option<Activation> {
        self.core.next(None)
    }

    /// The next activation, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Activation> {
        self.core.next(Some(Instant::now() + timeout))
    }

    /// The next activation if one is waiting.
    pub fn try_recv(&self) -> Option<Activation> {
        self.core.next(Some(Instant::now()))
    }

    /// The lock this primary holds.
    pub fn guard(&self) -> &Guard {
        self.core.guard.as_ref().expect("a primary holds its lock")
    }

    /// Where secondaries reach this primary: the handoff socket's path, or `@` and the abstract
    /// lock's name (see [`Handoff::socket_path`]).
    pub fn socket_path(&self) -> &Path {
        &self.core.path
    }
}

/// The listening half alone, for a program that took the lock itself (`onlyone run --handoff`
/// supervises its job with the guard): see [`Handoff::listen_while_holding`].
pub struct Listener {
    core: PrimaryCore,
    rx: mpsc::Receiver<Activation>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("socket", &self.core.path)
            .finish()
    }
}

impl Listener {
    /// The next activation, waiting for it; `None` only if the listener stopped.
    pub fn recv(&self) -> Option<Activation> {
        self.rx.recv().ok().map(Activation::received)
    }

    /// The next activation, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Activation> {
        self.rx.recv_timeout(timeout).ok().map(Activation::received)
    }

    /// Where secondaries reach this primary: the handoff socket's path, or `@` and the abstract
    /// lock's name (see [`Handoff::socket_path`]).
    pub fn socket_path(&self) -> &Path {
        &self.core.path
    }
}

impl Handoff {
    /// Listens for activations for a caller that holds the application's lock itself, `guard`
    /// (taken with [`Builder`](crate::Builder) for the same name, backend, scope and directory):
    /// on the handoff socket beside the lock file, which it replaces if one was left there, or
    /// on the abstract lock's own listener (the guard's socket). The listener serves until it is
    /// dropped; the guard may move elsewhere meanwhile, and releasing it ends the abstract
    /// socket's listening too.
    pub fn listen_while_holding(&self, guard: &Guard) -> Result<Listener, Error> {
        let name = LockName::new(self.name.clone())?;
        let (dir, backend, _) = self.placement()?;
        prepare_dir(&dir, self.scope)?;
        let (tx, rx) = mpsc::channel::<Activation>();
        let mut core = PrimaryCore {
            listening: None,
            pending: Some((
                transport::Serve::new(self.max_message, self.read_timeout),
                Some(Box::new(move |a| tx.send(a).map_err(|e| e.0))),
            )),
            path: self.endpoint(&dir.path, &name, backend)?,
            guard: None,
        };
        core.listen_holding(Some(guard))?;
        Ok(Listener { core, rx })
    }

    /// Hands `message` to the primary of a lock that was found held (by [`Builder`](crate::Builder)(crate::Builder) for the same
    /// name, backend, scope and directory), trying until the timeout; never takes the lock.
    pub fn hand_over(&self, message: &Message) -> Result<Outcome, Error> {
        self.send_only(message)
    }

    fn send_only(&self, message: &Message) -> Result<Outcome, Error> {
        send(&self.socket_path()?, message, self.timeout)
    }
}

/// Serves on a thread of its own until `stop` is set, handing each activation to `sink`.
fn serve_thread(mut server: transport::Server, sink: Sink, stop: Arc<AtomicBool>) {
    while let Some(a) = server.next(None, Some(&stop)) {
        hand_to(&sink, a);
    }
}
