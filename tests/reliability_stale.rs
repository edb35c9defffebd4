//! Stale and corrupt state: what the PID-file backend decides for every kind of file it may find
//! at its path, and what the flock backend makes of stale records. Each decision is asserted:
//! - **corrupt** (not an onlyone record): an error naming the file and the reason; the file is
//!   left byte-for-byte as it was;
//! - **held** (the recorded process lives, or cannot be judged from here): the lock is not
//!   taken, the file is untouched, the holder is named;
//! - **stale** (the recorded process is gone, a zombie, another boot's, or its pid now belongs to
//!   a process started at another time): taken over, and the file then holds our record.

// The Unix suite: Windows has its own (tests/windows.rs).
#![cfg(unix)]

mod common;
mod reliability_common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use common::{Proc, lock, parse_outcome, unique_name};
use onlyone::process::ProcessIdentity;
use onlyone::{Acquire, BackendKind, ErrorKind, HolderKind, Lock};
use reliability_common::{NOBODY, Sleeper, figure, holder_exe_for_everyone, need_root};

/// An identity like ours (boot id, PID namespace) for another pid.
fn identity(pid: u32, start_ticks: Option<u64>, uid: u32) -> ProcessIdentity {
    ProcessIdentity {
        pid,
        start_ticks,
        uid,
        ..ProcessIdentity::current()
    }
}

fn record(id: &ProcessIdentity) -> Vec<u8> {
    onlyone::record::format(id).into_bytes()
}

