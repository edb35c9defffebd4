//! `onlyone`: run a command at most once at a time, and say who holds the lock when it does not.
//!
//! `unsafe` is denied here and allowed on exactly two functions in `job.rs` (the child's set-up
//! between fork and exec, and resetting SIGCHLD), each with its `SAFETY` comment.

#![deny(unsafe_code)]

mod cli;
mod compare;
mod exit;
mod generate;
mod job;
mod json;
mod locks;
mod names;
mod replace;
mod run;
mod status;

fn main() -> std::process::ExitCode {
    cli::run()
}
