//! Headless Chromium for rendering checks: `/usr/bin/chromium` (`CHROMIUM` overrides).
//! Without it the test fails with the install command, never skips (CI installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

/// What the page measured in the browser.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// `document.documentElement.scrollWidth`: wider than the viewport means a
    /// horizontal scrollbar.
    pub scroll_width: u32,
    pub viewport_width: u32,
    /// `<script` elements in the page under test (the probe is added to a copy only).
    pub scripts_in_product: usize,
}

pub fn binary() -> PathBuf {
    let p = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        p.exists(),
        "{} not found: `apt-get install -y chromium` (CI installs it) or set CHROMIUM",
        p.display()
    );
    p
}

fn command(width: u32, profile: &Path) -> Command {
    let mut c = Command::new(binary());
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        "--disable-dev-shm-usage",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--window-size={width},2000"));
    c
}

/// Runs chromium, again (up to 3 times) when it was killed by a signal: headless
/// chromium in a container now and then crashes at start under load (exit by signal, no
/// output), which says nothing about the page. Any run that exits is judged as it is.
fn run(make: impl Fn() -> Command) -> std::process::Output {
    let mut tries = 0;
    loop {
        tries += 1;
        let out = make().output().expect("run chromium");
        if out.status.code().is_some() || tries == 3 {
            return out;
        }
    }
}

/// Loads `html` at `width` px with a measuring script appended (in a copy) and reads
/// what it measured from the dumped DOM.
pub fn probe(html: &str, width: u32) -> Probe {
    let dir = tempfile::tempdir().expect("temp dir");
    let scripts_in_product = html.matches("<script").count();
    let script = "<div id=\"td-probe\"></div><script>\
        document.getElementById('td-probe').textContent = \
        'PROBE ' + document.documentElement.scrollWidth + ' ' + window.innerWidth + ' END';\
        </script>";
    let copy = match html.rfind("</body>") {
        Some(i) => format!("{}{script}{}", &html[..i], &html[i..]),
        None => format!("{html}{script}"),
    };
    let page = dir.path().join("page.html");
    std::fs::write(&page, copy).expect("write page");
    let out = run(|| {
        let mut c = command(width, &dir.path().join("profile"));
        c.arg("--dump-dom")
            .arg(format!("file://{}", page.display()));
        c
    });
    let dom = String::from_utf8_lossy(&out.stdout);
    let Some(rest) = dom.split("PROBE ").nth(1) else {
        panic!(
            "chromium did not run the probe (exit {:?}):\n{}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr),
            dom.chars().take(2000).collect::<String>()
        );
    };
    let nums: Vec<u32> = rest
        .split(" END")
        .next()
        .unwrap_or_default()
        .split(' ')
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(nums.len(), 2, "probe output {rest:?}");
    Probe {
        scroll_width: nums[0],
        viewport_width: nums[1],
        scripts_in_product,
    }
}

/// Saves a screenshot of `html` (as is, no script) at `width` px into `path`.
pub fn screenshot(html: &str, width: u32, path: &Path) {
    let dir = tempfile::tempdir().expect("temp dir");
    let page = dir.path().join("page.html");
    std::fs::write(&page, html).expect("write page");
    let out = run(|| {
        let mut c = command(width, &dir.path().join("profile"));
        c.arg(format!("--screenshot={}", path.display()))
            .arg(format!("file://{}", page.display()));
        c
    });
    assert!(
        path.exists(),
        "chromium wrote no screenshot (exit {:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}
