//! Abstract Unix socket backend (Linux, Android): `bind(2)` a `SOCK_STREAM` socket to
//! `"\0onlyone/<scope>/<name>"` and `listen(2)` on it (unix(7)).
//!
//! - **Exclusion:** `bind` fails with `EADDRINUSE` while any stream socket holds the name.
//! - **Release:** the kernel frees the name when the last descriptor closes: when the guard drops,
//!   and when the holder dies, even by SIGKILL, before it is reaped. No file, nothing to clean up,
//!   works in a chroot.
//! - **Holder identity:** a contender connects without blocking and reads `SO_PEERCRED` (pid and
//!   uid of the process that called `listen`), then `/proc/PID` for start time and command line.
//!   Pid 0 means the listener's PID namespace is not visible from ours: the holder is reported as
//!   [`HolderKind::OtherPidNamespace`] with its uid. `Lock::holder` also asks `SO_PEERPIDFD`
//!   (Linux 6.5+), a pidfd of that very listener: if it has exited (a child kept the socket) its
//!   pid may be another process's now, so nothing is read on its strength and the holder is
//!   unidentified; if it runs, it is pinned as [`Holder::process`](crate::Holder::process).
//!   The holder listens with the largest backlog and never accepts; once the backlog is full of
//!   contenders that came and went, lookups fall back to `/proc/net/unix` and the processes'
//!   descriptors in `/proc/PID/fd` (visible for your own processes, or all as root).
//! - **Waiting:** a waiter stays connected to the holder's socket; the kernel hangs the connection
//!   up when the socket closes, and the waiter races to bind. A name bound without `listen` gives no
//!   such event: then, and only then, the waiter retries with a backoff of 1 to 50 ms.
//! - **Scope:** the network namespace. Processes in another one (`unshare -n`, containers, systemd
//!   `PrivateNetwork=`) do not see the name, and anyone may bind any free name: a name held by
//!   another uid, or bound without listening, is reported as such.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, connect, getsockopt, listen,
    socket, sockopt,
};

use crate::backend::{BackendKind, wait_loop};
use crate::error::{Error, ErrorKind, sys};
use crate::lock::{
    Acquire, Guard, HeldLock, Holder, HolderKind, LazyHolder, Lock, WakeSource, WakeUp,
};
use crate::name::{LockName, Scope};

/// A lock held by binding an abstract Unix socket name. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct AbstractSocketLock {
    name: LockName,
    /// `@` and the socket name: what [`Lock::resource`] gives, made once.
    resource: String,
    addr: UnixAddr,
}

/// What connecting to the holder's address told us.
enum Probe {
    /// Connected: the holder listens; `SO_PEERCRED` said pid and uid. The connection is kept
    /// for waiting on its hangup.
    Connected(OwnedFd, i32, u32),
    /// Nobody listens on the name: it is free, or bound without `listen`.
    Refused,
    /// The holder's backlog is full.
    BacklogFull,
}

impl AbstractSocketLock {
    /// The lock `name` in `scope`; see [`LockName::abstract_socket_name`] for the socket name.
    pub fn new(name: LockName, scope: Scope) -> AbstractSocketLock {
        let socket_name = name.abstract_socket_name(scope);
        let addr = UnixAddr::new_abstract(socket_name.as_bytes())
            .expect("mapped names are at most 107 bytes");
        AbstractSocketLock {
            name,
            resource: format!("@{socket_name}"),
            addr,
        }
    }

    /// The abstract socket name, without the leading NUL.
    pub fn socket_name(&self) -> &str {
        &self.resource[1..]
    }

    fn new_socket(&self, flags: SockFlag) -> Result<OwnedFd, Error> {
        socket(
            AddressFamily::Unix,
            SockType::Stream,
            flags | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| {
            sys(
                ErrorKind::Io,
                format!("cannot create a socket for {}", self.resource()),
                e,
            )
        })
    }

