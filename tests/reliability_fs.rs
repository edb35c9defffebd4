//! Hostile filesystem: lock files deleted or replaced while held (one at a time, and at random
//! during a 8-process race), symbolic and hard links planted at the lock paths, unwritable,
//! missing and read-only directories, a full filesystem.

// The Unix suite: Windows has its own (tests/windows.rs).
#![cfg(unix)]

mod common;
mod reliability_common;

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Proc, lock, parse_outcome, unique_name};
use onlyone::{Acquire, BackendKind, ErrorKind, Lock};
use reliability_common::{
    Mount, NOBODY, Rng, Sleeper, Verdict, Watchdog, Witness, figure, holder_exe_for_everyone,
    need_root, scaled,
};

fn file_backends() -> Vec<BackendKind> {
    [BackendKind::Flock, BackendKind::PidFile]
        .into_iter()
        .filter(|b| b.is_available())
        .collect()
}

fn ext(backend: BackendKind) -> &'static str {
    if backend == BackendKind::Flock {
        "lock"
    } else {
        "pid"
    }
}

/// Deleted, or replaced by another file, while a live process holds it: the holder's `verify`
/// reports the loss; the next process takes a new file (the deletion broke exclusion, which is
/// why the holder must look); and the old holder's release never touches the new holder's file.
#[test]
fn lock_file_deleted_or_replaced_while_held() {
    let mut cases = 0;
    for backend in file_backends() {
        for how in ["deleted", "replaced"] {
            let dir = tempfile::tempdir().unwrap();
            let name = unique_name(&format!("gone-{backend}-{how}"));
            let path = dir.path().join(format!("{name}.{}", ext(backend)));
            let mut first = Proc::holder(backend, &name, dir.path(), None);
            assert!(parse_outcome(&first.line()).0);
            assert_eq!(first.ask("verify"), "ok");
            let old = fs::read(&path).unwrap();
            if how == "deleted" {
                fs::remove_file(&path).unwrap();
            } else {
                // A copy of the same content under a new inode, renamed into place (what an
                // editor or a restore from backup does).
                let tmp = dir.path().join("copy.tmp");
                fs::write(&tmp, &old).unwrap();
                fs::rename(&tmp, &path).unwrap();
            }
            let verdict = first.ask("verify");
            assert!(
                verdict.starts_with("lost ") && verdict.contains(&*path.to_string_lossy()),
                "{backend} {how}: verify said {verdict:?}"
            );
            let l = lock(backend, &name, dir.path());
            let second = l.try_acquire().unwrap();
            match (backend, how) {
                // The copy still names the first holder, who lives: held, not taken.
                (BackendKind::PidFile, "replaced") => {
                    assert_eq!(second.holder().and_then(|h| h.pid), Some(first.pid()));
                    // The first holder exits, dropping its guard: the file is not its own.
                    assert!(first.finish().success());
                    assert_eq!(
                        fs::read(&path).unwrap(),
                        old,
                        "a file not ours is left alone"
                    );
                }
                _ => {
                    let g = second
                        .guard()
                        .unwrap_or_else(|| panic!("{backend} {how}: a new file must be lockable"));
                    let mine = fs::read(&path).unwrap();
                    // The first holder exits, dropping its guard (an explicit release reports
                    // the loss as an error).
                    assert!(first.finish().success());
                    g.verify().unwrap_or_else(|e| {
                        panic!("{backend} {how}: the old holder's release broke ours: {e}")
                    });
                    assert_eq!(
                        fs::read(&path).unwrap(),
                        mine,
                        "{backend} {how}: our record"
                    );
                    g.release().unwrap();
                }
            }
            cases += 1;
        }
    }
    figure(&format!(
        "fs: lock file deleted or replaced while held: {cases} cases, every loss reported by \
         verify(), no release touched another holder's file"
    ));
}

