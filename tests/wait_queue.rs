//! The line of waiters (src/queue.rs) and the abstract holder's draining listener, with real
//! processes:
//! - N waiters per backend: one holder at a time, everybody acquires, and the waiters' wake-ups
//!   (voluntary context switches) stay near one per hand-over, where a herd makes them grow with N;
//! - a flock or PID-file waiter whose user has no inotify instance left sleeps without a timer;
//! - many contenders connecting and leaving against an abstract holder: lookups stay right, the
//!   holder's descriptors do not grow, the waiters sleep on;
//! - an onlyone built before this design (`ONLYONE_OLD_BINARY`) waiting on a new holder, and the
//!   other way round.
//!
//! Scale: `ONLYONE_TEST_SCALE=full` (CI) for 64 waiters and 100,000 contenders.

#![cfg(any(target_os = "linux", target_os = "android"))]

mod common;
mod reliability_common;

use std::os::fd::{AsFd, AsRawFd};
use std::process::Command;

use common::{
    Proc, backends, holder_exe, lock, parse_outcome, unique_name, wait_until_sleeping_in_poll,
};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use onlyone::{Acquire, BackendKind, Lock};
use reliability_common::{need_root, scale_name, scaled};

/// Voluntary context switches of process `pid` (its main thread): each is one sleep.
fn voluntary_switches(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/status"))
        .unwrap_or_else(|e| panic!("status of {pid}: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches")
}

/// Number of open descriptors of process `pid`.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or_else(|e| panic!("fds of {pid}: {e}"))
}

/// The index of the first process whose stdout has a line to read; blocks until one has (a
/// minute at most: a lost wake-up fails rather than hangs).
fn first_readable(procs: &[Proc], skip: &[bool]) -> usize {
    let mut fds: Vec<PollFd<'_>> = procs
        .iter()
        .map(|p| PollFd::new(p.stdout_fd(), PollFlags::POLLIN))
        .collect();
    let n = poll(&mut fds, PollTimeout::from(60_000u16)).expect("poll");
    assert!(n > 0, "no waiter acquired within a minute of a release");
    (0..procs.len())
        .find(|&i| !skip[i] && fds[i].any().unwrap_or(false))
        .expect("a readable waiter")
}

#[test]
fn waiters_take_turns_with_about_one_wake_up_each() {
    let n = scaled(64, 24);
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let name = unique_name(&format!("turns-{backend}"));
        let mut holder = Proc::holder(backend, &name, dir.path(), None);
        assert!(parse_outcome(&holder.line()).0, "{backend}: free lock");
        let mut waiters: Vec<Proc> = (0..n)
            .map(|_| Proc::holder(backend, &name, dir.path(), Some("inf")))
            .collect();
        let mut before = Vec::new();
        for w in &waiters {
            wait_until_sleeping_in_poll(w.pid());
            before.push(voluntary_switches(w.pid()));
        }
        assert_eq!(holder.ask("release"), "released");
        let mut done = vec![false; n];
        let mut wakes = 0;
        for turn in 0..n {
            let i = first_readable(&waiters, &done);
            let pid = waiters[i].pid();
            assert_eq!(
                parse_outcome(&waiters[i].line()),
                (true, Some(pid)),
                "{backend}: turn {turn}"
            );
            done[i] = true;
            // It sleeps on its standard input now: count its wake-ups while waiting.
            wait_until_blocked(pid);
            wakes += voluntary_switches(pid) - before[i];
            // Nobody else may have acquired while it holds.
            let mut others: Vec<PollFd<'_>> = waiters
                .iter()
                .enumerate()
                .filter(|(j, _)| !done[*j])
                .map(|(_, p)| PollFd::new(p.stdout_fd(), PollFlags::POLLIN))
                .collect();
            let early = poll(&mut others, PollTimeout::ZERO).expect("poll");
            assert_eq!(early, 0, "{backend}: a second holder during turn {turn}");
            assert_eq!(waiters[i].ask("release"), "released");
        }
        // A herd wakes every waiter at every release: about n/2 wake-ups per waiter. The line
        // wakes each about once (twice when it became the head before the lock was free).
        println!(
            "{backend}: {n} waiters, {wakes} wake-ups while waiting ({:.2} per hand-over, \
             {} scale)",
            wakes as f64 / n as f64,
            scale_name()
        );
        // The portable build has no line of waiters (like macOS and the BSDs): a herd there.
        if !onlyone::os::PORTABLE_BUILD {
            assert!(
                wakes <= 3 * n as u64 + 4,
                "{backend}: {wakes} wake-ups for {n} hand-overs: a herd"
            );
        }
    }
}

