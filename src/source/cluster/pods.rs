//! Digest recovery: a report without a usable digest names its owner; the owner's Pods
//! know the digest the kubelet pulled (`status.containerStatuses[].imageID`).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams};

/// What a Pod tells about the images its containers run.
#[derive(Debug, Clone)]
struct PodImages {
    name: String,
    owners: Vec<(String, String)>,
    /// container name → digest.
    digests: HashMap<String, String>,
}

/// Pods per namespace, read once per batch.
pub struct PodDigests {
    client: Client,
    cache: HashMap<String, Vec<PodImages>>,
}

impl PodDigests {
    pub fn new(client: Client) -> PodDigests {
        PodDigests {
            client,
            cache: HashMap::new(),
        }
    }

    /// Forgets what was read: Pods change, a batch must not use an old view.
    pub fn clear(&mut self) {
        self.cache.clear();
    }

    /// The digest the owner's Pods run for `container`, if any Pod reports one.
    pub async fn digest(
        &mut self,
        namespace: &str,
        owner: &(String, String),
        container: &str,
    ) -> Result<Option<String>, kube::Error> {
        if !self.cache.contains_key(namespace) {
            let pods = self.read(namespace).await?;
            self.cache.insert(namespace.to_owned(), pods);
        }
        let pods = self
            .cache
            .get(namespace)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let (kind, name) = owner;
        let owned = |p: &&PodImages| -> bool {
            match kind.as_str() {
                "Pod" => p.name == *name,
                // A CronJob's Pods are owned by its Jobs, named `<cronjob>-<minutes>`.
                "CronJob" => p.owners.iter().any(|(k, n)| {
                    k == "Job"
                        && n.strip_prefix(name.as_str())
                            .is_some_and(|r| r.starts_with('-'))
                }),
                _ => p.owners.iter().any(|(k, n)| k == kind && n == name),
            }
        };
        Ok(pods
            .iter()
            .filter(owned)
            .find_map(|p| p.digests.get(container).cloned()))
    }

    async fn read(&self, namespace: &str) -> Result<Vec<PodImages>, kube::Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let mut lp = ListParams::default().limit(200);
        let mut out = Vec::new();
        loop {
            let page = api.list(&lp).await?;
            for pod in page.items {
                let owners = pod
                    .metadata
                    .owner_references
                    .unwrap_or_default()
                    .into_iter()
                    .map(|o| (o.kind, o.name))
                    .collect();
                let status = pod.status.unwrap_or_default();
                let digests = status
                    .container_statuses
                    .into_iter()
                    .flatten()
                    .chain(status.init_container_statuses.into_iter().flatten())
                    .filter_map(|c| digest_of(&c.image_id).map(|d| (c.name, d)))
                    .collect();
                out.push(PodImages {
                    name: pod.metadata.name.unwrap_or_default(),
                    owners,
                    digests,
                });
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(t) => lp.continue_token = Some(t),
                None => return Ok(out),
            }
        }
    }
}

/// `docker-pullable://nginx@sha256:…`, `docker.io/library/nginx@sha256:…` → `sha256:…`.
/// An imageID without `@` is a local image (config) ID, not a registry digest.
pub fn digest_of(image_id: &str) -> Option<String> {
    let (_, digest) = image_id.rsplit_once('@')?;
    let (algo, hex) = digest.split_once(':')?;
    (algo == "sha256" && hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| digest.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube_fixture::FakeKube;
    use serde_json::json;

    fn pod(name: &str, owner: (&str, &str), container: &str, image_id: &str) -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop",
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner.0, "name": owner.1, "uid": "u", "controller": true}]},
            "status": {"containerStatuses": [{"name": container, "image": "nginx:1.25", "imageID": image_id,
                                              "ready": true, "restartCount": 0}]}
        })
    }

    #[tokio::test]
    async fn the_owners_pods_give_the_digest() {
        let d1 = format!("sha256:{}", "1".repeat(64));
        let d2 = format!("sha256:{}", "2".repeat(64));
        let (client, fake) = FakeKube::start();
        fake.lock().pods.insert(
            "shop".into(),
            vec![
                pod(
                    "api-7cc565547-x1",
                    ("ReplicaSet", "api-7cc565547"),
                    "app",
                    &format!("docker.io/library/nginx@{d1}"),
                ),
                pod(
                    "web-5d4f8b9c6-y2",
                    ("ReplicaSet", "web-5d4f8b9c6"),
                    "app",
                    &format!("docker-pullable://nginx@{d2}"),
                ),
                pod(
                    "backup-29012345-z3",
                    ("Job", "backup-29012345"),
                    "dump",
                    &format!("nginx@{d2}"),
                ),
                pod("local-1", ("ReplicaSet", "local"), "app", &d1),
            ],
        );
        let mut p = PodDigests::new(client);
        let rs = |n: &str| ("ReplicaSet".to_string(), n.to_string());
        assert_eq!(
            p.digest("shop", &rs("api-7cc565547"), "app")
                .await
                .expect("list"),
            Some(d1.clone())
        );
        assert_eq!(
            p.digest("shop", &rs("web-5d4f8b9c6"), "app")
                .await
                .expect("cached"),
            Some(d2.clone())
        );
        assert_eq!(
            p.digest("shop", &rs("api-7cc565547"), "sidecar")
                .await
                .expect("cached"),
            None
        );
        assert_eq!(
            p.digest("shop", &rs("local"), "app").await.expect("cached"),
            None,
            "config ID"
        );
        let cron = ("CronJob".to_string(), "backup".to_string());
        assert_eq!(
            p.digest("shop", &cron, "dump").await.expect("cached"),
            Some(d2)
        );
        let lists = fake
            .lock()
            .requests
            .iter()
            .filter(|r| r.ends_with("/pods"))
            .count();
        assert_eq!(lists, 1, "one list per namespace and batch");
        p.clear();
        p.digest("shop", &rs("api-7cc565547"), "app")
            .await
            .expect("list again");
        assert_eq!(
            fake.lock()
                .requests
                .iter()
                .filter(|r| r.ends_with("/pods"))
                .count(),
            2
        );
    }

    #[test]
    fn image_ids() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            digest_of(&format!("docker-pullable://nginx@{d}")),
            Some(d.clone())
        );
        assert_eq!(
            digest_of(&format!("docker.io/library/nginx@{d}")),
            Some(d.clone())
        );
        assert_eq!(digest_of(&d), None, "a config ID is not a repo digest");
        assert_eq!(digest_of("nginx@sha256:abc"), None);
    }
}
