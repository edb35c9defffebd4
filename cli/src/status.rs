//! `onlyone status` and `onlyone list`: who holds what. Neither takes a lock, creates a file or
//! directory, or disturbs a holder (a holder lookup on an abstract socket is one `connect(2)`;
//! on Windows a named mutex found free is held for an instant by the zero-timeout wait that
//! tells it is free, and released at once). On Windows, which has no listing of named objects,
//! `list` finds mutexes through their `NAME.holder` records in the lock directories.

use std::path::{Path, PathBuf};

use onlyone::{BackendKind, Builder, Holder, HolderKind, Lock, Scope};

use crate::cli::{BreakLockArgs, ListArgs, StatusArgs};
use crate::exit::Failure;
use crate::json;

/// One lock as `status` and `list` show it.
struct Entry {
    name: String,
    backend: BackendKind,
    scope: String,
    resource: String,
    holder: Option<Holder>,
    /// Why the holder could not be read (a corrupt PID file, an unreadable file).
    error: Option<String>,
}

impl Entry {
    fn of(lock: &dyn Lock, scope: &str, holder: Option<Holder>) -> Entry {
        Entry {
            name: lock.name().as_str().to_owned(),
            backend: lock.backend(),
            scope: scope.to_owned(),
            resource: lock.resource(),
            holder,
            error: None,
        }
    }

    fn json(&self) -> String {
        let mut s = format!(
            "{{\"name\":{},\"backend\":{},\"scope\":{},\"resource\":{},\"held\":{},\"holder\":{}",
            json::string(&self.name),
            json::string(self.backend.as_str()),
            json::string(&self.scope),
            json::string(&self.resource),
            self.holder.is_some(),
            self.holder
                .as_ref()
                .map_or_else(|| "null".to_owned(), json::holder),
        );
        if let Some(d) = self.holder.as_ref().and_then(crate::run::held_for) {
            s += &format!(",\"held_for_secs\":{}", d.as_secs());
        }
        if let Some(e) = &self.error {
            s += &format!(",\"error\":{}", json::string(e));
        }
        s.push('}');
        s
    }

    /// `"name" is held by pid 42 ...` / `"name" is free`, with backend and resource.
    fn sentence(&self) -> String {
        let state = match (&self.holder, &self.error) {
            (_, Some(e)) => format!("cannot be read: {e}"),
            (Some(h), _) => {
                (match h.kind {
                    HolderKind::OtherUser => format!("is held by another user: {h}"),
                    HolderKind::Unresponsive => {
                        format!("is taken by a process that is not an onlyone holder: {h}")
                    }
                    _ => format!("is held by {h}"),
                }) + &crate::run::held_for(h)
                    .map(|d| format!(", held for {}", duration_words(d)))
                    .unwrap_or_default()
            }
            (None, None) => "is free".to_owned(),
        };
        format!(
            "{:?} {state} [{} {} {}]",
            self.name, self.backend, self.scope, self.resource
        )
    }
}

pub fn status(args: StatusArgs) -> Result<u8, Failure> {
    let lock = crate::locks::build(&args.name, &args.lock)?;
    let holder = lock.holder()?;
    if !args.json {
        if let Some(hint) = holder.as_ref().and_then(|h| break_lock_hint(&*lock, h)) {
            say!("onlyone: {hint}");
        }
    }
    let held = holder.is_some();
    let entry = Entry::of(&*lock, &args.lock.scope.to_string(), holder);
    let last_run = crate::once::last_run(&args.name, &args.lock)?;
    if args.json {
        let mut json = entry.json();
        if let Some(run) = last_run {
            json.insert_str(json.len() - 1, &format!(",\"last_run\":{}", run.json));
        }
        println!("{json}");
    } else {
        println!("{}", entry.sentence());
        if let Some(run) = last_run {
            println!("{}", run.line);
        }
    }
    Ok(if held { 0 } else { 1 })
}