/// A waiter queued behind another still keeps its deadline, answers with the holder, and leaves
/// the line: the waiter behind it then queues behind the one ahead, and gets the lock in turn.
/// The portable build has no line (like macOS and the BSDs): there either waiter may go first,
/// and only one holder at a time is asserted.
#[test]
fn a_queued_waiter_keeps_its_deadline() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let name = unique_name(&format!("queued-deadline-{backend}"));
        let mut holder = Proc::holder(backend, &name, dir.path(), None);
        let (acquired, holder_pid) = parse_outcome(&holder.line());
        assert!(acquired, "{backend}: free lock");
        let first = Proc::holder(backend, &name, dir.path(), Some("inf"));
        wait_until_sleeping_in_poll(first.pid());
        let mut timed = Proc::holder(backend, &name, dir.path(), Some("0.3"));
        wait_until_sleeping_in_poll(timed.pid());
        let last = Proc::holder(backend, &name, dir.path(), Some("inf"));
        wait_until_sleeping_in_poll(last.pid());
        let last_asleep = voluntary_switches(last.pid());
        let timed_answer = {
            let one = std::slice::from_ref(&timed);
            first_readable(one, &[false]);
            timed.line()
        };
        if !onlyone::os::PORTABLE_BUILD {
            // The timed waiter's slot closed: the one behind it wakes, tries, and queues behind
            // `first`. Released before it is back asleep, its try could win (the line decides
            // who sleeps on what, not who gets the lock): wait for that.
            wait_until_asleep_again(last.pid(), last_asleep);
        }
        assert_eq!(
            parse_outcome(&timed_answer),
            (false, holder_pid),
            "{backend}: a queued waiter past its deadline names the holder"
        );
        assert_eq!(holder.ask("release"), "released");
        let mut queued = [first, last];
        let mut done = [false, false];
        let winner = first_readable(&queued, &done);
        if !onlyone::os::PORTABLE_BUILD {
            assert_eq!(winner, 0, "{backend}: the waiter behind jumped the line");
        }
        let pid = queued[winner].pid();
        assert_eq!(
            parse_outcome(&queued[winner].line()),
            (true, Some(pid)),
            "{backend}"
        );
        done[winner] = true;
        let other = 1 - winner;
        let mut early = [PollFd::new(queued[other].stdout_fd(), PollFlags::POLLIN)];
        assert_eq!(
            poll(&mut early, PollTimeout::ZERO).expect("poll"),
            0,
            "{backend}: two holders"
        );
        assert_eq!(queued[winner].ask("release"), "released");
        assert_eq!(first_readable(&queued, &done), other, "{backend}");
        let pid = queued[other].pid();
        assert_eq!(
            parse_outcome(&queued[other].line()),
            (true, Some(pid)),
            "{backend}"
        );
    }
}

/// Waits until process `pid`, which had slept `before` times, has slept again and sleeps in
/// poll(2) now: it was woken, did what it does, and went back to waiting (a minute at most).
fn wait_until_asleep_again(pid: u32, before: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if voluntary_switches(pid) > before {
            wait_until_sleeping_in_poll(pid);
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{pid} was never woken (it sleeps on the waiter that left)"
        );
        std::thread::yield_now();
    }
}

