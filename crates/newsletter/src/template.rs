//! Templates: `{{name}}`, `{{email}}`, `{{attr.KEY}}`, `{{unsubscribe_url}}` and the
//! tracked links `{{link.N}}`, each with an optional default after a bar
//! (`{{name|there}}`), the link rewriting that makes those, and the open-tracking pixel.

use std::collections::BTreeMap;

/// The values one subscriber's mail is rendered with.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    pub name: &'a str,
    pub email: &'a str,
    pub attributes: &'a BTreeMap<String, String>,
    pub unsubscribe_url: &'a str,
    /// The tracking URL of each link found by [`track_links`], by index.
    pub links: &'a [String],
}

/// Fills the variables of `template`. A variable may carry a default after a bar,
/// `{{name|there}}`, used when the value is missing or empty (a subscriber without a name);
/// without one, unknown and missing variables render empty. In HTML (`html = true`) every
/// value, defaults included, is escaped, so a subscriber's name cannot inject markup.
pub fn render(template: &str, vars: &Vars<'_>, html: bool) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        let inside = &rest[start + 2..start + 2 + len];
        // The first bar splits, so a default may itself hold bars.
        let (name, default) = match inside.split_once('|') {
            Some((name, default)) => (name.trim(), default.trim()),
            None => (inside.trim(), ""),
        };
        let value = match name {
            "name" => Some(vars.name),
            "email" => Some(vars.email),
            "unsubscribe_url" => Some(vars.unsubscribe_url),
            _ => {
                if let Some(key) = name.strip_prefix("attr.") {
                    vars.attributes.get(key.trim()).map(String::as_str)
                } else if let Some(n) = name.strip_prefix("link.") {
                    n.parse::<usize>()
                        .ok()
                        .and_then(|n| vars.links.get(n))
                        .map(String::as_str)
                } else {
                    None
                }
            }
        };
        let value = value.filter(|v| !v.is_empty()).unwrap_or(default);
        if html {
            out.push_str(&escape_html(value));
        } else {
            out.push_str(value);
        }
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    out
}

/// One reader's subject, text and HTML part, before they become a MIME message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// Renders a mail's three templates for one reader: the one path the sender, the preview
/// and the test mail share, so what an operator previews is what readers get.
pub fn render_parts(subject: &str, text: &str, html: Option<&str>, vars: &Vars<'_>) -> Rendered {
    Rendered {
        subject: render(subject, vars, false),
        text: render(text, vars, false),
        html: html.map(|h| render(h, vars, true)),
    }
}

pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn unescape_html(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Templates whose links were replaced by `{{link.N}}`, and the original links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub text: String,
    pub html: Option<String>,
    /// The original links, each once, in order of first appearance (text first).
    pub links: Vec<String>,
}

/// Rewrites the http and https links of a mail's templates for click tracking: bare links
/// in the text, `href` values in the HTML. Done on the template, not the rendered mail, so
/// every subscriber's mail has the same list of links (stored once per campaign or step);
/// a link that contains a variable differs per subscriber and is left alone.
pub fn track_links(text: &str, html: Option<&str>) -> Tracked {
    let mut links = Vec::new();
    let text = rewrite_text(text, &mut links);
    let html = html.map(|h| rewrite_html(h, &mut links));
    Tracked { text, html, links }
}

/// Adds the open-tracking pixel (an invisible 1x1 image loading `url`) to a rendered HTML
/// part: just before its last `</body>` (in any case), or at the end when it has none.
pub fn add_open_pixel(html: &str, url: &str) -> String {
    let pixel = format!(
        "<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" style=\"display:none\">",
        escape_html(url)
    );
    let lower = html.to_ascii_lowercase();
    let body_end = lower.rmatch_indices("</body").map(|(i, _)| i).find(|&i| {
        lower[i + "</body".len()..]
            .bytes()
            .next()
            .is_some_and(|b| b == b'>' || b.is_ascii_whitespace())
    });
    let at = body_end.unwrap_or(html.len());
    let mut out = String::with_capacity(html.len() + pixel.len());
    out.push_str(&html[..at]);
    out.push_str(&pixel);
    out.push_str(&html[at..]);
    out
}

fn link_index(links: &mut Vec<String>, url: &str) -> usize {
    if let Some(i) = links.iter().position(|l| l == url) {
        return i;
    }
    links.push(url.to_string());
    links.len() - 1
}

fn trackable(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://"))
        && url.len() > "http://".len() + 1
        && !url.contains("{{")
        && !url.contains("}}")
}

