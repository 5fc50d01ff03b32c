//! A real Kubernetes API server for custom resources, started per test.
//!
//! It runs two processes on free loopback ports, each test with its own temp dir:
//! - `etcd` (Debian sid's etcd-server 3.5, `--unsafe-no-fsync`, data dir in the temp dir);
//! - `apiextensions-apiserver`: the CRD / custom-resource half of kube-apiserver (same
//!   storage, watch cache and etcd3 code), built from Debian's source package by
//!   `scripts/kube-test-server.sh build`.
//!
//! Clients authenticate with a client certificate in `O=system:masters` (always allowed).
//! Certificates come from the `openssl` command line tool. Authentication and
//! authorization delegation point at a dummy kubeconfig (a dead loopback address).
//!
//! What this server does NOT have (do not write tests that need it): core or other
//! built-in APIs (namespaces, pods, events, leases, RBAC), `/api` and `/apis` root
//! discovery (so `Discovery::run` and non-raw `kubectl get` fail; typed `Api<K>`,
//! `Api<DynamicObject>` with an `ApiResource`, and `discovery::pinned_kind` work), a
//! `/readyz` that ever turns 200, garbage collection, and 403 paths (any identity other
//! than system:masters gets a 500). Namespaced objects can be created in namespaces
//! that do not exist.
//!
//! Timing to know about: the first *create* of a custom resource within 2 s of its CRD
//! becoming Established is held for 2 s by the server (an HA guard in
//! `customresource_handler.go`, the same in kube-apiserver), through any apiserver.
//! Lists, gets, watches and patches are not held: a test that just needs objects to
//! exist can make them with server-side apply (`Patch::Apply`) instead.
//!
//! The binaries are found in `$TRIVY_DIGEST_KUBE_BIN` (a dir), else in the build cache
//! `${TRIVY_DIGEST_KUBE_CACHE:-$HOME/.cache/trivy-digest/kube-test-server}/bin`. When they
//! are missing the harness panics (it never skips a test): run
//! `scripts/kube-test-server.sh build`.
//!
//! The lifecycle methods are synchronous; they work from plain `#[test]`s and from
//! `#[tokio::test]`s alike (their async work runs on a helper thread with its own
//! runtime). Dropping a [`KubeServer`] or [`SecondServer`] SIGKILLs and reaps its
//! processes, also when the test panics (unwinding runs the drops). Only a test process
//! that is itself SIGKILLed (or aborts) leaves them behind: they are in its process group,
//! so `kill -- -<pgid>` or Ctrl-C reaches them. Logs are in the temp dir (`etcd.log`,
//! `apiserver.log`); their tails are printed when the harness panics and when a test
//! panics with a [`KubeServer`] alive. `TRIVY_DIGEST_KUBE_VERBOSITY=3` logs every request.

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GetParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config};
use serde_json::json;

/// A directory holding `apiextensions-apiserver` and `etcd`.
pub const BIN_ENV: &str = "TRIVY_DIGEST_KUBE_BIN";
/// The cache dir of `scripts/kube-test-server.sh` (its `bin/` holds the binaries).
pub const CACHE_ENV: &str = "TRIVY_DIGEST_KUBE_CACHE";
/// The apiserver's log verbosity (`--v`, default 0; 3 logs every request).
pub const VERBOSITY_ENV: &str = "TRIVY_DIGEST_KUBE_VERBOSITY";

const APISERVER: &str = "apiextensions-apiserver";
const ETCD: &str = "etcd";
/// How long etcd, and then the apiserver, may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a freshly created CRD may take to be Established and served.
const CRD_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of each log printed when the harness panics.
const LOG_TAIL: usize = 40;
/// Tries when a free port was taken by someone else between probe and bind.
const PORT_TRIES: usize = 3;
/// Admission plugins that need core APIs this server does not have.
const DISABLED_ADMISSION: &str = "NamespaceLifecycle,MutatingAdmissionPolicy,\
    MutatingAdmissionWebhook,ValidatingAdmissionPolicy,ValidatingAdmissionWebhook";

/// The directory with the server binaries; panics, saying how to build them, if absent.
pub fn bin_dir() -> PathBuf {
    let dir = match std::env::var_os(BIN_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => cache_dir().join("bin"),
    };
    check_bin_dir(&dir);
    dir
}

fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_ENV) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("HOME is not set (needed to find the cache)");
    Path::new(&home).join(".cache/trivy-digest/kube-test-server")
}

