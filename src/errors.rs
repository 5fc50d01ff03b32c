//! Error text that helps: the whole chain of causes, so that a timeout, a refused
//! connection and a TLS failure can be told apart in one log line.

use std::error::Error;

/// `outer: cause: root cause`, skipping causes whose text the outer one already holds
/// (hyper and reqwest often repeat their source in their own message).
pub fn chain(e: &(dyn Error + 'static)) -> String {
    chain_after(e.to_string(), e.source())
}

/// Appends the causes from `source` on to `head`.
pub fn chain_after(head: String, source: Option<&(dyn Error + 'static)>) -> String {
    causes_after(head, source, |_| true)
}

/// Appends the causes from `source` whose text `keep` accepts.
fn causes_after(
    mut head: String,
    mut source: Option<&(dyn Error + 'static)>,
    keep: impl Fn(&str) -> bool,
) -> String {
    while let Some(inner) = source {
        let t = inner.to_string();
        if !head.contains(&t) && keep(&t) {
            head.push_str(": ");
            head.push_str(&t);
        }
        source = inner.source();
    }
    head
}

/// A reqwest error as an operator needs it: "timed out" or "cannot connect" instead of
/// reqwest's bare `error sending request`, then the causes ("connection refused", a DNS
/// or TLS failure). reqwest's own text names the URL: callers whose URL is a credential
/// (a Slack webhook) pass `e.without_url()`. A cause that names a URL is left out, as
/// the URL could come back that way.
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let head = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        e.to_string()
    };
    causes_after(head, e.source(), |t| !t.contains("://"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn names_the_root_cause() {
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "dial tcp 10.96.0.1:443: i/o timeout",
        ));
        assert_eq!(
            chain(&e),
            "client error (Connect): dial tcp 10.96.0.1:443: i/o timeout"
        );
    }

    #[tokio::test]
    async fn a_stripped_reqwest_error_names_the_cause_not_the_url() {
        // Port 1 on loopback refuses: a connect error, whose text would name the URL.
        let e = reqwest::get("http://127.0.0.1:1/services/T000/B000/secret-token")
            .await
            .expect_err("refused");
        let text = describe_reqwest(&e.without_url());
        assert!(text.starts_with("cannot connect"), "{text}");
        assert!(!text.contains("secret-token"), "{text}");
    }
}
