//! A watch stream per report kind. Each event is turned into a `RawObject` at once and the
//! API object dropped: no reflector, no cache of whole reports, so memory does not grow
//! with report size (the Trivy Operator's own informers use ~800 MiB, #2028).

use futures_util::{Stream, StreamExt};
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};

use super::{api_resource, to_raw};
use crate::config::KubeConfig;
use crate::model::{ReportId, ReportKind};
use crate::source::{Position, RawObject};

/// What the controller learns from a watch.
#[derive(Debug)]
pub enum Event {
    /// Created or changed (also every object of a (re)list).
    Apply(RawObject),
    Delete(ReportId),
    /// A (re)list starts: after `Listed`, reports of this kind not seen since are gone.
    Relist,
    Listed,
    /// The watch failed; it is retried with backoff.
    Failed(String),
}

/// Watches one kind, with the namespace filter applied.
pub fn watch_kind(
    client: Client,
    kind: ReportKind,
    cfg: &KubeConfig,
) -> impl Stream<Item = Event> + Send + 'static {
    let api: Api<DynamicObject> = Api::all_with(client, &api_resource(kind));
    let mut wc = watcher::Config::default().page_size(cfg.page_size);
    if let Some(sel) = &cfg.label_selector {
        wc = wc.labels(sel);
    }
    let filter = cfg.clone();
    let plural = kind.plural();
    let mut seq = 0usize;
    watcher(api, wc).default_backoff().filter_map(move |ev| {
        let out = match ev {
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                let ns = o.metadata.namespace.as_deref().unwrap_or("");
                if filter.namespace_wanted(ns) {
                    seq += 1;
                    Some(Event::Apply(to_raw(
                        o,
                        kind,
                        Position::Keyed(plural.clone(), seq),
                    )))
                } else {
                    None
                }
            }
            Ok(watcher::Event::Delete(o)) => {
                let ns = o.metadata.namespace.clone().unwrap_or_default();
                match o.metadata.name.clone() {
                    Some(name) if filter.namespace_wanted(&ns) => Some(Event::Delete(ReportId {
                        kind,
                        namespace: if kind.is_cluster_scoped() {
                            String::new()
                        } else {
                            ns
                        },
                        name,
                    })),
                    _ => None,
                }
            }
            Ok(watcher::Event::Init) => Some(Event::Relist),
            Ok(watcher::Event::InitDone) => Some(Event::Listed),
            Err(e) => Some(Event::Failed(e.to_string())),
        };
        std::future::ready(out)
    })
}
