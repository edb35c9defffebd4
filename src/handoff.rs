//! Second-instance handoff: the first launch of an application becomes the *primary*, holding its
//! lock and listening; a later launch becomes a *secondary* that hands its arguments, working
//! directory and chosen environment entries to the primary and gets its answer back.
//!
//! ```no_run
//! use onlyone::handoff::{Handoff, Message, Outcome, Start};
//!
//! match Handoff::new("org.example.Editor").start(&Message::from_current_process())? {
//!     Start::Primary(primary) => {
//!         // Open the files of our own command line, then serve the later launches.
//!         while let Some(activation) = primary.recv() {
//!             println!("open {:?} in {:?}", activation.args(), activation.cwd());
//!             activation.answer(0, b"opened")?;
//!         }
//!     }
//!     Start::Secondary(Outcome::Delivered(answer)) => std::process::exit(answer.code),
//!     Start::Secondary(other) => {
//!         eprintln!("the running instance did not take it: {other}");
//!         std::process::exit(69)
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **Promises.**
//! - *Ownership before readiness.* The lock decides who is primary; the listener comes after (at
//!   once, or when [`Primary::listen`] is called with [`Handoff::listen_later`]). A secondary
//!   that finds the lock held but nobody listening retries with a backoff of 1 ms doubling to
//!   50 ms until its deadline ([`Handoff::timeout`], 5 s by default).
//! - *At most once, and the secondary knows which of three outcomes it got*: [`Outcome::Delivered`]
//!   (the application took the activation; its answer), [`Outcome::NotDelivered`] (nothing reached
//!   the application: no listener, request not sent in full, refused), [`Outcome::Unknown`] (sent
//!   in full, no answer before the deadline). A request carries its deadline; a primary that reads
//!   it later (it was stopped or busy) refuses it instead of delivering it, so a late delivery
//!   happens only to requests whose sender reported `Unknown`, never twice.
//! - *Never silently a second primary.* A secondary whose primary is gone (the lock became free)
//!   follows [`IfGone`]: [`IfGone::Fail`] (the default) reports `NotDelivered`;
//!   [`IfGone::TakeOver`] takes the lock and returns [`Start::Primary`], but only when nothing
//!   can have reached the gone primary's application (never after `Unknown`).
//! - *Only the same user.* The primary reads the sender's uid from the kernel (`SO_PEERCRED`,
//!   `getpeereid(3)`) before reading its request and refuses another uid; the secondary checks
//!   that the listener runs as its own uid before sending anything. On Windows the same with the
//!   user's SID, read from the token of the process at the other end of the pipe
//!   (`GetNamedPipeClientProcessId`, `GetNamedPipeServerProcessId`, `OpenProcessToken`), behind
//!   a pipe DACL that lets only the user and SYSTEM open it.
//!
//! **Transport.** One Unix stream connection per activation; the format is in
//! [`wire`](self#wire-format) terms: versioned, length-prefixed, byte strings, at most
//! [`MAX_MESSAGE`] bytes. *With the abstract socket backend* (the default on Linux and Android)
//! the lock's own listener carries the messages, and there is no socket file: secondaries connect
//! to the lock's abstract name ([`Handoff::socket_path`] gives it as `@` and the name), which the
//! holder's draining thread accepts (see "Draining" in `onlyone::backend::abstract_socket`).
//! Connections that send nothing (contenders reading the holder's identity, waiters) stay with
//! that thread; one whose peer sends a request goes, unread, to a handler the primary registers
//! when it listens, which passes it to the primary's loop without blocking that thread. Until the
//! primary listens (see [`Handoff::listen_later`]), or with a holder that does not take
//! activations, the thread closes such a connection with the request unread: the secondary sees
//! the connection *reset* (not just closed) before any reply, knows nothing was read, and keeps
//! trying until its deadline; a connection closed after the request was read is `Unknown`, never
//! retried. A holder whose listener never accepts (onlyone before 0.2, or a lock taken in a
//! `fork`ed child, which has no draining thread) leaves the request queued: `Unknown` at the
//! deadline. Abstract names have no permissions: the uid checks below are what keeps other users
//! out. *With flock and the PID file* (and under Flatpak) a socket beside the lock file,
//! `<lock dir>/<name>.handoff`, mode 0600 in the user's mode-0700 lock directory.
//!
//! **Windows.** A named pipe restricted to the user, whatever the backend:
//! `\\.\pipe\onlyone-handoff-<user SID>-<hash>`, the hash being the FNV-1a 128-bit hash (32 hex
//! digits) of the UTF-8 of the path the Unix socket would have, `<lock dir>\<name>.handoff`
//! ([`Handoff::socket_path`] gives it; [`send`] takes it). The primary creates it with
//! `CreateNamedPipeW` (`FILE_FLAG_FIRST_PIPE_INSTANCE`, `PIPE_REJECT_REMOTE_CLIENTS`, a protected
//! DACL for the user and SYSTEM); a name that exists already (a squatter) is an error naming the
//! pipe, never used. One thread accepts and one thread per connection reads its request (until
//! the read timeout); activations reach `recv` through a channel. A secondary retries while the
//! pipe is absent (`ERROR_FILE_NOT_FOUND`) or busy (`ERROR_PIPE_BUSY`, a short `WaitNamedPipeW`),
//! until its deadline; every read and write is bounded by the deadline. A pipe cannot say whether
//! a request sent in full was read: a pipe closed before the reply is `Unknown`, only a failed
//! write is "not sent". Strings travel as UTF-8 there: an argument that is not valid Unicode (an
//! unpaired surrogate) cannot be handed over (an error before connecting). No async flavour (the
//! `tokio` feature is Unix only). Run under Wine 8 (`tests/handoff_windows.rs`): 50 concurrent
//! secondaries, odd strings and 1 MiB, a squatted name, a late listener, a primary that died or
//! was killed holding a request, [`Handoff::listen_while_holding`], [`send`] to the pipe. Not shown under Wine, which
//! runs every process as one user and does not enforce pipe DACLs: the refusal of another user
//! and the DACL itself, which rest on Microsoft's documentation; nor `FILE_FLAG_FIRST_PIPE_INSTANCE`
//! (Wine ignores it: a client probe before creating the pipe catches the squatter there).
//!
//! **Sandboxes.** Under Flatpak (`FLATPAK_ID` set) every instance has its own PID namespace and
//! maybe its own network namespace, so the lock and the socket live in
//! `$XDG_RUNTIME_DIR/app/$FLATPAK_ID/` with the flock backend, whatever was chosen, and a sender
//! or holder in another instance has no pid here ("in another sandbox"). Under Snap
//! (`SNAP_INSTANCE_NAME` set) abstract names start with `snap.<instance>.` (see
//! [`LockName::abstract_socket_name`](crate::LockName::abstract_socket_name)); the snap needs the
//! `network-bind` plug for abstract sockets. Both were tested by simulation only.
//!
//! **Parts:** `handoff/primary.rs` (listener, [`Primary`], [`Listener`]),
//! `handoff/secondary.rs` (connect, send, the three outcomes, the gone-primary policy),
//! `handoff/unix.rs` (the socket: bind, the poll(2) loop, peer credentials),
//! `handoff/windows.rs` (the named pipe: server, client, the peer's SID), `handoff/wire.rs`
//! (the format), `handoff/asynchronous.rs` (tokio).
//!
//! # Wire format
//! Frame: `ONLYONE-HANDOFF` (15 bytes), version `1`, kind (1 request, 2 answer, 3 refusal),
//! body length (`u32` little-endian), body. Request body: sender pid `u32`, expiry `u64` (ms
//! since the Unix epoch), cwd, argument count and arguments, environment entry count and
//! key/value pairs, each string as a `u32` length and its bytes (UTF-8 on Windows). Answer body: exit code `i32` and
//! the answer's bytes. Refusal body: a reason byte ([`Refusal`]) and a UTF-8 explanation.