    /// Binds and listens; `None` when the name is taken.
    fn bind_listener(&self) -> Result<Option<OwnedFd>, Error> {
        let fd = self.new_socket(SockFlag::empty())?;
        match bind(fd.as_raw_fd(), &self.addr) {
            Ok(()) => {}
            Err(Errno::EADDRINUSE) => return Ok(None),
            Err(e) => {
                return Err(sys(
                    ErrorKind::Io,
                    format!("cannot bind {}", self.resource()),
                    e,
                ));
            }
        }
        listen(&fd, Backlog::MAXCONN).map_err(|e| {
            sys(
                ErrorKind::Io,
                format!("cannot listen on {}", self.resource()),
                e,
            )
        })?;
        Ok(Some(fd))
    }

    /// Connects to the holder and reads its credentials (`SO_PEERCRED`).
    fn probe(&self) -> Result<Probe, Error> {
        let fd = self.new_socket(SockFlag::SOCK_NONBLOCK)?;
        match connect(fd.as_raw_fd(), &self.addr) {
            Ok(()) => {}
            Err(Errno::ECONNREFUSED) | Err(Errno::ENOENT) => return Ok(Probe::Refused),
            Err(Errno::EAGAIN) => return Ok(Probe::BacklogFull),
            Err(e) => {
                return Err(sys(
                    ErrorKind::Io,
                    format!("cannot connect to the holder of {}", self.resource()),
                    e,
                ));
            }
        }
        let creds = getsockopt(&fd, sockopt::PeerCredentials).map_err(|e| {
            sys(
                ErrorKind::Io,
                format!(
                    "cannot read the holder's credentials on {}",
                    self.resource()
                ),
                e,
            )
        })?;
        Ok(Probe::Connected(fd, creds.pid(), creds.uid()))
    }

    /// Who holds the name, for a try whose `bind` failed: read when the holder is first asked
    /// for (see [`LazyHolder`]), so that a failed try costs a `socket` + `bind` + `close`.
    fn lazy_holder(&self) -> LazyHolder {
        let lock = self.clone();
        LazyHolder::new(move || lock.look_up_holder())
    }

    /// Connects to the holder and reads who it is (unproven: no `SO_PEERPIDFD`). A name that
    /// refuses connections is looked up in `/proc/net/unix` after a few tries (a holder may be
    /// between `bind` and `listen`); a name that has become free meanwhile gives an unidentified
    /// holder: it was held when the try failed.
    fn look_up_holder(&self) -> Holder {
        for round in 0..4 {
            match self.probe() {
                Ok(Probe::Connected(_, pid, uid)) => return peer_holder(None, pid, uid),
                Ok(Probe::Refused) if round < 3 => std::thread::yield_now(),
                Ok(Probe::Refused) => {}
                Ok(Probe::BacklogFull) | Err(_) => break,
            }
        }
        self.proc_lookup().unwrap_or_else(Holder::unidentified)
    }

    /// Looks the name up in `/proc/net/unix`: `None` if unbound, else whether it listens and
    /// which process holds it (when its descriptors are visible to us).
    fn proc_lookup(&self) -> Option<Holder> {
        let table = fs::read_to_string("/proc/net/unix").ok()?;
        let want = &self.resource;
        // Every connection waiting in the holder's backlog is listed under the holder's name too
        // (not listening, owned by no process): the listening entry is the holder.
        let mut entries = table
            .lines()
            .skip(1)
            .filter_map(parse_proc_net_unix)
            .filter(|e| &e.path == want && e.stream);
        let first = entries.next()?;
        let entry = if first.listening {
            first
        } else {
            entries.find(|e| e.listening).unwrap_or(first)
        };
        let mut holder = find_socket_owner(entry.inode)
            .map(|pid| Holder::from_pid(pid, None, None))
            .unwrap_or_else(Holder::unidentified);
        if !entry.listening {
            holder.kind = HolderKind::Unresponsive;
        }
        Some(holder)
    }

    fn attempt_once(&self) -> Result<Attempt, Error> {
        // A bind can fail because a holder is between bind and listen, or a holder released
        // between our bind and connect: retry a few times before calling the name squatted.
        for round in 0..4 {
            if let Some(fd) = self.bind_listener()? {
                return Ok(Attempt::Acquired(self.guard(fd)));
            }
            match self.probe()? {
                Probe::Connected(conn, pid, uid) => {
                    let holder = LazyHolder::new(move || peer_holder(None, pid, uid));
                    return Ok(Attempt::Held(holder, Some(conn)));
                }
                Probe::BacklogFull => {
                    let holder = self.lazy_proc_lookup(HolderKind::Unidentified);
                    return Ok(Attempt::Held(holder, None));
                }
                Probe::Refused if round < 3 => std::thread::yield_now(),
                Probe::Refused => {}
            }
        }
        Ok(Attempt::Held(
            self.lazy_proc_lookup(HolderKind::Unresponsive),
            None,
        ))
    }

