//! The Grafana dashboard and the PrometheusRule of the chart query only what the binary
//! really exports. The real binary runs `run` against a Kubernetes API fake over HTTP
//! (no kube test server), the DefectDojo fake and the Slack fake, until every metric
//! family has samples (an export done and one refused, an alert sent and one failed, a
//! watch restarted, a report skipped); then every metric name, label matcher and
//! `by`/`on`/`group_left` label of every dashboard query and rule expression must exist
//! in its `/metrics`, and every exported family must be on the dashboard.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::cli::Workspace;
use support::dojo::{DojoFake, Fault};
use support::kube_http::KubeHttp;
use support::reports::{digest, vuln, vulnerability_report};
use support::slack::SlackFake;

const DASHBOARD: &str = "charts/trivy-digest/dashboards/trivy-digest.json";
/// The chart rendered with ci/full-values.yaml and ci/conventions-values.yaml (the
/// PrometheusRule is on in both), by scripts/check-manifests.sh.
const RULE_RENDERS: &[&str] = &[
    "tests/fixtures/chart/full.yaml",
    "tests/fixtures/chart/conventions.yaml",
];
/// Labels Prometheus adds to every series at scrape time (the target's, from the
/// ServiceMonitor's Service discovery); the binary cannot export them.
const TARGET_LABELS: &[&str] = &[
    "namespace",
    "job",
    "instance",
    "pod",
    "service",
    "container",
    "endpoint",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ---- the scrape ----------------------------------------------------------------------

/// A sample line of the exposition: name and labels.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
}

/// Families (`# TYPE` lines) and samples of an OpenMetrics text.
fn parse_scrape(text: &str) -> (BTreeSet<String>, Vec<Sample>) {
    let mut families = BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            families.insert(rest.split(' ').next().expect("family").to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, labels) = match line.find('{') {
            Some(open) => {
                let close = line.rfind('}').expect("closing brace");
                (&line[..open], parse_labels(&line[open + 1..close]))
            }
            None => (line.split(' ').next().expect("name"), BTreeMap::new()),
        };
        samples.push(Sample {
            name: name.to_owned(),
            labels,
        });
    }
    (families, samples)
}

/// `a="x",b="y \"q\""` → {a: x, b: y "q"}.
fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        let name: String = chars
            .by_ref()
            .skip_while(|c| *c == ',' || c.is_whitespace())
            .take_while(|c| *c != '=')
            .collect();
        if name.is_empty() {
            return out;
        }
        assert_eq!(chars.next(), Some('"'), "label {name}: a quoted value");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.push(chars.next().unwrap_or('\\')),
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(name.trim().to_owned(), value);
    }
}

// ---- PromQL, simply but honestly ------------------------------------------------------

#[derive(Debug, PartialEq)]
struct Matcher {
    label: String,
    op: String,
    value: String,
}

/// What one expression uses: metric selectors with their matchers, and the labels of
/// its `by`/`without`/`on`/`ignoring`/`group_left`/`group_right` clauses and
/// `label_values(..., label)`.
#[derive(Debug, Default)]
struct Uses {
    selectors: Vec<(String, Vec<Matcher>)>,
    clause_labels: BTreeSet<String>,
}

const CLAUSES: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn skip_ws(s: &[char], mut i: usize) -> usize {
    while i < s.len() && s[i].is_whitespace() {
        i += 1;
    }
    i
}

/// A `"..."` (or `'...'`) string starting at `i`: its text and the index after it.
fn string_at(s: &[char], i: usize) -> (String, usize) {
    let quote = s[i];
    let mut out = String::new();
    let mut j = i + 1;
    while j < s.len() && s[j] != quote {
        if s[j] == '\\' && j + 1 < s.len() {
            j += 1;
        }
        out.push(s[j]);
        j += 1;
    }
    (out, j + 1)
}