#[cfg(feature = "tokio")]
mod asynchronous;
mod primary;
mod secondary;
#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;
mod wire;

// The transport of this system: the Unix socket, or the Windows named pipe. Both give the same
// items (`Stream`, `Serve`, `Sink`, `Server`, `Wake`, `listen_on`, `serve_thread`, `hand_to`,
// `send_reply`, `connect_nonblocking`, `check_listener`, `exchange`, `encode`, `abstract_name`);
// what the two sides decide from them (outcomes, retries, deadlines) is in `primary.rs` and
// `secondary.rs`, once.
#[cfg(unix)]
use unix as transport;
#[cfg(windows)]
use windows as transport;

#[cfg(feature = "tokio")]
pub use asynchronous::{AsyncPrimary, AsyncStart};
use primary::PrimaryCore;
pub use primary::{Listener, Primary};
pub use secondary::send;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::backend::{Builder, DEFAULT_BACKEND};
use crate::error::{Error, ErrorKind};
use crate::lock::{Acquire, BackendKind, Guard, Holder, Lock};
#[cfg(unix)]
use crate::name::fnv1a_128;
use crate::name::{LockDir, LockName, Scope};

pub use wire::{MAGIC, Refusal, VERSION};
/// The largest request or answer body, 16 MiB.
pub const MAX_MESSAGE: usize = wire::MAX_BODY;

