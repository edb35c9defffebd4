//! The handoff transport on Windows: a named pipe restricted to the user, that the primary
//! listens on, and the secondary's connect, send and wait for the reply.
//!
//! **Name.** `\\.\pipe\onlyone-handoff-<SID>-<hash>`: the user's SID as text (`S-1-5-21-...`),
//! and the FNV-1a 128-bit hash (32 hex digits) of the path a Unix socket would have,
//! `<lock dir>\<name>.handoff`, as UTF-8 ([`pipe_name`]; pinned by a test vector below). Two
//! launches with the same name, scope and lock directory meet on the same pipe; another user
//! gets another name.
//!
//! **Server.** The first instance is made with `CreateNamedPipeW` and
//! `FILE_FLAG_FIRST_PIPE_INSTANCE`: if a process created the name first (a squatter), listening
//! fails with an error naming the pipe, and the name is never used. Every instance has
//! `PIPE_REJECT_REMOTE_CLIENTS` and a protected DACL (SDDL `D:P(A;;GA;;;<user SID>)(A;;GA;;;SY)`)
//! that lets only the user and SYSTEM open it. A thread accepts (`ConnectNamedPipe`, overlapped,
//! with a stop event), making the next instance before handing the connected one to a reader
//! thread, so the name exists for as long as the primary listens. The reader reads the client's
//! pid (`GetNamedPipeClientProcessId`), refuses a client whose process token names another user
//! (`OpenProcess`, `OpenProcessToken`, `GetTokenInformation`), then reads one request until the
//! read timeout and passes the activation to the server's channel.
//!
//! **Client.** `CreateFileW` with `SECURITY_IDENTIFICATION` (the server may identify, never
//! impersonate, us); `ERROR_FILE_NOT_FOUND` is "nobody listens", `ERROR_PIPE_BUSY` is "busy"
//! (after a short `WaitNamedPipeW`); both are retried by the secondary until its deadline. Before
//! sending, the client checks that the server process (`GetNamedPipeServerProcessId`) runs as
//! its own user. Every read and write is overlapped and bounded by the deadline (`CancelIoEx`
//! when it passes), so a hung or killed primary never hangs a secondary.
//!
//! A pipe cannot tell "closed with our bytes unread" from "read, then closed" (the Unix
//! abstract socket's reset): a request sent in full and followed by a closed pipe is always
//! `Unknown`; a write that failed is "not sent", as on Unix.
//!
//! Every Win32 call goes through `windows-sys`; each `unsafe` block says why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    ERROR_BROKEN_PIPE, ERROR_FILE_NOT_FOUND, ERROR_IO_PENDING, ERROR_NO_DATA, ERROR_PATH_NOT_FOUND,
    ERROR_PIPE_BUSY, ERROR_PIPE_CONNECTED, ERROR_PIPE_NOT_CONNECTED, GENERIC_READ, GENERIC_WRITE,
    GetLastError, HANDLE, INVALID_HANDLE_VALUE, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED, OPEN_EXISTING,
    PIPE_ACCESS_DUPLEX, ReadFile, SECURITY_IDENTIFICATION, SECURITY_SQOS_PRESENT, WriteFile,
};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, GetNamedPipeClientProcessId, GetNamedPipeServerProcessId,
    PIPE_READMODE_BYTE, PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE, PIPE_UNLIMITED_INSTANCES,
    PIPE_WAIT, WaitNamedPipeW,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, INFINITE, SetEvent, WaitForMultipleObjects,
};

use super::wire::{self, Refusal, Reply, WireError};
use super::{Activation, ConnectError, Exchange, deliver, refuse};
use crate::error::{Error, ErrorKind};
use crate::lock::Guard;
use crate::name::fnv1a_128;
use crate::os::SecurityDescriptor;

/// One connection between a secondary and the primary.
pub(crate) type Stream = Pipe;

/// How long the primary may take to write a reply to a secondary that does not read it.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// `\\.\pipe\onlyone-handoff-<sid>-<FNV-1a 128 of basis as UTF-8, 32 hex digits>`.
pub(crate) fn pipe_name(sid: &str, basis: &Path) -> PathBuf {
    let hash = fnv1a_128(basis.to_string_lossy().as_bytes());
    PathBuf::from(format!(r"\\.\pipe\onlyone-handoff-{sid}-{hash:032x}"))
}

