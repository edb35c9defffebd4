//! The PostgreSQL backend against a real, throwaway server (tests/pg/mod.rs): holder info,
//! SIGKILLed holders, a multi-process race, server restart, fencing tokens, connection errors.
//!
//! `cargo test --features postgres --test postgres`. Without server binaries the tests skip with
//! a message naming the Debian package; with `CI=true` they fail instead.

// The Unix suite: Windows has its own (tests/windows.rs).
#![cfg(unix)]

mod common;
mod pg;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Proc, unique_name};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use onlyone::{Acquire, BackendKind, Builder, ErrorKind, HolderKind, Lock, LockName, PostgresLock};
#[cfg(feature = "postgres-tls")]
use pg::TLS_HOST;
use pg::{OTHER_ROLE, PASSWORD, PASSWORD_ROLE, PgServer};

fn lock(url: &str, name: &str) -> PostgresLock {
    PostgresLock::new(LockName::new(name).unwrap(), url).expect("lock")
}

/// The `pg_holder` example, built by `cargo test` beside the test binaries.
fn pg_holder_exe() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join("examples").join("pg_holder");
    assert!(
        path.exists(),
        "{} is missing: `cargo test --features postgres` builds it; with `--test postgres` alone \
         build it first: `cargo build --features postgres --example pg_holder`",
        path.display()
    );
    path
}

fn pg_holder(url: &str, name: &str, wait: Option<&str>) -> Proc {
    let mut cmd = Command::new(pg_holder_exe());
    cmd.arg(url).arg(name);
    if let Some(w) = wait {
        cmd.arg(w);
    }
    Proc::spawn(cmd)
}

fn this_host() -> String {
    nix::unistd::gethostname().unwrap().into_string().unwrap()
}

/// Polls `cond` until it holds, failing with `what` after 30 s. Used only to wait for server
/// state that has no event to wait on (a session blocked in pg_locks); not a sleep: it checks
/// the condition in a loop.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after 30 s waiting for {what}"
        );
        std::thread::yield_now();
    }
}

/// Sessions waiting (not granted) for the advisory key of `name`.
fn waiters(admin: &mut postgres::Client, name: &str) -> i64 {
    let key = lock("postgres://x@127.0.0.1/x", name).key() as u64;
    admin
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 1",
            &[&((key >> 32) as i64), &((key & 0xffff_ffff) as i64)],
        )
        .unwrap()
        .get(0)
}

/// Waits up to 60 s for the guard's loss descriptor to become readable.
fn loss_notified(guard: &onlyone::Guard) -> bool {
    let fd = guard
        .loss_fd()
        .expect("a postgres guard has a loss descriptor");
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    loop {
        match poll(&mut fds, PollTimeout::from(60_000u16)) {
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(n) => return n > 0,
            Err(e) => panic!("poll: {e}"),
        }
    }
}

#[test]
fn try_then_held_names_the_holder() {
    let server = server_or_skip!();
    let name = unique_name("pg-held");
    let mut child = pg_holder(&server.url(), &name, None);
    let line = child.line();
    assert!(
        line.starts_with(&format!("acquired {}", child.pid())),
        "{line}"
    );

    let contender = lock(&server.url(), &name);
    let holder = match contender.try_acquire().unwrap() {
        Acquire::Held(h) => h,
        Acquire::Acquired(_) => panic!("two holders: the child holds {name}"),
    };
    assert_eq!(holder.pid, Some(child.pid()), "{holder}");
    assert_eq!(
        holder.host.as_deref(),
        Some(this_host().as_str()),
        "{holder}"
    );
    assert_eq!(holder.kind, HolderKind::SameUser, "{holder}");
    assert_eq!(holder.command.as_deref(), Some("pg_holder test job"));
    assert!(holder.started.is_some(), "{holder}");
    let shown = holder.to_string();
    assert!(
        shown.contains(&format!("pid {}", child.pid())) && shown.contains(" on "),
        "{shown}"
    );

    // holder() names it too, without taking the lock.
    let looked_up = contender.holder().unwrap().expect("held");
    assert_eq!(looked_up.pid, Some(child.pid()));
    assert_eq!(
        child.ask("verify"),
        "ok",
        "the holder still holds after the look-ups"
    );

    assert_eq!(child.ask("release"), "released");
    assert_eq!(contender.holder().unwrap(), None);
    let guard = contender
        .try_acquire()
        .unwrap()
        .guard()
        .expect("free after release");
    assert_eq!(guard.backend(), BackendKind::Postgres);
    assert!(
        guard.resource().contains("advisory key"),
        "{}",
        guard.resource()
    );
    assert!(child.ask("try").starts_with("held "), "child sees our lock");
    drop(guard);
    assert!(
        child.ask("try").starts_with("acquired "),
        "dropping the guard releases"
    );
}

