//! Trusted documents: the documents this server's own clients send, read at start-up from a
//! manifest (`TRUSTED_DOCUMENTS`), each keyed by the SHA-256 of its text. Clients then send
//! an id instead of the text (`documentId`, or `extensions.persistedQuery.sha256Hash` as
//! Apollo Client's and urql's persisted-query links do), and with `TRUSTED_DOCUMENTS_ONLY`
//! nothing else runs.
//!
//! Two manifest formats are read, as their tools write them:
//! - graphql-codegen's client preset with `persistedDocuments: { hashAlgorithm: 'sha256' }`:
//!   `{ "<sha256 hex>": "<document>", … }`;
//! - Apollo's persisted query manifest (`@apollo/generate-persisted-query-manifest`):
//!   `{ "format": "apollo-persisted-query-manifest", "version": 1, "operations": [{ "id",
//!   "name", "type", "body" }, …] }`.
//!
//! Every id must be the SHA-256 of its text: a manifest that says otherwise was written for
//! another hash or edited by hand, and serving it would answer an id with a document its
//! client did not mean. The pipeline plans and validates every document before the server
//! listens (`Executor::trust`).

use std::{collections::HashMap, path::Path, sync::Arc};

use serde_json::Value as Json;

use super::{apq::sha256_hex, plan::Plan};

/// One document of a manifest: its id (lowercase hex SHA-256), a name to report it by, and
/// its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub name: String,
    pub text: String,
}

/// Why a manifest cannot be served; the server does not start.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read TRUSTED_DOCUMENTS ({path}): {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "TRUSTED_DOCUMENTS ({path}) is neither graphql-codegen's persisted documents (an \
         object of SHA-256 id to document) nor an Apollo persisted query manifest (format \
         \"apollo-persisted-query-manifest\", version 1): {reason}"
    )]
    Format { path: String, reason: String },
    #[error(
        "trusted document {name}: its id {id} is not the SHA-256 of its text (generate the \
         manifest with SHA-256, e.g. codegen's persistedDocuments.hashAlgorithm: 'sha256')"
    )]
    Mismatch { name: String, id: String },
    #[error("trusted document {name} does not run on this schema: {reason}")]
    Invalid { name: String, reason: String },
    #[error(
        "TRUSTED_DOCUMENTS_ONLY=true needs TRUSTED_DOCUMENTS, the manifest of documents to run"
    )]
    NoManifest,
}

/// Reads the manifest at `path` into its entries, each id checked against its text.
pub fn read(path: &Path) -> Result<Vec<Entry>, ManifestError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: shown.clone(),
        source,
    })?;
    parse(&text).map_err(|problem| match problem {
        Problem::Format(reason) => ManifestError::Format {
            path: shown,
            reason,
        },
        Problem::Manifest(error) => error,
    })
}

enum Problem {
    Format(String),
    Manifest(ManifestError),
}