/// `{a="x", b=~"y"}` starting at `i` (the `{`): matchers and the index after `}`.
fn matchers_at(expr: &str, s: &[char], i: usize) -> (Vec<Matcher>, usize) {
    let mut out = Vec::new();
    let mut j = i + 1;
    loop {
        j = skip_ws(s, j);
        if j < s.len() && s[j] == ',' {
            j += 1;
            continue;
        }
        if j >= s.len() {
            panic!("{expr}: unclosed label matchers");
        }
        if s[j] == '}' {
            return (out, j + 1);
        }
        let start = j;
        while j < s.len() && is_ident(s[j]) {
            j += 1;
        }
        let label: String = s[start..j].iter().collect();
        assert!(!label.is_empty(), "{expr}: a label name at {start}");
        j = skip_ws(s, j);
        let op_start = j;
        while j < s.len() && "=!~".contains(s[j]) {
            j += 1;
        }
        let op: String = s[op_start..j].iter().collect();
        assert!(
            ["=", "!=", "=~", "!~"].contains(&op.as_str()),
            "{expr}: operator {op:?} after {label}"
        );
        j = skip_ws(s, j);
        assert!(
            j < s.len() && (s[j] == '"' || s[j] == '\''),
            "{expr}: a quoted value for {label}"
        );
        let (value, next) = string_at(s, j);
        j = next;
        out.push(Matcher { label, op, value });
    }
}

/// `(a, b)` starting at `i` (the `(`): the label names and the index after `)`.
fn label_list_at(expr: &str, s: &[char], i: usize) -> (Vec<String>, usize) {
    let close = s[i..]
        .iter()
        .position(|c| *c == ')')
        .map(|p| i + p)
        .unwrap_or_else(|| panic!("{expr}: unclosed label list"));
    let text: String = s[i + 1..close].iter().collect();
    let labels = text
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            assert!(l.chars().all(is_ident), "{expr}: label {l:?}");
            l.to_owned()
        })
        .collect();
    (labels, close + 1)
}

fn parse_promql(expr: &str) -> Uses {
    let s: Vec<char> = expr.chars().collect();
    let mut uses = Uses::default();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == '"' || c == '\'' {
            i = string_at(&s, i).1;
            continue;
        }
        if c == '[' {
            // A range or subquery duration: `[5m]`, `[$__rate_interval]`.
            i += s[i..].iter().position(|c| *c == ']').unwrap_or(s.len() - i) + 1;
            continue;
        }
        if c == '$' {
            // A Grafana variable outside a string: `$__range`.
            i += 1;
            while i < s.len() && is_ident(s[i]) {
                i += 1;
            }
            continue;
        }
        if is_ident_start(c) && (i == 0 || !is_ident(s[i - 1])) {
            let start = i;
            while i < s.len() && is_ident(s[i]) {
                i += 1;
            }
            let word: String = s[start..i].iter().collect();
            let after = skip_ws(&s, i);
            if CLAUSES.contains(&word.as_str()) {
                if after < s.len() && s[after] == '(' {
                    let (labels, next) = label_list_at(expr, &s, after);
                    uses.clause_labels.extend(labels);
                    i = next;
                }
                continue;
            }
            if word == "label_values" {
                // label_values(metric{...}, label): the metric is parsed on; the label
                // is the last argument.
                let close = s[after..]
                    .iter()
                    .rposition(|c| *c == ')')
                    .map(|p| after + p)
                    .unwrap_or_else(|| panic!("{expr}: unclosed label_values"));
                let args: String = s[after + 1..close].iter().collect();
                let label = args.rsplit(',').next().map(str::trim).unwrap_or_default();
                assert!(label.chars().all(is_ident), "{expr}: label {label:?}");
                uses.clause_labels.insert(label.to_owned());
                i = after + 1;
                continue;
            }
            if word.starts_with("trivy_digest_") {
                let matchers = if after < s.len() && s[after] == '{' {
                    let (m, next) = matchers_at(expr, &s, after);
                    i = next;
                    m
                } else {
                    Vec::new()
                };
                uses.selectors.push((word, matchers));
            }
            continue;
        }
        i += 1;
    }
    uses
}