#[test]
fn holder_of_another_role_is_named() {
    let server = server_or_skip!();
    let name = unique_name("pg-role");
    let _guard = lock(&server.url(), &name)
        .try_acquire()
        .unwrap()
        .guard()
        .expect("free");
    let other = lock(&server.url_for(OTHER_ROLE, None, "postgres"), &name);
    let holder = other.holder().unwrap().expect("held");
    assert_eq!(holder.kind, HolderKind::OtherUser, "{holder}");
    assert_eq!(holder.pid, Some(std::process::id()), "{holder}");
    assert_eq!(holder.host.as_deref(), Some(this_host().as_str()));
}

#[test]
fn a_foreign_holder_is_reported_as_unidentified() {
    let server = server_or_skip!();
    let name = unique_name("pg-foreign");
    let ours = lock(&server.url(), &name);
    let mut foreign = server.admin();
    foreign
        .batch_execute("SET application_name = 'some other program'")
        .unwrap();
    foreign
        .execute("SELECT pg_advisory_lock($1)", &[&ours.key()])
        .unwrap();
    let holder = match ours.try_acquire().unwrap() {
        Acquire::Held(h) => h,
        Acquire::Acquired(_) => panic!("acquired a key held by another session"),
    };
    assert_eq!(holder.kind, HolderKind::Unidentified, "{holder}");
    assert_eq!(holder.pid, None);
    assert_eq!(holder.command.as_deref(), Some("some other program"));
    assert_eq!(holder.host.as_deref(), Some("127.0.0.1"), "{holder}");
}

#[test]
fn waiting_times_out_with_the_holder() {
    let server = server_or_skip!();
    let name = unique_name("pg-timeout");
    let _guard = lock(&server.url(), &name)
        .try_acquire()
        .unwrap()
        .guard()
        .expect("free");
    match lock(&server.url(), &name)
        .acquire_timeout(Some(Duration::from_millis(200)))
        .unwrap()
    {
        Acquire::Held(h) => assert_eq!(h.pid, Some(std::process::id()), "{h}"),
        Acquire::Acquired(_) => panic!("two holders"),
    }
}

#[test]
fn sigkilled_holder_is_replaced_by_a_waiter() {
    let server = server_or_skip!();
    let name = unique_name("pg-kill");
    let mut child = pg_holder(&server.url(), &name, None);
    let line = child.line();
    let token: u64 = line
        .strip_prefix(&format!("acquired {} ", child.pid()))
        .unwrap_or_else(|| panic!("child could not take a free lock: {line}"))
        .parse()
        .unwrap();

    let url = server.url();
    let waiter_name = name.clone();
    let waiter = std::thread::spawn(move || {
        lock(&url, &waiter_name)
            .acquire_timeout(Some(Duration::from_secs(60)))
            .unwrap()
    });
    let mut admin = server.admin();
    wait_until("the waiter to queue on the server", || {
        waiters(&mut admin, &name) == 1
    });
    child.kill();
    let guard = waiter
        .join()
        .unwrap()
        .guard()
        .expect("the waiter gets the lock once its holder is SIGKILLed");
    assert!(guard.fencing_token().unwrap() > token);
    guard.verify().unwrap();
}

