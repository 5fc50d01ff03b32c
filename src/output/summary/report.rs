//! A month computed from the history: the numbers every rendering shows.
//!
//! Definitions (all in the summary's time zone; a month is `[start, end)`; for the month
//! in progress, `end` is now):
//!
//! - **open at month end**: open at `end` (see `history`), not triaged in DefectDojo,
//!   counted by its severity at `end`. Headline numbers are vulnerabilities; the other
//!   families have their own sections.
//! - **new**: first seen for its image repository (or resource) during the month
//!   (`opened` event); reappearing findings are counted as `reopened`, not new.
//! - **fixed**: resolved during the month and not open again at its end.
//! - **change**: open at this month's end minus open at the previous month's end.
//! - **mean time to fix**: for criticals and highs fixed this month, the mean of
//!   (resolution − first seen), in days.
//! - **oldest open criticals**: open criticals at month end, by first seen.
//! - **top images / namespaces**: by open critical + high at month end. An image is an
//!   image repository (its digests listed); a namespace counts the distinct findings of
//!   the images that ran in it during the month.
//! - **fixable share**: open vulnerabilities at month end whose fix was known by then.
//! - **accepted risks**: findings open at month end that DefectDojo marks risk accepted,
//!   false positive or out of scope (see `history` when a subject has several tests);
//!   listed apart and left out of every other number.
//! - **team view**: only image repositories and resources that ran in the team's
//!   namespaces during the month in question (each trend month uses its own set); with a
//!   DefectDojo mapping per namespace, links only to tests of subjects that ran nowhere
//!   else.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::store::db::params;
use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::history::{FindingHistory, History};
use super::month::Month;
use crate::model::{Family, Finding, Severity};
use crate::store::Store;
use crate::store::triage::Triage;

/// Whose view a summary is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Everything the store holds: the cluster, or a fleet store's every cluster.
    Cluster,
    Team(String),
    /// One cluster of a fleet store: what ran there.
    OneCluster(String),
}