/// For a PID-file lock whose holder cannot be judged from here: how the administrator removes it
/// once the holder is known to be gone.
pub fn break_lock_hint(lock: &dyn Lock, h: &Holder) -> Option<String> {
    let cannot_judge = matches!(
        h.kind,
        HolderKind::OtherPidNamespace | HolderKind::Unidentified
    );
    (lock.backend() == BackendKind::PidFile && cannot_judge).then(|| {
        format!(
            "its holder cannot be checked from here and counts as alive: if it is gone, \
             `onlyone break-lock {:?} -b pidfile --force` (with the same --scope and \
             --lock-dir) removes the PID file",
            lock.name().as_str()
        )
    })
}

/// `onlyone break-lock`: why a PID-file lock counts as held, and with `--force` its removal.
pub fn break_lock(args: BreakLockArgs) -> Result<u8, Failure> {
    use onlyone::BackendKind as B;
    let backend = args.lock.backend.unwrap_or(onlyone::DEFAULT_BACKEND);
    if backend != B::PidFile {
        return Err(Failure::new(
            crate::exit::USAGE,
            format!(
                "break-lock works on PID files (-b pidfile); a {backend} lock is released by its \
                 holder's death, never by removing anything"
            ),
        ));
    }
    let lock = crate::locks::build(&args.name, &args.lock)?;
    let why = match lock.holder()? {
        None => {
            println!("{:?} is free [{}]", args.name, lock.resource());
            return Ok(0);
        }
        Some(h) => h,
    };
    println!(
        "{:?} counts as held by {why} [{}]{}",
        args.name,
        lock.resource(),
        match why.kind {
            HolderKind::OtherPidNamespace => {
                ": its record comes from another PID namespace, where its pid means nothing here"
            }
            HolderKind::Unidentified =>
                ": its process exists but cannot be seen or checked from here",
            _ => "",
        }
    );
    if !args.force {
        println!("once you know that holder is gone, add --force to remove the PID file");
        return Ok(1);
    }
    force_remove(&args.name, &*lock)
}

/// `break-lock --force`: removes the PID file of `lock`.
#[cfg(all(unix, feature = "pidfile"))]
fn force_remove(name: &str, lock: &dyn Lock) -> Result<u8, Failure> {
    use onlyone::PidFileLock;
    let path = std::path::PathBuf::from(lock.resource());
    let file = PidFileLock::in_dir(
        onlyone::LockName::new(name)?,
        path.parent().unwrap_or(std::path::Path::new("/")),
    );
    match file.force_remove()? {
        Some(id) => {
            println!(
                "removed {} (it named pid {}, uid {}, PID namespace {})",
                file.path().display(),
                id.pid,
                id.uid,
                id.pid_ns.map_or("unknown".to_owned(), |n| n.to_string())
            );
            Ok(0)
        }
        None => {
            println!(
                "{} changed meanwhile; nothing removed",
                file.path().display()
            );
            Ok(1)
        }
    }
}

/// `break-lock --force` on Windows: removes the PID file of `lock` under its takeover lock.
#[cfg(all(windows, feature = "pidfile"))]
fn force_remove(name: &str, lock: &dyn Lock) -> Result<u8, Failure> {
    use onlyone::PidFileLock;
    let path = PathBuf::from(lock.resource());
    let file = PidFileLock::in_dir(
        onlyone::LockName::new(name)?,
        path.parent().unwrap_or(Path::new(".")),
    );
    match file.force_remove()? {
        Some(id) => {
            println!(
                "removed {} (it named pid {}{})",
                file.path().display(),
                id.pid,
                id.start_ticks
                    .map(|t| format!(", creation time {t}"))
                    .unwrap_or_default()
            );
            Ok(0)
        }
        None => {
            println!(
                "{} changed meanwhile; nothing removed",
                file.path().display()
            );
            Ok(1)
        }
    }
}

