//! Property tests of "one parser, one decision": generated metric URIs full of `\`,
//! `@`, percent-encoding, IPv6 forms, numeric hosts and trailing dots, read through
//! [`super::read`] against real listeners on loopback. The host a connection arrives
//! at must always be the host that was checked, for every scheme.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use proptest::prelude::*;

use super::{Allow, Host, parse_target};

/// Three listeners on one port: 127.0.0.1 (reached only through the name
/// `localhost`, which is allowed), 127.0.0.2 (allowed) and 127.0.0.3 (never
/// allowed); and 127.0.0.3 on port 80 too.
struct Listeners {
    port: u16,
    socks: Vec<(Ipv4Addr, TcpListener)>,
}

impl Listeners {
    fn new() -> Listeners {
        for _ in 0..50 {
            let first = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = first.local_addr().unwrap().port();
            let mut socks = vec![(Ipv4Addr::new(127, 0, 0, 1), first)];
            for last in [2, 3] {
                let ip = Ipv4Addr::new(127, 0, 0, last);
                match TcpListener::bind(SocketAddr::new(IpAddr::V4(ip), port)) {
                    Ok(l) => socks.push((ip, l)),
                    Err(_) => break,
                }
            }
            // 127.0.0.3 also on port 80, where `http://127.0.0.3\\@…` goes for a
            // WHATWG parser (binding it needs root, as the test suite runs).
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let bound = loop {
                match TcpListener::bind("127.0.0.3:80") {
                    Err(e)
                        if e.kind() == std::io::ErrorKind::AddrInUse
                            && std::time::Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(200))
                    }
                    other => break other,
                }
            };
            match bound {
                Ok(l) => socks.push((Ipv4Addr::new(127, 0, 0, 3), l)),
                Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                    panic!("cannot listen on 127.0.0.3:80 ({e}): CI runs the tests as root")
                }
                Err(e) => eprintln!(
                    "note: not listening on 127.0.0.3:80 ({e}); run as root to cover http's default port"
                ),
            }
            if socks.len() >= 3 {
                for (_, l) in &socks {
                    l.set_nonblocking(true).unwrap();
                }
                return Listeners { port, socks };
            }
        }
        panic!("no port free on 127.0.0.1, 127.0.0.2 and 127.0.0.3");
    }

    /// The addresses that received a connection since the last call (the kernel
    /// completes the handshake before `accept`, so a connection made during the
    /// read is waiting here when the read returns).
    fn drain(&self) -> BTreeSet<Ipv4Addr> {
        let mut seen = BTreeSet::new();
        for (ip, l) in &self.socks {
            while l.accept().is_ok() {
                seen.insert(*ip);
            }
        }
        seen
    }
}

/// Ways to write 127.0.0.`last`.
fn spellings(last: u8) -> Vec<String> {
    let n = u32::from(Ipv4Addr::new(127, 0, 0, last));
    vec![
        format!("127.0.0.{last}"),
        format!("127.0.0.{last}."),
        format!("{n}"),
        format!("{n:#x}"),
        format!("0{n:o}"),
        format!("0177.0.0.0{last:o}"),
        format!("0x7f.0.0.{last:#x}"),
        format!("127.{last}"),
        format!("127.0.{last}"),
        format!("[::ffff:127.0.0.{last}]"),
        format!("%31%32%37.0.0.{last}"),
    ]
}

fn host_strategy() -> impl Strategy<Value = String> {
    let mut all: Vec<String> = vec![];
    for last in [1, 2, 3] {
        all.extend(spellings(last));
    }
    all.extend(["localhost", "LOCALHOST.", "localhost%2e", "[::1]"].map(String::from));
    proptest::sample::select(all)
}

