//! The secondary's side of handoff: connect with a bounded backoff while the lock is held and
//! nobody listens, check the listener's uid, send the request, wait for the answer, and say
//! which of the three outcomes it got; the gone-primary policy.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{
    Answer, ConnectError, Exchange, Handoff, Holder, IfGone, MAX_MESSAGE, Message, Outcome, Reason,
    Role, Sandbox, transport, wire,
};
use crate::error::{Error, ErrorKind};
use crate::lock::{Acquire, LazyHolder, Lock};

impl Handoff {
    pub(super) fn secondary(
        &self,
        lock: &dyn Lock,
        mut holder: LazyHolder,
        path: &Path,
        message: &Message,
        serve: (transport::Serve, Option<super::Sink>),
        sandbox: &Sandbox,
    ) -> Result<Role, Error> {
        let deadline = Instant::now() + self.timeout;
        let expires = std::time::SystemTime::now() + self.timeout;
        let frame = encode_message(&self.name, message, expires, self.max_message)?;
        // Every Flatpak instance has a PID namespace of its own: a pid would mean nothing.
        let who = |h: &Holder| match sandbox {
            Sandbox::Flatpak { .. } => {
                "a process in another sandbox (another Flatpak instance)".to_owned()
            }
            _ => h.to_string(),
        };
        let not =
            |reason, detail: String| Ok(Role::Secondary(Outcome::NotDelivered { reason, detail }));
        let mut backoff = Duration::from_millis(1);
        let mut last = Reason::NoListener;
        loop {
            let stream = match transport::connect_nonblocking(path) {
                Ok(s) => Some(s),
                Err(ConnectError::Busy) => {
                    last = Reason::Busy;
                    None
                }
                Err(ConnectError::NotListening) => {
                    last = Reason::NoListener;
                    match lock.holder()? {
                        Some(h) => {
                            holder = h.into();
                            None
                        }
                        None => match self.if_gone {
                            IfGone::Fail => {
                                return not(
                                    Reason::PrimaryGone,
                                    format!(
                                        "the primary of {:?} is gone (the lock is free) and the policy is to fail",
                                        self.name
                                    ),
                                );
                            }
                            IfGone::TakeOver => match lock.try_acquire()? {
                                Acquire::Acquired(guard) => {
                                    return self
                                        .primary(guard, path.to_owned(), serve)
                                        .map(Role::Primary);
                                }
                                Acquire::Held(h) => {
                                    holder = h;
                                    None
                                }
                            },
                        },
                    }
                }
                Err(ConnectError::Other(e)) => {
                    return Err(Error::new(
                        ErrorKind::Io,
                        format!("cannot connect to the handoff socket {}", path.display()),
                        e,
                    ));
                }
            };
            if let Some(stream) = stream {
                match self.exchange(&stream, &frame, deadline, path) {
                    Exchanged::Done(o) => return Ok(Role::Secondary(o)),
                    // The primary went away before the request was complete, or (abstract
                    // socket) closed it unread: nothing reached its application, so trying again
                    // (the primary once it listens, a new one, or the policy) is safe.
                    Exchanged::Retry(reason) => last = reason,
                }
            }
            let now = Instant::now();
            if now >= deadline {
                let what = match last {
                    Reason::Busy => "its backlog stayed full",
                    Reason::SendFailed => "the request could not be sent in full",
                    _ => "nobody listened on the handoff socket",
                };
                return not(
                    last,
                    format!(
                        "{:?} is held by {} but {what} within {:?} ({})",
                        self.name,
                        who(holder.holder()),
                        self.timeout,
                        path.display()
                    ),
                );
            }
            std::thread::sleep(backoff.min(deadline - now));
            backoff = (backoff * 2).min(Duration::from_millis(50));
        }
    }

