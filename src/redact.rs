//! Removing secrets from text before it is printed.
//!
//! Label values, engine addresses and even error messages may carry credentials:
//! URL user info (`redis://user:pw@host`, `https://TOKEN@host`, `user:pw@host`),
//! query parameters such as `?password=...`, or a label whose key names a secret.
//! Everything printed (tables, JSON, errors, debug lines) goes through
//! [`redact_value`] or [`redact_label`]. It errs on the side of hiding too much.

/// What replaces a secret.
pub const MASK: &str = "xxxxx";

/// Words that make a label key or a query parameter a secret, compared
/// case-insensitively with the words of the name (split at `.`, `-`, `_`, blanks,
/// brackets and lower-to-upper case changes: `accessKey` is `access` + `key`).
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "pwd",
    "secret",
    "token",
    "auth",
    "authorization",
    "apikey",
    "key",
    "credential",
    "credentials",
    "creds",
    "bearer",
    "signature",
    "sig",
    "private",
    "session",
];

/// Whether a name (label key, query parameter) names a secret.
pub fn is_secret_name(name: &str) -> bool {
    let decoded = percent_decode(name);
    let mut words: Vec<String> = vec![];
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in decoded.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words.iter().any(|w| SECRET_WORDS.contains(&w.as_str()))
}

/// Redacts a label value, masking it whole when the key names a secret.
pub fn redact_label(key: &str, value: &str) -> String {
    if is_secret_name(key) {
        MASK.to_string()
    } else {
        redact_value(value)
    }
}

/// Redacts every credential-looking part of `value`:
/// - each `scheme://` URL: its user info, up to the last `@` before the next URL
///   (`user:pw@` keeps the user, a lone `token@` is masked whole; `unix://` paths and
///   `ssh://user@` logins are kept), and secret-named query or fragment parameters;
/// - `name:secret@host` without a scheme.
pub fn redact_value(value: &str) -> String {
    // Split into URL segments: each starts at a scheme and runs to the next one.
    let starts: Vec<usize> = scheme_starts(value);
    if starts.is_empty() {
        return redact_words_without_scheme(value);
    }
    let mut out = redact_words_without_scheme(&value[..starts[0]]);
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(value.len());
        out.push_str(&redact_url_segment(&value[start..end]));
    }
    out
}

/// Byte offsets where a `scheme://` begins (the scheme's first letter).
fn scheme_starts(value: &str) -> Vec<usize> {
    let bytes = value.as_bytes();
    let mut starts = vec![];
    let mut search = 0;
    while let Some(pos) = value[search..].find("://") {
        let sep = search + pos;
        let mut begin = sep;
        while begin > 0
            && (bytes[begin - 1].is_ascii_alphanumeric() || b"+.-".contains(&bytes[begin - 1]))
        {
            begin -= 1;
        }
        if begin < sep && starts.last().is_none_or(|last| *last < begin) {
            starts.push(begin);
        }
        search = sep + 3;
    }
    starts
}

fn redact_url_segment(segment: &str) -> String {
    let sep = segment.find("://").expect("segment starts with a scheme");
    let scheme = &segment[..sep];
    let after = &segment[sep + 3..];
    if scheme.eq_ignore_ascii_case("unix") || scheme.eq_ignore_ascii_case("npipe") {
        return segment.to_string();
    }
    let mut rebuilt = match after.rfind('@') {
        Some(at) => {
            let userinfo = &after[..at];
            let masked = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:{MASK}"),
                // ssh://user@host names a login, not a token.
                None if userinfo.is_empty() || scheme.eq_ignore_ascii_case("ssh") => {
                    userinfo.to_string()
                }
                None => MASK.to_string(),
            };
            format!("{scheme}://{masked}@{}", &after[at + 1..])
        }
        None => segment.to_string(),
    };
    for delim in ['?', '#'] {
        if let Some(q) = rebuilt.find(delim) {
            let (base, rest) = rebuilt.split_at(q + 1);
            let (params, tail) = match rest.find(|c: char| c.is_whitespace() || c == '#') {
                Some(e) if delim == '?' => rest.split_at(e),
                _ => (rest, ""),
            };
            rebuilt = format!("{base}{}{tail}", redact_params(params));
        }
    }
    rebuilt
}