/// Environment variables every [`Message::from_current_process`] carries when they are set: the
/// tokens a Wayland (`XDG_ACTIVATION_TOKEN`) or X11 (`DESKTOP_STARTUP_ID`) primary needs to raise
/// its window on behalf of the launch.
pub const ACTIVATION_ENV: [&str; 2] = ["XDG_ACTIVATION_TOKEN", "DESKTOP_STARTUP_ID"];

/// What a secondary does when the primary is gone (the lock became free).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IfGone {
    /// Report [`Outcome::NotDelivered`] with [`Reason::PrimaryGone`]; the caller decides. The default.
    #[default]
    Fail,
    /// Take the lock and become the primary, when nothing can have reached the gone primary's
    /// application.
    TakeOver,
}

/// The sandbox this process runs in, as the environment says.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Sandbox {
    /// No sandbox detected.
    None,
    /// Flatpak: `FLATPAK_ID` is set.
    Flatpak {
        /// The application id (`FLATPAK_ID`).
        app_id: String,
    },
    /// Snap: `SNAP_INSTANCE_NAME` is set.
    Snap {
        /// The snap instance name (`SNAP_INSTANCE_NAME`).
        instance: String,
    },
}

impl Sandbox {
    /// Reads `FLATPAK_ID` and `SNAP_INSTANCE_NAME` (empty values count as unset).
    pub fn detect() -> Sandbox {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(app_id) = var("FLATPAK_ID") {
            Sandbox::Flatpak { app_id }
        } else if let Some(instance) = var("SNAP_INSTANCE_NAME") {
            Sandbox::Snap { instance }
        } else {
            Sandbox::None
        }
    }
}

/// What a launch hands over: arguments (byte-exact, in order), working directory, environment
/// entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// The arguments, without the program name.
    pub args: Vec<OsString>,
    /// The working directory of the launch (relative paths in `args` are relative to it).
    pub cwd: PathBuf,
    /// Chosen environment entries.
    pub env: Vec<(OsString, OsString)>,
}

impl Message {
    /// This process's arguments (without `argv[0]`), working directory and the
    /// [`ACTIVATION_ENV`] variables that are set.
    pub fn from_current_process() -> Message {
        Message::with_args(std::env::args_os().skip(1))
    }

    /// The given arguments, this process's working directory and the [`ACTIVATION_ENV`]
    /// variables that are set.
    pub fn with_args(args: impl IntoIterator<Item = impl Into<OsString>>) -> Message {
        let mut m = Message {
            args: args.into_iter().map(Into::into).collect(),
            cwd: std::env::current_dir().unwrap_or_default(),
            env: Vec::new(),
        };
        for key in ACTIVATION_ENV {
            m.add_env(key);
        }
        m
    }

    /// Adds the environment variable `key` when it is set.
    pub fn add_env(&mut self, key: impl AsRef<OsStr>) -> &mut Message {
        let key = key.as_ref();
        if let Some(v) = std::env::var_os(key) {
            if !self.env.iter().any(|(k, _)| k == key) {
                self.env.push((key.to_owned(), v));
            }
        }
        self
    }
}

/// The primary's answer to an activation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// An exit status for the secondary (`onlyone run --handoff` exits with it).
    pub code: i32,
    /// Bytes for the secondary (a window id, a message to print, ...).
    pub data: Vec<u8>,
}

/// Why an activation did not reach the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The lock is held but nobody listened before the deadline (a primary still starting, a
    /// hung one, or a holder that does not take activations).
    NoListener,
    /// The primary's backlog stayed full until the deadline.
    Busy,
    /// The primary is gone (the lock is free) and the policy is [`IfGone::Fail`].
    PrimaryGone,
    /// The request could not be sent in full before the deadline or the connection broke.
    SendFailed,
    /// The listener runs as another user: nothing was sent to it.
    ForeignListener,
    /// The primary refused the request.
    Refused(Refusal),
}