/// Without the PID-file backend there is no PID file to remove (`locks::build` has said so).
#[cfg(not(all(any(unix, windows), feature = "pidfile")))]
fn force_remove(_name: &str, _lock: &dyn Lock) -> Result<u8, Failure> {
    Err(Failure::new(
        crate::exit::UNAVAILABLE,
        "this build of onlyone has no pidfile backend",
    ))
}

pub fn list(args: ListArgs) -> Result<u8, Failure> {
    let mut entries = abstract_entries();
    let mut dirs: Vec<(PathBuf, Scope, &str)> = vec![
        (Scope::User.default_dir(), Scope::User, "user"),
        (Scope::System.default_dir(), Scope::System, "system"),
    ];
    // Where older versions kept user-scope locks (and new ones keep their compatibility locks).
    if let Some(old) = Scope::User.legacy_default_dir() {
        dirs.push((old, Scope::User, "user (old directory)"));
    }
    for dir in &args.lock_dir {
        crate::locks::check_lock_dir(dir)?;
        if !dirs.iter().any(|(d, _, _)| d == dir) {
            dirs.push((dir.clone(), Scope::User, "dir"));
        }
    }
    for (dir, scope, label) in &dirs {
        entries.extend(file_entries(dir, *scope, label));
    }
    entries.sort_by(|a, b| {
        (a.backend, &a.scope, &a.name, &a.resource).cmp(&(
            b.backend,
            &b.scope,
            &b.name,
            &b.resource,
        ))
    });
    if args.json {
        let items: Vec<String> = entries.iter().map(Entry::json).collect();
        println!("{{\"locks\":[{}]}}", items.join(","));
        return Ok(0);
    }
    if entries.is_empty() {
        say!("onlyone: no onlyone lock is held");
    }
    let width = entries
        .iter()
        .map(|e| e.name.chars().count())
        .max()
        .unwrap_or(0);
    for e in &entries {
        let holder = match (&e.holder, &e.error) {
            (_, Some(err)) => format!("cannot be read: {err}"),
            (Some(h), _) => h.to_string(),
            (None, None) => "free".to_owned(),
        };
        let name = format!("{:<width$}", e.name);
        if args.verbose {
            println!(
                "{:<8} {:<6} {name}  {holder}  [{}]",
                e.backend, e.scope, e.resource
            );
        } else {
            println!("{:<8} {:<6} {name}  {holder}", e.backend, e.scope);
        }
    }
    Ok(0)
}

/// Every abstract socket name onlyone holders have bound in this network namespace.
#[cfg(all(
    feature = "abstract-socket",
    any(target_os = "linux", target_os = "android")
))]
fn abstract_entries() -> Vec<Entry> {
    use onlyone::{AbstractSocketLock, LockName};
    let me = nix::unistd::geteuid().as_raw();
    let mut entries = Vec::new();
    for socket_name in onlyone::backend::abstract_socket::list_bound() {
        let Some((tag, name)) = socket_name
            .strip_prefix(onlyone::name::ABSTRACT_PREFIX)
            .and_then(|rest| rest.split_once('/'))
        else {
            continue;
        };
        let scope = match tag {
            "system" => Some(Scope::System),
            _ if tag == format!("u{me}") => Some(Scope::User),
            _ => None,
        };
        let label = match (scope, tag.strip_prefix('u')) {
            (Some(Scope::System), _) => "system".to_owned(),
            (Some(Scope::User), _) => "user".to_owned(),
            (None, Some(uid)) => format!("user:{uid}"),
            (None, None) => tag.to_owned(),
        };
        // Through the library when the name maps back to this socket (not a hashed long name,
        // not another user's name); else one connect(2) here.
        let lock = scope.and_then(|scope| {
            let lock = AbstractSocketLock::new(LockName::new(name).ok()?, scope);
            (lock.socket_name() == socket_name).then_some(lock)
        });
        let (holder, error) = match &lock {
            Some(lock) => match lock.holder() {
                Ok(h) => (h, None),
                Err(e) => (None, Some(e.to_string())),
            },
            None => match probe_abstract(&socket_name) {
                Ok(h) => (Some(h), None),
                Err(e) => (None, Some(e)),
            },
        };
        if holder.is_none() && error.is_none() {
            continue; // released since the table was read
        }
        entries.push(Entry {
            name: name.to_owned(),
            backend: BackendKind::AbstractSocket,
            scope: label,
            resource: format!("@{socket_name}"),
            holder,
            error,
        });
    }
    entries
}

