//! The waiters' queue: one wake-up per hand-over, on every backend (Linux and Android).
//!
//! Without it every waiter sleeps on the holder (the hang-up of its connection to the holder's
//! socket, an inotify watch on the lock file) and a release wakes all of them, though only one
//! can win: 74 to 96 wake-ups per hand-over with 256 waiters. With it the waiters form a line, as
//! in ZooKeeper's lock recipe, where each waiter watches only its predecessor:
//!
//! - A waiter whose first try failed binds the lowest free *slot*, an abstract Unix socket name
//!   `"\0onlyone-wait/u<euid>/<hash of the lock's resource>/<n>"`, and listens on it (it never
//!   accepts: nothing is read or written there).
//! - It connects to the nearest slot below its own whose owner listens: its predecessor. It
//!   sleeps on that connection alone; the kernel hangs it up when the predecessor's slot closes
//!   (it left the line: took the lock and let go, gave up at its deadline, or died, SIGKILL
//!   included). Then it looks for the next slot below, and with none left it is the head.
//! - Only the head sleeps on the holder, through the backend's own [`WakeUp`](crate::WakeUp).
//! - A waiter that takes the lock keeps its slot in its [`Guard`](crate::Guard) until the lock is
//!   released, and closes it right after: its successor is the one waiter woken by that release,
//!   and it finds the lock free.
//!
//! The line only decides who sleeps on what; the lock itself is still taken by the backend's own
//! try, so nothing here can make two holders, and a slot owner that misbehaves (a waiter stopped
//! by SIGSTOP or a debugger) delays those behind it until it runs again or their deadlines pass,
//! as a stopped process that the kernel's own blocking `flock(2)` granted the lock to would.
//! Slots of another uid are never trusted as predecessors (`SO_PEERCRED`). Slot names live in
//! the network namespace: waiters of a lock file shared across network namespaces form one line
//! per namespace, each with its own head (correct, with one wake-up per line). A waiter that
//! cannot join (no socket to be had, 65,536 slots taken) waits as the head does.
//!
//! Not in the portable build (`ONLYONE_PORTABLE=1`), nor on other systems: there every waiter
//! sleeps on the holder, as before.

#[cfg(all(any(target_os = "linux", target_os = "android"), not(onlyone_portable)))]
mod imp {
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

