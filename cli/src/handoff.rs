//! `onlyone run --handoff`: a second `onlyone run` of the same lock hands its arguments, working
//! directory and activation token to the first, whose job reads them and answers; the second
//! exits with the answer's status.
//!
//! The job's side, through two inherited pipes named in its environment:
//! - `ONLYONE_HANDOFF_FD`: read activations from it, one record each, every field ended by a NUL
//!   byte: `ID`, `CWD`, `ARGC`, then ARGC arguments, `ENVC`, then ENVC `KEY=VALUE` entries. (In
//!   bash: `IFS= read -r -d '' field <&"$ONLYONE_HANDOFF_FD"`.) The arguments are the second
//!   launch's COMMAND arguments (without COMMAND itself), byte for byte.
//! - `ONLYONE_HANDOFF_ANSWER_FD`: answer with three NUL-ended fields, `ID`, `CODE` (0-255) and a
//!   message without NUL bytes (may be empty): the second launch prints the message on its
//!   standard output and exits with CODE. An activation the job does not answer within the second
//!   launch's `--handoff-timeout` is reported there as unknown (exit 75).
//! - `ONLYONE_HANDOFF_SOCKET`: where second launches connect, for programs that link the library
//!   (`onlyone::handoff::send`): the socket file beside the lock file, or `@` and the abstract
//!   lock's name (the abstract socket backend, the default on Linux: the lock's own listener
//!   carries the messages).
//!
//! The second launch exits with: the answer's code (delivered); 69 when nothing reached the job
//! (no listener, primary gone, refused); 75 when it is unknown whether the job got it (no answer
//! before the timeout).

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use onlyone::handoff::{Activation, Handoff, Message, Outcome};

use crate::exit::{self, Failure};

/// The `--handoff` options of `onlyone run`.
#[derive(Args, Debug, Clone)]
pub struct HandoffArgs {
    /// Second-instance handoff: if the lock is held, pass ARGS, the working directory and the
    /// activation token to the running job and exit with its answer (see --help)
    #[arg(long, conflicts_with_all = ["wait", "replace", "no_fork", "once_per"])]
    pub handoff: bool,

    /// With --handoff: how long a second launch tries to deliver and waits for the answer
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs, requires = "handoff")]
    pub handoff_timeout: Duration,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("expected a positive number of seconds, got {s:?}"))
}

/// The handoff configuration matching the lock `onlyone run` builds for `name`.
fn handoff_for(name: &str, lock: &crate::cli::LockArgs, args: &HandoffArgs) -> Handoff {
    let mut h = Handoff::new(name)
        .scope(lock.scope)
        .timeout(args.handoff_timeout);
    if let Some(b) = lock.backend {
        h = h.backend(b);
    }
    if let Some(d) = &lock.lock_dir {
        h = h.lock_dir(d);
    }
    h
}

/// The second launch: hands over and turns the outcome into an exit status.
pub fn second_launch(
    name: &str,
    lock: &crate::cli::LockArgs,
    args: &HandoffArgs,
    argv: &[OsString],
    quiet: bool,
) -> Result<u8, Failure> {
    let message = Message::with_args(argv.iter().skip(1).cloned());
    let outcome = handoff_for(name, lock, args)
        .hand_over(&message)
        .map_err(|e| Failure::new(exit::SOFTWARE, format!("handoff: {e}")))?;
    Ok(match outcome {
        Outcome::Delivered(answer) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&answer.data);
            if !answer.data.is_empty() && !answer.data.ends_with(b"\n") {
                let _ = out.write_all(b"\n");
            }
            let _ = out.flush();
            answer.code.clamp(0, 255) as u8
        }
        Outcome::NotDelivered { detail, .. } => {
            if !quiet {
                say!("onlyone: handoff to the running instance failed: {detail}");
            }
            exit::UNAVAILABLE
        }
        Outcome::Unknown { detail } => {
            if !quiet {
                say!("onlyone: handoff: unknown whether the running job got it: {detail}");
            }
            exit::TEMPFAIL
        }
    })
}

/// The first launch's side: the listener, two pipes for the job and the threads between them.
///
/// The listener lives in its thread until onlyone exits; with a file backend its socket file
/// stays behind then (the lock is released first, and the next first launch replaces the file);
/// with the abstract socket there is no file, and releasing the lock ends the listening.
pub struct FirstLaunch {
    /// The job's ends, inherited by it (close-on-exec cleared), closed here once it runs.
    job_read: OwnedFd,
    job_write: OwnedFd,
    socket: std::path::PathBuf,
}

