//! Hand-written JSON output for `status --json` and `list --json` (RFC 8259).

use std::fmt::Write;
use std::time::SystemTime;

use onlyone::{Holder, HolderKind};

/// `s` as a JSON string literal: quotes, backslashes and control characters escaped.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            // Line and paragraph separators are valid JSON but break JavaScript parsers.
            '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON string or `null`.
pub fn opt_string(s: Option<&str>) -> String {
    s.map_or_else(|| "null".to_owned(), string)
}

/// A JSON number or `null`.
pub fn opt_number(n: Option<impl std::fmt::Display>) -> String {
    n.map_or_else(|| "null".to_owned(), |n| n.to_string())
}

/// The kind of holder as a word: `same-user`, `other-user`, `unresponsive`, `unidentified`.
pub fn kind_word(kind: HolderKind) -> &'static str {
    match kind {
        HolderKind::SameUser => "same-user",
        HolderKind::OtherUser => "other-user",
        HolderKind::Unresponsive => "unresponsive",
        HolderKind::Unidentified => "unidentified",
        HolderKind::OtherPidNamespace => "other-pid-namespace",
        _ => "unknown",
    }
}

/// A holder as a JSON object.
pub fn holder(h: &Holder) -> String {
    let unix = h.started.and_then(|t| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs())
    });
    format!(
        "{{\"kind\":{},\"pid\":{},\"uid\":{},\"command\":{},\"started\":{},\"started_unix\":{},\"host\":{},\"description\":{}}}",
        string(kind_word(h.kind)),
        opt_number(h.pid),
        opt_number(h.uid),
        opt_string(h.command.as_deref()),
        opt_string(h.started.map(onlyone::format_utc).as_deref()),
        opt_number(unix),
        opt_string(h.host.as_deref()),
        string(&h.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(string("plain"), "\"plain\"");
        assert_eq!(string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(string("\n\t\u{1}\u{7f}"), "\"\\n\\t\\u0001\\u007f\"");
        assert_eq!(string("ü\u{2028}"), "\"ü\\u2028\"");
        assert_eq!(opt_string(None), "null");
        assert_eq!(opt_number(Some(42)), "42");
    }
}