#[test]
fn the_promql_reader_finds_names_matchers_and_clauses() {
    let u = parse_promql(
        r#"sum by (cluster, severity) (trivy_digest_findings_open{namespace=~"$namespace", severity!="low"} * on (job, instance) group_left (cluster) trivy_digest_cluster_info) > 0 or absent(trivy_digest_ready{job="a \"b\""}[5m])"#,
    );
    assert_eq!(
        u.selectors
            .iter()
            .map(|(n, m)| (n.as_str(), m.len()))
            .collect::<Vec<_>>(),
        [
            ("trivy_digest_findings_open", 2),
            ("trivy_digest_cluster_info", 0),
            ("trivy_digest_ready", 1)
        ]
    );
    assert_eq!(
        u.selectors[0].1[1],
        Matcher {
            label: "severity".into(),
            op: "!=".into(),
            value: "low".into()
        }
    );
    assert_eq!(u.selectors[2].1[0].value, "a \"b\"");
    assert_eq!(
        u.clause_labels
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["cluster", "instance", "job", "severity"]
    );
    let u = parse_promql(r#"label_values(trivy_digest_ready{namespace=~"$namespace"}, job)"#);
    assert_eq!(u.selectors[0].0, "trivy_digest_ready");
    assert!(u.clause_labels.contains("job"));
}

// ---- what the chart queries ----------------------------------------------------------

/// (where, expression) of every dashboard panel query and template variable.
fn dashboard_queries() -> Vec<(String, String)> {
    let dash: Value = serde_json::from_str(&read(DASHBOARD)).expect("dashboard JSON");
    let mut out = Vec::new();
    fn panels(p: &Value, out: &mut Vec<(String, String)>) {
        for panel in p.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?");
            for t in panel["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().expect("a target's expr");
                out.push((format!("panel {title:?}"), expr.to_owned()));
            }
            panels(&panel["panels"], out);
        }
    }
    panels(&dash["panels"], &mut out);
    for v in dash["templating"]["list"].as_array().expect("templating") {
        if v["type"] == "query" {
            let q = v["query"]["query"]
                .as_str()
                .or(v["query"].as_str())
                .expect("variable query");
            out.push((format!("variable {}", v["name"]), q.to_owned()));
        }
    }
    assert!(out.len() > 10, "the dashboard has its queries: {out:?}");
    out
}

/// (where, expression) of every rule of the rendered PrometheusRules, and the labels the
/// renders' ServiceMonitor relabelings give targets.
fn rule_queries() -> (Vec<(String, String)>, BTreeSet<String>) {
    let mut out = Vec::new();
    let mut relabeled = BTreeSet::new();
    for rel in RULE_RENDERS {
        let docs = serde_saphyr::from_multiple::<Value>(&read(rel)).expect("render");
        let mut rules = 0;
        for d in docs.iter().filter(|d| d["kind"] == "PrometheusRule") {
            for g in d["spec"]["groups"].as_array().expect("groups") {
                for r in g["rules"].as_array().expect("rules") {
                    let name = r["alert"].as_str().or(r["record"].as_str()).expect("name");
                    let expr = r["expr"].as_str().expect("expr");
                    out.push((format!("{rel}: {name}"), expr.to_owned()));
                    rules += 1;
                }
            }
        }
        assert!(rules >= 5, "{rel}: the PrometheusRule has its alerts");
        for d in docs.iter().filter(|d| d["kind"] == "ServiceMonitor") {
            for ep in d["spec"]["endpoints"].as_array().into_iter().flatten() {
                for r in ep["relabelings"].as_array().into_iter().flatten() {
                    if let Some(l) = r["targetLabel"].as_str() {
                        relabeled.insert(l.to_owned());
                    }
                }
            }
        }
    }
    (out, relabeled)
}

// ---- the running binary --------------------------------------------------------------

struct Running {
    child: Child,
    listen: String,
    ws: Workspace,
}

impl Drop for Running {
    /// SIGTERM first: the binary logs what its tasks failed with as it stops.
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get::get(&format!("http://{}{path}", self.listen))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.ws.path("run.log")).unwrap_or_default()
    }
}

mod http_get {
    //! A GET without an async runtime in the test thread (the fakes have their own).
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    pub fn get(url: &str) -> Option<(u16, String)> {
        let rest = url.strip_prefix("http://")?;
        let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}")))?;
        let mut s = TcpStream::connect(host).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let code = head.split(' ').nth(1)?.parse().ok()?;
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Some((code, body))
    }

    fn dechunk(mut body: &str) -> String {
        let mut out = String::new();
        while let Some((size, rest)) = body.split_once("\r\n") {
            let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
                break;
            };
            if n == 0 || rest.len() < n {
                break;
            }
            out.push_str(&rest[..n]);
            body = rest[n..].trim_start_matches("\r\n");
        }
        out
    }
}