/// The outcome of a handoff, as the secondary knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The primary's application took the activation and answered.
    Delivered(Answer),
    /// Nothing reached the primary's application.
    NotDelivered {
        /// Why.
        reason: Reason,
        /// What happened, for humans (names the socket, the holder).
        detail: String,
    },
    /// The request was sent in full but no answer came before the deadline (the primary is
    /// hung, stopped, or died while handling it): it may or may not have been delivered.
    Unknown {
        /// What happened, for humans.
        detail: String,
    },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Delivered(a) => {
                write!(f, "delivered, answer {} ({} bytes)", a.code, a.data.len())
            }
            Outcome::NotDelivered { reason, detail } => {
                write!(f, "not delivered ({reason:?}): {detail}")
            }
            Outcome::Unknown { detail } => write!(f, "unknown whether delivered: {detail}"),
        }
    }
}

/// One launch handed over to the primary. Answer it with [`Activation::answer`]; dropping it
/// unanswered answers exit code 0 with no bytes (the application did receive it).
pub struct Activation {
    // Boxed: an activation travels back in the `Err` of a `Sink` (and through channels).
    request: Box<wire::Request>,
    pid: Option<u32>,
    uid: u32,
    stream: Option<transport::Stream>,
    /// Set when the application received it (through a `recv`): drop then answers 0; before, a
    /// drop (the primary shutting down) refuses it, as nothing reached the application.
    received: bool,
}

impl fmt::Debug for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Activation")
            .field("args", &self.request.args)
            .field("cwd", &self.request.cwd)
            .field("env", &self.request.env)
            .field("pid", &self.pid)
            .field("uid", &self.uid)
            .finish()
    }
}

impl Activation {
    pub(crate) fn new(
        request: wire::Request,
        pid: Option<u32>,
        uid: u32,
        s: transport::Stream,
    ) -> Self {
        Activation {
            request: Box::new(request),
            pid,
            uid,
            stream: Some(s),
            received: false,
        }
    }

    pub(crate) fn take_stream(&mut self) -> Option<transport::Stream> {
        self.stream.take()
    }

    fn received(mut self) -> Activation {
        self.received = true;
        self
    }

    /// The arguments, byte-exact and in order.
    pub fn args(&self) -> &[OsString] {
        &self.request.args
    }

    /// The sender's working directory.
    pub fn cwd(&self) -> &Path {
        &self.request.cwd
    }

    /// The environment entries the sender chose to pass.
    pub fn env(&self) -> &[(OsString, OsString)] {
        &self.request.env
    }

    /// The value of the passed environment entry `key`.
    pub fn env_var(&self, key: impl AsRef<OsStr>) -> Option<&OsStr> {
        let key = key.as_ref();
        self.request
            .env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_os_str())
    }

    /// The token to raise a window with: `XDG_ACTIVATION_TOKEN`, else `DESKTOP_STARTUP_ID`.
    pub fn activation_token(&self) -> Option<&OsStr> {
        self.env_var("XDG_ACTIVATION_TOKEN")
            .or_else(|| self.env_var("DESKTOP_STARTUP_ID"))
    }

    /// The sender's pid as the kernel reports it here; `None` when the sender runs in another
    /// PID namespace (another Flatpak instance, a container) or the system does not say.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The pid the sender gave for itself, in its own PID namespace (informational only).
    pub fn claimed_pid(&self) -> u32 {
        self.request.pid
    }

    /// The sender's uid, from the kernel (always the primary's own: other uids are refused).
    /// Unix only: on Windows the primary compares the sender's SID with its own instead.
    #[cfg(unix)]
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Declines the activation: the sender gets [`Outcome::NotDelivered`] with
    /// [`Refusal::Declined`] and `why`. For a program that relays activations and could not
    /// pass this one on (`onlyone run --handoff` when its job closed its pipe).
    pub fn decline(mut self, why: &str) -> io::Result<()> {
        let stream = self.stream.take().expect("an activation is answered once");
        transport::send_reply(
            &stream,
            &wire::Reply::Refusal {
                reason: Refusal::Declined,
                message: why.to_owned(),
            },
        )
    }

    /// Answers the sender with an exit code and bytes. Fails when `data` is longer than
    /// [`MAX_MESSAGE`] minus 4 bytes, or when the sender went away (its deadline passed: it
    /// reported [`Outcome::Unknown`]).
    pub fn answer(mut self, code: i32, data: &[u8]) -> io::Result<()> {
        let stream = self.stream.take().expect("an activation is answered once");
        if data.len() > MAX_MESSAGE - 4 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a handoff answer of {} bytes exceeds the limit of {} bytes",
                    data.len(),
                    MAX_MESSAGE - 4
                ),
            ));
        }
        transport::send_reply(
            &stream,
            &wire::Reply::Answer {
                code,
                data: data.to_vec(),
            },
        )
    }
}

