//! Configuration and store safety through the real binary: secrets never echoed, absurd
//! durations and empty store paths refused, clear errors for a locked or foreign store,
//! a bad log level, and no colour codes when stderr is not a terminal.

mod support;

use std::path::Path;

use support::cli::{Run, Workspace};
use support::reports::{digest, list, vuln, vulnerability_report};

const T0: &str = "2026-11-01T10:00:00Z";

fn report_file(ws: &Workspace) -> std::path::PathBuf {
    let r = vulnerability_report(
        "shop",
        "api",
        "org/api",
        Some(&digest(1)),
        &[vuln("CVE-2026-0001", "openssl", "CRITICAL")],
    );
    ws.write("reports.json", &list(vec![r]))
}

fn assert_hidden(run: &Run, secret: &str) {
    assert!(
        !run.stdout.contains(secret) && !run.stderr.contains(secret),
        "{secret:?} was printed:\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
}

/// Secrets written inline by mistake (a token, a password, a webhook, an API key, a URL
/// with a password) are not shown by the parse error, whatever line it points at.
#[test]
fn config_parse_errors_never_echo_inline_secrets() {
    let cases = [
        // A type error a few lines below the token.
        "cluster: prod\ndefectdojo:\n  url: https://dojo.example\n  token: tok-0123456789abcdef\nkube:\n  page_size: lots\n",
        // The unknown field is the secret line itself.
        "defectdojo:\n  token: tok-0123456789abcdef\n",
        // A syntax error right after a password and a webhook.
        "smtp:\n  host: mail.example\n  password: tok-0123456789abcdef\nalerts:\n  channels:\n    - name: a\n      slack_webhook: https://hooks.slack.com/services/tok-0123456789abcdef\n  min_severity: [high\n",
        // Keys this program does not know at all, still secret-looking.
        "extra:\n  api_key: tok-0123456789abcdef\n  webhook_url: https://x.example/tok-0123456789abcdef\ncluster: [\n",
        "defectdojo:\n  url: https://admin:tok-0123456789abcdef@dojo.example\n  concurrency: many\n",
    ];
    for yaml in cases {
        let ws = Workspace::new();
        ws.config(yaml);
        let run = ws.run(&["config", "check"]);
        assert_ne!(run.code, 0, "{yaml}: {}", run.stdout);
        assert!(run.stderr.contains("trivy-digest.yaml"), "{}", run.stderr);
        // Position and message stay.
        assert!(run.stderr.contains("line"), "{}", run.stderr);
        assert_hidden(&run, "tok-0123456789abcdef");
    }
}

/// A user name or password in DEFECTDOJO_URL is refused (the token header is the way to
/// authenticate), and the refusal does not repeat the password.
#[test]
fn userinfo_in_the_defectdojo_url_is_refused_without_printing_it() {
    let ws = Workspace::new();
    let input = report_file(&ws);
    for url in [
        "https://admin:pa55-word-xyz@dojo.example",
        "https://admin:pa55-word-xyz@dojo.example/path",
        // Not even a valid URL: the password still must not show.
        "https://admin:pa55-word-xyz@dojo example",
    ] {
        let mut ws2 = Workspace::new();
        ws2.env = vec![
            ("DEFECTDOJO_URL".into(), url.into()),
            ("DEFECTDOJO_TOKEN".into(), "tok".into()),
        ];
        let run = ws2.run(&["config", "check"]);
        assert_ne!(run.code, 0, "{url}: {}", run.stdout);
        assert_hidden(&run, "pa55-word-xyz");
        if !url.contains(' ') {
            assert!(
                run.stderr.contains(
                    "defectdojo.url must not contain a user name or password; put the API token in DEFECTDOJO_TOKEN"
                ),
                "{}",
                run.stderr
            );
        }
        let run = ws2.run(&[
            "scan",
            "--format",
            "json",
            "--now",
            T0,
            "--from",
            &input.display().to_string(),
        ]);
        assert_ne!(run.code, 0, "{}", run.stdout);
        assert_hidden(&run, "pa55-word-xyz");
    }
    drop(ws);
}

fn check(yaml: &str) -> Run {
    let ws = Workspace::new();
    ws.config(yaml);
    ws.run(&["config", "check"])
}

/// Zero or absurd durations fail `config check`, naming the key.
#[test]
fn zero_and_absurd_durations_are_refused_naming_the_key() {
    let cases = [
        ("kube:\n  crd_recheck: 0s\n", "kube.crd_recheck"),
        ("run:\n  export_interval: 0s\n", "run.export_interval"),
        ("run:\n  batch_window: 0s\n", "run.batch_window"),
        ("grace_period: 300000000y\n", "grace_period"),
        ("grace_period: 500000000000y\n", "grace_period"),
        ("run:\n  shutdown_grace: 100y\n", "run.shutdown_grace"),
        (
            "run:\n  leader_election:\n    lease_duration: 0s\n    renew_interval: 0s\n",
            "run.leader_election",
        ),
        (
            "defectdojo:\n  url: https://dojo.example\n  timeout: 0s\n",
            "defectdojo.timeout",
        ),
        (
            "defectdojo:\n  url: https://dojo.example\n  retry:\n    initial_backoff: 0s\n",
            "defectdojo.retry.initial_backoff",
        ),
        (
            "defectdojo:\n  url: https://dojo.example\n  retry:\n    max_backoff: 1000d\n",
            "defectdojo.retry.max_backoff",
        ),
        (
            "smtp:\n  host: mail.example\n  from: td@example.com\n  timeout: 0s\n",
            "smtp.timeout",
        ),
        ("alerts:\n  timeout: 0s\n", "alerts.timeout"),
        ("alerts:\n  batch_window: 0s\n", "alerts.batch_window"),
        (
            "summary:\n  retry_interval: 100y\n",
            "summary.retry_interval",
        ),
        (
            "run:\n  header_read_timeout: 0s\n",
            "run.header_read_timeout",
        ),
    ];
    for (yaml, key) in cases {
        let ws = Workspace::new();
        ws.config(yaml);
        let mut ws = ws;
        ws.env
            .push(("DEFECTDOJO_TOKEN".into(), "tok-for-the-test".into()));
        let run = ws.run(&["config", "check"]);
        assert_ne!(run.code, 0, "{yaml} was accepted:\n{}", run.stdout);
        assert!(run.stderr.contains(key), "{yaml}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    // The bounds are inclusive and the documented defaults pass.
    let run = check("grace_period: 0s\nkube:\n  crd_recheck: 1s\nrun:\n  export_interval: 100ms\n");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = check("");
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// An empty store path would make SQLite use a temporary database and drop all history.
#[test]
fn an_empty_store_path_is_refused() {
    let ws = Workspace::new();
    let input = report_file(&ws);
    let from = input.display().to_string();
    ws.config("store: \"\"\n");
    let run = ws.run(&["scan", "--now", T0, "--from", &from]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(run.stderr.contains("store"), "{}", run.stderr);
    let ws = Workspace::new();
    for args in [
        vec!["--store", "", "scan", "--now", T0, "--from", &from],
        vec!["--store", "  ", "config", "check"],
    ] {
        let run = ws.run(&args);
        assert_ne!(run.code, 0, "{args:?}: {}", run.stdout);
        assert!(run.stderr.contains("store"), "{}", run.stderr);
    }
    let mut ws = Workspace::new();
    ws.env.push(("TRIVY_DIGEST_STORE".into(), "".into()));
    // An empty variable is "unset": the default store is used, not a temporary one.
    let run = ws.run(&["scan", "--now", T0, "--from", &from]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(ws.store().exists());
}

fn scan(ws: &Workspace, input: &Path) -> Run {
    ws.run(&[
        "scan",
        "--format",
        "json",
        "--now",
        T0,
        "--from",
        &input.display().to_string(),
    ])
}

/// A store another process is writing to: the error names the file and says who holds it.
#[test]
fn a_locked_store_names_the_file_and_the_holder() {
    let mut ws = Workspace::new();
    let input = report_file(&ws);
    assert_eq!(scan(&ws, &input).code, 0);
    let holder = rusqlite::Connection::open(ws.store()).expect("open");
    holder.execute_batch("BEGIN IMMEDIATE").expect("lock");
    ws.env
        .push(("TRIVY_DIGEST_BUSY_TIMEOUT_MS".into(), "200".into()));
    let run = scan(&ws, &input);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let path = ws.store().display().to_string();
    assert!(
        run.stderr.contains("trivy-digest.db") && run.stderr.contains("another trivy-digest"),
        "{path}: {}",
        run.stderr
    );
    holder.execute_batch("ROLLBACK").expect("unlock");
    assert_eq!(scan(&ws, &input).code, 0);
}

/// A negative schema version is not a fresh store: refused, naming the file, no SQL.
#[test]
fn a_negative_schema_version_is_refused() {
    let ws = Workspace::new();
    let input = report_file(&ws);
    assert_eq!(scan(&ws, &input).code, 0);
    {
        let c = rusqlite::Connection::open(ws.store()).expect("open");
        c.pragma_update(None, "user_version", -1).expect("pragma");
    }
    let run = scan(&ws, &input);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("trivy-digest.db"), "{}", run.stderr);
    assert!(run.stderr.contains("-1"), "{}", run.stderr);
    assert!(!run.stderr.contains("CREATE"), "{}", run.stderr);
    // An empty file with a negative version is refused too, not migrated as new.
    let ws = Workspace::new();
    {
        let c = rusqlite::Connection::open(ws.store()).expect("open");
        c.pragma_update(None, "user_version", -1).expect("pragma");
    }
    let run = scan(&ws, &input);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("trivy-digest.db"), "{}", run.stderr);
}

#[test]
fn an_invalid_log_level_is_a_usage_error() {
    let ws = Workspace::new();
    for bad in ["verbose", "infoo", "trivy_digest=loud", "warn,,="] {
        let run = ws.run(&["--log-level", bad, "config", "check"]);
        assert_eq!(run.code, 2, "{bad}: {}", run.stderr);
        assert!(run.stderr.contains(bad), "{bad}: {}", run.stderr);
        assert!(
            run.stderr.contains("error, warn, info, debug, trace"),
            "{}",
            run.stderr
        );
    }
    for good in ["debug", "WARN", "off", "trivy_digest=debug,warn"] {
        let run = ws.run(&["--log-level", good, "config", "check"]);
        assert_eq!(run.code, 0, "{good}: {}", run.stderr);
    }
}

/// Logs to a pipe carry no colour codes; NO_COLOR is honoured too.
#[test]
fn no_ansi_colours_when_stderr_is_not_a_terminal() {
    let ws = Workspace::new();
    // An unreadable input logs at info level.
    let broken = ws.write("broken.json", "{\"kind\": ");
    let from = broken.display().to_string();
    for no_color in [None, Some("1")] {
        let mut c = ws.command(&["--log-level", "info", "scan", "--now", T0, "--from", &from]);
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        let run = support::cli::output(c.output().expect("run"));
        assert!(run.stderr.contains("INFO"), "{}", run.stderr);
        assert!(!run.stderr.contains('\u{1b}'), "{:?}", run.stderr);
    }
}

/// `config check` renders every message template override against sample data: a
/// syntax error, an unknown variable (in each template) and a missing file each fail it
/// with the key, the file and the line; good overrides pass.
#[test]
fn message_templates_are_checked_with_file_and_line() {
    let ws = Workspace::new();
    ws.write(
        "ok.slack",
        "*{{ title }}*\n{% for g in groups %}{{ g.repo }}{% endfor %}\n",
    );
    ws.write("ok.html", "<p>{{ title }}</p>\n");
    ws.write("ok.txt", "{{ title }}\n");
    ws.write("ok-summary.html", "<h1>{{ month_name }}: {{ open.critical }}</h1>\n{% for i in top_images.items %}{{ i.repository }}{% endfor %}\n");
    ws.write(
        "ok-summary.txt",
        "{{ cluster }} {{ month }} {{ total_delta }}\n",
    );
    ws.write(
        "syntax.j2",
        "line one\n{% for g in groups %}\n{{ g.repo }}\n",
    );
    ws.write(
        "unknown.j2",
        "{{ title }}\n{% for g in groups %}{{ g.repository }}{% endfor %}\n",
    );
    ws.write("unknown-summary.j2", "{{ month }}\n\n{{ open.severe }}\n");
    let good = "alerts:\n  templates:\n    slack: ok.slack\n    email_html: ok.html\n    email_text: ok.txt\nsummary:\n  templates:\n    html: ok-summary.html\n    text: ok-summary.txt\n";
    ws.config(good);
    let run = ws.run(&["config", "check"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("slack: ok.slack"), "{}", run.stdout);

    // Each bad file in each key: the key, the file and the line are named.
    for (key, file, line, what) in [
        ("alerts.templates.slack", "syntax.j2", 3, "syntax error"),
        ("alerts.templates.email_html", "unknown.j2", 2, "undefined"),
        ("alerts.templates.email_text", "unknown.j2", 2, "undefined"),
        (
            "summary.templates.html",
            "unknown-summary.j2",
            3,
            "undefined",
        ),
        ("summary.templates.text", "syntax.j2", 3, "syntax error"),
    ] {
        let (section, name) = key.rsplit_once('.').expect("key");
        let yaml = good.replace(
            &format!(
                "{name}: {}",
                match key {
                    "alerts.templates.slack" => "ok.slack",
                    "alerts.templates.email_html" => "ok.html",
                    "alerts.templates.email_text" => "ok.txt",
                    "summary.templates.html" => "ok-summary.html",
                    _ => "ok-summary.txt",
                }
            ),
            &format!("{name}: {file}"),
        );
        assert_ne!(yaml, good, "{section}");
        ws.config(&yaml);
        let run = ws.run(&["config", "check"]);
        assert_eq!(run.code, 1, "{key}: {}", run.stderr);
        assert!(
            run.stderr.contains(key) && run.stderr.contains(&format!("{file}:{line}")),
            "{key}: {}",
            run.stderr
        );
        assert!(run.stderr.contains(what), "{key}: {}", run.stderr);
        assert!(
            !run.stderr.contains("configuration is valid"),
            "{}",
            run.stderr
        );
    }

    // A file that is not there, named with its key, before anything runs.
    ws.config(&good.replace("text: ok-summary.txt", "text: missing.txt"));
    let run = ws.run(&["config", "check"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("summary.templates.text") && run.stderr.contains("missing.txt"),
        "{}",
        run.stderr
    );
    // The same check stops `scan`: a broken template is not found at the first alert.
    ws.config(&good.replace("slack: ok.slack", "slack: syntax.j2"));
    let input = ws.write("empty.json", &list(vec![]));
    let run = ws.scan_at(T0, &[&input]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("syntax.j2:3"), "{}", run.stderr);
}

/// A mapping that gives every cluster the same tests is valid but warned about, naming
/// the keys and the fix; the default mapping (product per cluster) is not.
#[test]
fn a_mapping_shared_by_every_cluster_is_warned_about() {
    let dojo = "defectdojo:\n  url: https://dojo.example.com\n";
    let run = check_dojo(&format!(
        "cluster: prod-eu\n{dojo}  product: '{{{{ annotation:trivy-digest.io/product | cluster }}}}'\n"
    ));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("warning: the DefectDojo mapping gives cluster \"prod-eu\" the same product")
            && run.stderr.contains("closes the other cluster's findings")
            && run
                .stderr
                .contains("product: \"{{ annotation:trivy-digest.io/product | cluster }}\"")
            && run.stderr.contains("configuration is valid"),
        "{}",
        run.stderr
    );

    let run = check_dojo(&format!("cluster: prod-eu\n{dojo}"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("warning:"), "{}", run.stderr);

    let run = check_dojo(&format!(
        "cluster: prod-eu\n{dojo}  product: shared\n  engagement: '{{{{ cluster }}}}'\n"
    ));
    assert!(!run.stderr.contains("warning:"), "{}", run.stderr);

    // No DefectDojo, nothing to collide.
    let run = check_dojo("cluster: prod-eu\n");
    assert!(!run.stderr.contains("warning:"), "{}", run.stderr);
}

fn check_dojo(yaml: &str) -> Run {
    let mut ws = Workspace::new();
    ws.env
        .push(("DEFECTDOJO_TOKEN".into(), "t0ken-for-the-check".into()));
    ws.config(yaml);
    ws.run(&["config", "check"])
}
