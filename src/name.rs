//! Lock names: validation, scope, and the one mapping from a name to each backend's resource.
//!
//! A [`LockName`] is what a user types (`"nightly-backup"`). Each backend turns it into a kernel
//! resource with the rules below; they are part of the crate's stable interface, because two
//! versions of onlyone must find each other's locks.
//!
//! | scope | abstract socket name | lock / PID file name |
//! | --- | --- | --- |
//! | [`Scope::User`] | `onlyone/u<uid>/<name>` | `<name>.lock` / `<name>.pid` in the user's lock directory |
//! | [`Scope::System`] | `onlyone/system/<name>` | `<name>.lock` / `<name>.pid` in the system lock directory |
//!
//! When the mapped name would be too long (abstract socket names have 107 bytes, file names are kept
//! under 200) or when the name starts with `#`, the name part becomes `#<prefix>~<hash>`: `#`, the
//! longest prefix of the name that fits, `~` and the 32 hex digits of the name's [FNV-1a 128-bit
//! hash](fnv1a_128). Names never get truncated, and a plain name never starts with `#`, so two
//! different names never map to the same resource unless their 128-bit hashes collide.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind};

/// Longest abstract socket name the kernel accepts: `sun_path` minus the leading NUL (unix(7)).
pub const ABSTRACT_NAME_MAX: usize = 107;

/// Longest file name (without directory) onlyone creates; leaves room under `NAME_MAX` (255).
pub const FILE_NAME_MAX: usize = 200;

/// Prefix of every abstract socket name onlyone binds, so `onlyone list` and `ss -xl` can find them.
pub const ABSTRACT_PREFIX: &str = "onlyone/";

/// A validated lock name: not empty, no NUL, no `/`, no control characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockName(String);

impl LockName {
    /// Checks `name` and wraps it.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] when the name is empty or contains a NUL byte, a `/` or another
    /// control character (they would be unreadable in `ss` and `/proc/net/unix`, or split a path).
    pub fn new(name: impl Into<String>) -> Result<Self, Error> {
        let name = name.into();
        let problem = if name.is_empty() {
            Some("a lock name must not be empty".to_owned())
        } else if name.contains('\0') {
            Some("a lock name must not contain a NUL byte".to_owned())
        } else if name.contains('/') {
            Some("a lock name must not contain '/' (it would be a path)".to_owned())
        } else {
            name.chars()
                .find(|c| c.is_control())
                .map(|c| format!("a lock name must not contain control characters (found {c:?})"))
        };
        match problem {
            Some(msg) => Err(Error::new(
                ErrorKind::InvalidName,
                format!("invalid lock name {name:?}"),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, msg),
            )),
            None => Ok(LockName(name)),
        }
    }

    /// The name as the user gave it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The abstract socket name (without the leading NUL) for this lock in `scope`.
    ///
    /// Under Snap (the environment variable `SNAP_INSTANCE_NAME` set) the name starts with
    /// `snap.<instance>.`, the only abstract names strict confinement lets a snap bind (it also
    /// needs the `network-bind` plug); see [`LockName::abstract_socket_name_in_snap`].
    pub fn abstract_socket_name(&self, scope: Scope) -> String {
        let snap = std::env::var("SNAP_INSTANCE_NAME").ok();
        self.abstract_socket_name_in_snap(scope, snap.as_deref().filter(|s| !s.is_empty()))
    }

    /// The abstract socket name for this lock in `scope` inside the snap `snap_instance`
    /// (`None`: not in a snap): `snap.<instance>.onlyone/<scope>/<name>`, the long names hashed
    /// to fit 107 bytes as always.
    ///
    /// Strict confinement allows a snap to bind only abstract names starting with
    /// `snap.$SNAP_INSTANCE_NAME.` (AppArmor `unix (bind) addr="@snap.NAME.**"`); the name
    /// therefore differs from the one outside snaps, so a snapped program and an unsnapped one
    /// of the same name do not exclude each other (strict confinement would not let them share
    /// a name anyway).
    pub fn abstract_socket_name_in_snap(
        &self,
        scope: Scope,
        snap_instance: Option<&str>,
    ) -> String {
        let snap = snap_instance.map_or(String::new(), |s| format!("snap.{s}."));
        let mut prefix = format!("{snap}{ABSTRACT_PREFIX}{}/", scope.tag());
        // A hashed name needs 34 bytes; the longest snap instance names (40 + 1 + 10 bytes)
        // leave less after the usual prefix, so they get a one-letter one.
        if prefix.len() > ABSTRACT_NAME_MAX - 34 {
            prefix = format!("{snap}o/{}/", scope.tag());
        }
        format!(
            "{prefix}{}",
            fit_name(&self.0, ABSTRACT_NAME_MAX - prefix.len())
        )
    }

    /// The file name (no directory) for this lock with `extension` (`"lock"`, `"pid"`).
    ///
    /// On Windows a name that is not a safe file name there is written in the hashed form
    /// `#<prefix>~<32 hex digits>` (which no plain name can take, since those never start with
    /// `#`): one with an upper-case letter (the file system folds case, so `Job` and `job` would
    /// share a file while their mutexes differ), one of `<>:"\|?*`, a trailing dot or space
    /// (Windows strips them), or a reserved device name (`CON`, `NUL`, `COM1`, `LPT1`, ...,
    /// also with an extension: `nul.txt`).
    pub fn file_name(&self, extension: &str) -> String {
        let room = FILE_NAME_MAX - extension.len() - 1;
        #[cfg(windows)]
        if !is_plain_windows_file_name(&self.0) {
            return format!("{}.{extension}", hashed_name(&self.0, room));
        }
        format!("{}.{extension}", fit_name(&self.0, room))
    }

    /// The name inside a Windows kernel object name (a mutex's): as is when it fits in `room`
    /// and has no `\` (which separates namespaces there), else the hashed form. Object names are
    /// case-sensitive, so `Job` and `job` stay two locks.
    #[cfg(all(windows, feature = "named-mutex"))]
    pub(crate) fn object_name(&self, room: usize) -> String {
        if self.0.contains('\\') {
            hashed_name(&self.0, room)
        } else {
            fit_name(&self.0, room)
        }
    }
}