    use nix::errno::Errno;
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, connect, getsockopt, listen,
        socket, sockopt,
    };

    /// The most slots a line has; a waiter that finds them all taken sleeps on the holder.
    const MAX_SLOTS: u32 = 1 << 16;

    /// A waiter's place in the line of one lock.
    #[derive(Debug)]
    pub(crate) struct Place {
        base: String,
        slot: u32,
        listener: OwnedFd,
        /// The slot number of the predecessor and the connection to it.
        pred: Option<(u32, OwnedFd)>,
        /// Set when the predecessor left: look below this slot after the next failed try.
        rescan_below: Option<u32>,
        uid: u32,
    }

    impl Place {
        /// Joins the line of the lock whose resource is `resource`: binds the lowest free slot and
        /// finds the predecessor. `None` when no slot can be had.
        pub(crate) fn join(resource: &str) -> Option<Place> {
            let uid = nix::unistd::geteuid().as_raw();
            let base = format!("onlyone-wait/u{uid}/{:016x}/", fnv1a(resource.as_bytes()));
            // One socket for all the binds: a failed bind leaves it unbound.
            let fd = new_socket()?;
            for slot in 0..MAX_SLOTS {
                match bind(fd.as_raw_fd(), &slot_addr(&base, slot)) {
                    Ok(()) => {}
                    Err(Errno::EADDRINUSE) => continue,
                    Err(_) => return None,
                }
                listen(&fd, Backlog::new(64).ok()?).ok()?;
                let mut place = Place {
                    base,
                    slot,
                    listener: fd,
                    pred: None,
                    rescan_below: None,
                    uid,
                };
                place.find_predecessor(slot);
                return Some(place);
            }
            None
        }

        /// Connects to the nearest listening slot of our uid below `below`.
        fn find_predecessor(&mut self, below: u32) {
            self.pred = None;
            for slot in (0..below).rev() {
                let Some(fd) = new_socket() else { return };
                match connect(fd.as_raw_fd(), &slot_addr(&self.base, slot)) {
                    Ok(()) => {}
                    // Unbound, bound without listening, or a backlog full of strangers: not a
                    // predecessor we can sleep on.
                    Err(_) => continue,
                }
                let ours =
                    getsockopt(&fd, sockopt::PeerCredentials).is_ok_and(|c| c.uid() == self.uid);
                if ours {
                    self.pred = Some((slot, fd));
                    return;
                }
            }
        }

        /// The connection to the predecessor, to sleep on; `None` for the head of the line.
        pub(crate) fn predecessor(&self) -> Option<BorrowedFd<'_>> {
            self.pred.as_ref().map(|(_, fd)| fd.as_fd())
        }

        /// The predecessor's connection became readable: it left the line, most often by letting
        /// go of the lock it held. The waiter tries the lock before it looks for the next one
        /// below ([`Place::rescan`]): the slots below are mostly empty by then, and looking
        /// through them costs a `connect` each.
        pub(crate) fn predecessor_left(&mut self) {
            if let Some((slot, _)) = self.pred.take() {
                self.rescan_below = Some(slot);
            }
        }

        /// After a failed try: looks for a predecessor below the one that left, if one did.
        /// Whether there is one now.
        pub(crate) fn rescan(&mut self) -> bool {
            if let Some(below) = self.rescan_below.take() {
                self.find_predecessor(below);
            }
            self.pred.is_some()
        }

        /// The slot, to keep while the lock is held.
        pub(crate) fn into_slot(self) -> OwnedFd {
            self.listener
        }

        /// Our slot number (tests, benches).
        #[allow(dead_code)]
        pub(crate) fn slot(&self) -> u32 {
            self.slot
        }
    }

    fn new_socket() -> Option<OwnedFd> {
        socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .ok()
    }

    fn slot_addr(base: &str, slot: u32) -> UnixAddr {
        UnixAddr::new_abstract(format!("{base}{slot}").as_bytes())
            .expect("slot names are shorter than 108 bytes")
    }

    /// FNV-1a, 64 bits: the same in every build of onlyone (the standard library's hasher may change
    /// between Rust releases, and two onlyone builds must find the same line).
    fn fnv1a(bytes: &[u8]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_line_of_three() {
            let resource = format!("test-queue-{}", std::process::id());
            let a = Place::join(&resource).expect("join");
            let b = Place::join(&resource).expect("join");
            let mut c = Place::join(&resource).expect("join");
            assert!(a.predecessor().is_none(), "the first is the head");
            assert!(b.predecessor().is_some());
            assert_eq!(c.pred.as_ref().map(|p| p.0), Some(b.slot()));
            drop(b);
            c.predecessor_left();
            assert!(c.rescan());
            assert_eq!(c.pred.as_ref().map(|p| p.0), Some(a.slot()));
            drop(a);
            c.predecessor_left();
            assert!(c.predecessor().is_none(), "no predecessor until the rescan");
            assert!(!c.rescan(), "the last one left is the head");
            // The freed lowest slot goes to the next to join, which is a head too.
            let d = Place::join(&resource).expect("join");
            assert_eq!(d.slot(), 0);
        }

        #[test]
        fn hashes_are_stable() {
            assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
            assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        }
    }
}

/// Elsewhere there is no line: every waiter sleeps on the holder.
#[cfg(not(all(any(target_os = "linux", target_os = "android"), not(onlyone_portable))))]
mod imp {
    use std::os::fd::{BorrowedFd, OwnedFd};

    /// A waiter's place in the line of one lock: never had here.
    #[derive(Debug)]
    pub(crate) enum Place {}

    impl Place {
        pub(crate) fn join(_resource: &str) -> Option<Place> {
            None
        }
        pub(crate) fn predecessor(&self) -> Option<BorrowedFd<'_>> {
            match *self {}
        }
        pub(crate) fn predecessor_left(&mut self) {
            match *self {}
        }
        pub(crate) fn rescan(&mut self) -> bool {
            match *self {}
        }
        pub(crate) fn into_slot(self) -> OwnedFd {
            match self {}
        }
    }
}

pub(crate) use imp::Place;

/// A guard that keeps the waiter's slot until the lock is released, when there is one.
pub(crate) fn keep(guard: crate::Guard, place: Option<Place>) -> crate::Guard {
    match place {
        Some(place) => guard.with_wait_slot(place.into_slot()),
        None => guard,
    }
}