#[derive(Debug)]
enum Expect {
    /// An error of kind Corrupt whose message contains this.
    Corrupt(&'static str),
    /// Held by this pid.
    Held(u32),
    /// Held by a process of another PID namespace: no pid (it would mean nothing here).
    HeldElsewhere,
    /// Taken over.
    Stale,
}

struct Case {
    name: &'static str,
    /// File content; `None` for the special files made by `special`.
    content: Option<Vec<u8>>,
    expect: Expect,
}

fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

#[test]
fn pid_files_of_every_kind_get_the_right_decision() {
    if !BackendKind::PidFile.is_available() {
        return;
    }
    let me = nix::unistd::geteuid().as_raw();
    let live = Sleeper::start();
    let zombie = Sleeper::start();
    let zombie_ticks = zombie.start_ticks();
    let zombie = zombie.into_zombie();
    let gone = {
        let s = Sleeper::start();
        (s.pid(), s.start_ticks())
    }; // killed and reaped here
    let init_ticks = onlyone::process::stat(1).map(|s| s.start_ticks);
    let mut valid_then_padding = record(&identity(live.pid(), Some(live.start_ticks()), me));
    valid_then_padding.extend(std::iter::repeat_n(b' ', 2 << 20));
    let cut_short = {
        let r = record(&identity(live.pid(), Some(live.start_ticks()), me));
        r[..r.len() - 4].to_vec()
    };
    let cases = vec![
        Case {
            name: "empty",
            content: Some(Vec::new()),
            expect: Expect::Corrupt("empty"),
        },
        Case {
            name: "blank-lines",
            content: Some(b"\n\n  \n".to_vec()),
            expect: Expect::Corrupt("not a pid"),
        },
        Case {
            name: "garbage",
            content: Some(b"this is not a pid file at all\n".to_vec()),
            expect: Expect::Corrupt("not a pid"),
        },
        Case {
            name: "binary",
            content: Some(pseudo_random(1024, 0x5eed)),
            expect: Expect::Corrupt(""),
        },
        Case {
            name: "nul-bytes",
            content: Some(vec![0; 64]),
            expect: Expect::Corrupt("not a pid"),
        },
        Case {
            name: "megabytes",
            content: Some(vec![b'9'; 4 << 20]),
            expect: Expect::Corrupt("bytes long"),
        },
        Case {
            name: "record-then-megabytes",
            content: Some(valid_then_padding),
            expect: Expect::Corrupt("bytes long"),
        },
        Case {
            name: "pid-0-classic",
            content: Some(b"0\n".to_vec()),
            expect: Expect::Corrupt("pid 0"),
        },
        Case {
            name: "pid-0-record",
            content: Some(b"0\nonlyone 1\nuid 0\nend\n".to_vec()),
            expect: Expect::Corrupt("pid 0"),
        },
        Case {
            name: "pid-1-classic",
            content: Some(b"1\n".to_vec()),
            expect: Expect::Corrupt("not written by onlyone"),
        },
        Case {
            name: "negative",
            content: Some(b"-42\nonlyone 1\nuid 0\nend\n".to_vec()),
            expect: Expect::Corrupt("pid -42"),
        },
        Case {
            name: "above-pid-range",
            content: Some(b"2147483648\nonlyone 1\nuid 0\nend\n".to_vec()),
            expect: Expect::Corrupt("out of range"),
        },
        Case {
            name: "huge-number",
            content: Some(b"99999999999999999999999\nonlyone 1\nuid 0\nend\n".to_vec()),
            expect: Expect::Corrupt("not a pid"),
        },
        Case {
            name: "our-own-pid-classic",
            content: Some(format!("{}\n", std::process::id()).into_bytes()),
            expect: Expect::Corrupt("not written by onlyone"),
        },
        Case {
            name: "future-version",
            content: Some(format!("{}\nonlyone 2\nuid 0\nend\n", live.pid()).into_bytes()),
            expect: Expect::Corrupt("not written by onlyone"),
        },
        Case {
            name: "cut-short",
            content: Some(cut_short),
            expect: Expect::Corrupt("incomplete"),
        },
        Case {
            name: "bad-start-field",
            content: Some(
                format!("{}\nonlyone 1\nstart soon\nuid 0\nend\n", live.pid()).into_bytes(),
            ),
            expect: Expect::Corrupt("bad \"start\""),
        },
        Case {
            name: "no-uid",
            content: Some(format!("{}\nonlyone 1\nend\n", live.pid()).into_bytes()),
            expect: Expect::Corrupt("no uid"),
        },
        Case {
            name: "a-directory",
            content: None,
            expect: Expect::Corrupt("not a regular file"),
        },
        Case {
            name: "a-fifo",
            content: None,
            expect: Expect::Corrupt("not a regular file"),
        },
        Case {
            name: "live-holder",
            content: Some(record(&identity(live.pid(), Some(live.start_ticks()), me))),
            expect: Expect::Held(live.pid()),
        },
        Case {
            name: "live-holder-no-start-time",
            content: Some(record(&identity(live.pid(), None, me))),
            expect: Expect::Held(live.pid()),
        },
        Case {
            name: "pid-1-alive",
            content: Some(record(&identity(1, init_ticks, 0))),
            expect: Expect::Held(1),
        },
        Case {
            name: "another-pid-namespace",
            content: Some(record(&ProcessIdentity {
                pid_ns: Some(1),
                ..identity(live.pid(), Some(live.start_ticks()), me)
            })),
            expect: Expect::HeldElsewhere,
        },
        Case {
            name: "unknown-keys-kept-compatible",
            content: Some(
                format!(
                    "{}\nonlyone 1\nstart {}\nfuture-key whatever\nuid {me}\nend\n",
                    live.pid(),
                    live.start_ticks()
                )
                .into_bytes(),
            ),
            expect: Expect::Held(live.pid()),
        },
        Case {
            name: "zombie",
            content: Some(record(&identity(zombie.pid(), Some(zombie_ticks), me))),
            expect: Expect::Stale,
        },
        Case {
            name: "exited",
            content: Some(record(&identity(gone.0, Some(gone.1), me))),
            expect: Expect::Stale,
        },
        Case {
            name: "reused-pid",
            content: Some(record(&identity(
                live.pid(),
                Some(live.start_ticks() - 1),
                me,
            ))),
            expect: Expect::Stale,
        },
        Case {
            name: "pid-1-reused",
            content: Some(record(&identity(1, Some(u64::MAX), 0))),
            expect: Expect::Stale,
        },
        Case {
            name: "previous-boot",
            content: Some(record(&ProcessIdentity {
                boot_id: Some("00000000-0000-0000-0000-000000000000".into()),
                ..identity(live.pid(), Some(live.start_ticks()), me)
            })),
            expect: Expect::Stale,
        },
    ];

    let dir = tempfile::tempdir().unwrap();
    let (mut corrupt, mut held, mut stale) = (0, 0, 0);
    for case in &cases {
        let name = format!("stale-{}", case.name);
        let path = dir.path().join(format!("{name}.pid"));
        match (&case.content, case.name) {
            (Some(bytes), _) => fs::write(&path, bytes).unwrap(),
            (None, "a-directory") => fs::create_dir(&path).unwrap(),
            (None, _) => nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap(),
        }
        let l = lock(BackendKind::PidFile, &name, dir.path());
        let what = format!("{} ({:?})", case.name, case.expect);
        match case.expect {
            Expect::Corrupt(why) => {
                for err in [l.holder().unwrap_err(), l.try_acquire().unwrap_err()] {
                    assert_eq!(err.kind(), ErrorKind::Corrupt, "{what}: {err}");
                    let text = err.to_string();
                    assert!(
                        text.contains(why) && text.contains(&*path.to_string_lossy()),
                        "{what}: {text}"
                    );
                }
                corrupt += 1;
            }
            Expect::Held(pid) => {
                assert_eq!(l.holder().unwrap().and_then(|h| h.pid), Some(pid), "{what}");
                match l.try_acquire().unwrap() {
                    Acquire::Held(h) => assert_eq!(h.pid, Some(pid), "{what}: {h}"),
                    Acquire::Acquired(_) => panic!("{what}: robbed a live holder"),
                }
                held += 1;
            }
            Expect::HeldElsewhere => {
                let h = l.holder().unwrap().expect("held");
                assert_eq!(
                    (h.pid, h.kind),
                    (None, onlyone::HolderKind::OtherPidNamespace),
                    "{what}: {h}"
                );
                match l.try_acquire().unwrap() {
                    Acquire::Held(h) => assert_eq!(h.pid, None, "{what}: {h}"),
                    Acquire::Acquired(_) => panic!("{what}: robbed a live holder"),
                }
                held += 1;
            }
            Expect::Stale => {
                assert_eq!(
                    l.holder().unwrap(),
                    None,
                    "{what}: a stale file has no holder"
                );
                let g = l
                    .try_acquire()
                    .unwrap()
                    .guard()
                    .unwrap_or_else(|| panic!("{what}: not taken over"));
                let now = onlyone::record::parse(&fs::read(&path).unwrap()).unwrap();
                assert_eq!(now.pid, std::process::id(), "{what}: our record");
                g.release().unwrap();
                assert!(!path.exists(), "{what}: released file removed");
                stale += 1;
                continue;
            }
        }
        // Not ours: left exactly as it was.
        match &case.content {
            Some(bytes) => assert!(fs::read(&path).unwrap() == *bytes, "{what}: file changed"),
            None => assert!(!fs::symlink_metadata(&path).unwrap().is_file(), "{what}"),
        }
    }
    assert!(onlyone::process::stat(live.pid()).is_some_and(|s| s.state != 'Z'));
    figure(&format!(
        "stale pidfile: {} kinds of file: {corrupt} corrupt (refused, untouched), {held} with a \
         live or unjudgeable holder (not taken, untouched), {stale} stale (taken over)",
        cases.len()
    ));
}

/// EPERM from kill(pid, 0) means alive: a contender of another uid must not take over from a
/// live process it may not signal. The contender runs as uid 65534; the holder is a root process.
#[test]
fn another_users_live_holder_counts_as_alive() {
    if !BackendKind::PidFile.is_available() || !need_root("a contender dropped to uid 65534") {
        return;
    }
    let (_exe_dir, exe) = holder_exe_for_everyone();
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let root_process = Sleeper::start();
    let name = unique_name("eperm");
    let path = dir.path().join(format!("{name}.pid"));
    let content = record(&identity(
        root_process.pid(),
        Some(root_process.start_ticks()),
        0,
    ));
    fs::write(&path, &content).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = Command::new(&exe);
    cmd.arg("pidfile")
        .arg(&name)
        .arg(dir.path())
        .uid(NOBODY)
        .gid(NOBODY);
    let mut contender = Proc::spawn(cmd);
    let answer = contender.line();
    assert_eq!(
        answer,
        format!("held {} OtherUser", root_process.pid()),
        "uid {NOBODY} judging a root holder"
    );
    assert_eq!(fs::read(&path).unwrap(), content, "file untouched");
    figure("stale pidfile: another user's live holder (kill gives EPERM) counts as alive");
}

/// A live holder is never robbed, however many contenders try at once.
#[test]
fn a_live_holder_is_never_robbed() {
    for backend in common::backends() {
        let dir = tempfile::tempdir().unwrap();
        let name = unique_name(&format!("rob-{backend}"));
        let mut holder = Proc::holder(backend, &name, dir.path(), None);
        assert!(parse_outcome(&holder.line()).0);
        let l = lock(backend, &name, dir.path());
        let before = fs::read(l.resource()).ok();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..500 {
                        match l.try_acquire().unwrap() {
                            Acquire::Held(h) => {
                                assert_eq!(h.pid, Some(holder.pid()));
                                assert_eq!(h.kind, HolderKind::SameUser);
                            }
                            Acquire::Acquired(_) => panic!("{backend}: robbed a live holder"),
                        }
                    }
                });
            }
        });
        assert_eq!(holder.ask("verify"), "ok", "{backend}");
        assert_eq!(
            fs::read(l.resource()).ok(),
            before,
            "{backend}: file changed"
        );
    }
    figure("stale: a live holder kept its lock against 4 x 500 concurrent tries, on every backend");
}