/// Panics unless `dir` holds both binaries.
pub fn check_bin_dir(dir: &Path) {
    let missing: Vec<&str> = [APISERVER, ETCD]
        .into_iter()
        .filter(|name| !dir.join(name).is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "the Kubernetes test server is not built: {} missing in {} \
         (from ${BIN_ENV}, else ${CACHE_ENV}/bin). \
         Run `scripts/kube-test-server.sh build` (2.5 to 3.5 minutes once, then cached).",
        missing.join(" and "),
        dir.display(),
    );
}

/// Tells the plural names of the Trivy Operator CRDs in `tests/fixtures`.
pub fn fixture_crd_plurals() -> Vec<String> {
    fixture_crds()
        .iter()
        .map(|crd| crd.spec.names.plural.clone())
        .collect()
}

/// A running etcd plus apiextensions-apiserver. See the module docs.
pub struct KubeServer {
    // Field order is drop order: processes die before the temp dir is removed.
    apiserver: Option<Proc>,
    etcd: Proc,
    spec: ApiserverSpec,
    etcd_url: String,
    dir: tempfile::TempDir,
}

/// Another apiextensions-apiserver over the same etcd (see
/// [`KubeServer::start_second_apiserver`]). Its files live in the first server's temp
/// dir: drop it before that server (declaring it later in the test does that).
pub struct SecondServer {
    proc: Proc,
    spec: ApiserverSpec,
}

impl KubeServer {
    /// Starts etcd and the apiserver and waits until custom resources can be served.
    pub fn start() -> KubeServer {
        let bin = bin_dir();
        let started = Instant::now();
        let mut last_error = String::new();
        for _ in 0..PORT_TRIES {
            match KubeServer::try_start(&bin) {
                Ok(server) => {
                    eprintln!(
                        "kube test server {} ready in {} ms (dir {})",
                        server.url(),
                        started.elapsed().as_millis(),
                        server.dir.path().display()
                    );
                    return server;
                }
                Err(StartError::PortTaken(message)) => last_error = message,
                Err(StartError::Failed(message)) => panic!("{message}"),
            }
        }
        panic!("kube test server: gave up after {PORT_TRIES} port collisions:\n{last_error}");
    }

