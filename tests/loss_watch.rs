//! The file backends' loss descriptor (`Guard::loss_fd`, Linux: an inotify watch on the held
//! file) and the pool its inotify instances come from. A test binary of its own: it counts this
//! process's inotify instances, which the waits of other tests would change.

#![cfg(target_os = "linux")]

mod common;

use std::fs;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::PermissionsExt;

use common::{inotify_instances, lock, unique_name};
use onlyone::{BackendKind, ErrorKind};

/// Whether `fd` is readable now (poll with a zero timeout).
fn readable(fd: BorrowedFd<'_>) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

/// The tests count this process's instances: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn file_backends() -> impl Iterator<Item = BackendKind> {
    [BackendKind::Flock, BackendKind::PidFile]
        .into_iter()
        .filter(|b| b.is_available())
}

/// Quiet while the file stays, readable on a harmless `chmod` until `verify` says the lock is
/// still held, readable when the file is deleted, with `verify` then saying `Lost`. Ten guards in
/// a row, each with its watch, leave at most one instance open: it goes back to the pool for the
/// next guard rather than being closed (a close waits for a kernel grace period; BENCHMARKS.md).
#[test]
fn loss_descriptor_fires_on_deletion_and_its_instance_is_reused() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    for backend in file_backends() {
        let l = lock(backend, &unique_name("loss"), dir.path());
        let before = inotify_instances(me);
        for round in 0..10 {
            let g = l.try_acquire().unwrap().guard().unwrap();
            let fd = g.loss_fd().expect("a loss watch on Linux");
            assert!(!readable(fd), "{backend}, round {round}: quiet at first");
            fs::set_permissions(l.resource(), fs::Permissions::from_mode(0o644)).unwrap();
            assert!(readable(fd), "{backend}: a chmod fires the watch");
            g.verify().unwrap();
            assert!(
                !readable(g.loss_fd().unwrap()),
                "{backend}: verify quiets it"
            );
            if round == 9 {
                fs::remove_file(l.resource()).unwrap();
                assert!(
                    readable(g.loss_fd().unwrap()),
                    "{backend}: the deletion fires it"
                );
                assert_eq!(g.verify().unwrap_err().kind(), ErrorKind::Lost, "{backend}");
            }
            drop(g);
        }
        let after = inotify_instances(me);
        assert!(
            after <= before + 1,
            "{backend}: {after} inotify instances after ten guards, {before} before"
        );
    }
}

/// Instances count against the user's `fs.inotify.max_user_instances`: after 20 guards held at
/// once, each with its watch (20 instances), are released, the pool keeps at most 8 of them.
#[test]
fn the_pool_keeps_few_idle_instances() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    for backend in file_backends() {
        let before = inotify_instances(me);
        let locks: Vec<_> = (0..20)
            .map(|i| lock(backend, &unique_name(&format!("pool{i}")), dir.path()))
            .collect();
        let guards: Vec<_> = locks
            .iter()
            .map(|l| {
                let g = l.try_acquire().unwrap().guard().unwrap();
                assert!(g.loss_fd().is_some(), "{backend}: a loss watch on Linux");
                g
            })
            .collect();
        let held = inotify_instances(me);
        assert!(
            held >= 20,
            "{backend}: 20 watches at once, {held} instances"
        );
        drop(guards);
        let after = inotify_instances(me);
        assert!(
            after <= before.max(8),
            "{backend}: {after} inotify instances kept idle, {before} before"
        );
    }
}