impl fmt::Debug for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for LockName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        LockName::new(s)
    }
}

/// Maps `name` into at most `room` bytes: as is when it fits and does not start with `#`,
/// else `#<prefix>~<32 hex digits>`.
fn fit_name(name: &str, room: usize) -> String {
    if name.len() <= room && !name.starts_with('#') {
        return name.to_owned();
    }
    let hash = format!("{:032x}", fnv1a_128(name.as_bytes()));
    let prefix_room = room - hash.len() - 2;
    let mut end = prefix_room.min(name.len());
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let prefix = name[..end].trim_start_matches('#');
    format!("#{prefix}~{hash}")
}

/// The hashed form `#<prefix>~<32 hex digits>` of `name` in `room` bytes, its prefix kept to
/// lower-case letters, digits, `-`, `_` and `.` (safe in Windows file and object names).
#[cfg(windows)]
fn hashed_name(name: &str, room: usize) -> String {
    let hash = format!("{:032x}", fnv1a_128(name.as_bytes()));
    let prefix: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .map(|c| c.to_ascii_lowercase())
        .take(room.saturating_sub(hash.len() + 2))
        .collect();
    format!("#{prefix}~{hash}")
}

/// Whether `name` is a file name Windows keeps as written and tells apart from every other
/// plain name: see [`LockName::file_name`].
#[cfg(windows)]
fn is_plain_windows_file_name(name: &str) -> bool {
    const RESERVED: [&str; 6] = ["con", "prn", "aux", "nul", "conin$", "conout$"];
    let base = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let base = base.to_lowercase();
    let device = RESERVED.contains(&base.as_str())
        || ((base.starts_with("com") || base.starts_with("lpt"))
            && base.chars().count() == 4
            && base[3..]
                .chars()
                .all(|c| c.is_ascii_digit() || "¹²³".contains(c)));
    !device
        && !name.ends_with(['.', ' '])
        && !name
            .chars()
            .any(|c| c.is_uppercase() || "<>:\"\\|?*".contains(c))
}

/// FNV-1a with the 128-bit parameters (offset basis and prime from the FNV specification).
///
/// Stable across releases and platforms: lock names that do not fit are mapped with it, and the
/// PostgreSQL backend derives its 64-bit keys from it.
pub fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET_BASIS: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013b;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u128::from(b)).wrapping_mul(PRIME)
    })
}

/// Who shares a lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Only processes of the same user contend (the uid is part of the resource). The default.
    #[default]
    User,
    /// Every process on the machine contends, whatever its user: for abstract sockets, every
    /// process in the network namespace; for the file backends, every process that sees the same
    /// directory (containers sharing the volume too). The default directory `/run/lock/onlyone`
    /// must belong to root (mode 1777; only root creates it) and is checked on every use: see
    /// [`Scope::default_dir`].
    System,
}

impl Scope {
    fn tag(self) -> String {
        match self {
            Scope::User => format!("u{}", crate::os::effective_uid()),
            Scope::System => "system".to_owned(),
        }
    }

