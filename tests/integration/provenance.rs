//! `provenance`, `badge` and the SOURCE column of `status`, against the private swarm
//! and the sandbox's private registry (see `scripts/sandbox --help` for the images).

use std::collections::HashMap;
use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

/// `127.0.0.1:PORT/microscale-test/NAME`.
fn reg(name: &str) -> String {
    format!("{}/microscale-test/{name}", registry())
}

/// `provenance --format json` for the given services, one object per service, by name.
fn provenance_json(args: &[&str]) -> (Option<i32>, HashMap<String, Value>, String) {
    let mut all = vec!["provenance", "--format", "json"];
    all.extend_from_slice(args);
    let out = plugin(&all);
    let map = json_lines(&stdout(&out))
        .into_iter()
        .map(|v| (v["Name"].as_str().unwrap().to_string(), v))
        .collect();
    (out.status.code(), map, stderr(&out))
}

fn sleep_cmd() -> [&'static str; 3] {
    ["/bin/busybox", "sleep", "1000000"]
}

#[test]
fn oci_labels_give_the_record_and_the_commit_link() {
    let svc = TestService::create_resolved(
        &unique("prov-oci"),
        &["--replicas", "0"],
        &reg("oci:1"),
        &sleep_cmd(),
    );
    let (code, map, err) = provenance_json(&[&svc.name]);
    assert_eq!(code, Some(0), "{err}");
    let p = &map[&svc.name];
    assert_eq!(p["Pinned"], true);
    assert!(p["Image"].as_str().unwrap().contains("@sha256:"), "{p}");
    // The manager built this image: its store has it.
    assert_eq!(p["Config"]["Source"], "engine");
    assert!(
        p["Config"]["Digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let rec = &p["Provenance"];
    assert_eq!(
        rec["Source"]["Value"],
        "https://github.com/example/queue-worker"
    );
    assert_eq!(rec["Source"]["Key"], "org.opencontainers.image.source");
    assert_eq!(rec["Revision"]["Key"], "org.opencontainers.image.revision");
    assert_eq!(rec["Licenses"]["Value"], "Apache-2.0");
    assert_eq!(rec["Created"]["Value"], "2026-01-02T03:04:05Z");
    assert!(rec.get("Vendor").unwrap().is_null());
    assert_eq!(
        p["CommitURL"],
        "https://github.com/example/queue-worker/commit/0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(p["SourceURL"], "https://github.com/example/queue-worker");
    assert!(p["Error"].is_null());

    // The table says the same, through the docker CLI and the alias.
    let out = ok(docker(&["microscale", "labels", &svc.name]));
    let text = stdout(&out);
    assert!(
        text.contains("Commit:        https://github.com/example/queue-worker/commit/0123456789abcdef0123456789abcdef01234567"),
        "{text}"
    );
    assert!(
        text.contains("config from the engine's image store"),
        "{text}"
    );
}

#[test]
fn label_schema_only_with_a_git_at_url() {
    let svc = TestService::create_resolved(
        &unique("prov-schema"),
        &["--replicas", "0"],
        &reg("schema:1"),
        &sleep_cmd(),
    );
    let (code, map, err) = provenance_json(&[&svc.name]);
    assert_eq!(code, Some(0), "{err}");
    let p = &map[&svc.name];
    let rec = &p["Provenance"];
    assert_eq!(rec["Source"]["Key"], "org.label-schema.vcs-url");
    assert_eq!(
        rec["Source"]["Value"],
        "git@gitlab.com:example/group/sub/legacy-app.git"
    );
    assert_eq!(rec["Revision"]["Key"], "org.label-schema.vcs-ref");
    assert_eq!(rec["Created"]["Key"], "org.label-schema.build-date");
    assert_eq!(rec["Title"]["Value"], "legacy-app");
    // usage is a path, not a URL: not documentation
    assert!(rec["Documentation"].is_null(), "{rec}");
    assert_eq!(
        p["CommitURL"],
        "https://gitlab.com/example/group/sub/legacy-app/-/commit/89abcdef0123"
    );
    assert_eq!(
        p["SourceURL"],
        "https://gitlab.com/example/group/sub/legacy-app"
    );
}

#[test]
fn conflicting_conventions_are_shown() {
    let svc = TestService::create_resolved(
        &unique("prov-both"),
        &["--replicas", "0"],
        &reg("both:1"),
        &sleep_cmd(),
    );
    let (code, map, err) = provenance_json(&[&svc.name]);
    assert_eq!(code, Some(0), "{err}");
    let rec = &map[&svc.name]["Provenance"];
    // OCI wins, the Label Schema value is shown as a conflict
    assert_eq!(
        rec["Source"]["Value"],
        "https://github.com/example/new-home"
    );
    assert_eq!(rec["Source"]["Conflict"]["Key"], "org.label-schema.vcs-url");
    assert_eq!(
        rec["Source"]["Conflict"]["Value"],
        "https://bitbucket.org/example/old-home.git"
    );
    assert_eq!(rec["Title"]["Conflict"]["Value"], "both-legacy-name");
    // an abbreviated commit is the same revision
    assert!(rec["Revision"].get("Conflict").is_none(), "{rec}");
    // a field only one convention sets has no conflict
    assert_eq!(rec["Created"]["Key"], "org.label-schema.build-date");

    let text = stdout(&ok(plugin(&["provenance", &svc.name])));
    assert!(
        text.contains(
            "CONFLICT: org.label-schema.vcs-url=https://bitbucket.org/example/old-home.git"
        ),
        "{text}"
    );
}

#[test]
fn base_image_labels_container_labels_and_service_labels_by_origin() {
    let svc = TestService::create_resolved(
        &unique("prov-child"),
        &[
            "--replicas",
            "0",
            "--container-label",
            "org.opencontainers.image.version=override",
            "--label",
            "org.opencontainers.image.version=on-the-service",
        ],
        &reg("child:1"),
        &sleep_cmd(),
    );
    let (code, map, err) = provenance_json(&[&svc.name]);
    assert_eq!(code, Some(0), "{err}");
    let p = &map[&svc.name];
    assert_eq!(p["Base"]["Name"], format!("{}:1", reg("base")));
    assert!(p["Base"]["Digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(p["Base"]["ConfigSource"], "engine");
    let labels = p["Labels"].as_array().unwrap();
    let row = |key: &str, on: &str| {
        labels
            .iter()
            .find(|l| l["Key"] == key && l["AppliesTo"] == on)
            .unwrap_or_else(|| panic!("no {key} on {on}: {labels:#?}"))
            .clone()
    };
    // inherited unchanged from the base
    let lic = row("org.opencontainers.image.licenses", "containers");
    assert_eq!(
        (lic["Value"].as_str(), lic["Origin"].as_str()),
        (Some("MIT"), Some("base image"))
    );
    // overridden by the image's build
    let title = row("org.opencontainers.image.title", "containers");
    assert_eq!(title["Origin"], "image");
    assert_eq!(title["Value"], "example-child");
    assert_eq!(
        title["Shadowed"],
        json!([{"Origin": "base image", "Value": "example-base"}])
    );
    // the container spec wins over both; the containers get "override"
    let version = row("org.opencontainers.image.version", "containers");
    assert_eq!(version["Origin"], "container spec");
    assert_eq!(version["Value"], "override");
    assert_eq!(
        version["Shadowed"],
        json!([{"Origin": "base image", "Value": "0.9"}, {"Origin": "image", "Value": "2.0"}])
    );
    // the service label is on the service object only
    let on_service = row("org.opencontainers.image.version", "service");
    assert_eq!(on_service["Origin"], "service spec");
    assert_eq!(on_service["Value"], "on-the-service");
    // the record is the image's: the build said 2.0
    assert_eq!(p["Provenance"]["Version"]["Value"], "2.0");
    assert_eq!(
        p["CommitURL"],
        "https://codeberg.org/example/child/commit/abcdef0123456789abcdef0123456789abcdef01"
    );
}

#[test]
fn an_image_only_in_the_registry_is_read_from_the_registry_and_cached() {
    let cache = tempfile::tempdir().unwrap();
    // Not in the manager's store (the sandbox removed it after the push), and no task
    // pulls it (0 replicas).
    let svc = TestService::create_resolved(
        &unique("prov-remote"),
        &["--replicas", "0"],
        &reg("remote:1"),
        &sleep_cmd(),
    );
    let inspect = docker(&["image", "inspect", &format!("{}:1", reg("remote"))]);
    assert!(
        !inspect.status.success(),
        "remote:1 must not be in the manager's store"
    );
    let run = || {
        clean(plugin_bin(), plugin_config())
            .env("DOCKER_HOST", manager_host())
            .env("XDG_CACHE_HOME", cache.path())
            .args(["provenance", "--format", "json", &svc.name])
            .output()
            .unwrap()
    };
    let out = ok(run());
    let p = &json_lines(&stdout(&out))[0];
    assert_eq!(p["Config"]["Source"], "registry", "{p}");
    assert_eq!(p["Config"]["Platform"], "linux/amd64");
    let spec_digest = p["Image"]
        .as_str()
        .unwrap()
        .split('@')
        .nth(1)
        .unwrap()
        .to_string();
    assert_eq!(p["Config"]["ManifestDigest"], spec_digest.as_str());
    assert_eq!(
        p["Provenance"]["Source"]["Value"],
        "https://github.com/example/remote-only"
    );
    assert_eq!(p["Attestations"], json!([]));
    // manifest and config are cached by digest, and verified
    let config = p["Config"]["Digest"].as_str().unwrap();
    let blobs = cache.path().join("docker-microscale/blobs/sha256");
    for d in [config, spec_digest.as_str()] {
        let file = blobs.join(d.trim_start_matches("sha256:"));
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        use sha2::Digest;
        assert_eq!(
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes))),
            d
        );
    }
    // a second run says the same
    let again = &json_lines(&stdout(&ok(run())))[0];
    assert_eq!(again["Provenance"], p["Provenance"]);
}

#[test]
fn tasks_on_an_older_digest_are_listed_with_their_nodes() {
    let svc = TestService::create_resolved(
        &unique("prov-drift"),
        &[
            "--replicas",
            "2",
            "--constraint",
            "node.role==manager",
            "--update-parallelism",
            "1",
            "--update-delay",
            "1h",
        ],
        &reg("oci:1"),
        &sleep_cmd(),
    );
    wait_until("2 tasks running", Duration::from_secs(60), || {
        status_json(&svc.name)
            .first()
            .is_some_and(|r| r["Running"] == 2)
    });
    // One task is replaced, then the update waits an hour: one task stays on oci:1.
    ok(docker(&[
        "service",
        "update",
        "-d",
        "--image",
        &format!("{}:2", reg("oci")),
        &svc.name,
    ]));
    wait_until("one task on oci:2", Duration::from_secs(60), || {
        let (_, map, _) = provenance_json(&[&svc.name]);
        map.get(&svc.name).is_some_and(|p| {
            p["Drift"]["Tasks"].as_array().map(Vec::len) == Some(1)
                && p["Drift"]["TasksChecked"] == 2
        })
    });
    let (_, map, _) = provenance_json(&[&svc.name]);
    let p = &map[&svc.name];
    assert_eq!(
        p["Provenance"]["Version"]["Value"], "1.1.0",
        "the spec names oci:2"
    );
    let t = &p["Drift"]["Tasks"][0];
    assert!(
        t["Image"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}:1@sha256:", reg("oci"))),
        "{t}"
    );
    assert_eq!(t["Node"], "sandbox-manager");
    assert!(
        t["Name"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}.", svc.name))
    );
    let text = stdout(&ok(plugin(&["provenance", &svc.name])));
    assert!(
        text.contains("1 of 2 tasks run an image other than the spec's:"),
        "{text}"
    );
    assert!(text.contains("sandbox-manager"), "{text}");
}

#[test]
fn an_unpinned_image_is_called_out() {
    let svc = TestService::create(&unique("prov-unpinned"), &["--replicas", "0"]);
    let (code, map, err) = provenance_json(&[&svc.name]);
    assert_eq!(code, Some(0), "{err}");
    let p = &map[&svc.name];
    assert_eq!(p["Pinned"], false);
    assert!(
        p["AttestationsNote"]
            .as_str()
            .unwrap()
            .contains("not pinned")
    );
    let text = stdout(&ok(plugin(&["provenance", &svc.name])));
    assert!(
        text.contains("nodes may run different images under one tag"),
        "{text}"
    );
}

#[test]
fn an_unreadable_image_is_reported_per_service_and_the_others_shown() {
    let good = TestService::create_resolved(
        &unique("prov-good"),
        &["--replicas", "0"],
        &reg("oci:1"),
        &sleep_cmd(),
    );
    let closed = TestService::create_full(
        &unique("prov-closed"),
        &["--replicas", "0"],
        "127.0.0.1:1/nothing/here:1",
        &sleep_cmd(),
    );
    let unknown = TestService::create_full(
        &unique("prov-unknown"),
        &["--replicas", "0"],
        &format!("{}:no-such-tag", reg("oci")),
        &sleep_cmd(),
    );
    let out = plugin(&[
        "provenance",
        "--format",
        "json",
        &good.name,
        &closed.name,
        &unknown.name,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let map: HashMap<String, Value> = json_lines(&stdout(&out))
        .into_iter()
        .map(|v| (v["Name"].as_str().unwrap().to_string(), v))
        .collect();
    assert!(map[&good.name]["Error"].is_null());
    let e = map[&closed.name]["Error"].as_str().unwrap();
    assert!(e.contains("cannot reach registry 127.0.0.1:1"), "{e}");
    let e = map[&unknown.name]["Error"].as_str().unwrap();
    assert!(e.contains("not found") && e.contains("no-such-tag"), "{e}");
    let err = stderr(&out);
    assert!(err.contains(&format!("service {}:", closed.name)), "{err}");
    assert!(err.contains(&format!("service {}:", unknown.name)), "{err}");
    assert!(!err.contains(&format!("service {}:", good.name)), "{err}");
}

#[test]
fn check_gates_on_required_provenance() {
    let good = TestService::create_resolved(
        &unique("prov-ok"),
        &["--replicas", "0"],
        &reg("oci:1"),
        &sleep_cmd(),
    );
    let bare = TestService::create_resolved(
        &unique("prov-none"),
        &["--replicas", "0"],
        &reg("none:1"),
        &sleep_cmd(),
    );
    let out = plugin(&["provenance", "--check", &good.name, &bare.name]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name}: {text}"))
            .to_string()
    };
    assert!(line(&good.name).ends_with("ok"), "{text}");
    assert!(
        line(&bare.name).ends_with("missing source, revision, created"),
        "{text}"
    );
    assert!(
        text.contains("1 of 2 services lacks required provenance (source, revision, created)"),
        "{text}"
    );

    ok(plugin(&["provenance", "--check", &good.name]));
    ok(plugin(&[
        "provenance",
        "--check",
        "--require",
        "licenses,org.opencontainers.image.title",
        &good.name,
    ]));
    let out = plugin(&["provenance", "--check", "--require", "vendor", &good.name]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("missing vendor"));
    let json = plugin(&["provenance", "--check", "--format", "json", &bare.name]);
    assert_eq!(json.status.code(), Some(1));
    assert_eq!(
        json_lines(&stdout(&json))[0]["Missing"],
        json!(["source", "revision", "created"])
    );

    fails(
        &plugin(&["provenance", "--require", "source", &good.name]),
        125,
        "--require needs --check",
    );
    fails(
        &plugin(&["provenance", "--check", "--require", "sauce", &good.name]),
        125,
        "invalid argument \"sauce\" for \"--require\" flag: unknown provenance field; use one of: source, revision",
    );
    fails(
        &plugin(&["provenance", "no-such-service-xyz"]),
        1,
        "no such service: no-such-service-xyz",
    );
}

#[test]
fn status_shows_the_source_column() {
    let svc = TestService::create_resolved(
        &unique("prov-status"),
        &["--replicas", "0"],
        &reg("oci:1"),
        &sleep_cmd(),
    );
    let bare = TestService::create_resolved(
        &unique("prov-status-none"),
        &["--replicas", "0"],
        &reg("none:1"),
        &sleep_cmd(),
    );
    let rows = status_json(&svc.name);
    assert_eq!(rows[0]["Source"], "github.com/example/queue-worker@0123456");
    assert_eq!(status_json(&bare.name)[0]["Source"], "");
    let text = stdout(&ok(plugin(&["status", &svc.name, &bare.name])));
    assert!(text.lines().next().unwrap().contains("SOURCE"));
    let row = text
        .lines()
        .find(|l| l.starts_with(&format!("{} ", svc.name)))
        .unwrap();
    assert!(
        row.contains("github.com/example/queue-worker@0123456"),
        "{text}"
    );
}

#[test]
fn badge_writes_an_svg_of_the_commit_and_refuses_what_is_missing() {
    let svc = TestService::create_resolved(
        &unique("prov-badge"),
        &["--replicas", "0"],
        &reg("oci:1"),
        &sleep_cmd(),
    );
    let bare = TestService::create_resolved(
        &unique("prov-badge-none"),
        &["--replicas", "0"],
        &reg("none:1"),
        &sleep_cmd(),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("commit.svg");
    ok(plugin(&[
        "badge",
        &svc.name,
        "--kind",
        "commit",
        "-o",
        file.to_str().unwrap(),
    ]));
    let svg = std::fs::read_to_string(&file).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    assert!(svg.contains(">0123456<"), "{svg}");
    assert!(svg.contains(">commit<"), "{svg}");
    assert!(svg.ends_with("</svg>\n"), "a text file ends with a newline");
    // to stdout when it is not a terminal, and with `-o -`: the same bytes, and no
    // file named `-`
    let out = ok(plugin(&["badge", &svc.name, "--kind", "license"]));
    assert!(stdout(&out).contains(">Apache-2.0<"));
    assert!(stdout(&out).ends_with("</svg>\n"));
    let dash = ok(clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", manager_host())
        .current_dir(dir.path())
        .args(["badge", &svc.name, "-o", "-"])
        .output()
        .unwrap());
    assert_eq!(stdout(&dash), svg, "-o - writes the badge to stdout");
    assert!(!dir.path().join("-").exists(), "no file named -");
    // A directory that takes no file: the error names it and the cause, not the
    // temporary file (/sys refuses new files, even to root).
    let out = plugin(&["badge", &svc.name, "-o", "/sys/commit.svg"]);
    fails(
        &out,
        1,
        "cannot write the badge to /sys/commit.svg: cannot create a file in /sys: Permission denied",
    );
    assert!(
        !stderr(&out).contains(".docker-microscale"),
        "{}",
        stderr(&out)
    );

    let missing = dir.path().join("none.svg");
    let out = plugin(&[
        "badge",
        &bare.name,
        "--kind",
        "version",
        "-o",
        missing.to_str().unwrap(),
    ]);
    fails(
        &out,
        1,
        "cannot make a version badge: the image has no org.opencontainers.image.version",
    );
    assert!(!missing.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left"
    );
    fails(
        &plugin(&["badge", &svc.name, "--kind", "colour"]),
        125,
        "invalid argument \"colour\" for \"--kind\" flag: use one of commit, version, license, source",
    );
}

// ---------------------------------------------------------------------------------
// BuildKit attestations, pushed to the real registry as BuildKit stores them
// ---------------------------------------------------------------------------------

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Pushes, to `microscale-test/oci:TAG`, an OCI index holding oci:1's manifest and a
/// BuildKit attestation manifest whose SLSA v0.2 statement records `revision`.
fn push_attested(tag: &str, revision: &str) {
    let base = format!("http://{}", registry());
    let repo = "microscale-test/oci";
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let resp = http
            .get(format!("{base}/v2/{repo}/manifests/1"))
            .header("Accept", "application/vnd.docker.distribution.manifest.v2+json")
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
        let media = resp.headers()["content-type"].to_str().unwrap().to_string();
        let image_manifest = resp.bytes().await.unwrap().to_vec();
        let image_digest = sha256(&image_manifest);
        let blob = |bytes: Vec<u8>| {
            let http = http.clone();
            let base = base.clone();
            async move {
                let digest = sha256(&bytes);
                let r = http.post(format!("{base}/v2/{repo}/blobs/uploads/")).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 202);
                let loc = r.headers()["location"].to_str().unwrap().to_string();
                let url = if loc.starts_with('/') { format!("{base}{loc}") } else { loc };
                let sep = if url.contains('?') { '&' } else { '?' };
                let r = http.put(format!("{url}{sep}digest={digest}")).body(bytes.clone()).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 201, "{:?}", r.text().await);
                (digest, bytes.len())
            }
        };
        let statement = serde_json::to_vec(&json!({
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "subject": [{"name": "pkg:docker/microscale-test/oci@1", "digest": {"sha256": image_digest.trim_start_matches("sha256:")}}],
            "predicate": {
                "builder": {"id": "https://github.com/example/queue-worker/actions/runs/42"},
                "buildType": "https://mobyproject.org/buildkit@v1",
                "invocation": {"configSource": {"uri": "https://github.com/example/queue-worker.git#refs/heads/main", "digest": {"sha1": revision}}},
                "metadata": {
                    "buildStartedOn": "2026-01-02T03:00:00Z",
                    "buildFinishedOn": "2026-01-02T03:04:05Z",
                    "https://mobyproject.org/buildkit@v1#metadata": {"vcs": {"source": "https://github.com/example/queue-worker", "revision": revision}}
                }
            }
        }))
        .unwrap();
        let (st_digest, st_size) = blob(statement).await;
        let (cfg_digest, cfg_size) = blob(br#"{"architecture":"unknown","os":"unknown","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec()).await;
        let att_manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": cfg_size},
            "layers": [{
                "mediaType": "application/vnd.in-toto+json",
                "digest": st_digest, "size": st_size,
                "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}
            }]
        }))
        .unwrap();
        let put = |reference: String, media: String, bytes: Vec<u8>| {
            let http = http.clone();
            let base = base.clone();
            async move {
                let r = http
                    .put(format!("{base}/v2/{repo}/manifests/{reference}"))
                    .header("Content-Type", media)
                    .body(bytes)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 201, "{:?}", r.text().await);
            }
        };
        let att_digest = sha256(&att_manifest);
        put(att_digest.clone(), "application/vnd.oci.image.manifest.v1+json".into(), att_manifest.clone()).await;
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": media, "digest": image_digest, "size": image_manifest.len(),
                 "platform": {"architecture": "amd64", "os": "linux"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": att_digest, "size": att_manifest.len(),
                 "platform": {"architecture": "unknown", "os": "unknown"},
                 "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": image_digest}}
            ]
        }))
        .unwrap();
        put(tag.to_string(), "application/vnd.oci.image.index.v1+json".into(), index).await;
    });
}

