//! Slack mrkdwn text: escaping and links. A leaf, so the template engine's Slack escaping
//! (`output::custom_template`) uses the same rules as the channel without depending on it.

/// Escapes the three characters Slack's mrkdwn treats as control characters.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            c => o.push(c),
        }
    }
    o
}

/// `<url|label>` for an http(s) URL; characters that would end the link are encoded.
pub fn link(url: &str, label: &str) -> String {
    let label = escape(&label.replace('|', "/"));
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return label;
    }
    let mut u = String::with_capacity(url.len());
    for c in url.chars() {
        match c {
            '<' => u.push_str("%3C"),
            '>' => u.push_str("%3E"),
            '|' => u.push_str("%7C"),
            ' ' => u.push_str("%20"),
            '"' => u.push_str("%22"),
            '&' => u.push_str("&amp;"),
            c if c.is_control() => {}
            c => u.push(c),
        }
    }
    format!("<{u}|{label}>")
}
