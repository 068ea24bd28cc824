//! `Accept` negotiation for GraphQL responses (GraphQL over HTTP, "Accept" and "Legacy
//! Watershed").
//!
//! Two media types can carry a GraphQL response. `application/graphql-response+json` is the
//! modern one: its status codes say whether the request ran. `application/json` is the
//! legacy one, for which request errors still come back as 200. A client that lists the modern
//! type gets it; a client that accepts only JSON, sends `*/*`, or sends no `Accept` at all
//! gets `application/json`; a client that accepts neither gets 406.

use axum::http::{HeaderMap, HeaderValue, header};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    GraphQLResponseJson,
    Json,
}

impl MediaType {
    pub fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::GraphQLResponseJson => "application/graphql-response+json; charset=utf-8",
            Self::Json => "application/json; charset=utf-8",
        })
    }
}

/// One entry of an `Accept` header.
struct Range<'a> {
    kind: &'a str,
    subtype: &'a str,
    q: f32,
}

fn ranges(accept: &str) -> impl Iterator<Item = Range<'_>> {
    accept.split(',').filter_map(|item| {
        let mut params = item.split(';');
        let (kind, subtype) = params.next()?.trim().split_once('/')?;
        let mut q = 1.0;
        for param in params {
            if let Some((name, value)) = param.split_once('=')
                && name.trim().eq_ignore_ascii_case("q")
            {
                q = value.trim().parse::<f32>().unwrap_or(0.0).clamp(0.0, 1.0);
            }
        }
        Some(Range {
            kind: kind.trim(),
            subtype: subtype.trim(),
            q,
        })
    })
}

/// How well `accept` takes `kind/subtype`: the q of the most specific matching range, and
/// whether that range named the type exactly.
fn quality(accept: &str, kind: &str, subtype: &str) -> Option<(f32, bool)> {
    let mut best: Option<(u8, f32)> = None;
    for range in ranges(accept) {
        let specificity = match (range.kind, range.subtype) {
            (k, s) if k.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(subtype) => 2,
            (k, "*") if k.eq_ignore_ascii_case(kind) => 1,
            ("*", "*") => 0,
            _ => continue,
        };
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, range.q));
        }
    }
    best.map(|(specificity, q)| (q, specificity == 2))
}

fn accept_header(headers: &HeaderMap) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    let joined = values.join(",");
    (!joined.trim().is_empty()).then_some(joined)
}

/// The media type to answer a GraphQL request with, or `None` for 406.
pub fn response_type(headers: &HeaderMap) -> Option<MediaType> {
    let Some(accept) = accept_header(headers) else {
        return Some(MediaType::Json);
    };
    let modern = quality(&accept, "application", "graphql-response+json").filter(|(q, _)| *q > 0.0);
    let legacy = quality(&accept, "application", "json").filter(|(q, _)| *q > 0.0);
    match (modern, legacy) {
        (None, None) => None,
        (Some(_), None) => Some(MediaType::GraphQLResponseJson),
        (None, Some(_)) => Some(MediaType::Json),
        // The modern type wins when preferred, or when named outright at equal preference;
        // a bare `*/*` is a legacy client that has not opted in.
        (Some((mq, m_exact)), Some((lq, _))) => {
            if mq > lq || (mq == lq && m_exact) {
                Some(MediaType::GraphQLResponseJson)
            } else {
                Some(MediaType::Json)
            }
        }
    }
}

/// Whether a GET is a browser asking for a page: it names HTML explicitly and prefers it to
/// JSON. `*/*` alone (curl, fetch) is not a browser.
pub fn wants_html(headers: &HeaderMap) -> bool {
    let Some(accept) = accept_header(headers) else {
        return false;
    };
    let Some((html, true)) = quality(&accept, "text", "html") else {
        return false;
    };
    let json = [
        quality(&accept, "application", "json"),
        quality(&accept, "application", "graphql-response+json"),
    ]
    .into_iter()
    .flatten()
    .map(|(q, _)| q)
    .fold(0.0, f32::max);
    html > 0.0 && html >= json
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(accept: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept {
            headers.insert(
                header::ACCEPT,
                HeaderValue::from_str(accept).expect("ascii"),
            );
        }
        headers
    }

    #[test]
    fn clients_get_the_media_type_they_prefer() {
        use MediaType::*;
        let cases = [
            (None, Some(Json)),
            (Some("*/*"), Some(Json)),
            (Some("application/json"), Some(Json)),
            (
                Some("application/graphql-response+json"),
                Some(GraphQLResponseJson),
            ),
            // Apollo Client 4
            (
                Some("application/graphql-response+json,application/json;q=0.9"),
                Some(GraphQLResponseJson),
            ),
            // urql
            (
                Some(
                    "application/graphql-response+json, application/graphql+json, application/json, text/event-stream, multipart/mixed",
                ),
                Some(GraphQLResponseJson),
            ),
            (
                Some("application/json, application/graphql-response+json;q=0.5"),
                Some(Json),
            ),
            (Some("application/*"), Some(Json)),
            (Some("text/html"), None),
            (Some("application/json;q=0"), None),
            (Some("application/xml, text/plain"), None),
        ];
        for (accept, expected) in cases {
            assert_eq!(
                response_type(&headers(accept)),
                expected,
                "Accept: {accept:?}"
            );
        }
    }

    #[test]
    fn only_browsers_get_the_playground() {
        assert!(wants_html(&headers(Some(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ))));
        assert!(!wants_html(&headers(Some("*/*"))));
        assert!(!wants_html(&headers(None)));
        assert!(!wants_html(&headers(Some(
            "application/json, text/html;q=0.5"
        ))));
    }
}
