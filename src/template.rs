//! Mapping templates: plain text with `{{ field }}` placeholders, each a list of
//! alternatives where the first non-empty one wins: `{{ annotation:team | cluster }}`,
//! `{{ label:app | "shared" }}`, `{{ workload_label:app.kubernetes.io/part-of | cluster }}`.
//! No expressions, no evaluation: a template can only
//! read the fields listed in `Field`, and an unknown field is a configuration error.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A field a template can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Cluster,
    /// The fleet's name (`fleet` in the config) when the store is a fleet's
    /// (PostgreSQL); empty otherwise, so `{{ fleet | cluster }}` is the cluster there.
    Fleet,
    /// `registry/repository` for images, the resource for checks.
    Subject,
    /// Report family: vulnerability, secret, config-audit, rbac, infra, compliance.
    Family,
    Registry,
    Repository,
    Namespace,
    WorkloadKind,
    WorkloadName,
    /// A label of the workload's namespace.
    Label(String),
    /// An annotation of the workload's namespace.
    Annotation(String),
    /// A label of the workload that trivy-operator copied onto its report
    /// (`reportResourceLabels`); the operator's own bookkeeping labels are not readable.
    WorkloadLabel(String),
}

impl Field {
    fn parse(s: &str) -> Option<Field> {
        Some(match s {
            "cluster" => Field::Cluster,
            "fleet" => Field::Fleet,
            "subject" => Field::Subject,
            "family" => Field::Family,
            "registry" => Field::Registry,
            "repository" => Field::Repository,
            "namespace" => Field::Namespace,
            "workload_kind" => Field::WorkloadKind,
            "workload_name" => Field::WorkloadName,
            _ => {
                if let Some(k) = s.strip_prefix("workload_label:") {
                    Field::WorkloadLabel(k.trim().to_owned())
                } else if let Some(k) = s.strip_prefix("label:") {
                    Field::Label(k.trim().to_owned())
                } else if let Some(k) = s.strip_prefix("annotation:") {
                    Field::Annotation(k.trim().to_owned())
                } else {
                    return None;
                }
            }
        })
    }
}

/// The values a template is rendered with.
#[derive(Debug, Clone, Default)]
pub struct Vars<'a> {
    pub cluster: &'a str,
    pub fleet: &'a str,
    pub subject: &'a str,
    pub family: &'a str,
    pub registry: &'a str,
    pub repository: &'a str,
    pub namespace: &'a str,
    pub workload_kind: &'a str,
    pub workload_name: &'a str,
    pub labels: Option<&'a BTreeMap<String, String>>,
    pub annotations: Option<&'a BTreeMap<String, String>>,
    /// The labels of the workload's report (see `Field::WorkloadLabel`).
    pub workload_labels: Option<&'a BTreeMap<String, String>>,
}

