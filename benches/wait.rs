//! Release-to-acquire latency of a waiting process, per backend, and the waiter's CPU time over a
//! 2 s wait. Run with `cargo bench --bench wait` (`-- --trials N` to change the 200 trials).
//!
//! Then hand-overs through N waiter processes (N = 1, 8, 64, 256; `-- --waiters 8,64` to choose,
//! `--handover` for this table alone), each holding the lock 1 ms in its turn, beside the
//! kernel's own blocking `flock(LOCK_EX)` in the same run: time per hand-over, wake-ups per
//! hand-over (the waiters' voluntary context switches until their turn, ÷ N, counting the one
//! wake-up that gives each its turn), and the waiters' CPU time while the lock is merely held
//! (1 s) and until their turn.
//!
//! Every trial uses two fresh processes (this binary, re-executed): a holder and a waiter asleep in
//! `acquire_timeout(None)`. The holder releases (guard dropped, process lives on) or is SIGKILLed;
//! the gap is measured on `CLOCK_MONOTONIC` from just before the release (or the `kill`) to just
//! after the waiter's acquire returned.

#[cfg(unix)]
#[path = "wait/unix.rs"]
mod unix;

#[cfg(unix)]
fn main() {
    unix::main();
}

/// The body measures Unix waits (signals, `CLOCK_MONOTONIC` across processes, `/proc`); on
/// Windows the bench builds and says so (figures from Wine would not be Windows figures).
#[cfg(not(unix))]
fn main() {
    eprintln!("the wait benchmark measures Unix waits; nothing to measure here");
}
