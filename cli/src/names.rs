//! The lock name `onlyone run` derives from COMMAND and ARGS when no `-N` is given.
//!
//! `cmd.<base>.<hash>`: `<base>` is the last path component of COMMAND with every byte outside
//! `A-Z a-z 0-9 . _ + - @` replaced by `_`, cut to 40 bytes (for humans reading `onlyone list`);
//! `<hash>` is the 32 hex digits of the FNV-1a 128-bit hash of the whole argument vector
//! encoded without ambiguity: each argument, as raw bytes, as `<length in decimal>:<bytes>,`.
//! So `sh -c 'a; b'` and `sh -c 'a;' 'b'` get different names, `backup` and `/usr/bin/backup`
//! too (the command as typed, not as found in `PATH`). The mapping is stable across releases.

use std::ffi::OsString;

/// Longest `<base>` part, in bytes.
const BASE_MAX: usize = 40;

/// The lock name for the argument vector `argv` (not empty).
pub fn derive(argv: &[OsString]) -> String {
    let mut encoded = Vec::new();
    for arg in argv {
        // On Unix the raw bytes; on Windows WTF-8 (UTF-8 for every valid string).
        let bytes = arg.as_encoded_bytes();
        encoded.extend_from_slice(bytes.len().to_string().as_bytes());
        encoded.push(b':');
        encoded.extend_from_slice(bytes);
        encoded.push(b',');
    }
    let hash = onlyone::name::fnv1a_128(&encoded);
    let program = argv
        .first()
        .map(|a| a.as_encoded_bytes())
        .unwrap_or_default();
    let last = program
        .rsplit(|&b| b == b'/')
        .find(|part| !part.is_empty())
        .unwrap_or_default();
    let mut base: String = last
        .iter()
        .take(BASE_MAX)
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"._+-@".contains(&b) {
                b as char
            } else {
                '_'
            }
        })
        .collect();
    if base.is_empty() {
        base.push('_');
    }
    format!("cmd.{base}.{hash:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(args: &[&str]) -> String {
        derive(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn joining_with_spaces_does_not_collide() {
        assert_ne!(name(&["sh", "-c", "a; b"]), name(&["sh", "-c", "a;", "b"]));
        assert_ne!(name(&["a", "bc"]), name(&["ab", "c"]));
        assert_ne!(name(&["a", ""]), name(&["a"]));
        assert_ne!(name(&["1:a,"]), name(&["1:a", ""]));
    }

    #[test]
    fn names_are_valid_and_readable() {
        let n = name(&["/usr/bin/backup", "--full"]);
        assert!(n.starts_with("cmd.backup."), "{n}");
        assert!(onlyone::LockName::new(n.as_str()).is_ok());
        assert_ne!(n, name(&["backup", "--full"]));
        let weird = name(&["/", "x"]);
        assert!(weird.starts_with("cmd._."), "{weird}");
        let nasty = name(&["dir/with space\n\u{1}ü/"]);
        assert!(nasty.starts_with("cmd.with_space__"), "{nasty}");
        assert!(onlyone::LockName::new(nasty.as_str()).is_ok());
        let long = name(&["x".repeat(500).as_str()]);
        assert!(long.len() <= 4 + BASE_MAX + 1 + 32);
    }

    #[test]
    fn mapping_is_stable() {
        // Pinned: changing the mapping would let an old and a new onlyone run the same job twice.
        assert_eq!(
            name(&["sh", "-c", "a; b"]),
            format!(
                "cmd.sh.{:032x}",
                onlyone::name::fnv1a_128(b"2:sh,2:-c,4:a; b,")
            )
        );
        assert_eq!(name(&["true"]), "cmd.true.090ab6d9b84ff78ccf30a45b7710fc99");
    }
}
