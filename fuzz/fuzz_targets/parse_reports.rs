//! Any bytes through the whole report path: container reading (JSON object, `kind: List`,
//! bare array, CRD-plural map, multi-document YAML), parsing and normalization of every
//! object, and the values derived from a report (subject, target, counts, finding keys,
//! the DefectDojo Generic finding). Nothing on this path may panic, whatever the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use trivy_digest::dojo::format::{self, Usage};
use trivy_digest::source::files::read_bytes;
use trivy_digest::trivy::{Parsed, parse_object};

fuzz_target!(|data: &[u8]| {
    let mut objects = Vec::new();
    let errors = read_bytes("fuzz", data, &mut |o| objects.push(o));
    for e in &errors {
        let _ = e.to_string();
    }
    same_split_as_serde_json(data, &objects, &errors);
    let usage = Usage::default();
    for obj in &objects {
        let _ = obj.origin.to_string();
        match parse_object(obj) {
            Ok(Parsed::Report(report)) => {
                let family = report.family();
                let subject = report.subject();
                let _ = report.target_key();
                let counts = report.counts();
                assert_eq!(counts.total(), report.findings.len() as u64);
                let _ = report.id.to_string();
                let _ = report.workload.to_string();
                if let Some(img) = &report.image {
                    let _ = (img.key(), img.repo_key(), img.pinned());
                }
                for f in &report.findings {
                    let key = f.key(family);
                    let g =
                        format::generic_finding(family, &subject.key, &key, &f.title, f, &usage);
                    let _ = format::hash_fields(&g);
                    let _ = g.volatile.hash();
                    // What is sent to DefectDojo must serialize.
                    serde_json::to_vec(&g).expect("a Generic finding serializes");
                }
            }
            Ok(Parsed::Namespace(_) | Parsed::Ignored { .. } | Parsed::NotReady { .. }) => {}
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});

/// Differential check of the streaming splitter: on valid JSON whose top level is an
/// array or a List, it must hand over exactly serde_json's elements, in order.
fn same_split_as_serde_json(
    data: &[u8],
    objects: &[trivy_digest::source::RawObject],
    errors: &[trivy_digest::source::InputError],
) {
    let first = data.iter().find(|b| !b.is_ascii_whitespace());
    if !matches!(first, Some(b'[' | b'{')) {
        return; // YAML path
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let items = match &value {
        serde_json::Value::Array(a) => a,
        serde_json::Value::Object(m) => match m.get("items") {
            Some(serde_json::Value::Array(a)) if m.keys().all(|k| !is_plural(k)) => a,
            _ => return,
        },
        _ => return,
    };
    // serde_json keeps the last of duplicate keys; the splitter streams every `items`.
    if let serde_json::Value::Object(_) = &value
        && count_items_keys(data) != 1
    {
        return;
    }
    assert!(errors.is_empty(), "valid JSON split with errors: {errors:?}");
    assert_eq!(objects.len(), items.len(), "element count");
    for (o, v) in objects.iter().zip(items) {
        let got: serde_json::Value =
            serde_json::from_slice(&o.json).expect("a split element of valid JSON is valid");
        assert_eq!(&got, v, "element differs");
    }
}

fn is_plural(k: &str) -> bool {
    let name = k.split('.').next().unwrap_or(k);
    trivy_digest::model::ReportKind::from_plural(name).is_some()
}

/// How many top-level keys are literally `"items"` (a rough count is enough to skip the
/// duplicate-key case).
fn count_items_keys(data: &[u8]) -> usize {
    data.windows(7).filter(|w| *w == b"\"items\"").count()
}
