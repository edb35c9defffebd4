//! Each backend against real processes: who holds, SIGKILL, inheritance, races, bad input.

// The Unix suite: Windows has its own (tests/windows.rs).
#![cfg(unix)]

mod common;

use std::fs;
use std::os::unix::fs::symlink;

use common::{KillOnDrop, Proc, alive, backends, lock, parse_outcome, unique_name};
use onlyone::{Acquire, BackendKind, Builder, ErrorKind, HolderKind, Lock};

/// An upper bound for waits that end as soon as the kernel catches up; reached only on failure.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(30);

/// How a backend behaved after its holder was SIGKILLed.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum AfterKill {
    ReleasedAtOnce,
    AfterStaleDetection,
    StillHeld,
}

impl AfterKill {
    fn as_str(self) -> &'static str {
        match self {
            AfterKill::ReleasedAtOnce => "released at once",
            AfterKill::AfterStaleDetection => "released after stale detection",
            AfterKill::StillHeld => "still held",
        }
    }
}

fn expected_after_kill(backend: BackendKind) -> AfterKill {
    match backend {
        BackendKind::PidFile => AfterKill::AfterStaleDetection,
        _ => AfterKill::ReleasedAtOnce,
    }
}

/// Child takes the lock, parent sees it held with the child's pid, SIGKILL, parent acquires.
fn held_then_killed(backend: BackendKind) -> AfterKill {
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name("kill");
    let mut child = Proc::holder(backend, &name, dir.path(), None);
    let (acquired, pid) = parse_outcome(&child.line());
    assert!(acquired, "{backend}: child could not take a free lock");
    assert_eq!(pid, Some(child.pid()));

    let lock = lock(backend, &name, dir.path());
    match lock.try_acquire().unwrap() {
        Acquire::Held(h) => {
            assert_eq!(h.pid, Some(child.pid()), "{backend}: holder pid");
            assert_eq!(h.kind, HolderKind::SameUser, "{backend}");
            assert!(
                h.command.as_deref().is_some_and(|c| c.contains("holder")),
                "{backend}: holder command {:?}",
                h.command
            );
        }
        Acquire::Acquired(_) => panic!("{backend}: acquired a lock the child holds"),
    }
    assert_eq!(
        lock.holder().unwrap().and_then(|h| h.pid),
        Some(child.pid())
    );

    child.kill_to_zombie();
    let file_left =
        fs::read_dir(dir.path()).unwrap().count() > 0 && backend == BackendKind::PidFile;
    // A wait rather than a single try: a process reading /proc/PID/fd at the moment of death
    // (lsof, another test's /proc scan) holds the dead holder's file for a few microseconds more.
    // What the table shows is who releases — the kernel, or onlyone's stale detection — not how
    // fast: that is benches/wait.rs.
    match lock.acquire_timeout(Some(SETTLE)).unwrap() {
        Acquire::Acquired(g) => {
            drop(g);
            if file_left {
                AfterKill::AfterStaleDetection
            } else {
                AfterKill::ReleasedAtOnce
            }
        }
        Acquire::Held(_) => AfterKill::StillHeld,
    }
}

#[test]
fn sigkill_comparison_table() {
    let mut rows = Vec::new();
    for backend in backends() {
        let outcome = held_then_killed(backend);
        rows.push((backend, outcome));
    }
    println!("\n| backend | holder SIGKILLed, then |\n| --- | --- |");
    for (backend, outcome) in &rows {
        println!("| {backend} | {} |", outcome.as_str());
    }
    for (backend, outcome) in rows {
        assert_eq!(outcome, expected_after_kill(backend), "{backend}");
    }
}

/// A holder that spawns a long-running child and is then SIGKILLed leaves the lock free: the
/// child did not inherit it. Handing it over on purpose keeps it held by the child.
#[test]
fn close_on_exec_and_handing_over() {
    for backend in backends() {
        for on_purpose in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let name = unique_name("cloexec");
            let mut holder = Proc::holder(backend, &name, dir.path(), None);
            assert!(parse_outcome(&holder.line()).0);
            let answer = holder.ask(if on_purpose { "inherit" } else { "spawn" });
            let sleeper: u32 = answer
                .strip_prefix("spawned ")
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("bad answer {answer:?}"));
            let _reap = KillOnDrop(sleeper);
            holder.kill_to_zombie();
            assert!(alive(sleeper));

            // A PID file names one process and cannot be handed over.
            let kept_by_child = on_purpose && backend != BackendKind::PidFile;
            // Not inherited: free as soon as the last transient reference to the dead holder's
            // file is gone (see `held_then_killed`). Inherited: still held after a short wait.
            let wait = if kept_by_child {
                std::time::Duration::from_millis(100)
            } else {
                SETTLE
            };
            let outcome = lock(backend, &name, dir.path())
                .acquire_timeout(Some(wait))
                .unwrap();
            assert_eq!(
                !outcome.is_acquired(),
                kept_by_child,
                "{backend}, handed over on purpose: {on_purpose}: {outcome:?}"
            );
        }
    }
}