    fn try_start(bin: &Path) -> Result<KubeServer, StartError> {
        let dir = tempfile::Builder::new()
            .prefix("kube-test-server-")
            .tempdir()
            .expect("create the temp dir of the kube test server");
        let path = dir.path().to_path_buf();
        make_certificates(&path);
        write_json(&path.join("delegation.kubeconfig"), &dummy_kubeconfig());

        let (client_port, peer_port) = (free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut etcd = Proc::spawn(
            &bin.join(ETCD),
            &[
                "--name=test".to_string(),
                format!("--data-dir={}", path.join("etcd-data").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=test={peer_url}"),
                "--unsafe-no-fsync".to_string(),
                // A single member elects itself after one election timeout: 0.1 s instead
                // of the default 1 s (ready in about 0.1 s instead of 0.6 s).
                "--heartbeat-interval=10".to_string(),
                "--election-timeout=100".to_string(),
                // Warnings and errors only, so that a log tail shows what went wrong.
                "--log-level=warn".to_string(),
            ],
            &path.join("etcd.log"),
            &path,
        );
        wait_etcd(&mut etcd, client_port)
            .map_err(|why| StartError::new(format!("etcd did not start: {why}"), &[&etcd.log]))?;

        let spec = ApiserverSpec::new(bin, &path, &etcd_url, false);
        let mut apiserver = spec.launch();
        wait_apiserver(&mut apiserver, &spec.kubeconfig).map_err(|why| {
            StartError::new(
                format!("apiextensions-apiserver did not become ready: {why}"),
                &[&etcd.log, &apiserver.log],
            )
        })?;
        Ok(KubeServer {
            apiserver: Some(apiserver),
            etcd,
            spec,
            etcd_url,
            dir,
        })
    }

    /// A kubeconfig with client-certificate auth (`O=system:masters`) for this server.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.spec.kubeconfig.clone()
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.spec.url()
    }

    /// `http://127.0.0.1:<port>` of etcd.
    pub fn etcd_url(&self) -> &str {
        &self.etcd_url
    }

    /// The temp dir: certificates, kubeconfigs, etcd data, `etcd.log`, `apiserver.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A client from [`Self::kubeconfig_path`] (needs a tokio runtime).
    pub async fn client(&self) -> Client {
        client_from(&self.spec.kubeconfig).await
    }

    /// Creates every CRD of `tests/fixtures/trivy-operator/crds` and waits until each is
    /// Established and its resources are served (a first create right after it is held
    /// for 2 s by the server: see the module docs).
    pub fn install_crds(&self) {
        self.install(fixture_crds());
    }

    /// Like [`Self::install_crds`] but without the CRDs with these plural names.
    pub fn install_crds_except(&self, plurals: &[&str]) {
        let all = fixture_crds();
        for plural in plurals {
            assert!(
                all.iter().any(|crd| crd.spec.names.plural == *plural),
                "install_crds_except: no fixture CRD has plural {plural:?}"
            );
        }
        let wanted = all
            .into_iter()
            .filter(|crd| !plurals.contains(&crd.spec.names.plural.as_str()))
            .collect();
        self.install(wanted);
    }

    /// Creates the one fixture CRD with this plural name (e.g. `vulnerabilityreports`).
    pub fn install_crd(&self, plural: &str) {
        let crd = fixture_crds()
            .into_iter()
            .find(|crd| crd.spec.names.plural == plural)
            .unwrap_or_else(|| panic!("install_crd: no fixture CRD has plural {plural:?}"));
        self.install(vec![crd]);
    }

    fn install(&self, crds: Vec<CustomResourceDefinition>) {
        let kubeconfig = self.spec.kubeconfig.clone();
        let result = on_helper_thread(move || async move {
            let client = client_from(&kubeconfig).await;
            create_crds(&client, &crds).await
        });
        if let Err(why) = result {
            panic!(
                "{}",
                self.failure(&format!("installing CRDs failed: {why}"))
            );
        }
    }

    /// SIGKILLs the apiserver (etcd keeps running). A no-op when it is already down.
    pub fn kill_apiserver(&mut self) {
        if let Some(mut apiserver) = self.apiserver.take() {
            apiserver.kill();
        }
    }

    /// Starts the apiserver again on the same port over the same etcd (killing it first if
    /// it runs) and waits until it serves every installed CRD.
    pub fn restart_apiserver(&mut self) {
        self.kill_apiserver();
        let mut apiserver = self.spec.launch();
        let started = Instant::now();
        let ready = wait_apiserver(&mut apiserver, &self.spec.kubeconfig);
        self.apiserver = Some(apiserver);
        if let Err(why) = ready {
            panic!(
                "{}",
                self.failure(&format!("restarted apiserver not ready: {why}"))
            );
        }
        eprintln!(
            "kube test server {} restarted in {} ms",
            self.url(),
            started.elapsed().as_millis()
        );
    }

    /// Is the apiserver process running (not killed, not exited)?
    pub fn apiserver_running(&mut self) -> bool {
        self.apiserver
            .as_mut()
            .is_some_and(|apiserver| apiserver.exit_status().is_none())
    }

    /// Starts another apiextensions-apiserver on another port over the same etcd, with its
    /// own kubeconfig. Writes through it while the first one is down make a client that
    /// watches the first one get a real 410 Expired when it reconnects.
    pub fn start_second_apiserver(&self) -> SecondServer {
        let bin = bin_dir();
        let mut last_error = String::new();
        for _ in 0..PORT_TRIES {
            let spec = ApiserverSpec::new(&bin, self.dir.path(), &self.etcd_url, true);
            let mut proc = spec.launch();
            match wait_apiserver(&mut proc, &spec.kubeconfig) {
                Ok(()) => return SecondServer { proc, spec },
                Err(why) => {
                    let message = format!(
                        "second apiextensions-apiserver not ready: {why}\n{}",
                        log_tails(&[&self.etcd.log, &proc.log])
                    );
                    if !port_taken(&proc.log) {
                        panic!("{message}");
                    }
                    last_error = message;
                }
            }
        }
        panic!("second apiserver: gave up after {PORT_TRIES} port collisions:\n{last_error}");
    }

    fn failure(&self, what: &str) -> String {
        let apiserver_log = match &self.apiserver {
            Some(apiserver) => &apiserver.log,
            None => &self.spec.log,
        };
        let logs = [self.etcd.log.as_path(), apiserver_log.as_path()];
        format!(
            "kube test server {}: {what}\n{}",
            self.url(),
            log_tails(&logs)
        )
    }
}

impl Drop for KubeServer {
    /// When the test fails, show what the servers said last (the temp dir goes away).
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.failure("the test panicked; server logs follow"));
        }
    }
}

