//! `onlyone`: run a command at most once at a time, and say who holds the lock when it does not.
//!
//! `unsafe` is denied here and allowed only on the functions that need it, each block with its
//! `SAFETY` comment: the C entry point below; in `job.rs` and `job/`, starting the job (the
//! clone(2) of `job/linux.rs`, the fork(2) of `job/posix.rs`, and the code the child runs before
//! execve(2)), the signal handler of the self-pipe and its installation, and resetting SIGCHLD;
//! on Windows the job object, the suspended start and the console handler (`job/windows.rs`).
//!
//! On glibc Linux onlyone has no Rust `fn main`: the C runtime calls the exported `main` below
//! directly and the Rust runtime's start-up is skipped, which saves a tenth of a millisecond per
//! run (BENCHMARKS.md, "CLI start-up"). What that start-up would do and onlyone does not need:
//! ignore SIGPIPE, and install a handler that names a stack overflow. So onlyone keeps the SIGPIPE
//! disposition its parent gave it, and the job inherits it unchanged, as under flock(1); on
//! targets where Rust's start-up runs, the parent's disposition is lost before `main` and the
//! job gets the default (`job::SIGPIPE_FROM_PARENT`).
//! `std::env::args` still works there: glibc hands the arguments to std through `.init_array`.

#![deny(unsafe_code)]
#![cfg_attr(all(not(test), target_os = "linux", target_env = "gnu"), no_main)]

// First: its `say!` macro is used by the modules below.
#[macro_use]
mod say;

mod cli;
mod compare;
mod exit;
mod generate;
#[cfg(unix)]
mod handoff;
#[cfg(unix)]
mod job;
// Windows: a job object instead of process groups and signals (the job/ files are Unix's).
#[cfg(windows)]
#[path = "job/windows.rs"]
mod job;
mod json;
mod locks;
mod log;
mod names;
mod once;
mod replace;
mod run;
mod status;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// The entry point the C runtime calls.
#[cfg(all(not(test), target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
// SAFETY: exporting the unmangled symbol `main` is unsafe only because it could clash with
// another definition of that symbol; this binary has no other `main` (no Rust `fn main` under
// `no_main`), and the signature is the one the C runtime calls.
#[unsafe(no_mangle)]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    let code = run();
    // The Rust runtime would flush standard output at exit; here nobody else does.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // ExitCode hides its value; it compares equal to the code it was made from.
    (0..=255u8)
        .find(|&n| ExitCode::from(n) == code)
        .map_or(1, std::ffi::c_int::from)
}

#[cfg(not(all(not(test), target_os = "linux", target_env = "gnu")))]
fn main() -> ExitCode {
    run()
}

/// Parses the command line, runs the subcommand, and turns the outcome into an exit status.
fn run() -> ExitCode {
    let cli = match Cli::parse_args(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors; clap's own status for errors is 2.
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { 0 });
        }
    };
    let outcome = match cli.command {
        Command::Run(args) => run::main(args),
        Command::Status(args) => status::status(args),
        Command::List(args) => status::list(args),
        Command::BreakLock(args) => status::break_lock(args),
        Command::Generate(args) => generate::main(args),
        Command::Compare(args) => return compare::run(&args),
    };
    ExitCode::from(outcome.unwrap_or_else(|f: exit::Failure| {
        say!("onlyone: {f}");
        f.code
    }))
}
