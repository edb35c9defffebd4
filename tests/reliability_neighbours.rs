//! Hostile neighbours: another uid squatting on the abstract name (listening or not), 100k
//! contenders coming and going against one holder, and a neighbour that used up the inotify
//! instances a waiter needs.

// The Unix suite: Windows has its own (tests/windows.rs).
#![cfg(unix)]

mod common;
mod reliability_common;

use std::os::unix::process::CommandExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{
    Proc, backends, holder_exe, lock, parse_outcome, unique_name, wait_until_sleeping_in_poll,
};
use onlyone::{Acquire, BackendKind, Builder, HolderKind, Lock};
use reliability_common::{
    NOBODY, Watchdog, fd_count, figure, holder_exe_for_everyone, in_ci, need_root, scaled,
};

/// Far beyond any healthy wait: a test that gets there has hung.
const HANG: Duration = Duration::from_secs(20);

/// A holder example in a user namespace whose inotify instance limit is 0: every
/// `inotify_init1` fails with `EMFILE`, as it does for every process of a user whose processes
/// already hold `fs.inotify.max_user_instances` (128) instances. `None` when user namespaces are
/// not available (a loud skip; a failure in CI).
fn holder_without_inotify(backend: BackendKind, name: &str, dir: &Path) -> Option<Proc> {
    let probe = Command::new("unshare")
        .args([
            "-U",
            "-r",
            "sh",
            "-c",
            "echo 0 > /proc/sys/user/max_inotify_instances",
        ])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        assert!(!in_ci(), "unshare -U -r is not possible here, and CI=true");
        eprintln!("\n*** SKIPPED: no user namespaces (unshare -U -r) to take inotify away ***\n");
        return None;
    }
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-U",
        "-r",
        "sh",
        "-c",
        "echo 0 > /proc/sys/user/max_inotify_instances && exec \"$0\" \"$@\"",
    ])
    .arg(holder_exe())
    .arg(backend.as_str())
    .arg(name)
    .arg(dir)
    .arg("idle");
    let mut p = Proc::spawn(cmd);
    assert_eq!(p.line(), "ready");
    Some(p)
}

