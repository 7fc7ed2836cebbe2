//! The report page: the evaluation's markdown as one self-contained, well-formed XHTML page.

/// The report's markdown as a standalone HTML page (tables, headings, paragraphs, inline SVGs).
pub fn page(md: &str, files: &[(String, String)]) -> String {
    use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
    let mut html = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"/><title>genrelab report</title><style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}img,svg{margin:8px}</style></head><body>\n",
    );
    // CommonMark with tables (header cells, escaping, code spans); an image of one of the
    // report's SVGs is the SVG itself, so the page is one self-contained file.
    let mut in_image = false;
    let events = Parser::new_ext(md, Options::ENABLE_TABLES).filter_map(|event| match event {
        Event::Start(Tag::Image { dest_url, .. }) => {
            in_image = true;
            let svg = files.iter().find(|(name, _)| *name == *dest_url).map_or("", |(_, text)| text.as_str());
            Some(Event::InlineHtml(svg.to_string().into()))
        }
        Event::End(TagEnd::Image) => {
            in_image = false;
            None
        }
        _ if in_image => None,
        // Nothing in the report's markdown is meant as HTML: a class named `<b>` (labels come
        // from the data) is shown as written.
        Event::Html(t) | Event::InlineHtml(t) => Some(Event::Text(t)),
        e => Some(e),
    });
    pulldown_cmark::html::push_html(&mut html, events);
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every element of a page that parses as XML (HTML written as well-formed XHTML, with inline
    /// SVG), as (name, its text); panics with the position where it does not parse.
    pub(crate) fn elements(html: &str) -> Vec<(String, String)> {
        use quick_xml::events::Event;
        let body = html.split_once('\n').map_or(html, |(doctype, rest)| {
            assert_eq!(doctype, "<!doctype html>");
            rest
        });
        let mut reader = quick_xml::Reader::from_str(body);
        let (mut out, mut open): (Vec<(String, String)>, Vec<usize>) = (vec![], vec![]);
        loop {
            match reader.read_event() {
                Ok(Event::Start(e)) => {
                    open.push(out.len());
                    out.push((String::from_utf8_lossy(e.name().as_ref()).into_owned(), String::new()));
                }
                Ok(Event::Empty(e)) => out.push((String::from_utf8_lossy(e.name().as_ref()).into_owned(), String::new())),
                Ok(Event::Text(t)) => {
                    let text = t.xml_content().unwrap().into_owned();
                    for &i in &open {
                        out[i].1 += &text;
                    }
                }
                Ok(Event::GeneralRef(r)) => {
                    let text = match r.as_ref() {
                        b"amp" => "&",
                        b"lt" => "<",
                        b"gt" => ">",
                        b"quot" => "\"",
                        other => panic!("entity {:?}", String::from_utf8_lossy(other)),
                    };
                    for &i in &open {
                        out[i].1 += text;
                    }
                }
                Ok(Event::End(_)) => drop(open.pop()),
                Ok(Event::Eof) => break,
                Ok(_) => {}
                Err(e) => panic!("not well-formed at {}: {e}", reader.buffer_position()),
            }
        }
        assert!(open.is_empty(), "unclosed elements");
        out
    }

    #[test]
    fn the_report_page_has_header_cells_escaped_text_code_and_inline_figures() {
        let md = "# genrelab report\n\n| model | test acc |\n|---|---:|\n| a&b <x> | 50.0% |\n\nUse `[evaluate] window_hop` & see below.\n\n![f.svg](f.svg)\n";
        let files = vec![("f.svg".to_string(), "<svg xmlns=\"http://www.w3.org/2000/svg\"><text>curve</text></svg>".to_string())];
        let html = page(md, &files);
        let el = elements(&html);
        let texts = |name: &str| el.iter().filter(|(n, _)| n == name).map(|(_, t)| t.as_str()).collect::<Vec<_>>();
        assert_eq!(texts("th"), ["model", "test acc"], "header rows are header cells");
        assert_eq!(texts("td"), ["a&b <x>", "50.0%"], "& and < escaped, read back as written");
        assert_eq!(texts("code"), ["[evaluate] window_hop"]);
        assert_eq!(texts("h1"), ["genrelab report"]);
        assert_eq!(texts("svg"), ["curve"], "the figure inlined, not linked");
        assert!(texts("img").is_empty());
    }
}