#[cfg(not(all(
    feature = "abstract-socket",
    any(target_os = "linux", target_os = "android")
)))]
fn abstract_entries() -> Vec<Entry> {
    Vec::new()
}

/// Who listens on the abstract name `socket_name`: one non-blocking connect and `SO_PEERCRED`.
#[cfg(all(
    feature = "abstract-socket",
    any(target_os = "linux", target_os = "android")
))]
fn probe_abstract(socket_name: &str) -> Result<Holder, String> {
    use nix::errno::Errno;
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, UnixAddr, connect, getsockopt, socket, sockopt,
    };
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    let addr = UnixAddr::new_abstract(socket_name.as_bytes()).map_err(|e| e.to_string())?;
    match connect(fd.as_raw_fd(), &addr) {
        Ok(()) => {
            let cred = getsockopt(&fd, sockopt::PeerCredentials)
                .map_err(|e| format!("SO_PEERCRED: {e}"))?;
            Ok(Holder::from_pid(cred.pid() as u32, Some(cred.uid()), None))
        }
        Err(Errno::ECONNREFUSED) => {
            let mut h = Holder::unidentified();
            h.kind = HolderKind::Unresponsive;
            Ok(h)
        }
        Err(Errno::EAGAIN) => Ok(Holder::unidentified()),
        Err(e) => Err(format!("connect: {e}")),
    }
}

/// Held lock files (`NAME.lock`, flock) and PID files (`NAME.pid`) in `dir`.
fn file_entries(dir: &Path, scope: Scope, label: &str) -> Vec<Entry> {
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            say!("onlyone: warning: cannot read {}: {e}", dir.display());
            return Vec::new();
        }
    };
    let mut entries = Vec::new();
    for item in read.flatten() {
        let file_name = item.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let (stem, backend) = if let Some(stem) = file_name.strip_suffix(".lock") {
            (stem, BackendKind::Flock)
        } else if let Some(stem) = file_name.strip_suffix(".pid") {
            (stem, BackendKind::PidFile)
        } else if let Some(stem) = file_name.strip_suffix(".holder") {
            (stem, BackendKind::NamedMutex)
        } else {
            continue;
        };
        if !backend.is_available() || stem.is_empty() {
            continue;
        }
        let path = dir.join(file_name);
        if backend == BackendKind::NamedMutex {
            entries.extend(mutex_entry(dir, stem, scope, label, &path));
            continue;
        }
        let built = Builder::new(stem)
            .backend(backend)
            .scope(scope)
            .lock_dir(dir)
            .build()
            .ok()
            .filter(|lock| Path::new(&lock.resource()) == path);
        let entry = match built {
            Some(lock) => match lock.holder() {
                Ok(None) => continue,
                Ok(Some(h)) => Entry::of(&*lock, label, Some(h)),
                Err(e) => Entry {
                    error: Some(e.to_string()),
                    ..Entry::of(&*lock, label, None)
                },
            },
            // A hashed long name (`#...~HASH`): its record says who wrote it.
            None => match record_holder(&path) {
                Some(h) => Entry {
                    name: stem.to_owned(),
                    backend,
                    scope: label.to_owned(),
                    resource: path.display().to_string(),
                    holder: Some(h),
                    error: None,
                },
                None => continue,
            },
        };
        entries.push(entry);
    }
    entries
}

