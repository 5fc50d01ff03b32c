//! Mapping templates: parse any text, and render whatever parses with values taken from
//! the rest of the input. Input: `template \0 value \0 value ...` (missing values are "").

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use trivy_digest::template::{Template, Vars};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let source = parts.next().unwrap_or("");
    let values: Vec<&str> = parts.collect();
    let v = |i: usize| values.get(i).copied().unwrap_or("");

    let t = match Template::parse(source) {
        Ok(t) => t,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert_eq!(t.source(), source);
    let _ = t.uses_workload_fields();

    // Labels and annotations: the remaining values as `key=value` pairs.
    let mut labels = BTreeMap::new();
    let mut annotations = BTreeMap::new();
    for (i, kv) in values.iter().skip(8).enumerate() {
        let (k, val) = kv.split_once('=').unwrap_or((kv, ""));
        let map = if i % 2 == 0 {
            &mut labels
        } else {
            &mut annotations
        };
        map.insert(k.to_owned(), val.to_owned());
    }
    let vars = Vars {
        cluster: v(0),
        subject: v(1),
        family: v(2),
        registry: v(3),
        repository: v(4),
        namespace: v(5),
        workload_kind: v(6),
        workload_name: v(7),
        labels: Some(&labels),
        annotations: Some(&annotations),
    };
    let out = t.render(&vars);
    assert_eq!(out, out.trim());
    let _ = t.render(&Vars::default());
});
