//! From a report's owner to the workload users think of: a Deployment's ReplicaSets are
//! the Deployment, a CronJob's Jobs are the CronJob. Offline we only have names, so the
//! controller suffixes Kubernetes generates are recognised and stripped.

use crate::model::WorkloadKey;

/// The alphabet of `rand.SafeEncodeString`, used for pod-template-hash.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Resolves the top controller from an owner kind and name.
pub fn top_controller(namespace: &str, kind: &str, name: &str) -> WorkloadKey {
    let (kind, name) = match kind {
        "ReplicaSet" => match strip_pod_template_hash(name) {
            Some(base) => ("Deployment", base),
            None => (kind, name),
        },
        "Job" => match strip_cronjob_suffix(name) {
            Some(base) => ("CronJob", base),
            None => (kind, name),
        },
        _ => (kind, name),
    };
    WorkloadKey {
        namespace: namespace.to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
    }
}

/// `my-api-7cc565547` → `my-api`. The hash is a uint32 in decimal, each digit encoded in
/// the safe alphabet, so it is 1 to 10 characters; we require 6+ to avoid stripping
/// ordinary name parts such as `-v2`.
fn strip_pod_template_hash(name: &str) -> Option<&str> {
    let (base, suffix) = name.rsplit_once('-')?;
    let ok = !base.is_empty()
        && (6..=10).contains(&suffix.len())
        && suffix.bytes().all(|b| SAFE_ALPHABET.contains(&b));
    ok.then_some(base)
}

/// `backup-29012345` → `backup`: CronJob Jobs are named after the scheduled time in
/// minutes since the epoch (8 digits from 1984 until 2160).
fn strip_cronjob_suffix(name: &str) -> Option<&str> {
    let (base, suffix) = name.rsplit_once('-')?;
    let ok = !base.is_empty() && suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_digit());
    ok.then_some(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicasets_are_their_deployment() {
        let w = top_controller("ns", "ReplicaSet", "my-api-7cc565547");
        assert_eq!((w.kind.as_str(), w.name.as_str()), ("Deployment", "my-api"));
        let w = top_controller("ns", "ReplicaSet", "nginx-deployment-965685897");
        assert_eq!(w.name, "nginx-deployment");
        let w = top_controller("ns", "ReplicaSet", "nginx-6d4cf56db6");
        assert_eq!(w.name, "nginx");
    }

    #[test]
    fn ordinary_names_are_kept() {
        let w = top_controller("ns", "ReplicaSet", "api-v2");
        assert_eq!((w.kind.as_str(), w.name.as_str()), ("ReplicaSet", "api-v2"));
        // 'a', 'e', 'i', 'o', 'u', '0', '1', '3' are not in the alphabet.
        let w = top_controller("ns", "ReplicaSet", "api-abcdef01");
        assert_eq!(w.kind, "ReplicaSet");
        let w = top_controller("ns", "StatefulSet", "db-7cc565547");
        assert_eq!(
            (w.kind.as_str(), w.name.as_str()),
            ("StatefulSet", "db-7cc565547")
        );
    }

    #[test]
    fn cronjob_jobs_are_their_cronjob() {
        let w = top_controller("ns", "Job", "backup-29012345");
        assert_eq!((w.kind.as_str(), w.name.as_str()), ("CronJob", "backup"));
        let w = top_controller("ns", "Job", "migrate-2024");
        assert_eq!((w.kind.as_str(), w.name.as_str()), ("Job", "migrate-2024"));
    }
}