/// Waits until process `pid` sleeps (state S) outside poll: blocked reading its orders.
fn wait_until_blocked(pid: u32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        // x86_64 read = 0, aarch64 read = 63.
        let nr = text.split(' ').next().unwrap_or("");
        let reading = if cfg!(target_arch = "x86_64") {
            nr == "0"
        } else {
            nr == "63"
        };
        if reading {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{pid} never went back to reading"
        );
        std::thread::yield_now();
    }
}

/// Whether process `pid` sleeps in poll(2) or ppoll(2) with no timeout.
fn polls_without_timeout(pid: u32) -> (bool, String) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    let args: Vec<&str> = text.split(' ').collect();
    let endless = match args.first().copied() {
        // poll(fds, nfds, timeout): -1.
        Some("7") if cfg!(target_arch = "x86_64") => args
            .get(3)
            .is_some_and(|t| *t == "0xffffffff" || *t == "0xffffffffffffffff"),
        // ppoll(fds, nfds, tmo_p, ...): NULL.
        Some("271") if cfg!(target_arch = "x86_64") => args.get(3) == Some(&"0x0"),
        Some("73") if cfg!(target_arch = "aarch64") => args.get(3) == Some(&"0x0"),
        _ => false,
    };
    (endless, text)
}

/// A uid no process runs as here, for a user whose inotify instances this test uses up.
fn spare_uid() -> u32 {
    let used: std::collections::HashSet<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(onlyone::process::uid_of)
        .collect();
    (61_000..62_000)
        .find(|u| !used.contains(u))
        .expect("a spare uid")
}

#[test]
fn file_waiters_without_inotify_sleep_without_a_timer() {
    if !need_root("using up a spare uid's inotify instances") {
        return;
    }
    if onlyone::os::PORTABLE_BUILD {
        eprintln!(
            "\n*** SKIPPED: the portable build's waiters back off without inotify (as on the BSDs) ***\n"
        );
        return;
    }
    for backend in [BackendKind::Flock, BackendKind::PidFile] {
        if backend.is_available() {
            waiter_without_inotify(backend);
        }
    }
}

/// A holder and a waiter of `backend`, both of a spare uid whose inotify instances the waiter
/// has all taken before it starts.
fn waiter_without_inotify(backend: BackendKind) {
    let uid = spare_uid();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let name = unique_name(&format!("no-inotify-{backend}"));
    let as_spare = |wait: Option<&str>, hog: bool| {
        let mut cmd = Command::new(holder_exe());
        cmd.arg(backend.as_str()).arg(&name).arg(dir.path());
        if let Some(w) = wait {
            cmd.arg(w);
        }
        std::os::unix::process::CommandExt::uid(&mut cmd, uid);
        std::os::unix::process::CommandExt::gid(&mut cmd, uid);
        if hog {
            // SAFETY: runs in the child between fork and exec, after the uid change; it only
            // makes system calls (inotify_init1(2)) and leaves their descriptors open for exec.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                    while let Ok(fd) =
                        nix::sys::inotify::Inotify::init(nix::sys::inotify::InitFlags::empty())
                    {
                        std::mem::forget(fd);
                    }
                    Ok(())
                });
            }
        }
        Proc::spawn(cmd)
    };
    let mut holder = as_spare(None, false);
    assert!(parse_outcome(&holder.line()).0, "{backend}: free lock");
    let mut waiter = as_spare(Some("inf"), true);
    let pid = waiter.pid();
    let inotify_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter(|e| {
            e.as_ref().is_ok_and(|e| {
                std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("inotify"))
            })
        })
        .count();
    assert!(inotify_fds > 0, "the waiter holds its user's instances");
    wait_until_sleeping_in_poll(pid);
    let (endless, syscall) = polls_without_timeout(pid);
    assert!(
        endless,
        "{backend}: with {inotify_fds} inotify instances in use the waiter sleeps on a timer: \
         {syscall}"
    );
    let before = voluntary_switches(pid);
    // Contenders come and go; the sleeping waiter is not woken by them.
    let contender = lock(backend, &name, dir.path());
    for _ in 0..50 {
        assert!(!contender.try_acquire().unwrap().is_acquired());
    }
    assert_eq!(
        voluntary_switches(pid),
        before,
        "woken while the lock is held"
    );
    assert_eq!(holder.ask("release"), "released");
    assert_eq!(
        parse_outcome(&waiter.line()),
        (true, Some(pid)),
        "{backend}"
    );
}