/// `path` never names an abstract socket here (see the Unix transport).
pub(crate) fn abstract_name(_path: &Path) -> Option<&[u8]> {
    None
}

fn wide(path: &Path) -> Vec<u16> {
    path.as_os_str()
        .encode_wide()
        .chain(std::iter::once(0))
        .collect()
}

fn last_error() -> u32 {
    // SAFETY: reads this thread's last-error value; no arguments.
    unsafe { GetLastError() }
}

fn os_error(code: u32) -> io::Error {
    io::Error::from_raw_os_error(code as i32)
}

/// A manual-reset event, not signalled (CreateEventW).
fn event() -> io::Result<OwnedHandle> {
    // SAFETY: no attributes, no name; the handle returned, if any, is ours to close.
    let h = unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) };
    if h.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh, non-NULL handle owned by nobody else.
    Ok(unsafe { OwnedHandle::from_raw_handle(h) })
}

/// Runs one overlapped operation on `handle` (`start` issues it with the OVERLAPPED it is given)
/// and waits for it (GetOverlappedResult), until `deadline` or until the event `stop` is
/// signalled, then cancels it (CancelIoEx) and waits for the cancellation, so that the
/// OVERLAPPED and the buffer outlive the operation. The bytes transferred; `TimedOut` at the
/// deadline, `Interrupted` on `stop`.
fn overlapped(
    handle: HANDLE,
    deadline: Option<Instant>,
    stop: Option<HANDLE>,
    start: impl FnOnce(*mut OVERLAPPED) -> i32,
) -> io::Result<u32> {
    let done = event()?;
    // SAFETY: OVERLAPPED is plain data; all zeroes is its documented initial state.
    let mut ov: OVERLAPPED = unsafe { std::mem::zeroed() };
    ov.hEvent = done.as_raw_handle();
    if start(&mut ov) == 0 {
        match last_error() {
            ERROR_IO_PENDING => {}
            ERROR_PIPE_CONNECTED => return Ok(0),
            e => return Err(os_error(e)),
        }
    }
    let mut handles = vec![done.as_raw_handle()];
    handles.extend(stop);
    let mut n = 0u32;
    let waited = loop {
        let ms = deadline.map_or(INFINITE, |d| {
            let left = d.saturating_duration_since(Instant::now());
            left.as_millis().min(u128::from(INFINITE - 1)) as u32
        });
        // SAFETY: `handles` holds one or two live event handles.
        let r = unsafe { WaitForMultipleObjects(handles.len() as u32, handles.as_ptr(), 0, ms) };
        if r == WAIT_TIMEOUT && deadline.is_some_and(|d| Instant::now() < d) {
            continue;
        }
        break r;
    };
    if waited == WAIT_OBJECT_0 {
        // SAFETY: the operation completed (its event is set); `ov` is the one it was issued with.
        if unsafe { GetOverlappedResult(handle, &ov, &mut n, 0) } == 0 {
            return Err(io::Error::last_os_error());
        }
        return Ok(n);
    }
    // SAFETY: cancels the operation issued with `ov` on `handle`, if still pending.
    unsafe { CancelIoEx(handle, &ov) };
    // SAFETY: waits (bWait = TRUE) for the cancelled or completed operation: after this the
    // system no longer touches `ov` or the buffer.
    if unsafe { GetOverlappedResult(handle, &ov, &mut n, 1) } != 0 {
        return Ok(n); // it completed after all
    }
    Err(match waited {
        WAIT_TIMEOUT => io::Error::new(io::ErrorKind::TimedOut, "the deadline passed"),
        w if w == WAIT_OBJECT_0 + 1 => io::Error::new(io::ErrorKind::Interrupted, "stopped"),
        _ => io::Error::last_os_error(),
    })
}

/// One end of a named pipe instance, opened for overlapped I/O.
pub(crate) struct Pipe {
    handle: OwnedHandle,
}

impl Pipe {
    fn raw(&self) -> HANDLE {
        self.handle.as_raw_handle()
    }