#[test]
fn two_holders_never() {
    let server = server_or_skip!();
    let name = unique_name("pg-race");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("witness");
    const PROCS: usize = 4;
    const ROUNDS: usize = 15;
    let mut procs: Vec<Proc> = (0..PROCS)
        .map(|_| pg_holder(&server.url(), &name, Some("idle")))
        .collect();
    for p in &mut procs {
        assert_eq!(p.line(), "ready");
    }
    for p in &mut procs {
        p.send(&format!("cycle {ROUNDS} {}", file.display()));
    }
    for p in &mut procs {
        assert_eq!(p.line(), "cycled");
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2 * PROCS * ROUNDS, "{text}");
    let mut last_token = 0u64;
    for pair in lines.chunks(2) {
        let start: Vec<&str> = pair[0].split(' ').collect();
        let end: Vec<&str> = pair[1].split(' ').collect();
        assert_eq!(start[0], "start", "overlapping holders:\n{text}");
        assert_eq!(end[0], "end", "overlapping holders:\n{text}");
        assert_eq!(start[1..], end[1..], "overlapping holders:\n{text}");
        let token: u64 = start[2].parse().unwrap();
        assert!(
            token > last_token,
            "fencing tokens must grow in acquisition order:\n{text}"
        );
        last_token = token;
    }
}

#[test]
fn fencing_token_increases() {
    let server = server_or_skip!();
    let name = unique_name("pg-fence");
    let a = lock(&server.url(), &name);
    let b = lock(&server.url(), &name);
    let mut tokens = Vec::new();
    for l in [&a, &b, &a] {
        let g = l.try_acquire().unwrap().guard().expect("free");
        tokens.push(g.fencing_token().expect("a token"));
        g.release().unwrap();
    }
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
    let plain = lock(&server.url(), &name).without_fencing();
    let g = plain.try_acquire().unwrap().guard().expect("free");
    assert_eq!(g.fencing_token(), None);
}

#[test]
fn concurrent_first_acquisitions_create_the_table_once() {
    let server = server_or_skip!();
    // A database of its own, so that the fencing table does not exist yet.
    let db = format!("fence_race_{}", std::process::id());
    server
        .admin()
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .unwrap();
    let url = server.url_for("postgres", None, &db);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                let l = lock(&url, &format!("table-race-{i}"));
                barrier.wait();
                let g = l
                    .try_acquire()
                    .unwrap()
                    .guard()
                    .expect("distinct names are free");
                g.fencing_token().unwrap()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 1, "first acquisition of each name");
    }
}

#[test]
fn terminated_session_is_noticed() {
    let server = server_or_skip!();
    let name = unique_name("pg-terminate");
    let l = lock(&server.url(), &name).heartbeat(Duration::from_millis(50));
    let guard = l.try_acquire().unwrap().guard().expect("free");
    guard.verify().unwrap();
    let killed: bool = server
        .admin()
        .query_one(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' \
             AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND granted",
            &[
                &((l.key() as u64 >> 32) as i64),
                &((l.key() as u64 & 0xffff_ffff) as i64),
            ],
        )
        .unwrap()
        .get(0);
    assert!(killed);
    assert!(loss_notified(&guard), "the loss descriptor must fire");
    let err = guard.verify().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Lost, "{err}");
    assert!(err.to_string().contains(&name), "{err}");
    let err = guard.release().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Lost, "{err}");
}

#[test]
fn server_restart_loses_the_lock() {
    // Restarting cuts every session: a server of its own, not the shared one.
    if PgServer::shared().is_none() {
        return;
    }
    let server = PgServer::start().expect("server");
    let name = unique_name("pg-restart");
    let mut child = pg_holder(&server.url(), &name, None);
    assert!(child.line().starts_with("acquired "));
    let guard = lock(&server.url(), &format!("{name}-2"))
        .try_acquire()
        .unwrap()
        .guard()
        .expect("free");
    server.restart();
    assert!(loss_notified(&guard), "the loss descriptor must fire");
    let err = guard.verify().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Lost, "{err}");
    // The other holder learns it too (heartbeat every second by default).
    assert_eq!(child.ask("loss-wait 60"), "loss-notified");
    assert!(
        child.ask("verify").starts_with("lost "),
        "verify after restart"
    );
    // The restart freed the lock.
    assert!(
        lock(&server.url(), &name)
            .try_acquire()
            .unwrap()
            .is_acquired(),
        "a restart frees every lock"
    );
    drop(child);
    drop(server);
}

