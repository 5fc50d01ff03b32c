//! What ships to clusters, against the real binary: the Helm chart's `config` values,
//! the plain manifests (the chart rendered by Helm, kept in sync by
//! scripts/check-manifests.sh), the Flux example and the configuration reference must
//! all be configurations `trivy-digest config check` accepts, and the Deployment, Service
//! and RBAC must agree with the config and with what the code does. Most tests need no
//! Helm: the chart's ConfigMap is `toYaml` of the values' `config` block (merged as Helm
//! merges values; in fleet mode with `store` from `store.postgres`), and the renders of
//! ci/ values files are kept in tests/fixtures/chart. Values the chart must refuse, and
//! variants without a ci/ file, are rendered by Helm's SDK from the virtualenv of
//! scripts/install-tools.sh (as scripts/check-manifests.sh does).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::cli::{Run, Workspace};
use trivy_digest::model::ReportKind;

const CHART: &str = "charts/trivy-digest";
const CONFIG_KEY: &str = "trivy-digest.yaml";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(text: &str, what: &str) -> Value {
    serde_saphyr::from_str::<Value>(text).unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn yaml_file(rel: &str) -> Value {
    yaml(&read(rel), rel)
}

/// `a.b.c` in a YAML/JSON value.
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .try_fold(v, |v, k| v.get(k))
        .unwrap_or(&Value::Null)
}

/// Helm's coalescing of values: maps merge key by key, anything else replaces, and
/// `null` removes the key.
fn coalesce(base: &Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            let mut out = b.clone();
            for (k, v) in o {
                if v.is_null() {
                    out.remove(k);
                } else {
                    let merged = match out.get(k) {
                        Some(existing) => coalesce(existing, v),
                        None => v.clone(),
                    };
                    out.insert(k.clone(), merged);
                }
            }
            Value::Object(out)
        }
        _ => over.clone(),
    }
}

fn chart_values() -> Value {
    yaml_file(&format!("{CHART}/values.yaml"))
}

/// The config file the chart mounts for these extra values.
fn chart_config_with(extra: &Value) -> Value {
    chart_config_of(&coalesce(&chart_values(), extra))
}

/// The config file the chart writes for these (merged) values: their `config`; in fleet
/// mode with `store` set to `store.postgres.url`, or left out when the URL comes from a
/// Secret (TRIVY_DIGEST_STORE).
fn chart_config_of(values: &Value) -> Value {
    let mut config = at(values, "config").clone();
    if at(values, "store.postgres.enabled") == true {
        let map = config.as_object_mut().expect("config is a mapping");
        match at(values, "store.postgres.url")
            .as_str()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            Some(url) => map.insert("store".into(), json!(url)),
            None => map.remove("store"),
        };
    }
    config
}

/// A workspace whose DefectDojo token comes from the environment, as in the cluster.
fn workspace() -> Workspace {
    let mut ws = Workspace::new();
    ws.env
        .push(("DEFECTDOJO_TOKEN".into(), "token-from-a-secret".into()));
    ws
}

/// `trivy-digest --config <config> config check`. The config is written as JSON, which
/// is YAML: exactly the data, whatever the source's formatting.
fn config_check(ws: &Workspace, config: &Value) -> Run {
    let path = ws.write(
        "config.yaml",
        &serde_json::to_string_pretty(config).expect("json"),
    );
    ws.run(&["--config", &path.display().to_string(), "config", "check"])
}

fn assert_valid(what: &str, config: &Value) -> Value {
    let ws = workspace();
    let run = config_check(&ws, config);
    assert_eq!(
        run.code,
        0,
        "{what}: trivy-digest rejects the config the chart would mount:\n{}\n--- config:\n{}",
        run.stderr,
        serde_json::to_string_pretty(config).unwrap_or_default()
    );
    yaml(&run.stdout, "config check output")
}

/// The documents of the plain manifests, which are the chart rendered by Helm.
fn manifests() -> Vec<Value> {
    let text = read("examples/manifests/trivy-digest.yaml");
    serde_saphyr::from_multiple::<Value>(&text)
        .expect("examples/manifests/trivy-digest.yaml")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn object<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "exactly one {kind} in the manifests");
    found[0]
}

fn objects<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn port_of(listen: &str) -> u64 {
    listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("run.listen {listen:?} has no port"))
}

fn duration(v: &Value) -> Option<Duration> {
    v.as_str().and_then(|s| humantime::parse_duration(s).ok())
}

#[test]
fn chart_default_config_is_valid() {
    // The one value without a default: every cluster has its own name.
    let config = chart_config_with(&json!({"config": {"cluster": "staging"}}));
    let checked = assert_valid("charts/trivy-digest/values.yaml", &config);
    assert_eq!(checked["store"], config["store"]);
    assert_eq!(checked["cluster"], "staging");
}

#[test]
fn chart_defaults_without_a_cluster_name_are_refused_by_name() {
    // The chart refuses this too (scripts/chart_tool.py lint); a config written by hand
    // from values.yaml must fail the same way, naming the field.
    let ws = workspace();
    let run = config_check(&ws, &chart_config_with(&json!({})));
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("cluster: must not be empty"),
        "{}",
        run.stderr
    );
}

