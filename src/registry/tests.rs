//! Tests against a real `docker-registry` 2.8 (see [`super::testserver`]).

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::testserver::{Fixture, Pusher, TestRegistry, have_tools, push_fixture, write_helper};
use super::*;

const REGISTRY: (&str, &str) = ("docker-registry", "docker-registry");
const HTPASSWD: (&str, &str) = ("htpasswd", "apache2-utils");

fn options(dir: &Path) -> ClientOptions {
    ClientOptions {
        docker_config_dir: Some(dir.join("docker")),
        cache_dir: Some(dir.join("cache")),
        insecure: vec![],
        timeout: Duration::from_secs(10),
        credential_helper_dir: Some(dir.join("helpers")),
        offline: false,
    }
}

fn reference(s: &str) -> Reference {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn amd64() -> Platform {
    Platform::from_node("linux", "x86_64")
}

fn arm64() -> Platform {
    Platform::from_node("linux", "aarch64")
}

/// A registry without auth holding the fixture in `test/app`.
async fn open_registry() -> (TestRegistry, Fixture) {
    let reg = TestRegistry::start("").await;
    let fixture = push_fixture(&Pusher::new(&reg.addr, None), "test/app").await;
    (reg, fixture)
}

fn label(img: &RemoteImage, key: &str) -> String {
    img.config["config"]["Labels"][key]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn tags_and_digests_pick_the_platform_manifest() {
    if !have_tools(&[REGISTRY]) {
        return;
    }
    let (reg, fx) = open_registry().await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(options(dir.path())).unwrap();
    let by_tag = reference(&format!("{}/test/app:v1", reg.addr));
    let img = client.image(&by_tag, &amd64()).await.unwrap();
    assert_eq!(img.index_digest.as_deref(), Some(fx.index.as_str()));
    assert_eq!(img.manifest_digest, fx.amd64);
    assert_eq!(img.config_digest, fx.amd64_config);
    assert_eq!(label(&img, "microscale.arch"), "amd64");
    assert_eq!(img.platform, Some(Platform::new("linux", "amd64", None)));

    let arm = client.image(&by_tag, &arm64()).await.unwrap();
    assert_eq!(arm.manifest_digest, fx.arm64);
    assert_eq!(arm.config_digest, fx.arm64_config);
    assert_eq!(label(&arm, "microscale.arch"), "arm64");
    assert_eq!(
        arm.platform,
        Some(Platform::new("linux", "arm64", Some("v8")))
    );

    // Without a variant, arm64 still matches arm64/v8.
    let plain = client
        .image(&by_tag, &Platform::new("linux", "arm64", None))
        .await
        .unwrap();
    assert_eq!(plain.manifest_digest, fx.arm64);

    let by_digest = reference(&format!("{}/test/app@{}", reg.addr, fx.index));
    let img2 = client.image(&by_digest, &amd64()).await.unwrap();
    assert_eq!(img2.manifest_digest, fx.amd64);
    assert_eq!(img2.config, img.config);

    // A tag naming a single manifest: its config says the platform.
    let single = reference(&format!("{}/test/app:single", reg.addr));
    let img3 = client.image(&single, &arm64()).await.unwrap();
    assert_eq!(img3.index_digest, None);
    assert_eq!(img3.manifest_digest, fx.amd64);
    assert_eq!(img3.platform, Some(Platform::new("linux", "amd64", None)));
    assert!(img3.attestations.is_empty());
}

#[tokio::test]
async fn a_missing_platform_lists_the_available_ones() {
    if !have_tools(&[REGISTRY]) {
        return;
    }
    let (reg, _) = open_registry().await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(options(dir.path())).unwrap();
    let r = reference(&format!("{}/test/app:v1", reg.addr));
    let err = client
        .image(&r, &Platform::from_node("linux", "s390x"))
        .await
        .unwrap_err();
    match &err {
        RegistryError::NoPlatform {
            wanted, available, ..
        } => {
            assert_eq!(wanted, "linux/s390x");
            assert_eq!(available, "linux/amd64, linux/arm64/v8");
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&format!("{}/test/app:v1", reg.addr)), "{msg}");
}

#[tokio::test]
async fn provenance_attestations_are_read_and_broken_ones_reported() {
    if !have_tools(&[REGISTRY]) {
        return;
    }
    let (reg, fixture) = open_registry().await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(options(dir.path())).unwrap();
    let r = reference(&format!("{}/test/app:v1", reg.addr));
    let img = client.image(&r, &amd64()).await.unwrap();
    assert_eq!(img.attestation_errors, Vec::<String>::new());
    // the statement blob is content-addressed in the cache like the others
    let cached = walk_files(dir.path());
    let hex = fixture.statement.trim_start_matches("sha256:");
    assert!(cached.iter().any(|p| p.ends_with(hex)), "{cached:?}");
    assert_eq!(
        img.attestations,
        vec![Provenance {
            predicate_type: "https://slsa.dev/provenance/v0.2".into(),
            builder_id: Some("https://ci.example/runs/42".into()),
            source: Some("https://git.example/team/app".into()),
            revision: Some("0123abcd".into()),
            started: Some("2024-05-01T10:00:00Z".into()),
            finished: Some("2024-05-01T10:01:30Z".into()),
        }]
    );
    // arm64's statement blob is not JSON: the image still reads.
    let arm = client.image(&r, &arm64()).await.unwrap();
    assert!(arm.attestations.is_empty());
    assert_eq!(
        arm.attestation_errors.len(),
        1,
        "{:?}",
        arm.attestation_errors
    );
    assert!(
        arm.attestation_errors[0].contains("not an in-toto statement"),
        "{:?}",
        arm.attestation_errors
    );
}

#[tokio::test]
async fn unknown_tags_digests_and_repositories_are_not_found() {
    if !have_tools(&[REGISTRY]) {
        return;
    }
    let (reg, _) = open_registry().await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(options(dir.path())).unwrap();
    let tag = reference(&format!("{}/test/app:nope", reg.addr));
    match client.image(&tag, &amd64()).await.unwrap_err() {
        RegistryError::NotFound { what, reference } => {
            assert_eq!(what, "tag");
            assert_eq!(reference, format!("{}/test/app:nope", reg.addr));
        }
        other => panic!("{other:?}"),
    }
    let digest = format!("sha256:{}", "ab".repeat(32));
    let by_digest = reference(&format!("{}/test/app@{digest}", reg.addr));
    match client.image(&by_digest, &amd64()).await.unwrap_err() {
        RegistryError::NotFound { what, reference } => {
            assert_eq!(what, "manifest");
            assert!(reference.ends_with(&digest), "{reference}");
        }
        other => panic!("{other:?}"),
    }
    let repo = reference(&format!("{}/test/none:v1", reg.addr));
    let err = client.image(&repo, &amd64()).await.unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::NotFound {
                what: "repository" | "tag",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn digests_come_from_the_cache_even_with_the_registry_stopped() {
    if !have_tools(&[REGISTRY]) {
        return;
    }
    let (mut reg, fx) = open_registry().await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(options(dir.path())).unwrap();
    let by_digest = reference(&format!("{}/test/app@{}", reg.addr, fx.index));
    let first = client.image(&by_digest, &amd64()).await.unwrap();
    // index, manifest, config, attestation manifest, statement
    assert_eq!(client.network_fetches(), 5);
    let second = client.image(&by_digest, &amd64()).await.unwrap();
    assert_eq!(
        client.network_fetches(),
        5,
        "a cached digest is not fetched again"
    );
    assert_eq!(second.config, first.config);
    assert_eq!(second.attestations, first.attestations);

    // A tag costs exactly one manifest GET when the rest is cached.
    let by_tag = reference(&format!("{}/test/app:v1", reg.addr));
    client.image(&by_tag, &amd64()).await.unwrap();
    assert_eq!(client.network_fetches(), 6);

    reg.stop();
    // A new client with the same cache dir, and no registry at all.
    let offline = Client::new(options(dir.path())).unwrap();
    let third = offline.image(&by_digest, &amd64()).await.unwrap();
    assert_eq!(offline.network_fetches(), 0);
    assert_eq!(third.config, first.config);
    assert_eq!(third.attestations, first.attestations);
    let err = offline.image(&by_tag, &amd64()).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err:?}");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("cache"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}

#[tokio::test]
async fn a_corrupt_cache_file_is_fetched_again() {
    if !have_tools(&[REGISTRY]) {
        return;
    }
    let (reg, fx) = open_registry().await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(options(dir.path())).unwrap();
    let by_digest = reference(&format!("{}/test/app@{}", reg.addr, fx.index));
    let first = client.image(&by_digest, &amd64()).await.unwrap();
    let before = client.network_fetches();
    let hex = fx.amd64_config.strip_prefix("sha256:").unwrap();
    let file = dir.path().join("cache/blobs/sha256").join(hex);
    std::fs::write(&file, b"{\"tampered\": true}").unwrap();
    let again = client.image(&by_digest, &amd64()).await.unwrap();
    assert_eq!(again.config, first.config);
    assert_eq!(client.network_fetches(), before + 1);
    assert_eq!(
        cache::sha256_digest(&std::fs::read(&file).unwrap()),
        fx.amd64_config,
        "the cache file is written again"
    );
}

#[tokio::test]
async fn content_that_does_not_match_its_digest_is_refused() {
    if !have_tools(&[REGISTRY]) {
        return;
    }
    let (reg, fx) = open_registry().await;
    // Corrupt the registry's own copy of the amd64 config (same length).
    let file = reg.blob_file(&fx.amd64_config);
    let mut bytes = std::fs::read(&file).unwrap();
    let i = bytes.iter().position(|b| *b == b'a').unwrap();
    bytes[i] = b'b';
    std::fs::write(&file, bytes).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(options(dir.path())).unwrap();
    let r = reference(&format!("{}/test/app:v1", reg.addr));
    match client.image(&r, &amd64()).await.unwrap_err() {
        RegistryError::DigestMismatch {
            what,
            expected,
            actual,
            ..
        } => {
            assert_eq!(what, "config");
            assert_eq!(expected, fx.amd64_config);
            assert_ne!(actual, expected);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !dir.path()
            .join("cache/blobs/sha256")
            .join(fx.amd64_config.trim_start_matches("sha256:"))
            .exists(),
        "bad content is not cached"
    );
}

#[tokio::test]
async fn a_closed_port_fails_fast_as_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(options(dir.path())).unwrap();
    let port = super::testserver::free_port();
    let r = reference(&format!("127.0.0.1:{port}/a/b:c"));
    let start = Instant::now();
    let err = client.image(&r, &amd64()).await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    match &err {
        RegistryError::Unreachable { registry, reason } => {
            assert_eq!(registry, &format!("127.0.0.1:{port}"));
            assert!(reason.to_lowercase().contains("refused"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(client.network_fetches(), 0);
}

/// A registry with htpasswd auth (`user`/`pass`) holding the fixture.
async fn htpasswd_registry(dir: &Path) -> (TestRegistry, Fixture) {
    let out = std::process::Command::new("htpasswd")
        .args(["-Bbn", "user", "pass"])
        .output()
        .expect("run htpasswd");
    assert!(out.status.success());
    let file = dir.join("htpasswd");
    std::fs::write(&file, &out.stdout).unwrap();
    let reg = TestRegistry::start(&format!(
        "auth:\n  htpasswd:\n    realm: microscale-test\n    path: {}\n",
        file.display()
    ))
    .await;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("user:pass")
    );
    let fx = push_fixture(&Pusher::new(&reg.addr, Some(basic)), "private/app").await;
    (reg, fx)
}

fn write_config(dir: &Path, json: &str) {
    std::fs::create_dir_all(dir.join("docker")).unwrap();
    std::fs::write(dir.join("docker/config.json"), json).unwrap();
}

#[tokio::test]
async fn basic_auth_with_credentials_from_auths() {
    if !have_tools(&[REGISTRY, HTPASSWD]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (reg, fx) = htpasswd_registry(dir.path()).await;
    let auth = base64::engine::general_purpose::STANDARD.encode("user:pass");
    write_config(
        dir.path(),
        &format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.addr),
    );
    let client = Client::new(options(dir.path())).unwrap();
    let r = reference(&format!("{}/private/app:v1", reg.addr));
    let img = client.image(&r, &amd64()).await.unwrap();
    assert_eq!(img.config_digest, fx.amd64_config);
    assert_eq!(img.attestations.len(), 1);
}

#[tokio::test]
async fn basic_auth_with_a_credential_helper() {
    if !have_tools(&[REGISTRY, HTPASSWD]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (reg, fx) = htpasswd_registry(dir.path()).await;
    std::fs::create_dir_all(dir.path().join("helpers")).unwrap();
    write_helper(
        &dir.path().join("helpers"),
        "mstest",
        &reg.addr,
        "user",
        "pass",
    );
    write_config(dir.path(), r#"{"credsStore":"mstest"}"#);
    let client = Client::new(options(dir.path())).unwrap();
    let r = reference(&format!("{}/private/app:v1", reg.addr));
    let img = client.image(&r, &arm64()).await.unwrap();
    assert_eq!(img.config_digest, fx.arm64_config);

    // credHelpers for this host wins over credsStore.
    write_config(
        dir.path(),
        &format!(
            r#"{{"credsStore":"missing","credHelpers":{{"{}":"mstest"}}}}"#,
            reg.addr
        ),
    );
    let client = Client::new(options(dir.path())).unwrap();
    client.image(&r, &amd64()).await.unwrap();

    // A helper that is not installed is named, with the fix.
    write_config(dir.path(), r#"{"credsStore":"notinstalled"}"#);
    let client = Client::new(options(dir.path())).unwrap();
    let err = client.image(&r, &amd64()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::Credentials { .. }), "{err:?}");
    assert!(
        msg.contains("docker-credential-notinstalled is not installed"),
        "{msg}"
    );
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_refused() {
    if !have_tools(&[REGISTRY, HTPASSWD]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (reg, _) = htpasswd_registry(dir.path()).await;
    let r = reference(&format!("{}/private/app:v1", reg.addr));

    let wrong = base64::engine::general_purpose::STANDARD.encode("user:WRONGPASS");
    write_config(
        dir.path(),
        &format!(
            r#"{{"auths":{{"http://{}/v2/":{{"auth":"{wrong}"}}}}}}"#,
            reg.addr
        ),
    );
    let client = Client::new(options(dir.path())).unwrap();
    let err = client.image(&r, &amd64()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::AuthRefused { .. }), "{err:?}");
    assert!(
        msg.contains("were refused") && msg.contains("docker login"),
        "{msg}"
    );
    assert!(!msg.contains("WRONGPASS"), "{msg}");

    write_config(dir.path(), "{}");
    let client = Client::new(options(dir.path())).unwrap();
    let err = client.image(&r, &amd64()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::AuthRefused { .. }), "{err:?}");
    assert!(
        msg.contains("none are stored") && msg.contains(&format!("docker login {}", reg.addr)),
        "{msg}"
    );
}

/// A registry with token auth, its token service, and the fixture in `private/app`.
async fn token_registry(dir: &Path) -> (TestRegistry, super::testserver::TokenService, Fixture) {
    let tokens = super::testserver::TokenService::start(dir).await;
    let reg = TestRegistry::start(&tokens.auth_yaml()).await;
    let pusher = Pusher::new(&reg.addr, Some(tokens.push_token("private/app")));
    let fx = push_fixture(&pusher, "private/app").await;
    tokens.requests.lock().unwrap().clear();
    (reg, tokens, fx)
}

#[tokio::test]
async fn bearer_tokens_with_basic_credentials_and_identity_tokens() {
    if !have_tools(&[REGISTRY]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (reg, tokens, fx) = token_registry(dir.path()).await;
    let r = reference(&format!("{}/private/app:v1", reg.addr));

    let auth = base64::engine::general_purpose::STANDARD.encode("user:pass");
    write_config(
        dir.path(),
        &format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.addr),
    );
    let client = Client::new(options(dir.path())).unwrap();
    let img = client.image(&r, &amd64()).await.unwrap();
    assert_eq!(img.config_digest, fx.amd64_config);
    assert_eq!(img.attestations.len(), 1);
    let seen = tokens.requests.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec!["GET auth=user service=microscale-test scope=repository:private/app:pull"],
        "one token request, reused for the other fetches"
    );

    // An identity token is a refresh token for the OAuth2 POST (answer: access_token).
    tokens.requests.lock().unwrap().clear();
    write_config(
        dir.path(),
        &format!(
            r#"{{"auths":{{"{}":{{"identitytoken":"REFRESH"}}}}}}"#,
            reg.addr
        ),
    );
    let client = Client::new(options(dir.path())).unwrap();
    let img = client.image(&r, &arm64()).await.unwrap();
    assert_eq!(img.config_digest, fx.arm64_config);
    let seen = tokens.requests.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].starts_with("POST auth=none grant_type=refresh_token refresh_token=REFRESH")
            && seen[0].contains("scope=repository:private/app:pull")
            && seen[0].contains("service=microscale-test"),
        "{seen:?}"
    );

    // The helper's `<token>` user means an identity token too.
    std::fs::create_dir_all(dir.path().join("helpers")).unwrap();
    write_helper(
        &dir.path().join("helpers"),
        "mstest",
        &reg.addr,
        "<token>",
        "REFRESH",
    );
    write_config(dir.path(), r#"{"credsStore":"mstest"}"#);
    let client = Client::new(options(dir.path())).unwrap();
    client.image(&r, &amd64()).await.unwrap();
}

#[tokio::test]
async fn bearer_token_refusals() {
    if !have_tools(&[REGISTRY]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (reg, _tokens, _) = token_registry(dir.path()).await;
    let r = reference(&format!("{}/private/app:v1", reg.addr));
    write_config(dir.path(), "{}");
    let client = Client::new(options(dir.path())).unwrap();
    let err = client.image(&r, &amd64()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::AuthRefused { .. }), "{err:?}");
    assert!(msg.contains("none are stored"), "{msg}");

    let wrong = base64::engine::general_purpose::STANDARD.encode("user:nope");
    write_config(
        dir.path(),
        &format!(r#"{{"auths":{{"{}":{{"auth":"{wrong}"}}}}}}"#, reg.addr),
    );
    let client = Client::new(options(dir.path())).unwrap();
    let err = client.image(&r, &amd64()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::AuthRefused { .. }), "{err:?}");
    assert!(
        msg.contains("authorization service refused the credentials"),
        "{msg}"
    );
}

#[test]
fn credentials_never_go_over_plain_http_to_other_hosts() {
    assert!(credentials_allowed("https", "reg.example:5000"));
    assert!(credentials_allowed("http", "127.0.0.1:5000"));
    assert!(credentials_allowed("http", "localhost:5000"));
    assert!(credentials_allowed("http", "[::1]:5000"));
    assert!(!credentials_allowed("http", "reg.example:5000"));
    assert!(!credentials_allowed("http", "10.0.0.1"));
    assert_eq!(host_of("[::1]:5000"), "::1");
    assert_eq!(host_of("reg:5000"), "reg");
}

#[test]
fn schema1_and_unknown_media_types_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(options(dir.path())).unwrap();
    let r = reference("reg.example/a/b:old");
    let schema1 = br#"{"schemaVersion":1,"name":"a/b","tag":"old","fsLayers":[]}"#;
    let err = client.parse_manifest(&r, "old", schema1).err().unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("schema 1")
            && msg.contains("not supported")
            && msg.contains("reg.example/a/b@old"),
        "{msg}"
    );
    let other = br#"{"schemaVersion":2,"mediaType":"application/vnd.example+json"}"#;
    let msg = client
        .parse_manifest(&r, "old", other)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("application/vnd.example+json"), "{msg}");
    let msg = client
        .parse_manifest(&r, "old", b"<html>")
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("not JSON"), "{msg}");
}

#[test]
fn bad_insecure_entries_are_refused() {
    let mut opts = ClientOptions {
        insecure: vec![
            "10.0.0.0/8".into(),
            "reg.example:5000".into(),
            "http://other:80/".into(),
        ],
        ..ClientOptions::default()
    };
    assert!(Client::new(opts.clone()).is_ok());
    opts.insecure = vec!["10.0.0.0/99".into()];
    let msg = Client::new(opts).err().unwrap().to_string();
    assert!(msg.contains("10.0.0.0/99") && msg.contains("CIDR"), "{msg}");
}

#[tokio::test]
async fn oversized_manifests_and_blobs_are_refused() {
    if !have_tools(&[REGISTRY]) {
        return;
    }
    let reg = TestRegistry::start("").await;
    let pusher = Pusher::new(&reg.addr, None);
    let big = vec![b' '; (BLOB_LIMIT + 1) as usize];
    let big_digest = pusher.blob("test/big", &big).await;
    // The descriptor understates the size: the answer's length is caught.
    let lying = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": big_digest, "size": 2},
        "layers": []
    }))
    .unwrap();
    pusher
        .manifest("test/big", "lying", OCI_MANIFEST, &lying)
        .await;
    let small = pusher.blob("test/big", b"{}").await;
    // The descriptor states a size over the limit: refused before fetching.
    let declared = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": small, "size": BLOB_LIMIT + 1},
        "layers": []
    }))
    .unwrap();
    pusher
        .manifest("test/big", "declared", OCI_MANIFEST, &declared)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(options(dir.path())).unwrap();
    for tag in ["lying", "declared"] {
        let r = reference(&format!("{}/test/big:{tag}", reg.addr));
        match client.image(&r, &amd64()).await.unwrap_err() {
            RegistryError::TooLarge { what, limit, .. } => {
                assert_eq!((what, limit), ("config", BLOB_LIMIT), "{tag}");
            }
            other => panic!("{tag}: {other:?}"),
        }
    }
    assert_eq!(
        client.network_fetches(),
        2,
        "only the two manifests arrived"
    );
}

/// Every file under `dir`, recursively.
fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}