impl Drop for Activation {
    fn drop(&mut self) {
        if let Some(s) = self.stream.take() {
            let reply = if self.received {
                wire::Reply::Answer {
                    code: 0,
                    data: Vec::new(),
                }
            } else {
                wire::Reply::Refusal {
                    reason: Refusal::ShuttingDown,
                    message: "the primary stopped before taking the activation".into(),
                }
            };
            let _ = transport::send_reply(&s, &reply);
        }
    }
}

/// How an application starts: as the primary, or as a secondary with the outcome of its handoff.
#[derive(Debug)]
pub enum Start {
    /// This process holds the lock and receives activations.
    Primary(Primary),
    /// Another process holds the lock; what became of the handoff.
    Secondary(Outcome),
}

/// Configures second-instance handoff for an application identity.
#[derive(Clone, Debug)]
pub struct Handoff {
    name: String,
    backend: Option<BackendKind>,
    scope: Scope,
    lock_dir: Option<PathBuf>,
    timeout: Duration,
    if_gone: IfGone,
    max_message: usize,
    read_timeout: Duration,
    listen_later: bool,
}

impl Handoff {
    /// Handoff for the application `name` (a lock name: a reverse-DNS id is a good choice), with
    /// the default backend, [`Scope::User`], a 5 s timeout and [`IfGone::Fail`].
    pub fn new(name: impl Into<String>) -> Handoff {
        Handoff {
            name: name.into(),
            backend: None,
            scope: Scope::User,
            lock_dir: None,
            timeout: Duration::from_secs(5),
            if_gone: IfGone::Fail,
            max_message: MAX_MESSAGE,
            read_timeout: Duration::from_secs(5),
            listen_later: false,
        }
    }

    /// The lock backend (default: [`DEFAULT_BACKEND`]; under Flatpak always flock).
    pub fn backend(mut self, backend: BackendKind) -> Handoff {
        self.backend = Some(backend);
        self
    }

    /// Who shares the lock (default [`Scope::User`]). Handoff itself only ever accepts
    /// activations from the primary's own uid.
    pub fn scope(mut self, scope: Scope) -> Handoff {
        self.scope = scope;
        self
    }

    /// The directory of the lock file and of the handoff socket (it must exist).
    pub fn lock_dir(mut self, dir: impl Into<PathBuf>) -> Handoff {
        self.lock_dir = Some(dir.into());
        self
    }