    /// Writes all of `buf` (WriteFile) before `deadline`.
    fn write_all(&self, mut buf: &[u8], deadline: Option<Instant>) -> io::Result<()> {
        while !buf.is_empty() {
            let chunk = buf.len().min(1 << 20) as u32;
            let h = self.raw();
            let ptr = buf.as_ptr();
            // SAFETY: `buf` stays borrowed until `overlapped` returns, which waits for the
            // write to finish or be cancelled.
            let n = overlapped(h, deadline, None, |ov| unsafe {
                WriteFile(h, ptr, chunk, std::ptr::null_mut(), ov)
            })?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n as usize..];
        }
        Ok(())
    }

    /// Reads some bytes (ReadFile) before `deadline`; 0 when the other end closed.
    fn read(&self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        let h = self.raw();
        let len = buf.len().min(1 << 20) as u32;
        let ptr = buf.as_mut_ptr();
        // SAFETY: `buf` stays borrowed until `overlapped` returns, which waits for the read to
        // finish or be cancelled.
        match overlapped(h, deadline, None, |ov| unsafe {
            ReadFile(h, ptr, len, std::ptr::null_mut(), ov)
        }) {
            Ok(n) => Ok(n as usize),
            Err(e)
                if e.raw_os_error().is_some_and(|c| {
                    c == ERROR_BROKEN_PIPE as i32 || c == ERROR_PIPE_NOT_CONNECTED as i32
                }) =>
            {
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }
}

/// A [`Pipe`] read until a deadline, for the wire format's readers.
struct Timed<'a>(&'a Pipe, Option<Instant>);

impl io::Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf, self.1)
    }
}

/// Writes `reply` on `stream`; failures are the sender's problem (it went away).
pub(crate) fn send_reply(stream: &Pipe, reply: &Reply) -> io::Result<()> {
    stream.write_all(
        &wire::encode_reply(reply),
        Some(Instant::now() + REPLY_TIMEOUT),
    )
}

/// What the primary checks requests against.
pub(crate) struct Serve {
    /// Largest request body accepted.
    pub limit: usize,
    /// How long a sender may take to send its request once connected.
    pub read_timeout: Duration,
    /// The user SID senders must have (the primary's own).
    sid: Vec<u8>,
}

impl Serve {
    /// Requests up to `limit` bytes, read within `read_timeout`, from senders of our user.
    pub(crate) fn new(limit: usize, read_timeout: Duration) -> Serve {
        Serve {
            limit,
            read_timeout,
            sid: crate::os::current_user().sid.clone(),
        }
    }
}

/// The pipe's DACL: the user and SYSTEM, full access; nobody else; not inherited from anywhere
/// (protected).
fn user_only() -> io::Result<SecurityDescriptor> {
    SecurityDescriptor::from_sddl(&format!(
        "D:P(A;;GA;;;{})(A;;GA;;;SY)",
        crate::os::current_user().text
    ))
}

/// A new instance of the pipe `name` (CreateNamedPipeW), the first one with
/// `FILE_FLAG_FIRST_PIPE_INSTANCE` (which fails with `ERROR_ACCESS_DENIED` when the name exists).
fn create_instance(name: &[u16], first: bool) -> io::Result<Pipe> {
    let descriptor = user_only()?;
    let attributes = descriptor.attributes();
    let open_mode = PIPE_ACCESS_DUPLEX
        | FILE_FLAG_OVERLAPPED
        | if first {
            FILE_FLAG_FIRST_PIPE_INSTANCE
        } else {
            0
        };
    // SAFETY: `name` is NUL-terminated UTF-16; `attributes` points to a live descriptor.
    let h = unsafe {
        CreateNamedPipeW(
            name.as_ptr(),
            open_mode,
            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
            PIPE_UNLIMITED_INSTANCES,
            64 * 1024,
            64 * 1024,
            0,
            &attributes,
        )
    };
    if h == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh, valid handle owned by nobody else.
    Ok(Pipe {
        handle: unsafe { OwnedHandle::from_raw_handle(h) },
    })
}

/// Where the [`Server`]'s connections come from: the pipe's first instance, and the channel
/// its reader threads send activations on (`None`: a wake-up).
pub(crate) struct Source {
    first: Pipe,
    name: Vec<u16>,
    stop: Arc<OwnedHandle>,
    tx: mpsc::Sender<Option<Activation>>,
    rx: mpsc::Receiver<Option<Activation>>,
}

