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
    // Label keys and query parameters are nearly always plain ASCII: the same rules
    // without the allocations (`status` asks this for every label of every service).
    if name.is_ascii() && !name.contains('%') {
        return is_secret_ascii_name(name);
    }
    is_secret_decoded_name(name)
}

/// [`is_secret_name`], remembered per thread for the names asked before (at most
/// [`MEMO_NAMES`] of them): label keys repeat from service to service, and `status`
/// asks about each label of each service several times.
pub fn is_secret_label_key(name: &str) -> bool {
    use std::cell::RefCell;
    use std::collections::HashMap;
    thread_local! {
        static MEMO: RefCell<HashMap<String, bool>> = RefCell::new(HashMap::new());
    }
    MEMO.with(|memo| {
        if let Some(&known) = memo.borrow().get(name) {
            return known;
        }
        let secret = is_secret_name(name);
        let mut memo = memo.borrow_mut();
        if memo.len() < MEMO_NAMES {
            memo.insert(name.to_string(), secret);
        }
        secret
    })
}

/// Most names [`is_secret_label_key`] remembers per thread.
const MEMO_NAMES: usize = 4096;

/// [`is_secret_name`] for an ASCII name without `%` (percent-decoding leaves it as it
/// is, and lower case is ASCII lower case): the same rules, words compared in place.
fn is_secret_ascii_name(name: &str) -> bool {
    if name.eq_ignore_ascii_case("secret-file") || name.eq_ignore_ascii_case("secret-env") {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    if SECRET_PARTS.iter().any(|p| lower.contains(p))
        || lower.ends_with("pass")
        || lower.ends_with("pwd")
    {
        return true;
    }
    // Words split as in `is_secret_decoded_name`: at characters that are not letters
    // or digits, and before an upper-case letter that follows a lower-case letter or
    // a digit.
    let bytes = name.as_bytes();
    let is_word = |w: &str| SECRET_WORDS.contains(&w);
    let mut start = 0;
    let mut prev_lower = false;
    for (i, &b) in bytes.iter().enumerate() {
        if !b.is_ascii_alphanumeric() {
            if start < i && is_word(&lower[start..i]) {
                return true;
            }
            start = i + 1;
            prev_lower = false;
            continue;
        }
        if b.is_ascii_uppercase() && prev_lower && start < i {
            if is_word(&lower[start..i]) {
                return true;
            }
            start = i;
        }
        prev_lower = b.is_ascii_lowercase() || b.is_ascii_digit();
    }
    start < bytes.len() && is_word(&lower[start..])
}

/// [`is_secret_name`] for any name: percent-decoded, lower-cased with Unicode rules.
fn is_secret_decoded_name(name: &str) -> bool {
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
    if is_secret_label_key(key) {
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
    // One word with no `@`, `=` or `://` has nothing any rule below masks (every rule
    // needs one of them, or a blank before the word): most label values (`10`,
    // `web`, `true`) are returned as they are.
    if !value.contains(|c: char| c.is_whitespace() || c == '@' || c == '=')
        && !value.contains("://")
    {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    let mut after_prefix = false;
    let mut after_binding = false;
    while !rest.is_empty() {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, tail) = rest.split_at(end);
        if let Some((shown, taken)) = url_with_blank_password(word, rest) {
            out.push_str(&shown);
            rest = &rest[taken..];
            after_prefix = false;
            after_binding = false;
            continue;
        }
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

/// A URL at the start of `rest` (in its first word, `word`) whose password holds
/// blanks (`https://oauth2:glpat-AbC dEf@gitlab.com/g`), as [`split_userinfo`] finds
/// it: the masked text up to the end of the word that holds the host, and how many
/// bytes of `rest` it covers. `None` when the user info (if any) has no blank.
fn url_with_blank_password(word: &str, rest: &str) -> Option<(String, usize)> {
    let start = url_start(word)?;
    let sep = start + word[start..].find("://")?;
    let scheme = &word[start..sep];
    if scheme.eq_ignore_ascii_case("unix") || scheme.eq_ignore_ascii_case("npipe") {
        return None;
    }
    // A password with blanks is short (see `may_be_meant_userinfo`): look no further
    // than a little past this word, so that a long value costs little.
    let mut window = (word.len() + 300).min(rest.len());
    while !rest.is_char_boundary(window) {
        window += 1;
    }
    let (at, host) = split_userinfo(&rest[sep + 3..window])?;
    let after = &rest[sep + 3..];
    if !after[..at].contains(char::is_whitespace) {
        return None;
    }
    let host_word_end = after[host..]
        .find(char::is_whitespace)
        .map_or(after.len(), |e| host + e);
    // The host and path go through the usual URL masking (query parameters).
    let tail = redact_url(&format!("{scheme}://{}", &after[host..host_word_end]));
    let shown = format!(
        "{}{scheme}://{}{}{}",
        redact_plain(&word[..start]),
        mask_userinfo(scheme, &after[..at]),
        &after[at..host],
        &tail[scheme.len() + 3..]
    );
    Some((shown, sep + 3 + host_word_end))
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

/// Whether `s` starts with a host name or IP literal (up to `:`, `/`, `?`, `#`,
/// whitespace, or a delimiter that may follow a URL in text: `,;"')>`).
fn starts_with_host(s: &str) -> bool {
    host_at(s).is_some()
}

/// How much a text after an `@` looks like a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostLook {
    /// A single name such as `queue` or `RET`: a host for a URL parser, but also what
    /// the end of a password or a path segment looks like.
    Name,
    /// A DNS name with a dot, an IP address, `[IPv6]`, `localhost`, or a single name
    /// with a numeric port (`queue:6379`): what a person writes as a host.
    Host,
}

/// Whether `s` starts with a host (see [`HostLook`]); `None` when it does not.
fn host_at(s: &str) -> Option<HostLook> {
    if s.starts_with('[') {
        return Some(HostLook::Host);
    }
    // A host name has at most 253 characters: look no further (long text stays cheap).
    let mut lim = s.len().min(256);
    while !s.is_char_boundary(lim) {
        lim -= 1;
    }
    let end = match s[..lim].find(|c: char| c.is_whitespace() || ":/?#,;\"')>".contains(c)) {
        Some(e) => e,
        None if lim == s.len() => lim,
        None => return None,
    };
    let host = &s[..end];
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
    {
        return None;
    }
    let port = s[end..].strip_prefix(':').map(|p| {
        let n = p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len());
        let next = p[n..].chars().next();
        n > 0 && next.is_none_or(|c| c.is_whitespace() || "/?#,;\"')>".contains(c))
    });
    let dotted = host.contains('.') && host.chars().any(|c| c.is_ascii_alphanumeric());
    if dotted || host.eq_ignore_ascii_case("localhost") || port == Some(true) {
        Some(HostLook::Host)
    } else {
        Some(HostLook::Name)
    }
}

/// Whether `authority` (the text between `scheme://` and the first `/`, `?`, `#` or
/// blank) is a real `host[:port]` as a person writes one: no `@`, a host as
/// [`HostLook::Host`] (dotted, IP, `[IPv6]`, `localhost`), and a numeric port if any.
fn is_real_authority(authority: &str) -> bool {
    if authority.contains('@') || authority.to_ascii_lowercase().contains("%40") {
        return false;
    }
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.find(']').is_some_and(|e| port_ok(&rest[e + 1..]));
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, format!(":{p}")),
        None => (authority, String::new()),
    };
    port_ok(&port) && host_at(host) == Some(HostLook::Host)
}

/// `""` or `:` and digits.
fn port_ok(s: &str) -> bool {
    s.is_empty()
        || s.strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `userinfo` (between `://` and an `@`) is really user info for a URL parser
/// and not `host:port/path...`.
fn is_userinfo(userinfo: &str) -> bool {
    if userinfo.contains(char::is_whitespace) {
        return false;
    }
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

/// Whether `userinfo` may be credentials that a URL parser would not see as user info
/// (`ci:1234/5678`, `oauth2:glpat-AbC dEf`), given that the URL's own authority is
/// not a real host. Blanks are accepted only in a short `user:password` on one line
/// (at most 4 words, no `/`, a first word that is not `name:digits`); a `?`, `#` or `&` reads as a query, and `://` as the
/// next URL, so neither is taken as part of a password here.
fn may_be_meant_userinfo(userinfo: &str) -> bool {
    if userinfo.is_empty() || userinfo.contains(['?', '#', '&']) || userinfo.contains("://") {
        return false;
    }
    if !userinfo.contains(char::is_whitespace) {
        return true;
    }
    let first = userinfo.split(char::is_whitespace).next().unwrap_or("");
    !userinfo.contains(['\n', '\r', '/'])
        && userinfo.split_whitespace().count() <= 4
        && userinfo.len() <= 256
        && first.split_once(':').is_some_and(|(user, pw)| {
            // `web:8080 or mail me@example.com` is a host and port, then prose.
            !user.is_empty() && !pw.is_empty() && !pw.bytes().all(|b| b.is_ascii_digit())
        })
}

/// Where the credentials end in a URL-ish text, as a person meant them: the single
/// place that decides it, for every output (masking here, and the repository links of
/// [`crate::provenance::links`]).
///
/// `after` is the text after `scheme://` (it may run on past the URL, over blanks).
/// Returns `Some((at, host))`: `after[..at]` is the user info (`user:password` or a
/// token), `after[at..host]` the separator (`@`, or `%40`), and the host starts at
/// `after[host..]`. `None` when there is no user info.
///
/// The rule:
/// 0. When the URL's own authority (up to the first `/`, `?`, `#` or blank) is a real
///    host (no `@`; dotted, IP, `[IPv6]` or `localhost`; a numeric port), there is no
///    user info: every `@` is in the path, query or fragment.
/// 1. Otherwise an `@` is a candidate when what follows it looks like a host and either
///    - what precedes it is user info for a URL parser (`user:pw@queue`,
///      `user:S3C/RET@queue`, where the text after the `:` is not a port), or
///    - (the authority not being a real host: `ci:1234` in
///      `https://ci:1234/5678@gitlab.com/g` is a single name, as a person never
///      writes a public host) the host after the `@` is what a person
///      writes as one (dotted, IP, `localhost`, or `name:port`), and the text before
///      it can be a password ([`may_be_meant_userinfo`]: blanks only in a short
///      `user:password`, no query).
/// 2. Of the candidates, the first is taken, then a later one as long as no `/`, `?`,
///    `#` or blank lies between the chosen host and it (the password had an `@`):
///    the last `@` before the path of that host. An `@` in the path of a real URL
///    (`https://github.com/o/r/tree/@scope/pkg`) is never a candidate, and one after
///    the chosen host's `/` is in its path.
/// 3. Without any `@` candidate, a `%40` in the authority that is followed by a
///    host counts as the separator (`https://ci:pw%40gitlab.com/g`).
///
/// Known cost (it errs on the side of hiding too much): `http://svc:8080/u/me@example.com`,
/// a single-name host with a path holding an e-mail address, is read as credentials.
pub fn split_userinfo(after: &str) -> Option<(usize, usize)> {
    let auth_end = after
        .find(|c: char| c.is_whitespace() || "/?#".contains(c))
        .unwrap_or(after.len());
    if is_real_authority(&after[..auth_end]) {
        // Every `@` lies after the host: in its path, query or fragment.
        return None;
    }
    // Bounded, so that text with many `@` costs little: user info longer than 8 KiB or
    // past the 64th `@` is not looked for.
    let candidates: Vec<usize> = after
        .match_indices('@')
        .map(|(i, _)| i)
        .take_while(|&i| i <= 8192)
        .take(64)
        .filter(|&i| {
            let look = host_at(&after[i + 1..]);
            let userinfo = &after[..i];
            (look.is_some() && is_userinfo(userinfo))
                || (look == Some(HostLook::Host) && may_be_meant_userinfo(userinfo))
        })
        .collect();
    let mut chosen: Option<usize> = None;
    for c in candidates {
        match chosen {
            None => chosen = Some(c),
            Some(prev) => {
                let between = &after[prev + 1..c];
                if between.contains(|ch: char| ch.is_whitespace() || "/?#".contains(ch)) {
                    break;
                }
                chosen = Some(c);
            }
        }
    }
    if let Some(at) = chosen {
        return Some((at, at + 1));
    }
    let authority = &after[..auth_end];
    let lower = authority.to_ascii_lowercase();
    lower
        .match_indices("%40")
        .map(|(i, _)| i)
        .filter(|&i| i > 0 && host_at(&authority[i + 3..]) == Some(HostLook::Host))
        .last()
        .map(|i| (i, i + 3))
}

/// The user info as shown: `user:xxxxx`, a lone token as `xxxxx`, an `ssh://` login
/// (no `:`) as it is.
fn mask_userinfo(scheme: &str, userinfo: &str) -> String {
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:{MASK}"),
        // ssh://user@host names a login, not a token.
        None if userinfo.is_empty() || scheme.eq_ignore_ascii_case("ssh") => userinfo.to_string(),
        None => MASK.to_string(),
    }
}

fn redact_url(url: &str) -> String {
    let sep = url.find("://").expect("a URL");
    let scheme = &url[..sep];
    let after = &url[sep + 3..];
    if scheme.eq_ignore_ascii_case("unix") || scheme.eq_ignore_ascii_case("npipe") {
        return url.to_string();
    }
    let mut rebuilt = match split_userinfo(after) {
        Some((at, host)) => format!(
            "{scheme}://{}{}{}",
            mask_userinfo(scheme, &after[..at]),
            &after[at..host],
            &after[host..]
        ),
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

    /// Issue 13 item 5: credentials a URL parser does not see as user info.
    #[test]
    fn credentials_a_person_meant_are_masked() {
        assert_eq!(
            redact_value("https://ci:1234/5678@gitlab.com/g/app.git"),
            "https://ci:xxxxx@gitlab.com/g/app.git"
        );
        assert_eq!(
            redact_value("https://oauth2:glpat-AbC dEf@gitlab.com/g/app.git"),
            "https://oauth2:xxxxx@gitlab.com/g/app.git"
        );
        // (input, expected output)
        for (v, want) in [
            // several `@`: the last one before the host's path
            (
                "https://u:p@ss@gitlab.com/g/@scope/x",
                "https://u:xxxxx@gitlab.com/g/@scope/x",
            ),
            (
                "https://u:a@b.com:x@gitlab.com/g",
                "https://u:xxxxx@gitlab.com/g",
            ),
            // a real URL with a password and an `@` in its path: only the password
            (
                "https://u:pw@github.com/org/repo/tree/@scope.io/pkg",
                "https://u:xxxxx@github.com/org/repo/tree/@scope.io/pkg",
            ),
            // `%40` inside a password, and as the only separator
            (
                "https://u:p%40ss@gitlab.com/g",
                "https://u:xxxxx@gitlab.com/g",
            ),
            (
                "https://ci:pw%40gitlab.com/g/app.git",
                "https://ci:xxxxx%40gitlab.com/g/app.git",
            ),
            // blanks, with text before and after, and a query after the host
            (
                "source: https://oauth2:a b c@gitlab.com/g?token=T1 and more",
                "source: https://oauth2:xxxxx@gitlab.com/g?token=xxxxx and more",
            ),
            (
                "url=\"https://oauth2:a b@gitlab.com/g\"",
                "url=\"https://oauth2:xxxxx@gitlab.com/g\"",
            ),
            // a single-name host with a numeric "port" that is a password
            (
                "redis://app:1234/5678@10.0.0.7:6379/0",
                "redis://app:xxxxx@10.0.0.7:6379/0",
            ),
            (
                "redis://app:12/34@queue:6379/0",
                "redis://app:xxxxx@queue:6379/0",
            ),
            ("https://tok/en@localhost/g", "https://xxxxx@localhost/g"),
            (
                "ssh://git:1234/5678@gitlab.com/g",
                "ssh://git:xxxxx@gitlab.com/g",
            ),
            // the next URL is not part of a password
            (
                "https://a:b then https://c@d.com",
                "https://a:b then https://xxxxx@d.com",
            ),
        ] {
            assert_eq!(redact_value(v), want, "{v:?}");
        }
    }

    #[test]
    fn at_signs_that_belong_to_a_real_url_are_kept() {
        for v in [
            "https://github.com/org/repo/tree/@scope/pkg",
            "https://github.com/org/repo/tree/@scope.io/pkg",
            "https://registry.npmjs.org/@scope/pkg",
            "https://gitlab.com:8443/g/@x.io",
            "http://localhost:8080/users/me@example.com",
            "http://10.0.0.1/a/me@example.com",
            "https://[::1]:8443/a/me@example.com",
            "https://gitlab.com/g/%40scope.io/x",
            "redis://queue:6379/0?x=a@b.com",
            "http://svc:8080/p?mail=me@example.com",
            // blanks: a URL, then prose with an address
            "see https://host/x and mail me@example.com",
            "see http://web:8080 or mail admin@example.com",
            "https://gitlab.com:443 or me@example.com",
            "go to https://a:b\nc@d.com",
        ] {
            assert_eq!(redact_value(v), v, "{v:?}");
        }
    }

    #[test]
    fn split_userinfo_is_the_one_decision() {
        fn split(url: &str) -> Option<(&str, &str)> {
            let after = &url[url.find("://").unwrap() + 3..];
            split_userinfo(after).map(|(at, host)| (&after[..at], &after[host..]))
        }
        assert_eq!(
            split("https://ci:1234/5678@gitlab.com/g/app.git"),
            Some(("ci:1234/5678", "gitlab.com/g/app.git"))
        );
        assert_eq!(
            split("https://oauth2:glpat-AbC dEf@gitlab.com/g"),
            Some(("oauth2:glpat-AbC dEf", "gitlab.com/g"))
        );
        assert_eq!(split("https://github.com/o/r/tree/@scope/pkg"), None);
        assert_eq!(split("https://gitlab.com/g"), None);
        assert_eq!(
            split("https://user%40corp.com@gitlab.com/g"),
            Some(("user%40corp.com", "gitlab.com/g"))
        );
    }

    /// Many `@` signs, URLs and blanks cost little (the search for user info is
    /// bounded), and a long value is still masked.
    #[test]
    fn long_values_with_many_at_signs_are_quick() {
        let many_at = format!("https://{}", "a@".repeat(500_000));
        let many_urls = "https://a:b c ".repeat(100_000);
        let start = std::time::Instant::now();
        redact_value(&many_at);
        redact_value(&many_urls);
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        let long = format!(
            "{} https://ci:1234/5678@gitlab.com/g",
            "word ".repeat(100_000)
        );
        assert!(redact_value(&long).ends_with("https://ci:xxxxx@gitlab.com/g"));
    }

    /// The ASCII fast path of `is_secret_name` decides as the general one: over
    /// every name built from secret words, separators, case changes and digits.
    #[test]
    fn ascii_secret_names_decide_as_the_general_rules() {
        let parts = [
            "", "a", "key", "Key", "KEY", "api", "Api", "token", "Pass", "pwd", "monkey", "keys",
            "db", "9", "x9", "sig", "Sig", "session", "auth", "secret", "file", "env", "pw", "ok",
            "jwt", "private", "value", "label",
        ];
        let seps = ["", ".", "-", "_", " ", "[", "]", "/", ":"];
        let mut checked = 0;
        for a in parts {
            for sep in seps {
                for b in parts {
                    for tail in ["", "Z", "1", "."] {
                        let name = format!("{a}{sep}{b}{tail}");
                        assert_eq!(
                            is_secret_ascii_name(&name),
                            is_secret_decoded_name(&name),
                            "{name:?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 20_000);
        for name in [
            "secret-file",
            "SECRET-ENV",
            "accessKey",
            "apiKEY",
            "myPASS",
            "dbPwd",
            "x-pw",
            "microscale.metric",
            "microscale.max",
            "com.docker.stack.namespace",
            "dbpassword",
            "Authorization",
            "pw9",
            "9pw",
            "key9Key",
        ] {
            assert_eq!(
                is_secret_ascii_name(name),
                is_secret_decoded_name(name),
                "{name}"
            );
        }
        // Names the fast path does not take: percent-encoded or not ASCII.
        assert!(is_secret_name("api%5Fkey"));
        // The Kelvin sign lower-cases to `k`: `\u{212a}ey` is `key`.
        assert!(is_secret_name("\u{212a}ey"));
    }

    /// A value of one word without `@`, `=` or `://` comes back unchanged from the
    /// fast path; the same word in a longer value is kept the same way.
    #[test]
    fn plain_words_are_kept() {
        for v in [
            "10",
            "web",
            "true",
            "queue:6379",
            "a/b:c",
            "S3CRET",
            "Bearer",
            "x,y;z",
        ] {
            assert_eq!(redact_value(v), v);
            assert_eq!(redact_value(&format!("{v} {v}")), format!("{v} {v}"));
        }
        // A blank, an `@`, an `=` or `://` takes the full rules.
        assert_eq!(redact_value("Bearer S3CRET9xyz"), "Bearer xxxxx");
        assert_eq!(redact_value("u:S3C@host.example"), "u:xxxxx@host.example");
        assert_eq!(redact_value("token=S3C"), "token=xxxxx");
    }
}