/// The named mutex whose holder record is `path` (`NAME.holder`, Windows), when it is held: as
/// `status` shows it (the mutex is looked at; its record is believed only while its process
/// runs with the recorded creation time, else the holder is unidentified). A record left by a
/// holder that died is skipped once its mutex is free.
#[cfg(all(windows, feature = "named-mutex"))]
fn mutex_entry(dir: &Path, stem: &str, scope: Scope, label: &str, path: &Path) -> Option<Entry> {
    use onlyone::{LockName, NamedMutexLock};
    let lock = LockName::new(stem)
        .ok()
        .map(|name| NamedMutexLock::with_lock_dir(name, scope, dir))
        .filter(|lock| lock.record_path() == path);
    let Some(lock) = lock else {
        // A hashed name (`#...~HASH`): the mutex's name cannot be rebuilt from it; its record,
        // only while the process it names runs with the recorded creation time.
        return live_mutex_record(path).map(|h| Entry {
            name: stem.to_owned(),
            backend: BackendKind::NamedMutex,
            scope: label.to_owned(),
            resource: path.display().to_string(),
            holder: Some(h),
            error: None,
        });
    };
    match lock.holder() {
        Ok(None) => None,
        Ok(Some(h)) => Some(Entry::of(&lock, label, Some(h))),
        Err(e) => Some(Entry {
            error: Some(e.to_string()),
            ..Entry::of(&lock, label, None)
        }),
    }
}

#[cfg(not(all(windows, feature = "named-mutex")))]
fn mutex_entry(
    _dir: &Path,
    _stem: &str,
    _scope: Scope,
    _label: &str,
    _path: &Path,
) -> Option<Entry> {
    None
}

/// The holder a mutex's record names, only while its process runs with the recorded creation
/// time (`Liveness::Alive`; unknown is not enough, as for `status`).
#[cfg(all(windows, feature = "named-mutex"))]
fn live_mutex_record(path: &Path) -> Option<Holder> {
    let bytes = std::fs::read(path).ok()?;
    match onlyone::record::parse_record(&bytes).ok()?.liveness() {
        (onlyone::process::Liveness::Alive, id) => {
            Some(Holder::from_pid(id.pid, Some(id.uid), id.start_ticks))
        }
        _ => None,
    }
}

/// The live process a lock file's or PID file's record names, if any.
fn record_holder(path: &Path) -> Option<Holder> {
    use std::io::Read;
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.file_type().is_file() {
        return None;
    }
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(onlyone::record::MAX_RECORD_LEN as u64 + 1)
        .read_to_end(&mut buf)
        .ok()?;
    // The holder, or the job it named once the holder is gone.
    match onlyone::record::parse_record(&buf).ok()?.liveness() {
        (onlyone::process::Liveness::Dead(_), _) => None,
        (_, id) => Some(Holder::from_pid(id.pid, Some(id.uid), id.start_ticks)),
    }
}

/// A duration for people, its two largest units: `2 d 3 h`, `3 h 5 min`, `4 min 10 s`, `12 s`,
/// `0.25 s`.
pub fn duration_words(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    let (d_, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d_, h, m) {
        (0, 0, 0) if secs < 10 && d.subsec_millis() != 0 => {
            format!("{} s", (d.as_secs_f64() * 100.0).round() / 100.0)
        }
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) => format!("{m} min {s} s"),
        (0, _, _) => format!("{h} h {m} min"),
        _ => format!("{d_} d {h} h"),
    }
}

#[cfg(test)]
mod tests {
    use super::duration_words;
    use std::time::Duration;

    #[test]
    fn durations_in_words() {
        assert_eq!(duration_words(Duration::from_millis(250)), "0.25 s");
        assert_eq!(duration_words(Duration::from_secs(12)), "12 s");
        assert_eq!(duration_words(Duration::from_secs(250)), "4 min 10 s");
        assert_eq!(
            duration_words(Duration::from_secs(3 * 3600 + 300)),
            "3 h 5 min"
        );
        assert_eq!(
            duration_words(Duration::from_secs(2 * 86_400 + 3 * 3600)),
            "2 d 3 h"
        );
    }
}