    /// The directory file backends use by default for this scope.
    ///
    /// - [`Scope::User`]: `/var/tmp/onlyone-<uid>`, the same for every session of a user - cron,
    ///   a login shell, a systemd user service, `sudo -u` - whatever their environment, and not
    ///   removed at logout (`/run/user/<uid>` is). Created mode 0700; must be ours and not a
    ///   symlink. Age-based cleaners (systemd-tmpfiles ages `/var/tmp` after 30 days) could still
    ///   delete an old lock file under a holder: the holder notices through
    ///   [`Guard::verify`](crate::Guard::verify) (and `onlyone run` stops its job and exits 76);
    ///   the tmpfiles.d(5) line `x /var/tmp/onlyone-*` excludes the directories from aging.
    ///   Earlier versions chose by the environment
    ///   ([`Scope::legacy_default_dir`]); a lock in the default directory also takes the lock in
    ///   that old directory, so that old and new onlyone exclude each other.
    /// - [`Scope::System`]: `/run/lock/onlyone` (a tmpfs on most distributions, emptied at boot,
    ///   not swept while the system runs). Everyone shares it, so onlyone uses it only when it is a
    ///   real directory (opened `O_DIRECTORY | O_NOFOLLOW`, checked with `fstat`) owned by root and
    ///   not writable by others unless sticky; root creates it with mode 1777, other users get an
    ///   error that says how to create it. A directory another user created, or a symbolic link,
    ///   is refused with an error naming the path and its owner. In that sticky directory a
    ///   file's owner can delete it under its holder: root locks only files root owns there.
    ///
    /// On Windows: [`Scope::User`] is `%LOCALAPPDATA%\onlyone` (the user's profile, which only
    /// the user and administrators may write), [`Scope::System`] `%ProgramData%\onlyone`. The
    /// named mutex keeps only its holder records there.
    pub fn default_dir(self) -> PathBuf {
        #[cfg(windows)]
        return crate::os::default_dir(self);
        #[cfg(unix)]
        match self {
            Scope::System => PathBuf::from("/run/lock/onlyone"),
            Scope::User => {
                PathBuf::from(format!("/var/tmp/onlyone-{}", crate::os::effective_uid()))
            }
        }
    }

    /// The default directory of earlier versions of onlyone, which depended on the environment:
    /// [`Scope::User`]: `$XDG_RUNTIME_DIR/onlyone` when that variable names an absolute path, else
    /// `/run/user/<uid>/onlyone` when `/run/user/<uid>` exists, else `/tmp/onlyone-<uid>`; `None`
    /// for [`Scope::System`] (unchanged). Locks in the default directory also take their lock
    /// here, so that an old onlyone in the same environment sees them held, and they see its.
    /// Windows has no earlier version: `None`.
    pub fn legacy_default_dir(self) -> Option<PathBuf> {
        if cfg!(windows) {
            return None;
        }
        match self {
            Scope::System => None,
            Scope::User => Some(legacy_user_dir(
                std::env::var_os("XDG_RUNTIME_DIR"),
                crate::os::effective_uid(),
                |p| p.is_dir(),
            )),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::User => "user",
            Scope::System => "system",
        })
    }
}

impl std::str::FromStr for Scope {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "user" => Ok(Scope::User),
            "system" => Ok(Scope::System),
            other => Err(Error::new(
                ErrorKind::InvalidInput,
                format!("unknown scope {other:?}"),
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "expected \"user\" or \"system\"",
                ),
            )),
        }
    }
}

/// The old user-scope default: see [`Scope::legacy_default_dir`].
fn legacy_user_dir(
    xdg_runtime_dir: Option<std::ffi::OsString>,
    uid: u32,
    is_dir: impl Fn(&Path) -> bool,
) -> PathBuf {
    if let Some(dir) = xdg_runtime_dir {
        let dir = PathBuf::from(dir);
        if dir.is_absolute() {
            return dir.join("onlyone");
        }
    }
    let run_user = PathBuf::from(format!("/run/user/{uid}"));
    if is_dir(&run_user) {
        run_user.join("onlyone")
    } else {
        PathBuf::from(format!("/tmp/onlyone-{uid}"))
    }
}

/// Where a file backend keeps its files: the scope's default directory, or one the caller chose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LockDir {
    pub(crate) path: PathBuf,
    /// onlyone may create the last component of a default directory; a caller's directory must exist.
    pub(crate) create: bool,
    /// The old default directory whose lock is taken too (user scope's default only).
    pub(crate) legacy: Option<PathBuf>,
}

