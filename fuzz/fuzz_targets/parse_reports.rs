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
