//! How deeply a request may nest, checked on the raw text before anything parses or walks it.
//!
//! The parser, the validator and the executor all recurse over the document, and only the
//! parser bounds selection sets. A value literal (`[[[[…1…]]]]`, `{not: {not: …}}`), a type
//! (`[[[Int]]]`) or a directive argument nested a couple of thousand levels deep fits in a
//! few kilobytes and overflowed a tokio worker's stack, aborting the process. A lexical
//! scan is the one check that cannot itself recurse: it counts brackets, skipping strings
//! and comments, and refuses the document before the parser sees it.
//!
//! Values, types and arguments stand inside parentheses (arguments, variable definitions,
//! directive arguments), so brackets opened inside a `(` are value nesting; braces outside
//! are selection sets, which the parser bounds at 64.
//!
//! The same scan enforces the one rule the parser makes impossible to check afterwards:
//! input object fields are unique (`{direction: DESRITY, direction: DESC}`). The parser keeps
//! such an object in a map, so the first value silently disappears.

use serde_json::Value as Json;

/// The deepest a value, type or variable may nest. The deepest input taskql's schema can use
/// is a filter nested `MAX_FILTER_DEPTH` (8) levels through `and: [{…}]`, two brackets each.
pub const MAX_VALUE_DEPTH: usize = 32;

/// The deepest any bracket may nest: the parser's 64 selection levels, a parenthesis, and
/// a value. Past this nothing legitimate exists, so the scan stops counting there.
pub const MAX_NESTING: usize = 64 + 1 + MAX_VALUE_DEPTH;

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A value, type or argument nests more than [`MAX_VALUE_DEPTH`] levels.
    Value,
    /// Brackets of any kind nest more than [`MAX_NESTING`] levels.
    Document,
    /// An input object literal names this field twice.
    DuplicateField(String),
}