#[test]
fn chart_ci_values_configs_are_valid() {
    let dir = root().join(CHART).join("ci");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("charts/trivy-digest/ci")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with("-values.yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "ci values files: {files:?}");
    let mut fleet = 0;
    for f in files {
        let extra = yaml(&std::fs::read_to_string(&f).expect("read"), "ci values");
        let name = f.display().to_string();
        let config = chart_config_with(&extra);
        // With configFrom the chart mounts another file: only its store path is read.
        if extra.get("configFrom").is_none() {
            assert_valid(&name, &config);
            // The model above is what Helm rendered.
            let stem = f
                .file_name()
                .expect("name")
                .to_string_lossy()
                .replace("-values.yaml", "");
            let (docs, _) = rendered(&stem);
            assert_eq!(
                rendered_config(&docs),
                config,
                "{name}: the rendered config file"
            );
        }
        let store = config["store"].as_str().expect("store");
        if at(&extra, "store.postgres.enabled") == true {
            fleet += 1;
            assert!(store.starts_with("postgres://"), "{name}: store {store}");
            continue;
        }
        let mount = at(&coalesce(&chart_values(), &extra), "persistence.mountPath")
            .as_str()
            .expect("persistence.mountPath")
            .to_owned();
        assert!(
            store.starts_with(&format!("{}/", mount.trim_end_matches('/'))),
            "{name}: store {store} is not on the volume at {mount}"
        );
    }
    assert!(fleet > 0, "a ci/ values file renders fleet mode");
}

/// The config file in rendered documents: a ConfigMap's `data` or a Secret's `stringData`.
fn rendered_config(docs: &[Value]) -> Value {
    let texts: Vec<&str> = docs
        .iter()
        .filter_map(|d| {
            d["data"][CONFIG_KEY]
                .as_str()
                .or(d["stringData"][CONFIG_KEY].as_str())
        })
        .collect();
    assert_eq!(texts.len(), 1, "one config file in the render");
    yaml(texts[0], "rendered config file")
}

#[test]
fn flux_helmrelease_config_is_valid() {
    let hr = yaml_file("examples/flux/helmrelease.yaml");
    assert_eq!(hr["kind"], "HelmRelease");
    assert_eq!(hr["spec"]["chart"]["spec"]["chart"], "trivy-digest");
    let values = &hr["spec"]["values"];
    assert!(values["config"].is_object(), "the HelmRelease sets config");
    let checked = assert_valid("examples/flux/helmrelease.yaml", &chart_config_with(values));
    assert_eq!(
        checked["defectdojo"]["token"], "<redacted>",
        "the token comes from the Secret"
    );
    assert!(
        values["secrets"]["defectdojo"]["existingSecret"].is_string(),
        "a defectdojo config needs the token Secret"
    );
    let hrepo = yaml_file("examples/flux/helmrepository.yaml");
    assert_eq!(hrepo["kind"], "HelmRepository");
    assert_eq!(
        hr["spec"]["chart"]["spec"]["sourceRef"]["name"],
        hrepo["metadata"]["name"]
    );
    let chart = yaml_file(&format!("{CHART}/Chart.yaml"));
    assert_eq!(
        hr["spec"]["chart"]["spec"]["version"], chart["version"],
        "the example installs this chart version"
    );
}

/// The plain manifests are the chart rendered by Helm with the Flux example's values:
/// their ConfigMap must be exactly those values' config merged over the chart's, which
/// is what the tests above check without Helm.
#[test]
fn manifests_config_is_the_values_config_verbatim() {
    let docs = manifests();
    let cm = object(&docs, "ConfigMap");
    let text = cm["data"][CONFIG_KEY]
        .as_str()
        .expect("the ConfigMap holds the config file");
    let rendered = yaml(text, "ConfigMap config");
    let hr = yaml_file("examples/flux/helmrelease.yaml");
    assert_eq!(
        rendered,
        chart_config_with(&hr["spec"]["values"]),
        "Helm's toYaml of the values' config is the config file"
    );
    assert_valid("examples/manifests ConfigMap", &rendered);
}

#[test]
fn configmap_template_is_the_config_verbatim() {
    let cm = read(&format!("{CHART}/templates/configmap.yaml"));
    assert!(
        cm.contains("toYaml $config") && cm.contains("$config := .Values.config"),
        "the ConfigMap must render .Values.config with toYaml:\n{cm}"
    );
    // Fleet mode changes `store` and nothing else (chart_config_of is the model).
    for line in cm.lines().filter(|l| l.contains("$config")) {
        let line = line.trim();
        assert!(
            [
                "{{- $config := .Values.config }}",
                "{{- $config = deepCopy .Values.config }}",
                "{{- $_ := set $config \"store\" . }}",
                "{{- $_ := unset $config \"store\" }}",
                "{{- toYaml $config | nindent 4 }}",
            ]
            .contains(&line),
            "configmap.yaml changes the config beyond fleet mode's store: {line}"
        );
    }
    for entry in std::fs::read_dir(root().join(CHART).join("templates")).expect("templates") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read template");
        assert!(
            !text.contains("tpl "),
            "{}: values must not be templated (config holds {{{{ }}}} mapping templates)",
            path.display()
        );
    }
    let helpers = read(&format!("{CHART}/templates/_helpers.tpl"));
    assert!(
        helpers.contains(&format!(
            "define \"trivy-digest.configFile\" -}}}}{CONFIG_KEY}"
        )),
        "the config file name is {CONFIG_KEY}"
    );
}

/// The rendered Deployment and Service use the port, store and config path of the
/// config, and the Pod is set up as `run` needs.
#[test]
fn manifests_agree_with_their_config() {
    let docs = manifests();
    let cm = object(&docs, "ConfigMap");
    let config = yaml(cm["data"][CONFIG_KEY].as_str().expect("config"), "config");
    let listen = config["run"]["listen"].as_str().unwrap_or("0.0.0.0:8080");
    let port = port_of(listen);

    let deploy = object(&docs, "Deployment");
    let pod = &deploy["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let ports = c["ports"].as_array().expect("ports");
    assert_eq!(ports[0]["name"], "http");
    assert_eq!(
        ports[0]["containerPort"], port,
        "container port = run.listen"
    );
    let svc = object(&docs, "Service");
    assert_eq!(
        svc["spec"]["ports"][0]["port"], port,
        "Service port = run.listen"
    );
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(
        svc["spec"]["selector"],
        deploy["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "http");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "http");

    // --config names the mounted ConfigMap's key.
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("arg"))
        .collect();
    assert_eq!(args[0], "run");
    let config_path = args
        .iter()
        .position(|a| *a == "--config")
        .map(|i| args[i + 1])
        .expect("--config");
    let mounts = c["volumeMounts"].as_array().expect("mounts");
    let volumes = pod["volumes"].as_array().expect("volumes");
    let mount_of = |dir_of: &str| -> (&Value, &Value) {
        let m = mounts
            .iter()
            .filter(|m| dir_of.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap_or(""))))
            .max_by_key(|m| m["mountPath"].as_str().unwrap_or("").len())
            .unwrap_or_else(|| panic!("nothing mounted above {dir_of}"));
        let v = volumes
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap_or_else(|| panic!("volume {}", m["name"]));
        (m, v)
    };
    let (m, v) = mount_of(config_path);
    assert_eq!(
        format!("{}/{CONFIG_KEY}", m["mountPath"].as_str().expect("path")),
        config_path
    );
    assert_eq!(v["configMap"]["name"], cm["metadata"]["name"]);
    assert_eq!(m["readOnly"], true);

    // The store is on the data volume (a PVC here), writable.
    let store = config["store"].as_str().expect("store");
    let (m, v) = mount_of(store);
    assert_ne!(m["readOnly"], true, "the store's volume is writable");
    let pvc = object(&docs, "PersistentVolumeClaim");
    assert_eq!(
        v["persistentVolumeClaim"]["claimName"],
        pvc["metadata"]["name"]
    );
    // SQLite's temporary files.
    assert!(mounts.iter().any(|m| m["mountPath"] == "/tmp"));

    // Leader election identity and Events.
    let env = c["env"].as_array().expect("env");
    let field_ref = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .map(|e| e["valueFrom"]["fieldRef"]["fieldPath"].clone())
    };
    assert_eq!(field_ref("POD_NAME"), Some(json!("metadata.name")));
    assert_eq!(
        field_ref("POD_NAMESPACE"),
        Some(json!("metadata.namespace"))
    );
    let token_file = env
        .iter()
        .find(|e| e["name"] == "DEFECTDOJO_TOKEN_FILE")
        .and_then(|e| e["value"].as_str())
        .expect("DEFECTDOJO_TOKEN_FILE");
    let (_, v) = mount_of(token_file);
    assert!(
        v["secret"]["secretName"].is_string(),
        "the token is a mounted Secret"
    );

    // Hardening (trivy config checks the rest).
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(
        pod["automountServiceAccountToken"], true,
        "run needs the API"
    );
    let sa = object(&docs, "ServiceAccount");
    assert_eq!(pod["serviceAccountName"], sa["metadata"]["name"]);

    // The pushes in flight finish before the kubelet kills the process.
    let grace = duration(&config["run"]["shutdown_grace"]).unwrap_or(Duration::from_secs(20));
    let kill = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace");
    assert!(
        Duration::from_secs(kill) > grace,
        "terminationGracePeriodSeconds {kill} <= run.shutdown_grace {grace:?}"
    );
}