#[test]
fn buildkit_attestations_are_shown_and_compared_with_the_labels() {
    let tag = unique("attested");
    let bad = unique("attested-other");
    push_attested(&tag, "0123456789abcdef0123456789abcdef01234567");
    push_attested(&bad, "9999999999999999999999999999999999999999");
    let svc = TestService::create_resolved(
        &unique("prov-att"),
        &["--replicas", "0"],
        &format!("{}:{tag}", reg("oci")),
        &sleep_cmd(),
    );
    let other = TestService::create_resolved(
        &unique("prov-att-bad"),
        &["--replicas", "0"],
        &format!("{}:{bad}", reg("oci")),
        &sleep_cmd(),
    );
    let (code, map, err) = provenance_json(&[&svc.name, &other.name]);
    assert_eq!(code, Some(0), "{err}");
    let p = &map[&svc.name];
    let a = &p["Attestations"][0];
    assert_eq!(
        a["PredicateType"], "https://slsa.dev/provenance/v0.2",
        "{p}"
    );
    assert_eq!(
        a["BuilderId"],
        "https://github.com/example/queue-worker/actions/runs/42"
    );
    assert_eq!(a["Revision"], "0123456789abcdef0123456789abcdef01234567");
    assert_eq!(a["Started"], "2026-01-02T03:00:00Z");
    assert_eq!(a["Finished"], "2026-01-02T03:04:05Z");
    assert_eq!(a["Disagreements"], json!([]));
    let d = map[&other.name]["Attestations"][0]["Disagreements"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].as_str()
            .unwrap()
            .starts_with("revision: the attestation says 9999999"),
        "{d:?}"
    );
    let text = stdout(&ok(plugin(&["provenance", &svc.name, &other.name])));
    assert!(text.contains("builder:"), "{text}");
    assert!(text.contains("labels:        agree"), "{text}");
    assert!(text.contains("DISAGREES:"), "{text}");
}

