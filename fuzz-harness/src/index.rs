//! The index's query language and tokenizer.

/// Any text through the query parser and the tokenizer: a parse or an error that points
/// inside the query, never a panic.
pub fn index_query(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match origami_index::parse_query(text) {
        Ok(q) => {
            if let Some(root) = q.root {
                let _ = root.to_string();
            }
        }
        Err(e) => {
            let chars = text.chars().count();
            assert!(
                e.column >= 1 && e.column <= chars + 1,
                "column {} of {chars}",
                e.column
            );
            let _ = e.render(text);
        }
    }
    // The same text as item content (a config file) through the index tokenizer.
    let _ = origami_index::tokenizer::tokens(text);
    let _ = origami_index::tokenizer::query_words(text);
}