    /// How long a secondary tries in all: to connect, send, and get the answer (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Handoff {
        self.timeout = timeout;
        self
    }

    /// What a secondary does when the primary is gone (default [`IfGone::Fail`]).
    pub fn if_gone(mut self, policy: IfGone) -> Handoff {
        self.if_gone = policy;
        self
    }

    /// The largest request body the primary accepts and a secondary sends (at most and by
    /// default [`MAX_MESSAGE`]).
    pub fn max_message(mut self, bytes: usize) -> Handoff {
        self.max_message = bytes.min(MAX_MESSAGE);
        self
    }

    /// How long the primary waits for a connected sender's request (default 5 s).
    pub fn read_timeout(mut self, timeout: Duration) -> Handoff {
        self.read_timeout = timeout;
        self
    }

    /// The primary does not listen until [`Primary::listen`] is called: secondaries wait (up to
    /// their timeout) for it.
    pub fn listen_later(mut self, later: bool) -> Handoff {
        self.listen_later = later;
        self
    }

    /// Where the lock and socket live and which backend takes the lock, sandbox considered.
    fn placement(&self) -> Result<(LockDir, BackendKind, Sandbox), Error> {
        let sandbox = Sandbox::detect();
        if let Sandbox::Flatpak { app_id } = &sandbox {
            let dir = match &self.lock_dir {
                Some(d) => d.clone(),
                None => {
                    let runtime = std::env::var_os("XDG_RUNTIME_DIR").ok_or_else(|| {
                        Error::msg(
                            ErrorKind::LockDir,
                            format!("handoff for {:?} in Flatpak {app_id}", self.name),
                            "XDG_RUNTIME_DIR is not set; Flatpak sets it to the user's runtime directory",
                        )
                    })?;
                    Path::new(&runtime).join("app").join(app_id)
                }
            };
            return Ok((
                LockDir::new(self.scope, Some(&dir)),
                BackendKind::Flock,
                sandbox,
            ));
        }
        Ok((
            LockDir::new(self.scope, self.lock_dir.as_deref()),
            self.backend.unwrap_or(DEFAULT_BACKEND),
            sandbox,
        ))
    }

    /// Where secondaries reach this application's primary: the handoff socket beside its lock
    /// file (flock, PID file, and under Flatpak), or, with the abstract socket backend, `@` and
    /// the lock's own abstract name (the [`Guard::resource`]), whose listener carries the
    /// messages; on Windows the named pipe (`\\.\pipe\onlyone-handoff-<SID>-<hash>`, see
    /// the module docs). [`send`] takes any of them.
    pub fn socket_path(&self) -> Result<PathBuf, Error> {
        let name = LockName::new(self.name.clone())?;
        let (dir, backend, _) = self.placement()?;
        self.endpoint(&dir.path, &name, backend)
    }

    /// [`Handoff::socket_path`] for a lock in `dir` taken with `backend`.
    fn endpoint(
        &self,
        dir: &Path,
        name: &LockName,
        backend: BackendKind,
    ) -> Result<PathBuf, Error> {
        #[cfg(all(
            feature = "abstract-socket",
            any(target_os = "linux", target_os = "android")
        ))]
        if backend == BackendKind::AbstractSocket {
            return Ok(PathBuf::from(format!(
                "@{}",
                name.abstract_socket_name(self.scope)
            )));
        }
        let _ = backend; // Every other backend has a lock file to put the socket beside.
        socket_path(dir, name)
    }

    /// Takes the lock and becomes the primary, or hands `message` to the primary and returns the
    /// outcome. `Err` only when the question could not be asked (bad name, unusable directory,
    /// a message over the size limit, a failing system call).
    pub fn start(&self, message: &Message) -> Result<Start, Error> {
        Ok(match self.start_core(message, None)? {
            Role::Primary(core) => Start::Primary(Primary { core }),
            Role::Secondary(o) => Start::Secondary(o),
        })
    }

    /// `sink`: serve on a thread of its own and hand activations there; `None`: serve on the
    /// thread that calls `recv`.
    fn start_core(&self, message: &Message, sink: Option<Sink>) -> Result<Role, Error> {
        let name = LockName::new(self.name.clone())?;
        let (dir, backend, sandbox) = self.placement()?;
        prepare_dir(&dir, self.scope)?;
        let path = self.endpoint(&dir.path, &name, backend)?;
        // The lock is the same one `Builder` makes for this name: a default directory stays a
        // default one (with its compatibility lock), so that a plain `onlyone run` of the same
        // name and this handoff exclude each other.
        let mut builder = Builder::new(self.name.clone())
            .backend(backend)
            .scope(self.scope);
        if self.lock_dir.is_some() || matches!(sandbox, Sandbox::Flatpak { .. }) {
            builder = builder.lock_dir(&dir.path);
        }
        let lock = builder.build()?;
        let serve = (
            transport::Serve::new(self.max_message, self.read_timeout),
            sink,
        );
        match lock.try_acquire()? {
            Acquire::Acquired(guard) => self.primary(guard, path, serve).map(Role::Primary),
            Acquire::Held(holder) => {
                self.secondary(&*lock, holder, &path, message, serve, &sandbox)
            }
        }
    }

    fn primary(
        &self,
        guard: Guard,
        path: PathBuf,
        serve: (transport::Serve, Option<Sink>),
    ) -> Result<PrimaryCore, Error> {
        let mut core = PrimaryCore {
            listening: None,
            pending: Some(serve),
            path,
            guard: Some(guard),
        };
        if !self.listen_later {
            core.listen()?;
        }
        Ok(core)
    }
}

