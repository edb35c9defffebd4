//! onlyone beside the crates people use for the same job, and beside the bare system calls.
//!
//! ```text
//! cargo bench --bench peers                        # everything: about 2 minutes on 2 cores, plus the build
//! cargo bench --bench peers -- '^contended/'       # one criterion group (a regex)
//! cargo test --bench peers                         # each operation once + the guarantee checks
//! cargo bench --bench peers -- floor               # only the three-row table of BENCHMARKS.md (seconds)
//! ONLYONE_PEERS_LOOP=fs2:contended:1000 target/release/deps/peers-HASH  # one op N times
//! benches/callgrind.sh                             # instructions per operation (valgrind)
//! benches/syscalls.sh                              # system calls per operation (strace -c)
//! ```
//!
//! Two operations, each through every implementation: `acquire_release` (take a free lock and
//! let it go) and `contended` (a failed try against a lock that *another process* holds: a child,
//! this binary re-executed as a holder, as in `benches/strategies.rs`).
//!
//! | id | acquire + release | failed try |
//! | --- | --- | --- |
//! | `raw_flock` | `open(O_CREAT)` + `flock(LOCK_EX\|LOCK_NB)` + `close` | the same, `EWOULDBLOCK` |
//! | `std` | `File::options().create(true)` + `File::try_lock` + drop (the close releases) | the same, `WouldBlock` |
//! | `fs2` | open + `FileExt::try_lock_exclusive` + drop (the close releases) | open + try → error |
//! | `fd-lock` | open + `RwLock::try_write` + guard drop (unlock) + drop | open + `try_write` → error |
//! | `named-lock` | `NamedLock::with_path` + `try_lock` + drop both | the same, `WouldBlock` |
//! | `onlyone_flock` | `try_acquire()` + `Guard::release()` | `try_acquire()` → `Held` |
//! | `raw_abstract` | `socket` + `bind("\0name")` + `listen` + `close` | `socket` + `bind` → `EADDRINUSE` + `close` |
//! | `single-instance` | `SingleInstance::new` + drop | the same, `is_single() == false` |
//! | `onlyone_abstract` | `try_acquire()` + `Guard::release()` | `try_acquire()` → `Held` |
//! | `raw_pidfile` | `open(O_TMPFILE)` + `write` + `linkat` + `unlink` + `close` | `open(O_EXCL)` → `EEXIST`, read, `kill(pid, 0)`, `/proc/PID/stat` start time |
//! | `pidlock` | `Pidlock::new_validated` + `acquire` + `release` | the same → `LockExists` |
//! | `onlyone_pidfile` | `try_acquire()` + `Guard::release()` | `try_acquire()` → `Held` |
//!
//! Timed only in the paired ratios (`floor`, and by `ONLYONE_PEERS_LOOP`): `raw_flock_same` and
//! `raw_pidfile_same` make, bare, the system calls onlyone's acquire + release makes (BENCHMARKS.md
//! names each); `onlyone_{flock,abstract,pidfile}_lookup` is a failed try whose holder is then
//! read (`held.pid`).
//!
//! After criterion's groups the bench measures every ratio to the raw baseline of its family
//! (flock, abstract socket, PID file) as the median of alternating same-run pairs (raw block,
//! peer block, then peer first: the order alternates), with the min–max spread, and prints one
//! table with the guarantee columns. The guarantee checks run in this process against real
//! holder processes (close-on-exec of every descriptor the lock keeps open, the holder's pid on a
//! failed try, a lock whose holder was SIGKILLed); the namespace column is read from the crates'
//! sources and is marked so.
//!
//! The body is Linux-only (abstract sockets, `O_TMPFILE`, `/proc`): `peers/linux.rs`; on other
//! systems the bench builds and says so. The peer crates are dev-dependencies on Linux only.

#[cfg(any(target_os = "linux", target_os = "android"))]
#[path = "peers/linux.rs"]
mod linux;

fn main() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    linux::main();
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    eprintln!(
        "the peers benchmark compares Linux system calls and crates; nothing to measure here"
    );
}
