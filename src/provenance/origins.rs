//! Where each label of a service comes from, and which values are shadowed.
//!
//! Three layers reach a service's containers or the service object:
//! - the image config (`Config.Labels`), which already contains what the image
//!   inherited from its base image at build time;
//! - the container spec (`Spec.TaskTemplate.ContainerSpec.Labels`), merged over the
//!   image labels when the engine creates each container (the container spec wins);
//! - the service spec (`Spec.Labels`), which label the service object only and never
//!   reach a container.
//!
//! Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// The layer that set a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Origin {
    /// The base image's config: the image inherited the value unchanged.
    #[serde(rename = "base image")]
    BaseImage,
    /// The image's own config (set or overridden by the image's build).
    #[serde(rename = "image")]
    Image,
    /// `Spec.TaskTemplate.ContainerSpec.Labels` (`docker service create --container-label`).
    #[serde(rename = "container spec")]
    Container,
    /// `Spec.Labels` (`docker service create --label`, compose `deploy.labels`).
    #[serde(rename = "service spec")]
    Service,
}

impl Origin {
    /// The name shown in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::BaseImage => "base image",
            Origin::Image => "image",
            Origin::Container => "container spec",
            Origin::Service => "service spec",
        }
    }
}

/// What a label applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Target {
    /// The service's running containers (`docker inspect CONTAINER`).
    #[serde(rename = "containers")]
    Containers,
    /// The service object (`docker service inspect`).
    #[serde(rename = "service")]
    Service,
}

/// A value set by a lower layer and replaced by a higher one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Shadowed {
    /// The layer whose value is not used.
    pub origin: Origin,
    /// That value (unmasked here; renderers mask secrets).
    pub value: String,
}

/// One label as the containers or the service object carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LabelRow {
    /// Label key.
    pub key: String,
    /// The value in effect.
    pub value: String,
    /// The layer that set the value in effect.
    pub origin: Origin,
    /// Containers or the service object.
    pub applies_to: Target,
    /// Values of lower layers that this one replaces (lowest first).
    pub shadowed: Vec<Shadowed>,
}

/// The labels of one service by origin: the containers' labels first, then the
/// service object's, each sorted by key.
///
/// `base` is the base image's config labels when known: an image label with the same
/// value there is reported as inherited ([`Origin::BaseImage`]); a different value
/// there is reported as shadowed.
pub fn label_origins(
    image: &BTreeMap<String, String>,
    base: Option<&BTreeMap<String, String>>,
    container: &BTreeMap<String, String>,
    service: &BTreeMap<String, String>,
) -> Vec<LabelRow> {
    let keys: BTreeSet<&String> = image.keys().chain(container.keys()).collect();
    let mut rows = Vec::new();
    for key in keys {
        let mut layers: Vec<(Origin, &String)> = Vec::new();
        if let Some(v) = base.and_then(|b| b.get(key)) {
            layers.push((Origin::BaseImage, v));
        }
        if let Some(v) = image.get(key) {
            match layers.last() {
                // unchanged from the base: the image inherited it
                Some((Origin::BaseImage, b)) if *b == v => {}
                _ => layers.push((Origin::Image, v)),
            }
        } else {
            // the base's value did not reach this image (not inherited, or not that base)
            layers.clear();
        }
        if let Some(v) = container.get(key) {
            layers.push((Origin::Container, v));
        }
        let (origin, value) = layers.pop().expect("key comes from a layer");
        rows.push(LabelRow {
            key: key.clone(),
            value: value.clone(),
            origin,
            applies_to: Target::Containers,
            shadowed: layers
                .into_iter()
                .map(|(origin, value)| Shadowed {
                    origin,
                    value: value.clone(),
                })
                .collect(),
        });
    }
    rows.extend(service.iter().map(|(key, value)| LabelRow {
        key: key.clone(),
        value: value.clone(),
        origin: Origin::Service,
        applies_to: Target::Service,
        shadowed: vec![],
    }));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn find<'a>(rows: &'a [LabelRow], key: &str, to: Target) -> &'a LabelRow {
        rows.iter()
            .find(|r| r.key == key && r.applies_to == to)
            .unwrap_or_else(|| panic!("no {key} for {to:?} in {rows:?}"))
    }

    #[test]
    fn container_spec_shadows_image_and_image_shadows_base() {
        let base = m(&[("vendor", "Acme"), ("title", "base"), ("only-base", "x")]);
        let image = m(&[("vendor", "Acme"), ("title", "app"), ("version", "1")]);
        let container = m(&[("version", "override")]);
        let service = m(&[("version", "svc"), ("microscale.min", "1")]);
        let rows = label_origins(&image, Some(&base), &container, &service);

        let vendor = find(&rows, "vendor", Target::Containers);
        assert_eq!(vendor.origin, Origin::BaseImage);
        assert!(vendor.shadowed.is_empty());

        let title = find(&rows, "title", Target::Containers);
        assert_eq!((title.origin, title.value.as_str()), (Origin::Image, "app"));
        assert_eq!(
            title.shadowed,
            vec![Shadowed {
                origin: Origin::BaseImage,
                value: "base".into()
            }]
        );

        let version = find(&rows, "version", Target::Containers);
        assert_eq!(
            (version.origin, version.value.as_str()),
            (Origin::Container, "override")
        );
        assert_eq!(version.shadowed[0].origin, Origin::Image);

        // the service label is on the service object only: it shadows nothing
        let sv = find(&rows, "version", Target::Service);
        assert_eq!((sv.origin, sv.value.as_str()), (Origin::Service, "svc"));

        // a label of the base that the image does not carry is not shown
        assert!(rows.iter().all(|r| r.key != "only-base"));
        assert_eq!(rows.len(), 5);
    }

    #[test]
    fn without_a_base_image_labels_are_the_image_s() {
        let rows = label_origins(
            &m(&[("a", "1")]),
            None,
            &m(&[("a", "1"), ("b", "2")]),
            &m(&[]),
        );
        let a = find(&rows, "a", Target::Containers);
        assert_eq!(a.origin, Origin::Container);
        assert_eq!(a.shadowed[0].value, "1");
        assert_eq!(
            find(&rows, "b", Target::Containers).origin,
            Origin::Container
        );
        assert!(label_origins(&m(&[]), None, &m(&[]), &m(&[])).is_empty());
    }
}
