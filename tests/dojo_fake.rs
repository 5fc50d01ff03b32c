//! Proves the DefectDojo fake behaves like the real 3.2.0 server recorded in
//! the DefectDojo research notes (defectdojo-real.md), using plain reqwest calls.

mod support;

use std::time::Duration;

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use support::dojo::{DojoFake, Fault};

const GENERIC: &str = "Generic Findings Import";

fn auth() -> String {
    format!("Token {}", DojoFake::TOKEN)
}

fn finding(title: &str, severity: &str) -> Value {
    json!({"title": title, "severity": severity, "description": format!("{title} in the image")})
}

fn report(findings: Vec<Value>) -> Vec<u8> {
    json!({ "findings": findings }).to_string().into_bytes()
}

/// The usual names-based target with auto_create_context.
fn target<'a>(
    product: &'a str,
    engagement: &'a str,
    test_title: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("scan_type", GENERIC),
        ("product_type_name", "Kubernetes"),
        ("product_name", product),
        ("engagement_name", engagement),
        ("test_title", test_title),
        ("auto_create_context", "true"),
    ]
}

fn with<'a>(
    mut fields: Vec<(&'a str, &'a str)>,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    fields.extend_from_slice(extra);
    fields
}

fn form(fields: &[(&str, &str)], file: Option<Vec<u8>>) -> Form {
    let mut form = Form::new();
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    if let Some(bytes) = file {
        form = form.part("file", Part::bytes(bytes).file_name("report.json"));
    }
    form
}

async fn reimport_with(
    client: &reqwest::Client,
    fake: &DojoFake,
    fields: &[(&str, &str)],
    file: Option<Vec<u8>>,
) -> reqwest::Result<(u16, Value)> {
    let resp = client
        .post(format!("{}/api/v2/reimport-scan/", fake.url()))
        .header("Authorization", auth())
        .multipart(form(fields, file))
        .send()
        .await?;
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, body))
}

async fn reimport(fake: &DojoFake, fields: &[(&str, &str)], file: Option<Vec<u8>>) -> (u16, Value) {
    reimport_with(&reqwest::Client::new(), fake, fields, file)
        .await
        .expect("reimport request")
}

async fn get(fake: &DojoFake, path_and_query: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(format!("{}{}", fake.url(), path_and_query))
        .header("Authorization", auth())
        .send()
        .await
        .expect("GET");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn send_json(
    fake: &DojoFake,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .request(method, format!("{}{}", fake.url(), path))
        .header("Authorization", auth())
        .json(&body)
        .send()
        .await
        .expect("JSON request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn stat(body: &Value, path: &[&str]) -> u64 {
    let mut v = &body["statistics"];
    for p in path {
        v = &v[*p];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("no statistic at {path:?} in {body}"))
}

#[tokio::test]
async fn auth_failures_are_403_with_drf_bodies() {
    let fake = DojoFake::start().await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v2/findings/", fake.url());

    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"detail": "Authentication credentials were not provided."})
    );

    let resp = client
        .get(&url)
        .header(
            "Authorization",
            "Token 0000000000000000000000000000000000000000",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"detail": "Invalid token."})
    );

    // The reimport endpoint is guarded the same way, and nothing is created.
    let resp = client
        .post(format!("{}/api/v2/reimport-scan/", fake.url()))
        .multipart(form(&target("p", "e", "t"), Some(report(vec![]))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert!(fake.products().is_empty());

    // Unknown paths are 404, and a missing trailing slash gets Django's redirect.
    let (status, body) = get(&fake, "/api/v2/nothing-here/").await;
    assert_eq!((status, body), (404, json!({"detail": "Not found."})));
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/api/v2/findings?test=1", fake.url()))
        .header("Authorization", auth())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 301);
    assert_eq!(resp.headers()["location"], "/api/v2/findings/?test=1");
}

#[tokio::test]
async fn reimport_accepts_only_multipart() {
    let fake = DojoFake::start().await;
    let (status, body) = send_json(
        &fake,
        reqwest::Method::POST,
        "/api/v2/reimport-scan/",
        json!({"scan_type": GENERIC, "product_name": "p"}),
    )
    .await;
    assert_eq!(status, 415);
    assert_eq!(
        body,
        json!({"detail": "Unsupported media type \"application/json\" in request."})
    );
    let log = fake.log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, 415);
    assert_eq!(
        log[0].json_body,
        Some(json!({"scan_type": GENERIC, "product_name": "p"}))
    );
}