    /// The holder `/proc/net/unix` names, read when first asked for; a holder of kind `unknown`
    /// when it names none.
    fn lazy_proc_lookup(&self, unknown: HolderKind) -> LazyHolder {
        let lock = self.clone();
        LazyHolder::new(move || {
            lock.proc_lookup().unwrap_or_else(|| Holder {
                kind: unknown,
                ..Holder::unidentified()
            })
        })
    }

    fn guard(&self, fd: OwnedFd) -> Guard {
        Guard::new(
            Box::new(AbstractSocketHeld { fd }),
            BackendKind::AbstractSocket,
            self.resource(),
        )
    }
}

enum Attempt {
    Acquired(Guard),
    /// Held; with the connection to the holder when it listens, to wait on.
    Held(LazyHolder, Option<OwnedFd>),
}

impl Lock for AbstractSocketLock {
    fn try_acquire(&self) -> Result<Acquire, Error> {
        // A failed bind is the answer: the name is held. Who holds it is read when asked.
        Ok(match self.bind_listener()? {
            Some(fd) => Acquire::Acquired(self.guard(fd)),
            None => Acquire::Held(self.lazy_holder()),
        })
    }

    fn acquire_timeout(&self, timeout: Option<Duration>) -> Result<Acquire, Error> {
        wait_loop(self, timeout)
    }

    fn attempt(&self) -> Result<crate::Attempt, Error> {
        Ok(match self.attempt_once()? {
            Attempt::Acquired(g) => crate::Attempt::Acquired(g),
            // The kernel hangs this connection up when the holder's socket closes.
            Attempt::Held(h, Some(conn)) => {
                crate::Attempt::Held(h, WakeUp::on_event(vec![WakeSource::new(conn)]))
            }
            // No listener to wait on (a squatted name, a full backlog): back off.
            Attempt::Held(h, None) => crate::Attempt::Held(h, WakeUp::backoff(Vec::new())),
        })
    }

    fn holder(&self) -> Result<Option<Holder>, Error> {
        match self.probe()? {
            Probe::Connected(conn, pid, uid) => Ok(Some(peer_holder(Some(&conn), pid, uid))),
            Probe::BacklogFull => Ok(Some(
                self.proc_lookup().unwrap_or_else(Holder::unidentified),
            )),
            Probe::Refused => Ok(self.proc_lookup()),
        }
    }

    fn backend(&self) -> BackendKind {
        BackendKind::AbstractSocket
    }

    fn name(&self) -> &LockName {
        &self.name
    }

    fn resource(&self) -> String {
        self.resource.clone()
    }
}

/// The bound, listening socket. Closing it frees the name.
#[derive(Debug)]
struct AbstractSocketHeld {
    fd: OwnedFd,
}

impl HeldLock for AbstractSocketHeld {
    fn verify(&self) -> Result<(), Error> {
        // Nobody can unbind a name from a socket we hold.
        Ok(())
    }

    fn release(self: Box<Self>) -> Result<(), Error> {
        nix::unistd::close(self.fd)
            .map_err(|e| sys(ErrorKind::Io, "cannot close the lock socket", e))
    }

    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.fd.as_fd())
    }
}

