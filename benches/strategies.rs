//! The locking strategies side by side, each next to the bare system calls it is built on.
//!
//! ```text
//! cargo bench --bench strategies                   # everything: about 2.5 minutes on 2 cores
//! cargo bench --bench strategies -- '^contended/'  # one group (a regex; skips the scale run)
//! cargo bench --bench strategies -- scale          # only the 100k-attempt scale run
//! cargo bench --bench strategies -- many           # only: 1000 locks in one process; `onlyone list` with 10,000 held
//! ```
//!
//! `many` (strategies/many.rs) needs the CLI built for its `list` part
//! (`cargo build --release -p onlyone-cli`).
//!
//! Criterion runs with a 1 s warm-up, 3 s of measurement and 50 samples per id (its own flags,
//! e.g. `-- --measurement-time 5`, override them). After the groups the bench prints every goal
//! as a ratio of criterion's median estimates, read from
//! `target/criterion/<group>/<id>/new/estimates.json`. BENCHMARKS.md has the latest figures.
//!
//! | group | ids |
//! | --- | --- |
//! | `acquire_release` | `raw_abstract`, `abstract`, `raw_flock`, `flock`, `raw_pidfile`, `pidfile` |
//! | `contended` | the same six: a failed try against a lock another process holds |
//! | `holder_lookup` | `raw_peercred`, `abstract`, `flock`, `pidfile` |
//! | `acquire_release_ext4`, `contended_ext4` | the file strategies again, on the ext4 root |
//!
//! The lock directory of the main groups is on tmpfs (`/dev/shm`), or `ONLYONE_BENCH_DIR`; the
//! `_ext4` groups use `/var/tmp` (or `ONLYONE_BENCH_DISK_DIR`). Raw and onlyone always share the
//! directory, and in the contended groups they contend for the very same resource, held by one
//! child process (this bench binary, re-executed as a holder): a failed try is measured against
//! another process's lock, as it happens in real use, and never against a descriptor of our own.
//!
//! The abstract holder never accepts connections, so its backlog (`somaxconn`, 4096 here) fills
//! with the connections of contenders that came and went; after that, holder lookups fall back to
//! `/proc`. The criterion groups measure the normal path: the holder is replaced (outside the
//! timed region) every 2000 connecting attempts. The `scale` run measures the other path too:
//! 100k contended attempts against one holder per backend, checking that every attempt names the
//! holder. For the abstract backend the attempts between the 10 000th and the last 1000 are
//! stand-ins making the same socket calls without the `/proc` reading (which costs milliseconds
//! there and changes nothing in the kernel); the file backends run all 100k for real.
//!
//! The strategies are measured against Linux system calls (abstract sockets, `O_TMPFILE`,
//! `SO_PEERCRED`, `/proc`): the body lives in `strategies/linux.rs`, and on other systems the
//! bench builds and says so.

#[cfg(any(target_os = "linux", target_os = "android"))]
#[path = "strategies/linux.rs"]
mod linux;

fn main() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    linux::main();
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    eprintln!("the strategies benchmark compares Linux system calls; nothing to measure here");
}