fn uri_strategy(port: u16) -> impl Strategy<Value = String> {
    // Each scheme with a path and query its source accepts, so that a URI that
    // passes the checks really connects.
    let scheme = proptest::sample::select(vec![
        ("http", "x#/v"),
        ("https", "x#/v"),
        ("prometheus", "?query=up"),
        ("redis", "0?list=jobs"),
        ("nats", "S/C"),
        ("nsq", "t/c"),
        ("rabbitmq", "%2F/q"),
    ]);
    let before = prop_oneof![
        3 => Just(""),
        1 => Just("u@"),
        3 => proptest::sample::select(vec![
            "127.0.0.3\\@",
            "127.0.0.3:{P}\\@",
            "127.0.0.3:{P}@",
            "127.0.0.3@",
            "127.0.0.3%40",
            "u:p@",
            "127.0.0.3:1\\",
            "@",
        ]),
    ];
    let after = prop_oneof![
        3 => Just("/"),
        2 => proptest::sample::select(vec![
            "\\@127.0.0.3/",
            "/@127.0.0.3/",
            "\\",
            "/?x=\\@127.0.0.3&",
            "%5C@127.0.0.3/",
            ":1@127.0.0.3/",
        ]),
    ];
    (scheme, before, host_strategy(), after).prop_map(move |((s, tail), b, h, a)| {
        let b = b.replace("{P}", &port.to_string());
        format!("{s}://{b}{h}:{port}{a}{tail}")
    })
}

/// The listener a checked host reaches.
fn reached_by(host: &Host) -> Option<Ipv4Addr> {
    match host {
        Host::Name(n) if n == "localhost" => Some(Ipv4Addr::LOCALHOST),
        Host::Name(_) => None,
        Host::Ip(ip) => match super::address::canonical(*ip) {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        },
    }
}

#[test]
fn the_host_connected_to_is_the_host_checked() {
    let listeners = Listeners::new();
    // Only these two: loopback as a whole (a default) would allow 127.0.0.3.
    let allow = Allow::parse(&["127.0.0.2,localhost".into()], BTreeSet::new())
        .unwrap()
        .only_listed(true)
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reached = std::cell::RefCell::new(BTreeSet::new());
    let mut config = ProptestConfig::with_cases(400);
    config.failure_persistence = None;
    let mut runner = proptest::test_runner::TestRunner::new(config);
    runner
        .run(&uri_strategy(listeners.port), |uri| {
            let checked = parse_target(&uri).and_then(|t| allow.check(&t).map(|_| t));
            let _ = rt.block_on(super::read(&uri, &allow, Duration::from_millis(150)));
            let seen = listeners.drain();
            reached.borrow_mut().extend(seen.iter().copied());
            prop_assert!(
                !seen.contains(&Ipv4Addr::new(127, 0, 0, 3)),
                "{uri} reached 127.0.0.3, which is never allowed"
            );
            match &checked {
                Err(e) => prop_assert!(
                    seen.is_empty(),
                    "{uri} was refused ({e}) but reached {seen:?}"
                ),
                Ok(t) => {
                    let want: BTreeSet<Ipv4Addr> = reached_by(&t.host).into_iter().collect();
                    prop_assert!(
                        seen.is_subset(&want),
                        "{uri} was checked as {} but reached {seen:?}",
                        t.host
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    // The run reached real listeners at all (else it proved nothing).
    let reached = reached.into_inner();
    assert!(
        reached.contains(&Ipv4Addr::new(127, 0, 0, 2)),
        "no generated URI reached 127.0.0.2: {reached:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the text after `scheme://`, when it parses, the WHATWG parser (the
    /// one reqwest connects with) finds the very same host and port.
    #[test]
    fn no_reading_disagrees(
        scheme in proptest::sample::select(vec!["http", "https", "redis", "prometheus", "nats"]),
        rest in "[a-z0-9@:/\\\\%.\\[\\]?#x]{0,24}",
    ) {
        let uri = format!("{scheme}://{rest}");
        if let Ok(t) = parse_target(&uri) {
            let url = reqwest::Url::parse(&uri).expect("parse_target accepted what the URL parser refuses");
            let theirs = Host::parse(url.host_str().unwrap_or("")).ok();
            prop_assert_eq!(Some(t.host.clone()), theirs, "{}", uri);
            let port = url.port_or_known_default();
            prop_assert!(port.is_none() || port == Some(t.port_or_default()), "{} {:?}", uri, port);
        }
    }
}