/// 8 processes x 100 rounds: exactly one of them gets the lock each round.
#[test]
fn race_exactly_one_holder_per_round() {
    const PROCS: usize = 8;
    const ROUNDS: usize = 100;
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let name = unique_name("race");
        let mut procs: Vec<Proc> = (0..PROCS)
            .map(|_| Proc::holder(backend, &name, dir.path(), Some("idle")))
            .collect();
        for p in &mut procs {
            assert_eq!(p.line(), "ready");
        }
        for round in 0..ROUNDS {
            for p in &mut procs {
                p.send("try");
            }
            let outcomes: Vec<(bool, Option<u32>)> =
                procs.iter_mut().map(|p| parse_outcome(&p.line())).collect();
            let winners: Vec<usize> = (0..PROCS).filter(|&i| outcomes[i].0).collect();
            assert_eq!(
                winners.len(),
                1,
                "{backend}, round {round}: {outcomes:?} (exactly one holder)"
            );
            let winner = winners[0];
            let winner_pid = procs[winner].pid();
            for (i, (_, pid)) in outcomes.iter().enumerate() {
                if i != winner {
                    if let Some(pid) = pid {
                        assert_eq!(*pid, winner_pid, "{backend}, round {round}: named holder");
                    }
                }
            }
            assert_eq!(procs[winner].ask("release"), "released");
        }
        println!("{backend}: {PROCS} processes x {ROUNDS} rounds, one holder every round");
    }
}

#[test]
fn bad_names_are_rejected() {
    for backend in backends() {
        for bad in ["", "a/b", "nul\0byte", "new\nline"] {
            let err = Builder::new(bad).backend(backend).build().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidName, "{backend} {bad:?}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}

#[test]
fn very_long_names_work_and_stay_distinct() {
    let dir = tempfile::tempdir().unwrap();
    let base = "n".repeat(400);
    for backend in backends() {
        let a = lock(
            backend,
            &format!("{base}a{}", std::process::id()),
            dir.path(),
        );
        let b = lock(
            backend,
            &format!("{base}b{}", std::process::id()),
            dir.path(),
        );
        let ga = a.try_acquire().unwrap().guard().expect("a is free");
        let gb = b
            .try_acquire()
            .unwrap()
            .guard()
            .expect("b is free: names do not collide");
        assert!(!a.try_acquire().unwrap().is_acquired());
        drop((ga, gb));
    }
}

#[test]
fn missing_lock_dir_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("does-not-exist");
    for backend in [BackendKind::Flock, BackendKind::PidFile] {
        if !backend.is_available() {
            continue;
        }
        let err = lock(backend, "x", &missing).try_acquire().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LockDir, "{backend}: {err}");
        assert!(err.to_string().contains("does-not-exist"), "{err}");
        assert!(
            !missing.exists(),
            "{backend} created a directory it was not asked to"
        );
    }
}

#[test]
fn unwritable_lock_dir_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // Root ignores permission bits; a directory inside /proc refuses new files even to root.
    let unwritable = if nix::unistd::geteuid().is_root() {
        std::path::PathBuf::from("/proc/self")
    } else {
        use std::os::unix::fs::PermissionsExt;
        let d = dir.path().join("ro");
        fs::create_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o500)).unwrap();
        d
    };
    for backend in [BackendKind::Flock, BackendKind::PidFile] {
        if !backend.is_available() {
            continue;
        }
        let err = lock(backend, "x", &unwritable).try_acquire().unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::LockDir | ErrorKind::Io),
            "{backend}: {err:?}"
        );
        assert!(
            err.to_string().contains(&*unwritable.to_string_lossy()),
            "{backend}: {err}"
        );
    }
}

