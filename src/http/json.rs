//! JSON from clients, read strictly: an object that names a key twice is refused.
//!
//! `{"query": "{ a }", "query": "mutation { b }"}` means different things to different
//! parsers (serde_json keeps the last, some proxies and WAFs check the first). Refusing it
//! closes that gap, as duplicate GET parameters already are. Nesting stays bounded by
//! serde_json's own recursion limit (128), which applies to this visitor too.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value as Json};

/// Parses `bytes` as JSON, refusing duplicate object keys.
pub fn from_slice(bytes: &[u8]) -> serde_json::Result<Json> {
    serde_json::from_slice::<Strict>(bytes).map(|strict| strict.0)
}

/// Parses `text` as JSON, refusing duplicate object keys.
pub fn from_str(text: &str) -> serde_json::Result<Json> {
    serde_json::from_str::<Strict>(text).map(|strict| strict.0)
}

struct Strict(Json);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Json, E> {
        Ok(Json::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Json, E> {
        Ok(Json::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Json, E> {
        Ok(Json::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Json, E> {
        Ok(Json::from(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Json, E> {
        Ok(Json::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Json, E> {
        Ok(Json::String(value))
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "the key {key:?} appears more than once in one object"
                )));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Json::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert!(from_str(r#"{"query": "a", "query": "b"}"#).is_err());
        assert!(from_str(r#"{"variables": {"x": 1, "x": 2}}"#).is_err());
        assert!(from_str(r#"[{"a": 1}, {"a": 2}]"#).is_ok());
        assert_eq!(
            from_str(r#"{"a": [1, 2.5, "x", null, true, {"b": -3}]}"#).expect("valid"),
            serde_json::json!({"a": [1, 2.5, "x", null, true, {"b": -3}]})
        );
    }

    #[test]
    fn nesting_stays_bounded() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(
            from_str(&deep).is_err(),
            "serde_json's recursion limit applies"
        );
    }
}