/// The blocked-signal masks (SigBlk) of this process's threads named `comm`.
fn thread_masks(comm: &str) -> Vec<u64> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == comm)
        })
        .filter_map(|t| {
            let status = std::fs::read_to_string(t.path().join("status")).ok()?;
            let mask = status.lines().find_map(|l| l.strip_prefix("SigBlk:"))?;
            u64::from_str_radix(mask.trim(), 16).ok()
        })
        .collect()
}

#[test]
fn the_heartbeat_thread_takes_no_signals() {
    // A program that waits for SIGCHLD on a signalfd (the onlyone CLI does) blocks it in its
    // threads; a heartbeat thread that did not would swallow it and the program would hang.
    let server = server_or_skip!();
    let name = unique_name("pg-sigmask");
    let _guard = lock(&server.url(), &name)
        .try_acquire()
        .unwrap()
        .guard()
        .expect("free");
    // The thread names itself when it first runs (comm keeps 15 bytes).
    let mut masks = Vec::new();
    wait_until("the session thread to name itself", || {
        masks = thread_masks("onlyone-pg-sess");
        !masks.is_empty()
    });
    for sig in [
        libc_signal(nix::sys::signal::Signal::SIGCHLD),
        libc_signal(nix::sys::signal::Signal::SIGTERM),
    ] {
        for mask in &masks {
            assert!(
                mask & (1 << (sig - 1)) != 0,
                "signal {sig} not blocked: {mask:x}"
            );
        }
    }
}

fn libc_signal(s: nix::sys::signal::Signal) -> u32 {
    s as i32 as u32
}

/// The keepalive timer of the TCP socket from 127.0.0.1:`local` to 127.0.0.1:`remote`, in
/// seconds, from /proc/net/tcp (`tr` 2 is the keepalive timer; `tm->when` is in USER_HZ ticks).
fn keepalive_timer(local: u16, remote: u16) -> Option<f64> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let (l, r) = (
        format!("0100007F:{local:04X}"),
        format!("0100007F:{remote:04X}"),
    );
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(1) != Some(&l.as_str()) || f.get(2) != Some(&r.as_str()) {
            return None;
        }
        let (tr, when) = f.get(5)?.split_once(':')?;
        (tr == "02").then(|| u64::from_str_radix(when, 16).ok().map(|t| t as f64 / 100.0))?
    })
}

#[test]
fn keepalives_are_set_on_both_sides() {
    let server = server_or_skip!();
    let name = unique_name("pg-keepalive");
    // No heartbeat during the test: the sockets stay idle, their keepalive timers armed.
    let l = lock(&server.url(), &name).heartbeat(Duration::from_secs(3600));
    let _guard = l.try_acquire().unwrap().guard().expect("free");
    let client_port: i32 = server
        .admin()
        .query_one(
            "SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted \
             AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid",
            &[
                &((l.key() as u64 >> 32) as i64),
                &((l.key() as u64 & 0xffff_ffff) as i64),
            ],
        )
        .unwrap()
        .get(0);
    let client_port = u16::try_from(client_port).unwrap();
    // Default Linux keepalive: 7200 s idle. onlyone sets 5 s on both ends. Right after a reply
    // a socket may still wait for its (delayed) ACK under the retransmit timer: wait for the
    // keepalive timer to be armed.
    for (local, remote, side) in [
        (server.port, client_port, "server"),
        (client_port, server.port, "client"),
    ] {
        let mut timer = None;
        wait_until(&format!("the {side} side's keepalive timer"), || {
            timer = keepalive_timer(local, remote);
            timer.is_some()
        });
        let secs = timer.unwrap();
        assert!(secs <= 5.0, "{side} side keepalive due in {secs} s");
    }
}