impl Vars<'_> {
    fn get(&self, f: &Field) -> &str {
        match f {
            Field::Cluster => self.cluster,
            Field::Fleet => self.fleet,
            Field::Subject => self.subject,
            Field::Family => self.family,
            Field::Registry => self.registry,
            Field::Repository => self.repository,
            Field::Namespace => self.namespace,
            Field::WorkloadKind => self.workload_kind,
            Field::WorkloadName => self.workload_name,
            Field::Label(k) => self
                .labels
                .and_then(|m| m.get(k))
                .map_or("", String::as_str),
            Field::Annotation(k) => self
                .annotations
                .and_then(|m| m.get(k))
                .map_or("", String::as_str),
            Field::WorkloadLabel(k) => self
                .workload_labels
                .and_then(|m| m.get(k))
                .map_or("", String::as_str),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Alt {
    Field(Field),
    Literal(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Placeholder(Vec<Alt>),
}

/// A parsed template; keeps its source for display and serialization.
#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template {template:?}: {message}")]
pub struct TemplateError {
    pub template: String,
    pub message: String,
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let err = |message: String| TemplateError {
            template: source.to_owned(),
            message,
        };
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| err("`{{` without a closing `}}`".into()))?;
            let inner = &after[..end];
            let mut alts = Vec::new();
            for alt in inner.split('|') {
                let alt = alt.trim();
                if alt.is_empty() {
                    return Err(err("empty alternative in `{{ }}`".into()));
                }
                if let Some(lit) = alt.strip_prefix('"').and_then(|a| a.strip_suffix('"')) {
                    alts.push(Alt::Literal(lit.to_owned()));
                } else if let Some(f) = Field::parse(alt) {
                    if let Field::Label(k) | Field::Annotation(k) | Field::WorkloadLabel(k) = &f
                        && k.is_empty()
                    {
                        return Err(err(format!("`{alt}` names no key")));
                    }
                    alts.push(Alt::Field(f));
                } else {
                    return Err(err(format!(
                        "unknown field `{alt}`; fields are cluster, fleet, subject, family, registry, \
                         repository, namespace, workload_kind, workload_name, label:<key>, \
                         annotation:<key>, workload_label:<key>, or a \"literal\""
                    )));
                }
            }
            parts.push(Part::Placeholder(alts));
            rest = &after[end + 2..];
        }
        if rest.contains("}}") {
            return Err(err("`}}` without an opening `{{`".into()));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template {
            source: source.to_owned(),
            parts,
        })
    }

    pub fn render(&self, vars: &Vars<'_>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Placeholder(alts) => {
                    for a in alts {
                        let v = match a {
                            Alt::Field(f) => vars.get(f),
                            Alt::Literal(l) => l.as_str(),
                        };
                        if !v.is_empty() {
                            out.push_str(v);
                            break;
                        }
                    }
                }
            }
        }
        out.trim().to_owned()
    }

    /// True when the rendering can differ between workloads of one image.
    pub fn uses_workload_fields(&self) -> bool {
        self.parts.iter().any(|p| match p {
            Part::Placeholder(alts) => alts.iter().any(|a| {
                matches!(
                    a,
                    Alt::Field(
                        Field::Namespace
                            | Field::WorkloadKind
                            | Field::WorkloadName
                            | Field::Label(_)
                            | Field::Annotation(_)
                            | Field::WorkloadLabel(_)
                    )
                )
            }),
            Part::Text(_) => false,
        })
    }

    /// True when every rendering contains the cluster name: some placeholder reads
    /// `cluster` first. As a later alternative (`{{ annotation:team | cluster }}`) it is
    /// only a fallback, and workloads with the annotation render the same in every cluster.
    /// A leading `fleet` is skipped: it is empty outside fleet mode, where the warning
    /// this serves applies.
    pub fn always_includes_cluster(&self) -> bool {
        self.parts.iter().any(|p| {
            matches!(p, Part::Placeholder(alts) if matches!(
                alts.iter().find(|a| !matches!(a, Alt::Field(Field::Fleet))),
                Some(Alt::Field(Field::Cluster))
            ))
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Template::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternatives_and_literals() {
        let mut ann = BTreeMap::new();
        ann.insert("trivy-digest.io/product".to_owned(), "payments".to_owned());
        let t = Template::parse("{{ annotation:trivy-digest.io/product | cluster }}").expect("ok");
        let mut v = Vars {
            cluster: "prod",
            ..Default::default()
        };
        assert_eq!(t.render(&v), "prod");
        v.annotations = Some(&ann);
        assert_eq!(t.render(&v), "payments");
        let t = Template::parse("team-{{ label:team | \"shared\" }}").expect("ok");
        assert_eq!(t.render(&v), "team-shared");
        assert!(t.uses_workload_fields());
        assert!(
            !Template::parse("{{ cluster }}")
                .expect("ok")
                .uses_workload_fields()
        );
    }

    /// A VulnerabilityReport of a Deployment with `reportResourceLabels:
    /// app.kubernetes.io/part-of` set: the product comes from the workload's label, and a
    /// workload without it falls back; a namespace label of the same key is another field.
    #[test]
    fn workload_labels_are_their_own_source() {
        let t = Template::parse("{{ workload_label:app.kubernetes.io/part-of | cluster }}")
            .expect("ok");
        assert!(t.uses_workload_fields());
        let mut wl = BTreeMap::new();
        wl.insert(
            "app.kubernetes.io/part-of".to_owned(),
            "checkout".to_owned(),
        );
        let mut ns = BTreeMap::new();
        ns.insert(
            "app.kubernetes.io/part-of".to_owned(),
            "platform".to_owned(),
        );
        let mut v = Vars {
            cluster: "prod",
            labels: Some(&ns),
            ..Default::default()
        };
        assert_eq!(
            t.render(&v),
            "prod",
            "a namespace label is not a workload label"
        );
        v.workload_labels = Some(&wl);
        assert_eq!(t.render(&v), "checkout");
        let both = Template::parse(
            "{{ label:app.kubernetes.io/part-of }}/{{ workload_label:app.kubernetes.io/part-of }}",
        )
        .expect("ok");
        assert_eq!(both.render(&v), "platform/checkout");
        // `label:` keeps reading the namespace.
        let e = Template::parse("{{ workload_label: }}").expect_err("no key");
        assert!(e.to_string().contains("names no key"), "{e}");
        let e = Template::parse("{{ workload_labels:x }}").expect_err("typo");
        assert!(e.to_string().contains("workload_label:<key>"), "{e}");
    }

    #[test]
    fn cluster_only_as_a_fallback_does_not_count() {
        let t = |s: &str| Template::parse(s).expect("parses");
        assert!(t("{{ cluster }}").always_includes_cluster());
        assert!(t("team-{{ cluster | \"x\" }}").always_includes_cluster());
        assert!(!t("{{ annotation:trivy-digest.io/product | cluster }}").always_includes_cluster());
        assert!(!t("Kubernetes").always_includes_cluster());
        assert!(!t("{{ subject }}").always_includes_cluster());
    }

    #[test]
    fn errors_name_the_problem() {
        let e = Template::parse("{{ nope }}").expect_err("unknown");
        assert!(e.to_string().contains("unknown field `nope`"), "{e}");
        assert!(Template::parse("{{ cluster").is_err());
        assert!(Template::parse("cluster }}").is_err());
        assert!(Template::parse("{{ cluster || subject }}").is_err());
    }
}