#[tokio::test]
async fn validation_errors_have_the_recorded_shapes() {
    let fake = DojoFake::start().await;

    // No file.
    let (status, body) = reimport(&fake, &target("p", "e", "t"), None).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["non_field_errors"],
        json!(["Uploading a Report File is required for Generic Findings Import"])
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("ErrorDetail(string=")
    );
    assert!(body["pro"].is_array());

    // Unknown scan type.
    let fields = [
        ("scan_type", "Trivy Operator"),
        ("product_type_name", "Kubernetes"),
        ("product_name", "p"),
        ("engagement_name", "e"),
        ("auto_create_context", "true"),
    ];
    let (status, body) = reimport(&fake, &fields, Some(report(vec![]))).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["scan_type"],
        json!(["\"Trivy Operator\" is not a valid choice."])
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("{'scan_type': [ErrorDetail(")
    );

    // Unknown key in a finding: rejected by the parser, before any test exists.
    let mut bogus = finding("CVE-1 openssl 3.0", "High");
    bogus["bogus"] = json!(1);
    let (status, body) = reimport(&fake, &target("p", "e", "t"), Some(report(vec![bogus]))).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        json!("[\"Not allowed fields are present: ['bogus']\"]")
    );
    assert!(
        fake.tests().is_empty(),
        "parser errors leave no test behind"
    );

    // Missing description.
    let (status, body) = reimport(
        &fake,
        &target("p", "e", "t"),
        Some(report(vec![json!({"title": "x", "severity": "High"})])),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        json!("[\"Required fields are missing: ['description']\"]")
    );
    assert!(fake.tests().is_empty());

    // Invalid JSON: a Python repr of the json error.
    let (status, body) = reimport(&fake, &target("p", "e", "t"), Some(b"".to_vec())).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        json!("['Expecting value: line 1 column 1 (char 0)']")
    );

    // Bad severity: 400, and the auto-created test stays behind, empty.
    let (status, body) = reimport(
        &fake,
        &target("p", "e", "t"),
        Some(report(vec![finding("x", "Extreme")])),
    )
    .await;
    assert_eq!(status, 400);
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "['Finding severity \"Extreme\" is not supported. Any of the following are supported: "
        ),
        "{message}"
    );
    let tests = fake.tests();
    assert_eq!(tests.len(), 1);
    assert!(fake.findings_of_test(tests[0].id).is_empty());

    // Unknown product without auto_create_context: a bare JSON list.
    let fields = [
        ("scan_type", GENERIC),
        ("product_name", "Nope"),
        ("engagement_name", "e"),
        ("test_title", "t"),
    ];
    let (status, body) = reimport(&fake, &fields, Some(report(vec![]))).await;
    assert_eq!(
        (status, body),
        (400, json!(["Product \"Nope\" does not exist"]))
    );

    // Existing product, different product type.
    let mut fields = target("p", "e", "t");
    fields[1] = ("product_type_name", "Other");
    let (status, body) = reimport(&fake, &fields, Some(report(vec![]))).await;
    assert_eq!(status, 400);
    let msg = body[0].as_str().unwrap();
    assert!(
        msg.contains("conflict with the supplied product type name"),
        "{msg}"
    );
    assert!(msg.contains("Kubernetes") && msg.contains("Other"));
}

#[tokio::test]
async fn generic_type_must_stay_stable() {
    let fake = DojoFake::start().await;
    let typed = json!({"type": "Lab Tool", "findings": [finding("CVE-1 a 1", "High")]})
        .to_string()
        .into_bytes();
    let (status, body) = reimport(&fake, &target("p", "e", "t"), Some(typed)).await;
    assert_eq!(status, 201);
    let test_id = body["test_id"].as_u64().unwrap();
    let (_, test) = get(&fake, &format!("/api/v2/tests/{test_id}/")).await;
    assert_eq!(
        test["test_type_name"],
        "Lab Tool Scan (Generic Findings Import)"
    );
    assert_eq!(test["scan_type"], GENERIC);
    assert_eq!(test["deduplication_algorithm"], "hash_code");

    let (status, body) = reimport(
        &fake,
        &target("p", "e", "t"),
        Some(report(vec![finding("CVE-1 a 1", "High")])),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        json!(format!(
            "[\"Test type mismatch: Test {test_id} has test_type 'Lab Tool Scan (Generic Findings Import)', \
             but the report contains test_type 'Generic Findings Import'. Reimport with matching test_type \
             or create a new test.\"]"
        ))
    );
    assert_eq!(fake.findings().len(), 1);
}