/// Wakes a serving thread (whose stop flag is set) and stops the accepting thread.
pub(crate) struct Wake {
    stop: Arc<OwnedHandle>,
    tx: mpsc::Sender<Option<Activation>>,
}

impl Wake {
    /// Signals the stop event (SetEvent) and wakes the receiver.
    pub(crate) fn wake(&self) {
        // SAFETY: a live event handle.
        unsafe { SetEvent(self.stop.as_raw_handle()) };
        let _ = self.tx.send(None);
    }
}

/// Creates the pipe's first instance: an error naming the pipe if the name is taken (a squatter,
/// or another primary).
pub(crate) fn listen_on(path: &Path, _guard: Option<&Guard>) -> Result<(Source, Wake), Error> {
    let name = wide(path);
    // Wine ignores FILE_FLAG_FIRST_PIPE_INSTANCE (a second "first" instance is created): a probe
    // as a client first, which finds any instance there, served or busy. Windows would also
    // fail the creation below, which closes the race between the two.
    let exists = match connect_nonblocking(path) {
        Ok(_) | Err(ConnectError::Busy) => true,
        Err(ConnectError::NotListening) => false,
        // A pipe whose DACL keeps us out is there too; other errors are the creation's to say.
        Err(ConnectError::Other(e)) => {
            e.raw_os_error() == Some(windows_sys::Win32::Foundation::ERROR_ACCESS_DENIED as i32)
        }
    };
    if exists {
        return Err(Error::msg(
            ErrorKind::Io,
            format!("cannot listen on the handoff pipe {}", path.display()),
            "the pipe name exists already (a client could open it): another process created \
             it first; it is not used",
        ));
    }
    let first = create_instance(&name, true).map_err(|e| {
        if e.raw_os_error() == Some(windows_sys::Win32::Foundation::ERROR_ACCESS_DENIED as i32) {
            Error::msg(
                ErrorKind::Io,
                format!("cannot listen on the handoff pipe {}", path.display()),
                format!(
                    "the pipe name exists already (CreateNamedPipeW with \
                     FILE_FLAG_FIRST_PIPE_INSTANCE: {e}): another process created it first; \
                     it is not used"
                ),
            )
        } else {
            Error::new(
                ErrorKind::Io,
                format!("cannot listen on the handoff pipe {}", path.display()),
                e,
            )
        }
    })?;
    let stop = Arc::new(
        event()
            .map_err(|e| Error::new(ErrorKind::Io, "cannot create the handoff's stop event", e))?,
    );
    let (tx, rx) = mpsc::channel();
    let wake = Wake {
        stop: Arc::clone(&stop),
        tx: tx.clone(),
    };
    Ok((
        Source {
            first,
            name,
            stop,
            tx,
            rx,
        },
        wake,
    ))
}

/// The primary's pipe: a thread accepts, one thread per connection reads its request, and the
/// activations arrive on a channel that [`Server::next`] reads.
pub(crate) struct Server {
    rx: mpsc::Receiver<Option<Activation>>,
    stop: Arc<OwnedHandle>,
    accepting: Option<JoinHandle<()>>,
}

impl Server {
    pub(crate) fn new(source: Source, serve: Serve) -> io::Result<Server> {
        let Source {
            first,
            name,
            stop,
            tx,
            rx,
        } = source;
        let stop_event = Arc::clone(&stop);
        let accepting = std::thread::Builder::new()
            .name("onlyone-handoff-accept".into())
            .spawn(move || accept_loop(first, name, &stop_event, Arc::new(serve), tx))?;
        Ok(Server {
            rx,
            stop,
            accepting: Some(accepting),
        })
    }

