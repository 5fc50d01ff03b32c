//! One paged list of every report kind: what `scan --from cluster` reads.

use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};

use super::{api_resource, present_kinds, to_raw};
use crate::config::KubeConfig;
use crate::model::ReportKind;
use crate::source::{InputError, Origin, Position, RawObject};

#[derive(Debug, Default)]
pub struct ListOutcome {
    pub listed: Vec<ReportKind>,
    /// Wanted kinds whose CRD is not installed.
    pub absent: Vec<ReportKind>,
    /// Objects in namespaces the filters exclude.
    pub filtered: u64,
    /// Kinds whose list failed part-way: their reports are unknown.
    pub errors: Vec<InputError>,
}

/// Lists every wanted kind page by page and hands each object to `sink`; a page is
/// dropped before the next is fetched.
pub async fn list_reports(
    client: &Client,
    cfg: &KubeConfig,
    sink: &mut (dyn FnMut(RawObject) + Send),
) -> Result<ListOutcome, kube::Error> {
    let (present, absent) = present_kinds(client, &cfg.kinds()).await?;
    let mut out = ListOutcome {
        absent,
        ..ListOutcome::default()
    };
    for kind in present {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &api_resource(kind));
        let mut lp = ListParams::default().limit(cfg.page_size);
        if let Some(sel) = &cfg.label_selector {
            lp = lp.labels(sel);
        }
        let plural = kind.plural();
        let mut i = 0usize;
        let complete = loop {
            let page = match api.list(&lp).await {
                Ok(p) => p,
                Err(e) => {
                    out.errors.push(InputError {
                        origin: Origin {
                            file: "cluster".into(),
                            document: None,
                            position: Position::Keyed(plural.clone(), i),
                        },
                        message: format!("listing {plural} failed: {e}"),
                    });
                    break false;
                }
            };
            for obj in page.items {
                let ns = obj.metadata.namespace.as_deref().unwrap_or("");
                if !cfg.namespace_wanted(ns) {
                    out.filtered += 1;
                    continue;
                }
                sink(to_raw(obj, kind, Position::Keyed(plural.clone(), i)));
                i += 1;
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => lp.continue_token = Some(token),
                None => break true,
            }
        };
        if complete {
            out.listed.push(kind);
        }
    }
    Ok(out)
}