#[tokio::test]
async fn first_reimport_creates_and_identical_second_is_untouched() {
    let fake = DojoFake::start().await;
    let file = report(vec![
        finding("CVE-1 openssl 3.0", "High"),
        finding("CVE-2 zlib 1.2", "Medium"),
        finding("sql injection in /login", "Low"),
    ]);
    let (status, first) =
        reimport(&fake, &target("shop", "ci", "shop-api"), Some(file.clone())).await;
    assert_eq!(status, 201);
    let stats = first["statistics"].as_object().unwrap();
    assert_eq!(
        stats.keys().collect::<Vec<_>>(),
        vec!["after"],
        "import: only `after`"
    );
    assert_eq!(stat(&first, &["after", "total", "active"]), 3);
    assert_eq!(stat(&first, &["after", "high", "total"]), 1);
    assert_eq!(stat(&first, &["after", "total", "verified"]), 0);
    // The echoed active/verified are not the findings' state.
    assert_eq!(first["active"], false);
    assert_eq!(first["verified"], false);
    assert_eq!(first["close_old_findings"], true);
    assert_eq!(first["deduplication_complete"], false);
    for key in [
        "test",
        "test_id",
        "engagement_id",
        "product_id",
        "product_type_id",
    ] {
        assert!(first[key].as_u64().is_some(), "{key} in {first}");
    }
    let test_id = first["test_id"].as_u64().unwrap();
    let findings = fake.findings_of_test(test_id);
    assert!(findings.iter().all(|f| f.active && !f.verified));
    // Titles are title-cased on save.
    let titles: Vec<&str> = findings.iter().map(|f| f.title.as_str()).collect();
    assert!(titles.contains(&"CVE-1 Openssl 3.0"), "{titles:?}");
    assert!(titles.contains(&"Sql Injection in /Login"), "{titles:?}");

    let (status, second) = reimport(&fake, &target("shop", "ci", "shop-api"), Some(file)).await;
    assert_eq!(status, 201);
    assert_eq!(second["test_id"].as_u64(), Some(test_id));
    let stats = second["statistics"].as_object().unwrap();
    for key in ["before", "delta", "after"] {
        assert!(stats.contains_key(key), "{key}");
    }
    assert_eq!(stat(&second, &["delta", "untouched", "total", "total"]), 3);
    assert_eq!(stat(&second, &["delta", "created", "total", "total"]), 0);
    assert_eq!(stat(&second, &["delta", "closed", "total", "total"]), 0);
    assert_eq!(
        stat(&second, &["delta", "reactivated", "total", "total"]),
        0
    );
    assert_eq!(stat(&second, &["before", "total", "active"]), 3);
    for bucket in ["info", "low", "medium", "high", "critical", "total"] {
        let b = &second["statistics"]["after"][bucket];
        for key in [
            "active",
            "verified",
            "duplicate",
            "false_p",
            "out_of_scope",
            "is_mitigated",
            "risk_accepted",
            "total",
        ] {
            assert!(b[key].is_u64(), "{bucket}.{key}");
        }
    }
    assert_eq!(fake.findings().len(), 3);

    // Import history.
    let (_, imports) = get(&fake, &format!("/api/v2/test_imports/?test={test_id}")).await;
    assert_eq!(imports["count"], 2);
    assert_eq!(imports["results"][0]["type"], "import");
    assert_eq!(imports["results"][1]["type"], "reimport");
    let actions = imports["results"][1]["test_import_finding_action_set"]
        .as_array()
        .unwrap();
    assert_eq!(actions.len(), 3);
    assert!(actions.iter().all(|a| a["action"] == "U"));
    assert_eq!(
        imports["results"][1]["import_settings"]["close_old_findings"],
        true
    );
}

#[tokio::test]
async fn closing_depends_on_service() {
    let fake = DojoFake::start().await;
    let both = report(vec![
        finding("CVE-1 a 1", "High"),
        finding("CVE-2 b 1", "High"),
    ]);
    let one = report(vec![finding("CVE-1 a 1", "High")]);

    // With a request service, a removed finding is closed.
    let svc = with(target("p", "e", "svc-test"), &[("service", "web")]);
    let (_, body) = reimport(&fake, &svc, Some(both.clone())).await;
    let test_id = body["test_id"].as_u64().unwrap();
    let (status, body) = reimport(&fake, &svc, Some(one.clone())).await;
    assert_eq!(status, 201);
    assert_eq!(stat(&body, &["delta", "closed", "total", "total"]), 1);
    assert_eq!(
        stat(&body, &["delta", "closed", "total", "is_mitigated"]),
        1
    );
    assert_eq!(stat(&body, &["delta", "closed", "total", "active"]), 0);
    assert_eq!(stat(&body, &["delta", "untouched", "total", "total"]), 1);
    let closed: Vec<_> = fake
        .findings_of_test(test_id)
        .into_iter()
        .filter(|f| f.is_mitigated)
        .collect();
    assert_eq!(closed.len(), 1);
    assert!(!closed[0].active && closed[0].mitigated.is_some());
    assert_eq!(closed[0].mitigated_by, Some(1));
    assert_eq!(
        closed[0].notes,
        vec!["Mitigated by Generic Findings Import re-upload."]
    );

    // Findings carrying their own service, and no service in the request: nothing is
    // a closing candidate (research step 3).
    let with_service = |titles: &[&str]| {
        report(
            titles
                .iter()
                .map(|t| {
                    let mut f = finding(t, "Medium");
                    f["service"] = json!("ns/Pod/app");
                    f
                })
                .collect(),
        )
    };
    let (_, body) = reimport(
        &fake,
        &target("p", "e", "own-service"),
        Some(with_service(&["X 1", "Y 1"])),
    )
    .await;
    let own_test = body["test_id"].as_u64().unwrap();
    let (_, body) = reimport(
        &fake,
        &target("p", "e", "own-service"),
        Some(with_service(&["X 1", "Z 1"])),
    )
    .await;
    assert_eq!(stat(&body, &["delta", "closed", "total", "total"]), 0);
    assert_eq!(stat(&body, &["delta", "created", "total", "total"]), 1);
    assert_eq!(
        fake.findings_of_test(own_test)
            .iter()
            .filter(|f| f.active)
            .count(),
        3,
        "the removed finding stayed active"
    );
    // Sending the same service makes it work.
    let svc = with(
        target("p", "e", "own-service"),
        &[("service", "ns/Pod/app")],
    );
    let (_, body) = reimport(&fake, &svc, Some(with_service(&["X 1", "Z 1"]))).await;
    assert_eq!(stat(&body, &["delta", "closed", "total", "total"]), 1);

    // An empty findings list closes every candidate.
    let svc = with(target("p", "e", "svc-test"), &[("service", "web")]);
    let (_, body) = reimport(&fake, &svc, Some(report(vec![]))).await;
    assert_eq!(stat(&body, &["delta", "closed", "total", "total"]), 1);
    assert!(
        fake.findings_of_test(test_id)
            .iter()
            .all(|f| f.is_mitigated)
    );
}

