//! What the HTTP-based metric sources share: URI checks, one HTTP client, a GET
//! that reads at most 4 MiB of JSON, and server text cut to one short line.

use std::time::Duration;

use reqwest::Url;

/// The largest answer read from a metric endpoint.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// The longest error line, in characters (after the secret is removed).
const MAX_EXCERPT: usize = 400;

/// Parses a metric URI and refuses a password in it.
pub fn parse_uri(uri: &str) -> Result<Url, String> {
    let url = Url::parse(uri).map_err(|e| {
        format!(
            "\"{}\" is not a valid metric URI: {e}",
            one_line(&redact_uri(uri))
        )
    })?;
    if url.password().is_some() || password_meant(uri) {
        return Err(format!(
            "the metric URI {} holds a password: put it in a file or environment variable, see docs/metrics.md",
            one_line(&crate::edge::redact::redact_value(uri))
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("the metric URI {} names no host", shown(&url)));
    }
    Ok(url)
}

/// Whether `uri` holds a password as a person reads it, where a URL parser may see
/// none (`http://ci:1234/5678@prom.example/q` parses as host `ci`, port 1234):
/// user info with a `:` as [`crate::edge::redact::split_userinfo`] finds it.
fn password_meant(uri: &str) -> bool {
    uri.split_once("://").is_some_and(|(_, rest)| {
        crate::edge::redact::split_userinfo(rest).is_some_and(|(at, _)| rest[..at].contains(':'))
    })
}

/// `uri` with anything between `//` and the `@` that ends the user info (as
/// [`crate::edge::redact::split_userinfo`] decides) hidden, for an error about a URI that
/// does not even parse.
fn redact_uri(uri: &str) -> String {
    if let Some((scheme, rest)) = uri.split_once("://")
        && let Some((at, host)) = crate::edge::redact::split_userinfo(rest)
    {
        return format!("{scheme}://…{}{}", &rest[at..host], &rest[host..]);
    }
    uri.to_string()
}

/// The URL as shown in messages: scheme, host, port and path; no user, query or
/// fragment.
pub fn shown(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{}://{host}:{p}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

/// `host:port` as shown in messages.
pub fn host_port(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port_or_known_default() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// The address of a server's HTTP API from a metric URI: `http://`, or `https://`
/// with `tls=true`; the URI's host and port, `default_port` when it names none; and
/// `path`. Errors: a `tls` value that is not a yes/no, or an address that does not
/// parse.
pub fn api_url(
    url: &Url,
    params: &[(String, String)],
    default_port: Option<u16>,
    path: &str,
) -> Result<Url, String> {
    let scheme = if flag(params, "tls")? {
        "https"
    } else {
        "http"
    };
    let host = match (url.port(), default_port) {
        (None, Some(p)) => format!("{}:{p}", url.host_str().unwrap_or("")),
        _ => host_port(url),
    };
    Url::parse(&format!("{scheme}://{host}{path}"))
        .map_err(|e| format!("the metric URI {} gives no usable address: {e}", shown(url)))
}

/// The query parameters, refusing names not in `known` and repeated names.
pub fn params(url: &Url, known: &[&str]) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in url.query_pairs() {
        if !known.contains(&k.as_ref()) {
            return Err(format!(
                "the metric URI {} has an unknown parameter \"{}\" (known: {})",
                shown(url),
                one_line(&k),
                known.join(", ")
            ));
        }
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(format!("the metric URI {} sets \"{k}\" twice", shown(url)));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

/// The value of parameter `name`.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A yes/no parameter: absent is `false`.
pub fn flag(params: &[(String, String)], name: &str) -> Result<bool, String> {
    match param(params, name) {
        None => Ok(false),
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(format!(
                "the parameter {name}={} must be true or false",
                one_line(v)
            )),
        },
    }
}

/// Decodes `%XX` escapes (a URI path segment or fragment).
pub fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("\"{}\" has a broken %-escape", one_line(s)))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("\"{}\" decodes to invalid UTF-8", one_line(s)))
}

/// Who the request authenticates as.
pub enum Auth<'a> {
    None,
    Bearer(&'a str),
    Basic(&'a str, Option<&'a str>),
}

impl<'a> Auth<'a> {
    /// Bearer `secret`, or basic auth when the URI names a user.
    pub fn from_uri(url: &'a Url, secret: Option<&'a str>) -> Self {
        match (url.username(), secret) {
            ("", None) => Auth::None,
            ("", Some(s)) => Auth::Bearer(s),
            (user, s) => Auth::Basic(user, s),
        }
    }
}