/// Polls until `check` holds; panics naming `what`, with the binary's log.
fn wait_until(run: &Running, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what}\n--- log:\n{}",
            run.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn report(ns: &str, workload: &str, image: u32, severity: &'static str, id: &'static str) -> Value {
    let mut r = vulnerability_report(
        ns,
        workload,
        &format!("shop/img-{image}"),
        Some(&digest(image)),
        &[vuln(id, "openssl", severity).fixed("3.0.9")],
    );
    r["metadata"]["resourceVersion"] = json!(format!("{}", 10 + image));
    r
}

fn scrape_with_every_family_sampled() -> (Running, String, KubeHttp, SlackFake, DojoFake) {
    let dojo = DojoFake::start_blocking();
    // Two DefectDojo tests (one per image): the first push is refused, the other done.
    dojo.push_fault_for("/api/v2/reimport-scan/", Fault::Status(413));
    let slack = SlackFake::start();
    let mut unreadable = report("shop", "broken", 9, "LOW", "CVE-2026-0009");
    unreadable["report"] = json!("not a report");
    let kube = KubeHttp::start(
        vec![
            report("shop", "web", 1, "CRITICAL", "CVE-2026-0001"),
            report("shop", "api", 2, "MEDIUM", "CVE-2026-0002"),
            unreadable,
        ],
        1,
    );
    let mut ws = Workspace::new();
    let kubeconfig = kube.write_kubeconfig(&ws.path(""));
    let port = support::controller::free_port();
    let listen = format!("127.0.0.1:{port}");
    let config = format!(
        "cluster: shop-prod
store: {store}
kube:
  kinds: [VulnerabilityReport]
  digest_recovery: false
run:
  listen: {listen}
  export_interval: 1s
  shutdown_grace: 2s
  leader_election:
    enabled: false
defectdojo:
  timeout: 5s
  retry:
    max_attempts: 2
    initial_backoff: 10ms
    max_backoff: 40ms
alerts:
  batch_window: 300ms
  timeout: 5s
  retry:
    max_attempts: 2
    initial_backoff: 50ms
    max_backoff: 100ms
  channels:
    - name: security
      slack_webhook_env: CATALOG_HOOK_OK
    - name: revoked
      slack_webhook_env: CATALOG_HOOK_REVOKED
",
        store = ws.store().display()
    );
    let config_path = ws.write("config.yaml", &config);
    ws.env.extend(dojo.env());
    ws.env
        .push(("CATALOG_HOOK_OK".into(), slack.hook("security")));
    ws.env
        .push(("CATALOG_HOOK_REVOKED".into(), slack.revoked_hook("revoked")));
    ws.env
        .push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
    let log = std::fs::File::create(ws.path("run.log")).expect("log file");
    let child = ws
        .command(&[
            "--config",
            &config_path.display().to_string(),
            "--log-level",
            "info",
            "run",
        ])
        .env_remove("POD_NAME")
        .env_remove("POD_NAMESPACE")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start trivy-digest run");
    let run = Running { child, listen, ws };

    wait_until(&run, "/readyz", || {
        run.get("/readyz").is_some_and(|(code, _)| code == 200)
    });
    // The alert baseline is the first full list; a report after it alerts.
    wait_until(&run, "the alert baseline", || {
        rusqlite::Connection::open_with_flags(
            run.ws.store(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .and_then(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM meta WHERE key = 'alerts.cursor'",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .is_ok_and(|n| n == 1)
    });
    wait_until(&run, "a second watch (the first failed)", || {
        kube.watches() >= 2
    });
    kube.add(report("shop", "cart", 3, "CRITICAL", "CVE-2026-0003"));

    let wanted: &[(&str, &str, &str)] = &[
        ("trivy_digest_exports_total", "outcome", "done"),
        ("trivy_digest_exports_total", "outcome", "refused"),
        ("trivy_digest_alert_messages_total", "outcome", "sent"),
        ("trivy_digest_alert_messages_total", "outcome", "failed"),
        (
            "trivy_digest_watch_restarts_total",
            "kind",
            "VulnerabilityReport",
        ),
        (
            "trivy_digest_reports_skipped_total",
            "kind",
            "VulnerabilityReport",
        ),
        ("trivy_digest_findings_open", "severity", "critical"),
        ("trivy_digest_cluster_info", "cluster", "shop-prod"),
    ];
    let mut text = String::new();
    wait_until(&run, "a sample of every labelled family", || {
        let Some((200, body)) = run.get("/metrics") else {
            return false;
        };
        let (_, samples) = parse_scrape(&body);
        text = body;
        wanted.iter().all(|(name, label, value)| {
            samples.iter().any(|s| {
                s.name == *name && s.labels.get(*label).map(String::as_str) == Some(*value)
            })
        })
    });
    (run, text, kube, slack, dojo)
}

/// The check itself: every selector's metric has samples with the matched labels (and,
/// for `=` on a literal, that value), every clause label is on one of the expression's
/// metrics; labels Prometheus adds at scrape time are allowed.
fn check(
    what: &str,
    expr: &str,
    samples: &[Sample],
    target_labels: &BTreeSet<String>,
) -> Vec<String> {
    let uses = parse_promql(expr);
    let mut problems = Vec::new();
    if uses.selectors.is_empty() {
        problems.push(format!("{what}: no trivy_digest_ metric in {expr}"));
    }
    let labels_of = |name: &str| -> BTreeSet<&str> {
        samples
            .iter()
            .filter(|s| s.name == name)
            .flat_map(|s| s.labels.keys().map(String::as_str))
            .collect()
    };
    for (name, matchers) in &uses.selectors {
        if !samples.iter().any(|s| s.name == *name) {
            problems.push(format!("{what}: {name} is not in the scrape ({expr})"));
            continue;
        }
        let have = labels_of(name);
        for m in matchers {
            if target_labels.contains(&m.label) {
                continue;
            }
            if !have.contains(m.label.as_str()) {
                problems.push(format!(
                    "{what}: {name} has no label {} (it has {have:?})",
                    m.label
                ));
            } else if m.op == "=" && !m.value.contains('$') {
                let found = samples
                    .iter()
                    .any(|s| s.name == *name && s.labels.get(&m.label) == Some(&m.value));
                if !found {
                    problems.push(format!(
                        "{what}: no {name} series with {}={:?}",
                        m.label, m.value
                    ));
                }
            }
        }
    }
    let all: BTreeSet<&str> = uses
        .selectors
        .iter()
        .flat_map(|(n, _)| labels_of(n))
        .collect();
    for l in &uses.clause_labels {
        if !target_labels.contains(l) && !all.contains(l.as_str()) {
            problems.push(format!(
                "{what}: `{l}` is on none of its metrics ({all:?}): {expr}"
            ));
        }
    }
    problems
}

#[test]
fn dashboard_and_rules_query_only_what_the_binary_exports() {
    let (run, text, _kube, _slack, _dojo) = scrape_with_every_family_sampled();
    let (families, samples) = parse_scrape(&text);
    let (rules, relabeled) = rule_queries();
    let mut target: BTreeSet<String> = TARGET_LABELS.iter().map(|l| (*l).to_owned()).collect();
    target.extend(relabeled);

    let dashboard = dashboard_queries();
    let mut problems = Vec::new();
    for (what, expr) in dashboard.iter().chain(rules.iter()) {
        problems.extend(check(what, expr, &samples, &target));
    }
    assert!(
        problems.is_empty(),
        "{}\n--- scrape:\n{text}\n--- log:\n{}",
        problems.join("\n"),
        run.log()
    );

    // The other way round: every family the binary exports is on the dashboard.
    let on_dashboard: BTreeSet<String> = dashboard
        .iter()
        .flat_map(|(_, e)| parse_promql(e).selectors.into_iter().map(|(n, _)| n))
        .collect();
    let sample_names: BTreeSet<&str> = samples.iter().map(|s| s.name.as_str()).collect();
    for family in &families {
        let shown = on_dashboard
            .iter()
            .any(|n| n == family || (n.strip_suffix("_total") == Some(family.as_str())));
        assert!(
            shown,
            "{family} is exported but no dashboard panel shows it (samples: {sample_names:?})"
        );
    }
    assert!(families.len() >= 19, "{families:?}");
}
