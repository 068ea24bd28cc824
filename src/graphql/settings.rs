//! The GraphQL layer's settings: the limits a document must keep, introspection, persisted
//! queries, trusted documents, and the keys pagination cursors are sealed with.

use clap::Args;

use crate::{
    auth::Secret,
    config::{boolean, items, whole},
};

/// The GraphQL layer's settings.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "GraphQL")]
pub struct GraphQLSettings {
    /// Deepest selection nesting accepted (0: no limit).
    #[arg(long, env = "GRAPHQL_MAX_DEPTH", default_value = "15", value_parser = whole::<usize, 0, 1000>)]
    pub graphql_max_depth: usize,
    /// Most a document may cost; list fields multiply by their page size (0: no limit).
    #[arg(long, env = "GRAPHQL_MAX_COMPLEXITY", default_value = "10000", value_parser = whole::<usize, 0, 10_000_000>)]
    pub graphql_max_complexity: usize,
    /// Most aliases in one document (0: no limit).
    #[arg(long, env = "GRAPHQL_MAX_ALIASES", default_value = "30", value_parser = whole::<usize, 0, 10_000>)]
    pub graphql_max_aliases: usize,
    /// Most SQL statements one operation may run, as estimated before it runs (0: no limit).
    #[arg(long, env = "GRAPHQL_MAX_STATEMENTS", default_value = "50", value_parser = whole::<u64, 0, 100_000>)]
    pub graphql_max_statements: u64,
    /// Longest query text accepted.
    #[arg(long, env = "GRAPHQL_MAX_DOCUMENT_BYTES", default_value = "32768", value_parser = whole::<usize, 64, 16_777_216>)]
    pub graphql_max_document_bytes: usize,
    /// Most operations in one JSON batch.
    #[arg(long, env = "GRAPHQL_MAX_BATCH", default_value = "10", value_parser = whole::<usize, 1, 1000>)]
    pub graphql_max_batch: usize,
    /// Whether __schema/__type may be queried.
    #[arg(long, env = "GRAPHQL_INTROSPECTION", default_value = "true", value_parser = boolean, action = clap::ArgAction::Set)]
    pub graphql_introspection: bool,
    /// Whether introspection works without a token.
    #[arg(long, env = "GRAPHQL_INTROSPECTION_WITHOUT_TOKEN", default_value = "true", value_parser = boolean, action = clap::ArgAction::Set)]
    pub graphql_introspection_without_token: bool,
    /// Automatic persisted queries remembered (0 disables the cache).
    #[arg(long, env = "GRAPHQL_APQ_CACHE_SIZE", default_value = "1000", value_parser = whole::<usize, 0, 1_000_000>)]
    pub graphql_apq_cache_size: usize,
    /// A manifest of trusted documents, keyed by the SHA-256 of their text: graphql-codegen's
    /// persisted documents or Apollo's persisted query manifest. Each is planned and validated
    /// at start-up; clients may then send its id instead of its text.
    #[arg(long, env = "TRUSTED_DOCUMENTS")]
    pub trusted_documents: Option<std::path::PathBuf>,
    /// Run only the documents of TRUSTED_DOCUMENTS; refuse every other one.
    #[arg(long, env = "TRUSTED_DOCUMENTS_ONLY", default_value = "false", value_parser = boolean, action = clap::ArgAction::Set)]
    pub trusted_documents_only: bool,
    /// With TRUSTED_DOCUMENTS_ONLY, still run documents that only read the schema
    /// (GraphiQL's explorer, codegen, editors).
    #[arg(long, env = "TRUSTED_DOCUMENTS_ALLOW_INTROSPECTION", default_value = "false", value_parser = boolean, action = clap::ArgAction::Set)]
    pub trusted_documents_allow_introspection: bool,
    /// Comma-separated secrets (32+ bytes each) that seal pagination cursors; the first seals,
    /// all open. Default: derived from AUTH_JWT_SECRET or the development secret; in JWKS mode
    /// a per-process key (set it when running several instances).
    #[arg(long, env = "CURSOR_SECRET", hide_env_values = true, value_parser = secrets)]
    pub cursor_secret: Option<Secrets>,
}