#[test]
fn planted_symlink_is_refused_and_its_target_untouched() {
    for backend in [BackendKind::Flock, BackendKind::PidFile] {
        if !backend.is_available() {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        fs::write(&target, b"precious data\n").unwrap();
        let ext = if backend == BackendKind::Flock {
            "lock"
        } else {
            "pid"
        };
        symlink(&target, dir.path().join(format!("x.{ext}"))).unwrap();
        let l = lock(backend, "x", dir.path());
        let err = l.try_acquire().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Symlink, "{backend}: {err}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(fs::read(&target).unwrap(), b"precious data\n");
        // A dangling link too: nothing may be created through it.
        fs::remove_file(&target).unwrap();
        assert_eq!(l.try_acquire().unwrap_err().kind(), ErrorKind::Symlink);
        assert!(!target.exists(), "{backend} created the link's target");
    }
}

#[test]
fn corrupt_pid_files_are_reported_and_left_alone() {
    if !BackendKind::PidFile.is_available() {
        return;
    }
    let huge = vec![b'9'; 1 << 20];
    let cases: Vec<(&str, &[u8], &str)> = vec![
        ("empty", b"", "empty"),
        ("garbage", b"hello world\n", "not a pid"),
        ("huge", &huge, "bytes long"),
        ("pid0", b"0\n", "pid 0"),
        ("pid1-foreign", b"1\n", "not written by onlyone"),
        ("negative", b"-42\n", "pid -42"),
        ("binary", &[0xff, 0x00, 0x13], "not text"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (name, content, why) in cases {
        let path = dir.path().join(format!("{name}.pid"));
        fs::write(&path, content).unwrap();
        let l = lock(BackendKind::PidFile, name, dir.path());
        let err = l.try_acquire().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{name}: {err}");
        let text = err.to_string();
        assert!(
            text.contains(why) && text.contains(&*path.to_string_lossy()),
            "{name}: {text}"
        );
        assert_eq!(fs::read(&path).unwrap(), content, "{name}: file changed");
        assert_eq!(l.holder().unwrap_err().kind(), ErrorKind::Corrupt);
    }
}

#[test]
fn stale_pid_files_are_taken_over() {
    if !BackendKind::PidFile.is_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let me = onlyone::process::ProcessIdentity::current();
    // pid 1 runs, but started at another time than recorded: the pid was reused.
    let reused = onlyone::process::ProcessIdentity {
        pid: 1,
        start_ticks: Some(u64::MAX),
        ..me.clone()
    };
    // A process of a previous boot.
    let old_boot = onlyone::process::ProcessIdentity {
        boot_id: Some("00000000-0000-0000-0000-000000000000".into()),
        ..me.clone()
    };
    for (name, id) in [("reused", reused), ("oldboot", old_boot)] {
        fs::write(
            dir.path().join(format!("{name}.pid")),
            onlyone::record::format(&id),
        )
        .unwrap();
        let l = lock(BackendKind::PidFile, name, dir.path());
        assert!(
            l.holder().unwrap().is_none(),
            "{name}: a stale file has no holder"
        );
        let g = l.try_acquire().unwrap().guard().expect(name);
        let now = fs::read_to_string(dir.path().join(format!("{name}.pid"))).unwrap();
        assert!(
            now.starts_with(&format!("{}\n", std::process::id())),
            "{now}"
        );
        g.release().unwrap();
        assert!(!dir.path().join(format!("{name}.pid")).exists());
    }
}

#[test]
fn guards_notice_their_file_deleted_or_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    for backend in [BackendKind::Flock, BackendKind::PidFile] {
        if !backend.is_available() {
            continue;
        }
        let l = lock(backend, "verify", dir.path());
        let g = l.try_acquire().unwrap().guard().unwrap();
        g.verify().unwrap();
        fs::remove_file(l.resource()).unwrap();
        let err = g.verify().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Lost, "{backend}: {err}");
        drop(g);
    }
    if BackendKind::PidFile.is_available() {
        let l = lock(BackendKind::PidFile, "overwrite", dir.path());
        let g = l.try_acquire().unwrap().guard().unwrap();
        fs::write(l.resource(), b"12345\n").unwrap();
        assert_eq!(g.verify().unwrap_err().kind(), ErrorKind::Lost);
        // Releasing must not delete a file that is no longer ours... it is the same inode here,
        // rewritten in place; the guard removes only its own inode, which this still is.
        drop(g);
    }
}

/// One process holding many flock locks is named as the holder of each (Linux proves it through
/// the descriptors of the recorded holder, with an index of them kept between questions about
/// the same process): also after some are released and others taken again, when descriptor
/// numbers come back for other files.
#[cfg(target_os = "linux")]
#[test]
fn flock_holder_of_many_locks_is_named_for_each() {
    if !BackendKind::Flock.is_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let locks: Vec<_> = (0..150)
        .map(|i| lock(BackendKind::Flock, &format!("many-{i}"), dir.path()))
        .collect();
    let mut guards: Vec<_> = locks
        .iter()
        .map(|l| Some(l.try_acquire().unwrap().guard().expect("free")))
        .collect();
    let holder_pid = |l: &dyn Lock| l.holder().unwrap().and_then(|h| h.pid);
    for (i, l) in locks.iter().enumerate() {
        assert_eq!(holder_pid(l.as_ref()), Some(me), "lock {i}");
    }
    // Release every other lock; take the first few again (their descriptor numbers now name
    // other files than when the index was made).
    for g in guards.iter_mut().step_by(2) {
        g.take().unwrap().release().unwrap();
    }
    for (i, l) in locks.iter().enumerate() {
        let expected = (i % 2 == 1).then_some(me);
        assert_eq!(
            holder_pid(l.as_ref()),
            expected,
            "lock {i} after half were released"
        );
    }
    for i in (0..20).step_by(2).rev() {
        guards[i] = Some(locks[i].try_acquire().unwrap().guard().expect("free again"));
    }
    for (i, l) in locks.iter().enumerate() {
        let expected = (i % 2 == 1 || i < 20).then_some(me);
        assert_eq!(
            holder_pid(l.as_ref()),
            expected,
            "lock {i} after some were taken again"
        );
    }
}

#[test]
fn flock_holder_found_through_proc_locks_for_foreign_lockers() {
    if !BackendKind::Flock.is_available() {
        return;
    }
    // A flock(1)-style locker that writes no record: onlyone still names it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.lock");
    let file = fs::File::create(&path).unwrap();
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let l = lock(BackendKind::Flock, "x", dir.path());
    let holder = l.try_acquire().unwrap().holder().cloned().expect("held");
    assert_eq!(holder.pid, Some(std::process::id()));
}

#[cfg(all(feature = "abstract-socket", target_os = "linux"))]
#[test]
fn abstract_name_bound_without_listen_is_reported_as_unresponsive() {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, bind, socket};
    use std::os::fd::AsRawFd;
    let name = onlyone::LockName::new(unique_name("squat")).unwrap();
    let l = onlyone::AbstractSocketLock::new(name.clone(), onlyone::Scope::User);
    let squatter = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    let addr = UnixAddr::new_abstract(l.socket_name().as_bytes()).unwrap();
    bind(squatter.as_raw_fd(), &addr).unwrap();
    let holder = l.try_acquire().unwrap().holder().cloned().expect("held");
    assert_eq!(holder.kind, HolderKind::Unresponsive);
    assert_eq!(holder.pid, Some(std::process::id()), "found through /proc");
    assert!(holder.to_string().contains("not listening"), "{holder}");
    assert_eq!(
        l.holder().unwrap().map(|h| h.kind),
        Some(HolderKind::Unresponsive)
    );
    drop(squatter);
    // Other tests in this process spawn children: between their fork and exec a child holds a
    // copy of every descriptor, the squatter's too, so the name may stay bound a moment longer.
    // A wait (woken by the backoff, as nothing listens) gets it once the last copy is closed.
    let g = l.acquire_timeout(Some(std::time::Duration::from_secs(60)));
    assert!(g.unwrap().is_acquired(), "the name stayed bound");
}

