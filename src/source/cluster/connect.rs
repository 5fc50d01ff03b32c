//! The Kubernetes client, as `kube::Client::try_default` builds it (kubeconfig, else
//! in-cluster) with one correction: kube 5 takes `HTTPS_PROXY` for a kubeconfig's cluster
//! but matches `NO_PROXY` against the proxy's own address instead of the API server's, so
//! an API server listed in `NO_PROXY` was still reached through the proxy. Here an
//! environment proxy is dropped when `NO_PROXY` covers the server, with the same rules
//! (and the same matcher) reqwest applies to DefectDojo, Slack and webhooks. A proxy set
//! in the kubeconfig (`proxy-url`) is kept, as kubectl keeps it.

use anyhow::Result;
use hyper_util::client::proxy::matcher::Matcher;

pub async fn client() -> Result<kube::Client> {
    let mut config = kube::Config::infer().await?;
    if let Some(proxy) = &config.proxy_url
        && from_environment(proxy)
        && no_proxy_covers(&config.cluster_url)
    {
        config.proxy_url = None;
    }
    Ok(kube::Client::try_from(config)?)
}

/// The proxy is the one `HTTPS_PROXY` / `https_proxy` names (kube's own order).
fn from_environment(proxy: &hyper::Uri) -> bool {
    ["HTTPS_PROXY", "https_proxy"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.trim().is_empty())
        .and_then(|v| v.trim().parse::<hyper::Uri>().ok())
        .is_some_and(|env| &env == proxy)
}

fn no_proxy_covers(server: &hyper::Uri) -> bool {
    let no = ["NO_PROXY", "no_proxy"]
        .iter()
        .find_map(|v| std::env::var(v).ok())
        .unwrap_or_default();
    if no.trim().is_empty() {
        return false;
    }
    // Any proxy address: only the NO_PROXY decision is asked of the matcher.
    let m = Matcher::builder()
        .http("http://proxy.invalid:3128")
        .https("http://proxy.invalid:3128")
        .no(no)
        .build();
    m.intercept(server).is_none()
}
