//! Rendering with askama: an HTML page for mail clients and browsers (inline CSS, table
//! layout, no script, no external asset; everything from reports escaped) and a plain
//! text part with the same numbers.

use anyhow::{Context, Result};
use askama::Template;

use super::config::SummaryTemplates;
use super::context::SummaryContext;
use super::report::Summary;
use crate::output::custom_template::TemplateFile;

#[derive(Template)]
#[template(path = "summary/summary.html")]
struct HtmlPage<'a> {
    s: &'a Summary,
}

#[derive(Template)]
#[template(path = "summary/summary.txt")]
struct TextPage<'a> {
    s: &'a Summary,
}

/// One entry of the `/summary/` index.
#[derive(Debug, Clone)]
pub struct IndexMonth {
    pub label: String,
    pub href: String,
    pub partial: bool,
}

#[derive(Debug, Clone)]
pub struct IndexTeam {
    pub name: String,
    pub href: String,
}

#[derive(Template)]
#[template(path = "summary/index.html")]
struct IndexPage<'a> {
    cluster: &'a str,
    team: Option<&'a str>,
    months: &'a [IndexMonth],
    teams: &'a [IndexTeam],
}

/// The built-in HTML page.
pub fn html(s: &Summary) -> Result<String> {
    html_with(s, &SummaryTemplates::default())
}

/// The built-in text part.
pub fn text(s: &Summary) -> Result<String> {
    text_with(s, &SummaryTemplates::default())
}

/// A user's template (`summary.templates.*`) over the summary's documented context.
fn custom(f: &TemplateFile, s: &Summary) -> Result<String> {
    Ok(f.get()?.render(&SummaryContext::from(s))?)
}

/// The HTML part: `templates.html` when configured, else the built-in page.
pub fn html_with(s: &Summary, templates: &SummaryTemplates) -> Result<String> {
    if let Some(f) = &templates.html {
        return custom(f, s);
    }
    HtmlPage { s }
        .render()
        .with_context(|| format!("rendering the HTML summary of {}", s.month))
}

/// The text part: `templates.text` when configured, else the built-in one; either way
/// without trailing spaces or runs of blank lines.
pub fn text_with(s: &Summary, templates: &SummaryTemplates) -> Result<String> {
    let t = match &templates.text {
        Some(f) => custom(f, s)?,
        None => TextPage { s }
            .render()
            .with_context(|| format!("rendering the text summary of {}", s.month))?,
    };
    // Templates keep their structure readable; the output should not carry blank runs.
    let mut out = String::with_capacity(t.len());
    let mut blank = 0;
    for line in t.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

pub fn index(
    cluster: &str,
    team: Option<&str>,
    months: &[IndexMonth],
    teams: &[IndexTeam],
) -> Result<String> {
    IndexPage {
        cluster,
        team,
        months,
        teams,
    }
    .render()
    .context("rendering the summary index")
}
