//! A request's GraphQL parameters (`query`, `operationName`, `variables`, `extensions`), read
//! from wherever a transport carries them: a POST body (one object, or each of a batch), a
//! GET query string, a WebSocket `subscribe` payload. Each parameter's JSON type is checked
//! the same way for all of them.

use axum::{
    body::{Body, Bytes},
    http::{HeaderMap, StatusCode, header},
    response::Response,
};
use serde_json::{Map, Value as Json};

use super::{json, negotiate::MediaType, reply::error};
use crate::graphql::{error::ErrorCode, pipeline::Params};

pub(crate) fn is_json_content(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return false;
    }
    // JSON is UTF-8 (RFC 8259); a body declared in another charset cannot be read as sent.
    parts.all(|param| match param.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => true,
    })
}

pub(crate) async fn read_body(
    body: Body,
    limit: usize,
    media: MediaType,
) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, limit).await.map_err(|err| {
        let over_limit = std::error::Error::source(&err)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if over_limit {
            let message =
                format!("The request body is larger than this server accepts ({limit} bytes).");
            error(
                media,
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::BadRequest,
                &message,
            )
        } else {
            error(
                media,
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                "The request body could not be read.",
            )
        }
    })
}

/// The GraphQL parameters of a JSON object (a POST body, an item of a batch, a WebSocket
/// `subscribe` payload), each checked for its JSON type.
pub(crate) fn from_json(value: Json) -> Result<Params, String> {
    let Json::Object(mut object) = value else {
        return Err("A GraphQL request must be a JSON object.".into());
    };
    let query = match object.remove("query") {
        None | Some(Json::Null) => None,
        Some(Json::String(query)) => Some(query),
        Some(_) => return Err("\"query\" must be a string.".into()),
    };
    let operation_name = match object.remove("operationName") {
        None | Some(Json::Null) => None,
        Some(Json::String(name)) => Some(name),
        Some(_) => return Err("\"operationName\" must be a string.".into()),
    };
    let document_id = match object.remove("documentId") {
        None | Some(Json::Null) => None,
        Some(Json::String(id)) => Some(id),
        Some(_) => return Err("\"documentId\" must be a string.".into()),
    };
    Ok(Params {
        query,
        document_id,
        operation_name,
        variables: json_map(object.remove("variables"), "variables")?,
        extensions: json_map(object.remove("extensions"), "extensions")?,
    })
}

fn json_map(value: Option<Json>, name: &str) -> Result<Map<String, Json>, String> {
    match value {
        None | Some(Json::Null) => Ok(Map::new()),
        Some(Json::Object(map)) => Ok(map),
        Some(_) => Err(format!("\"{name}\" must be a JSON object.")),
    }
}

/// Reads the GraphQL parameters of a GET query string; `variables` and `extensions` are
/// JSON-encoded, as the spec says.
pub(crate) fn from_query_string(query_string: &str) -> Result<Params, String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query_string)
        .map_err(|_| "The query string is not valid URL encoding.".to_owned())?;
    let mut params = Params::default();
    let mut seen = std::collections::HashSet::new();
    for (key, value) in pairs {
        if !seen.insert(key.clone()) {
            return Err(format!("The parameter \"{key}\" is given more than once."));
        }
        let decode = |name: &str| -> Result<Map<String, Json>, String> {
            if value.is_empty() {
                return Ok(Map::new());
            }
            let json: Json = json::from_str(&value).map_err(|err| {
                format!("\"{name}\" must be a JSON-encoded object without repeated keys: {err}.")
            })?;
            json_map(Some(json), name)
        };
        match key.as_str() {
            "query" => params.query = Some(value),
            "documentId" => params.document_id = Some(value).filter(|id| !id.is_empty()),
            "operationName" => params.operation_name = Some(value).filter(|name| !name.is_empty()),
            "variables" => params.variables = decode("variables")?,
            "extensions" => params.extensions = decode("extensions")?,
            _ => {}
        }
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde_json::json;

    use super::*;

    #[test]
    fn json_content_types_are_recognised() {
        let check = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(value).expect("ascii"),
            );
            is_json_content(&headers)
        };
        assert!(check("application/json"));
        assert!(check("application/json; charset=utf-8"));
        assert!(check("Application/JSON;charset=\"UTF-8\""));
        assert!(!check("application/json; charset=latin1"));
        assert!(!check("text/plain;charset=UTF-8"));
        assert!(!check("application/graphql"));
        assert!(!is_json_content(&HeaderMap::new()));
    }

    #[test]
    fn get_parameters_are_decoded() {
        let params = from_query_string(
            "query=query%20A%7Ba%7D&operationName=A&variables=%7B%22x%22%3A1%7D&extensions=",
        )
        .expect("valid");
        assert_eq!(params.query.as_deref(), Some("query A{a}"));
        assert_eq!(params.operation_name.as_deref(), Some("A"));
        assert_eq!(params.variables.get("x"), Some(&json!(1)));
        assert!(
            from_query_string("variables=%5B1%5D").is_err(),
            "an array is not a variables map"
        );
        assert!(
            from_query_string("query=a&query=b").is_err(),
            "duplicates are ambiguous"
        );
    }
}