/// The holder behind a connection to its listening socket: `SO_PEERCRED` said `pid` (in our PID
/// namespace; 0 when the listener's namespace is not visible from ours) and `uid`. With the
/// connection `conn`, also pins the listening process through `SO_PEERPIDFD` (see
/// [`HolderProcess`](crate::HolderProcess)): [`Lock::holder`] proves, a contended try does not
/// pay for it.
///
/// The pid is the one the listener had at `listen(2)`: if it has exited (a child kept the
/// socket) that number may belong to another process now, so nothing is read from `/proc` on its
/// strength unless the listener is pinned by `SO_PEERPIDFD` and still running. Without
/// `SO_PEERPIDFD` (Linux before 6.5) `/proc` is read as before, and the holder is never proven.
fn peer_holder(conn: Option<&OwnedFd>, pid: i32, uid: u32) -> Holder {
    let mine = nix::unistd::geteuid().as_raw() == uid;
    let by_uid = if mine {
        HolderKind::SameUser
    } else {
        HolderKind::OtherUser
    };
    let Ok(pid) = u32::try_from(pid) else {
        return Holder::unidentified();
    };
    if pid == 0 {
        return Holder {
            kind: HolderKind::OtherPidNamespace,
            uid: Some(uid),
            ..Holder::unidentified()
        };
    }
    let Some(conn) = conn else {
        return Holder::from_pid(pid, Some(uid), None);
    };
    match crate::os::peer_pidfd(conn.as_fd()) {
        Ok(pidfd) => {
            let mut holder = Holder::from_pid(pid, Some(uid), None);
            let process = crate::HolderProcess::from_fd(pid, pidfd);
            if process.has_exited() {
                // Exited while we read /proc: what was read may be another process's.
                Holder {
                    kind: by_uid,
                    uid: Some(uid),
                    ..Holder::unidentified()
                }
            } else {
                holder.process = Some(process);
                holder
            }
        }
        Err(e) if e.raw_os_error() == Some(Errno::ENOPROTOOPT as i32) => {
            Holder::from_pid(pid, Some(uid), None)
        }
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
            Holder::from_pid(pid, Some(uid), None)
        }
        // The listener has exited: a process it handed the socket to holds the name, and its
        // pid may be someone else's now.
        Err(_) => Holder {
            kind: by_uid,
            uid: Some(uid),
            ..Holder::unidentified()
        },
    }
}

/// One line of `/proc/net/unix`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UnixSocketEntry {
    pub(crate) inode: u64,
    pub(crate) listening: bool,
    pub(crate) stream: bool,
    /// `@name` for abstract sockets.
    pub(crate) path: String,
}

/// Parses `Num RefCount Protocol Flags Type St Inode Path`; the path (which may contain spaces)
/// is the rest of the line after the seventh field.
pub(crate) fn parse_proc_net_unix(line: &str) -> Option<UnixSocketEntry> {
    let mut rest = line;
    let mut fields = [""; 7];
    for field in &mut fields {
        rest = rest.trim_start_matches(' ');
        let end = rest.find(' ').unwrap_or(rest.len());
        *field = &rest[..end];
        rest = &rest[end..];
    }
    let path = rest.strip_prefix(' ')?;
    const SO_ACCEPTCON: u32 = 0x0001_0000;
    let flags = u32::from_str_radix(fields[3], 16).ok()?;
    Some(UnixSocketEntry {
        inode: fields[6].parse().ok()?,
        listening: flags & SO_ACCEPTCON != 0,
        stream: fields[4] == "0001",
        path: path.to_owned(),
    })
}

/// Lists the abstract socket names onlyone holders have bound in this network namespace.
pub fn list_bound() -> Vec<String> {
    let Ok(table) = fs::read_to_string("/proc/net/unix") else {
        return Vec::new();
    };
    let prefix = format!("@{}", crate::name::ABSTRACT_PREFIX);
    let mut names: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(parse_proc_net_unix)
        .filter(|e| e.stream && e.path.starts_with(&prefix))
        .map(|e| e.path[1..].to_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Finds a process with a descriptor for socket `inode` by reading `/proc/*/fd` links.
fn find_socket_owner(inode: u64) -> Option<u32> {
    let target = format!("socket:[{inode}]");
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.into_iter().find(|pid| {
        fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|fds| {
                fds.filter_map(Result::ok)
                    .any(|fd| fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == &*target))
            })
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_unix_lines() {
        let line = "0000000000000000: 00000002 00000000 00010000 0001 01 123456 @onlyone/u0/my job";
        let e = parse_proc_net_unix(line).unwrap();
        assert_eq!(e.inode, 123456);
        assert!(e.listening && e.stream);
        assert_eq!(e.path, "@onlyone/u0/my job");
        let unbound = "0000000000000000: 00000002 00000000 00000000 0001 01  9876";
        assert_eq!(parse_proc_net_unix(unbound), None);
    }
}