/// Scans GraphQL source text and fails when it nests too deeply. Unbalanced or stray
/// brackets are left for the parser to report; this only bounds depth.
pub fn check_document(source: &str) -> Result<(), Problem> {
    let bytes = source.as_bytes();
    // What each open bracket is; parentheses reset value depth for what they contain.
    let mut stack: Vec<u8> = Vec::new();
    // How many `[`/`{` are open above the innermost `(`; zero outside parentheses.
    let mut value_depth: Vec<usize> = Vec::new();
    // For each open bracket: the field names seen so far if it is an input object literal.
    let mut objects: Vec<Option<Vec<&str>>> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                loop {
                    if i >= bytes.len() {
                        return Ok(());
                    }
                    if bytes[i..].starts_with(b"\\\"\"\"") {
                        i += 4;
                    } else if bytes[i..].starts_with(b"\"\"\"") {
                        i += 2;
                        break;
                    } else {
                        i += 1;
                    }
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    // An escape takes the next byte with it (`\"` does not close the string).
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            open @ (b'(' | b'[' | b'{') => {
                let in_value = !value_depth.is_empty();
                stack.push(open);
                // An input object literal collects the names of its fields.
                objects.push((open == b'{' && in_value).then(Vec::new));
                if stack.len() > MAX_NESTING {
                    return Err(Problem::Document);
                }
                if open == b'(' {
                    value_depth.push(0);
                } else if let Some(depth) = value_depth.last_mut() {
                    *depth += 1;
                    if *depth > MAX_VALUE_DEPTH {
                        return Err(Problem::Value);
                    }
                }
            }
            b')' | b']' | b'}' => {
                objects.pop();
                if let Some(open) = stack.pop() {
                    if open == b'(' {
                        value_depth.pop();
                    } else if let Some(depth) = value_depth.last_mut() {
                        *depth = depth.saturating_sub(1);
                    }
                }
            }
            // Numbers (`1e5`, `-2.5E-3`) are skipped whole, so their letters are not names.
            b'0'..=b'9' | b'-' => {
                while i + 1 < bytes.len()
                    && matches!(bytes[i + 1], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
            }
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                let start = i;
                while i + 1 < bytes.len()
                    && matches!(bytes[i + 1], b'_' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
                {
                    i += 1;
                }
                let name = &source[start..=i];
                // A name followed by `:` directly inside an object literal is one of its
                // fields (elsewhere a name before `:` is an alias, an argument or a variable).
                if let Some(Some(fields)) = objects.last_mut()
                    && next_significant(bytes, i + 1) == Some(b':')
                {
                    if fields.contains(&name) {
                        return Err(Problem::DuplicateField(name.to_owned()));
                    }
                    fields.push(name);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// The next byte from `from` that is not whitespace, a comma or inside a comment.
fn next_significant(bytes: &[u8], mut from: usize) -> Option<u8> {
    while let Some(&byte) = bytes.get(from) {
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => from += 1,
            b'#' => {
                while from < bytes.len() && bytes[from] != b'\n' && bytes[from] != b'\r' {
                    from += 1;
                }
            }
            // The byte-order mark, which GraphQL also ignores.
            0xEF if bytes[from..].starts_with(&[0xEF, 0xBB, 0xBF]) => from += 3,
            other => return Some(other),
        }
    }
    None
}

/// The name of the first variable whose JSON value nests more than [`MAX_VALUE_DEPTH`]
/// levels. The JSON parser already stops at 128 levels; this keeps variables to the same
/// bound as literals, so no input reaches the recursive coercion deeper than a literal could.
pub fn too_deep_variable(variables: &serde_json::Map<String, Json>) -> Option<&str> {
    variables
        .iter()
        .find(|(_, value)| json_depth(value) > MAX_VALUE_DEPTH)
        .map(|(name, _)| name.as_str())
}

/// Nesting depth of a JSON value: a scalar is 0, `[1]` is 1. Iterative, so that it is safe
/// on any input the JSON parser accepted.
fn json_depth(value: &Json) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 0)];
    while let Some((value, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        match value {
            Json::Array(items) => pending.extend(items.iter().map(|item| (item, depth + 1))),
            Json::Object(fields) => pending.extend(fields.values().map(|field| (field, depth + 1))),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested_list(depth: usize) -> String {
        format!(
            "{{ apiVersion(x: {}1{}) }}",
            "[".repeat(depth),
            "]".repeat(depth)
        )
    }

    #[test]
    fn values_nest_up_to_the_bound() {
        assert_eq!(check_document(&nested_list(MAX_VALUE_DEPTH)), Ok(()));
        assert_eq!(
            check_document(&nested_list(MAX_VALUE_DEPTH + 1)),
            Err(Problem::Value)
        );
        assert_eq!(check_document(&nested_list(5000)), Err(Problem::Value));
    }

    #[test]
    fn selections_are_not_values() {
        let deep = format!("{}{}", "{ a ".repeat(60), "}".repeat(60));
        assert_eq!(check_document(&deep), Ok(()));
        let deeper = "{".repeat(MAX_NESTING + 1);
        assert_eq!(check_document(&deeper), Err(Problem::Document));
    }

    #[test]
    fn strings_and_comments_do_not_count() {
        let text = format!(
            "{{ a(s: \"{0}\\\"{0}\", b: \"\"\"{0}\\\"\"\"{0}\"\"\") # {0}\n }}",
            "[".repeat(100)
        );
        assert_eq!(check_document(&text), Ok(()));
    }

    #[test]
    fn input_object_fields_are_unique() {
        let duplicate = "{ tasks(orderBy: [{field: PRIORITY, direction: DESRITY, direction: DESC}]) { totalCount } }";
        assert_eq!(
            check_document(duplicate),
            Err(Problem::DuplicateField("direction".into()))
        );
        for fine in [
            "{ a: tasks(first: 1) { b: totalCount } c: tasks(first: 2) { totalCount } }",
            "{ tasks(filter: {or: [{completed: true}, {completed: false}]}) { totalCount } }",
            "query($v: TaskFilter = {completed: true}) { tasks(filter: {not: $v, completed: false}) { n: totalCount } }",
            "{ tasks(filter: {priority: {gte: 1e0}, completed: true}) { totalCount } }",
        ] {
            assert_eq!(check_document(fine), Ok(()), "{fine}");
        }
    }

    #[test]
    fn types_and_defaults_count_as_values() {
        let deep_type = format!("query($v: {}Int{}) {{ a }}", "[".repeat(40), "]".repeat(40));
        assert_eq!(check_document(&deep_type), Err(Problem::Value));
    }

    #[test]
    fn variables_are_bounded_too() {
        let mut value = serde_json::json!(1);
        for _ in 0..=MAX_VALUE_DEPTH {
            value = serde_json::json!([value]);
        }
        let mut variables = serde_json::Map::new();
        variables.insert("ok".into(), serde_json::json!({"a": [1]}));
        assert_eq!(too_deep_variable(&variables), None);
        variables.insert("deep".into(), value);
        assert_eq!(too_deep_variable(&variables), Some("deep"));
    }
}
