//! Races: 16 processes take and release one lock over and over, at random moments, through all
//! three ways of asking (`try_acquire`, a short timeout, no timeout). Every step is logged to an
//! `O_APPEND` witness file with one `write(2)` per line, so the file is the true order of events;
//! replaying it shows whether two processes were ever inside at once.
//!
//! Scale: `ONLYONE_TEST_SCALE=full` for the README figures (16 x 1000 holds per backend).

// The Unix suite: Windows has its own (tests/windows.rs).
#![cfg(unix)]

mod common;
mod reliability_common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Proc, backends, unique_name};
use onlyone::BackendKind;
use reliability_common::{Rng, Verdict, Watchdog, Witness, figure, scaled};

/// Longest random hold, in microseconds.
const HOLD_US: u64 = 100;

/// `procs` holder processes each take the lock `holds` times; returns what the witness saw.
fn race(backend: BackendKind, procs: usize, holds: usize, nolock: bool, rng: &mut Rng) -> Verdict {
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name(&format!("race-{backend}"));
    let witness = Witness::create(dir.path());
    let mut racers: Vec<Proc> = (0..procs)
        .map(|_| Proc::holder(backend, &name, dir.path(), Some("idle")))
        .collect();
    for p in &mut racers {
        assert_eq!(p.line(), "ready");
    }
    let pids: Vec<u32> = racers.iter().map(Proc::pid).collect();
    // A hang (a waiter never woken) fails the test instead of stalling CI.
    let _dog = Watchdog::new(
        &format!("{backend} race"),
        Duration::from_secs(900),
        pids.clone(),
    );
    let mode = if nolock { " nolock" } else { "" };
    for p in &mut racers {
        p.send(&format!(
            "race {} {holds} {} {HOLD_US}{mode}",
            witness.path.display(),
            rng.next()
        ));
    }
    for p in &mut racers {
        let done = p.line();
        assert!(
            done.starts_with(&format!("raced {holds} ")),
            "{backend}: racer {} answered {done:?}",
            p.pid()
        );
    }
    Verdict::analyse(&witness.read(), &pids.into_iter().collect::<HashSet<u32>>())
}

/// The witness is able to see a double holder: without the lock, racers overlap.
#[test]
fn witness_sees_overlaps_when_nothing_excludes() {
    let mut rng = Rng::from_env_or_clock("witness control");
    let v = race(onlyone::DEFAULT_BACKEND, 8, 50, true, &mut rng);
    figure(&format!(
        "control without a lock: 8 processes x 50 holds, {} overlaps seen",
        v.double_holders.len()
    ));
    assert!(
        !v.double_holders.is_empty(),
        "the witness saw no overlap among 8 unlocked racers: it cannot prove anything"
    );
}

#[test]
fn sixteen_processes_never_hold_at_once() {
    const PROCS: usize = 16;
    let holds = scaled(1000, 100);
    let mut rng = Rng::from_env_or_clock("races");
    for backend in backends() {
        let started = std::time::Instant::now();
        let v = race(backend, PROCS, holds, false, &mut rng);
        v.assert_clean(&format!("{backend} race"));
        assert_eq!(
            v.holds,
            PROCS * holds,
            "{backend}: every racer got its holds"
        );
        figure(&format!(
            "races {backend}: {PROCS} processes x {holds} holds = {} holds, {} tries found it held \
             ({} without a pid), {} double holders, {} errors ({:.1} s)",
            v.holds,
            v.held_answers,
            v.unnamed_holders,
            v.double_holders.len(),
            v.errors.len(),
            started.elapsed().as_secs_f64()
        ));
    }
}
