//! What can go wrong while reading from a registry.
//!
//! Every message says what failed, where (registry, repository, reference, file) and,
//! where there is one, how to fix it. Messages never contain secrets: URLs and reasons
//! that come from outside pass through [`crate::edge::redact::redact_value`].

/// An error from the registry client ([`super::Client`]).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// An offline client ([`super::ClientOptions::offline`]) does not have this in
    /// its cache.
    #[error("{what} {id} of {reference} is not in the cache (offline)")]
    NotCached {
        what: &'static str,
        reference: String,
        id: String,
    },
    /// The registry could not be reached (DNS, connect, TLS handshake, timeout).
    #[error("cannot reach registry {registry}: {reason}")]
    Unreachable {
        /// `host[:port]` as in [`super::Reference::registry`].
        registry: String,
        /// What failed, e.g. "connection refused" or "timed out after 10s".
        reason: String,
    },

    /// The registry answered 401 or 403, with or without credentials.
    #[error("registry {registry} refused access to {repository}: {reason}")]
    AuthRefused {
        /// `host[:port]`.
        registry: String,
        /// Repository path, e.g. `library/busybox`.
        repository: String,
        /// Why, and what to do (e.g. "no credentials are stored ...; run `docker login HOST`").
        reason: String,
    },

    /// A manifest, tag, repository or blob does not exist (HTTP 404).
    #[error("{what} not found: {reference}")]
    NotFound {
        /// "tag", "manifest", "repository" or "blob".
        what: &'static str,
        /// The familiar reference, with the digest for a blob.
        reference: String,
    },

    /// The image index has no manifest for the wanted platform.
    #[error("{reference} has no image for platform {wanted} (available: {available})")]
    NoPlatform {
        /// The familiar reference.
        reference: String,
        /// `os/arch[/variant]`.
        wanted: String,
        /// Comma-separated `os/arch[/variant]` of the index's image manifests.
        available: String,
    },

    /// Content fetched by digest does not hash to that digest.
    #[error(
        "{what} from {registry} does not match its digest: expected {expected}, got {actual} (the registry or a proxy altered it)"
    )]
    DigestMismatch {
        /// "manifest", "config", "attestation" ...
        what: &'static str,
        /// `host[:port]`.
        registry: String,
        /// The digest asked for (`sha256:<hex>`).
        expected: String,
        /// The sha256 of what arrived.
        actual: String,
    },

    /// Content larger than the cap for its kind.
    #[error("{what} {digest_or_tag} from {registry} is larger than the {limit}-byte limit")]
    TooLarge {
        /// "manifest", "config", "attestation" ...
        what: &'static str,
        /// Digest or tag asked for.
        digest_or_tag: String,
        /// `host[:port]`.
        registry: String,
        /// The cap, in bytes (4 MiB for manifests, 16 MiB for blobs).
        limit: u64,
    },

    /// The registry answered something this client does not understand or support
    /// (bad JSON, an unknown media type, a schema 1 manifest, an unexpected status).
    #[error("registry {registry}: {detail}")]
    Protocol {
        /// `host[:port]`.
        registry: String,
        /// What was wrong, e.g. "manifest busybox:1 is a schema 1 manifest, which is not supported; push it again with a current docker".
        detail: String,
    },

    /// The image reference could not be parsed.
    #[error("invalid image reference \"{reference}\": {reason}")]
    BadReference {
        /// The text as given.
        reference: String,
        /// What is wrong and how to write it, e.g. "tag \"a b\" may only contain ...".
        reason: String,
    },

    /// Credentials could not be read: a credential helper is missing or failed, or
    /// the docker config file is unreadable.
    #[error("cannot get credentials for {registry} from {source_name}: {reason}")]
    Credentials {
        /// `host[:port]`.
        registry: String,
        /// `docker-credential-NAME` or the config file path.
        source_name: String,
        /// What failed and how to fix it.
        reason: String,
    },

    /// Credentials would go over plain HTTP to a host that is not loopback.
    #[error(
        "refusing to send credentials for {registry} over plain http to {url}; serve the registry with TLS, or remove it from the insecure registries"
    )]
    PlainHttpCredentials {
        /// `host[:port]`.
        registry: String,
        /// The redacted URL the credentials would have gone to.
        url: String,
    },

    /// The client could not be set up (TLS roots, HTTP client).
    #[error("registry client setup: {0}")]
    Setup(String),
}