#[test]
fn abstract_holder_drains_contenders_and_lookups_stay_right() {
    if !BackendKind::AbstractSocket.is_available() {
        eprintln!("\n*** SKIPPED: no abstract socket backend in this build ***\n");
        return;
    }
    let contenders = scaled(100_000, 10_000);
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name("drain");
    let mut holder = Proc::holder(BackendKind::AbstractSocket, &name, dir.path(), None);
    let (acquired, holder_pid) = parse_outcome(&holder.line());
    assert!(acquired);
    let waiters: Vec<Proc> = (0..4)
        .map(|_| Proc::holder(BackendKind::AbstractSocket, &name, dir.path(), Some("inf")))
        .collect();
    let mut asleep = Vec::new();
    for w in &waiters {
        wait_until_sleeping_in_poll(w.pid());
        asleep.push(voluntary_switches(w.pid()));
    }
    let hpid = holder.pid();
    let fds_before = fd_count(hpid);
    let lock = lock(BackendKind::AbstractSocket, &name, dir.path());
    let addr = nix::sys::socket::UnixAddr::new_abstract(
        lock.resource().trim_start_matches('@').as_bytes(),
    )
    .unwrap();
    let mut full = 0;
    for i in 0..contenders {
        // A contender connects, reads who holds the lock, and leaves.
        let fd = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_NONBLOCK | nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        match nix::sys::socket::connect(fd.as_raw_fd(), &addr) {
            Ok(()) => {
                let cred = nix::sys::socket::getsockopt(
                    &fd.as_fd(),
                    nix::sys::socket::sockopt::PeerCredentials,
                )
                .unwrap();
                assert_eq!(cred.pid() as u32, hpid);
            }
            Err(nix::errno::Errno::EAGAIN) => full += 1,
            Err(e) => panic!("connect: {e}"),
        }
        drop(fd);
        if i % 1000 == 0 {
            match lock.try_acquire().unwrap() {
                Acquire::Held(h) => assert_eq!(h.pid, holder_pid, "{h}"),
                Acquire::Acquired(_) => panic!("acquired a held lock"),
            }
            let h = lock.holder().unwrap().expect("held");
            assert_eq!(h.pid, holder_pid, "{h}");
        }
    }
    // The holder closes what the contenders left; its descriptors come back to where they were
    // (a minute at most, so that a leak fails rather than hangs).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while fd_count(hpid) > fds_before + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "holder has {} descriptors after {contenders} contenders, {fds_before} before",
            fd_count(hpid)
        );
        std::thread::yield_now();
    }
    println!(
        "{contenders} contenders ({} scale): {full} met a full backlog; holder fds {fds_before} -> {}",
        scale_name(),
        fd_count(hpid)
    );
    // A holder that never accepts fills its backlog after somaxconn (4,096) contenders, and it
    // stays full for good. This loop connects faster than any real contender (no bind, no /proc),
    // so on a loaded machine the draining thread can fall behind for a while (the count above is
    // a figure, not a verdict); once it has caught up, the backlog is empty again.
    let catch_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let fd = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_NONBLOCK | nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        match nix::sys::socket::connect(fd.as_raw_fd(), &addr) {
            Ok(()) => break,
            Err(nix::errno::Errno::EAGAIN) => {
                assert!(
                    std::time::Instant::now() < catch_up,
                    "the holder's backlog stayed full after {contenders} contenders"
                );
                std::thread::yield_now();
            }
            Err(e) => panic!("connect: {e}"),
        }
    }
    for (w, before) in waiters.iter().zip(&asleep) {
        assert_eq!(
            voluntary_switches(w.pid()),
            *before,
            "waiter {} woke while the lock was held",
            w.pid()
        );
    }
    assert_eq!(holder.ask("release"), "released");
}