fn redact_params(params: &str) -> String {
    params
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_name(name) => format!("{name}={MASK}"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `user:secret@host` and `redis:u:secret@host` without `://`.
fn redact_words_without_scheme(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, tail) = rest.split_at(end);
        out.push_str(&match word.rfind('@') {
            Some(at) => match word[..at].rfind(':') {
                Some(colon) => format!("{}{MASK}{}", &word[..colon + 1], &word[at..]),
                None => word.to_string(),
            },
            None => word.to_string(),
        });
        let ws = tail
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(tail.len());
        out.push_str(&tail[..ws]);
        rest = &tail[ws..];
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn hidden(v: &str) {
        let r = redact_value(v);
        assert!(!r.contains("S3C"), "{v:?} -> {r:?}");
        assert!(r.contains(MASK), "{v:?} -> {r:?}");
    }

    #[test]
    fn user_info_is_masked() {
        assert_eq!(
            redact_value("redis://user:s3cret@queue:6379/0?list=jobs"),
            "redis://user:xxxxx@queue:6379/0?list=jobs"
        );
        assert_eq!(redact_value("amqp://:pw@h/"), "amqp://:xxxxx@h/");
        assert_eq!(
            redact_value("https://S3CRETTOKEN@api.example.com/m"),
            "https://xxxxx@api.example.com/m"
        );
    }

    #[test]
    fn passwords_with_reserved_characters_and_blanks() {
        for v in [
            "redis://user:S3C/RET@queue:6379/0",
            "redis://user:S3C?RET@queue:6379/0",
            "redis://user:S3C#RET@queue:6379/0",
            "redis://user:S3C@RET@queue:6379/0",
            "redis://u:S3CRET X@h/0",
            "REDIS://u:S3CRET@h/0",
            "redis://u:S3CRET@[::1]:6379/0",
        ] {
            hidden(v);
        }
    }

    #[test]
    fn every_url_in_a_value() {
        let r = redact_value("redis://u:a1@h/0  fallback redis://u:b2@h2/0");
        assert_eq!(r, "redis://u:xxxxx@h/0  fallback redis://u:xxxxx@h2/0");
    }

    #[test]
    fn secret_query_and_fragment_parameters() {
        assert_eq!(
            redact_value("prometheus://h:9090?query=up&password=S3&Token=T#frag"),
            "prometheus://h:9090?query=up&password=xxxxx&Token=xxxxx#frag"
        );
        for v in [
            "https://h/?client_secret=S3C",
            "https://h/?X-Amz-Signature=S3C",
            "https://h/?sig=S3C",
            "https://h/?%70assword=S3C",
            "https://h/?password[]=S3C",
            "https://h/#password=S3C",
            "https://h/?accessKey=S3C",
        ] {
            hidden(v);
        }
    }

    #[test]
    fn credentials_without_a_scheme() {
        for v in [
            "user:S3CRET@h:6379",
            "redis:u:S3CRET@h/0",
            "redis:/u:S3CRET@h/0",
        ] {
            hidden(v);
        }
    }

    #[test]
    fn secret_label_keys() {
        for k in [
            "microscale.password",
            "microscale.PASS",
            "microscale.pwd",
            "microscale.auth",
            "microscale.key",
            "microscale.private-key",
            "microscale.bearer",
            "microscale.creds",
            "microscale.accessKey",
            "microscale.access_key",
            "com.microscaling.api_key",
            "microscale.auth-token",
        ] {
            assert_eq!(redact_label(k, "S3"), MASK, "{k}");
        }
        for k in [
            "microscale.min",
            "microscale.metric",
            "microscale.target-utilization",
            "microscale.scale-down.window",
        ] {
            assert_eq!(redact_label(k, "1"), "1", "{k}");
        }
    }

    #[test]
    fn plain_text_is_unchanged() {
        for v in [
            "plain",
            "10",
            "http://h/path",
            "a b  c",
            "",
            "ssh://admin@manager1",
            "unix:///tmp/admin@manager1.sock",
            "me@example.com",
            "no such socket at /tmp/a@b.sock",
        ] {
            assert_eq!(redact_value(v), v);
        }
    }
}
