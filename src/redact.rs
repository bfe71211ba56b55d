//! Removing secrets from text before it is printed.
//!
//! Label values, engine addresses and even error messages may carry credentials:
//! URL user info (`redis://user:pw@host`, `https://TOKEN@host`, `user:pw@host`),
//! query parameters such as `?password=...`, or a label whose key names a secret.
//! Everything printed (tables, JSON, errors, debug lines) goes through
//! [`redact_value`] or [`redact_label`]. It errs on the side of hiding too much.

/// What replaces a secret.
pub const MASK: &str = "xxxxx";

/// Words that make a label key or a query parameter a secret, when they are a whole
/// word of the name (split at `.`, `-`, `_`, blanks, brackets and lower-to-upper case
/// changes: `accessKey` is `access` + `key`).
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "pwd",
    "pw",
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
    "jwt",
    "passphrase",
];

/// Parts that make a name a secret wherever they appear in it (`dbpassword`,
/// `apitoken`, `secretkey`).
const SECRET_PARTS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "credential",
    "jwt",
];

/// Words after which the next word is a credential (`Authorization: Bearer X`).
const CREDENTIAL_PREFIXES: &[&str] = &["bearer", "basic", "token"];

/// Whether the word after `Bearer`, `Basic` or `Token` looks like a credential rather
/// than prose (`a Basic string, expected ...`): token characters only, and either a
/// digit, an `=` pad, a `.` (JWT), or at least 20 characters.
fn looks_like_credential(word: &str) -> bool {
    let w = word.trim_end_matches([',', ';', ')', '"', '\'']);
    !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=._~-:".contains(c))
        && (w.chars().any(|c| c.is_ascii_digit()) || w.contains(['=', '.']) || w.len() >= 20)
}

/// Whether a name (label key, query parameter) names a secret.
pub fn is_secret_name(name: &str) -> bool {
    let decoded = percent_decode(name);
    let lower = decoded.to_lowercase();
    // A metric URI's `secret-file=PATH` and `secret-env=NAME` say where a secret
    // is, and errors must show which one.
    if matches!(lower.as_str(), "secret-file" | "secret-env") {
        return false;
    }
    if SECRET_PARTS.iter().any(|p| lower.contains(p))
        || lower.ends_with("pass")
        || lower.ends_with("pwd")
    {
        return true;
    }
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

/// Redacts every credential-looking part of `value`, word by word (whitespace ends a
/// word; a password with a raw blank is not a valid URL):
/// - in each `scheme://` URL, the user info (`user:pw@` keeps the user, a lone
///   `token@` is masked whole; `unix://` paths and `ssh://user@` logins are kept)
///   and secret-named query or fragment parameters;
/// - `name:secret@host` without a scheme, and `secretname=value`;
/// - the word after `Bearer`, `Basic` or `Token`.
///
/// Text that only looks similar is kept: `host:port/path@x`, `registry/@scope`,
/// `/path/w:k@z`, `name@sha256:...`, `user@example.com`.
pub fn redact_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    let mut after_prefix = false;
    let mut after_binding = false;
    while !rest.is_empty() {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, tail) = rest.split_at(end);
        if after_binding || word.starts_with("--metric-secret=") {
            // `--metric-secret NAME=HOST`: a secret's name and its hosts, no secret.
            out.push_str(word);
        } else if after_prefix && looks_like_credential(word) {
            out.push_str(MASK);
        } else {
            out.push_str(&redact_word(word));
        }
        after_binding = word == "--metric-secret";
        after_prefix = CREDENTIAL_PREFIXES
            .iter()
            .any(|p| word.trim_end_matches(':').eq_ignore_ascii_case(p));
        let ws = tail
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(tail.len());
        out.push_str(&tail[..ws]);
        rest = &tail[ws..];
    }
    out
}

fn redact_word(word: &str) -> String {
    // `password=...` masks the whole value, URL or not.
    if let Some((key, _)) = word.split_once('=') {
        let name = key.trim_start_matches(|c: char| !c.is_alphanumeric());
        if !key.contains("://") && !name.is_empty() && is_secret_name(name) {
            return format!("{key}={MASK}");
        }
    }
    match url_start(word) {
        Some(start) => {
            let (before, url) = word.split_at(start);
            format!("{}{}", redact_plain(before), redact_url(url))
        }
        None => redact_plain(word),
    }
}

/// Where a `scheme://` URL starts in `word`: at its beginning or after one of
/// `=("'<,;`, so that `://` inside a password does not start a new URL.
fn url_start(word: &str) -> Option<usize> {
    let sep = word.find("://")?;
    let bytes = word.as_bytes();
    let mut begin = sep;
    while begin > 0
        && (bytes[begin - 1].is_ascii_alphanumeric() || b"+.-".contains(&bytes[begin - 1]))
    {
        begin -= 1;
    }
    let boundary = begin == 0 || b"=(\"'<,;".contains(&bytes[begin - 1]);
    (begin < sep && boundary).then_some(begin)
}

/// Whether `s` starts with a host name or IP literal (up to `:`, `/`, `?`, `#`, or a
/// delimiter that may follow a URL in text: `,;"')>`).
fn starts_with_host(s: &str) -> bool {
    if s.starts_with('[') {
        return true;
    }
    let host: &str = s
        .split([':', '/', '?', '#', ',', ';', '"', '\'', ')', '>'])
        .next()
        .unwrap_or_default();
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
}