/// The old onlyone binary (`ONLYONE_OLD_BINARY`, built by .ci/run from commit c5b1b51), when set.
fn old_binary() -> Option<std::ffi::OsString> {
    let old = std::env::var_os("ONLYONE_OLD_BINARY");
    if old.is_none() {
        eprintln!(
            "\n*** SKIPPED: ONLYONE_OLD_BINARY is not set (.ci/run builds onlyone at c5b1b51) ***\n"
        );
    }
    old
}

fn old_run(
    old: &std::ffi::OsStr,
    backend: BackendKind,
    name: &str,
    dir: &std::path::Path,
) -> Command {
    let mut cmd = Command::new(old);
    cmd.arg("run")
        .arg("-N")
        .arg(name)
        .arg("--backend")
        .arg(backend.as_str())
        .arg("--lock-dir")
        .arg(dir);
    cmd
}

#[test]
fn old_waiter_on_a_new_holder_sleeps_and_acquires() {
    let Some(old) = old_binary() else { return };
    for backend in [BackendKind::AbstractSocket, BackendKind::Flock] {
        if !backend.is_available() {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let name = unique_name(&format!("old-waits-{backend}"));
        let mut holder = Proc::holder(backend, &name, dir.path(), None);
        assert!(parse_outcome(&holder.line()).0);
        let mut cmd = old_run(&old, backend, &name, dir.path());
        cmd.arg("--wait").arg("3600").arg("--").arg("true");
        let mut waiter = Proc::spawn(cmd);
        wait_until_sleeping_in_poll(waiter.pid());
        let before = voluntary_switches(waiter.pid());
        // The new holder accepts and closes the contenders' connections: the old waiter's own
        // connection stays open, so it does not wake.
        let contender = lock(backend, &name, dir.path());
        for _ in 0..200 {
            assert!(!contender.try_acquire().unwrap().is_acquired());
            assert!(contender.holder().unwrap().is_some());
        }
        assert_eq!(
            voluntary_switches(waiter.pid()),
            before,
            "{backend}: the old waiter woke while the lock was held"
        );
        assert_eq!(holder.ask("release"), "released");
        let status = waiter.wait();
        assert!(status.success(), "{backend}: old waiter: {status}");
    }
}

#[test]
fn new_waiter_on_an_old_holder_acquires_on_release() {
    let Some(old) = old_binary() else { return };
    for backend in [BackendKind::AbstractSocket, BackendKind::Flock] {
        if !backend.is_available() {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let name = unique_name(&format!("new-waits-{backend}"));
        let mut cmd = old_run(&old, backend, &name, dir.path());
        // The job reads one line: it holds until the test writes it.
        cmd.arg("--").arg("sh").arg("-c").arg("read x");
        let mut old_holder = Proc::spawn(cmd);
        let probe = lock(backend, &name, dir.path());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while probe.holder().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the old holder never took the lock"
            );
            std::thread::yield_now();
        }
        let mut waiter = Proc::holder(backend, &name, dir.path(), Some("inf"));
        wait_until_sleeping_in_poll(waiter.pid());
        old_holder.write(b"go\n");
        let status = old_holder.wait();
        assert!(status.success(), "{backend}: old holder: {status}");
        assert_eq!(
            parse_outcome(&waiter.line()),
            (true, Some(waiter.pid())),
            "{backend}"
        );
    }
}
