//! Package version requirements for the inventory query (`--version`).
//!
//! Versions come from every ecosystem (Debian `1:2.36-9+deb12u4`, Maven `2.14.1`, npm
//! `4.17.21`, Go `v0.0.0-2023…`), so comparison is generic: runs of digits compare as
//! numbers, other runs as text, and a version that is a prefix of another is older
//! (`2.14` < `2.14.1`). That orders what people ask about ("log4j-core below 2.17.1")
//! correctly; ecosystem-exact rules (Debian's `~`, semver pre-releases) are not claimed.

use std::cmp::Ordering;
use std::fmt;

/// Comparisons: `=2.14.1`, `<2.17.1`, `>=2.0`, or a bare `2.14` (that version and its
/// sub-versions: `2.14`, `2.14.1`, `2.14.0-beta`, not `2.140`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionReq {
    clauses: Vec<(Op, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
    Prefix,
}

impl VersionReq {
    /// Comma-separated clauses that must all hold: `>=2.0,<2.17.1`.
    pub fn parse(s: &str) -> Result<VersionReq, String> {
        let mut clauses = Vec::new();
        for part in s.split(',') {
            let p = part.trim();
            let (op, rest) = if let Some(r) = p.strip_prefix(">=") {
                (Op::Ge, r)
            } else if let Some(r) = p.strip_prefix("<=") {
                (Op::Le, r)
            } else if let Some(r) = p.strip_prefix("==") {
                (Op::Eq, r)
            } else if let Some(r) = p.strip_prefix('=') {
                (Op::Eq, r)
            } else if let Some(r) = p.strip_prefix('<') {
                (Op::Lt, r)
            } else if let Some(r) = p.strip_prefix('>') {
                (Op::Gt, r)
            } else {
                (Op::Prefix, p)
            };
            let v = rest.trim();
            if v.is_empty() || v.contains(char::is_whitespace) {
                return Err(format!(
                    "invalid version requirement {s:?}: use a version (`2.14`), or \
                     comparisons such as `<2.17.1` or `>=2.0,<2.17.1`"
                ));
            }
            clauses.push((op, v.to_owned()));
        }
        Ok(VersionReq { clauses })
    }

    pub fn matches(&self, version: &str) -> bool {
        self.clauses.iter().all(|(op, want)| {
            let c = compare(version, want);
            match op {
                Op::Eq => c == Ordering::Equal,
                Op::Lt => c == Ordering::Less,
                Op::Le => c != Ordering::Greater,
                Op::Gt => c == Ordering::Greater,
                Op::Ge => c != Ordering::Less,
                Op::Prefix => {
                    version == want
                        || version.strip_prefix(want.as_str()).is_some_and(|rest| {
                            rest.starts_with(|ch: char| !ch.is_ascii_alphanumeric())
                        })
                }
            }
        })
    }
}

impl fmt::Display for VersionReq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (op, v)) in self.clauses.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match op {
                Op::Eq => "=",
                Op::Lt => "<",
                Op::Le => "<=",
                Op::Gt => ">",
                Op::Ge => ">=",
                Op::Prefix => "",
            };
            write!(f, "{op}{v}")?;
        }
        Ok(())
    }
}

/// Generic version order (see the module comment). A leading `v` is ignored.
pub fn compare(a: &str, b: &str) -> Ordering {
    let a = a.strip_prefix('v').unwrap_or(a);
    let b = b.strip_prefix('v').unwrap_or(b);
    let (mut x, mut y) = (tokens(a), tokens(b));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => {
                let c = match (p, q) {
                    (Token::Num(p), Token::Num(q)) => {
                        let (p, q) = (p.trim_start_matches('0'), q.trim_start_matches('0'));
                        p.len().cmp(&q.len()).then_with(|| p.cmp(q))
                    }
                    // A number sorts after text: `1.0.1` > `1.0.beta`.
                    (Token::Num(_), Token::Text(_)) => Ordering::Greater,
                    (Token::Text(_), Token::Num(_)) => Ordering::Less,
                    (Token::Text(p), Token::Text(q)) => p.cmp(q),
                };
                if c != Ordering::Equal {
                    return c;
                }
            }
        }
    }
}

enum Token<'a> {
    Num(&'a str),
    Text(&'a str),
}

/// Runs of digits and of letters; separators only separate.
fn tokens(s: &str) -> impl Iterator<Item = Token<'_>> {
    let mut rest = s;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
        let first = rest.chars().next()?;
        let digit = first.is_ascii_digit();
        let end = rest
            .find(|c: char| !c.is_ascii_alphanumeric() || c.is_ascii_digit() != digit)
            .unwrap_or(rest.len());
        let (tok, tail) = rest.split_at(end);
        rest = tail;
        Some(if digit {
            Token::Num(tok)
        } else {
            Token::Text(tok)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_versions_people_ask_about() {
        assert_eq!(compare("2.14.1", "2.17.1"), Ordering::Less);
        assert_eq!(compare("2.9", "2.14"), Ordering::Less);
        assert_eq!(compare("2.14", "2.14.1"), Ordering::Less);
        assert_eq!(compare("v1.2.3", "1.2.3"), Ordering::Equal);
        assert_eq!(compare("1.0.010", "1.0.9"), Ordering::Greater);
        assert_eq!(
            compare("3.0.2-0ubuntu1.10", "3.0.2-0ubuntu1.9"),
            Ordering::Greater
        );
        assert_eq!(compare("1.0.1", "1.0.beta"), Ordering::Greater);
    }

    #[test]
    fn requirements() {
        let below = VersionReq::parse("<2.17.1").expect("req");
        assert!(below.matches("2.14.1"));
        assert!(!below.matches("2.17.1"));
        let range = VersionReq::parse(">=2.0, <2.15").expect("req");
        assert!(range.matches("2.14.1"));
        assert!(!range.matches("1.2.17"));
        let prefix = VersionReq::parse("2.14").expect("req");
        assert!(prefix.matches("2.14"));
        assert!(prefix.matches("2.14.1"));
        assert!(!prefix.matches("2.140"));
        assert!(!prefix.matches("2.15.0"));
        let exact = VersionReq::parse("=2.14.1").expect("req");
        assert!(exact.matches("2.14.1"));
        assert!(!exact.matches("2.14.10"));
        assert_eq!(range.to_string(), ">=2.0,<2.15");
        assert!(VersionReq::parse("<").is_err());
        assert!(VersionReq::parse("2.1 3").is_err());
    }
}