#[test]
fn chart_values_agree_with_the_image_and_the_binary() {
    let values = chart_values();
    let config = &values["config"];
    // The Dockerfile's user is the chart's.
    let dockerfile = read("Dockerfile");
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the Dockerfile")
        .trim();
    let uid = values["securityContext"]["runAsUser"]
        .as_u64()
        .expect("uid");
    let gid = values["securityContext"]["runAsGroup"]
        .as_u64()
        .expect("gid");
    assert_eq!(user, format!("{uid}:{gid}"));
    assert_eq!(values["podSecurityContext"]["runAsUser"], uid);
    assert!(
        uid > 10000 && gid > 10000,
        "a UID/GID outside the host's range"
    );
    let expose = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("EXPOSE");
    assert_eq!(
        expose.trim().parse::<u64>().ok(),
        Some(port_of(config["run"]["listen"].as_str().expect("listen")))
    );
    // The terminationGracePeriodSeconds covers the shutdown grace.
    let grace = duration(&config["run"]["shutdown_grace"]).expect("shutdown_grace");
    let kill = values["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace");
    assert!(Duration::from_secs(kill) > grace);
    // The store is on the volume, not the read-only root file system.
    let mount = values["persistence"]["mountPath"]
        .as_str()
        .expect("mountPath");
    assert!(
        config["store"]
            .as_str()
            .expect("store")
            .starts_with(&format!("{mount}/"))
    );
    // The chart's Lease is the binary's default one.
    let ws = workspace();
    let defaults = yaml(
        &config_check(&ws, &json!({})).stdout,
        "default config check output",
    );
    assert_eq!(
        config["run"]["leader_election"]["lease_name"],
        defaults["run"]["leader_election"]["lease_name"]
    );
}