/// Whether `userinfo` (between `://` and an `@`) is really user info and not
/// `host:port/path...`.
fn is_userinfo(userinfo: &str) -> bool {
    let first_delim = userinfo.find(['/', '?', '#']);
    match (userinfo.find(':'), first_delim) {
        (_, None) => true,
        (Some(colon), Some(d)) if colon < d => {
            // `host:8080/path@x` is a port, not a password.
            let after = &userinfo[colon + 1..d];
            after.is_empty() || !after.chars().all(|c| c.is_ascii_digit())
        }
        _ => false,
    }
}

fn redact_url(url: &str) -> String {
    let sep = url.find("://").expect("a URL");
    let scheme = &url[..sep];
    let after = &url[sep + 3..];
    if scheme.eq_ignore_ascii_case("unix") || scheme.eq_ignore_ascii_case("npipe") {
        return url.to_string();
    }
    let at = after
        .match_indices('@')
        .map(|(i, _)| i)
        .rev()
        .find(|&i| starts_with_host(&after[i + 1..]) && is_userinfo(&after[..i]));
    let mut rebuilt = match at {
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
        None => url.to_string(),
    };
    for delim in ['?', '#'] {
        if let Some(q) = rebuilt.find(delim) {
            let (base, rest) = rebuilt.split_at(q + 1);
            let (params, tail) = match rest.find('#') {
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

/// A word (or the part before a URL) without a URL: `user:secret@host`.
fn redact_plain(word: &str) -> String {
    if let Some(at) = word.rfind('@') {
        let before = &word[..at];
        // `redis:/u:pw@h` (a mangled URL) counts; `/path/w:k@z` does not.
        let core = match before.split_once(":/") {
            Some((scheme, rest))
                if !scheme.is_empty()
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c)) =>
            {
                rest.trim_start_matches('/')
            }
            _ => before,
        };
        if !core.contains('/')
            && !is_digest(&word[at + 1..])
            && starts_with_host(&word[at + 1..])
            && let Some(colon) = before.rfind(':')
        {
            return format!("{}{MASK}{}", &word[..colon + 1], &word[at..]);
        }
    }
    word.to_string()
}

/// Whether `s` starts with a content digest (`sha256:` and hex): then the `@` before it
/// belongs to an image reference (`nginx:1.25@sha256:...`), not to credentials.
fn is_digest(s: &str) -> bool {
    let Some((algo, rest)) = s.split_once(':') else {
        return false;
    };
    matches!(algo, "sha256" | "sha384" | "sha512")
        && rest.len() >= 32
        && rest.bytes().take(32).all(|c| c.is_ascii_hexdigit())
}

/// Decodes `%XX` escapes; anything else is kept as it is.
pub fn percent_decode(s: &str) -> String {
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
    fn where_a_secret_is_and_where_it_may_go_are_shown() {
        assert_eq!(
            redact_value("redis://q/0?list=a&secret-file=/run/secrets/redis"),
            "redis://q/0?list=a&secret-file=/run/secrets/redis"
        );
        assert_eq!(
            redact_value("add --metric-secret db-password=queue:6379 (docs)"),
            "add --metric-secret db-password=queue:6379 (docs)"
        );
        assert_eq!(
            redact_value("--metric-secret=api-token=h"),
            "--metric-secret=api-token=h"
        );
        // Anything else named like a secret is still hidden.
        assert_eq!(redact_value("x db-password=S3C"), "x db-password=xxxxx");
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
    fn secrets_outside_urls_and_in_run_together_names() {
        for v in [
            "host=db user=app password=S3CRET1",
            "http://h/m Authorization: Bearer S3CRET16",
            "Authorization: Basic dXNlcjpTM0NSRVQ=",
            "Bearer eyJhbGciOiJSUzI1NiJ9.S3CRET.sig",
            "Token abcdefghijklmnopqrstuS3C",
            "https://h/?apitoken=S3C&accesstoken=S3C&pw=S3C&passphrase=S3C&jwt=S3C",
            "redis://u:S3C://RET15@h/0",
            "password=redis://u:S3CRET@h/0",
        ] {
            let r = redact_value(v);
            assert!(
                !r.contains("S3C") && !r.contains("RET15") && !r.contains("dXNlcjpTM0NSRVQ"),
                "{v:?} -> {r:?}"
            );
        }
        for k in [
            "microscale.dbpassword",
            "microscale.redispass",
            "microscale.secretkey",
            "microscale.apitoken",
        ] {
            assert_eq!(redact_label(k, "S3"), MASK, "{k}");
        }
    }

    #[test]
    fn lookalikes_are_left_alone() {
        for v in [
            "Cannot connect to the Docker daemon at tcp://127.0.0.1:1 (from context \"prod\", the current context in /home/john@corp.example/.docker/config.json): connection refused",
            "Get https://registry.example:5000/v2/: unauthorized; contact admin@example.com",
            "image=reg.example:5000/app@sha256:abc",
            "https://registry.npmjs.org/@scope/pkg",
            "prometheus://127.0.0.1:9090?query=up%20@%201609746000",
            "/tmp/w:k@z/contexts/meta",
            "http://127.0.0.1:9090/api?x=a@b.com",
            "nginx:1.25@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "TOML parse error: invalid basic string, expected non-double-quote visible characters",
            "the token service answered",
            "cannot read the image nginx:1.25@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef: x",
        ] {
            assert_eq!(redact_value(v), v);
        }
    }

    #[test]
    fn credentials_without_a_scheme() {
        for v in [
            "see https://u:S3CRET@host,and more",
            "url=https://u:S3CRET@host;x",
            "\"https://u:S3CRET@host\"",
            "(https://u:S3CRET@host)",
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