/// 8 processes race while the test deletes or replaces the lock file at random moments. Two
/// processes may then both believe they hold the lock (the one on the deleted inode cannot know
/// until it looks); every such overlap must be on different inodes and be noticed by one of the
/// two through `verify`. Overlaps on one inode, or unnoticed, are double holders.
#[test]
fn lock_file_changed_at_random_during_a_race() {
    const PROCS: usize = 8;
    let holds = scaled(400, 60);
    let mut rng = Rng::from_env_or_clock("fs chaos");
    for backend in file_backends() {
        let dir = tempfile::tempdir().unwrap();
        let name = unique_name(&format!("chaos-{backend}"));
        let path = dir.path().join(format!("{name}.{}", ext(backend)));
        let witness = Witness::create(dir.path());
        let mut racers: Vec<Proc> = (0..PROCS)
            .map(|_| Proc::holder(backend, &name, dir.path(), Some("idle")))
            .collect();
        for p in &mut racers {
            assert_eq!(p.line(), "ready");
        }
        let pids: Vec<u32> = racers.iter().map(Proc::pid).collect();
        let _dog = Watchdog::new("fs chaos", Duration::from_secs(600), pids.clone());
        for p in &mut racers {
            p.send(&format!(
                "race {} {holds} {} 200",
                witness.path.display(),
                rng.next()
            ));
        }
        // A record of a process that is gone: what a replaced PID file says.
        let stale = {
            let mut c = Command::new("true").spawn().unwrap();
            let pid = c.id();
            c.wait().unwrap();
            onlyone::record::format(&onlyone::process::ProcessIdentity {
                pid,
                ..onlyone::process::ProcessIdentity::current()
            })
        };
        let done = AtomicBool::new(false);
        let mut chaos_rng = Rng::new(rng.next());
        let changes = std::thread::scope(|s| {
            let chaos = s.spawn(|| {
                let mut changes = 0;
                while !done.load(Ordering::SeqCst) {
                    // A random moment, not a synchronisation.
                    std::thread::sleep(Duration::from_micros(500 + chaos_rng.below(3000)));
                    witness.note("change-begin");
                    if chaos_rng.below(2) == 0 {
                        let _ = fs::remove_file(&path);
                    } else {
                        let tmp = dir.path().join("replacement.tmp");
                        let content = if backend == BackendKind::PidFile {
                            stale.as_bytes()
                        } else {
                            b""
                        };
                        fs::write(&tmp, content).unwrap();
                        fs::rename(&tmp, &path).unwrap();
                    }
                    witness.note("change-end");
                    changes += 1;
                }
                changes
            });
            for p in &mut racers {
                let answer = p.line();
                assert!(answer.starts_with("raced "), "{backend}: {answer:?}");
            }
            done.store(true, Ordering::SeqCst);
            chaos.join().unwrap()
        });
        let v = Verdict::analyse(&witness.read(), &pids.into_iter().collect::<HashSet<u32>>());
        v.assert_clean_despite_file_changes(&format!("{backend} fs chaos"));
        assert_eq!(v.holds, PROCS * holds);
        assert!(changes > 0);
        figure(&format!(
            "fs chaos {backend}: {PROCS} processes x {holds} holds while the lock file was \
             deleted or replaced {changes} times: {} overlaps, all on different inodes and \
             noticed by verify() ({} losses reported), {} unnoticed or same-inode double holders, \
             {} errors",
            v.explained_overlaps,
            v.losses_detected,
            v.double_holders.len(),
            v.errors.len()
        ));
    }
}

