//! Argument normalisation for the three ways the plugin is invoked.
//!
//! - `docker microscale status` runs the plugin with argv `microscale status`;
//! - `docker -H unix:///x.sock microscale status` passes the docker CLI's global flags
//!   first: `-H unix:///x.sock microscale status`;
//! - `docker help microscale [COMMAND]` runs the plugin with `help microscale [COMMAND]`;
//! - `docker-microscale status` runs it directly.
//!
//! [`normalize`] removes the plugin name (the first positional word, when it is
//! `microscale`) so that clap sees `[GLOBAL FLAGS] COMMAND ...` in every case.

use std::ffi::OsString;
use std::path::PathBuf;

/// The plugin name the docker CLI puts in argv (`docker-<name>` is the binary).
pub const PLUGIN_NAME: &str = "microscale";

/// Global docker flags that take a value in the next word when written without `=`.
const VALUE_FLAGS_LONG: &[&str] = &[
    "--host",
    "--context",
    "--config",
    "--log-level",
    "--tlscacert",
    "--tlscert",
    "--tlskey",
];
const VALUE_FLAGS_SHORT: &[char] = &['H', 'c', 'l'];

/// How many words a group of short flags takes: `-D` 1, `-H x` 2, `-DH x` 2,
/// `-Hunix:///x` 1 (value attached), `-D=true` 1.
fn short_flags_width(word: &str) -> usize {
    let flags = &word[1..];
    for (pos, c) in flags.char_indices() {
        if VALUE_FLAGS_SHORT.contains(&c) {
            let attached = &flags[pos + c.len_utf8()..];
            return if attached.is_empty() { 2 } else { 1 };
        }
        if c == '=' {
            return 1;
        }
    }
    1
}

/// How many leading words of `args` are the docker CLI's global flags and their
/// values (`-H URL`, `--context=NAME`, `-D`, ...): the index of the first positional
/// word, or of `--`, or `args.len()`.
pub fn global_flags_len(args: &[String]) -> usize {
    let mut i = 0;
    while i < args.len() {
        let word = args[i].as_str();
        if word == "--" || !word.starts_with('-') || word.len() == 1 {
            return i;
        }
        if word.starts_with("--") {
            let takes_value = !word.contains('=') && VALUE_FLAGS_LONG.contains(&word);
            i += if takes_value { 2 } else { 1 };
        } else {
            i += short_flags_width(word);
        }
    }
    args.len()
}

/// Returns `args` (without argv\[0\]) with the plugin name removed.
///
/// Only the first positional word is looked at: global flags and their values are
/// skipped, and `help microscale ...` becomes `help ...`.
pub fn normalize(args: Vec<OsString>) -> Vec<OsString> {
    let mut i = 0;
    while i < args.len() {
        let word = args[i].to_string_lossy().into_owned();
        if word == "--" {
            // `docker -- microscale status`: the plugin name follows the `--`.
            let mut out = args;
            if out.get(i + 1).is_some_and(|w| w == PLUGIN_NAME) {
                out.drain(i..i + 2);
            }
            return out;
        }
        if word.starts_with("--") {
            let takes_value = !word.contains('=') && VALUE_FLAGS_LONG.contains(&word.as_str());
            i += if takes_value { 2 } else { 1 };
            continue;
        }
        if word.starts_with('-') && word.len() > 1 {
            i += short_flags_width(&word);
            continue;
        }
        // The first positional word.
        let mut out = args;
        if word == PLUGIN_NAME {
            out.remove(i);
            return help_to_flag(out, i);
        }
        return help_to_flag(out, i);
    }
    args
}

/// `help [microscale] [COMMAND...]` at position `i` becomes `[COMMAND...] --help`, and
/// so does `--help COMMAND` (as `docker service --help ls` shows the help of `ls`).
fn help_to_flag(mut args: Vec<OsString>, mut i: usize) -> Vec<OsString> {
    // `-h/--help` before the command word moves after it.
    let is_help = |w: &OsString| w == "--help" || w == "-h";
    if let Some(pos) = args.iter().take(i + 1).position(is_help)
        && args
            .get(pos + 1)
            .is_some_and(|w| !w.to_string_lossy().starts_with('-'))
    {
        args.remove(pos);
        args.push(OsString::from("--help"));
        if pos < i {
            i -= 1;
        }
    }
    if args.get(i).is_some_and(|w| w == "help") {
        args.remove(i);
        if args.get(i).is_some_and(|w| w == PLUGIN_NAME) {
            args.remove(i);
        }
        args.push(OsString::from("--help"));
    }
    args
}

/// A path, empty allowed (`--config=` means "not set", as in the docker CLI).
pub fn any_path(value: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(value))
}

/// A number of replicas (`--capacity`, `replay --replicas`): a whole number, 0 or
/// more. Errors say what is expected, not Rust's `invalid digit found in string`.
pub fn replica_count(value: &str) -> Result<u64, String> {
    whole_number(value)
        .map_err(|why| format!("{why}: give a number of replicas, 0 or more, such as 20"))
}

/// A count (`--runs`, `--services` of the hidden commands): a whole number, 0 or
/// more, that fits `T`.
pub fn count<T: TryFrom<u64>>(value: &str) -> Result<T, String> {
    let n = whole_number(value).map_err(|why| format!("{why}: give a whole number, 0 or more"))?;
    T::try_from(n).map_err(|_| format!("{n} is too large"))
}