#[tokio::test]
async fn closing_is_scoped_by_service_across_tests() {
    let fake = DojoFake::start().await;
    let repo_a = with(target("p", "e", "repo-a"), &[("service", "repo-a")]);
    let repo_b = with(target("p", "e", "repo-b"), &[("service", "repo-b")]);
    let (_, a) = reimport(
        &fake,
        &repo_a,
        Some(report(vec![
            finding("CVE-1 a 1", "High"),
            finding("CVE-2 b 1", "Low"),
        ])),
    )
    .await;
    let (_, b) = reimport(
        &fake,
        &repo_b,
        Some(report(vec![finding("CVE-1 a 1", "High")])),
    )
    .await;
    assert_ne!(a["test_id"], b["test_id"]);
    let (_, a2) = reimport(
        &fake,
        &repo_a,
        Some(report(vec![finding("CVE-1 a 1", "High")])),
    )
    .await;
    assert_eq!(stat(&a2, &["delta", "closed", "total", "total"]), 1);
    assert_eq!(stat(&a2, &["delta", "untouched", "total", "total"]), 1);
    let b_findings = fake.findings_of_test(b["test_id"].as_u64().unwrap());
    assert!(
        b_findings.iter().all(|f| f.active),
        "the other test is untouched"
    );
}

#[tokio::test]
async fn readded_finding_is_reactivated_with_the_same_id() {
    let fake = DojoFake::start().await;
    let fields = target("p", "e", "t");
    let full = report(vec![
        finding("CVE-1 a 1", "High"),
        finding("CVE-2 b 1", "High"),
    ]);
    let (_, body) = reimport(&fake, &fields, Some(full.clone())).await;
    let test_id = body["test_id"].as_u64().unwrap();
    let gone = fake
        .findings_of_test(test_id)
        .into_iter()
        .find(|f| f.title.starts_with("CVE-2"))
        .unwrap();
    reimport(
        &fake,
        &fields,
        Some(report(vec![finding("CVE-1 a 1", "High")])),
    )
    .await;
    let (status, body) = reimport(&fake, &fields, Some(full)).await;
    assert_eq!(status, 201);
    assert_eq!(stat(&body, &["delta", "reactivated", "total", "total"]), 1);
    assert_eq!(stat(&body, &["delta", "reactivated", "total", "active"]), 1);
    assert_eq!(stat(&body, &["delta", "created", "total", "total"]), 0);
    assert_eq!(fake.findings().len(), 2);
    let back = fake
        .findings()
        .into_iter()
        .find(|f| f.id == gone.id)
        .unwrap();
    assert!(back.active && !back.is_mitigated && back.mitigated.is_none());
    assert_eq!(
        back.notes.last().map(String::as_str),
        Some("Re-activated by Generic Findings Import re-upload.")
    );

    // do_not_reactivate keeps it closed.
    reimport(
        &fake,
        &fields,
        Some(report(vec![finding("CVE-1 a 1", "High")])),
    )
    .await;
    let keep_closed = with(fields.clone(), &[("do_not_reactivate", "true")]);
    let (_, body) = reimport(
        &fake,
        &keep_closed,
        Some(report(vec![
            finding("CVE-1 a 1", "High"),
            finding("CVE-2 b 1", "High"),
        ])),
    )
    .await;
    assert_eq!(stat(&body, &["delta", "reactivated", "total", "total"]), 0);
    let still = fake
        .findings()
        .into_iter()
        .find(|f| f.id == gone.id)
        .unwrap();
    assert!(still.is_mitigated && !still.active);
}