/// Links planted where onlyone creates files: symbolic links (to a precious file, a directory,
/// nowhere) are refused and their targets left byte for byte; a hard link to a precious file
/// is never written to.
#[test]
fn planted_links_are_refused_and_targets_untouched() {
    let mut cases = 0;
    for backend in file_backends() {
        let dir = tempfile::tempdir().unwrap();
        let precious = dir.path().join("precious");
        let content = b"precious data, not a lock\n".to_vec();
        let somedir = dir.path().join("somedir");
        fs::create_dir(&somedir).unwrap();
        for (target, label) in [
            (precious.as_path(), "file"),
            (somedir.as_path(), "directory"),
            (Path::new("/nonexistent/target"), "dangling"),
        ] {
            fs::write(&precious, &content).unwrap();
            let name = format!("sym-{label}");
            let at = dir.path().join(format!("{name}.{}", ext(backend)));
            symlink(target, &at).unwrap();
            let l = lock(backend, &name, dir.path());
            let err = l.try_acquire().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Symlink, "{backend} {label}: {err}");
            assert!(err.to_string().contains(&*at.to_string_lossy()), "{err}");
            assert_eq!(fs::read(&precious).unwrap(), content, "{backend} {label}");
            assert_eq!(
                fs::read_dir(&somedir).unwrap().count(),
                0,
                "{backend} {label}"
            );
            assert!(!Path::new("/nonexistent").exists());
            assert!(fs::symlink_metadata(&at).unwrap().is_symlink(), "link left");
            cases += 1;
        }
        // Content that is not an onlyone record (a flock(1) user's lock file holding its pid):
        // used for locking, never rewritten.
        let name = "foreign-content";
        let at = dir.path().join(format!("{name}.{}", ext(backend)));
        fs::write(&at, b"4242\n").unwrap();
        match lock(backend, name, dir.path()).try_acquire() {
            Ok(Acquire::Acquired(g)) => g.release().unwrap(),
            Ok(Acquire::Held(h)) => panic!("{backend} foreign content: held by {h}"),
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::Corrupt,
                "{backend} foreign content: {e}"
            ),
        }
        assert_eq!(
            fs::read(&at).unwrap(),
            b"4242\n",
            "{backend}: foreign content rewritten"
        );
        cases += 1;
        // A hard link to a precious file: same inode, so no O_NOFOLLOW can see it.
        let name = "hardlink";
        let at = dir.path().join(format!("{name}.{}", ext(backend)));
        fs::write(&precious, &content).unwrap();
        fs::hard_link(&precious, &at).unwrap();
        let l = lock(backend, name, dir.path());
        match l.try_acquire() {
            Ok(Acquire::Acquired(g)) => {
                g.release().unwrap();
            }
            Ok(Acquire::Held(h)) => panic!("{backend} hard link: held by {h}"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupt, "{backend} hard link: {e}"),
        }
        assert_eq!(
            fs::read(&precious).unwrap(),
            content,
            "{backend}: a hard-linked file was written to"
        );
        cases += 1;
    }
    // The PID file's takeover guard is a file too: a link there is refused, the stale PID
    // file stays for the next try.
    if BackendKind::PidFile.is_available() {
        let dir = tempfile::tempdir().unwrap();
        let precious = dir.path().join("precious");
        fs::write(&precious, b"keep\n").unwrap();
        let stale = onlyone::process::ProcessIdentity {
            start_ticks: Some(u64::MAX),
            pid: 1,
            ..onlyone::process::ProcessIdentity::current()
        };
        let pidfile = dir.path().join("t.pid");
        fs::write(&pidfile, onlyone::record::format(&stale)).unwrap();
        symlink(&precious, dir.path().join("t.pid-takeover")).unwrap();
        let err = lock(BackendKind::PidFile, "t", dir.path())
            .try_acquire()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Symlink, "{err}");
        assert_eq!(fs::read(&precious).unwrap(), b"keep\n");
        assert_eq!(
            fs::read(&pidfile).unwrap(),
            onlyone::record::format(&stale).as_bytes()
        );
        cases += 1;
    }
    figure(&format!(
        "fs: {cases} planted files (symbolic links to a file, a directory, nowhere, at the \
         takeover guard; a hard link to a file; foreign content) refused or used without being \
         written, every target byte for byte unchanged"
    ));
}

/// Directories that cannot hold a lock file: missing, a regular file, not writable (for a
/// contender of uid 65534: root ignores permission bits). A clear error naming the path; nothing
/// created.
#[test]
fn unusable_directories_are_errors_naming_them() {
    let mut cases = 0;
    for backend in file_backends() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let file = dir.path().join("a-file");
        fs::write(&file, b"x").unwrap();
        for bad in [&missing, &file, &missing.join("deeper")] {
            let err = lock(backend, "x", bad).try_acquire().unwrap_err();
            assert_eq!(
                err.kind(),
                ErrorKind::LockDir,
                "{backend} {}: {err}",
                bad.display()
            );
            assert!(err.to_string().contains(&*bad.to_string_lossy()), "{err}");
            cases += 1;
        }
        assert!(!missing.exists(), "{backend} created a directory");
        assert_eq!(fs::read(&file).unwrap(), b"x");
    }
    if need_root("an unwritable directory (a contender dropped to uid 65534)") {
        let (_exe_dir, exe) = holder_exe_for_everyone();
        for backend in file_backends() {
            let dir = tempfile::tempdir().unwrap();
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
            let out = Command::new(&exe)
                .arg(backend.as_str())
                .arg("x")
                .arg(dir.path())
                .uid(NOBODY)
                .gid(NOBODY)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "{backend}: uid {NOBODY} took a lock in a root dir"
            );
            assert!(
                stderr.contains(&*dir.path().to_string_lossy()) && stderr.contains("denied"),
                "{backend}: {stderr}"
            );
            assert_eq!(
                fs::read_dir(dir.path()).unwrap().count(),
                0,
                "{backend}: files left"
            );
            cases += 1;
        }
    }
    figure(&format!(
        "fs: {cases} unusable lock directories (missing, a file, below a missing one, not \
         writable) reported as errors naming them; nothing created"
    ));
}

