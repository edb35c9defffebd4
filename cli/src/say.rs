//! [`say!`]: onlyone's own lines on standard error, each written whole by one write(2).
//!
//! `eprintln!` writes a formatted line piece by piece, one write(2) per literal and per argument.
//! The job shares onlyone's standard error, so a line of the job's could land inside one of
//! onlyone's: a shell whose child died of the SIGTERM onlyone forwarded prints `Terminated`
//! between `onlyone: forwarded ` and `SIGTERM to the job's process group`. One write(2) keeps a
//! line whole on a pipe (up to `PIPE_BUF` bytes, pipe(7)), on a regular file (the kernel holds
//! the file position's lock for the whole write) and on a terminal.

/// Formats its arguments like `eprintln!` and writes the line to standard error in one call.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say::line(::std::format!($($arg)*))
    };
}

/// Writes `text` and a newline to standard error with one `write_all`, ignoring errors: a closed
/// standard error must not stop onlyone while it holds a lock and runs a job (`eprintln!` would
/// panic).
pub fn line(mut text: String) {
    text.push('\n');
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), text.as_bytes());
}
