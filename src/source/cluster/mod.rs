//! Reports from a Kubernetes cluster: which report CRDs exist, one paged list of every
//! kind (`scan --from cluster`), and watch streams (`run`). Objects are turned into the
//! same `RawObject` as files, so one parser serves both; nothing is cached here.

pub mod list;
pub mod pods;
pub mod watch;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, TypeMeta};

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

/// `vulnerabilityreports.aquasecurity.github.io`.
pub fn crd_name(kind: ReportKind) -> String {
    format!("{}.{GROUP}", kind.plural())
}

/// The wanted kinds whose CRD exists and is established, and those whose CRD is absent.
pub async fn present_kinds(
    client: &Client,
    wanted: &[ReportKind],
) -> Result<(Vec<ReportKind>, Vec<ReportKind>), kube::Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut present = Vec::new();
    let mut absent = Vec::new();
    for kind in wanted {
        let established = crds.get_opt(&crd_name(*kind)).await?.is_some_and(|crd| {
            crd.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        });
        if established {
            present.push(*kind);
        } else {
            absent.push(*kind);
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