impl SecondServer {
    /// Its own kubeconfig (same client certificate as the first server's).
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.spec.kubeconfig.clone()
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.spec.url()
    }

    /// A client from [`Self::kubeconfig_path`] (needs a tokio runtime).
    pub async fn client(&self) -> Client {
        client_from(&self.spec.kubeconfig).await
    }

    /// SIGKILLs it now (dropping it does the same).
    pub fn kill(mut self) {
        self.proc.kill();
    }
}

enum StartError {
    /// Someone took a port between the probe and the bind: try again with new ports.
    PortTaken(String),
    Failed(String),
}

impl StartError {
    fn new(why: String, logs: &[&Path]) -> StartError {
        let message = format!("kube test server: {why}\n{}", log_tails(logs));
        if logs.iter().any(|log| port_taken(log)) {
            StartError::PortTaken(message)
        } else {
            StartError::Failed(message)
        }
    }
}

/// How to start one apiextensions-apiserver (the first one and restarts use the same).
struct ApiserverSpec {
    binary: PathBuf,
    dir: PathBuf,
    etcd_url: String,
    port: u16,
    kubeconfig: PathBuf,
    log: PathBuf,
}

impl ApiserverSpec {
    /// Files are named `apiserver.*`, or `apiserver-second-<port>.*` for a second one.
    fn new(bin: &Path, dir: &Path, etcd_url: &str, second: bool) -> ApiserverSpec {
        let port = free_port();
        let name = if second {
            format!("apiserver-second-{port}")
        } else {
            "apiserver".to_string()
        };
        let spec = ApiserverSpec {
            binary: bin.join(APISERVER),
            dir: dir.to_path_buf(),
            etcd_url: etcd_url.to_string(),
            port,
            kubeconfig: dir.join(format!("{name}.kubeconfig")),
            log: dir.join(format!("{name}.log")),
        };
        write_json(&spec.kubeconfig, &client_kubeconfig(dir, &spec.url()));
        spec
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn launch(&self) -> Proc {
        let file = |name: &str| self.dir.join(name).display().to_string();
        let delegation = file("delegation.kubeconfig");
        Proc::spawn(
            &self.binary,
            &[
                format!("--etcd-servers={}", self.etcd_url),
                "--bind-address=127.0.0.1".to_string(),
                format!("--secure-port={}", self.port),
                format!("--tls-cert-file={}", file("server.crt")),
                format!("--tls-private-key-file={}", file("server.key")),
                format!("--client-ca-file={}", file("ca.crt")),
                "--authentication-skip-lookup".to_string(),
                format!("--authentication-kubeconfig={delegation}"),
                format!("--authorization-kubeconfig={delegation}"),
                format!("--kubeconfig={delegation}"),
                format!("--disable-admission-plugins={DISABLED_ADMISSION}"),
                format!("--cert-dir={}", file("apiserver-certs")),
                // klog verbosity; 3 logs every request with its latency.
                format!(
                    "--v={}",
                    std::env::var(VERBOSITY_ENV).unwrap_or_else(|_| "0".into())
                ),
            ],
            &self.log,
            &self.dir,
        )
    }
}

/// A child process with its output in a log file; SIGKILLed when dropped.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    killed: bool,
}