impl FirstLaunch {
    /// Starts listening (the caller holds the lock) and the threads that pass activations to the
    /// job and its answers back.
    pub fn start(
        name: &str,
        lock: &crate::cli::LockArgs,
        args: &HandoffArgs,
        guard: &onlyone::Guard,
    ) -> Result<FirstLaunch, Failure> {
        let listener = handoff_for(name, lock, args)
            .listen_while_holding(guard)
            .map_err(|e| Failure::new(exit::SOFTWARE, format!("handoff: {e}")))?;
        let socket = listener.socket_path().to_owned();
        // pipe(2) and fcntl(2): macOS has no pipe2. onlyone's ends are close-on-exec, the job's
        // ends are inherited by the job (and by nothing else: onlyone starts no other process).
        let (job_read, to_job) =
            nix::unistd::pipe().map_err(|e| Failure::os("cannot create the handoff pipe", e))?;
        let (from_job, job_write) = nix::unistd::pipe()
            .map_err(|e| Failure::os("cannot create the handoff answer pipe", e))?;
        for fd in [&to_job, &from_job] {
            use nix::fcntl::{FcntlArg, FdFlag, fcntl};
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
                .map_err(|e| Failure::os("cannot set up the handoff pipes", e))?;
        }
        let pending: Arc<Mutex<HashMap<u64, Activation>>> = Arc::default();
        {
            let pending = Arc::clone(&pending);
            let mut to_job = std::fs::File::from(to_job);
            std::thread::spawn(move || {
                let mut id = 0u64;
                while let Some(a) = listener.recv() {
                    id += 1;
                    let record = record(id, &a);
                    pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(id, a);
                    if to_job.write_all(&record).is_err() {
                        // The job closed its end: it never reads this one.
                        let a = pending
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&id);
                        if let Some(a) = a {
                            let _ =
                                a.decline("the job does not read activations (its pipe is closed)");
                        }
                    }
                }
            });
        }
        {
            let pending = Arc::clone(&pending);
            let from_job = std::fs::File::from(from_job);
            std::thread::spawn(move || answers(from_job, &pending));
        }
        Ok(FirstLaunch {
            job_read,
            job_write,
            socket,
        })
    }

    /// The variables the job gets.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ONLYONE_HANDOFF_FD", self.job_read.as_raw_fd().to_string()),
            (
                "ONLYONE_HANDOFF_ANSWER_FD",
                self.job_write.as_raw_fd().to_string(),
            ),
            (
                "ONLYONE_HANDOFF_SOCKET",
                self.socket.to_string_lossy().into_owned(),
            ),
        ]
    }
}

/// `ID\0CWD\0ARGC\0ARG\0...ENVC\0KEY=VALUE\0...`
fn record(id: u64, a: &Activation) -> Vec<u8> {
    let mut r = Vec::new();
    let mut field = |b: &[u8]| {
        r.extend_from_slice(b);
        r.push(0);
    };
    field(id.to_string().as_bytes());
    field(a.cwd().as_os_str().as_bytes());
    field(a.args().len().to_string().as_bytes());
    for arg in a.args() {
        field(arg.as_bytes());
    }
    field(a.env().len().to_string().as_bytes());
    for (k, v) in a.env() {
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        field(&kv);
    }
    r
}

/// Reads `ID\0CODE\0MESSAGE\0` answers from the job and passes each to its activation. A
/// malformed answer is reported on stderr and skipped.
fn answers(mut from_job: std::fs::File, pending: &Mutex<HashMap<u64, Activation>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match from_job.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let fields: Vec<&[u8]> = buf.splitn(4, |b| *b == 0).collect();
            if fields.len() < 4 {
                break;
            }
            let (id, code, msg) = (fields[0], fields[1], fields[2]);
            let used = id.len() + code.len() + msg.len() + 3;
            let parsed = std::str::from_utf8(id)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .zip(
                    std::str::from_utf8(code)
                        .ok()
                        .and_then(|s| s.parse::<u8>().ok()),
                );
            match parsed {
                Some((id, code)) => {
                    let a = pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&id);
                    match a {
                        Some(a) => {
                            let _ = a.answer(code.into(), msg);
                        }
                        None => say!(
                            "onlyone: handoff: the job answered activation {id}, which is not waiting for an answer"
                        ),
                    }
                }
                None => say!(
                    "onlyone: handoff: malformed answer from the job (expected ID, CODE 0-255 and a message, each ended by NUL): {:?}",
                    String::from_utf8_lossy(&buf[..used])
                ),
            }
            buf.drain(..used);
        }
    }
}