/// The entries of a manifest's text (see the module comment for the two formats).
fn parse(text: &str) -> Result<Vec<Entry>, Problem> {
    let format = |reason: &str| Problem::Format(reason.to_owned());
    let json: Json = serde_json::from_str(text).map_err(|err| Problem::Format(err.to_string()))?;
    let Json::Object(object) = json else {
        return Err(format("not a JSON object"));
    };
    let entries =
        if object.get("format").and_then(Json::as_str) == Some("apollo-persisted-query-manifest") {
            if object.get("version").and_then(Json::as_i64) != Some(1) {
                return Err(format("only version 1 of Apollo's manifest is known"));
            }
            let operations = object
                .get("operations")
                .and_then(Json::as_array)
                .ok_or_else(|| format("\"operations\" must be an array"))?;
            operations
                .iter()
                .map(|operation| {
                    let field = |key: &str| operation.get(key).and_then(Json::as_str);
                    match (field("id"), field("body")) {
                        (Some(id), Some(body)) => Ok(Entry {
                            id: id.to_owned(),
                            name: field("name").unwrap_or(id).to_owned(),
                            text: body.to_owned(),
                        }),
                        _ => Err(format("each operation needs a string \"id\" and \"body\"")),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            object
                .into_iter()
                .map(|(id, body)| match body {
                    Json::String(text) => Ok(Entry {
                        name: id.clone(),
                        id,
                        text,
                    }),
                    _ => Err(format("every value must be a document's text")),
                })
                .collect::<Result<Vec<_>, _>>()?
        };
    entries
        .into_iter()
        .map(|mut entry| {
            let id = normalize_id(&entry.id).filter(|id| *id == sha256_hex(&entry.text));
            match id {
                Some(id) => {
                    entry.id = id;
                    Ok(entry)
                }
                None => Err(Problem::Manifest(ManifestError::Mismatch {
                    name: entry.name,
                    id: entry.id,
                })),
            }
        })
        .collect()
}

/// A document id as clients send it: the SHA-256 hex digest, bare (codegen, Apollo, urql)
/// or with the `sha256:` prefix of GraphQL over HTTP's persisted documents; lowercase.
pub fn normalize_id(id: &str) -> Option<String> {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    is_sha256_hex(hex).then(|| hex.to_ascii_lowercase())
}

/// Whether `hex` has the shape of a SHA-256 hex digest, in either case.
pub fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The planned trusted documents, by id, and what runs besides them.
#[derive(Debug, Default)]
pub struct Trusted {
    plans: HashMap<String, Arc<Plan>>,
    /// `TRUSTED_DOCUMENTS_ONLY`: refuse every document not in the manifest.
    pub only: bool,
    /// `TRUSTED_DOCUMENTS_ALLOW_INTROSPECTION`: with `only`, still run documents that read
    /// nothing but the schema (GraphiQL's explorer, codegen, editors).
    pub introspection: bool,
}

impl Trusted {
    pub fn new(only: bool, introspection: bool) -> Self {
        Self {
            plans: HashMap::new(),
            only,
            introspection,
        }
    }

    pub fn insert(&mut self, id: String, plan: Arc<Plan>) {
        self.plans.insert(id, plan);
    }

    /// The plan of the trusted document `id` (normalized).
    pub fn get(&self, id: &str) -> Option<&Arc<Plan>> {
        self.plans.get(id)
    }

    pub fn len(&self) -> usize {
        self.plans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.plans.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "query Me { me { id } }";

    fn entries(text: &str) -> Vec<Entry> {
        match parse(text) {
            Ok(entries) => entries,
            Err(Problem::Format(reason)) => panic!("format: {reason}"),
            Err(Problem::Manifest(error)) => panic!("{error}"),
        }
    }

    #[test]
    fn codegen_and_apollo_manifests_read_the_same() {
        let id = sha256_hex(DOC);
        let codegen = serde_json::json!({ id.clone(): DOC }).to_string();
        let apollo = serde_json::json!({
            "format": "apollo-persisted-query-manifest",
            "version": 1,
            "operations": [{ "id": id, "name": "Me", "type": "query", "body": DOC }],
        })
        .to_string();
        let from_codegen = entries(&codegen);
        let from_apollo = entries(&apollo);
        assert_eq!(from_codegen.len(), 1);
        assert_eq!(from_codegen[0].id, id);
        assert_eq!(from_apollo[0].id, id);
        assert_eq!(from_apollo[0].name, "Me");
        assert_eq!(from_codegen[0].text, from_apollo[0].text);
    }

    #[test]
    fn an_id_that_is_not_the_texts_sha256_is_refused() {
        let sha1_like = "a".repeat(40);
        for manifest in [
            serde_json::json!({ sha1_like: DOC }),
            serde_json::json!({ sha256_hex("query Other { apiVersion }"): DOC }),
        ] {
            assert!(matches!(
                parse(&manifest.to_string()),
                Err(Problem::Manifest(ManifestError::Mismatch { .. }))
            ));
        }
    }

    #[test]
    fn other_shapes_are_not_manifests() {
        for text in [
            "[]",
            "{ \"x\": 1 }",
            "{ \"format\": \"apollo-persisted-query-manifest\", \"version\": 2, \"operations\": [] }",
            "{ \"format\": \"apollo-persisted-query-manifest\", \"version\": 1, \"operations\": [{ \"id\": \"x\" }] }",
            "not json",
        ] {
            assert!(matches!(parse(text), Err(Problem::Format(_))), "{text}");
        }
    }

    #[test]
    fn ids_are_read_bare_or_prefixed_in_any_case() {
        let id = sha256_hex(DOC);
        assert_eq!(normalize_id(&id).as_deref(), Some(id.as_str()));
        assert_eq!(
            normalize_id(&format!("sha256:{}", id.to_uppercase())).as_deref(),
            Some(id.as_str())
        );
        assert_eq!(normalize_id("sha256:xyz"), None);
        assert_eq!(normalize_id(&id[..40]), None);
    }
}
