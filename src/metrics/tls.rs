//! What a metric source over TLS (`rediss://`, `https://`, `?tls=true`) trusts and
//! which client certificate it sends: the operator's `--metric-tlscacert`,
//! `--metric-tlscert` and `--metric-tlskey` (docs/metrics.md, TLS).
//!
//! A server's certificate is accepted when it chains to one of the system's roots
//! (as `rustls-native-certs` finds them: `SSL_CERT_FILE` or `SSL_CERT_DIR` when set,
//! else the platform's store) or to a certificate of the `--metric-tlscacert` file,
//! and is valid for the host the URI names. These files come only from the reader's
//! flags: a label never chooses which CA is trusted nor which certificate is sent.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The operator's TLS settings for metric sources, read from their files
/// (see [`MetricTls::load`]). The default trusts the system's roots only and sends
/// no client certificate.
#[derive(Default, PartialEq, Eq)]
pub struct MetricTls {
    /// `--metric-tlscacert`: the file and its certificates, trusted besides the
    /// system's roots.
    ca: Option<(PathBuf, Vec<CertificateDer<'static>>)>,
    /// `--metric-tlscert` and `--metric-tlskey`.
    client: Option<Identity>,
}

/// A client certificate chain and its key, with the files they came from.
#[derive(PartialEq, Eq)]
struct Identity {
    cert_path: PathBuf,
    certs: Vec<CertificateDer<'static>>,
    key_path: PathBuf,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for MetricTls {
    /// The files only: never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricTls")
            .field("ca", &self.ca.as_ref().map(|(p, _)| p))
            .field("cert", &self.client.as_ref().map(|c| &c.cert_path))
            .field("key", &self.client.as_ref().map(|c| &c.key_path))
            .finish()
    }
}

/// `invalid argument for "FLAG" flag: WHY`, the form of the other flag errors.
fn flag_error(flag: &str, why: &str) -> String {
    format!(
        "invalid argument for \"{flag}\" flag: {}",
        crate::edge::text::printable(why)
    )
}

impl MetricTls {
    /// Reads `--metric-tlscacert` (`ca`: one or more PEM certificates) and
    /// `--metric-tlscert`/`--metric-tlskey` (`cert`, `key`: a PEM certificate chain
    /// and its unencrypted PEM key), each a regular file of at most 1 MiB.
    ///
    /// Errors (usage errors, naming the flag and the file): a file that is missing,
    /// not a regular file, not PEM, a CA that is not a usable trust anchor, a
    /// certificate without its key or the reverse, a key that does not fit the
    /// certificate.
    pub fn load(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<MetricTls, String> {
        use crate::engine::transport::{read_certs, read_key};
        let ca = match ca {
            None => None,
            Some(path) => {
                let certs = read_certs(path, "a CA certificate").map_err(|e| {
                    flag_error(
                        "--metric-tlscacert",
                        &format!("{e}: give the PEM file of the CA that signs the metric servers' certificates"),
                    )
                })?;
                let mut roots = RootCertStore::empty();
                for c in &certs {
                    roots.add(c.clone()).map_err(|e| {
                        flag_error(
                            "--metric-tlscacert",
                            &format!("{} is not a usable CA certificate: {e}", path.display()),
                        )
                    })?;
                }
                Some((path.to_path_buf(), certs))
            }
        };
        let client = match (cert, key) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(flag_error(
                    "--metric-tlscert",
                    "a client certificate needs its key: give --metric-tlskey FILE too",
                ));
            }
            (None, Some(_)) => {
                return Err(flag_error(
                    "--metric-tlskey",
                    "a client key needs its certificate: give --metric-tlscert FILE too",
                ));
            }
            (Some(cert_path), Some(key_path)) => {
                let certs = read_certs(cert_path, "a certificate")
                    .map_err(|e| flag_error("--metric-tlscert", &e))?;
                let key = read_key(key_path).map_err(|e| flag_error("--metric-tlskey", &e))?;
                Some(Identity {
                    cert_path: cert_path.to_path_buf(),
                    certs,
                    key_path: key_path.to_path_buf(),
                    key,
                })
            }
        };
        let tls = MetricTls { ca, client };
        // A key that does not fit its certificate is refused now, not at each read.
        if let Some(id) = &tls.client {
            tls.with_client(builder()?.with_root_certificates(RootCertStore::empty()))
                .map_err(|e| {
                    flag_error(
                        "--metric-tlskey",
                        &format!(
                            "{} is not the key of the certificate {} ({e})",
                            id.key_path.display(),
                            id.cert_path.display()
                        ),
                    )
                })?;
        }
        Ok(tls)
    }