#[test]
fn vanished_peers_are_noticed_within_seconds() {
    if PgServer::shared().is_none() {
        return;
    }
    let ns = match pg::NetNs::create() {
        Ok(ns) => ns,
        Err(why) => {
            use std::io::Write;
            let _ = std::io::stderr().write_all(
                format!(
                    "\n!!! vanished_peers_are_noticed_within_seconds SKIPPED: cannot make a \
                     network namespace ({why}); it needs root and iproute2's `ip`.\n"
                )
                .as_bytes(),
            );
            return;
        }
    };
    let server = PgServer::start_also_on(&ns.host_addr, &ns.network).expect("server");
    let name = unique_name("pg-vanish");
    // The holder runs in the namespace, a machine of its own as far as TCP is concerned.
    let mut cmd = ns.command(&pg_holder_exe());
    cmd.arg(format!(
        "postgres://postgres@{}:{}/postgres",
        ns.host_addr, server.port
    ))
    .arg(&name);
    let mut holder = Proc::spawn(cmd);
    let line = holder.line();
    assert!(
        line.starts_with(&format!("acquired {} ", holder.pid())),
        "{line}"
    );
    let contender = lock(&server.url(), &name);
    assert_eq!(
        contender.holder().unwrap().and_then(|h| h.pid),
        Some(holder.pid())
    );

    // The holder's machine vanishes: the process stops and its address goes, so nothing answers
    // the server any more. No FIN, no reset: silence, which only keepalives can detect.
    let pid = nix::unistd::Pid::from_raw(holder.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let addr = format!("{}/30", ns.ns_addr);
    ns.ip_in(&["addr", "del", &addr, "dev", &ns.peer]).unwrap();
    let start = Instant::now();
    let got = contender
        .acquire_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    // Informational (run with --nocapture); expected about 10 s with onlyone's settings.
    eprintln!(
        "the vanished holder's lock was released after {:.1?}",
        start.elapsed()
    );
    assert!(
        got.is_acquired(),
        "the server kept a vanished holder's lock for a minute (system keepalive: 2 hours)"
    );

    // The machine comes back: the holder learns that it lost the lock.
    ns.ip_in(&["addr", "add", &addr, "dev", &ns.peer]).unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert_eq!(holder.ask("loss-wait 60"), "loss-notified");
    assert!(holder.ask("verify").starts_with("lost "));

    // Now the server vanishes from the holder's view: its address goes, the holder's packets
    // meet silence. The heartbeat's next query is never acknowledged: TCP_USER_TIMEOUT ends it.
    got.guard().expect("acquired").release().unwrap();
    assert!(holder.ask("try").starts_with("acquired "));
    let host_addr = format!("{}/30", ns.host_addr);
    ns.ip(&["addr", "del", &host_addr, "dev", &ns.host_if])
        .unwrap();
    let start = Instant::now();
    assert_eq!(holder.ask("loss-wait 60"), "loss-notified");
    eprintln!(
        "the holder noticed the vanished server after {:.1?}",
        start.elapsed()
    );
    assert!(holder.ask("verify").starts_with("lost "));
    drop(holder);
    drop(server);
    drop(ns);
}

#[test]
fn bad_url_is_invalid_input_without_the_password() {
    for url in [
        "postgres://u:hunter2@host:notaport/db",
        "host=x port=y password=hunter2",
    ] {
        let err = PostgresLock::new(LockName::new("x").unwrap(), url).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        let text = err.to_string();
        assert!(text.contains("invalid database URL"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}

#[test]
fn server_down_is_a_connection_error() {
    // A port nobody listens on: bound and closed again.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://app:hunter2@127.0.0.1:{port}/db");
    let l = lock(&url, "down");
    for result in [l.try_acquire().map(|_| ()), l.holder().map(|_| ())] {
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
        let text = err.to_string();
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        assert!(text.contains("\"down\""), "names the lock: {text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(err.io_error().kind(), std::io::ErrorKind::ConnectionRefused);
    }
}

#[test]
fn authentication_failure_is_a_clear_connection_error() {
    let server = server_or_skip!();
    let name = unique_name("pg-auth");
    let wrong = lock(
        &server.url_for(PASSWORD_ROLE, Some("wrong-horse"), "postgres"),
        &name,
    );
    let err = wrong.try_acquire().map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    let text = err.to_string();
    assert!(text.contains("authentication failed"), "{text}");
    assert!(text.contains(PASSWORD_ROLE), "{text}");
    assert!(!text.contains("wrong-horse"), "{text}");
    // The right password works (and proves the role exists).
    let right = lock(
        &server.url_for(PASSWORD_ROLE, Some(PASSWORD), "postgres"),
        &name,
    )
    .without_fencing();
    assert!(right.try_acquire().unwrap().is_acquired());
}

#[test]
fn builder_takes_a_database_url() {
    let server = server_or_skip!();
    let name = unique_name("pg-builder");
    let l = Builder::new(&name)
        .backend(BackendKind::Postgres)
        .database_url(server.url())
        .build()
        .unwrap();
    assert_eq!(l.backend(), BackendKind::Postgres);
    assert!(format!("{l:?}").contains("127.0.0.1"));
    let g = l.try_acquire().unwrap().guard().expect("free");
    assert!(g.fencing_token().is_some());
    if std::env::var_os("DATABASE_URL").is_none() {
        let err = Builder::new(&name)
            .backend(BackendKind::Postgres)
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    }
}

#[test]
fn debug_output_hides_the_password() {
    let l = lock("postgres://app:hunter2@db.example/jobs", "dbg");
    let shown = format!("{l:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("db.example"), "{shown}");
    let built = Builder::new("dbg")
        .backend(BackendKind::Postgres)
        .database_url("postgres://app:hunter2@db.example/jobs");
    assert!(!format!("{built:?}").contains("hunter2"));
}

#[test]
fn usable_inside_an_async_runtime() {
    // The sync postgres client runs a runtime of its own; called on a thread that drives another
    // runtime it must not try to nest them (that panics).
    let server = server_or_skip!();
    let name = unique_name("pg-in-runtime");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let l = lock(&server.url(), &name);
        let guard = l.try_acquire().unwrap().guard().expect("free");
        guard.verify().unwrap();
        let other = lock(&server.url(), &name);
        assert!(other.holder().unwrap().is_some());
        assert!(
            !other
                .acquire_timeout(Some(Duration::from_millis(50)))
                .unwrap()
                .is_acquired()
        );
        guard.release().unwrap();
        drop(l.try_acquire().unwrap().guard().expect("free again"));
    });
}

/// The async wait (`onlyone::asynchronous::acquire`, feature `tokio`) with a postgres lock: the
/// backend has no wake-up descriptor, so the wait retries with a backoff.
#[cfg(feature = "tokio")]
#[test]
fn async_acquire_gets_the_lock_when_its_holder_dies() {
    let server = server_or_skip!();
    let name = unique_name("pg-async");
    let mut child = pg_holder(&server.url(), &name, None);
    assert!(child.line().starts_with("acquired "));
    let l = lock(&server.url(), &name);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let held = rt
        .block_on(onlyone::asynchronous::acquire(
            &l,
            Some(Duration::from_millis(20)),
        ))
        .unwrap();
    assert_eq!(held.holder().and_then(|h| h.pid), Some(child.pid()));
    child.kill();
    let guard = rt
        .block_on(onlyone::asynchronous::acquire(
            &l,
            Some(Duration::from_secs(60)),
        ))
        .unwrap()
        .guard()
        .expect("the lock once its holder is SIGKILLed");
    guard.verify().unwrap();
}

/// Whether the session of the onlyone process `pid` uses TLS (`pg_stat_ssl`).
#[cfg(feature = "postgres-tls")]
fn session_uses_tls(admin: &mut postgres::Client, pid: u32) -> bool {
    let pattern = format!("onlyone {pid} %");
    admin
        .query_one(
            "SELECT coalesce(bool_or(s.ssl), false) FROM pg_stat_ssl s \
             JOIN pg_stat_activity a ON a.pid = s.pid WHERE a.application_name LIKE $1",
            &[&pattern],
        )
        .unwrap()
        .get(0)
}

/// sslmode=verify-full against a server whose certificate a CA of the test signed: accepted for
/// the host it names, refused with a wrong CA and with a wrong host name; verify-ca ignores the
/// name; require takes TLS without a root certificate.
#[cfg(feature = "postgres-tls")]
#[test]
fn tls_verify_full_accepts_the_right_server_and_refuses_others() {
    let Some(server) = PgServer::shared_tls() else {
        return;
    };
    let ca = server.dir.join("ca.crt");
    let other_ca = server.dir.join("other-ca.crt");
    let url = |host: &str, mode: &str, root: &Path| {
        format!(
            "host={host} hostaddr=127.0.0.1 port={} user=postgres dbname=postgres \
             sslmode={mode} sslrootcert={}",
            server.port,
            root.display()
        )
    };
    let name = unique_name("pg-tls");
    let mut admin = server.admin();

    let l = lock(&url(TLS_HOST, "verify-full", &ca), &name);
    assert_eq!(l.ssl_mode(), onlyone::SslMode::VerifyFull);
    let g = l.try_acquire().unwrap().guard().expect("free");
    assert!(session_uses_tls(&mut admin, std::process::id()));
    drop(g);

    let err = lock(&url(TLS_HOST, "verify-full", &other_ca), &name)
        .try_acquire()
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    let text = err.to_string();
    assert!(text.contains("not signed by a CA"), "{text}");
    assert!(
        text.contains("verify-full") && text.contains(TLS_HOST),
        "{text}"
    );

    let err = lock(&url("wrong.test", "verify-full", &ca), &name)
        .try_acquire()
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    let text = err.to_string();
    assert!(text.contains("does not name the host"), "{text}");
    assert!(text.contains("wrong.test"), "{text}");

    // verify-ca: the CA counts, the name does not; the wrong CA is still refused.
    let g = lock(&url("wrong.test", "verify-ca", &ca), &name)
        .try_acquire()
        .unwrap()
        .guard()
        .expect("free");
    drop(g);
    assert!(
        lock(&url(TLS_HOST, "verify-ca", &other_ca), &name)
            .try_acquire()
            .is_err()
    );
    // require without a root certificate file: TLS, unchecked.
    let plain = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=require",
        server.port
    );
    let g = lock(&plain, &name)
        .try_acquire()
        .unwrap()
        .guard()
        .expect("free");
    assert!(session_uses_tls(&mut admin, std::process::id()));
    drop(g);
    // A missing root certificate file is named before any connection.
    let err = PostgresLock::new(
        LockName::new(&name).unwrap(),
        &url(TLS_HOST, "verify-full", &server.dir.join("missing.crt")),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("missing.crt"), "{err}");
}

/// sslmode=require against a server without TLS is refused with that reason.
#[test]
fn require_against_a_plain_server_is_refused() {
    let server = server_or_skip!();
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=require",
        server.port
    );
    match PostgresLock::new(LockName::new("tls-plain").unwrap(), &url) {
        Ok(l) => {
            let err = l.try_acquire().map(|_| ()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
            assert!(err.to_string().contains("does not offer TLS"), "{err}");
        }
        // A build without TLS refuses it when the lock is made.
        Err(err) => {
            if cfg!(feature = "postgres-tls") {
                panic!("a build with TLS refused sslmode=require: {err}");
            }
            assert!(err.to_string().contains("postgres-tls"), "{err}");
        }
    }
}
