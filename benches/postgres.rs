//! The PostgreSQL backend against a throwaway local server (the tests' `tests/pg/mod.rs`), each
//! measurement beside a baseline taken in the same run.
//!
//! ```text
//! cargo bench --features postgres --bench postgres
//! ```
//!
//! | group | id | what |
//! | --- | --- | --- |
//! | `pg_acquire_release` | `baseline_connect_close` | open and close a connection: the floor of a lock with a session of its own |
//! | | `try_acquire_release` | `try_acquire` + `release` of a free lock (connect, settings, try, fencing counter, heartbeat thread, unlock, close) |
//! | | `try_acquire_release_no_fencing` | the same without the fencing counter |
//! | | `contended_try` | a try against a lock another process holds, naming the holder |
//! | `pg_handover` | `baseline_release_to_acquire` | holder releases on request → a blocked waiter has the lock |
//! | | `sigkill_to_acquire` | holder SIGKILLed → a blocked waiter has the lock |
//!
//! The handover group re-executes this binary as the holder; each iteration starts a holder,
//! queues a waiter in `pg_advisory_lock` (checked in `pg_locks`, outside the timed region), then
//! times from the release request or the `kill(2)` to the waiter's `acquire_timeout` returning
//! the guard. It also prints the median, p90 and maximum of every sample it took.
//!
//! Without PostgreSQL server binaries the benchmark prints why and exits successfully.

#[path = "../tests/pg/mod.rs"]
mod pg;

use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use onlyone::{Acquire, Lock, LockName, PostgresLock};

/// Set in a re-executed copy of this binary: `URL\tNAME`; take that lock and hold it until
/// stdin says `release` or closes.
const HOLD_ENV: &str = "ONLYONE_PG_BENCH_HOLD";

fn main() {
    if let Ok(spec) = std::env::var(HOLD_ENV) {
        hold(&spec);
        return;
    }
    let Some(server) = pg::PgServer::start_or_skip() else {
        eprintln!("postgres benchmark skipped: no PostgreSQL server binaries");
        return;
    };
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .configure_from_args();
    acquire_release(&mut c, &server);
    handover(&mut c, &server);
    c.final_summary();
    drop(server);
}

fn lock(url: &str, name: &str) -> PostgresLock {
    PostgresLock::new(LockName::new(name).expect("name"), url).expect("lock")
}

fn acquire_release(c: &mut Criterion, server: &pg::PgServer) {
    let url = server.url();
    let name = format!("bench-ar-{}", std::process::id());
    let mut g = c.benchmark_group("pg_acquire_release");
    g.bench_function("baseline_connect_close", |b| {
        b.iter(|| {
            let client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
            client.close().expect("close");
        })
    });
    let free = lock(&url, &name);
    g.bench_function("try_acquire_release", |b| {
        b.iter(|| {
            let guard = free.try_acquire().expect("try").guard().expect("free");
            black_box(guard.fencing_token());
            guard.release().expect("release");
        })
    });
    let no_fencing = lock(&url, &name).without_fencing();
    g.bench_function("try_acquire_release_no_fencing", |b| {
        b.iter(|| {
            let guard = no_fencing
                .try_acquire()
                .expect("try")
                .guard()
                .expect("free");
            guard.release().expect("release");
        })
    });
    let held_name = format!("{name}-held");
    let mut holder = Holder::start(&url, &held_name);
    let contender = lock(&url, &held_name);
    g.bench_function("contended_try", |b| {
        b.iter(|| match contender.try_acquire().expect("try") {
            Acquire::Held(h) => assert_eq!(h.pid, Some(holder.pid())),
            Acquire::Acquired(_) => panic!("acquired a held lock"),
        })
    });
    holder.kill();
    g.finish();
}

/// Every handover latency measured, per id, for the summary.
static SAMPLES: Mutex<Vec<(&'static str, Duration)>> = Mutex::new(Vec::new());

fn handover(c: &mut Criterion, server: &pg::PgServer) {
    let url = server.url();
    let mut admin = server.admin();
    let mut g = c.benchmark_group("pg_handover");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for (id, sigkill) in [
        ("baseline_release_to_acquire", false),
        ("sigkill_to_acquire", true),
    ] {
        g.bench_function(id, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|i| {
                        let name = format!("bench-kill-{}-{i}", std::process::id());
                        let d = one_handover(&url, &name, &mut admin, sigkill);
                        SAMPLES.lock().unwrap().push((id, d));
                        d
                    })
                    .sum()
            })
        });
    }
    g.finish();
    summary();
}

/// A holder process, a waiter queued on the server, then release or SIGKILL; the time from that
/// to the waiter holding the lock.
fn one_handover(url: &str, name: &str, admin: &mut postgres::Client, sigkill: bool) -> Duration {
    let mut holder = Holder::start(url, name);
    let waiter_lock = lock(url, name);
    let waiter = std::thread::spawn(move || {
        let outcome = waiter_lock
            .acquire_timeout(Some(Duration::from_secs(60)))
            .expect("wait");
        let at = Instant::now();
        (outcome.guard().expect("the waiter gets the lock"), at)
    });
    // Bounded poll of server state (outside the timed region): the waiter is queued.
    let key = lock(url, name).key() as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let queued: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
                 AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 1",
                &[&((key >> 32) as i64), &((key & 0xffff_ffff) as i64)],
            )
            .expect("pg_locks")
            .get(0);
        if queued == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the waiter never queued");
        std::thread::yield_now();
    }
    let start = Instant::now();
    if sigkill {
        holder.kill();
    } else {
        holder.release();
    }
    let (guard, at) = waiter.join().expect("waiter thread");
    drop(guard);
    at - start
}

fn summary() {
    let samples = SAMPLES.lock().unwrap();
    for id in ["baseline_release_to_acquire", "sigkill_to_acquire"] {
        let mut d: Vec<Duration> = samples
            .iter()
            .filter(|(i, _)| *i == id)
            .map(|(_, d)| *d)
            .collect();
        if d.is_empty() {
            continue;
        }
        d.sort();
        let at = |q: f64| d[((d.len() - 1) as f64 * q).round() as usize];
        println!(
            "pg_handover/{id}: n={} median={:.2?} p90={:.2?} max={:.2?}",
            d.len(),
            at(0.5),
            at(0.9),
            d[d.len() - 1]
        );
    }
}

/// This binary re-executed as a lock holder.
struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Holder {
    fn start(url: &str, name: &str) -> Holder {
        let mut child = Command::new(std::env::current_exe().expect("current_exe"))
            .env(HOLD_ENV, format!("{url}\t{name}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn holder");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read holder");
        assert_eq!(line.trim(), "acquired", "holder could not take {name}");
        Holder {
            child,
            stdin,
            stdout,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGKILL);
    }

    /// Asks for a release (does not wait for it).
    fn release(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin");
        stdin.write_all(b"release\n").expect("write");
        stdin.flush().expect("flush");
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.stdin = None;
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut self.stdout, &mut rest);
        self.kill();
        let _ = self.child.wait();
    }
}

/// The holder side: take the lock, say so, release on `release` or end of input.
fn hold(spec: &str) {
    let (url, name) = spec.split_once('\t').expect("URL\\tNAME");
    let guard = match lock(url, name).try_acquire() {
        Ok(Acquire::Acquired(g)) => g,
        other => {
            eprintln!("holder: could not take {name}: {other:?}");
            std::process::exit(1);
        }
    };
    println!("acquired");
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    drop(guard);
}