    /// The rustls client settings for an HTTPS metric source: the system's roots
    /// plus the `--metric-tlscacert` certificates, and the client certificate when
    /// one is given; ring as the crypto provider.
    ///
    /// Errors: nothing to trust at all (no system roots and no CA file), which says
    /// how to fix it.
    pub fn rustls_config(&self) -> Result<rustls::ClientConfig, String> {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(system_roots());
        if let Some((_, certs)) = &self.ca {
            roots.add_parsable_certificates(certs.iter().cloned());
        }
        if roots.is_empty() {
            return Err(no_roots());
        }
        self.with_client(builder()?.with_root_certificates(roots))
            .map_err(|e| format!("TLS client settings: {e}"))
    }

    /// The same settings in the form the `redis` crate takes them (PEM): `root_cert`
    /// is `None` without a CA file (the crate then trusts the system's roots), else
    /// the system's roots and the CA file's certificates together, since the crate
    /// trusts only `root_cert` when it is set.
    pub fn redis_certificates(&self) -> redis::TlsCertificates {
        let root_cert = self.ca.as_ref().map(|(_, certs)| {
            let mut pem = Vec::new();
            for c in system_roots() {
                // Only what the crate can load as a trust anchor: one it cannot
                // would fail every connection.
                if RootCertStore::empty().add(c.clone()).is_ok() {
                    pem_block("CERTIFICATE", &c, &mut pem);
                }
            }
            for c in certs {
                pem_block("CERTIFICATE", c, &mut pem);
            }
            pem
        });
        let client_tls = self.client.as_ref().map(|id| {
            let mut client_cert = Vec::new();
            for c in &id.certs {
                pem_block("CERTIFICATE", c, &mut client_cert);
            }
            let label = match &id.key {
                PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
                PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
                _ => "PRIVATE KEY",
            };
            let mut client_key = Vec::new();
            pem_block(label, id.key.secret_der(), &mut client_key);
            redis::ClientTlsConfig {
                client_cert,
                client_key,
            }
        });
        redis::TlsCertificates {
            client_tls,
            root_cert,
        }
    }

    fn with_client(
        &self,
        builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>,
    ) -> Result<rustls::ClientConfig, rustls::Error> {
        match &self.client {
            Some(id) => builder.with_client_auth_cert(id.certs.clone(), id.key.clone_key()),
            None => Ok(builder.with_no_client_auth()),
        }
    }
}

/// A rustls client builder with ring and the safe protocol versions.
fn builder() -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, String> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))
}

fn no_roots() -> String {
    "no CA to trust: the system has no trusted roots and --metric-tlscacert is not given: install the ca-certificates package, set SSL_CERT_FILE, or give --metric-tlscacert FILE".into()
}

/// The system's trusted roots (`SSL_CERT_FILE`/`SSL_CERT_DIR` when set); files it
/// cannot read are left out, as the docker CLI does.
fn system_roots() -> Vec<CertificateDer<'static>> {
    rustls_native_certs::load_native_certs().certs
}