/// An answer: its status and at most [`MAX_BODY`] bytes of body.
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON; `what` names the endpoint in the error.
    pub fn json(&self, what: &str) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| {
            format!(
                "{what} did not answer JSON ({e}); it answered: {}",
                excerpt(&self.body)
            )
        })
    }

    /// A one-line error for a status other than 2xx.
    pub fn status_error(&self, what: &str) -> String {
        let hint = match self.status.as_u16() {
            401 => " (the credentials were refused: check the secret the rule names)",
            403 => " (the credentials lack the permission to read this)",
            404 => " (check the address and path)",
            _ => "",
        };
        let text = excerpt(&self.body);
        if text.is_empty() {
            format!("{what} answered HTTP {}{hint}", self.status)
        } else {
            format!("{what} answered HTTP {}{hint}: {text}", self.status)
        }
    }
}

/// GETs `url`'s path and query from `endpoint`: the URL's host and port are
/// replaced by the endpoint's, and the client resolves no name itself (a name
/// connects only to the endpoint's checked addresses; TLS still verifies the name).
/// The caller bounds the whole read with [`bounded`].
pub async fn get(
    url: &Url,
    endpoint: &super::Endpoint,
    auth: &Auth<'_>,
    timeout: Duration,
) -> Result<Answer, String> {
    let mut url = url.clone();
    if url.set_host(Some(&endpoint.host.url_host())).is_err()
        || url.set_port(Some(endpoint.port)).is_err()
    {
        return Err(format!("cannot address {}", endpoint.host));
    }
    // The user name goes only through `auth` (the client would add its own
    // Authorization header from the URL too).
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let what = shown(&url);
    let client = client(url.scheme() == "https", timeout, endpoint)?;
    let mut req = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json");
    match auth {
        Auth::None => {}
        Auth::Bearer(token) => req = req.bearer_auth(token.trim()),
        Auth::Basic(user, pass) => {
            let user = percent_decode(user)?;
            // A secret file usually ends with a newline; the password does not.
            req = req.basic_auth(user, pass.map(|p| p.trim_end_matches(['\r', '\n'])));
        }
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| describe(&e, &what, timeout, &endpoint.tls))?;
    let status = resp.status();
    if status.is_redirection() {
        let to = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(crate::edge::redact::redact_value)
            .unwrap_or_default();
        return Err(format!(
            "{what} redirected ({status}) to {to:?}; redirects are not followed (each address must pass --metric-allow): put the final address in the rule"
        ));
    }
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(format!(
            "{what} answered more than 4 MiB: a metric endpoint should answer a small document"
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| describe(&e, &what, timeout, &endpoint.tls))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!(
                "{what} answered more than 4 MiB: a metric endpoint should answer a small document"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer { status, body })
}

/// Runs `read` within `timeout` as a whole.
pub async fn bounded<T>(
    what: &str,
    timeout: Duration,
    read: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(no_answer(what, timeout)),
    }
}

fn no_answer(what: &str, timeout: Duration) -> String {
    format!(
        "{what}: no answer within {}",
        humantime::format_duration(timeout)
    )
}

/// A resolver that resolves nothing: every name the client meets must be one the
/// endpoint pinned to its checked addresses.
struct NoLookup;

impl reqwest::dns::Resolve for NoLookup {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().to_string();
        Box::pin(async move {
            Err(format!("{name} was not checked against --metric-allow: not resolved").into())
        })
    }
}

fn client(
    https: bool,
    timeout: Duration,
    endpoint: &super::Endpoint,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .dns_resolver(std::sync::Arc::new(NoLookup));
    if let super::Host::Name(name) = &endpoint.host {
        builder = builder.resolve_to_addrs(name, &endpoint.addrs);
    }
    let mut builder = builder
        .timeout(timeout)
        .connect_timeout(timeout)
        // No redirects: each hop would have to pass the allow-list again, and a
        // metric endpoint has one address. A 3xx answer is an error that names it.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("docker-microscale/", env!("CARGO_PKG_VERSION")));
    if https {
        // The system's roots plus the operator's --metric-tlscacert, never a label's.
        let cfg = endpoint.tls.rustls_config()?;
        builder = builder.use_preconfigured_tls(cfg);
    }
    builder.build().map_err(|e| format!("HTTP client: {e}"))
}

/// A one-line reason for a transport error.
fn describe(
    e: &reqwest::Error,
    what: &str,
    timeout: Duration,
    tls: &super::tls::MetricTls,
) -> String {
    if e.is_timeout() {
        return no_answer(what, timeout);
    }
    let root = crate::engine::root_cause(e);
    let lower = root.to_ascii_lowercase();
    let hint = if lower.contains("connection refused") {
        "nothing listens there: is the server running, and is the port right?".to_string()
    } else if lower.contains("dns error")
        || lower.contains("lookup")
        || lower.contains("name or service not known")
        || lower.contains("no address associated")
    {
        "the host name does not resolve".to_string()
    } else if lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("ssl")
        || lower.contains("corrupt message")
        || lower.contains("fatal alert")
    {
        format!("TLS failed: {}", super::tls::hint(&root, tls))
    } else {
        "check the address and the network".to_string()
    };
    format!("{what}: {root} ({hint})")
}