#[test]
fn container_spec_overrides_of_provenance_labels_are_called_out() {
    let svc = TestService::create_resolved(
        &unique("prov-override"),
        &[
            "--replicas",
            "0",
            "--container-label",
            "org.opencontainers.image.source=https://bob:hunter2@github.com/acme/private.git",
        ],
        &reg("oci:1"),
        &sleep_cmd(),
    );
    let (code, map, err) = provenance_json(&[&svc.name]);
    assert_eq!(code, Some(0), "{err}");
    let p = &map[&svc.name];
    let o = p["ContainerOverrides"].as_array().unwrap();
    assert_eq!(o.len(), 1, "{p}");
    let o = o[0].as_str().unwrap();
    assert!(
        o.starts_with("org.opencontainers.image.source: the containers carry https://bob:xxxxx@github.com/acme/private.git, the image says https://github.com/example/queue-worker"),
        "{o}"
    );
    // the record stays the image's
    assert_eq!(
        p["Provenance"]["Source"]["Value"],
        "https://github.com/example/queue-worker"
    );
    let out = ok(plugin(&["provenance", &svc.name]));
    let text = stdout(&out);
    assert!(text.contains("Overridden:"), "{text}");
    assert!(
        !text.contains("hunter2") && !stderr(&out).contains("hunter2"),
        "{text}"
    );
}