impl Proc {
    fn spawn(binary: &Path, args: &[String], log: &Path, dir: &Path) -> Proc {
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        // Restarts append to the same log; mark where each run begins.
        writeln!(
            out,
            "=== kube_server.rs: starting {} {}",
            binary.display(),
            args.join(" ")
        )
        .unwrap_or_else(|e| panic!("write {}: {e}", log.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("dup {}: {e}", log.display()));
        let child = Command::new(binary)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        let name = binary
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        Proc {
            name,
            child,
            log: log.to_path_buf(),
            killed: false,
        }
    }

    /// `Some` once the process has exited.
    fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("wait for {}: {e}", self.name))
    }

    /// SIGKILL and reap (no zombie, no orphan).
    fn kill(&mut self) {
        if self.killed {
            return;
        }
        self.killed = true;
        if self.exit_status().is_none() {
            // Fails only when it has exited meanwhile.
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls etcd's `/health` until it says `"health":"true"`.
fn wait_etcd(etcd: &mut Proc, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if let Some(status) = etcd.exit_status() {
            return Err(format!("etcd exited with {status}"));
        }
        if etcd_healthy(addr) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("etcd not healthy after {START_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn etcd_healthy(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let timeout = Some(Duration::from_secs(2));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    stream.read_to_string(&mut response).is_ok() && response.contains(r#""health":"true""#)
}

/// Waits until `/livez` is 200, the CRD list is 200, and every Established CRD's
/// resources can be listed (after a restart that takes a moment longer).
fn wait_apiserver(apiserver: &mut Proc, kubeconfig: &Path) -> Result<(), String> {
    let kubeconfig = kubeconfig.to_path_buf();
    on_helper_thread(move || async move {
        let client = probe_client(&kubeconfig).await;
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::from("no answer yet");
        loop {
            if let Some(status) = apiserver.exit_status() {
                return Err(format!("it exited with {status}; last probe: {last}"));
            }
            match tokio::time::timeout(Duration::from_secs(5), probe(&client)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(why)) => last = why,
                Err(_) => last = "a probe took more than 5 s".to_string(),
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not ready after {START_TIMEOUT:?}; last probe: {last}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
}

async fn probe(client: &Client) -> Result<(), String> {
    let livez = kube::core::Request::new("")
        .get("livez", &GetParams::default())
        .map_err(|e| format!("build /livez request: {e}"))?;
    client
        .request_text(livez)
        .await
        .map_err(|e| format!("GET /livez: {e}"))?;
    let crds = Api::<CustomResourceDefinition>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("list CRDs: {e}"))?;
    for crd in crds.items.iter().filter(|crd| is_established(crd)) {
        let resource = api_resource(crd);
        Api::<DynamicObject>::all_with(client.clone(), &resource)
            .list(&ListParams::default().limit(1))
            .await
            .map_err(|e| format!("list {}: {e}", resource.plural))?;
    }
    Ok(())
}

async fn create_crds(client: &Client, crds: &[CustomResourceDefinition]) -> Result<(), String> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    for crd in crds {
        api.create(&PostParams::default(), crd)
            .await
            .map_err(|e| format!("create CRD {}: {e}", crd_name(crd)))?;
    }
    let deadline = Instant::now() + CRD_TIMEOUT;
    for crd in crds {
        let name = crd_name(crd);
        let left = deadline.saturating_duration_since(Instant::now());
        let established = await_condition(api.clone(), &name, conditions::is_crd_established());
        match tokio::time::timeout(left, established).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("waiting for CRD {name} to be Established: {e}")),
            Err(_) => return Err(format!("CRD {name} not Established after {CRD_TIMEOUT:?}")),
        }
        // Established means served, but make sure before a test relies on it.
        let resource = api_resource(crd);
        let list = Api::<DynamicObject>::all_with(client.clone(), &resource);
        loop {
            match list.list(&ListParams::default().limit(1)).await {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("{} not served after {CRD_TIMEOUT:?}: {e}", name));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
    Ok(())
}

fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

fn crd_name(crd: &CustomResourceDefinition) -> String {
    crd.metadata
        .name
        .clone()
        .expect("a CRD without metadata.name")
}

/// The `ApiResource` of a CRD's storage version (else its first version).
fn api_resource(crd: &CustomResourceDefinition) -> ApiResource {
    let version = crd
        .spec
        .versions
        .iter()
        .find(|v| v.storage)
        .or_else(|| crd.spec.versions.first())
        .expect("a CRD without versions");
    ApiResource {
        group: crd.spec.group.clone(),
        version: version.name.clone(),
        api_version: format!("{}/{}", crd.spec.group, version.name),
        kind: crd.spec.names.kind.clone(),
        plural: crd.spec.names.plural.clone(),
    }
}

/// The CRDs in `tests/fixtures/trivy-operator/crds/*.yaml`, sorted by file name.
fn fixture_crds() -> Vec<CustomResourceDefinition> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trivy-operator/crds");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("read a CRD fixture dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no CRD fixtures in {}", dir.display());
    files
        .iter()
        .map(|path| {
            let text =
                fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            let value = serde_saphyr::from_str::<serde_json::Value>(&text)
                .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
            serde_json::from_value(value)
                .unwrap_or_else(|e| panic!("{} is not a CRD: {e}", path.display()))
        })
        .collect()
}

async fn client_from(kubeconfig: &Path) -> Client {
    Client::try_from(config_from(kubeconfig).await).expect("build a kube client")
}

/// A client for readiness probes: short timeouts, so a hung connection cannot stall.
async fn probe_client(kubeconfig: &Path) -> Client {
    let mut config = config_from(kubeconfig).await;
    config.connect_timeout = Some(Duration::from_secs(1));
    config.read_timeout = Some(Duration::from_secs(3));
    Client::try_from(config).expect("build a kube client for probes")
}

async fn config_from(kubeconfig: &Path) -> Config {
    let file = Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("read kubeconfig {}: {e}", kubeconfig.display()));
    Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("load kubeconfig {}: {e}", kubeconfig.display()))
}

/// Runs async work on a scoped thread with its own runtime, so that the sync lifecycle
/// methods also work inside a `#[tokio::test]`. A panic there is re-raised here.
fn on_helper_thread<F, Fut, T>(work: F) -> T
where
    F: FnOnce() -> Fut + Send,
    Fut: std::future::Future<Output = T>,
    T: Send,
{
    std::thread::scope(|scope| {
        let thread = scope.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build a tokio runtime for the kube test server")
                .block_on(work())
        });
        match thread.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a free loopback port")
        .port()
}

fn port_taken(log: &Path) -> bool {
    fs::read_to_string(log).is_ok_and(|text| text.contains("address already in use"))
}

/// The last lines of each log, for panic messages.
fn log_tails(logs: &[&Path]) -> String {
    let mut out = String::new();
    for log in logs {
        let text = match fs::read(log) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("(cannot read: {e})"),
        };
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
        let _ = writeln!(out, "--- last {} lines of {}:", tail.len(), log.display());
        for line in tail {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

fn write_json(path: &Path, value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).expect("serialize a kubeconfig");
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The client kubeconfig (JSON is YAML): client-certificate auth in `O=system:masters`.
fn client_kubeconfig(dir: &Path, url: &str) -> serde_json::Value {
    let file = |name: &str| dir.join(name).display().to_string();
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": url,
            "certificate-authority": file("ca.crt"),
        }}],
        "users": [{"name": "admin", "user": {
            "client-certificate": file("client.crt"),
            "client-key": file("client.key"),
        }}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
        "current-context": "test",
    })
}