enum Role {
    Primary(PrimaryCore),
    Secondary(Outcome),
}

/// Makes sure the directory of the lock and of the socket file exists and is safe to use (Unix).
/// The Windows pipe lives in no directory, and the Windows backends make their own.
fn prepare_dir(dir: &LockDir, scope: Scope) -> Result<(), Error> {
    #[cfg(unix)]
    return crate::backend::prepare_dir(dir, scope);
    #[cfg(windows)]
    {
        let _ = (dir, scope);
        Ok(())
    }
}

/// `<dir>/<name>.handoff`, or a hashed name when the path would not fit a `sockaddr_un`.
#[cfg(unix)]
fn socket_path(dir: &Path, name: &LockName) -> Result<PathBuf, Error> {
    use std::os::unix::ffi::OsStrExt;
    const SUN_PATH_MAX: usize = 107;
    let plain = dir.join(name.file_name("handoff"));
    if plain.as_os_str().as_bytes().len() <= SUN_PATH_MAX {
        return Ok(plain);
    }
    let hashed = dir.join(format!(
        "#~{:032x}.handoff",
        fnv1a_128(name.as_str().as_bytes())
    ));
    if hashed.as_os_str().as_bytes().len() <= SUN_PATH_MAX {
        return Ok(hashed);
    }
    Err(Error::msg(
        ErrorKind::LockDir,
        format!("handoff socket in {}", dir.display()),
        format!(
            "the directory path is too long for a Unix socket ({} bytes, at most {} with the file name)",
            dir.as_os_str().len(),
            SUN_PATH_MAX
        ),
    ))
}

/// The named pipe of the lock named `name` in `dir` (see `windows::pipe_name`).
#[cfg(windows)]
fn socket_path(dir: &Path, name: &LockName) -> Result<PathBuf, Error> {
    Ok(windows::pipe_name(
        &crate::os::current_user().text,
        &dir.join(name.file_name("handoff")),
    ))
}

/// Where activations go: returns the activation back when nobody takes them any more.
pub(crate) type Sink = Box<dyn Fn(Activation) -> Result<(), Activation> + Send + Sync>;

/// Gives `activation` to `sink`; refuses it if nobody takes activations any more.
pub(crate) fn hand_to(sink: &Sink, activation: Activation) {
    if let Err(mut back) = sink(activation) {
        if let Some(s) = back.take_stream() {
            refuse(
                &s,
                Refusal::ShuttingDown,
                "the primary takes no more activations".into(),
            );
        }
    }
}

/// Sends a refusal; failures are the sender's problem (it went away).
fn refuse(stream: &transport::Stream, reason: Refusal, message: String) {
    let _ = transport::send_reply(stream, &wire::Reply::Refusal { reason, message });
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Refuses an expired request, else makes it an activation.
fn deliver(
    stream: transport::Stream,
    request: wire::Request,
    pid: Option<u32>,
    uid: u32,
) -> Option<Activation> {
    if request.expires_ms != 0 && now_ms() > request.expires_ms {
        refuse(
            &stream,
            Refusal::Expired,
            "the request arrived after its sender's deadline".into(),
        );
        return None;
    }
    Some(Activation::new(request, pid, uid, stream))
}

/// Why a connect did not give a connection.
pub(crate) enum ConnectError {
    /// Nobody listens (no socket file or pipe, or refused): not ready yet, or gone.
    NotListening,
    /// The listener's backlog is full, or every pipe instance is taken: busy.
    Busy,
    /// Anything else.
    Other(io::Error),
}

/// What became of a request on a connected stream.
pub(crate) enum Exchange {
    /// The primary replied.
    Replied(wire::Reply),
    /// The request was not sent in full: nothing can have reached the application.
    NotSent(io::Error),
    /// The request was sent in full and no reply came before the deadline, or the connection
    /// broke first.
    NoReply(io::Error),
    /// The request was sent in full, and the connection was reset (`ECONNRESET`) before any
    /// byte of a reply: on Linux the other end was closed while our bytes were still unread in
    /// its receive queue, or was never accepted (see `secondary` for what that proves). Never
    /// on Windows, whose pipes cannot tell it.
    #[cfg_attr(windows, allow(dead_code))]
    Unread(io::Error),
}