#[test]
fn default_backend_follows_the_features() {
    let expected = if cfg!(all(feature = "abstract-socket", target_os = "linux")) {
        BackendKind::AbstractSocket
    } else if cfg!(feature = "flock") {
        BackendKind::Flock
    } else {
        BackendKind::PidFile
    };
    assert_eq!(onlyone::DEFAULT_BACKEND, expected);
    let l = Builder::new(unique_name("default")).build().unwrap();
    assert_eq!(l.backend(), expected);
    for backend in BackendKind::ALL {
        if backend == BackendKind::Postgres && backend.is_available() {
            continue; // Needs a database URL: tests/postgres.rs.
        }
        let built = Builder::new("x").backend(backend).build();
        assert_eq!(built.is_ok(), backend.is_available(), "{backend}");
        if let Err(e) = built {
            assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
            assert!(e.to_string().contains("cargo feature"), "{e}");
        }
    }
}

/// `Guard::record_job` on the file backends: the record names the job (a `job` line), the guard
/// still verifies and releases its (rewritten) file, and no temporary file is left behind.
#[test]
fn record_job_names_the_child_and_keeps_the_guard_whole() {
    for backend in [BackendKind::Flock, BackendKind::PidFile]
        .into_iter()
        .filter(|b| b.is_available())
    {
        let dir = tempfile::tempdir().unwrap();
        let name = unique_name(&format!("record-job-{backend}"));
        let lk = lock(backend, &name, dir.path());
        let mut guard = lk.try_acquire().unwrap().guard().expect("free at first");
        let mut child = std::process::Command::new("sleep")
            .arg("3600")
            .spawn()
            .expect("spawn sleep");
        let job = child.id();
        let recorded = guard.record_job(job);
        let text = fs::read_to_string(guard.resource()).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(recorded.unwrap(), "{backend}");
        let record = onlyone::record::parse_record(text.as_bytes()).unwrap();
        assert_eq!(record.holder.pid, std::process::id(), "{backend}: {text}");
        assert_eq!(record.job.map(|j| j.pid), Some(job), "{backend}: {text}");
        guard.verify().unwrap_or_else(|e| panic!("{backend}: {e}"));
        let files: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files.len(), 1, "{backend}: {files:?}");
        guard.release().unwrap();
        assert!(lk.try_acquire().unwrap().is_acquired(), "{backend}");
    }
}