/// flock: the kernel lock is the truth; a record in the file is only a name. Stale records are
/// replaced; a record naming a live process that does not hold the lock does not stop anyone.
#[test]
fn flock_records_never_decide_who_holds() {
    if !BackendKind::Flock.is_available() {
        return;
    }
    let me = nix::unistd::geteuid().as_raw();
    let live = Sleeper::start();
    let gone = {
        let s = Sleeper::start();
        (s.pid(), s.start_ticks())
    };
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("killed-holder", record(&identity(gone.0, Some(gone.1), me))),
        (
            "live-process-not-locking",
            record(&identity(live.pid(), Some(live.start_ticks()), me)),
        ),
        ("empty", Vec::new()),
    ];
    for (case, content) in &cases {
        let name = format!("flock-{case}");
        let path = dir.path().join(format!("{name}.lock"));
        fs::write(&path, content).unwrap();
        let l = lock(BackendKind::Flock, &name, dir.path());
        assert_eq!(l.holder().unwrap(), None, "{case}: nobody holds the flock");
        let g = l.try_acquire().unwrap().guard().expect(case);
        let now = onlyone::record::parse(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(now.pid, std::process::id(), "{case}");
        g.release().unwrap();
    }
    // Held through a descriptor that wrote no record (a flock(1) user): named via /proc/locks.
    let path = dir.path().join("foreign.lock");
    let file = fs::File::create(&path).unwrap();
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let l = lock(BackendKind::Flock, "foreign", dir.path());
    let h = l.try_acquire().unwrap().holder().cloned().expect("held");
    assert_eq!(h.pid, Some(std::process::id()));
    figure(&format!(
        "stale flock: {} kinds of leftover record never decide who holds; a holder without a \
         record is named through /proc/locks",
        cases.len()
    ));
}
