//! Reports from a Kubernetes cluster: which report CRDs exist, one paged list of every
//! kind (`scan --from cluster`), and watch streams (`run`). Objects are turned into the
//! same `RawObject` as files, so one parser serves both; nothing is cached here.

pub mod connect;
pub mod list;
pub mod pods;
pub mod watch;

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, TypeMeta};

use super::{Origin, Position, RawObject};
use crate::model::ReportKind;

pub const GROUP: &str = "aquasecurity.github.io";
pub const VERSION: &str = "v1alpha1";

/// The API coordinates of a report kind.
pub fn api_resource(kind: ReportKind) -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: kind.as_str().into(),
        plural: kind.plural(),
    }
}

/// The wanted kinds the API serves, and those it does not (CRD not installed). Asked by
/// listing one object of each kind, so no permission beyond the reports' is needed (a
/// missing CRD answers 404, as plain text: the status code is what counts).
pub async fn present_kinds(
    client: &Client,
    wanted: &[ReportKind],
) -> Result<(Vec<ReportKind>, Vec<ReportKind>), kube::Error> {
    let mut present = Vec::new();
    let mut absent = Vec::new();
    for kind in wanted {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &api_resource(*kind));
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => present.push(*kind),
            Err(kube::Error::Api(s)) if s.code == 404 => absent.push(*kind),
            Err(e) => return Err(e),
        }
    }
    Ok((present, absent))
}

/// One object from the API as the parser reads it. List items of custom resources carry
/// `apiVersion`/`kind`; they are set from the watched kind when missing.
pub fn to_raw(mut obj: DynamicObject, kind: ReportKind, position: Position) -> RawObject {
    if obj.types.is_none() {
        obj.types = Some(TypeMeta {
            api_version: format!("{GROUP}/{VERSION}"),
            kind: kind.as_str().into(),
        });
    }
    let json = serde_json::to_vec(&obj).unwrap_or_default();
    RawObject {
        origin: Origin {
            file: "cluster".into(),
            document: None,
            position,
        },
        json,
        kind_hint: Some(kind),
        name_hint: None,
    }
}