impl Scope {
    /// Stable name used in the store and in Message-IDs.
    pub fn id(&self) -> String {
        match self {
            Scope::Cluster => "cluster".into(),
            Scope::Team(t) => format!("team:{t}"),
            Scope::OneCluster(c) => format!("cluster:{c}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// The title's name: the cluster, or the fleet for a fleet store.
    pub cluster: String,
    /// The store is a fleet's: the whole view is the fleet.
    pub fleet: bool,
    pub month: Month,
    pub tz: Tz,
    pub now: DateTime<Utc>,
    pub scope: Scope,
    /// Rows per top list.
    pub top: usize,
    /// The namespace annotation naming a team.
    pub team_annotation: String,
    /// DefectDojo base URL, for links to tests.
    pub dojo_url: Option<String>,
    /// The DefectDojo mapping reads the namespace or workload (e.g. a product per team
    /// annotation): a subject running in several teams' namespaces then has one test per
    /// team, and a team view links only to tests of subjects that ran nowhere else.
    pub dojo_per_workload: bool,
}

/// Counts by severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub unknown: u64,
}

impl Counts {
    pub fn add(&mut self, s: Severity) {
        match s {
            Severity::Critical => self.critical += 1,
            Severity::High => self.high += 1,
            Severity::Medium => self.medium += 1,
            Severity::Low => self.low += 1,
            Severity::Unknown => self.unknown += 1,
        }
    }
    pub fn total(&self) -> u64 {
        self.critical + self.high + self.medium + self.low + self.unknown
    }
    pub fn critical_high(&self) -> u64 {
        self.critical + self.high
    }
    /// `self - part`, per severity (`part` is a subset).
    pub fn minus(&self, part: &Counts) -> Counts {
        Counts {
            critical: self.critical.saturating_sub(part.critical),
            high: self.high.saturating_sub(part.high),
            medium: self.medium.saturating_sub(part.medium),
            low: self.low.saturating_sub(part.low),
            unknown: self.unknown.saturating_sub(part.unknown),
        }
    }
    fn get(&self, s: Severity) -> u64 {
        match s {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
            Severity::Unknown => self.unknown,
        }
    }
}

/// A change against the previous month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delta(pub i64);

impl Delta {
    fn between(now: u64, before: u64) -> Delta {
        Delta(now as i64 - before as i64)
    }
    /// `+3`, `-2`, `0`.
    pub fn signed(&self) -> String {
        match self.0 {
            n if n > 0 => format!("+{n}"),
            n => n.to_string(),
        }
    }
    /// More open findings is worse.
    pub fn worse(&self) -> bool {
        self.0 > 0
    }
    pub fn better(&self) -> bool {
        self.0 < 0
    }
}

/// A list cut at `top` rows; `more` were left out.
#[derive(Debug, Clone, Default)]
pub struct Capped<T> {
    pub items: Vec<T>,
    pub more: usize,
}

impl<T> Capped<T> {
    fn cut(mut all: Vec<T>, top: usize) -> Capped<T> {
        let more = all.len().saturating_sub(top);
        all.truncate(top);
        Capped { items: all, more }
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct SeverityDelta {
    pub label: &'static str,
    pub class: &'static str,
    pub now: u64,
    pub before: u64,
    pub delta: Delta,
}

#[derive(Debug, Clone, Copy)]
pub struct CiSplit {
    /// Seen in CI (the same image repository) before the cluster first showed them.
    pub known_before_deploy: Counts,
    /// First seen in the cluster: no CI result had them before.
    pub first_seen_at_runtime: Counts,
}

#[derive(Debug, Clone)]
pub struct TrendRow {
    pub month: Month,
    pub label: String,
    pub open: Counts,
    pub new: u64,
    pub fixed: u64,
    /// Bar segments in % of the widest month (sum ≤ 100).
    pub pct_critical: u32,
    pub pct_high: u32,
    pub pct_other: u32,
    pub pct_rest: u32,
}

#[derive(Debug, Clone)]
pub struct Mttf {
    pub label: &'static str,
    pub fixed: u64,
    /// Mean days, one decimal; None when nothing was fixed.
    pub mean_days: Option<String>,
}

#[derive(Debug, Clone)]
pub struct OldFinding {
    pub id: String,
    pub title: String,
    pub package: String,
    pub installed: String,
    pub fixed_version: String,
    pub subject: String,
    pub family: &'static str,
    pub age_days: i64,
    pub first_seen: String,
    pub link: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ImageRow {
    pub repository: String,
    pub digests: Capped<String>,
    pub workloads: Capped<String>,
    pub namespaces: Vec<String>,
    pub open: Counts,
    pub fixable: u64,
    pub link: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NamespaceRow {
    pub name: String,
    pub critical: u64,
    pub high: u64,
    pub images: u64,
}

#[derive(Debug, Clone)]
pub struct FixableShare {
    pub open: u64,
    pub fixable: u64,
    pub percent: u32,
    pub open_critical_high: u64,
    pub fixable_critical_high: u64,
    pub percent_critical_high: u32,
}

#[derive(Debug, Clone)]
pub struct AcceptedRow {
    pub state: &'static str,
    pub severity: &'static str,
    pub severity_class: &'static str,
    pub id: String,
    pub title: String,
    pub subject: String,
    pub link: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SubjectRow {
    pub subject: String,
    pub open: Counts,
    pub link: Option<String>,
}

/// One family's section.
#[derive(Debug, Clone)]
pub struct FamilySection {
    pub family: Family,
    pub title: &'static str,
    /// What a subject of this family is (image, resource, report).
    pub subject_noun: &'static str,
    pub open: Counts,
    pub delta: Delta,
    pub new: u64,
    pub fixed: u64,
    pub top: Capped<SubjectRow>,
}

/// A month, ready to render.
#[derive(Debug, Clone)]
pub struct Summary {
    pub cluster: String,
    pub month: Month,
    pub month_name: String,
    pub scope: Scope,
    /// `whole cluster` or `team payments`.
    pub scope_label: String,
    /// The team's namespaces (empty for the cluster).
    pub team_namespaces: Vec<String>,
    pub period: String,
    pub timezone: String,
    /// The month is not over: numbers are to date.
    pub partial: bool,
    pub generated_at: String,
    pub images: u64,
    pub digests: u64,
    pub workloads: u64,
    pub namespaces: u64,
    pub open: Counts,
    pub previous_month: String,
    pub changes: Vec<SeverityDelta>,
    pub total_delta: Delta,
    pub new: Counts,
    /// With CI results in the store: the new findings CI knew before deploy, and the rest.
    pub ci: Option<CiSplit>,
    pub fixed: Counts,
    pub reopened: u64,
    pub trend: Vec<TrendRow>,
    pub mttf: Vec<Mttf>,
    pub oldest_criticals: Capped<OldFinding>,
    pub top_images: Capped<ImageRow>,
    pub top_namespaces: Capped<NamespaceRow>,
    pub fixable: FixableShare,
    pub accepted: Capped<AcceptedRow>,
    pub accepted_counts: Vec<(&'static str, u64)>,
    pub sections: Vec<FamilySection>,
}

impl Summary {
    /// The mail subject.
    pub fn subject(&self) -> String {
        let who = match &self.scope {
            Scope::Cluster => String::new(),
            Scope::Team(t) => format!(" for team {t}"),
            Scope::OneCluster(c) => format!(" for cluster {c}"),
        };
        format!(
            "[{}] Vulnerability summary {}{}: {} critical, {} high open ({} vs {})",
            self.cluster,
            self.month_name,
            who,
            self.open.critical,
            self.open.high,
            self.total_delta.signed(),
            self.previous_month
        )
    }
}

/// The families a summary counts, in `Family::ALL`'s order: all but SBOM (last there),
/// which lists components and holds no findings.
const FAMILIES: &[Family] = match Family::ALL.split_last() {
    Some((Family::Sbom, counted)) => counted,
    _ => panic!("Family::ALL ends with Sbom"),
};

fn family_index(f: Family) -> Option<usize> {
    FAMILIES.iter().position(|x| *x == f)
}

#[derive(Debug, Clone, Copy, Default)]
struct FamilyMonth {
    open: Counts,
    new: Counts,
    /// Of `new`: CI saw them before the cluster did.
    new_ci: Counts,
    fixed: Counts,
    reopened: u64,
}

/// Loads the history and computes the month.
pub fn build(store: &Store, opts: &Options) -> Result<Summary> {
    let start = opts.month.start(opts.tz);
    if start > opts.now {
        bail!(
            "month {}: it has not started yet (now is {})",
            opts.month,
            opts.now.format("%Y-%m-%d %H:%M UTC")
        );
    }
    let (since, until) = history_window(opts);
    let history = History::load(store, since, until)?;
    compute(store, &history, opts)
}

/// What `compute` reads of the history for `opts`' month: from the start of the trend's
/// first month to the month's end (or now).
pub fn history_window(opts: &Options) -> (i64, i64) {
    let first = trend_months(opts.month)[0];
    (window(first, opts).0, window(opts.month, opts).1)
}

/// Six months of trend, the last being `month`.
fn trend_months(month: Month) -> [Month; 6] {
    let mut months = [month; 6];
    for i in (0..5).rev() {
        months[i] = months[i + 1].prev();
    }
    months
}

/// The exclusive bound of "until now": the store keeps whole seconds, so what happened in
/// the current second (a sweep just before the render) counts.
fn now_bound(opts: &Options) -> i64 {
    opts.now.timestamp() + 1
}

/// `[start, end)` of `m`, cut at now.
fn window(m: Month, opts: &Options) -> (i64, i64) {
    let now = now_bound(opts);
    (
        m.start(opts.tz).timestamp().min(now),
        m.end(opts.tz).timestamp().min(now),
    )
}

pub fn compute(store: &Store, h: &History, opts: &Options) -> Result<Summary> {
    let month = opts.month;
    let (start, end) = window(month, opts);
    let team_ns: Option<BTreeSet<String>> = match &opts.scope {
        Scope::Cluster | Scope::OneCluster(_) => None,
        Scope::Team(t) => Some(h.team_namespaces(&opts.team_annotation, t)),
    };
    let scope_of = |m: Month| -> Option<HashSet<i64>> {
        let (s, e) = window(m, opts);
        match &opts.scope {
            Scope::OneCluster(c) => Some(h.subjects_in_cluster(c, s, e)),
            _ => team_ns.as_ref().map(|ns| h.subjects_in(ns, s, e)),
        }
    };
    // With one DefectDojo test per team, another team's triage is not this one's.
    let triage = |f: &FindingHistory| f.triage(opts.dojo_per_workload);
    let in_scope = |set: &Option<HashSet<i64>>, f: &FindingHistory| {
        set.as_ref().is_none_or(|s| s.contains(&f.subject_id))
    };

    let months = trend_months(month);
    let mut per_month: Vec<[FamilyMonth; FAMILIES.len()]> = Vec::with_capacity(6);
    let mut scopes: Vec<Option<HashSet<i64>>> = Vec::with_capacity(6);
    for m in &months {
        let (s, e) = window(*m, opts);
        let scope = scope_of(*m);
        let mut fm = [FamilyMonth::default(); FAMILIES.len()];
        for f in &h.findings {
            if triage(f).is_some() || !in_scope(&scope, f) {
                continue;
            }
            let Some(fi) = family_index(f.family) else {
                continue;
            };
            let sev = f.severity_at(e);
            let x = &mut fm[fi];
            if f.open_at(e) {
                x.open.add(sev);
            }
            if f.opened_in(s, e) {
                x.new.add(sev);
                if f.known_before_deploy {
                    x.new_ci.add(sev);
                }
            } else if f.open_at(e) && !f.open_at(s) && f.first_seen < s {
                x.reopened += 1;
            }
            if f.fixed_in(s, e).is_some() {
                x.fixed.add(sev);
            }
        }
        per_month.push(fm);
        scopes.push(scope);
    }
    // The month before the trend's first one is not needed: the change is against the
    // fifth trend month.
    let this = per_month[5];
    let prev = per_month[4];
    let scope = scopes[5].clone();

    let v = this[0];
    let pv = prev[0];
    let changes = Severity::ALL
        .iter()
        .map(|s| SeverityDelta {
            label: sev_label(*s),
            class: sev_class(*s),
            now: v.open.get(*s),
            before: pv.open.get(*s),
            delta: Delta::between(v.open.get(*s), pv.open.get(*s)),
        })
        .collect();

    let widest = per_month
        .iter()
        .map(|fm| fm[0].open.total())
        .max()
        .unwrap_or(0)
        .max(1);
    let trend = months
        .iter()
        .zip(per_month.iter())
        .map(|(m, fm)| {
            let o = fm[0].open;
            let pct = |n: u64| ((n as f64) * 100.0 / widest as f64).round() as u32;
            let c = pct(o.critical);
            let hi = pct(o.high).min(100 - c);
            let other = pct(o.total()).saturating_sub(c + hi).min(100 - c - hi);
            TrendRow {
                month: *m,
                label: format!("{} {}", m.short_name(), m.year),
                open: o,
                new: fm[0].new.total(),
                fixed: fm[0].fixed.total(),
                pct_critical: c,
                pct_high: hi,
                pct_other: other,
                pct_rest: 100 - c - hi - other,
            }
        })
        .collect();

    // Where things ran this month.
    let mut running: HashMap<i64, Vec<super::history::Sighting>> = HashMap::new();
    for (subject, ss) in &h.sightings {
        if scope.as_ref().is_some_and(|set| !set.contains(subject)) {
            continue;
        }
        let here: Vec<_> = ss
            .iter()
            .filter(|s| s.overlaps(start, end))
            .filter(|s| {
                team_ns.as_ref().is_none_or(|ns| {
                    h.workloads
                        .get(&s.workload_id)
                        .is_some_and(|w| ns.contains(&w.namespace))
                })
            })
            .copied()
            .collect();
        if !here.is_empty() {
            running.insert(*subject, here);
        }
    }
    let image_subjects: Vec<i64> = running
        .keys()
        .filter(|s| {
            h.subjects
                .get(s)
                .is_some_and(|i| i.family == Family::Vulnerability)
        })
        .copied()
        .collect();
    let digests: HashSet<i64> = image_subjects
        .iter()
        .flat_map(|s| running[s].iter().map(|x| x.image_id))
        .filter(|i| *i != 0)
        .collect();
    let workloads: HashSet<i64> = running
        .values()
        .flat_map(|ss| ss.iter().map(|s| s.workload_id))
        .collect();
    let namespaces: HashSet<&str> = workloads
        .iter()
        .filter_map(|w| h.workloads.get(w))
        .map(|w| w.namespace.as_str())
        .filter(|n| !n.is_empty())
        .collect();

    // Open at the month's end, in scope, not triaged: the basis of the lists.
    let open_now: Vec<&FindingHistory> = h
        .findings
        .iter()
        .filter(|f| triage(f).is_none() && in_scope(&scope, f) && f.open_at(end))
        .collect();

    // Mean time to fix.
    let mut mttf = Vec::new();
    for s in [Severity::Critical, Severity::High] {
        let mut n = 0u64;
        let mut sum = 0i64;
        for f in &h.findings {
            if f.family != Family::Vulnerability || triage(f).is_some() || !in_scope(&scope, f) {
                continue;
            }
            if let Some(at) = f.fixed_in(start, end)
                && f.severity_at(end) == s
            {
                n += 1;
                sum += (at - f.opened_at()).max(0);
            }
        }
        mttf.push(Mttf {
            label: sev_label(s),
            fixed: n,
            mean_days: (n > 0).then(|| format!("{:.1}", sum as f64 / n as f64 / 86400.0)),
        });
    }

    // A team sees links to its own DefectDojo tests only: with a per-namespace mapping, a
    // subject that also ran in another team's namespaces has that team's test too.
    let only_here = |subject: i64| {
        team_ns.as_ref().is_none_or(|ns| {
            h.sightings.get(&subject).is_some_and(|ss| {
                ss.iter().all(|s| {
                    h.workloads
                        .get(&s.workload_id)
                        .is_some_and(|w| ns.contains(&w.namespace))
                })
            })
        })
    };
    let link = |subject: i64| -> Option<String> {
        let url = opts.dojo_url.as_deref()?;
        if opts.dojo_per_workload && !only_here(subject) {
            return None;
        }
        h.dojo_tests
            .get(&subject)
            .map(|id| format!("{}/test/{id}", url.trim_end_matches('/')))
    };
    let subject_key = |id: i64| {
        h.subjects
            .get(&id)
            .map(|s| s.key.clone())
            .unwrap_or_default()
    };

    // Oldest open criticals (every family).
    let mut crit: Vec<&FindingHistory> = open_now
        .iter()
        .filter(|f| f.severity_at(end) == Severity::Critical)
        .copied()
        .collect();
    crit.sort_by_key(|f| (f.opened_at(), f.id));
    let crit_more = crit.len().saturating_sub(opts.top);
    crit.truncate(opts.top);
    let mut oldest = Vec::with_capacity(crit.len());
    for f in crit {
        let mut d = details(store, f)?;
        if f.family != Family::Vulnerability {
            // Checks and secrets: the package field holds a category; the title says more.
            d.package.clear();
        }
        oldest.push(OldFinding {
            id: d.id,
            title: d.title,
            package: d.package,
            installed: d.installed_version,
            fixed_version: d.fixed_version,
            subject: subject_key(f.subject_id),
            family: family_title(f.family),
            age_days: ((end - f.opened_at()).max(0)) / 86400,
            first_seen: DateTime::<Utc>::from_timestamp(f.opened_at(), 0)
                .map(|t| t.with_timezone(&opts.tz).format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
            link: link(f.subject_id),
        });
    }

    // Open counts per subject, per family.
    let mut by_subject: HashMap<i64, (Counts, u64)> = HashMap::new();
    for f in &open_now {
        let e = by_subject.entry(f.subject_id).or_default();
        e.0.add(f.severity_at(end));
        if f.fixable_at(end) {
            e.1 += 1;
        }
    }
    let rank = |a: &Counts, b: &Counts| {
        (b.critical, b.high, b.total()).cmp(&(a.critical, a.high, a.total()))
    };

    // Top images.
    let mut imgs: Vec<(i64, Counts, u64)> = by_subject
        .iter()
        .filter(|(s, (c, _))| {
            c.total() > 0
                && h.subjects
                    .get(s)
                    .is_some_and(|i| i.family == Family::Vulnerability)
        })
        .map(|(s, (c, fx))| (*s, *c, *fx))
        .collect();
    imgs.sort_by(|a, b| rank(&a.1, &b.1).then_with(|| subject_key(a.0).cmp(&subject_key(b.0))));
    let imgs_more = imgs.len().saturating_sub(opts.top);
    imgs.truncate(opts.top);
    let top_images = Capped {
        items: imgs
            .into_iter()
            .map(|(s, open, fixable)| {
                let ss = running.get(&s).map(Vec::as_slice).unwrap_or(&[]);
                let mut dg: BTreeMap<&str, String> = BTreeMap::new();
                let mut wl: BTreeSet<String> = BTreeSet::new();
                let mut ns: BTreeSet<String> = BTreeSet::new();
                for x in ss {
                    if let Some(i) = h.images.get(&x.image_id) {
                        dg.insert(i.key.as_str(), short_image(i));
                    }
                    if let Some(w) = h.workloads.get(&x.workload_id) {
                        wl.insert(workload_label(w));
                        if !w.namespace.is_empty() {
                            ns.insert(w.namespace.clone());
                        }
                    }
                }
                ImageRow {
                    repository: subject_key(s),
                    digests: Capped::cut(dg.into_values().collect(), 3),
                    workloads: Capped::cut(wl.into_iter().collect(), 5),
                    namespaces: ns.into_iter().collect(),
                    open,
                    fixable,
                    link: link(s),
                }
            })
            .collect(),
        more: imgs_more,
    };

    // Top namespaces: distinct open critical/high vulnerabilities of what ran there.
    let mut ns_rows: BTreeMap<String, (u64, u64, HashSet<i64>)> = BTreeMap::new();
    for (s, (c, _)) in &by_subject {
        let is_image = h
            .subjects
            .get(s)
            .is_some_and(|i| i.family == Family::Vulnerability);
        if c.critical_high() == 0 || !is_image {
            continue;
        }
        let ss = running.get(s).map(Vec::as_slice).unwrap_or(&[]);
        let ns: BTreeSet<&str> = ss
            .iter()
            .filter_map(|x| h.workloads.get(&x.workload_id))
            .map(|w| w.namespace.as_str())
            .filter(|n| !n.is_empty())
            .collect();
        for n in ns {
            let e = ns_rows.entry(n.to_owned()).or_default();
            e.0 += c.critical;
            e.1 += c.high;
            e.2.insert(*s);
        }
    }
    let mut ns_rows: Vec<NamespaceRow> = ns_rows
        .into_iter()
        .map(|(name, (c, hi, imgs))| NamespaceRow {
            name,
            critical: c,
            high: hi,
            images: imgs.len() as u64,
        })
        .collect();
    ns_rows.sort_by(|a, b| {
        (b.critical + b.high, b.critical)
            .cmp(&(a.critical + a.high, a.critical))
            .then_with(|| a.name.cmp(&b.name))
    });
    let top_namespaces = Capped::cut(ns_rows, opts.top);

    // Fixable share.
    let mut fx = FixableShare {
        open: 0,
        fixable: 0,
        percent: 0,
        open_critical_high: 0,
        fixable_critical_high: 0,
        percent_critical_high: 0,
    };
    for f in open_now
        .iter()
        .filter(|f| f.family == Family::Vulnerability)
    {
        let fixable = f.fixable_at(end);
        fx.open += 1;
        fx.fixable += fixable as u64;
        if matches!(f.severity_at(end), Severity::Critical | Severity::High) {
            fx.open_critical_high += 1;
            fx.fixable_critical_high += fixable as u64;
        }
    }
    fx.percent = percent(fx.fixable, fx.open);
    fx.percent_critical_high = percent(fx.fixable_critical_high, fx.open_critical_high);

    // Accepted risks: triaged findings still present at the month's end.
    let mut acc: Vec<&FindingHistory> = h
        .findings
        .iter()
        .filter(|f| triage(f).is_some() && in_scope(&scope, f) && f.open_at(end))
        .collect();
    let mut accepted_counts: BTreeMap<Triage, u64> = BTreeMap::new();
    for f in &acc {
        if let Some(t) = triage(f) {
            *accepted_counts.entry(t).or_default() += 1;
        }
    }
    acc.sort_by_key(|f| (f.severity_at(end), f.subject_id, f.id));
    let acc_more = acc.len().saturating_sub(opts.top);
    acc.truncate(opts.top);
    let mut accepted = Vec::with_capacity(acc.len());
    for f in acc {
        let mut d = details(store, f)?;
        if f.family != Family::Vulnerability {
            d.package.clear();
        }
        let sev = f.severity_at(end);
        accepted.push(AcceptedRow {
            state: triage(f).map(Triage::label).unwrap_or_default(),
            severity: sev_label(sev),
            severity_class: sev_class(sev),
            id: d.id,
            title: if d.package.is_empty() {
                d.title
            } else {
                format!("{} {}", d.package, d.installed_version)
                    .trim()
                    .to_owned()
            },
            subject: subject_key(f.subject_id),
            link: link(f.subject_id),
        });
    }

    // Other families.
    let mut sections = Vec::new();
    for (fi, fam) in FAMILIES.iter().enumerate().skip(1) {
        let mut rows: Vec<(i64, Counts)> = by_subject
            .iter()
            .filter(|(s, (c, _))| {
                c.total() > 0 && h.subjects.get(s).is_some_and(|i| i.family == *fam)
            })
            .map(|(s, (c, _))| (*s, *c))
            .collect();
        rows.sort_by(|a, b| rank(&a.1, &b.1).then_with(|| subject_key(a.0).cmp(&subject_key(b.0))));
        let rows: Vec<SubjectRow> = rows
            .into_iter()
            .map(|(s, open)| SubjectRow {
                subject: subject_key(s),
                open,
                link: link(s),
            })
            .collect();
        sections.push(FamilySection {
            family: *fam,
            title: family_title(*fam),
            subject_noun: match fam {
                Family::Secret => "image",
                Family::Compliance => "report",
                _ => "resource",
            },
            open: this[fi].open,
            delta: Delta::between(this[fi].open.total(), prev[fi].open.total()),
            new: this[fi].new.total(),
            fixed: this[fi].fixed.total(),
            top: Capped::cut(rows, opts.top.min(5)),
        });
    }

    let fmt_local = |t: DateTime<Utc>| {
        t.with_timezone(&opts.tz)
            .format("%Y-%m-%d %H:%M")
            .to_string()
    };
    let month_end = month.end(opts.tz);
    let partial = opts.now < month_end;
    Ok(Summary {
        cluster: opts.cluster.clone(),
        month,
        month_name: month.long_name(),
        scope_label: match &opts.scope {
            Scope::Cluster if opts.fleet => "whole fleet".into(),
            Scope::Cluster => "whole cluster".into(),
            Scope::Team(t) => format!("team {t}"),
            Scope::OneCluster(c) => format!("cluster {c}"),
        },
        team_namespaces: team_ns.map(|s| s.into_iter().collect()).unwrap_or_default(),
        scope: opts.scope.clone(),
        period: format!(
            "{} to {}",
            fmt_local(month.start(opts.tz)),
            fmt_local(month_end.min(opts.now))
        ),
        timezone: opts.tz.name().to_owned(),
        partial,
        generated_at: fmt_local(opts.now),
        images: image_subjects.len() as u64,
        digests: digests.len() as u64,
        workloads: workloads.len() as u64,
        namespaces: namespaces.len() as u64,
        open: v.open,
        previous_month: month.prev().long_name(),
        changes,
        total_delta: Delta::between(v.open.total(), pv.open.total()),
        new: v.new,
        ci: h.has_ci.then(|| CiSplit {
            known_before_deploy: v.new_ci,
            first_seen_at_runtime: v.new.minus(&v.new_ci),
        }),
        fixed: v.fixed,
        reopened: v.reopened,
        trend,
        mttf,
        oldest_criticals: Capped {
            items: oldest,
            more: crit_more,
        },
        top_images,
        top_namespaces,
        fixable: fx,
        accepted: Capped {
            items: accepted,
            more: acc_more,
        },
        accepted_counts: accepted_counts
            .into_iter()
            .map(|(t, n)| (t.label(), n))
            .collect(),
        sections,
    })
}

fn percent(part: u64, whole: u64) -> u32 {
    if whole == 0 {
        0
    } else {
        ((part as f64) * 100.0 / whole as f64).round() as u32
    }
}

/// The stored finding data of one finding (for the few listed by name).
fn details(store: &Store, f: &FindingHistory) -> Result<Finding> {
    let data: String = store
        .conn()
        .prepare_cached("SELECT data FROM findings WHERE id = ?1")?
        .query_row(params![f.id], |r| r.get(0))?;
    match serde_json::from_str::<Finding>(&data) {
        Ok(d) => Ok(d),
        Err(e) => {
            tracing::warn!(
                finding = f.id,
                "store: findings.data of finding {} is unreadable ({e}); showing its title",
                f.id
            );
            let mut d = Finding::new(String::new(), f.severity);
            d.title = f.first_title.clone();
            Ok(d)
        }
    }
}

fn short_image(i: &super::history::ImageInfo) -> String {
    match (&i.digest, &i.tag) {
        (Some(d), Some(t)) => format!("{t} @ {}", short_digest(d)),
        (Some(d), None) => short_digest(d),
        (None, Some(t)) => format!("{t} (unpinned)"),
        (None, None) => i.key.clone(),
    }
}

fn short_digest(d: &str) -> String {
    match d.split_once(':') {
        Some((algo, hex)) => format!("{algo}:{}", hex.chars().take(12).collect::<String>()),
        None => d.to_owned(),
    }
}

fn workload_label(w: &super::history::WorkloadInfo) -> String {
    if w.namespace.is_empty() {
        format!("{}/{}", w.kind, w.name)
    } else {
        format!("{}/{}/{}", w.namespace, w.kind, w.name)
    }
}

pub fn sev_label(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "Critical",
        Severity::High => "High",
        Severity::Medium => "Medium",
        Severity::Low => "Low",
        Severity::Unknown => "Unknown",
    }
}

fn sev_class(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::High => "high",
        Severity::Medium => "medium",
        Severity::Low => "low",
        Severity::Unknown => "unknown",
    }
}

pub fn family_title(f: Family) -> &'static str {
    match f {
        Family::Vulnerability => "Vulnerabilities",
        Family::Secret => "Exposed secrets",
        Family::ConfigAudit => "Config audit",
        Family::Rbac => "RBAC assessment",
        Family::Infra => "Infra assessment",
        Family::Compliance => "Compliance",
        Family::Sbom => "SBOM",
    }
}