fn rewrite_text(text: &str, links: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let lower = rest.to_ascii_lowercase();
        let found = [lower.find("http://"), lower.find("https://")]
            .into_iter()
            .flatten()
            .min();
        let Some(start) = found else { break };
        let tail = &rest[start..];
        let mut end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\'' | '`'))
            .unwrap_or(tail.len());
        // Punctuation that ends a sentence is not part of the link.
        while end > 0 && tail[..end].ends_with(['.', ',', ';', ':', '!', '?', ')', ']']) {
            end -= 1;
        }
        let url = &tail[..end];
        out.push_str(&rest[..start]);
        // A link glued to a variable ("{{attr.x}}http://...") is someone's own text.
        if trackable(url) && !rest[..start].ends_with("}}") {
            let i = link_index(links, url);
            out.push_str(&format!("{{{{link.{i}}}}}"));
        } else {
            out.push_str(url);
        }
        rest = &tail[end.max(1).min(tail.len())..];
        if end == 0 {
            out.push_str(&tail[..1]);
        }
    }
    out.push_str(rest);
    out
}

fn rewrite_html(html: &str, links: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    loop {
        let lower = rest.to_ascii_lowercase();
        let Some(at) = lower.find("href") else { break };
        // `href` must be an attribute name: preceded by whitespace, followed by `=`.
        let before_ok = rest[..at].ends_with(|c: char| c.is_whitespace());
        let after = &rest[at + 4..];
        let eq = after.trim_start();
        if !before_ok || !eq.starts_with('=') {
            out.push_str(&rest[..at + 4]);
            rest = after;
            continue;
        }
        let value = eq[1..].trim_start();
        let value_start = rest.len() - value.len();
        let (quote, body) = match value.chars().next() {
            Some(q @ ('"' | '\'')) => (Some(q), &value[1..]),
            _ => (None, value),
        };
        let len = match quote {
            Some(q) => body.find(q),
            None => body.find(|c: char| c.is_whitespace() || c == '>'),
        }
        .unwrap_or(body.len());
        let raw = &body[..len];
        let url = unescape_html(raw);
        let open = usize::from(quote.is_some());
        out.push_str(&rest[..value_start + open]);
        if trackable(&url) {
            let i = link_index(links, &url);
            out.push_str(&format!("{{{{link.{i}}}}}"));
        } else {
            out.push_str(raw);
        }
        rest = &rest[value_start + open + len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(attributes: &'a BTreeMap<String, String>, links: &'a [String]) -> Vars<'a> {
        Vars {
            name: "Anna <B> & Co",
            email: "anna@example.org",
            attributes,
            unsubscribe_url: "http://h/unsubscribe/TOKEN",
            links,
        }
    }

    fn check(template: &str, html: bool, expect: &str) {
        let attributes = BTreeMap::from([
            ("city".to_string(), "Kyōto".to_string()),
            ("empty".to_string(), String::new()),
        ]);
        let links = vec!["http://h/c/L0".to_string()];
        assert_eq!(render(template, &vars(&attributes, &links), html), expect);
    }

    #[test]
    fn variables() {
        check("Hi {{name}}!", false, "Hi Anna <B> & Co!");
        check("Hi {{ name }}!", false, "Hi Anna <B> & Co!");
        check(
            "<p>Hi {{name}}</p>",
            true,
            "<p>Hi Anna &lt;B&gt; &amp; Co</p>",
        );
        check(
            "{{email}} in {{attr.city}}",
            false,
            "anna@example.org in Kyōto",
        );
        check("[{{attr.missing}}][{{nope}}]", false, "[][]");
        check("{{unsubscribe_url}}", false, "http://h/unsubscribe/TOKEN");
        check("{{link.0}} {{link.1}}", false, "http://h/c/L0 ");
        check("no vars {{ unclosed", false, "no vars {{ unclosed");
        check("", false, "");
        check("{{name}}{{email}}", false, "Anna <B> & Coanna@example.org");
    }

    #[test]
    fn defaults_fill_missing_or_empty_values() {
        check("Hi {{attr.first|there}}!", false, "Hi there!");
        check(
            "Hi {{ attr.first | dear reader }}!",
            false,
            "Hi dear reader!",
        );
        check("{{attr.city|nowhere}}", false, "Kyōto");
        check("{{attr.empty|none}}", false, "none");
        check("{{nope|x|y}}", false, "x|y");
        check("{{attr.missing|}}", false, "");
        check(
            "<b>{{attr.missing|<you> & co}}</b>",
            true,
            "<b>&lt;you&gt; &amp; co</b>",
        );
        check(
            "{{link.9|https://example.org}}",
            false,
            "https://example.org",
        );
    }

    #[test]
    fn open_pixel_goes_before_the_body_end_or_last() {
        let img =
            "<img src=\"http://h/o/T\" width=\"1\" height=\"1\" alt=\"\" style=\"display:none\">";
        assert_eq!(
            add_open_pixel("<html><body><p>Hi</p></body></html>", "http://h/o/T"),
            format!("<html><body><p>Hi</p>{img}</body></html>")
        );
        assert_eq!(
            add_open_pixel("<HTML><BODY>x</BODY >\n</HTML>", "http://h/o/T"),
            format!("<HTML><BODY>x{img}</BODY >\n</HTML>")
        );
        // The last one counts; "</bodyx" is not the end of the body.
        assert_eq!(
            add_open_pixel("<p>&lt;/body&gt;</p></body></bodyx>", "http://h/o/T"),
            format!("<p>&lt;/body&gt;</p>{img}</body></bodyx>")
        );
        assert_eq!(
            add_open_pixel("<p>Hi</p>", "http://h/o/T"),
            format!("<p>Hi</p>{img}")
        );
        assert_eq!(add_open_pixel("", "http://h/o/T"), img);
        // The URL is escaped as an attribute value.
        assert!(
            add_open_pixel("", "http://h/o/T?a=1&b=\"")
                .contains("src=\"http://h/o/T?a=1&amp;b=&quot;\"")
        );
        // Non-ASCII before the end stays intact.
        assert_eq!(
            add_open_pixel("<body>こんにちは</Body>", "http://h/o/T"),
            format!("<body>こんにちは{img}</Body>")
        );
    }

    fn tracked(text: &str, html: Option<&str>) -> (String, Option<String>, Vec<String>) {
        let t = track_links(text, html);
        (t.text, t.html, t.links)
    }

    #[test]
    fn text_links() {
        let (text, _, links) = tracked(
            "See https://example.com/a?x=1&y=2. Or (http://example.org/b), again https://example.com/a?x=1&y=2\nftp://no and http:// alone",
            None,
        );
        assert_eq!(
            text,
            "See {{link.0}}. Or ({{link.1}}), again {{link.0}}\nftp://no and http:// alone"
        );
        assert_eq!(
            links,
            vec!["https://example.com/a?x=1&y=2", "http://example.org/b"]
        );
    }

    #[test]
    fn html_links() {
        let (text, html, links) = tracked(
            "Read http://example.org/b",
            Some(
                r#"<a href="https://example.com/a?x=1&amp;y=2">A</a> <a class=x HREF='http://example.org/b'>B</a>
<a href="mailto:x@y">m</a> <a href="{{unsubscribe_url}}">u</a> <a href=http://bare.example/c>c</a> data-href="http://no.example" http://text.example"#,
            ),
        );
        assert_eq!(text, "Read {{link.0}}");
        assert_eq!(
            html.unwrap(),
            r#"<a href="{{link.1}}">A</a> <a class=x HREF='{{link.0}}'>B</a>
<a href="mailto:x@y">m</a> <a href="{{unsubscribe_url}}">u</a> <a href={{link.2}}>c</a> data-href="http://no.example" http://text.example"#
        );
        assert_eq!(
            links,
            vec![
                "http://example.org/b",
                "https://example.com/a?x=1&y=2",
                "http://bare.example/c"
            ]
        );
    }

    #[test]
    fn links_with_variables_are_left_alone() {
        let (text, html, links) = tracked(
            "https://example.com/u?e={{email}} ok",
            Some(r#"<a href="https://example.com/{{attr.id}}">x</a>"#),
        );
        assert_eq!(text, "https://example.com/u?e={{email}} ok");
        assert_eq!(
            html.unwrap(),
            r#"<a href="https://example.com/{{attr.id}}">x</a>"#
        );
        assert!(links.is_empty());
    }

    #[test]
    fn rendered_tracking_round_trip() {
        let t = track_links(
            "Go https://example.com/x",
            Some(r#"<a href="https://example.com/x">go</a>"#),
        );
        let attributes = BTreeMap::new();
        let links = vec!["http://h/c/TOK?a=1&b=2".to_string()];
        let v = vars(&attributes, &links);
        assert_eq!(render(&t.text, &v, false), "Go http://h/c/TOK?a=1&b=2");
        assert_eq!(
            render(t.html.as_deref().unwrap(), &v, true),
            r#"<a href="http://h/c/TOK?a=1&amp;b=2">go</a>"#
        );
    }
}