/// `value` as a whole number, or what is wrong with it.
fn whole_number(value: &str) -> Result<u64, String> {
    let v = value.trim();
    if v.is_empty() {
        return Err("a number is missing".into());
    }
    if v.starts_with('-') && v[1..].bytes().all(|b| b.is_ascii_digit()) && v.len() > 1 {
        return Err("a negative number".into());
    }
    if !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a whole number".into());
    }
    v.parse::<u64>()
        .map_err(|_| format!("more than {}", u64::MAX))
}

/// A boolean flag value as Go's `strconv.ParseBool` reads it (the docker CLI's flags):
/// 1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False.
pub fn go_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        other => Err(format!("invalid boolean \"{other}\" (use true or false)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(words: &[&str]) -> Vec<String> {
        normalize(words.iter().map(OsString::from).collect())
            .into_iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn global_flags_len_finds_the_first_positional() {
        let n = |s: &str| {
            let words: Vec<String> = s.split_whitespace().map(String::from).collect();
            global_flags_len(&words)
        };
        assert_eq!(n("microscale status"), 0);
        assert_eq!(n("-H unix:///x microscale"), 2);
        assert_eq!(n("--context=prod -D --tlscacert ca.pem microscale"), 4);
        assert_eq!(n("-DH unix:///x -- microscale"), 2);
        assert_eq!(n("-D"), 1);
    }

    #[test]
    fn plugin_name_is_removed() {
        assert_eq!(norm(&["microscale", "status"]), ["status"]);
        assert_eq!(norm(&["status"]), ["status"]);
        assert_eq!(norm(&["microscale"]), Vec::<String>::new());
    }

    #[test]
    fn global_flags_before_the_plugin_name_are_kept() {
        assert_eq!(
            norm(&["-H", "unix:///x.sock", "microscale", "status", "-q"]),
            ["-H", "unix:///x.sock", "status", "-q"]
        );
        assert_eq!(
            norm(&[
                "--context=prod",
                "-D",
                "--tlsverify",
                "microscale",
                "status"
            ]),
            ["--context=prod", "-D", "--tlsverify", "status"]
        );
        assert_eq!(
            norm(&[
                "--config",
                "/tmp/cfg",
                "-l",
                "debug",
                "microscale",
                "version"
            ]),
            ["--config", "/tmp/cfg", "-l", "debug", "version"]
        );
    }

    #[test]
    fn help_flag_before_the_command() {
        assert_eq!(
            norm(&["microscale", "--help", "status"]),
            ["status", "--help"]
        );
        assert_eq!(norm(&["--help", "status"]), ["status", "--help"]);
        assert_eq!(norm(&["microscale", "--help"]), ["--help"]);
        assert_eq!(
            norm(&["microscale", "status", "--help"]),
            ["status", "--help"]
        );
    }

    #[test]
    fn double_dash_before_the_plugin_name() {
        assert_eq!(norm(&["--", "microscale", "status"]), ["status"]);
        assert_eq!(
            norm(&["-H", "x", "--", "microscale", "status"]),
            ["-H", "x", "status"]
        );
    }

    #[test]
    fn combined_and_attached_short_flags() {
        assert_eq!(
            norm(&["-DH", "unix:///x", "microscale", "status"]),
            ["-DH", "unix:///x", "status"]
        );
        assert_eq!(
            norm(&["-Hunix:///x", "microscale", "status"]),
            ["-Hunix:///x", "status"]
        );
        assert_eq!(
            norm(&["-D=true", "--debug=false", "microscale", "status"]),
            ["-D=true", "--debug=false", "status"]
        );
    }

    #[test]
    fn a_flag_value_named_microscale_is_not_the_plugin_name() {
        assert_eq!(
            norm(&["--context", "microscale", "microscale", "status"]),
            ["--context", "microscale", "status"]
        );
    }

    #[test]
    fn docker_help_microscale() {
        assert_eq!(norm(&["help", "microscale"]), ["--help"]);
        assert_eq!(
            norm(&["help", "microscale", "status"]),
            ["status", "--help"]
        );
        assert_eq!(
            norm(&["microscale", "help", "status"]),
            ["status", "--help"]
        );
        assert_eq!(norm(&["-D", "help", "status"]), ["-D", "status", "--help"]);
    }

    #[test]
    fn a_service_named_microscale_after_the_command_stays() {
        assert_eq!(
            norm(&["microscale", "status", "microscale"]),
            ["status", "microscale"]
        );
    }

    #[test]
    fn counts_say_what_is_expected() {
        assert_eq!(replica_count("20"), Ok(20));
        assert_eq!(replica_count(" 0 "), Ok(0));
        for (bad, why) in [
            ("abc", "not a whole number"),
            ("2.5", "not a whole number"),
            ("-3", "a negative number"),
            ("", "a number is missing"),
            ("99999999999999999999999", "more than 18446744073709551615"),
        ] {
            let e = replica_count(bad).unwrap_err();
            assert_eq!(
                e,
                format!("{why}: give a number of replicas, 0 or more, such as 20"),
                "{bad}"
            );
        }
        assert_eq!(count::<u32>("5"), Ok(5));
        assert_eq!(
            count::<u32>("5000000000"),
            Err("5000000000 is too large".into())
        );
        assert_eq!(
            count::<usize>("x"),
            Err("not a whole number: give a whole number, 0 or more".into())
        );
    }
}
