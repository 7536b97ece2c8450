//! Text helpers shared by services.

/// Escapes text for use inside HTML element content, the way the webchat clients' `inHTMLData` filter
/// does for `<`, and additionally `&`, `>` and quotes, since both clients render messages with `v-html`.
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

#[cfg(test)]
mod tests {
    use super::escape_html;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape_html("<img src=x onerror='a'>&"),
            "&lt;img src=x onerror=&#39;a&#39;&gt;&amp;"
        );
        assert_eq!(escape_html("你好🎉"), "你好🎉");
    }
}
