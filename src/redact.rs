//! Removing secrets from text before it is printed.
//!
//! Label values and engine addresses may carry credentials: URL user info
//! (`redis://user:pw@host`, `https://TOKEN@host`), query parameters such as
//! `?password=...`, or a label whose key names a secret. Everything printed (tables,
//! JSON, errors, debug lines) goes through [`redact_value`] or [`redact_label`].
//! It errs on the side of hiding too much.

/// What replaces a secret.
pub const MASK: &str = "xxxxx";

/// Query parameter names whose values are secrets (compared case-insensitively).
const SECRET_PARAMS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "pwd",
    "secret",
    "token",
    "access_token",
    "auth",
    "apikey",
    "api_key",
    "api-key",
    "credentials",
];

/// Words that make a label key a secret: its whole value is masked.
const SECRET_KEY_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "api-key",
    "credential",
];

/// Redacts every URL in `value`: user info (`user:pw@` keeps the user, a lone
/// `token@` is masked whole) and secret-named query parameters.
///
/// A value may hold several URLs separated by whitespace; each is redacted. The user
/// info ends at the *last* `@` of the URL, so a password with an unencoded `/`, `?` or
/// `#` is still hidden.
pub fn redact_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while !rest.is_empty() {
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, tail) = rest.split_at(word_end);
        out.push_str(&redact_word(word));
        let ws_end = tail
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(tail.len());
        out.push_str(&tail[..ws_end]);
        rest = &tail[ws_end..];
    }
    out
}

/// Redacts a label value, masking it whole when the key names a secret.
pub fn redact_label(key: &str, value: &str) -> String {
    let k = key.to_ascii_lowercase();
    if SECRET_KEY_WORDS.iter().any(|w| k.contains(w)) {
        MASK.to_string()
    } else {
        redact_value(value)
    }
}

fn redact_word(word: &str) -> String {
    let Some(scheme_end) = word.find("://") else {
        return word.to_string();
    };
    let (scheme, after) = (&word[..scheme_end], &word[scheme_end + 3..]);
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
        None => word.to_string(),
    };
    if let Some(q) = rebuilt.find('?') {
        let (base, query) = rebuilt.split_at(q + 1);
        let (query, fragment) = match query.find('#') {
            Some(h) => query.split_at(h),
            None => (query, ""),
        };
        let params: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if SECRET_PARAMS.iter().any(|s| name.eq_ignore_ascii_case(s)) => {
                    format!("{name}={MASK}")
                }
                _ => pair.to_string(),
            })
            .collect();
        rebuilt = format!("{base}{}{fragment}", params.join("&"));
    }
    rebuilt
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn passwords_with_reserved_characters() {
        for v in [
            "redis://user:S3C/RET@queue:6379/0",
            "redis://user:S3C?RET@queue:6379/0",
            "redis://user:S3C#RET@queue:6379/0",
            "redis://user:S3C@RET@queue:6379/0",
        ] {
            let r = redact_value(v);
            assert!(!r.contains("S3C") && !r.contains("RET@"), "{v} -> {r}");
            assert!(r.ends_with("@queue:6379/0"), "{r}");
        }
    }

    #[test]
    fn every_url_in_a_value() {
        let r = redact_value("redis://u:a1@h/0  fallback redis://u:b2@h2/0");
        assert_eq!(r, "redis://u:xxxxx@h/0  fallback redis://u:xxxxx@h2/0");
    }

    #[test]
    fn secret_query_parameters() {
        assert_eq!(
            redact_value("prometheus://h:9090?query=up&password=S3&Token=T#frag"),
            "prometheus://h:9090?query=up&password=xxxxx&Token=xxxxx#frag"
        );
    }

    #[test]
    fn secret_label_keys() {
        assert_eq!(redact_label("microscale.password", "S3"), MASK);
        assert_eq!(redact_label("microscale.auth-token", "S3"), MASK);
        assert_eq!(redact_label("microscale.min", "1"), "1");
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
        ] {
            assert_eq!(redact_value(v), v);
        }
    }
}
