//! Rendering with askama: an HTML page for mail clients and browsers (inline CSS, table
//! layout, no script, no external asset; everything from reports escaped) and a plain
//! text part with the same numbers.

use anyhow::{Context, Result};
use askama::Template;

use super::report::Summary;

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

pub fn html(s: &Summary) -> Result<String> {
    HtmlPage { s }
        .render()
        .with_context(|| format!("rendering the HTML summary of {}", s.month))
}

pub fn text(s: &Summary) -> Result<String> {
    let t = TextPage { s }
        .render()
        .with_context(|| format!("rendering the text summary of {}", s.month))?;
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
