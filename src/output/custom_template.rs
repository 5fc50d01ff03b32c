//! Message templates users write (`alerts.templates.*`, `summary.templates.*`): Jinja
//! files rendered at run time with minijinja. The built-in templates stay askama
//! (compiled in, checked at build time); askama cannot load a file at run time, so an
//! override needs a runtime engine.
//!
//! A template reads one serialized context struct (`alert::template::AlertContext`,
//! `summary::context::SummaryContext`), never internal types, so its variables stay
//! stable. Unknown variables are errors (`UndefinedBehavior::Strict`), and every error
//! names the file and line.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::settings::ConfigError;

/// How variables are escaped when printed; literal template text is never changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// HTML autoescape (`&<>"'/`).
    Html,
    /// Slack mrkdwn control characters (`&<>`), as `slack::escape`.
    Slack,
    /// Plain text: printed as is.
    Text,
}

const SLACK: AutoEscape = AutoEscape::Custom(std::borrow::Cow::Borrowed("slack"));

/// A compiled override, read once at config load.
#[derive(Clone)]
pub struct CustomTemplate {
    /// The config key (`alerts.templates.slack`), for errors.
    key: String,
    path: PathBuf,
    env: Arc<Environment<'static>>,
}

impl fmt::Debug for CustomTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustomTemplate({}: {})", self.key, self.path.display())
    }
}

/// A render error: the config key, then minijinja's message `… (in <file>:<line>)`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{key} ({path}): {message}")]
pub struct RenderError {
    pub key: String,
    pub path: String,
    pub message: String,
}

impl CustomTemplate {
    /// Compiles `source`; a syntax error names the file and line.
    pub fn compile(
        key: &str,
        path: &Path,
        source: String,
        escape: Escape,
    ) -> Result<CustomTemplate, RenderError> {
        let name = path.display().to_string();
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(move |_| match escape {
            Escape::Html => AutoEscape::Html,
            Escape::Slack => SLACK,
            Escape::Text => AutoEscape::None,
        });
        env.set_formatter(|out, state, value| {
            // `none` (an absent link) prints as nothing rather than the word `none`.
            if value.is_none() {
                return Ok(());
            }
            if *state.auto_escape() == SLACK && !value.is_safe() {
                let text = match value.as_str() {
                    Some(s) => crate::output::alert::channel::mrkdwn::escape(s),
                    None => crate::output::alert::channel::mrkdwn::escape(&value.to_string()),
                };
                return out.write_str(&text).map_err(|e| {
                    minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string())
                });
            }
            minijinja::escape_formatter(out, state, value)
        });
        if escape == Escape::Slack {
            // `{{ link(url, label) }}`: a Slack link, only for http(s) URLs, its label
            // escaped; anything else prints the escaped label.
            env.add_function("link", |url: Option<String>, label: String| {
                Value::from_safe_string(match url {
                    Some(u) => crate::output::alert::channel::mrkdwn::link(&u, &label),
                    None => crate::output::alert::channel::mrkdwn::escape(&label),
                })
            });
        }
        env.add_template_owned(name.clone(), source)
            .map_err(|e| RenderError {
                key: key.to_owned(),
                path: name,
                message: e.to_string(),
            })?;
        Ok(CustomTemplate {
            key: key.to_owned(),
            path: path.to_owned(),
            env: Arc::new(env),
        })
    }

    /// Reads and compiles the file at `path`; errors name `key` and the path.
    pub fn load(key: &str, path: &Path, escape: Escape) -> Result<CustomTemplate, ConfigError> {
        let source = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::Invalid(format!(
                "{key}: cannot read template {}: {e}",
                path.display()
            ))
        })?;
        CustomTemplate::compile(key, path, source, escape)
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    pub fn render<C: Serialize>(&self, ctx: &C) -> Result<String, RenderError> {
        let name = self.path.display().to_string();
        let err = |e: minijinja::Error| RenderError {
            key: self.key.clone(),
            path: name.clone(),
            message: e.to_string(),
        };
        let t = self.env.get_template(&name).map_err(err)?;
        t.render(Value::from(Serde(ctx))).map_err(err)
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A template file in the configuration: a path, read and compiled by `load` when the
/// configuration is loaded. Written back (`config check`) as its path.
#[derive(Debug, Clone)]
pub struct TemplateFile {
    path: PathBuf,
    compiled: Option<CustomTemplate>,
}

impl TemplateFile {
    pub fn new(path: impl Into<PathBuf>) -> TemplateFile {
        TemplateFile {
            path: path.into(),
            compiled: None,
        }
    }

    pub fn load(&mut self, key: &str, escape: Escape) -> Result<(), ConfigError> {
        self.compiled = Some(CustomTemplate::load(key, &self.path, escape)?);
        Ok(())
    }

    /// The compiled template; an error if the configuration was never loaded (a template
    /// is never silently replaced by the built-in one).
    pub fn get(&self) -> Result<&CustomTemplate, RenderError> {
        self.compiled.as_ref().ok_or_else(|| RenderError {
            key: "template".into(),
            path: self.path.display().to_string(),
            message: "not loaded".into(),
        })
    }
}

impl Serialize for TemplateFile {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.path.serialize(s)
    }
}

impl<'de> Deserialize<'de> for TemplateFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let p = PathBuf::deserialize(d)?;
        if p.as_os_str().is_empty() {
            return Err(serde::de::Error::custom(
                "a template path must not be empty",
            ));
        }
        Ok(TemplateFile::new(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Ctx {
        title: &'static str,
        url: Option<&'static str>,
    }

    fn t(src: &str, escape: Escape) -> CustomTemplate {
        CustomTemplate::compile("k", Path::new("/t/x.j2"), src.into(), escape).expect("compiles")
    }

    const CTX: Ctx = Ctx {
        title: "<!channel> & <b>",
        url: None,
    };

    #[test]
    fn escaping_per_kind() {
        let src = "<b>{{ title }}</b>{{ url }}";
        assert_eq!(
            t(src, Escape::Html).render(&CTX).expect("r"),
            "<b>&lt;!channel&gt; &amp; &lt;b&gt;</b>"
        );
        assert_eq!(
            t(src, Escape::Slack).render(&CTX).expect("r"),
            "<b>&lt;!channel&gt; &amp; &lt;b&gt;</b>"
        );
        assert_eq!(
            t(src, Escape::Text).render(&CTX).expect("r"),
            "<b><!channel> & <b></b>"
        );
        assert_eq!(
            t("{{ link('https://x.example/?a=1', title) }}", Escape::Slack)
                .render(&CTX)
                .expect("r"),
            "<https://x.example/?a=1|&lt;!channel&gt; &amp; &lt;b&gt;>"
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = CustomTemplate::compile(
            "k",
            Path::new("/t/x.j2"),
            "a\n{% if %}".into(),
            Escape::Text,
        )
        .expect_err("syntax");
        assert!(e.to_string().contains("/t/x.j2:2"), "{e}");
        let e = t("a\nb\n{{ nope }}", Escape::Text)
            .render(&CTX)
            .expect_err("unknown variable");
        assert!(e.to_string().contains("/t/x.j2:3"), "{e}");
        assert!(e.to_string().contains("undefined"), "{e}");
    }
}
