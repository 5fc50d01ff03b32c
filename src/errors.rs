//! Error text that helps: the whole chain of causes, so that a timeout, a refused
//! connection and a TLS failure can be told apart in one log line.

use std::error::Error;

/// `outer: cause: root cause`, skipping causes whose text the outer one already holds
/// (hyper and reqwest often repeat their source in their own message).
pub fn chain(e: &(dyn Error + 'static)) -> String {
    chain_after(e.to_string(), e.source())
}

/// Appends the causes from `source` on to `head`.
pub fn chain_after(mut head: String, mut source: Option<&(dyn Error + 'static)>) -> String {
    while let Some(inner) = source {
        let t = inner.to_string();
        if !head.contains(&t) {
            head.push_str(": ");
            head.push_str(&t);
        }
        source = inner.source();
    }
    head
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
}