/// Secrets, each 32 bytes or more (`CURSOR_SECRET`).
#[derive(Debug, Clone, Default)]
pub struct Secrets(pub Vec<Secret>);

/// Limits and switches of the GraphQL layer (see the README section "GraphQL over HTTP").
#[derive(Debug, Clone)]
pub struct GraphQLConfig {
    /// `GRAPHQL_MAX_DEPTH`: the deepest selection nesting accepted; 0 turns the limit off.
    pub max_depth: usize,
    /// `GRAPHQL_MAX_COMPLEXITY`: the most a document may cost (list fields multiply by their
    /// page size); 0 turns the limit off.
    pub max_complexity: usize,
    /// `GRAPHQL_MAX_ALIASES`: the most aliases in one document; 0 turns the limit off.
    pub max_aliases: usize,
    /// `GRAPHQL_MAX_STATEMENTS`: the most SQL statements one operation may run, as estimated
    /// before it runs (`graphql::pipeline::cost`); 0 turns the limit off.
    pub max_statements: u64,
    /// `GRAPHQL_MAX_DOCUMENT_BYTES`: the longest query text accepted.
    pub max_document_bytes: usize,
    /// `GRAPHQL_MAX_BATCH`: the most operations in one JSON batch.
    pub max_batch: usize,
    /// `GRAPHQL_INTROSPECTION`: whether `__schema` and `__type` may be queried.
    pub introspection: bool,
    /// `GRAPHQL_INTROSPECTION_WITHOUT_TOKEN`: whether introspection works for anonymous callers.
    pub introspection_without_token: bool,
    /// `GRAPHQL_APQ_CACHE_SIZE`: how many automatic persisted queries are remembered.
    pub apq_cache_size: usize,
    /// `TRUSTED_DOCUMENTS`: the manifest of trusted documents, if any.
    pub trusted_documents: Option<std::path::PathBuf>,
    /// `TRUSTED_DOCUMENTS_ONLY`: refuse every document not in the manifest.
    pub trusted_only: bool,
    /// `TRUSTED_DOCUMENTS_ALLOW_INTROSPECTION`: with `trusted_only`, still run documents
    /// that only read the schema.
    pub trusted_allow_introspection: bool,
    /// `CURSOR_SECRET`: secrets the pagination cursors are sealed with, comma-separated; the
    /// first seals, all open (rotation). Empty: derived from the token secret, or random.
    pub cursor_secrets: Vec<Secret>,
}

impl From<GraphQLSettings> for GraphQLConfig {
    fn from(settings: GraphQLSettings) -> Self {
        Self {
            max_depth: settings.graphql_max_depth,
            max_complexity: settings.graphql_max_complexity,
            max_aliases: settings.graphql_max_aliases,
            max_statements: settings.graphql_max_statements,
            max_document_bytes: settings.graphql_max_document_bytes,
            max_batch: settings.graphql_max_batch,
            introspection: settings.graphql_introspection,
            introspection_without_token: settings.graphql_introspection_without_token,
            apq_cache_size: settings.graphql_apq_cache_size,
            trusted_documents: settings.trusted_documents,
            trusted_only: settings.trusted_documents_only,
            trusted_allow_introspection: settings.trusted_documents_allow_introspection,
            cursor_secrets: settings.cursor_secret.unwrap_or_default().0,
        }
    }
}

/// Comma-separated secrets of at least 32 bytes each. The message never repeats a secret.
fn secrets(raw: &str) -> Result<Secrets, String> {
    items(raw)
        .enumerate()
        .map(|(i, secret)| {
            if secret.len() < 32 {
                Err(format!(
                    "secret {} of the list is {} bytes long; each needs at least 32",
                    i + 1,
                    secret.len()
                ))
            } else {
                Ok(Secret::new(secret))
            }
        })
        .collect::<Result<_, _>>()
        .map(Secrets)
}