    /// The next activation; `None` when `deadline` passes, when `stop` is set (and a wake-up
    /// came), or when the accepting side is gone.
    pub(crate) fn next(
        &mut self,
        deadline: Option<Instant>,
        stop: Option<&AtomicBool>,
    ) -> Option<Activation> {
        loop {
            let got = match deadline {
                None => self.rx.recv().ok(),
                Some(d) => self
                    .rx
                    .recv_timeout(d.saturating_duration_since(Instant::now()))
                    .ok(),
            };
            match got {
                Some(Some(a)) => return Some(a),
                Some(None) if stop.is_none_or(|s| !s.load(Ordering::SeqCst)) => {}
                _ => return None,
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: a live event handle.
        unsafe { SetEvent(self.stop.as_raw_handle()) };
        if let Some(t) = self.accepting.take() {
            let _ = t.join();
        }
    }
}

/// Accepts connections (ConnectNamedPipe) until `stop` is signalled; makes the next instance
/// before handing a connected one to a reader thread, so the pipe name never lapses.
fn accept_loop(
    mut pipe: Pipe,
    name: Vec<u16>,
    stop: &OwnedHandle,
    serve: Arc<Serve>,
    tx: mpsc::Sender<Option<Activation>>,
) {
    loop {
        let h = pipe.raw();
        // SAFETY: `h` is the pipe instance; the OVERLAPPED lives until `overlapped` returns.
        let connected = overlapped(h, None, Some(stop.as_raw_handle()), |ov| unsafe {
            ConnectNamedPipe(h, ov)
        });
        match &connected {
            Ok(_) => {}
            // A client that came and went before we saw it: a fresh instance.
            Err(e) if e.raw_os_error() == Some(ERROR_NO_DATA as i32) => {}
            // Stopped, or a failure that would repeat: stop listening (secondaries then see
            // nobody listening and follow their deadline).
            Err(_) => return,
        }
        let Ok(next) = create_instance(&name, false) else {
            return; // cannot go on listening: secondaries see "nobody listens"
        };
        let conn = std::mem::replace(&mut pipe, next);
        if connected.is_err() {
            continue;
        }
        let serve = Arc::clone(&serve);
        let tx = tx.clone();
        let _ = std::thread::Builder::new()
            .name("onlyone-handoff-read".into())
            .spawn(move || read_one(conn, &serve, &tx));
    }
}

/// The pid of the process at the other end of a pipe (GetNamedPipeClientProcessId or
/// GetNamedPipeServerProcessId).
fn peer_pid(pipe: &Pipe, server: bool) -> io::Result<u32> {
    let mut pid = 0u32;
    // SAFETY: a live pipe handle; the pid is written to `pid`.
    let ok = unsafe {
        if server {
            GetNamedPipeServerProcessId(pipe.raw(), &mut pid)
        } else {
            GetNamedPipeClientProcessId(pipe.raw(), &mut pid)
        }
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid)
}

/// Checks the client's user, reads its request and passes the activation on.
fn read_one(pipe: Pipe, serve: &Serve, tx: &mpsc::Sender<Option<Activation>>) {
    let pid = peer_pid(&pipe, false).ok();
    let sid = pid.map(crate::os::process_user_sid);
    match sid {
        Some(Ok(sid)) if sid == serve.sid => {}
        Some(Ok(sid)) => {
            return refuse(
                &pipe,
                Refusal::OtherUser,
                format!(
                    "the primary runs as {}, the sender as {}: refused",
                    crate::os::current_user().text,
                    crate::os::sid_text(&sid)
                ),
            );
        }
        Some(Err(e)) => {
            return refuse(
                &pipe,
                Refusal::OtherUser,
                format!("cannot read the sender's user: {e}"),
            );
        }
        None => {
            return refuse(
                &pipe,
                Refusal::OtherUser,
                "cannot read the sender's pid".into(),
            );
        }
    }
    let deadline = Instant::now() + serve.read_timeout;
    let request = match wire::read_request(&mut Timed(&pipe, Some(deadline)), serve.limit) {
        Ok(r) => r,
        Err(WireError::Bad(reason, message)) => return refuse(&pipe, reason, message),
        Err(WireError::Io(_)) => return, // gone or too slow mid-frame: nothing to deliver
    };
    if let Some(a) = deliver(pipe, request, pid, crate::os::effective_uid()) {
        // Nobody receives any more: the activation comes back and its drop refuses it.
        let _ = tx.send(Some(a));
    }
}

/// Opens the pipe `path` (CreateFileW) for a secondary; a busy pipe waits a little for an
/// instance (WaitNamedPipeW) before saying so.
pub(crate) fn connect_nonblocking(path: &Path) -> Result<Pipe, ConnectError> {
    let name = wide(path);
    // SAFETY: `name` is NUL-terminated UTF-16; no security attributes, no template.
    let h = unsafe {
        CreateFileW(
            name.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            0,
            std::ptr::null(),
            OPEN_EXISTING,
            FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION,
            std::ptr::null_mut(),
        )
    };
    if h == INVALID_HANDLE_VALUE {
        return Err(match last_error() {
            ERROR_FILE_NOT_FOUND | ERROR_PATH_NOT_FOUND => ConnectError::NotListening,
            ERROR_PIPE_BUSY => {
                // SAFETY: `name` is NUL-terminated UTF-16; waits at most 50 ms.
                unsafe { WaitNamedPipeW(name.as_ptr(), 50) };
                ConnectError::Busy
            }
            e => ConnectError::Other(os_error(e)),
        });
    }
    // SAFETY: a fresh, valid handle owned by nobody else.
    Ok(Pipe {
        handle: unsafe { OwnedHandle::from_raw_handle(h) },
    })
}

/// Checks that the process serving the pipe runs as our user; `Err` says why not (nothing was
/// sent).
pub(crate) fn check_listener(pipe: &Pipe, path: &Path) -> Result<(), String> {
    let me = crate::os::current_user();
    let pid = peer_pid(pipe, true).map_err(|e| {
        format!(
            "cannot tell who serves the handoff pipe {}: {e}; nothing sent",
            path.display()
        )
    })?;
    match crate::os::process_user_sid(pid) {
        Ok(sid) if sid == me.sid => Ok(()),
        Ok(sid) => Err(format!(
            "the handoff pipe {} is served by pid {pid} running as {}, not {}: nothing sent",
            path.display(),
            crate::os::sid_text(&sid),
            me.text
        )),
        Err(e) => Err(format!(
            "cannot tell who serves the handoff pipe {} (pid {pid}): {e}; nothing sent",
            path.display()
        )),
    }
}

/// Sends `frame` and waits for the reply until `deadline`.
pub(crate) fn exchange(pipe: &Pipe, frame: &[u8], deadline: Instant) -> Exchange {
    if let Err(e) = pipe.write_all(frame, Some(deadline)) {
        // A primary that refused early (a frame over its limit) may have replied already.
        let soon = Some(Instant::now() + Duration::from_millis(1));
        if let Ok(r @ Reply::Refusal { .. }) =
            wire::read_reply(&mut Timed(pipe, soon), wire::MAX_BODY)
        {
            return Exchange::Replied(r);
        }
        return Exchange::NotSent(e);
    }
    match wire::read_reply(&mut Timed(pipe, Some(deadline)), wire::MAX_BODY) {
        Ok(r) => Exchange::Replied(r),
        Err(e) => Exchange::NoReply(e.into_io()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pipe name is part of the protocol between versions: pinned (the hash checked against
    /// an independent FNV-1a 128 in Python).
    #[test]
    fn pipe_name_test_vector() {
        let name = pipe_name(
            "S-1-5-21-1-2-3-1001",
            Path::new(r"C:\Users\a\AppData\Local\onlyone\org.example.Editor.handoff"),
        );
        assert_eq!(
            name,
            Path::new(
                r"\\.\pipe\onlyone-handoff-S-1-5-21-1-2-3-1001-6d311dbd71fdda717a502b299659c4ba"
            )
        );
    }

    /// Strings travel as UTF-8 on Windows; non-Unicode ones are refused before sending.
    #[test]
    fn wire_round_trips_unicode_and_refuses_unpaired_surrogates() {
        use std::ffi::OsString;
        use std::os::windows::ffi::OsStringExt;
        let request = wire::Request {
            pid: 1,
            expires_ms: 0,
            cwd: r"C:\tmp\ä".into(),
            args: vec!["".into(), "a\nb\0c".into(), "日本語 🎉".into()],
            env: vec![("K".into(), "v".into())],
        };
        let frame = wire::encode_request(&request, wire::MAX_BODY).unwrap();
        assert_eq!(
            wire::read_request(&mut &frame[..], wire::MAX_BODY).unwrap(),
            request
        );
        let bad = wire::Request {
            args: vec![OsString::from_wide(&[0xD800, b'x' as u16])],
            ..request
        };
        let e = wire::encode_request(&bad, wire::MAX_BODY).unwrap_err();
        assert!(e.contains("not valid Unicode"), "{e}");
    }
}
