//! Who owns a DefectDojo test. Two independent stores that map an image to the same
//! product, engagement and test would each reimport their own set of findings into it,
//! and DefectDojo closes whatever a reimport leaves out: every push would close the
//! other cluster's findings and drop their risk acceptances. So each push carries an
//! owner mark, and a push into a test marked by another store is refused.
//!
//! The mark travels in the reimport field `build_id`: DefectDojo 3.2.0 writes it onto the
//! test on import and on every reimport (`update_test_meta`, unless it is whitespace) and
//! shows it in `GET /api/v2/tests/`. The column holds 150 characters.

use serde::Serialize;

/// DefectDojo's `Test.build_id` is a `varchar(150)`: a longer value is a database error.
pub const MARK_MAX_CHARS: usize = 150;

const PREFIX: &str = "trivy-digest store ";
const CLUSTER: &str = " cluster ";

/// This store, as it marks the tests it pushes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The store's identity (`Store::identity`), made once and kept in the store.
    pub store: String,
    pub cluster: String,
}

impl Owner {
    /// `trivy-digest store <id> cluster <name>`, the cluster name cut to fit the column.
    pub fn mark(&self) -> String {
        let head = format!("{PREFIX}{}{CLUSTER}", self.store);
        let room = MARK_MAX_CHARS.saturating_sub(head.chars().count());
        let cluster: String = self.cluster.chars().take(room).collect();
        format!("{head}{cluster}")
    }

    /// Reads a mark back; `None` for anything else (empty, another tool's build id).
    pub fn parse(build_id: &str) -> Option<Owner> {
        let rest = build_id.trim().strip_prefix(PREFIX)?;
        let (store, cluster) = rest.split_once(CLUSTER)?;
        if store.is_empty() || store.contains(char::is_whitespace) {
            return None;
        }
        Some(Owner {
            store: store.to_owned(),
            cluster: cluster.to_owned(),
        })
    }
}

/// What the exporter does with a push, given what DefectDojo holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No such test yet: the reimport creates it, with our mark.
    Create,
    /// Marked by this store.
    Ours,
    /// Unmarked, and adopted: this store pushed to this very test before (it was made
    /// before owner marks existed), or `defectdojo.adopt_tests` allows it.
    Adopt { why: &'static str },
    /// Not ours to change.
    Refuse(Refusal),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub dd_test_id: i64,
    /// The other store, when the test carries its mark.
    pub owner: Option<OwnerView>,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnerView {
    pub store: String,
    pub cluster: String,
}

/// The test DefectDojo's reimport would pick, as far as ownership goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub id: i64,
    pub build_id: Option<String>,
}

/// Decides whether this store may push into `found`. `known` is the DefectDojo test id
/// this store recorded for the test, if it pushed before.
pub fn decide(
    me: &Owner,
    found: Option<&Found>,
    known: Option<i64>,
    adopt_tests: bool,
    title: &str,
) -> Verdict {
    decide_with(me, &[], found, known, adopt_tests, title)
}

/// As [`decide`], where `predecessors` are stores merged into this one by `store
/// migrate`: the tests they marked are this store's.
pub fn decide_with(
    me: &Owner,
    predecessors: &[String],
    found: Option<&Found>,
    known: Option<i64>,
    adopt_tests: bool,
    title: &str,
) -> Verdict {
    let Some(found) = found else {
        return Verdict::Create;
    };
    let mark = found.build_id.as_deref().and_then(Owner::parse);
    match mark {
        Some(m) if m.store == me.store => Verdict::Ours,
        Some(m) if predecessors.contains(&m.store) => Verdict::Adopt {
            why: "marked by a store that `store migrate` copied into this one",
        },
        // A mark of an earlier store of the same cluster (its volume was lost or replaced)
        // may be taken over, but only when asked: it may as well be a second install that
        // was given the same cluster name.
        Some(m) if adopt_tests && m.cluster == me.cluster => Verdict::Adopt {
            why: "marked by an earlier store of this cluster, and defectdojo.adopt_tests is on",
        },
        Some(m) => Verdict::Refuse(Refusal {
            dd_test_id: found.id,
            error: foreign(me, &m, found.id, title),
            owner: Some(OwnerView {
                store: m.store,
                cluster: m.cluster,
            }),
        }),
        None if known == Some(found.id) => Verdict::Adopt {
            why: "this store pushed to it before owner marks existed",
        },
        None if adopt_tests => Verdict::Adopt {
            why: "it carries no owner mark, and defectdojo.adopt_tests is on",
        },
        None => Verdict::Refuse(Refusal {
            dd_test_id: found.id,
            owner: None,
            error: unmarked(me, found, title),
        }),
    }
}

const FIXES: &str = "give every cluster its own name (`cluster:`, the chart's config.cluster) \
    and a mapping that keeps their tests apart: put {{ cluster }} in defectdojo.product or \
    defectdojo.engagement, e.g. engagement: '{{ cluster }}'; or move the clusters into one \
    fleet store (`store: postgres://...`, README: Many clusters), whose one test per image \
    holds every cluster's workloads";