/// Authentication/authorization delegation and `--kubeconfig` need a kubeconfig; nothing
/// answers there (port 1), and system:masters requests never ask it.
fn dummy_kubeconfig() -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "none", "cluster": {
            "server": "https://127.0.0.1:1",
            "insecure-skip-tls-verify": true,
        }}],
        "users": [{"name": "none", "user": {}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
        "current-context": "none",
    })
}

/// A CA, a server certificate (SAN IP:127.0.0.1, DNS:localhost) and a client certificate
/// (`O=system:masters`), P-256 keys, made with the `openssl` command line tool.
fn make_certificates(dir: &Path) {
    let config = dir.join("openssl.cnf");
    fs::write(
        &config,
        "[req]\n\
         distinguished_name = dn\n\
         [dn]\n\
         [ca]\n\
         basicConstraints = critical,CA:TRUE\n\
         keyUsage = critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier = hash\n\
         [server]\n\
         basicConstraints = critical,CA:FALSE\n\
         keyUsage = critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = IP:127.0.0.1,DNS:localhost\n\
         authorityKeyIdentifier = keyid\n\
         [client]\n\
         basicConstraints = critical,CA:FALSE\n\
         keyUsage = critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage = clientAuth\n\
         authorityKeyIdentifier = keyid\n",
    )
    .unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
    let config = config.display().to_string();
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-config", &config, "-extensions", "ca"];
    ca.extend(key);
    ca.extend(["-keyout", "ca.key", "-out", "ca.crt", "-days", "7"]);
    ca.extend(["-subj", "/CN=trivy-digest test CA"]);
    openssl(dir, &ca);
    for (name, subject, serial) in [
        ("server", "/CN=localhost", "2"),
        ("client", "/O=system:masters/CN=trivy-digest-test", "3"),
    ] {
        let (key_file, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        let mut req = vec!["req", "-new", "-config", &config];
        req.extend(key);
        req.extend(["-keyout", &key_file, "-out", &csr, "-subj", subject]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-set_serial",
                serial,
                "-days",
                "7",
                "-extfile",
                &config,
                "-extensions",
                name,
                "-out",
                &crt,
            ],
        );
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (needed for test certificates): {e}"));
    assert!(
        output.status.success(),
        "openssl {} failed ({}):\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