impl LockDir {
    pub(crate) fn new(scope: Scope, explicit: Option<&Path>) -> Self {
        match explicit {
            Some(p) => LockDir {
                path: p.to_owned(),
                create: false,
                legacy: None,
            },
            None => LockDir {
                path: scope.default_dir(),
                create: true,
                legacy: scope.legacy_default_dir(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn snap_abstract_names_start_with_the_instance() {
        let n = LockName::new("editor").unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        assert_eq!(
            n.abstract_socket_name_in_snap(Scope::User, Some("gedit")),
            format!("snap.gedit.onlyone/u{uid}/editor")
        );
        assert_eq!(
            n.abstract_socket_name_in_snap(Scope::System, Some("gedit_beta")),
            "snap.gedit_beta.onlyone/system/editor"
        );
        assert_eq!(
            n.abstract_socket_name_in_snap(Scope::System, None),
            "onlyone/system/editor"
        );
        // The longest instance name (40-byte snap name, 10-byte key) and a long lock name.
        let long_snap = format!("{}_{}", "s".repeat(40), "k".repeat(10));
        let long = LockName::new("x".repeat(300)).unwrap();
        for name in [&n, &long] {
            let s = name.abstract_socket_name_in_snap(Scope::System, Some(&long_snap));
            assert!(s.starts_with(&format!("snap.{long_snap}.")), "{s}");
            assert!(s.len() <= ABSTRACT_NAME_MAX, "{} bytes: {s}", s.len());
        }
    }

    #[test]
    fn rejects_bad_names() {
        for bad in ["", "a/b", "a\0b", "tab\there", "nl\n"] {
            let err = LockName::new(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidName, "{bad:?}");
            assert!(err.to_string().contains("invalid lock name"), "{err}");
        }
    }

    #[test]
    fn long_names_are_hashed_not_truncated() {
        let a = LockName::new("x".repeat(300)).unwrap();
        let b = LockName::new(format!("{}y", "x".repeat(299))).unwrap();
        let (sa, sb) = (
            a.abstract_socket_name(Scope::System),
            b.abstract_socket_name(Scope::System),
        );
        assert!(sa.len() <= ABSTRACT_NAME_MAX && sb.len() <= ABSTRACT_NAME_MAX);
        assert_ne!(sa, sb);
        assert!(a.file_name("lock").len() <= FILE_NAME_MAX);
    }

    #[test]
    fn hash_marker_cannot_be_forged_by_a_plain_name() {
        let long = LockName::new("z".repeat(200)).unwrap();
        let forged = long.abstract_socket_name(Scope::System);
        let tail = forged.rsplit('/').next().unwrap();
        let plain = LockName::new(tail).unwrap();
        assert_ne!(plain.abstract_socket_name(Scope::System), forged);
    }

    /// The default directories, pinned: the new one per uid, and the old, environment-dependent
    /// one whose compatibility lock new versions take (old and new must exclude each other).
    #[test]
    #[cfg(unix)]
    fn default_directories_are_pinned() {
        let uid = nix::unistd::geteuid().as_raw();
        assert_eq!(
            Scope::User.default_dir(),
            PathBuf::from(format!("/var/tmp/onlyone-{uid}"))
        );
        assert_eq!(
            Scope::System.default_dir(),
            PathBuf::from("/run/lock/onlyone")
        );
        assert_eq!(Scope::System.legacy_default_dir(), None);
        let cases: [(Option<&str>, bool, &str); 5] = [
            (Some("/run/user/1000"), true, "/run/user/1000/onlyone"),
            (Some("/somewhere/else"), false, "/somewhere/else/onlyone"),
            (Some("relative"), true, "/run/user/1000/onlyone"),
            (None, true, "/run/user/1000/onlyone"),
            (None, false, "/tmp/onlyone-1000"),
        ];
        for (xdg, run_user_exists, expected) in cases {
            let got = legacy_user_dir(xdg.map(Into::into), 1000, |p| {
                assert_eq!(p, Path::new("/run/user/1000"));
                run_user_exists
            });
            assert_eq!(got, PathBuf::from(expected), "{xdg:?} {run_user_exists}");
        }
        let n = LockName::new("backup").unwrap();
        assert_eq!(n.file_name("lock"), "backup.lock");
        assert_eq!(n.file_name("pid-takeover"), "backup.pid-takeover");
        assert_eq!(
            n.abstract_socket_name(Scope::User),
            format!("onlyone/u{uid}/backup")
        );
    }

    #[test]
    fn known_mappings_are_stable() {
        assert_eq!(
            format!("{:032x}", fnv1a_128(b"")),
            "6c62272e07bb014262b821756295c58d"
        );
        assert_eq!(
            format!("{:032x}", fnv1a_128(b"a")),
            "d228cb696f1a8caf78912b704e4a8964"
        );
        let n = LockName::new("backup").unwrap();
        assert_eq!(
            n.abstract_socket_name(Scope::System),
            "onlyone/system/backup"
        );
        assert_eq!(n.file_name("pid"), "backup.pid");
    }
}