fn foreign(me: &Owner, other: &Owner, id: i64, title: &str) -> String {
    let same_name = if other.cluster == me.cluster {
        format!(
            " Both stores call their cluster {:?}: two installs were given the same cluster \
             name. If that store was this cluster's own earlier store (its data was lost), set \
             defectdojo.adopt_tests: true for one scan to take its tests over.",
            me.cluster
        )
    } else {
        String::new()
    };
    format!(
        "DefectDojo test {id} ({title:?}) belongs to cluster {:?} (store {}); this is cluster \
         {:?} (store {}). Pushing would close that cluster's findings and drop their risk \
         acceptances, so nothing was sent. To fix: {FIXES}.{same_name}",
        other.cluster, other.store, me.cluster, me.store
    )
}

fn unmarked(me: &Owner, found: &Found, title: &str) -> String {
    let carries = match found.build_id.as_deref().map(str::trim) {
        Some(b) if !b.is_empty() => format!("build_id {b:?}, not an owner mark"),
        _ => "no owner mark".to_owned(),
    };
    format!(
        "DefectDojo test {} ({title:?}) exists with {carries}, and this store (cluster {:?}) \
         never pushed to it: another cluster, an older trivy-digest or another tool made it. \
         Pushing would close every finding it holds that this cluster does not report, so \
         nothing was sent. If the test is this cluster's, set defectdojo.adopt_tests: true \
         for one scan to take it over; otherwise {FIXES}.",
        found.id, me.cluster
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Owner {
        Owner {
            store: "a1b2c3d4e5f60718".into(),
            cluster: "prod-eu".into(),
        }
    }

    fn found(id: i64, build_id: Option<&str>) -> Found {
        Found {
            id,
            build_id: build_id.map(str::to_owned),
        }
    }

    #[test]
    fn a_mark_reads_back_and_fits_the_column() {
        let m = me().mark();
        assert_eq!(m, "trivy-digest store a1b2c3d4e5f60718 cluster prod-eu");
        assert_eq!(Owner::parse(&m), Some(me()));
        let long = Owner {
            cluster: "c".repeat(300),
            ..me()
        };
        assert_eq!(long.mark().chars().count(), MARK_MAX_CHARS);
        assert_eq!(
            Owner::parse(&long.mark()).map(|o| o.store),
            Some(me().store)
        );
        for other in [
            "",
            "  ",
            "1234",
            "trivy-digest store  cluster x",
            "jenkins #12",
        ] {
            assert_eq!(Owner::parse(other), None, "{other:?}");
        }
    }

    #[test]
    fn verdicts() {
        let me = me();
        let ours = found(7, Some(&me.mark()));
        assert_eq!(decide(&me, None, None, false, "t"), Verdict::Create);
        assert_eq!(decide(&me, Some(&ours), None, false, "t"), Verdict::Ours);

        let other = Owner {
            store: "ffff0000ffff0000".into(),
            cluster: "prod-us".into(),
        };
        let theirs = found(7, Some(&other.mark()));
        for adopt in [false, true] {
            let Verdict::Refuse(r) = decide(&me, Some(&theirs), Some(7), adopt, "nginx") else {
                panic!("another cluster's test is never taken over");
            };
            assert!(r.error.contains("\"prod-us\""), "{}", r.error);
            assert!(r.error.contains("\"prod-eu\""), "{}", r.error);
            assert!(
                r.error.contains("engagement: '{{ cluster }}'"),
                "{}",
                r.error
            );
            assert_eq!(r.owner.map(|o| o.cluster).as_deref(), Some("prod-us"));
        }

        // An earlier store of the same cluster name: only when asked.
        let earlier = found(
            7,
            Some(
                &Owner {
                    store: "0000".into(),
                    cluster: me.cluster.clone(),
                }
                .mark(),
            ),
        );
        let Verdict::Refuse(r) = decide(&me, Some(&earlier), Some(7), false, "t") else {
            panic!("refused");
        };
        assert!(r.error.contains("same cluster name"), "{}", r.error);
        assert!(matches!(
            decide(&me, Some(&earlier), None, true, "t"),
            Verdict::Adopt { .. }
        ));

        // Unmarked: ours if we pushed to this very test, else only when asked.
        for b in [None, Some(""), Some("build 12")] {
            let t = found(7, b);
            assert!(matches!(
                decide(&me, Some(&t), Some(7), false, "t"),
                Verdict::Adopt { .. }
            ));
            assert!(matches!(
                decide(&me, Some(&t), Some(8), false, "t"),
                Verdict::Refuse(Refusal { owner: None, .. })
            ));
            assert!(matches!(
                decide(&me, Some(&t), None, true, "t"),
                Verdict::Adopt { .. }
            ));
        }
    }
}