/// Server text, whole (invalid UTF-8 replaced). It is never cut or reformatted
/// here: the caller ([`super::read`]) removes the secret from the whole error first,
/// then makes it one short line ([`one_line`]), so that a cut or a collapsed blank
/// never splits a secret the server echoed.
pub fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// `s` on one line (whitespace runs become one space, control characters are
/// dropped), cut to 200 characters. Only for text with no secret left in it.
pub fn one_line(s: &str) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut space = false;
    for c in s.trim().chars() {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if c.is_control() {
            continue;
        }
        if space && !out.is_empty() {
            if count + 1 >= MAX_EXCERPT {
                out.push('…');
                return out;
            }
            out.push(' ');
            count += 1;
        }
        space = false;
        if count + 1 >= MAX_EXCERPT {
            out.push('…');
            return out;
        }
        out.push(c);
        count += 1;
    }
    out
}

/// A JSON value as "type: value", for errors about what was found: the whole value
/// (see [`excerpt`] for why it is not cut here).
pub fn describe_json(v: &serde_json::Value) -> String {
    let kind = match v {
        serde_json::Value::Null => return "null".into(),
        serde_json::Value::Bool(b) => return format!("the boolean {b}"),
        serde_json::Value::Number(n) => return format!("the number {n}"),
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(a) => return format!("an array of {} items", a.len()),
        serde_json::Value::Object(_) => "an object",
    };
    format!("{kind} {v}")
}

/// A finite number from a JSON number or numeric string.
pub fn number(v: &serde_json::Value) -> Option<f64> {
    let n = match v {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    n.is_finite().then_some(n)
}

#[cfg(test)]
pub mod testserver {
    //! A tiny HTTP/1.1 server on loopback for the metric tests, answering by hand
    //! from a std thread so it runs whatever the test's runtime does.

    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::time::Duration;

    /// What the handler sees of a request.
    pub struct Request {
        pub target: String,
        pub authorization: Option<String>,
    }

    /// What the handler answers.
    pub struct Reply {
        pub status: u16,
        pub content_type: &'static str,
        pub body: Vec<u8>,
        pub delay: Duration,
        /// Sends no Content-Length: the body runs until the connection closes.
        pub no_length: bool,
    }

    impl Reply {
        pub fn json(status: u16, body: impl Into<String>) -> Self {
            Reply {
                status,
                content_type: "application/json",
                body: body.into().into_bytes(),
                delay: Duration::ZERO,
                no_length: false,
            }
        }
    }

    /// Serves `handler` on 127.0.0.1; returns the port.
    pub fn serve(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handler = Arc::new(handler);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let handler = handler.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut authorization = None;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':')
                            && k.eq_ignore_ascii_case("authorization")
                        {
                            authorization = Some(v.trim().to_string());
                        }
                    }
                    let reply = handler(&Request {
                        target,
                        authorization,
                    });
                    std::thread::sleep(reply.delay);
                    let length = if reply.no_length {
                        String::new()
                    } else {
                        format!("Content-Length: {}\r\n", reply.body.len())
                    };
                    let head = format!(
                        "HTTP/1.1 {} X\r\nContent-Type: {}\r\n{length}Connection: close\r\n\r\n",
                        reply.status, reply.content_type,
                    );
                    let _ = conn.write_all(head.as_bytes());
                    let _ = conn.write_all(&reply.body);
                });
            }
        });
        port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_cuts_and_joins() {
        assert_eq!(one_line("a\n  b\r\n\tc"), "a b c");
        let long = "x".repeat(500);
        assert_eq!(one_line(&long).chars().count(), MAX_EXCERPT);
    }

    #[test]
    fn a_password_is_refused_and_not_shown() {
        let e = parse_uri("http://u:hunter2@h:1/p").unwrap_err();
        assert!(
            e.contains("put it in a file or environment variable"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        let e = parse_uri("http://u:hunter2@h:1 /p").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    /// Issue 13 item 5: a password a URL parser reads as a port and a path is refused
    /// too, and never shown; an `@` in the path of a real URL is no password.
    #[test]
    fn a_password_a_url_parser_misreads_is_refused_and_not_shown() {
        for uri in [
            "http://ci:1234/5678@prom.example:9090/api",
            "http://ci:1234/5678@prom.example:9090 /api",
        ] {
            let e = parse_uri(uri).unwrap_err();
            assert!(!e.contains("5678"), "{uri} -> {e}");
            assert!(
                e.contains("holds a password") || e.contains("not a valid metric URI"),
                "{uri} -> {e}"
            );
        }
        assert!(parse_uri("http://prom.example:9090/u/@scope").is_ok());
    }
}