/// A read-only filesystem (a tmpfs mounted `ro` by the test): no lock can be created there;
/// lookups still work; a live PID-file holder is still reported; a stale one cannot be replaced
/// and is left as it is.
#[test]
fn read_only_filesystem() {
    let base = tempfile::tempdir().unwrap();
    let Some(mount) = Mount::tmpfs(base.path(), "size=1m,mode=0755") else {
        return;
    };
    let live = Sleeper::start();
    let live_ticks = live.start_ticks();
    let me = onlyone::process::ProcessIdentity::current();
    let live_record = onlyone::record::format(&onlyone::process::ProcessIdentity {
        pid: live.pid(),
        start_ticks: Some(live_ticks),
        ..me.clone()
    });
    let stale_record = onlyone::record::format(&onlyone::process::ProcessIdentity {
        start_ticks: Some(u64::MAX),
        ..me
    });
    let p = |f: &str| base.path().join(f);
    fs::write(p("existing.lock"), b"").unwrap();
    fs::write(p("live.pid"), &live_record).unwrap();
    fs::write(p("stale.pid"), &stale_record).unwrap();
    mount.remount("ro");
    assert!(
        fs::write(p("probe"), b"").is_err(),
        "the mount is not read-only"
    );
    let mut cases = 0;
    for backend in file_backends() {
        let err = lock(backend, "new", base.path()).try_acquire().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LockDir, "{backend}: {err}");
        assert!(
            err.to_string().contains("Read-only file system")
                && err.to_string().contains(&*base.path().to_string_lossy()),
            "{backend}: {err}"
        );
        assert_eq!(lock(backend, "new", base.path()).holder().unwrap(), None);
        cases += 1;
    }
    if BackendKind::Flock.is_available() {
        let l = lock(BackendKind::Flock, "existing", base.path());
        assert_eq!(l.holder().unwrap(), None, "lookups work read-only");
        let err = l.try_acquire().unwrap_err();
        assert!(err.to_string().contains("Read-only file system"), "{err}");
        cases += 1;
    }
    if BackendKind::PidFile.is_available() {
        let l = lock(BackendKind::PidFile, "live", base.path());
        let h = l.try_acquire().unwrap();
        assert_eq!(h.holder().and_then(|h| h.pid), Some(live.pid()), "{h:?}");
        let l = lock(BackendKind::PidFile, "stale", base.path());
        assert_eq!(l.holder().unwrap(), None);
        let err = l.try_acquire().unwrap_err();
        assert!(err.to_string().contains("Read-only file system"), "{err}");
        assert_eq!(fs::read(p("stale.pid")).unwrap(), stale_record.as_bytes());
        cases += 2;
    }
    figure(&format!(
        "fs: read-only tmpfs: {cases} cases (new locks refused naming the mount, lookups work, a \
         live PID-file holder still named, a stale one left as it was)"
    ));
}

/// A full filesystem: the lock cannot be taken, the error says why, and no half-written PID file
/// is left behind.
#[test]
fn full_filesystem() {
    let base = tempfile::tempdir().unwrap();
    let Some(_mount) = Mount::tmpfs(base.path(), "size=64k,mode=0755") else {
        return;
    };
    let filler = base.path().join("filler");
    let mut f = fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    while std::io::Write::write_all(&mut f, &block).is_ok() {}
    drop(f);
    let mut cases = 0;
    for backend in file_backends() {
        let name = format!("full-{backend}");
        let result = lock(backend, &name, base.path()).try_acquire();
        match result {
            Err(e) => assert!(
                e.to_string().contains("No space left on device"),
                "{backend}: {e}"
            ),
            Ok(a) => panic!("{backend}: locked on a full filesystem: {a:?}"),
        }
        if backend == BackendKind::PidFile {
            let left: Vec<_> = fs::read_dir(base.path())
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.file_name())
                .filter(|n| n != "filler" && !n.to_string_lossy().ends_with(".lock"))
                .collect();
            assert!(left.is_empty(), "half-written files left: {left:?}");
        }
        cases += 1;
    }
    figure(&format!(
        "fs: full filesystem: {cases} backends refuse with \"No space left on device\", no \
         partial PID file left"
    ));
}
