//! A minimal "editor" with second-instance handoff: the first launch opens its files and keeps
//! running; every later launch hands its arguments, working directory and activation token to the
//! first, which prints them and answers, and exits with the first one's answer.
//!
//! ```text
//! cargo run --example editor -- notes.txt &      # primary: prints "primary", then activations
//! cargo run --example editor -- todo.txt         # secondary: delivered, exits 0
//! ```
//!
//! Runs on Unix (a socket) and on Windows (a named pipe; there arguments travel as UTF-8, and the
//! hex below is of their UTF-8, the uid column is `-`).
//!
//! Every argument is a file to open (byte-exact: no option parsing). The configuration comes from
//! the environment so that tests can pass any bytes as arguments:
//! - `EDITOR_NAME` (default `onlyone-editor-example`), `EDITOR_DIR` (lock and socket directory;
//!   default the scope's), `EDITOR_BACKEND` (`abstract`, `flock`, `pidfile`),
//!   `EDITOR_TIMEOUT_MS` (default 5000), `EDITOR_IF_GONE=takeover`;
//! - `EDITOR_SEND_TO=PATH`: skip the lock, hand the arguments to the socket PATH (or `@NAME`,
//!   the abstract socket lock's name, where its own listener carries the messages);
//! - `EDITOR_GATE=FIFO`: open FIFO for reading first (tests release many launches at once);
//! - `EDITOR_DIE_ON=ARG`: the primary exits at once, without answering, after printing an
//!   activation whose first argument is ARG (tests: a primary that read a request, then died);
//! - `EDITOR_HANG_ON=ARG`: the primary stops serving, without answering, after printing such an
//!   activation, until it is killed (tests: a primary killed while handling a request).
//!
//! Primary output (stdout, one line each): `primary PID` once listening, then per activation
//! `activation PID_OR_none UID CWD_HEX ARG_HEX,ARG_HEX,... TOKEN_HEX` (hex so that any bytes fit on
//! a line). It answers exit code `argc % 256` and the arguments joined with NUL bytes.
//!
//! Secondary: writes the answer's bytes to stdout and exits with its code; `not-delivered
//! REASON` (exit 69), `unknown` (exit 75) on stdout otherwise; errors exit 70.

use std::ffi::OsString;
use std::io::Write;
use std::time::Duration;

use onlyone::BackendKind;
use onlyone::handoff::{Activation, Handoff, IfGone, Message, Outcome, Start};

fn hex(b: &[u8]) -> String {
    if b.is_empty() {
        return "-".into();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn print_activation(out: &mut impl Write, a: &Activation) {
    let args: Vec<String> = a.args().iter().map(|x| hex(x.as_encoded_bytes())).collect();
    let pid = a.pid().map_or("none".to_owned(), |p| p.to_string());
    let token = a
        .activation_token()
        .map_or(&[][..], |t| t.as_encoded_bytes());
    let _ = writeln!(
        out,
        "activation {pid} {} {} {} {}",
        uid(a),
        hex(a.cwd().as_os_str().as_encoded_bytes()),
        if args.is_empty() {
            "-".into()
        } else {
            args.join(",")
        },
        hex(token)
    );
    let _ = out.flush();
}

/// The sender's uid (Unix); `-` on Windows, which has SIDs instead.
fn uid(a: &Activation) -> String {
    #[cfg(unix)]
    return a.uid().to_string();
    #[cfg(not(unix))]
    {
        let _ = a;
        "-".into()
    }
}

fn answer_bytes(args: &[OsString]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            v.push(0);
        }
        v.extend_from_slice(a.as_encoded_bytes());
    }
    v
}

fn report(outcome: Outcome) -> i32 {
    let mut out = std::io::stdout().lock();
    match outcome {
        Outcome::Delivered(answer) => {
            let _ = out.write_all(&answer.data);
            let _ = out.flush();
            answer.code
        }
        Outcome::NotDelivered { reason, detail } => {
            let _ = writeln!(out, "not-delivered {reason:?}");
            eprintln!("editor: not delivered: {detail}");
            69
        }
        Outcome::Unknown { detail } => {
            let _ = writeln!(out, "unknown");
            eprintln!("editor: unknown: {detail}");
            75
        }
    }
}

fn main() {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(gate) = env("EDITOR_GATE") {
        // Blocks until the test opens the FIFO for writing: every launch starts at once.
        let _ = std::fs::File::open(gate);
    }
    let message = Message::from_current_process();
    let timeout = Duration::from_millis(
        env("EDITOR_TIMEOUT_MS").map_or(5000, |v| v.parse().expect("EDITOR_TIMEOUT_MS")),
    );
    if let Some(path) = env("EDITOR_SEND_TO") {
        match onlyone::handoff::send(path.as_ref(), &message, timeout) {
            Ok(o) => std::process::exit(report(o)),
            Err(e) => {
                eprintln!("editor: {e}");
                std::process::exit(70)
            }
        }
    }
    let mut handoff = Handoff::new(env("EDITOR_NAME").unwrap_or("onlyone-editor-example".into()))
        .timeout(timeout);
    if let Some(dir) = env("EDITOR_DIR") {
        handoff = handoff.lock_dir(dir);
    }
    if let Some(b) = env("EDITOR_BACKEND") {
        handoff = handoff.backend(b.parse::<BackendKind>().expect("EDITOR_BACKEND"));
    }
    if env("EDITOR_IF_GONE").as_deref() == Some("takeover") {
        handoff = handoff.if_gone(IfGone::TakeOver);
    }
    match handoff.start(&message) {
        Ok(Start::Primary(primary)) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "primary {}", std::process::id());
            let _ = writeln!(out, "own-args {}", message.args.len());
            let _ = out.flush();
            let die_on = std::env::var_os("EDITOR_DIE_ON");
            let hang_on = std::env::var_os("EDITOR_HANG_ON");
            while let Some(a) = primary.recv() {
                print_activation(&mut out, &a);
                if die_on.is_some() && a.args().first() == die_on.as_ref() {
                    // No destructor runs: the activation is never answered, its connection
                    // closes with the process.
                    std::process::exit(9);
                }
                if hang_on.is_some() && a.args().first() == hang_on.as_ref() {
                    loop {
                        std::thread::park();
                    }
                }
                let code = (a.args().len() % 256) as i32;
                let data = answer_bytes(a.args());
                if let Err(e) = a.answer(code, &data) {
                    eprintln!("editor: cannot answer: {e}");
                }
            }
        }
        Ok(Start::Secondary(outcome)) => std::process::exit(report(outcome)),
        Err(e) => {
            eprintln!("editor: {e}");
            std::process::exit(70)
        }
    }
}