#[test]
fn named_services_keep_their_order_and_badge_takes_one() {
    let a = TestService::create_resolved(
        &unique("prov-z"),
        &["--replicas", "0"],
        &reg("none:1"),
        &sleep_cmd(),
    );
    let b = TestService::create_resolved(
        &unique("prov-a"),
        &["--replicas", "0"],
        &reg("none:1"),
        &sleep_cmd(),
    );
    let out = ok(plugin(&[
        "provenance",
        "--format",
        "json",
        &a.name,
        &b.name,
    ]));
    let names: Vec<String> = json_lines(&stdout(&out))
        .iter()
        .map(|v| v["Name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, [a.name.clone(), b.name.clone()]);
    fails(
        &plugin(&["badge", &a.name, &b.name]),
        125,
        "\"docker microscale badge\" requires exactly 1 argument.",
    );
    fails(
        &plugin(&["badge"]),
        125,
        "\"docker microscale badge\" requires exactly 1 argument.",
    );
}

#[test]
fn status_source_marks_images_not_in_the_store_and_shows_full_revisions() {
    let remote = TestService::create_resolved(
        &unique("prov-st-remote"),
        &["--replicas", "0"],
        &reg("remote:1"),
        &sleep_cmd(),
    );
    let local = TestService::create_resolved(
        &unique("prov-st-local"),
        &["--replicas", "0"],
        &reg("oci:1"),
        &sleep_cmd(),
    );
    let cache = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        ok(clean(plugin_bin(), plugin_config())
            .env("DOCKER_HOST", manager_host())
            .env("XDG_CACHE_HOME", cache.path())
            .args(args)
            .output()
            .unwrap())
    };
    let source = |out: Output| json_lines(&stdout(&out))[0]["Source"].clone();
    let status = ["status", "--format", "json", remote.name.as_str()];
    // Not in the manager's store, and never read from the registry: unknown.
    assert_eq!(source(run(&status)), "?");
    // Once provenance has read it from the registry, status finds it in the cache
    // (without asking the registry).
    run(&["provenance", &remote.name]);
    assert_eq!(
        source(run(&status)),
        "github.com/example/remote-only@5555555"
    );
    let out = ok(plugin(&[
        "status",
        "--no-trunc",
        "--format",
        "json",
        &local.name,
    ]));
    assert_eq!(
        json_lines(&stdout(&out))[0]["Source"],
        "github.com/example/queue-worker@0123456789abcdef0123456789abcdef01234567"
    );
}

// ---------------------------------------------------------------------------------
// Hostile input (cases found by a break-it round; each stands for its kind)
// ---------------------------------------------------------------------------------

/// Builds a local image `tag` (on the manager) from the test image with `labels`.
fn build_labelled(tag: &str, labels: &[(&str, &str)]) {
    use std::io::Write;
    let mut dockerfile = format!("FROM {}\n", image());
    for (k, v) in labels {
        dockerfile.push_str(&format!(
            "LABEL {k}={}\n",
            serde_json::to_string(v).unwrap()
        ));
    }
    let mut child = clean("docker", plugin_config())
        .env("DOCKER_HOST", manager_host())
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", tag, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dockerfile.as_bytes())
        .unwrap();
    ok(child.wait_with_output().unwrap());
}

#[test]
fn a_base_name_that_is_not_an_image_reference_never_reaches_the_engine() {
    let tag = format!("microscale-test/hostile-base:{}", std::process::id());
    build_labelled(
        &tag,
        &[
            ("org.opencontainers.image.base.name", "../../../info?x="),
            (
                "org.opencontainers.image.source",
                "javascript:alert(1)//github.com/a/b",
            ),
        ],
    );
    let svc = TestService::create_full(
        &unique("prov-hostile-base"),
        &["--replicas", "0"],
        &tag,
        &sleep_cmd(),
    );
    let (code, map, err) = provenance_json(&[&svc.name]);
    assert_eq!(code, Some(0), "{err}");
    let p = &map[&svc.name];
    assert!(p["Base"]["ConfigSource"].is_null(), "{p}");
    let e = p["Base"]["Error"].as_str().unwrap();
    assert!(e.contains("is not an image reference"), "{e}");
    // a source that is not a URL gives no link at all
    assert!(p["SourceURL"].is_null() && p["CommitURL"].is_null(), "{p}");
    // and --check says the source is unusable
    let out = plugin(&["provenance", "--check", "--require", "source", &svc.name]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("invalid source: not a repository URL"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_registry_that_never_answers_costs_only_the_timeout_and_blames_the_registry() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = vec![];
        for c in listener.incoming().flatten() {
            held.push(c);
        }
    });
    let slow = TestService::create_full(
        &unique("prov-slow"),
        &["--replicas", "0"],
        &format!("127.0.0.1:{port}/slow/app:1"),
        &sleep_cmd(),
    );
    let good = TestService::create_resolved(
        &unique("prov-fast"),
        &["--replicas", "0"],
        &reg("oci:1"),
        &sleep_cmd(),
    );
    let started = std::time::Instant::now();
    let out = clean(plugin_bin(), plugin_config())
        .env("DOCKER_HOST", manager_host())
        .env("MICROSCALE_TIMEOUT", "3")
        .args(["provenance", "--format", "json", &slow.name, &good.name])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let map: HashMap<String, Value> = json_lines(&stdout(&out))
        .into_iter()
        .map(|v| (v["Name"].as_str().unwrap().to_string(), v))
        .collect();
    // the service on the healthy registry was read from the engine, untouched
    assert!(map[&good.name]["Error"].is_null(), "{}", map[&good.name]);
    let e = map[&slow.name]["Error"].as_str().unwrap();
    assert!(!e.contains("Cannot connect to the Docker daemon"), "{e}");
    assert!(e.contains("MICROSCALE_TIMEOUT"), "{e}");
}

#[test]
fn a_fifo_in_the_cache_is_a_cache_miss_not_a_hang() {
    let cache = tempfile::tempdir().unwrap();
    let svc = TestService::create_resolved(
        &unique("prov-fifo"),
        &["--replicas", "0"],
        &reg("remote:1"),
        &sleep_cmd(),
    );
    let run = || {
        let mut child = clean(plugin_bin(), plugin_config())
            .env("DOCKER_HOST", manager_host())
            .env("XDG_CACHE_HOME", cache.path())
            .args(["provenance", "--format", "json", &svc.name])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("provenance hung on a FIFO in the cache");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        ok(child.wait_with_output().unwrap())
    };
    let first = json_lines(&stdout(&run()))[0].clone();
    let config = first["Config"]["Digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let blob = cache
        .path()
        .join("docker-microscale/blobs/sha256")
        .join(&config);
    std::fs::remove_file(&blob).unwrap();
    let c = std::ffi::CString::new(blob.to_str().unwrap()).unwrap();
    // SAFETY: a valid C path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let again = json_lines(&stdout(&run()))[0].clone();
    assert_eq!(again["Provenance"], first["Provenance"]);
    // the FIFO was replaced by the verified blob
    assert!(std::fs::metadata(&blob).unwrap().is_file());
}

#[test]
fn badge_output_goes_through_links_into_devices_and_never_through_planted_files() {
    let svc = TestService::create_resolved(
        &unique("prov-badge-out"),
        &["--replicas", "0"],
        &reg("oci:1"),
        &sleep_cmd(),
    );
    let dir = tempfile::tempdir().unwrap();
    // a device is written into (ENOSPC here), never replaced by a file
    let out = plugin(&["badge", &svc.name, "-o", "/dev/full"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot write the badge to /dev/full"),
        "{}",
        stderr(&out)
    );
    assert!(
        !std::fs::metadata("/dev/full").unwrap().is_file(),
        "/dev/full was replaced"
    );
    // a symlink is written through
    let real = dir.path().join("real.svg");
    std::fs::write(&real, "old").unwrap();
    let link = dir.path().join("link.svg");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    ok(plugin(&["badge", &svc.name, "-o", link.to_str().unwrap()]));
    assert!(std::fs::read_to_string(&real).unwrap().contains("<svg"));
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // the last -o wins, as with docker's flags
    let a = dir.path().join("a.svg");
    let b = dir.path().join("b.svg");
    ok(plugin(&[
        "badge",
        &svc.name,
        "-o",
        a.to_str().unwrap(),
        "-o",
        b.to_str().unwrap(),
    ]));
    assert!(!a.exists() && b.exists());
}

/// Whether `text` shows `secret` anywhere but inside a long run of letters and digits
/// (service and task IDs, digests), where four digits may turn up by chance.
fn shows(text: &str, secret: &str) -> bool {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|tok| tok.contains(secret) && tok.len() < 12)
        || text.contains(&format!("/{secret}"))
}

/// Issue 13 item 5: credentials that a URL parser does not see as user info
/// (`https://ci:1234/5678@gitlab.com/...`, a password with a blank) are masked in
/// `provenance` (text and JSON), `status` (table and JSON) and the `source` badge, as
/// image, service and container labels, and the links point to the host after the
/// `@` a person meant.
#[test]
fn credentials_a_url_parser_misreads_never_show_and_links_go_to_the_host_meant() {
    // no 1234 nor 5678 in it
    const SHA: &str = "89abcdef89abcdef89abcdef89abcdef89abcdef";
    for (i, (source, secrets)) in [
        (
            "https://ci:1234/5678@gitlab.com/g/app.git",
            &["1234", "5678"][..],
        ),
        (
            "https://oauth2:glpat-AbC dEf@gitlab.com/g/app.git",
            &["glpat", "AbC", "dEf"][..],
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let tag = format!("microscale-test/misread-creds-{i}:{}", std::process::id());
        build_labelled(
            &tag,
            &[
                ("org.opencontainers.image.source", source),
                ("org.opencontainers.image.revision", SHA),
            ],
        );
        let label = format!("org.opencontainers.image.source={source}");
        let svc = TestService::create_full(
            &unique("prov-misread"),
            &[
                "--replicas",
                "0",
                "--label",
                &label,
                "--container-label",
                &label,
            ],
            &tag,
            &sleep_cmd(),
        );
        let text = stdout(&ok(plugin(&["provenance", &svc.name])));
        let json_out = ok(plugin(&["provenance", "--format", "json", &svc.name]));
        let json = stdout(&json_out);
        let status = stdout(&ok(plugin(&["status", &svc.name])));
        let status_json = stdout(&ok(plugin(&["status", "--format", "json", &svc.name])));
        let badge = stdout(&ok(plugin(&["badge", &svc.name, "--kind", "source"])));
        for (what, out) in [
            ("provenance", &text),
            ("provenance --format json", &json),
            ("status", &status),
            ("status --format json", &status_json),
            ("badge --kind source", &badge),
        ] {
            for secret in secrets {
                assert!(
                    !shows(out, secret),
                    "{source}: {what} shows {secret}:\n{out}"
                );
            }
            assert!(!out.contains("1234/5678"), "{what}:\n{out}");
        }
        // the record, the labels by origin and the links
        let p = &json_lines(&json)[0];
        let user = if i == 0 { "ci" } else { "oauth2" };
        assert_eq!(
            p["Provenance"]["Source"]["Value"],
            format!("https://{user}:xxxxx@gitlab.com/g/app.git"),
            "{p}"
        );
        assert_eq!(p["SourceURL"], "https://gitlab.com/g/app", "{p}");
        assert_eq!(
            p["CommitURL"],
            format!("https://gitlab.com/g/app/-/commit/{SHA}"),
            "{p}"
        );
        assert!(text.contains("https://gitlab.com/g/app"), "{text}");
        let labels = p["Labels"].to_string();
        // image, container and service labels, and what they shadow: all masked
        let all = labels.matches("gitlab.com/g/app.git").count();
        assert!(all >= 3, "{labels}");
        assert_eq!(
            labels.matches(":xxxxx@gitlab.com/g/app.git").count(),
            all,
            "{labels}"
        );
        // SOURCE and the badge: the host and path meant
        assert_eq!(
            json_lines(&status_json)[0]["Source"],
            "gitlab.com/g/app@89abcde"
        );
        assert!(status.contains("gitlab.com/g/app@89abcde"), "{status}");
        assert!(badge.contains(">gitlab.com/g/app<"), "{badge}");
        let _ = docker(&["image", "rm", &tag]);
    }
}