/// A waiter that cannot watch the lock file (no inotify instance to be had) must still notice a
/// holder that releases and lives on; it may not rely on the holder's death alone.
#[test]
fn a_waiter_without_inotify_still_sees_a_plain_release() {
    for backend in [BackendKind::Flock, BackendKind::PidFile] {
        if !backend.is_available() {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let name = unique_name(&format!("noinotify-{backend}"));
        let mut holder = Proc::holder(backend, &name, dir.path(), None);
        assert!(parse_outcome(&holder.line()).0, "{backend}: first take");
        let Some(mut waiter) = holder_without_inotify(backend, &name, dir.path()) else {
            return;
        };
        waiter.send("wait inf");
        wait_until_sleeping_in_poll(waiter.pid());
        assert_eq!(holder.ask("release"), "released");
        // The bound only turns a hang into a clear failure; a release wakes a waiter in
        // milliseconds.
        let dog = Watchdog::new("waiter without inotify", HANG, vec![waiter.pid()]);
        let answer = catch_unwind(AssertUnwindSafe(|| waiter.line()));
        assert!(
            !dog.fired(),
            "{backend}: the holder released and lives on, and a waiter without inotify was still \
             asleep {HANG:?} later: it waited for the holder's death only"
        );
        let answer = answer.expect("waiter answered");
        assert_eq!(
            parse_outcome(&answer),
            (true, Some(waiter.pid())),
            "{backend}: {answer:?}"
        );
        figure(&format!(
            "neighbours {backend}: a waiter with no inotify instance takes the lock after a plain release"
        ));
    }
}

/// Another uid binds the name of our (per-user) lock: listening, it is reported as another user
/// with its uid; bound without listening, as unresponsive (squatting), uid and pid found through
/// `/proc`. Waiting on it never hangs, and the lock is ours once the squatter leaves.
#[test]
fn another_uid_squatting_the_abstract_name_is_named() {
    if !BackendKind::AbstractSocket.is_available()
        || !need_root("squatting the abstract name as uid 65534")
    {
        return;
    }
    let (_exe_dir, exe) = holder_exe_for_everyone();
    for listening in [true, false] {
        let name = unique_name(if listening {
            "squat-listen"
        } else {
            "squat-bound"
        });
        let l = Builder::new(&name)
            .backend(BackendKind::AbstractSocket)
            .build()
            .unwrap();
        let raw = l.resource().trim_start_matches('@').to_owned();
        let mut cmd = Command::new(&exe);
        cmd.args(["abstract", "unused", "/nonexistent", "idle"])
            .uid(NOBODY)
            .gid(NOBODY);
        let mut squatter = Proc::spawn(cmd);
        assert_eq!(squatter.line(), "ready");
        let how = if listening { "listen" } else { "nolisten" };
        assert_eq!(squatter.ask(&format!("bind {raw} {how}")), "bound");

        let expected = if listening {
            HolderKind::OtherUser
        } else {
            HolderKind::Unresponsive
        };
        let h = match l.try_acquire().unwrap() {
            Acquire::Held(h) => h,
            Acquire::Acquired(_) => panic!("took a name bound by uid {NOBODY}"),
        };
        assert_eq!(h.kind, expected, "{h}");
        assert_eq!(h.uid, Some(NOBODY), "{h}");
        assert_eq!(h.pid, Some(squatter.pid()), "{h}");
        let text = h.to_string();
        assert!(
            text.contains(if listening {
                "[another user]"
            } else {
                "not listening"
            }),
            "{text}"
        );
        assert_eq!(l.holder().unwrap().map(|h| h.kind), Some(expected));
        // A bounded wait answers (held) instead of hanging.
        let waited = l.acquire_timeout(Some(Duration::from_millis(100))).unwrap();
        assert_eq!(waited.holder().map(|h| h.kind), Some(expected));
        // An unbounded waiter gets the lock when the squatter leaves.
        std::thread::scope(|s| {
            let waiter = s.spawn(|| l.acquire_timeout(Some(HANG)).unwrap());
            squatter.kill_and_reap();
            let got = waiter.join().unwrap();
            assert!(
                got.is_acquired(),
                "{how}: squatter gone, waiter got {got:?}"
            );
        });
        figure(&format!(
            "neighbours abstract: name bound by uid {NOBODY} ({how}) reported as {expected:?} \
             with its uid and pid; taken once it left"
        ));
    }
}

/// Contenders come and go by the hundred thousand against one holder: every answer names the
/// holder, nothing hangs, and the holder's descriptor table does not grow. The abstract holder
/// accepts (and closes) the connections of contenders that left, so its backlog never fills and
/// lookups never fall back to `/proc/net/unix` and `/proc/*/fd`.
#[test]
fn contenders_by_the_hundred_thousand() {
    const THREADS: usize = 2;
    for backend in backends() {
        let n = scaled(100_000, 10_000);
        let started = std::time::Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let name = unique_name(&format!("crowd-{backend}"));
        let mut holder = Proc::holder(backend, &name, dir.path(), None);
        assert!(parse_outcome(&holder.line()).0);
        let hpid = holder.pid();
        let fds_before = fd_count(hpid);
        let l = lock(backend, &name, dir.path());
        let wrong = AtomicUsize::new(0);
        let dog = Watchdog::new(
            &format!("{backend} crowd"),
            Duration::from_secs(900),
            vec![hpid],
        );
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (l, wrong) = (&l, &wrong);
                s.spawn(move || {
                    for i in 0..n / THREADS {
                        // Mostly tries; every tenth a lookup that never takes the lock.
                        let h = if (i + t) % 10 == 0 {
                            l.holder().unwrap()
                        } else {
                            match l.try_acquire().unwrap() {
                                Acquire::Held(h) => Some(h.into_holder()),
                                Acquire::Acquired(_) => None,
                            }
                        };
                        let right = h
                            .as_ref()
                            .is_some_and(|h| h.pid == Some(hpid) && h.kind == HolderKind::SameUser);
                        if !right && wrong.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("{backend}: contender {i} got {h:?}");
                        }
                    }
                });
            }
        });
        assert!(!dog.fired(), "{backend}: contenders hung");
        // The abstract holder's draining thread may still be closing the last contenders'
        // connections: wait for it (a minute at most, so that a leak fails rather than hangs).
        let settle = std::time::Instant::now() + Duration::from_secs(60);
        while fd_count(hpid) > fds_before && std::time::Instant::now() < settle {
            std::thread::yield_now();
        }
        let fds_after = fd_count(hpid);
        assert_eq!(wrong.load(Ordering::Relaxed), 0, "{backend}: wrong answers");
        assert_eq!(
            fds_after, fds_before,
            "{backend}: the holder's descriptors grew"
        );
        assert_eq!(holder.ask("verify"), "ok");
        // One more waiter, with no limit: woken by an event when the holder lets go.
        std::thread::scope(|s| {
            let waiter = s.spawn(|| l.acquire_timeout(Some(HANG)).unwrap());
            assert_eq!(holder.ask("release"), "released");
            let got = waiter.join().unwrap();
            assert!(got.is_acquired(), "{backend}: released, waiter got {got:?}");
        });
        drop(dog);
        figure(&format!(
            "neighbours {backend}: {n} contenders came and went against one holder: 0 wrong \
             answers, holder descriptors {fds_before} before / {fds_after} after, no hang \
             ({:.1} s)",
            started.elapsed().as_secs_f64()
        ));
    }
}