#[tokio::test]
async fn matched_findings_are_never_refreshed_but_patch_sticks() {
    let fake = DojoFake::start().await;
    let fields = with(target("p", "e", "img"), &[("service", "img")]);
    let mut original = finding("CVE-1 openssl 3.0", "High");
    original["fix_version"] = json!("3.0.1");
    original["mitigation"] = json!("upgrade to 3.0.1");
    original["cvssv3_score"] = json!(7.5);
    original["impact"] = json!("bad");
    original["unique_id_from_tool"] = json!("uid-1");
    let (_, body) = reimport(&fake, &fields, Some(report(vec![original.clone()]))).await;
    let test_id = body["test_id"].as_u64().unwrap();
    let first = fake.findings_of_test(test_id).remove(0);

    let mut changed = original.clone();
    changed["severity"] = json!("Critical");
    changed["fix_version"] = json!("3.0.2");
    changed["mitigation"] = json!("upgrade to 3.0.2");
    changed["cvssv3_score"] = json!(9.8);
    changed["impact"] = json!("worse");
    let (_, body) = reimport(&fake, &fields, Some(report(vec![changed]))).await;
    assert_eq!(stat(&body, &["delta", "untouched", "total", "total"]), 1);
    let after = fake.findings_of_test(test_id).remove(0);
    assert_eq!(after.id, first.id);
    assert_eq!(after.severity, "High");
    assert_eq!(after.fix_version.as_deref(), Some("3.0.1"));
    assert_eq!(after.mitigation.as_deref(), Some("upgrade to 3.0.1"));
    assert_eq!(after.cvssv3_score, Some(7.5));
    assert_eq!(after.impact.as_deref(), Some("bad"));

    // PATCH changes the fields, keeps hash_code, and numerical_severity follows.
    let path = format!("/api/v2/findings/{}/", first.id);
    let (status, patched) = send_json(
        &fake,
        reqwest::Method::PATCH,
        &path,
        json!({"severity": "Critical", "fix_version": "8.5", "impact": "new", "cvssv3_score": 9.1,
               "mitigation": "upgrade", "hash_code": "ignored", "no_such_field": 1}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(patched["severity"], "Critical");
    assert_eq!(patched["numerical_severity"], "S0");
    assert_eq!(patched["fix_version"], "8.5");
    assert_eq!(patched["cvssv3_score"], 9.1);
    assert_eq!(patched["hash_code"], json!(first.hash_code));

    // The next reimport with the old values leaves the PATCHed ones alone.
    let (_, body) = reimport(&fake, &fields, Some(report(vec![original]))).await;
    assert_eq!(stat(&body, &["delta", "untouched", "total", "total"]), 1);
    let (_, now) = get(&fake, &path).await;
    assert_eq!(now["severity"], "Critical");
    assert_eq!(now["fix_version"], "8.5");
    assert_eq!(now["mitigation"], "upgrade");

    // Invalid severity.
    let (status, body) = send_json(
        &fake,
        reqwest::Method::PATCH,
        &path,
        json!({"severity": "Extreme"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["severity"],
        json!([
            "Severity must be one of the following: ['Info', 'Low', 'Medium', 'High', 'Critical']"
        ])
    );
    // Unknown finding.
    let (status, body) = get(&fake, "/api/v2/findings/9999/").await;
    assert_eq!(
        (status, body),
        (
            404,
            json!({"detail": "No Finding matches the given query."})
        )
    );
}

#[tokio::test]
async fn risk_accepted_finding_lifecycle() {
    let fake = DojoFake::start().await;
    let fields = with(target("p", "e", "t"), &[("service", "svc")]);
    let both = report(vec![
        finding("CVE-1 a 1", "High"),
        finding("CVE-2 b 1", "High"),
    ]);
    let (_, body) = reimport(&fake, &fields, Some(both.clone())).await;
    let test_id = body["test_id"].as_u64().unwrap();
    let accepted = fake
        .findings_of_test(test_id)
        .into_iter()
        .find(|f| f.title.starts_with("CVE-2"))
        .unwrap();

    let (status, ra) = send_json(
        &fake,
        reqwest::Method::POST,
        "/api/v2/risk_acceptance/",
        json!({"name": "accept", "accepted_findings": [accepted.id], "owner": 1,
               "decision": "A", "recommendation": "A", "expiration_date": "2027-12-31"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(ra["accepted_findings"], json!([accepted.id]));
    let (_, f) = get(&fake, &format!("/api/v2/findings/{}/", accepted.id)).await;
    assert_eq!(f["active"], false);
    assert_eq!(f["risk_accepted"], true);
    assert_eq!(f["display_status"], "Inactive, Risk Accepted");
    assert_eq!(f["accepted_risks"].as_array().unwrap().len(), 1);
    let (_, list) = get(
        &fake,
        &format!("/api/v2/findings/?test={test_id}&risk_accepted=true"),
    )
    .await;
    assert_eq!(list["count"], 1);

    // 1: still in the report -> untouched, counted under risk_accepted.
    let (_, body) = reimport(&fake, &fields, Some(both.clone())).await;
    assert_eq!(
        stat(&body, &["delta", "untouched", "total", "risk_accepted"]),
        1
    );
    assert_eq!(stat(&body, &["before", "total", "risk_accepted"]), 1);
    assert_eq!(stat(&body, &["after", "total", "risk_accepted"]), 1);

    // 2: missing -> closed and the acceptance is removed.
    let (_, body) = reimport(
        &fake,
        &fields,
        Some(report(vec![finding("CVE-1 a 1", "High")])),
    )
    .await;
    assert_eq!(stat(&body, &["delta", "closed", "total", "total"]), 1);
    let (_, f) = get(&fake, &format!("/api/v2/findings/{}/", accepted.id)).await;
    assert_eq!(f["risk_accepted"], false);
    assert_eq!(f["is_mitigated"], true);
    assert_eq!(f["display_status"], "Inactive, Mitigated");
    assert_eq!(f["accepted_risks"], json!([]));

    // 3: back -> reactivated as plain active.
    let (_, body) = reimport(&fake, &fields, Some(both)).await;
    assert_eq!(stat(&body, &["delta", "reactivated", "total", "total"]), 1);
    let back = fake
        .findings()
        .into_iter()
        .find(|f| f.id == accepted.id)
        .unwrap();
    assert!(back.active && !back.risk_accepted && !back.is_mitigated);
}

#[tokio::test]
async fn missing_test_title_merges_into_latest_test_of_that_type() {
    let fake = DojoFake::start().await;
    let (_, a) = reimport(
        &fake,
        &target("p", "e", "first"),
        Some(report(vec![finding("A 1", "Low")])),
    )
    .await;
    let (_, b) = reimport(
        &fake,
        &target("p", "e", "second"),
        Some(report(vec![finding("B 1", "Low")])),
    )
    .await;
    let untitled: Vec<(&str, &str)> = target("p", "e", "")
        .into_iter()
        .filter(|(k, _)| *k != "test_title")
        .collect();
    let (status, c) = reimport(&fake, &untitled, Some(report(vec![finding("C 1", "Low")]))).await;
    assert_eq!(status, 201);
    assert_eq!(
        c["test_id"], b["test_id"],
        "merged into the most recent test"
    );
    assert_ne!(c["test_id"], a["test_id"]);
    assert_eq!(fake.tests().len(), 2);
    // ...and since no service was sent, that closed the unrelated test's finding.
    assert_eq!(stat(&c, &["delta", "closed", "total", "total"]), 1);
    assert_eq!(stat(&c, &["delta", "created", "total", "total"]), 1);
}

#[tokio::test]
async fn findings_list_paging_and_filters() {
    let fake = DojoFake::start().await;
    let findings: Vec<Value> = (0..30)
        .map(|i| {
            let mut f = finding(&format!("CVE-{i} pkg 1"), "Medium");
            f["unique_id_from_tool"] = json!(format!("uid-{i}"));
            f
        })
        .collect();
    let (_, body) = reimport(&fake, &target("p", "e", "t"), Some(report(findings))).await;
    let test_id = body["test_id"].as_u64().unwrap();

    let (status, page1) = get(&fake, &format!("/api/v2/findings/?test={test_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(page1["count"], 30);
    assert_eq!(page1["results"].as_array().unwrap().len(), 25);
    assert_eq!(page1["previous"], Value::Null);
    assert_eq!(
        page1["next"],
        json!(format!(
            "{}/api/v2/findings/?limit=25&offset=25&test={test_id}",
            fake.url()
        ))
    );
    let ids: Vec<u64> = page1["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_u64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ordered by id");
    let first = &page1["results"][0];
    assert_eq!(first["numerical_severity"], "S2");
    assert_eq!(first["display_status"], "Active");
    assert!(first["hash_code"].as_str().unwrap().len() == 64);

    let (_, page2) = get(
        &fake,
        &format!("/api/v2/findings/?test={test_id}&limit=25&offset=25"),
    )
    .await;
    assert_eq!(page2["results"].as_array().unwrap().len(), 5);
    assert_eq!(page2["next"], Value::Null);
    assert_eq!(
        page2["previous"],
        json!(format!(
            "{}/api/v2/findings/?limit=25&test={test_id}",
            fake.url()
        ))
    );
    let (_, small) = get(
        &fake,
        &format!("/api/v2/findings/?test={test_id}&limit=10&offset=20"),
    )
    .await;
    assert_eq!(
        small["previous"],
        json!(format!(
            "{}/api/v2/findings/?limit=10&offset=10&test={test_id}",
            fake.url()
        ))
    );

    // unique_id_from_tool is an icontains filter: "uid-1" also matches uid-10..uid-19.
    let (_, by_uid) = get(&fake, "/api/v2/findings/?unique_id_from_tool=uid-1").await;
    assert_eq!(by_uid["count"], 11);
    let (_, exact) = get(&fake, "/api/v2/findings/?unique_id_from_tool=uid-29").await;
    assert_eq!(exact["count"], 1);
    assert_eq!(exact["results"][0]["unique_id_from_tool"], "uid-29");

    // A misspelled filter is ignored: the result widens.
    let (status, all) = get(&fake, "/api/v2/findings/?tset=999&bogus_filter=zzz").await;
    assert_eq!(status, 200);
    assert_eq!(all["count"], 30);
    let (_, active) = get(
        &fake,
        &format!("/api/v2/findings/?test={test_id}&active=false"),
    )
    .await;
    assert_eq!(active["count"], 0);
}

#[tokio::test]
async fn status_and_throttle_faults_are_not_processed() {
    let fake = DojoFake::start().await;
    let file = report(vec![finding("CVE-1 a 1", "High")]);

    fake.push_fault(Fault::Status(500));
    let (status, body) = reimport(&fake, &target("p", "e", "t"), Some(file.clone())).await;
    assert_eq!(status, 500);
    assert_eq!(
        body["message"],
        "Internal server error, check logs for details"
    );
    assert!(body["pro"].is_array());
    assert!(fake.products().is_empty());

    fake.push_fault(Fault::Status(502));
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v2/findings/", fake.url()))
        .header("Authorization", auth())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 502);
    assert!(resp.text().await.unwrap().contains("502 Bad Gateway"));

    // Faults come before authentication.
    fake.push_fault(Fault::TooManyRequests {
        retry_after_secs: 7,
    });
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v2/findings/", fake.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");

    // Path-scoped faults wait for a matching request; FIFO order otherwise.
    fake.push_fault_for("/api/v2/reimport-scan/", Fault::Status(503));
    let (status, _) = get(&fake, "/api/v2/findings/").await;
    assert_eq!(status, 200);
    let (status, _) = reimport(&fake, &target("p", "e", "t"), Some(file.clone())).await;
    assert_eq!(status, 503);
    let (status, _) = reimport(&fake, &target("p", "e", "t"), Some(file)).await;
    assert_eq!(status, 201);

    let log = fake.log();
    let statuses: Vec<u16> = log.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![500, 502, 429, 200, 503, 201]);
    // Unprocessed requests are logged with what the client sent.
    assert_eq!(
        log[0].form.get("product_name").map(String::as_str),
        Some("p")
    );
    assert!(log[0].file.is_some());
    assert_eq!(log[2].path, "/api/v2/findings/");
    let last = fake.log().pop().unwrap();
    assert_eq!(
        last.form.get("scan_type").map(String::as_str),
        Some(GENERIC)
    );
    assert!(last.file.is_some());
    fake.clear_log();
    assert!(fake.log().is_empty());
}

#[tokio::test]
async fn delay_fault_and_latency_slow_down_but_process() {
    let fake = DojoFake::start().await;
    fake.push_fault(Fault::Delay(Duration::from_millis(300)));
    let started = std::time::Instant::now();
    let (status, _) = reimport(
        &fake,
        &target("p", "e", "t"),
        Some(report(vec![finding("A 1", "Low")])),
    )
    .await;
    assert_eq!(status, 201);
    assert!(started.elapsed() >= Duration::from_millis(300));

    fake.set_latency(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let (status, _) = get(&fake, "/api/v2/findings/").await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn drop_before_processing_changes_nothing() {
    let fake = DojoFake::start().await;
    fake.push_fault(Fault::DropBeforeProcessing);
    let result = reimport_with(
        &reqwest::Client::new(),
        &fake,
        &target("p", "e", "t"),
        Some(report(vec![finding("A 1", "Low")])),
    )
    .await;
    assert!(
        result.is_err(),
        "the client sees a connection error: {result:?}"
    );
    assert!(fake.products().is_empty() && fake.findings().is_empty());
    let log = fake.log();
    assert_eq!(log.len(), 1);
    assert!(!log[0].answered);
}

#[tokio::test]
async fn drop_after_processing_applies_the_request() {
    let fake = DojoFake::start().await;
    fake.push_fault(Fault::DropAfterProcessing);
    let result = reimport_with(
        &reqwest::Client::new(),
        &fake,
        &target("p", "e", "t"),
        Some(report(vec![finding("A 1", "Low")])),
    )
    .await;
    assert!(result.is_err(), "no response: {result:?}");
    assert_eq!(fake.findings().len(), 1, "but the reimport happened");
    let log = fake.log();
    assert_eq!((log[0].status, log[0].answered), (201, false));

    // A retry of the same report is then an untouched reimport, not a new test.
    let (status, body) = reimport(
        &fake,
        &target("p", "e", "t"),
        Some(report(vec![finding("A 1", "Low")])),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(stat(&body, &["delta", "untouched", "total", "total"]), 1);
}

#[tokio::test]
async fn hang_after_processing_times_out_with_state_applied() {
    let fake = DojoFake::start().await;
    fake.push_fault(Fault::HangAfterProcessing);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let result = reimport_with(
        &client,
        &fake,
        &target("p", "e", "t"),
        Some(report(vec![finding("A 1", "Low")])),
    )
    .await;
    let err = result.expect_err("the request hangs");
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(fake.findings().len(), 1);
    // The server keeps answering other connections.
    let (status, _) = get(&fake, "/api/v2/findings/").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn racing_first_reimports_create_duplicate_engagements() {
    let fake = DojoFake::start().await;
    fake.set_create_latency(Duration::from_millis(300));
    let (fields_a, fields_b) = (
        target("p", "shared", "repo-a"),
        target("p", "shared", "repo-b"),
    );
    let a = reimport(&fake, &fields_a, Some(report(vec![finding("A 1", "Low")])));
    let b = reimport(&fake, &fields_b, Some(report(vec![finding("B 1", "Low")])));
    let ((sa, ba), (sb, bb)) = tokio::join!(a, b);
    assert_eq!((sa, sb), (201, 201));
    assert_eq!(fake.products().len(), 1, "product names are unique");
    let engagements = fake.engagements();
    assert_eq!(engagements.len(), 2, "{engagements:?}");
    assert!(engagements.iter().all(|e| e.name == "shared"));
    assert_ne!(ba["engagement_id"], bb["engagement_id"]);

    // Without the race, the latest engagement of that name is reused.
    fake.set_create_latency(Duration::ZERO);
    let (_, c) = reimport(
        &fake,
        &target("p", "shared", "repo-c"),
        Some(report(vec![])),
    )
    .await;
    let latest = engagements.iter().map(|e| e.id).max().unwrap();
    assert_eq!(c["engagement_id"], json!(latest));
    assert_eq!(fake.engagements().len(), 2);
}

#[tokio::test]
async fn fake_helpers_match_the_api() {
    let fake = DojoFake::start().await;
    let (_, body) = reimport(
        &fake,
        &target("p", "e", "t"),
        Some(report(vec![finding("A 1", "Low"), finding("B 1", "Low")])),
    )
    .await;
    let test_id = body["test_id"].as_u64().unwrap();
    let ids: Vec<u64> = fake
        .findings_of_test(test_id)
        .iter()
        .map(|f| f.id)
        .collect();
    fake.accept_risk(&ids[..1]);
    fake.mark_false_positive(ids[1]);
    let (_, f0) = get(&fake, &format!("/api/v2/findings/{}/", ids[0])).await;
    assert_eq!(f0["risk_accepted"], true);
    assert_eq!(f0["active"], false);
    let (_, f1) = get(&fake, &format!("/api/v2/findings/{}/", ids[1])).await;
    assert_eq!(f1["false_p"], true);
    assert_eq!(f1["display_status"], "Inactive, False Positive");

    let (_, products) = get(&fake, "/api/v2/products/?name=p").await;
    assert_eq!(products["count"], 1);
    let product_id = products["results"][0]["id"].as_u64().unwrap();
    let (_, engagements) = get(
        &fake,
        &format!("/api/v2/engagements/?name=e&product={product_id}"),
    )
    .await;
    assert_eq!(engagements["count"], 1);
    assert_eq!(engagements["results"][0]["id"], body["engagement_id"]);
}

#[tokio::test]
async fn fake_serves_even_when_the_test_runtime_blocks() {
    use std::io::{Read, Write};
    let fake = DojoFake::start().await;
    let addr = fake.url().trim_start_matches("http://").to_string();
    // Blocking I/O on the test's own current-thread runtime, as a test that waits for
    // a client subprocess would do: the fake has its own runtime and still answers.
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "GET /api/v2/findings/ HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Token {}\r\nConnection: close\r\n\r\n",
        DojoFake::TOKEN
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"count\":0"), "{response}");
}

/// Not in the research file; follows `process_matched_special_status_finding` in the
/// 3.2.0 reimporter: a false positive that the report still contains is neither
/// "untouched" nor "reactivated", so close_old_findings mitigates it.
#[tokio::test]
async fn false_positive_still_in_report_gets_mitigated() {
    let fake = DojoFake::start().await;
    let fields = target("p", "e", "t");
    let file = report(vec![finding("A 1", "Low"), finding("B 1", "Low")]);
    let (_, body) = reimport(&fake, &fields, Some(file.clone())).await;
    let test_id = body["test_id"].as_u64().unwrap();
    let fp = fake.findings_of_test(test_id)[0].id;
    fake.mark_false_positive(fp);
    let (_, body) = reimport(&fake, &fields, Some(file.clone())).await;
    assert_eq!(stat(&body, &["delta", "closed", "total", "false_p"]), 1);
    assert_eq!(stat(&body, &["delta", "untouched", "total", "total"]), 1);
    let f = fake.findings().into_iter().find(|f| f.id == fp).unwrap();
    assert!(f.false_p && f.is_mitigated && !f.active);
    // Once mitigated it is left alone: neither closed again nor reactivated.
    let (_, body) = reimport(&fake, &fields, Some(file)).await;
    assert_eq!(stat(&body, &["delta", "closed", "total", "total"]), 0);
    assert_eq!(stat(&body, &["delta", "reactivated", "total", "total"]), 0);
}

#[tokio::test]
async fn trivy_operator_reports_need_the_derived_service_to_close() {
    let fake = DojoFake::start().await;
    let cr = |vulns: &[(&str, &str)]| {
        json!({
            "kind": "VulnerabilityReport",
            "metadata": {"name": "pod-ubuntu-ubuntu", "namespace": "lbc", "labels": {
                "trivy-operator.resource.namespace": "lbc",
                "trivy-operator.resource.kind": "Pod",
                "trivy-operator.resource.name": "ubuntu",
                "trivy-operator.container.name": "ubuntu"}},
            "report": {"vulnerabilities": vulns.iter().map(|(id, sev)| json!({
                "vulnerabilityID": id, "resource": "libssl1.1", "installedVersion": "1.1.1f",
                "fixedVersion": "1.1.1g", "severity": sev, "title": "openssl bug",
                "primaryLink": format!("https://avd.aquasec.com/nvd/{id}"), "score": 5.0,
                "class": "os-pkgs", "target": "ubuntu:20.04", "packageType": "ubuntu"})).collect::<Vec<_>>()}
        })
        .to_string()
        .into_bytes()
    };
    let mut fields = target("p", "e", "workloads");
    fields[0] = ("scan_type", "Trivy Operator Scan");
    let with_service = with(fields.clone(), &[("service", "lbc/Pod/ubuntu/ubuntu")]);

    let (status, body) = reimport(
        &fake,
        &fields,
        Some(cr(&[("CVE-1", "MEDIUM"), ("CVE-2", "MEDIUM")])),
    )
    .await;
    assert_eq!(status, 201);
    let test_id = body["test_id"].as_u64().unwrap();
    let f = &fake.findings_of_test(test_id)[0];
    assert_eq!(f.service.as_deref(), Some("lbc/Pod/ubuntu/ubuntu"));
    assert_eq!(f.title, "CVE-1 libssl1.1 1.1.1f");
    assert_eq!(f.mitigation.as_deref(), Some("1.1.1g"));
    let (_, t) = get(&fake, &format!("/api/v2/tests/{test_id}/")).await;
    assert_eq!(
        t["hash_code_fields"],
        json!(["title", "severity", "vulnerability_ids", "description"])
    );

    // Without `service`, the removed vulnerability stays active (research step 3).
    let (_, body) = reimport(
        &fake,
        &fields,
        Some(cr(&[("CVE-1", "MEDIUM"), ("CVE-3", "HIGH")])),
    )
    .await;
    assert_eq!(stat(&body, &["delta", "created", "total", "total"]), 1);
    assert_eq!(stat(&body, &["delta", "closed", "total", "total"]), 0);
    // With the derived service it is closed (step 4).
    let (_, body) = reimport(
        &fake,
        &with_service,
        Some(cr(&[("CVE-1", "MEDIUM"), ("CVE-3", "HIGH")])),
    )
    .await;
    assert_eq!(stat(&body, &["delta", "closed", "total", "total"]), 1);
    // A JSON object without metadata yields no findings and closes everything (step 7).
    let (status, body) = reimport(&fake, &with_service, Some(br#"{"foo":"bar"}"#.to_vec())).await;
    assert_eq!(status, 201);
    assert_eq!(stat(&body, &["delta", "closed", "total", "total"]), 2);
    // A JSON array of integers is a 500.
    let (status, body) = reimport(&fake, &with_service, Some(b"[1, 2]".to_vec())).await;
    assert_eq!(status, 500);
    assert_eq!(
        body["message"],
        "Internal server error, check logs for details"
    );
}