/// Appends `der` to `out` as a PEM block (RFC 7468) labelled `label`.
fn pem_block(label: &str, der: &[u8], out: &mut Vec<u8>) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    out.extend_from_slice(format!("-----BEGIN {label}-----\n").as_bytes());
    for line in b64.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(format!("-----END {label}-----\n").as_bytes());
}

/// How to fix a failed TLS connection, from the error's text (`cause`, as rustls
/// words it: `invalid peer certificate: UnknownIssuer`, `received fatal alert:
/// CertificateRequired`, `received corrupt message of type InvalidContentType`) and
/// the settings `tls` it was made with.
pub fn hint(cause: &str, tls: &MetricTls) -> String {
    let lower = cause.to_ascii_lowercase().replace(' ', "");
    if lower.contains("unknownissuer") {
        let trusted = match &tls.ca {
            Some((path, _)) => format!(
                "the system's roots and --metric-tlscacert {}",
                path.display()
            ),
            None => "the system's roots; no --metric-tlscacert is given".to_string(),
        };
        format!(
            "the server's certificate is signed by no CA this reader trusts ({trusted}): give the CA that signs it with --metric-tlscacert FILE"
        )
    } else if lower.contains("notvalidforname") {
        "the server's certificate is not valid for the host the URI names: write the host as the certificate names it".into()
    } else if lower.contains("expired") || lower.contains("notvalidyet") {
        "the server's certificate is out of its validity dates: renew it, or check the clocks"
            .into()
    } else if lower.contains("receivedfatalalert") && tls.client.is_none() {
        "the server refused the handshake; it may ask for a client certificate (Redis does by default, tls-auth-clients yes): give one it trusts with --metric-tlscert FILE and --metric-tlskey FILE".into()
    } else if lower.contains("receivedfatalalert") {
        "the server refused the handshake: does it trust the CA that signs the --metric-tlscert certificate?".into()
    } else if lower.contains("corruptmessage") || lower.contains("invalidcontenttype") {
        "the server does not speak TLS on this port: check the port, or use the scheme without TLS"
            .into()
    } else {
        "check that the server speaks TLS on this port and that its certificate is signed by a CA this reader trusts (--metric-tlscacert FILE)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TestCa;
    use rustls::pki_types::pem::PemObject;
    use std::time::Duration;

    #[test]
    fn the_files_are_checked_when_the_flags_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path(), "ca");
        let cert = ca.issue("reader", &["DNS:reader.example"]);
        let other = ca.issue("other", &["DNS:other.example"]);
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let missing = dir.path().join("missing.pem");

        let e = MetricTls::load(Some(&missing), None, None).unwrap_err();
        assert_eq!(
            e,
            format!(
                "invalid argument for \"--metric-tlscacert\" flag: {} does not exist: give the PEM file of the CA that signs the metric servers' certificates",
                missing.display()
            )
        );
        let e = MetricTls::load(Some(&garbage), None, None).unwrap_err();
        assert!(
            e.contains("garbage.pem is not a CA certificate in PEM format"),
            "{e}"
        );
        let e = MetricTls::load(Some(dir.path()), None, None).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let e = MetricTls::load(None, Some(&cert.cert), None).unwrap_err();
        assert!(
            e.starts_with(
                "invalid argument for \"--metric-tlscert\" flag: a client certificate needs its key"
            ),
            "{e}"
        );
        let e = MetricTls::load(None, None, Some(&cert.key)).unwrap_err();
        assert!(e.contains("give --metric-tlscert FILE too"), "{e}");
        let e = MetricTls::load(None, Some(&cert.cert), Some(&garbage)).unwrap_err();
        assert!(
            e.contains("garbage.pem is not a private key in PEM format"),
            "{e}"
        );
        let e = MetricTls::load(None, Some(&cert.cert), Some(&other.key)).unwrap_err();
        assert!(
            e.contains(&format!(
                "{} is not the key of the certificate {}",
                other.key.display(),
                cert.cert.display()
            )),
            "{e}"
        );

        let tls = MetricTls::load(Some(&ca.cert), Some(&cert.cert), Some(&cert.key)).unwrap();
        // Debug names the files and never shows the key.
        let shown = format!("{tls:?}");
        assert!(
            shown.contains("reader.key") && shown.contains("ca.pem"),
            "{shown}"
        );
        let key_pem = std::fs::read_to_string(&cert.key).unwrap();
        let key_line = key_pem.lines().nth(1).unwrap();
        assert!(!shown.contains(key_line), "{shown}");
        assert!(tls.rustls_config().is_ok());
    }

    #[test]
    fn the_redis_crate_gets_the_system_roots_and_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path(), "ca");
        let cert = ca.issue("reader", &["DNS:reader.example"]);
        // Without a CA file the crate loads the system's roots itself.
        let plain = MetricTls::default().redis_certificates();
        assert!(plain.root_cert.is_none() && plain.client_tls.is_none());

        let tls = MetricTls::load(Some(&ca.cert), Some(&cert.cert), Some(&cert.key)).unwrap();
        let c = tls.redis_certificates();
        let roots: Vec<CertificateDer> = CertificateDer::pem_slice_iter(&c.root_cert.unwrap())
            .collect::<Result<_, _>>()
            .unwrap();
        let ca_der = CertificateDer::from_pem_file(&ca.cert).unwrap();
        assert_eq!(roots.last(), Some(&ca_der));
        let system = system_roots().len();
        assert!(
            system > 0,
            "the system has trusted roots here (ca-certificates)"
        );
        assert!(
            roots.len() > 1 && roots.len() <= system + 1,
            "{}",
            roots.len()
        );
        let client = c.client_tls.unwrap();
        let sent: Vec<CertificateDer> = CertificateDer::pem_slice_iter(&client.client_cert)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            sent,
            vec![CertificateDer::from_pem_file(&cert.cert).unwrap()]
        );
        assert_eq!(
            PrivateKeyDer::from_pem_slice(&client.client_key).unwrap(),
            PrivateKeyDer::from_pem_file(&cert.key).unwrap()
        );
    }

    /// Serves `{"v": 7}` over HTTPS with `cert` on 127.0.0.1; returns the port.
    async fn https_server(cert: &crate::testutil::Issued) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let certs = crate::engine::transport::read_certs(&cert.cert, "a certificate").unwrap();
        let key = crate::engine::transport::read_key(&cert.key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(sock).await else {
                        return;
                    };
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = r#"{"v": 7}"#;
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(reply.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn https_sources_trust_the_operators_ca_too() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path(), "ca");
        let other = TestCa::new(dir.path(), "other-ca");
        let server = ca.issue("server", &["DNS:localhost", "IP:127.0.0.1"]);
        let port = https_server(&server).await;
        let uri = format!("https://localhost:{port}/stats#/v");
        let read = |tls: MetricTls| {
            let uri = uri.clone();
            async move {
                let mut endpoint = crate::metrics::test_endpoint(&uri).await.unwrap();
                endpoint.tls = Arc::new(tls);
                crate::metrics::http_json::read(&uri, &endpoint, None, Duration::from_secs(5)).await
            }
        };
        let trusted = MetricTls::load(Some(&ca.cert), None, None).unwrap();
        let sample = read(trusted).await.unwrap();
        assert_eq!(sample.value, 7.0);
        let e = read(MetricTls::default()).await.unwrap_err();
        assert!(e.contains("UnknownIssuer"), "{e}");
        assert!(
            e.contains("(TLS failed: the server's certificate is signed by no CA this reader trusts (the system's roots; no --metric-tlscacert is given): give the CA that signs it with --metric-tlscacert FILE)"),
            "{e}"
        );
        let wrong = MetricTls::load(Some(&other.cert), None, None).unwrap();
        let e = read(wrong).await.unwrap_err();
        assert!(e.contains("other-ca.pem"), "{e}");
    }
}
