//! Waiting for a held lock, per backend: woken by a release in a live holder, by the holder's
//! death, and giving up at the deadline with the holder's identity.

// The Unix suite: Windows has its own (tests/windows.rs).
#![cfg(unix)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Proc, backends, lock, parse_outcome, unique_name, wait_until_sleeping_in_poll};
use onlyone::{Acquire, BackendKind, Lock};

/// A holder process, and a waiter process already asleep waiting for it.
fn holder_and_sleeping_waiter(backend: BackendKind, dir: &Path, name: &str) -> (Proc, Proc) {
    let mut holder = Proc::holder(backend, name, dir, None);
    let (acquired, _) = parse_outcome(&holder.line());
    assert!(acquired, "{backend}: holder could not take a free lock");
    let waiter = Proc::holder(backend, name, dir, Some("inf"));
    wait_until_sleeping_in_poll(waiter.pid());
    (holder, waiter)
}

#[test]
fn waiter_wakes_when_a_live_holder_releases() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let name = unique_name("live-release");
        let (mut holder, mut waiter) = holder_and_sleeping_waiter(backend, dir.path(), &name);
        assert_eq!(holder.ask("release"), "released");
        assert_eq!(
            parse_outcome(&waiter.line()),
            (true, Some(waiter.pid())),
            "{backend}: the waiter must get the lock after the release"
        );
        // The holder keeps running and now finds the lock held by the waiter.
        let answer = holder.ask("try");
        assert_eq!(
            parse_outcome(&answer),
            (false, Some(waiter.pid())),
            "{backend}"
        );
    }
}

#[test]
fn waiter_wakes_when_the_holder_is_killed() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let name = unique_name("killed");
        let (mut holder, mut waiter) = holder_and_sleeping_waiter(backend, dir.path(), &name);
        holder.kill();
        assert_eq!(
            parse_outcome(&waiter.line()),
            (true, Some(waiter.pid())),
            "{backend}: the waiter must get the lock after the holder's death"
        );
    }
}

#[test]
fn deadline_returns_held_with_the_holders_pid() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let name = unique_name("deadline");
        let mut holder = Proc::holder(backend, &name, dir.path(), None);
        assert!(parse_outcome(&holder.line()).0);
        let l = lock(backend, &name, dir.path());
        for timeout in [Duration::ZERO, Duration::from_millis(30)] {
            match l.acquire_timeout(Some(timeout)).unwrap() {
                Acquire::Held(h) => assert_eq!(h.pid, Some(holder.pid()), "{backend}"),
                Acquire::Acquired(_) => panic!("{backend}: acquired a held lock"),
            }
        }
        // The waiter process reports the same.
        let mut waiter = Proc::holder(backend, &name, dir.path(), Some("0.05"));
        assert_eq!(
            parse_outcome(&waiter.line()),
            (false, Some(holder.pid())),
            "{backend}"
        );
    }
}

#[test]
fn several_waiters_take_turns() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let name = unique_name("turns");
        let mut holder = Proc::holder(backend, &name, dir.path(), None);
        assert!(parse_outcome(&holder.line()).0);
        let mut waiters: Vec<Proc> = (0..3)
            .map(|_| Proc::holder(backend, &name, dir.path(), Some("inf")))
            .collect();
        for w in &waiters {
            wait_until_sleeping_in_poll(w.pid());
        }
        assert_eq!(holder.ask("release"), "released");
        // Each release lets exactly one more waiter in; the lock passes through all three.
        let mut remaining: Vec<&mut Proc> = waiters.iter_mut().collect();
        while !remaining.is_empty() {
            let winner = next_winner(&mut remaining, backend);
            assert_eq!(winner.ask("release"), "released");
        }
    }
}

/// Finds the waiter that got the lock: the one whose stdout has a line. Polls the pipes.
fn next_winner<'a>(waiters: &mut Vec<&'a mut Proc>, backend: BackendKind) -> &'a mut Proc {
    let mut fds: Vec<nix::poll::PollFd<'_>> = waiters
        .iter()
        .map(|w| nix::poll::PollFd::new(w.stdout_fd(), nix::poll::PollFlags::POLLIN))
        .collect();
    let n = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(60_000u16)).unwrap();
    assert!(n > 0, "{backend}: no waiter got the lock within a minute");
    let i = fds
        .iter()
        .position(|f| f.revents().is_some_and(|r| !r.is_empty()))
        .unwrap();
    drop(fds);
    let winner = waiters.remove(i);
    let (acquired, pid) = parse_outcome(&winner.line());
    assert!(acquired && pid == Some(winner.pid()), "{backend}");
    winner
}