/// RBAC grants what the code calls and nothing else (DESIGN.md §8).
#[test]
fn rbac_is_exactly_what_the_controller_uses() {
    let docs = manifests();
    let rules = |o: &Value| -> BTreeSet<String> {
        o["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .flat_map(|r| {
                let list = |k: &str| -> Vec<String> {
                    r[k].as_array()
                        .map(|a| {
                            a.iter()
                                .map(|x| x.as_str().expect("str").to_owned())
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let (groups, resources, verbs, names) = (
                    list("apiGroups"),
                    list("resources"),
                    list("verbs"),
                    list("resourceNames"),
                );
                let mut out = Vec::new();
                for g in &groups {
                    for res in &resources {
                        for v in &verbs {
                            out.push(format!(
                                "{g}/{res}:{v}{}",
                                if names.is_empty() {
                                    String::new()
                                } else {
                                    format!("[{}]", names.join(","))
                                }
                            ));
                        }
                    }
                }
                out
            })
            .collect()
    };
    let mut want: BTreeSet<String> = BTreeSet::new();
    for kind in ReportKind::ALL {
        for v in ["get", "list", "watch"] {
            want.insert(format!("aquasecurity.github.io/{}:{v}", kind.plural()));
        }
    }
    for res in ["namespaces", "pods"] {
        for v in ["get", "list", "watch"] {
            want.insert(format!("/{res}:{v}"));
        }
    }
    assert_eq!(rules(object(&docs, "ClusterRole")), want, "ClusterRole");

    let config = yaml(
        object(&docs, "ConfigMap")["data"][CONFIG_KEY]
            .as_str()
            .expect("config"),
        "config",
    );
    let lease = config["run"]["leader_election"]["lease_name"]
        .as_str()
        .unwrap_or("trivy-digest");
    let want: BTreeSet<String> = [
        "coordination.k8s.io/leases:create".to_owned(),
        format!("coordination.k8s.io/leases:get[{lease}]"),
        format!("coordination.k8s.io/leases:update[{lease}]"),
        // kube's event Recorder: events.k8s.io/v1, a repeat is patched into a series.
        "events.k8s.io/events:create".to_owned(),
        "events.k8s.io/events:patch".to_owned(),
    ]
    .into_iter()
    .collect();
    let roles = objects(&docs, "Role");
    assert_eq!(roles.len(), 1);
    assert_eq!(rules(roles[0]), want, "Role");

    let sa = object(&docs, "ServiceAccount");
    for binding in objects(&docs, "ClusterRoleBinding")
        .into_iter()
        .chain(objects(&docs, "RoleBinding"))
    {
        assert_eq!(binding["subjects"][0]["name"], sa["metadata"]["name"]);
        assert_eq!(
            binding["subjects"][0]["namespace"],
            sa["metadata"]["namespace"]
        );
    }
}

/// The chart relies on the binary refusing keys it does not know: a config written for
/// another version fails at start, with the key named, instead of being half applied.
#[test]
fn unknown_config_keys_are_rejected() {
    let ws = workspace();
    for (config, key) in [
        (
            coalesce(&chart_config_with(&json!({})), &json!({"defectdjo": {}})),
            "defectdjo",
        ),
        (
            coalesce(
                &chart_config_with(&json!({})),
                &json!({"run": {"listen_port": 9090}}),
            ),
            "listen_port",
        ),
        (
            coalesce(
                &chart_config_with(&json!({})),
                &json!({"defectdojo": {"url": "https://x", "token": "inline"}}),
            ),
            "token",
        ),
    ] {
        let run = config_check(&ws, &config);
        assert_ne!(run.code, 0, "{key} must be rejected");
        assert!(run.stderr.contains(key), "{key}: {}", run.stderr);
    }
}

/// Maps whose keys are names the user chooses, documented as `<name>`.
const NAMED_MAPS: &[&str] = &["teams.routes"];

/// Leaf keys (`a.b.c`) of a YAML mapping; scalars, null, `[]` and `{}` are leaves. A
/// list of mappings is a key of its own and its items' keys are `list[].key`; a map of
/// user-chosen names is a key of its own and its entries' keys are `map.<name>.key`.
fn leaves(v: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Object(m) if NAMED_MAPS.contains(&prefix) => {
            out.insert(prefix.to_owned(), v.clone());
            for item in m.values() {
                leaves(item, &join("<name>"), out);
            }
        }
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                leaves(v, &join(k), out);
            }
        }
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            out.insert(prefix.to_owned(), v.clone());
            for item in items {
                leaves(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {
            out.insert(prefix.to_owned(), v.clone());
        }
    }
}

/// Rows of the `| Key | Default | Meaning |` tables: key → default cell.
fn reference_rows(doc: &str) -> BTreeMap<String, String> {
    let mut rows = BTreeMap::new();
    let mut in_table = false;
    for line in doc.lines() {
        let line = line.trim();
        if line == "| Key | Default | Meaning |" {
            in_table = true;
            continue;
        }
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        if !in_table || line.starts_with("|---") {
            continue;
        }
        let cells: Vec<String> = line
            .replace("\\|", "\u{0}")
            .split('|')
            .map(|c| c.trim().replace('\u{0}', "|"))
            .collect();
        let key = cells[1].trim_matches('`').to_owned();
        assert!(
            !rows.contains_key(&key),
            "docs/configuration.md: {key} has two rows"
        );
        rows.insert(key, cells[2].clone());
    }
    rows
}

/// docs/configuration.md documents every key the binary knows, with the binary's
/// defaults, and its complete example is valid.
#[test]
fn configuration_reference_covers_every_key() {
    let doc = read("docs/configuration.md");
    let example = doc
        .split("## Complete example")
        .nth(1)
        .and_then(|s| s.split("```yaml\n").nth(1))
        .and_then(|s| s.split("\n```").next())
        .expect("a ```yaml block under ## Complete example");
    let mut example = yaml(example, "the complete example");
    // The secrets the example names (mounted Secret files, environment variables) exist
    // in the workspace instead.
    let mut ws = workspace();
    fn provide_secrets(v: &mut Value, ws: &mut Workspace, files: &mut usize) {
        match v {
            Value::Object(m) => {
                for (k, v) in m.iter_mut() {
                    // `webhook.url_file`: a URL too.
                    let secret = if k.contains("webhook") || k.starts_with("url_") {
                        "https://hooks.slack.invalid/services/T0/B0/secret"
                    } else {
                        "secret-from-a-file"
                    };
                    match v.as_str() {
                        Some(_) if k.ends_with("_file") => {
                            *files += 1;
                            let p = ws.write(&format!("secrets/{files}-{k}"), secret);
                            *v = Value::String(p.display().to_string());
                        }
                        Some(name) if k.ends_with("_env") => {
                            ws.env.push((name.to_owned(), secret.to_owned()));
                        }
                        _ => provide_secrets(v, ws, files),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| provide_secrets(i, ws, files)),
            _ => {}
        }
    }
    provide_secrets(&mut example, &mut ws, &mut 0);
    let run = config_check(&ws, &example);
    assert_eq!(
        run.code, 0,
        "the complete example is invalid:\n{}",
        run.stderr
    );
    let printed = yaml(&run.stdout, "config check output");
    for (k, v) in printed.as_object().expect("mapping") {
        assert!(
            !v.is_null(),
            "docs/configuration.md: the complete example must set the optional section `{k}`, \
             so that its keys are printed and checked"
        );
    }
    let mut known = BTreeMap::new();
    leaves(&printed, "", &mut known);

    let rows = reference_rows(&doc);
    let missing: Vec<&String> = known.keys().filter(|k| !rows.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md has no row for {missing:?}: document each new key"
    );
    let stale: Vec<&String> = rows.keys().filter(|k| !known.contains_key(*k)).collect();
    assert!(
        stale.is_empty(),
        "docs/configuration.md documents keys trivy-digest does not have: {stale:?}"
    );

    // Defaults: what the binary uses with an empty file (the export turned on by the
    // environment, to print its section), then with the least that prints the other
    // optional sections and list items (the keys given there have no default).
    let mut ws = workspace();
    ws.env
        .push(("DEFECTDOJO_URL".into(), "https://defectdojo.invalid".into()));
    let mut defaults = BTreeMap::new();
    let run = config_check(&ws, &json!({}));
    assert_eq!(run.code, 0, "{}", run.stderr);
    leaves(&yaml(&run.stdout, "defaults"), "", &mut defaults);
    let minimal = json!({
        "smtp": {"host": "smtp.invalid", "from": "trivy-digest@example.invalid"},
        "teams": {"routes": {"team": {}}},
        "alerts": {
            "channels": [{"name": "channel", "email": ["security@example.invalid"]}],
            "ignore": [{"id": "CVE-2026-0001", "reason": "a reason"}],
        },
    });
    let mut given = BTreeMap::new();
    leaves(&minimal, "", &mut given);
    let run = config_check(&ws, &minimal);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut more = BTreeMap::new();
    leaves(&yaml(&run.stdout, "defaults"), "", &mut more);
    for (k, v) in more {
        if !given.contains_key(&k) {
            defaults.entry(k).or_insert(v);
        }
    }
    // Set from the environment in these runs: they have no default.
    let from_env = ["defectdojo.url", "defectdojo.token"];
    for (key, default) in &defaults {
        let Some(cell) = rows.get(key) else {
            // An optional section left out (`smtp: null`); its keys are checked above.
            let prefix = format!("{key}.");
            assert!(
                default.is_null() && rows.keys().any(|r| r.starts_with(&prefix)),
                "docs/configuration.md has no row for {key}"
            );
            continue;
        };
        let code = cell
            .strip_prefix('`')
            .and_then(|c| c.strip_suffix('`'))
            .filter(|c| !c.contains('`'));
        match code {
            Some(code) => {
                // `0 0 8 1 * *` is no YAML (`*` is an alias): such a cell is a string.
                let written = serde_saphyr::from_str::<Value>(code)
                    .unwrap_or_else(|_| Value::String(code.to_owned()));
                let same = written == *default
                    || matches!((duration(&written), duration(default)), (Some(a), Some(b)) if a == b);
                assert!(
                    same,
                    "docs/configuration.md: {key} defaults to {default}, the reference says {cell}"
                );
            }
            None => assert!(
                default.is_null() || from_env.contains(&key.as_str()),
                "docs/configuration.md: {key} defaults to {default}; write it as `{default}`"
            ),
        }
    }
}

/// The chart rendered by Helm with `ci/<name>-values.yaml` (tests/fixtures/chart, kept
/// in sync by scripts/check-manifests.sh), with those values merged over the chart's.
fn rendered(name: &str) -> (Vec<Value>, Value) {
    let rel = format!("tests/fixtures/chart/{name}.yaml");
    let docs: Vec<Value> = serde_saphyr::from_multiple::<Value>(&read(&rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect();
    let ci = yaml_file(&format!("{CHART}/ci/{name}-values.yaml"));
    (docs, coalesce(&chart_values(), &ci))
}

/// Every ci/ values file has its render (and no render is left without one).
#[test]
fn every_ci_values_file_has_a_render() {
    let names = |dir: &str, suffix: &str| -> BTreeSet<String> {
        std::fs::read_dir(root().join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .filter_map(|e| {
                let name = e.expect("entry").file_name().to_string_lossy().into_owned();
                name.strip_suffix(suffix).map(str::to_owned)
            })
            .collect()
    };
    assert_eq!(
        names(&format!("{CHART}/ci"), "-values.yaml"),
        names("tests/fixtures/chart", ".yaml"),
        "run scripts/check-manifests.sh --update"
    );
}

fn container(deploy: &Value) -> &Value {
    &deploy["spec"]["template"]["spec"]["containers"][0]
}

/// With no registry values the image is `repository:appVersion`, as before the split;
/// `image.registry` prefixes the repository and `global.imageRegistry` (a mirror) wins.
#[test]
fn image_reference_from_registry_repository_and_mirror() {
    let chart = yaml_file(&format!("{CHART}/Chart.yaml"));
    let app = chart["appVersion"].as_str().expect("appVersion");
    let (docs, values) = rendered("default");
    assert_eq!(values["image"]["registry"], "");
    assert_eq!(
        container(object(&docs, "Deployment"))["image"],
        format!("registry.example.com/trivy-digest:{app}")
    );
    let (docs, values) = rendered("conventions");
    assert_eq!(values["image"]["registry"], "registry.example.com");
    let mirror = values["global"]["imageRegistry"].as_str().expect("mirror");
    let repo = values["image"]["repository"].as_str().expect("repository");
    assert_eq!(
        container(object(&docs, "Deployment"))["image"],
        format!("{mirror}/{repo}:{app}")
    );
    let (docs, values) = rendered("full");
    assert_eq!(
        container(object(&docs, "Deployment"))["image"],
        format!(
            "registry.example.com/trivy-digest@{}",
            values["image"]["digest"].as_str().expect("digest")
        )
    );
}

/// `namespaceOverride` reaches every namespaced object, the ServiceMonitor's target
/// namespace and the RBAC subjects; cluster-scoped objects have no namespace.
#[test]
fn namespace_override_reaches_every_namespaced_object() {
    let (docs, values) = rendered("conventions");
    let ns = values["namespaceOverride"]
        .as_str()
        .expect("namespaceOverride");
    assert_ne!(
        ns, "trivy-digest",
        "the override differs from the release namespace"
    );
    let cluster_scoped = ["ClusterRole", "ClusterRoleBinding"];
    for d in &docs {
        let kind = d["kind"].as_str().expect("kind");
        let name = d["metadata"]["name"].as_str().expect("name");
        if cluster_scoped.contains(&kind) {
            assert!(d["metadata"]["namespace"].is_null(), "{kind} {name}");
        } else {
            assert_eq!(d["metadata"]["namespace"], ns, "{kind} {name}");
        }
        for s in d["subjects"].as_array().into_iter().flatten() {
            assert_eq!(s["namespace"], ns, "{kind} {name}: subject");
        }
    }
    let sm = object(&docs, "ServiceMonitor");
    assert_eq!(sm["spec"]["namespaceSelector"]["matchNames"], json!([ns]));
    // The default rule selector names the override too (here a custom one is set).
    let (docs, _) = rendered("full");
    let rule = object(&docs, "PrometheusRule");
    let expr = rule["spec"]["groups"][0]["rules"][0]["expr"]
        .as_str()
        .expect("expr");
    assert!(
        expr.contains("namespace=\"trivy-digest\", job=\"trivy-digest\""),
        "{expr}"
    );
}

/// `configFrom.existingConfigMap`: the chart renders no config object of its own and
/// mounts the named one's key as the file `--config` names.
#[test]
fn existing_config_map_replaces_the_charts_config() {
    let (docs, values) = rendered("conventions");
    let from = &values["configFrom"];
    let name = from["existingConfigMap"]
        .as_str()
        .expect("existingConfigMap");
    for d in &docs {
        let holds_config = ["data", "stringData"]
            .iter()
            .any(|f| !d[*f][CONFIG_KEY].is_null());
        assert!(
            !holds_config,
            "{} {} holds a config file",
            d["kind"], d["metadata"]["name"]
        );
    }
    let deploy = object(&docs, "Deployment");
    let c = container(deploy);
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let config_path = args
        .iter()
        .position(|a| *a == "--config")
        .map(|i| args[i + 1])
        .expect("--config");
    let mount = c["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["name"] == "config")
        .expect("config mount");
    let volume = deploy["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "config")
        .expect("config volume");
    assert_eq!(volume["configMap"]["name"], name);
    assert_eq!(volume["configMap"]["items"][0]["key"], from["key"]);
    assert_eq!(
        format!(
            "{}/{}",
            mount["mountPath"].as_str().expect("mountPath"),
            volume["configMap"]["items"][0]["path"]
                .as_str()
                .expect("path")
        ),
        config_path
    );
    // No config object of the chart's to hash: the annotation is constant.
    let (default_docs, _) = rendered("default");
    assert!(
        !objects(&default_docs, "ConfigMap").is_empty(),
        "by default the chart renders its ConfigMap"
    );
}

/// revisionHistoryLimit and serviceAccount.automount reach the Deployment; the
/// ServiceAccount itself never mounts its token.
#[test]
fn deployment_knobs() {
    for name in ["default", "full", "conventions"] {
        let (docs, values) = rendered(name);
        let deploy = object(&docs, "Deployment");
        assert_eq!(
            deploy["spec"]["revisionHistoryLimit"], values["revisionHistoryLimit"],
            "{name}"
        );
        assert_eq!(
            deploy["spec"]["template"]["spec"]["automountServiceAccountToken"],
            values["serviceAccount"]["automount"],
            "{name}"
        );
        assert_eq!(
            object(&docs, "ServiceAccount")["automountServiceAccountToken"],
            false
        );
    }
    assert_eq!(chart_values()["revisionHistoryLimit"], 3, "as before");
}

/// The ServiceMonitor carries the extras the values set.
#[test]
fn service_monitor_extras() {
    let (docs, values) = rendered("full");
    let sm = object(&docs, "ServiceMonitor");
    let want = &values["serviceMonitor"];
    assert_eq!(sm["metadata"]["annotations"], want["annotations"]);
    let ep = &sm["spec"]["endpoints"][0];
    assert_eq!(ep["honorLabels"], true);
    assert_eq!(ep["metricRelabelings"], want["metricRelabelings"]);
    assert_eq!(ep["scheme"], "http");
    let (docs, values) = rendered("conventions");
    let ep = &object(&docs, "ServiceMonitor")["spec"]["endpoints"][0];
    let want = &values["serviceMonitor"];
    assert_eq!(ep["scheme"], "https");
    assert_eq!(ep["tlsConfig"], want["tlsConfig"]);
    assert_eq!(ep["relabelings"], want["relabelings"]);
    assert!(
        ep["honorLabels"].is_null(),
        "honorLabels: false is left out"
    );
}

/// The dashboard ConfigMap is the JSON file, labelled for Grafana's sidecar, where the
/// values say; the PrometheusRule has the built-in alerts the values leave on, plus the
/// extra rules. Both are off by default.
#[test]
fn dashboard_and_rules() {
    let (docs, _) = rendered("default");
    assert!(objects(&docs, "PrometheusRule").is_empty());
    assert!(
        !docs
            .iter()
            .any(|d| !d["metadata"]["labels"]["grafana_dashboard"].is_null())
    );

    let (docs, values) = rendered("full");
    let g = &values["grafana"]["dashboards"];
    let cms: Vec<&Value> = objects(&docs, "ConfigMap")
        .into_iter()
        .filter(|d| !d["data"]["trivy-digest.json"].is_null())
        .collect();
    assert_eq!(cms.len(), 1);
    let cm = cms[0];
    let label = g["label"].as_str().expect("label");
    assert_eq!(cm["metadata"]["labels"][label], g["labelValue"]);
    assert_eq!(cm["metadata"]["namespace"], g["namespace"]);
    assert_eq!(cm["metadata"]["annotations"], g["annotations"]);
    let shipped: Value =
        serde_json::from_str(cm["data"]["trivy-digest.json"].as_str().expect("dashboard"))
            .expect("the dashboard is JSON");
    let file: Value = serde_json::from_str(&read(&format!("{CHART}/dashboards/trivy-digest.json")))
        .expect("dashboard file");
    assert_eq!(shipped, file);

    let rule = object(&docs, "PrometheusRule");
    let alerts: BTreeSet<String> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["alert"].as_str().expect("alert").to_owned())
        .collect();
    let defaults = chart_values()["prometheusRule"]["defaultRules"]
        .as_object()
        .expect("defaultRules")
        .len();
    // All built-in alerts but summaryFailing (off in full-values), plus one extra.
    assert_eq!(alerts.len(), defaults - 1 + 1, "{alerts:?}");
    assert!(!alerts.contains("TrivyDigestSummaryFailing"));
    assert!(alerts.contains("TrivyDigestCriticalFindings"));
    for r in rule["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
    {
        if r["alert"] != "TrivyDigestCriticalFindings" {
            assert_eq!(r["labels"]["team"], "platform", "{}", r["alert"]);
            assert!(r["labels"]["severity"].is_string(), "{}", r["alert"]);
        }
    }
}

/// The Teams webhook Secret is mounted beside Slack's, and the NetworkPolicy lets the Pod
/// reach Teams only where the values say.
#[test]
fn teams_webhook_secret_and_egress() {
    let (docs, values) = rendered("full");
    let deploy = object(&docs, "Deployment");
    let pod = &deploy["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "msteams")
        .expect("an msteams volume");
    assert_eq!(volume["secret"]["secretName"], "trivy-digest-msteams");
    let mounted = pod["containers"][0]["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .any(|m| {
            m["name"] == "msteams"
                && m["mountPath"] == "/var/run/secrets/trivy-digest/msteams"
                && m["readOnly"] == true
        });
    assert!(mounted, "{:?}", pod["containers"][0]["volumeMounts"]);
    let np = object(&docs, "NetworkPolicy");
    let want = &values["networkPolicy"]["egress"]["msteams"]["cidrs"][0];
    let allowed = np["spec"]["egress"]
        .as_array()
        .expect("egress")
        .iter()
        .any(|r| {
            r["to"]
                .as_array()
                .is_some_and(|to| to.iter().any(|t| t["ipBlock"]["cidr"] == *want))
                && r["ports"][0]["port"] == 443
        });
    assert!(allowed, "{:?}", np["spec"]["egress"]);
    // Off by default: no volume, no rule.
    let (docs, _) = rendered("default");
    let pod = &object(&docs, "Deployment")["spec"]["template"]["spec"];
    assert!(
        !pod["volumes"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v["name"] == "msteams"))
    );
}

/// The chart rendered by Helm's SDK (the virtualenv of scripts/install-tools.sh, with
/// scripts/chart_tool.py's release and namespace) with these values over the chart's:
/// the documents, or Helm's error (a schema error or a template's `fail`).
fn helm_render(values: &Value) -> Result<Vec<Value>, String> {
    let out = Command::new(root().join("scripts/install-tools.sh"))
        .args(["--print-python", "--no-install"])
        .output()
        .expect("run scripts/install-tools.sh");
    let python = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        out.status.success() && python.is_file(),
        "Helm's SDK not found (no {}): run scripts/install-tools.sh (CI does, in .ci/run)",
        python.display()
    );
    const SCRIPT: &str = r#"
import json, sys
sys.path.insert(0, sys.argv[1])
import chart_tool, helm_python as helm
values = json.load(sys.stdin)
chart = chart_tool.load_chart()
try:
    chart.validate_schema(values)
    docs = [d[3] for d in chart_tool.render(chart, values)]
except helm.HelmError as e:
    print(e, file=sys.stderr)
    sys.exit(3)
json.dump(docs, sys.stdout)
"#;
    let mut child = Command::new(&python)
        .args(["-c", SCRIPT])
        .arg(root().join("scripts"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(values.to_string().as_bytes())
        .expect("write values");
    let out = child.wait_with_output().expect("helm render");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(0) => Ok(serde_json::from_slice(&out.stdout).expect("rendered documents")),
        Some(3) => Err(stderr),
        _ => panic!("rendering with Helm's SDK failed:\n{stderr}"),
    }
}

/// The deepest mount that `path` is under, and its volume.
fn mount_and_volume<'a>(deploy: &'a Value, path: &str) -> (&'a Value, &'a Value) {
    let pod = &deploy["spec"]["template"]["spec"];
    let m = container(deploy)["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .filter(|m| path.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap_or(""))))
        .max_by_key(|m| m["mountPath"].as_str().unwrap_or("").len())
        .unwrap_or_else(|| panic!("nothing mounted above {path}"));
    let v = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == m["name"])
        .unwrap_or_else(|| panic!("volume {}", m["name"]));
    (m, v)
}

fn env_var<'a>(deploy: &'a Value, name: &str) -> Option<&'a Value> {
    container(deploy)["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == name)
}

/// A Secret volume's file `path` holds the Secret's key `key`.
fn secret_item<'a>(volume: &'a Value, path: &str) -> (&'a Value, &'a Value) {
    let item = volume["secret"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["path"] == path)
        .unwrap_or_else(|| panic!("no item {path} in {volume}"));
    (&volume["secret"]["secretName"], &item["key"])
}

/// Fleet mode: no claim and no store volume, the replicas free to spread over nodes, the
/// password a mounted Secret file named by TRIVY_DIGEST_STORE_PASSWORD_FILE, the CA where
/// the URL's sslrootcert reads it, the store in the config file the URL (which the binary
/// accepts with that password file), and egress to the database.
#[test]
fn fleet_mode_has_no_volume_and_the_database_settings() {
    let (docs, values) = rendered("fleet");
    let pg = &values["store"]["postgres"];
    assert!(objects(&docs, "PersistentVolumeClaim").is_empty());
    let deploy = object(&docs, "Deployment");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(values["replicaCount"], 2);
    for v in pod["volumes"].as_array().expect("volumes") {
        assert!(v["persistentVolumeClaim"].is_null(), "{v}");
        assert_ne!(v["name"], "data", "no store volume");
    }
    let mount = values["persistence"]["mountPath"]
        .as_str()
        .expect("mountPath");
    assert!(
        !container(deploy)["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .any(|m| m["mountPath"] == mount),
        "nothing mounted at {mount}"
    );
    // Not kept on one node (that is for a shared ReadWriteOnce volume): preferably apart.
    let affinity = &pod["affinity"];
    assert!(affinity["podAffinity"].is_null(), "{affinity}");
    let anti = &affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(
        anti["podAffinityTerm"]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(
        anti["podAffinityTerm"]["labelSelector"]["matchLabels"],
        deploy["spec"]["selector"]["matchLabels"]
    );
    assert!(
        affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"].is_null(),
        "a soft preference: two replicas still fit on one node"
    );
    let strategy = &deploy["spec"]["strategy"];
    assert_eq!(strategy["type"], "RollingUpdate");
    assert_eq!(strategy["rollingUpdate"]["maxUnavailable"], 0);

    // The password: a mounted Secret file.
    let password_file = env_var(deploy, "TRIVY_DIGEST_STORE_PASSWORD_FILE")
        .and_then(|e| e["value"].as_str())
        .expect("TRIVY_DIGEST_STORE_PASSWORD_FILE");
    let (m, v) = mount_and_volume(deploy, password_file);
    assert_eq!(m["readOnly"], true);
    let file = password_file
        .strip_prefix(&format!("{}/", m["mountPath"].as_str().expect("mountPath")))
        .expect("under the mount");
    let (secret, key) = secret_item(v, file);
    assert_eq!(*secret, pg["passwordSecret"]);
    assert_eq!(*key, pg["passwordKey"]);
    for e in container(deploy)["env"].as_array().expect("env") {
        assert!(
            !["TRIVY_DIGEST_STORE_PASSWORD", "TRIVY_DIGEST_STORE"]
                .contains(&e["name"].as_str().unwrap_or("")),
            "the URL is in the config file, the password only in its file: {e}"
        );
    }

    // The CA: mounted where the URL's sslrootcert reads it.
    let url = pg["url"].as_str().expect("url");
    let ca = url
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("sslrootcert="))
        .expect("the URL names the CA file");
    let (m, v) = mount_and_volume(deploy, ca);
    assert_eq!(m["readOnly"], true);
    let file = ca
        .strip_prefix(&format!("{}/", m["mountPath"].as_str().expect("mountPath")))
        .expect("under the mount");
    let (secret, key) = secret_item(v, file);
    assert_eq!(*secret, pg["caSecret"]);
    assert_eq!(*key, pg["caKey"]);

    // The config file's store is the URL, the fleet's name as set; the binary takes both
    // with the password from the file (it only parses the URL: nothing connects).
    let config = rendered_config(&docs);
    assert_eq!(config["store"], pg["url"]);
    assert_eq!(config["fleet"], values["config"]["fleet"]);
    let mut ws = workspace();
    let pw = ws.write("store/password", "fleet-password-from-a-secret\n");
    ws.env.push((
        "TRIVY_DIGEST_STORE_PASSWORD_FILE".into(),
        pw.display().to_string(),
    ));
    let run = config_check(&ws, &config);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stdout.contains("fleet-password"), "{}", run.stdout);
    let checked = yaml(&run.stdout, "config check output");
    let store = checked["store"].as_str().expect("store");
    assert!(
        store.starts_with(
            "postgres://trivy_digest@db.example.com:5432/trivy_digest?sslmode=verify-full"
        ),
        "{store}"
    );
    assert_eq!(checked["fleet"], values["config"]["fleet"]);
    assert_eq!(checked["run"]["fleet_lease"], "20s");
    // The password file is read: a missing one is an error, so the path matters.
    ws.env.pop();
    ws.env.push((
        "TRIVY_DIGEST_STORE_PASSWORD_FILE".into(),
        ws.path("missing").display().to_string(),
    ));
    assert_ne!(config_check(&ws, &config).code, 0);

    // Egress to the database's address on PostgreSQL's port.
    let np = object(&docs, "NetworkPolicy");
    let db = &values["networkPolicy"]["egress"]["database"];
    assert_eq!(db["ports"], json!([5432]));
    let allowed = np["spec"]["egress"]
        .as_array()
        .expect("egress")
        .iter()
        .any(|r| {
            r["to"]
                .as_array()
                .is_some_and(|to| to.iter().any(|t| t["ipBlock"]["cidr"] == db["cidrs"][0]))
                && r["ports"] == json!([{"port": 5432, "protocol": "TCP"}])
        });
    assert!(allowed, "{:?}", np["spec"]["egress"]);
    // Without fleet mode there is no such rule, and the store is on the claim.
    let (docs, _) = rendered("full");
    let np = object(&docs, "NetworkPolicy");
    assert!(
        !np["spec"]["egress"].to_string().contains("5432"),
        "{:?}",
        np["spec"]["egress"]
    );
    let (docs, _) = rendered("default");
    assert_eq!(objects(&docs, "PersistentVolumeClaim").len(), 1);
}

fn fleet_values(postgres: Value) -> Value {
    coalesce(
        &json!({
            "image": {"repository": "registry.example.com/trivy-digest"},
            "config": {"cluster": "prod-us-1"},
            "store": {"postgres": {"enabled": true}},
        }),
        &json!({"store": {"postgres": postgres}}),
    )
}

/// What the chart refuses in fleet mode, each with a message that names the value and
/// never shows a password.
#[test]
fn fleet_values_the_chart_refuses_by_name() {
    const URL: &str = "postgres://trivy_digest@db.example.com:5432/trivy_digest";
    let np = json!({"enabled": true, "egress": {"apiServer": {"cidrs": ["10.0.0.1/32"]}}});
    let cases = [
        (
            "a password in the URL",
            fleet_values(
                json!({"url": "postgres://trivy_digest:hunter2@db.example.com/trivy_digest"}),
            ),
            "store.postgres.url holds a password",
        ),
        (
            "a password in the URL's query",
            fleet_values(json!({"url": format!("{URL}?sslmode=require&password=hunter2")})),
            "store.postgres.url holds a password",
        ),
        (
            "neither url nor existingSecret",
            fleet_values(json!({})),
            "store.postgres.enabled needs store.postgres.url",
        ),
        (
            "both url and existingSecret",
            fleet_values(json!({"url": URL, "existingSecret": "trivy-digest-store-url"})),
            "store.postgres.url and store.postgres.existingSecret are both set",
        ),
        (
            "another scheme",
            fleet_values(json!({"url": "mysql://trivy_digest@db.example.com/trivy_digest"})),
            "store.postgres.url must be a postgres:// or postgresql:// URL",
        ),
        (
            "a CA the URL does not read",
            fleet_values(json!({"url": URL, "caSecret": "trivy-digest-store-ca"})),
            "add sslrootcert=/etc/trivy-digest/store-ca/ca.crt",
        ),
        (
            "sslrootcert on the CA mount without a CA",
            fleet_values(
                json!({"url": format!("{URL}?sslrootcert=/etc/trivy-digest/store-ca/ca.crt")}),
            ),
            "neither store.postgres.caSecret nor caConfigMap is set",
        ),
        (
            "a CA from a Secret and a ConfigMap",
            fleet_values(json!({"existingSecret": "u", "caSecret": "a", "caConfigMap": "b"})),
            "store.postgres.caSecret and store.postgres.caConfigMap are both set",
        ),
        (
            "another PostgreSQL URL in config.store",
            coalesce(
                &fleet_values(json!({"url": URL})),
                &json!({"config": {"store": "postgres://trivy_digest:hunter2@other.example.com/x"}}),
            ),
            "config.store is a PostgreSQL URL other than store.postgres.url",
        ),
        (
            "a PostgreSQL URL in config.store without store.postgres",
            json!({
                "image": {"repository": "registry.example.com/trivy-digest"},
                "config": {"cluster": "prod-us-1", "store": "postgres://trivy_digest:hunter2@db.example.com/x"},
            }),
            "config.store is a PostgreSQL URL: set store.postgres.enabled=true",
        ),
        (
            "a NetworkPolicy without the database",
            coalesce(
                &fleet_values(json!({"url": URL})),
                &json!({"networkPolicy": np}),
            ),
            "needs networkPolicy.egress.database.cidrs or .peers",
        ),
        (
            "an unknown store.postgres key",
            fleet_values(json!({"url": URL, "password": "hunter2"})),
            "password",
        ),
    ];
    for (what, values, words) in cases {
        match helm_render(&values) {
            Ok(_) => panic!("{what}: rendered"),
            Err(e) => {
                assert!(e.contains(words), "{what}: {e}");
                assert!(
                    !e.contains("hunter2"),
                    "{what}: the message shows the password: {e}"
                );
            }
        }
    }
}

/// The whole URL from a Secret: TRIVY_DIGEST_STORE from a secretKeyRef and no `store` in
/// the config file; with the config file from configFrom, the values' URL as
/// TRIVY_DIGEST_STORE; else the URL in the chart's ConfigMap. No volume, and more
/// replicas than one need no persistence.
#[test]
fn fleet_url_from_a_secret_or_beside_config_from() {
    let values = coalesce(
        &fleet_values(json!({
            "existingSecret": "trivy-digest-store-url",
            "urlKey": "dsn",
            "caConfigMap": "db-ca",
        })),
        &json!({"replicaCount": 3, "persistence": {"enabled": false}}),
    );
    let docs = helm_render(&values).unwrap_or_else(|e| panic!("{e}"));
    assert!(objects(&docs, "PersistentVolumeClaim").is_empty());
    let deploy = object(&docs, "Deployment");
    assert_eq!(deploy["spec"]["replicas"], 3);
    let store = env_var(deploy, "TRIVY_DIGEST_STORE").expect("TRIVY_DIGEST_STORE");
    assert!(store["value"].is_null(), "{store}");
    assert_eq!(
        store["valueFrom"]["secretKeyRef"],
        json!({"name": "trivy-digest-store-url", "key": "dsn"})
    );
    assert!(env_var(deploy, "TRIVY_DIGEST_STORE_PASSWORD_FILE").is_none());
    let config = rendered_config(&docs);
    assert!(config.get("store").is_none(), "{config}");
    assert_eq!(config, chart_config_of(&coalesce(&chart_values(), &values)));
    let (_, ca) = mount_and_volume(deploy, "/etc/trivy-digest/store-ca/ca.crt");
    assert_eq!(ca["configMap"]["name"], "db-ca");
    assert_eq!(ca["configMap"]["items"][0]["path"], "ca.crt");
    // The binary takes the URL, password included, from the variable.
    let mut ws = workspace();
    ws.env.push((
        "TRIVY_DIGEST_STORE".into(),
        "postgres://trivy_digest:url-password@db.example.com/trivy_digest?sslmode=verify-full"
            .into(),
    ));
    let run = config_check(&ws, &config);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stdout.contains("url-password"), "{}", run.stdout);

    let url = "postgres://trivy_digest@db.example.com:5432/trivy_digest?sslmode=require";
    let values = coalesce(
        &fleet_values(json!({"url": url, "passwordSecret": "trivy-digest-store"})),
        &json!({"configFrom": {"existingConfigMap": "trivy-digest-config"}}),
    );
    let docs = helm_render(&values).unwrap_or_else(|e| panic!("{e}"));
    let deploy = object(&docs, "Deployment");
    assert_eq!(
        env_var(deploy, "TRIVY_DIGEST_STORE").expect("store")["value"],
        url
    );
    assert_eq!(
        env_var(deploy, "TRIVY_DIGEST_STORE_PASSWORD_FILE").expect("password")["value"],
        "/var/run/secrets/trivy-digest/store/password"
    );
    // One replica: a surge, no affinity.
    assert_eq!(deploy["spec"]["strategy"]["rollingUpdate"]["maxSurge"], 1);
    assert!(deploy["spec"]["template"]["spec"]["affinity"].is_null());

    // The chart's own ConfigMap (ci/fleet-values.yaml keeps it in a Secret) holds the URL.
    let values = fleet_values(json!({"url": url}));
    let docs = helm_render(&values).unwrap_or_else(|e| panic!("{e}"));
    let cm = object(&docs, "ConfigMap");
    assert_eq!(
        yaml(cm["data"][CONFIG_KEY].as_str().expect("config"), "config")["store"],
        url
    );
    assert!(env_var(object(&docs, "Deployment"), "TRIVY_DIGEST_STORE").is_none());
}