    pub(super) fn exchange(
        &self,
        stream: &transport::Stream,
        frame: &[u8],
        deadline: Instant,
        path: &Path,
    ) -> Exchanged {
        if let Err(detail) = transport::check_listener(stream, path) {
            return Exchanged::Done(Outcome::NotDelivered {
                reason: Reason::ForeignListener,
                detail,
            });
        }
        match transport::exchange(stream, frame, deadline) {
            Exchange::Replied(wire::Reply::Answer { code, data }) => {
                Exchanged::Done(Outcome::Delivered(Answer { code, data }))
            }
            Exchange::Replied(wire::Reply::Refusal { reason, message }) => {
                Exchanged::Done(Outcome::NotDelivered {
                    reason: Reason::Refused(reason),
                    detail: format!("the primary refused the activation: {message}"),
                })
            }
            Exchange::NotSent(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) && Instant::now() < deadline =>
            {
                Exchanged::Retry(Reason::SendFailed)
            }
            Exchange::NotSent(e) => Exchanged::Done(Outcome::NotDelivered {
                reason: Reason::SendFailed,
                detail: format!(
                    "the request could not be sent in full on {}: {e}",
                    path.display()
                ),
            }),
            // The abstract socket's listener is the lock's own: the lock's holder accepts
            // every connection (its draining thread), and until the primary has registered its
            // handler (a primary built with `listen_later`, or a holder that does not take
            // activations) the thread closes a connection whose peer sent bytes, unread. That
            // is "nobody listens yet", and the request may be sent again; but a primary that
            // read the request and then died (or dropped it) must give `Unknown`, never a
            // second delivery. The kernel tells the two apart: closing a Unix stream socket
            // whose receive queue still holds bytes (or one never accepted) sets ECONNRESET on
            // its peer (unix_release_sock), while closing one whose bytes were all read gives
            // the peer a plain end of stream. A primary reads a request to its last byte before
            // the application can see it, and we send nothing after it, so a reset before any
            // byte of a reply (`Unread`) proves the application never saw this request: retry
            // until the deadline. An end of stream, or a timeout, stays `Unknown`. The socket
            // file keeps the old, more cautious answer (its listener is not shared, and other
            // systems' kernels were not checked for this).
            Exchange::Unread(_) if transport::abstract_name(path).is_some() => {
                Exchanged::Retry(Reason::NoListener)
            }
            Exchange::NoReply(e) | Exchange::Unread(e) => Exchanged::Done(Outcome::Unknown {
                detail: format!(
                    "the request was sent on {} but no answer came within {:?}: {e}",
                    path.display(),
                    self.timeout
                ),
            }),
        }
    }
}

/// Hands `message` to the primary listening on the handoff socket `path`, without looking at
/// any lock: for a job that learned the path from its environment (`onlyone run --handoff`
/// exports `ONLYONE_HANDOFF_SOCKET`), or a launcher that knows it. A `path` starting with `@`
/// names the abstract socket of an abstract-socket lock (Linux, Android), as
/// [`Handoff::socket_path`] gives it; on Windows `path` is the named pipe it gives. Tries until
/// `timeout`, like a secondary; a missing or refused socket (or pipe) is [`Reason::NoListener`].
pub fn send(path: &Path, message: &Message, timeout: Duration) -> Result<Outcome, Error> {
    let handoff = Handoff::new(path.display().to_string()).timeout(timeout);
    let deadline = Instant::now() + timeout;
    let expires = std::time::SystemTime::now() + timeout;
    let frame = encode_message(&handoff.name, message, expires, MAX_MESSAGE)?;
    let mut backoff = Duration::from_millis(1);
    loop {
        let last = match transport::connect_nonblocking(path) {
            Ok(stream) => match handoff.exchange(&stream, &frame, deadline, path) {
                Exchanged::Done(o) => return Ok(o),
                Exchanged::Retry(reason) => reason,
            },
            Err(ConnectError::Busy) => Reason::Busy,
            Err(ConnectError::NotListening) => Reason::NoListener,
            Err(ConnectError::Other(e)) => {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("cannot connect to the handoff socket {}", path.display()),
                    e,
                ));
            }
        };
        let now = Instant::now();
        if now >= deadline {
            return Ok(Outcome::NotDelivered {
                reason: last,
                detail: format!(
                    "nobody took the activation on {} within {timeout:?}",
                    path.display()
                ),
            });
        }
        std::thread::sleep(backoff.min(deadline - now));
        backoff = (backoff * 2).min(Duration::from_millis(50));
    }
}

pub(super) fn encode_message(
    name: &str,
    message: &Message,
    expires: std::time::SystemTime,
    limit: usize,
) -> Result<Vec<u8>, Error> {
    let request = wire::Request {
        pid: std::process::id(),
        expires_ms: expires
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        cwd: message.cwd.clone(),
        args: message.args.clone(),
        env: message.env.clone(),
    };
    wire::encode_request(&request, limit).map_err(|m| {
        Error::msg(
            ErrorKind::InvalidInput,
            format!("cannot hand over to {name:?}"),
            m,
        )
    })
}

pub(super) enum Exchanged {
    Done(Outcome),
    /// Nothing reached the application: try again until the deadline, then report this reason.
    Retry(Reason),
}
