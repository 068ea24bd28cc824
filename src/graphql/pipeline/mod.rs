//! The path of one GraphQL operation from request parameters to a response, independent of
//! the transport: persisted-query lookup, size, parse, operation selection, the
//! method rule (no mutations over GET), alias and introspection limits, required variables,
//! execution under a deadline, and classification of what came back.
//!
//! The HTTP layer turns an [`Outcome`] into a status code and a body; the WebSocket transport
//! sends it as a message, and for a subscription gets a stream of them ([`Executor::start`]),
//! each event through the same checks after execution.
//!
//! A document is parsed and planned once per text ([`plan`]); async-graphql validates it
//! once too ([`ValidateOnce`]): the depth limit is its, the complexity limit taskql's own
//! (in [`cost`]), since complexity depends on the variables' page sizes.

//!
//! - [`plan`]: what is learned of a document once per text, shared by every request.
//! - [`nesting`]: the bound on how deeply a document or its variables nest, checked first.
//! - [`document`]: what one request reads of a document (its operation, required and
//!   omitted variables).
//! - [`validate`]: the validation rules async-graphql misses, and variable coercion.
//! - [`cost`]: the statements, complexity and fragment expansion a document may cost.
//! - [`nulls`]: the spec's null rules, applied to what async-graphql returns.
//! - [`shape`]: the schema's types as data, for the checks above.
//! - [`apq`]: automatic persisted queries.
//! - [`trusted`]: trusted documents, from a manifest read at start-up.
//! - [`traced`]: resolver spans, installed only when traces are exported.

pub mod apq;
pub mod cost;
pub mod document;
pub mod nesting;
pub mod nulls;
pub mod plan;
pub mod shape;
pub mod traced;
pub mod trusted;
pub mod validate;

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use async_graphql::{
    Response, ServerError, ServerResult, ValidationResult, Value, Variables,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextValidation,
    },
    parser::{
        parse_query,
        types::{ExecutableDocument, OperationDefinition, OperationType},
    },
};
use futures_util::{Stream, StreamExt as _};
use serde_json::{Map, Value as Json};
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::graphql::{
    AppSchema, GraphQLConfig,
    error::{DatabaseUnavailable, ErrorCode, code_of, ensure_code, server_error, set_code},
    schema::viewer::Viewer,
};
use crate::{db::health::Health, live::Link};
use plan::{Plan, PlanCache};
use shape::Shape;
use trusted::{ManifestError, Trusted};

/// The parameters of one GraphQL request, as the GraphQL-over-HTTP spec names them, after
/// the transport has checked their JSON types.
#[derive(Debug, Default)]
pub struct Params {
    pub query: Option<String>,
    /// The id of a trusted document, sent instead of `query` (GraphQL over HTTP's persisted
    /// documents).
    pub document_id: Option<String>,
    pub operation_name: Option<String>,
    pub variables: Map<String, Json>,
    pub extensions: Map<String, Json>,
}

/// How the request arrived; GET may only read, and only a WebSocket can carry a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    WebSocket,
}

/// Why an operation produced no `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The parameters were unusable (no query, bad persisted-query extension, ...).
    BadParams,
    /// The document could not be run: parse or validation error, unknown operation, a limit,
    /// an unknown persisted query, or variables that do not fit.
    Document,
    /// A mutation or subscription sent with GET.
    MethodNotAllowed,
    /// A subscription sent over plain HTTP.
    NeedsWebSocket,
    /// The caller may not run this document (introspection switched off).
    Forbidden,
    /// The document needs a token the request did not carry (introspection, when so set).
    Unauthenticated,
    /// Execution passed the deadline and was cancelled.
    Timeout,
}

/// The result of one operation: a response, and whether it was executed (then it has a
/// `data` entry) or refused before or during execution.
#[derive(Debug)]
pub struct Outcome {
    pub response: Response,
    pub failure: Option<Failure>,
}

impl Outcome {
    /// A request whose parameters could not be read (wrong JSON types, not an object).
    pub fn bad_params(message: impl Into<String>) -> Self {
        Refusal::one(Failure::BadParams, ErrorCode::BadRequest, message).into()
    }

    /// Whether the operation produced no result to show: refused before it ran, or (for a
    /// subscription) its stream could not start, which leaves `data` null.
    pub fn is_error(&self) -> bool {
        self.failure.is_some()
            || (matches!(self.response.data, Value::Null) && !self.response.errors.is_empty())
    }
}

/// An operation that passed every check: a query or mutation to run once (or a refusal,
/// ready at once), or a subscription, which yields one outcome per event until its source
/// ends or the stream is dropped.
pub enum Started {
    Once(Pin<Box<dyn Future<Output = Outcome> + Send>>),
    Live(Pin<Box<dyn Stream<Item = Outcome> + Send>>),
}

/// An operation refused before it ran.
struct Refusal {
    failure: Failure,
    errors: Vec<ServerError>,
}

impl Refusal {
    fn new(failure: Failure, errors: Vec<ServerError>) -> Self {
        Self { failure, errors }
    }

    fn one(failure: Failure, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(failure, vec![server_error(code, message)])
    }
}

impl From<Refusal> for Outcome {
    fn from(refusal: Refusal) -> Self {
        Self {
            response: Response::from_errors(refusal.errors),
            failure: Some(refusal.failure),
        }
    }
}

/// Where an operation's document comes from.
enum Source {
    /// A trusted document, planned and validated at start-up.
    Trusted(Arc<Plan>),
    /// A text to plan; `allowed` is false when only trusted documents may run.
    Text { query: String, allowed: bool },
}

/// Both APQ clients recognise a miss by this exact message (urql by nothing else).
fn persisted_query_not_found() -> Refusal {
    Refusal::one(
        Failure::Document,
        ErrorCode::PersistedQueryNotFound,
        "PersistedQueryNotFound",
    )
}

/// What the pipeline needs to know about the request carrying the operation.
#[derive(Debug, Clone)]
pub struct Context {
    pub method: Method,
    pub deadline: Instant,
    pub viewer: Arc<Viewer>,
    /// What ties a subscription to its WebSocket connection.
    pub live: Option<Arc<Link>>,
}

/// Runs operations against the schema under the configured limits.
pub struct Executor {
    schema: AppSchema,
    limits: GraphQLConfig,
    persisted: Arc<dyn apq::PersistedQueryStore>,
    shape: Shape,
    health: Arc<Health>,
    plans: PlanCache,
    trusted: Trusted,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Executor {
    /// The executor of `schema`; fails when the schema's shape cannot be read (see
    /// [`Shape::from_sdl`]).
    pub fn new(
        schema: AppSchema,
        limits: GraphQLConfig,
        persisted: Arc<dyn apq::PersistedQueryStore>,
        health: Arc<Health>,
    ) -> Result<Self, shape::ShapeError> {
        Ok(Self {
            shape: Shape::from_sdl(&crate::graphql::sdl())?,
            plans: PlanCache::default(),
            trusted: Trusted::default(),
            schema,
            limits,
            persisted,
            health,
        })
    }

    /// Reads the trusted documents of `TRUSTED_DOCUMENTS`, when set, and plans and validates
    /// each before the server listens: a document that would be refused stops start-up,
    /// named. Returns how many documents are trusted.
    pub async fn trust_configured(&mut self) -> Result<usize, ManifestError> {
        let Some(path) = self.limits.trusted_documents.clone() else {
            if self.limits.trusted_only {
                return Err(ManifestError::NoManifest);
            }
            return Ok(0);
        };
        let entries = trusted::read(&path)?;
        self.trust(entries).await
    }

    /// Plans and validates `entries` and serves them as the trusted documents.
    pub async fn trust(&mut self, entries: Vec<trusted::Entry>) -> Result<usize, ManifestError> {
        let mut trusted = Trusted::new(
            self.limits.trusted_only,
            self.limits.trusted_allow_introspection,
        );
        for entry in entries {
            let invalid = |name: String, errors: &[ServerError]| ManifestError::Invalid {
                name,
                reason: errors
                    .iter()
                    .map(|error| error.message.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            };
            let plan = Arc::new(
                self.plan_anew(&entry.text)
                    .map_err(|refusal| invalid(entry.name.clone(), &refusal.errors))?,
            );
            // codegen's manifest names a document by its id only; its operations say more.
            let described = if entry.name == entry.id {
                let operations: Vec<&str> = plan
                    .doc()
                    .operations
                    .iter()
                    .filter_map(|(name, _)| name.map(|name| name.as_str()))
                    .collect();
                format!("{} ({})", operations.join(", "), entry.id)
            } else {
                entry.name.clone()
            };
            for (name, op) in plan.doc().operations.iter() {
                let op = &op.node;
                let root = nulls::root_of(op);
                let mut errors = plan.verdict(op).to_vec();
                // Fragments that nest or expand too far; what the variables' page sizes
                // cost is each request's to check.
                match cost::estimate(plan.doc(), &self.shape, root, op, &Map::new()) {
                    Ok(cost) if cost.fields <= cost::MAX_EXPANDED_FIELDS => {}
                    _ => errors.push(server_error(
                        ErrorCode::GraphqlValidationFailed,
                        "Its fragments nest or expand too far.",
                    )),
                }
                if errors.is_empty() {
                    errors = self
                        .validate_once(&plan, name.map(|name| name.to_string()))
                        .await;
                }
                if !errors.is_empty() {
                    return Err(invalid(described, &errors));
                }
            }
            trusted.insert(entry.id, plan);
        }
        let count = trusted.len();
        self.trusted = trusted;
        Ok(count)
    }

    /// Has async-graphql validate `plan`'s document for operation `name`, and stops before
    /// anything runs ([`DryRun`]); a pass is remembered in the plan as any request's is.
    async fn validate_once(&self, plan: &Arc<Plan>, name: Option<String>) -> Vec<ServerError> {
        let (doc, shared) = plan.runnable(name.as_deref(), &Map::new(), false);
        let admitted = Arc::new(Admitted {
            plan: Arc::clone(plan),
            shared,
            refused: AtomicBool::new(false),
        });
        let mut request = async_graphql::Request::new(String::new())
            .data(Arc::clone(&admitted))
            .data(DryRun);
        request.operation_name = name;
        request.set_parsed_query(doc);
        let response = self.schema.execute(request).await;
        if admitted.refused.load(Ordering::Acquire) {
            response.errors
        } else {
            Vec::new()
        }
    }

    pub fn limits(&self) -> &GraphQLConfig {
        &self.limits
    }

    pub async fn execute(&self, params: Params, cx: &Context) -> Outcome {
        let mut seen = Seen::new(&params);
        let outcome = match self.prepare(params, cx, &mut seen).await {
            Ok(request) => self.run(request, cx).await,
            Err(refusal) => refusal.into(),
        };
        seen.record(&outcome);
        outcome
    }

    /// Checks an operation and returns it ready to run: a query or mutation as a future
    /// (so the caller knows what it is before it runs), a subscription as a stream.
    pub async fn start(self: &Arc<Self>, params: Params, cx: Context) -> Started {
        let mut seen = Seen::new(&params);
        let prepared = match self.prepare(params, &cx, &mut seen).await {
            Ok(prepared) => prepared,
            Err(refusal) => {
                let outcome: Outcome = refusal.into();
                seen.record(&outcome);
                return Started::Once(Box::pin(std::future::ready(outcome)));
            }
        };
        if !prepared.subscription {
            let executor = Arc::clone(self);
            return Started::Once(Box::pin(async move {
                let outcome = executor.run(prepared, &cx).await;
                seen.record(&outcome);
                outcome
            }));
        }
        // A subscription is counted once, when it starts; its events are not operations.
        seen.observe("OK");
        let executor = Arc::clone(self);
        let executed = prepared.executed;
        let events = self
            .schema
            .execute_stream(prepared.request)
            .map(move |response| executor.finish(response, &executed));
        Started::Live(Box::pin(events))
    }

    /// Every check that can refuse the operation before it runs.
    async fn prepare(
        &self,
        params: Params,
        cx: &Context,
        seen: &mut Seen,
    ) -> Result<Prepared, Refusal> {
        let Params {
            query,
            document_id,
            operation_name,
            variables,
            extensions,
        } = params;

        let persisted = persisted_query_hash(&extensions)?;
        let source = self
            .source(query, document_id, persisted.as_deref())
            .await?;

        if let Some(name) = nesting::too_deep_variable(&variables) {
            let mut error = server_error(
                ErrorCode::BadUserInput,
                format!(
                    "Variable \"${name}\" nests more than {} levels deep.",
                    nesting::MAX_VALUE_DEPTH
                ),
            );
            error
                .extensions
                .get_or_insert_with(Default::default)
                .set("field", format!("${name}"));
            return Err(Refusal::new(Failure::Document, vec![error]));
        }

        let (plan, text) = match source {
            // Planned and validated at start-up: no parse, no document check.
            Source::Trusted(plan) => (plan, None),
            Source::Text { query, allowed } => {
                if query.len() > self.limits.max_document_bytes {
                    return Err(Refusal::one(
                        Failure::Document,
                        ErrorCode::BadRequest,
                        format!(
                            "The query document is {} bytes long; this server accepts at most {} bytes.",
                            query.len(),
                            self.limits.max_document_bytes
                        ),
                    ));
                }
                let plan = tracing::debug_span!("graphql.parse").in_scope(|| self.plan(&query))?;
                let schema_only = self.trusted.introspection && plan.schema_only;
                if !(allowed || schema_only) {
                    return Err(Refusal::one(
                        Failure::Document,
                        ErrorCode::DocumentNotTrusted,
                        "This server runs only its trusted documents: send the id of one \
                         (\"documentId\"), or add this document to its TRUSTED_DOCUMENTS manifest.",
                    ));
                }
                (plan, Some(query))
            }
        };

        let operation = plan
            .operation(operation_name.as_deref())
            .map_err(|error| Refusal::new(Failure::Document, vec![error]))?;
        seen.kind = match operation.ty {
            OperationType::Query => "query",
            OperationType::Mutation => "mutation",
            OperationType::Subscription => "subscription",
        };
        if seen.name.is_none() {
            seen.name.clone_from(&plan.single_name);
        }
        let subscription = operation.ty == OperationType::Subscription;
        if cx.method == Method::Get && !document::is_query(operation) {
            return Err(Refusal::one(
                Failure::MethodNotAllowed,
                ErrorCode::BadRequest,
                format!("A {} cannot be sent with GET; use POST.", operation.ty),
            ));
        }
        if subscription && cx.method != Method::WebSocket {
            return Err(Refusal::one(
                Failure::NeedsWebSocket,
                ErrorCode::BadRequest,
                "Subscriptions are served over WebSocket: connect to this URL with the \
                 graphql-transport-ws protocol (graphql-ws's createClient, Apollo's \
                 GraphQLWsLink, urql's subscriptionExchange).",
            ));
        }
        let missing = document::missing_required_variables(operation, &variables);

        if let (Some(hash), Some(text)) = (persisted, text) {
            self.persisted.put(hash, text).await;
        }

        let aliases = plan.aliases;
        if self.limits.max_aliases > 0 && aliases > self.limits.max_aliases {
            return Err(Refusal::one(
                Failure::Document,
                ErrorCode::GraphqlValidationFailed,
                format!(
                    "The document uses {aliases} aliases; this server accepts at most {}.",
                    self.limits.max_aliases
                ),
            ));
        }

        if plan.introspection {
            if !self.limits.introspection {
                return Err(Refusal::one(
                    Failure::Forbidden,
                    ErrorCode::Forbidden,
                    "Introspection is disabled on this server.",
                ));
            }
            if !self.limits.introspection_without_token && !cx.viewer.is_authenticated() {
                return Err(Refusal::one(
                    Failure::Unauthenticated,
                    ErrorCode::Unauthenticated,
                    "Introspection requires a token on this server.",
                ));
            }
        }

        if !missing.is_empty() {
            return Err(Refusal::new(Failure::Document, missing));
        }

        let root = nulls::root_of(operation);
        tracing::debug_span!("graphql.validate").in_scope(|| {
            // Cost first: it bounds fragment expansion, which the plan's rules did not walk.
            self.check_cost(plan.doc(), operation, root, &variables)?;
            let mut invalid = plan.verdict(operation).to_vec();
            invalid.extend(validate::check_variables(
                operation,
                &self.shape,
                &variables,
            ));
            if invalid.is_empty() {
                Ok(())
            } else {
                Err(Refusal::new(Failure::Document, invalid))
            }
        })?;

        let omitted = document::omits_variables(operation, &variables);
        let (doc, shared) = plan.runnable(operation_name.as_deref(), &variables, omitted);
        let admitted = Arc::new(Admitted {
            plan: Arc::clone(&plan),
            shared,
            refused: AtomicBool::new(false),
        });
        // The text is not read again: the parsed document goes in below.
        let mut request = async_graphql::Request::new(String::new())
            .variables(Variables::from_json(Json::Object(variables.clone())))
            .data(cx.viewer.clone())
            .data(Arc::clone(&admitted));
        if let Some(link) = &cx.live {
            request = request.data(Arc::clone(link));
        }
        request.operation_name = operation_name.clone();
        request.set_parsed_query(doc);
        // Only an operation that ran for a verified caller may give its name a metrics
        // series: anonymous callers could otherwise fill every slot with junk names.
        seen.ran = cx.viewer.is_authenticated();
        Ok(Prepared {
            request,
            subscription,
            executed: Executed {
                admitted,
                operation_name,
                variables,
            },
        })
    }

    /// Where the request's document comes from: a trusted document named by its id (or
    /// sent in full), or a text to plan, sent or registered before under an APQ hash.
    async fn source(
        &self,
        query: Option<String>,
        document_id: Option<String>,
        persisted: Option<&str>,
    ) -> Result<Source, Refusal> {
        let by_document_id = document_id.is_some();
        let named = match document_id {
            Some(id) => Some(trusted::normalize_id(&id).ok_or_else(|| {
                Refusal::one(
                    Failure::BadParams,
                    ErrorCode::BadRequest,
                    "\"documentId\" must be a SHA-256 hex digest, bare or as sha256:<hex>.",
                )
            })?),
            None => persisted.map(str::to_owned),
        };
        // A client may send a text only under its own id; anything else would let it plant
        // a different document behind an id others will send.
        if let (Some(id), Some(query)) = (&named, &query)
            && apq::sha256_hex(query) != *id
        {
            return Err(Refusal::one(
                Failure::BadParams,
                ErrorCode::BadRequest,
                "provided sha does not match query",
            ));
        }
        // A trusted document, named by its id or sent in full, runs from its plan.
        let key = named.or_else(|| {
            query
                .as_deref()
                .filter(|_| !self.trusted.is_empty())
                .map(apq::sha256_hex)
        });
        if let Some(plan) = key.and_then(|key| self.trusted.get(&key)) {
            return Ok(Source::Trusted(Arc::clone(plan)));
        }
        if by_document_id {
            return Err(Refusal::one(
                Failure::Document,
                ErrorCode::PersistedQueryNotFound,
                "No trusted document has this documentId.",
            ));
        }
        let query = match (query, persisted) {
            (Some(query), _) => query,
            // With only trusted documents, the APQ store is not asked: nothing it holds may run.
            (None, Some(hash)) if !self.trusted.only => self
                .persisted
                .get(hash)
                .await
                .ok_or_else(persisted_query_not_found)?,
            (None, Some(_)) => return Err(persisted_query_not_found()),
            (None, None) => {
                return Err(Refusal::one(
                    Failure::BadParams,
                    ErrorCode::BadRequest,
                    "The request has no query. Send the GraphQL document in the \"query\" parameter.",
                ));
            }
        };
        Ok(Source::Text {
            query,
            allowed: !self.trusted.only,
        })
    }

    /// The plan of the document `query`: from the cache when the same text was planned
    /// before (clients send a handful of documents over and over), else checked for
    /// nesting, parsed, planned and remembered.
    fn plan(&self, query: &str) -> Result<Arc<Plan>, Refusal> {
        if let Some(plan) = self.plans.get(query) {
            return Ok(plan);
        }
        let plan = Arc::new(self.plan_anew(query)?);
        self.plans.put(query, &plan);
        Ok(plan)
    }

    /// Checks `query` for nesting, parses it and plans it.
    fn plan_anew(&self, query: &str) -> Result<Plan, Refusal> {
        // Before the parser: it, the validator and the executor all recurse over values.
        if let Err(problem) = nesting::check_document(query) {
            let message = match problem {
                nesting::Problem::Value => format!(
                    "A value, type or argument in the document nests more than {} levels deep.",
                    nesting::MAX_VALUE_DEPTH
                ),
                nesting::Problem::Document => format!(
                    "The document nests more than {} levels deep.",
                    nesting::MAX_NESTING
                ),
                nesting::Problem::DuplicateField(name) => format!(
                    "An input object names the field \"{name}\" more than once; give each field once."
                ),
            };
            return Err(Refusal::one(
                Failure::Document,
                ErrorCode::GraphqlValidationFailed,
                message,
            ));
        }
        let doc = parse_query(query).map_err(|err| {
            let mut error = ServerError::from(err);
            error.message = syntax_error_message(&error.message);
            set_code(&mut error, ErrorCode::GraphqlParseFailed);
            Refusal::new(Failure::Document, vec![error])
        })?;
        Ok(Plan::new(doc, &self.shape))
    }

    /// Refuses documents whose database work (or fragment expansion) is over the limits,
    /// before async-graphql's validation, whose own walks follow every fragment spread.
    fn check_cost(
        &self,
        doc: &ExecutableDocument,
        operation: &OperationDefinition,
        root: &str,
        variables: &Map<String, Json>,
    ) -> Result<(), Refusal> {
        let refuse = |message: String| {
            Refusal::one(
                Failure::Document,
                ErrorCode::GraphqlValidationFailed,
                message,
            )
        };
        let cost = cost::estimate(doc, &self.shape, root, operation, variables).map_err(
            |cost::TooCostly::FragmentNesting| {
                refuse(format!(
                    "Fragments nest more than {} levels deep.",
                    cost::MAX_FRAGMENT_NESTING
                ))
            },
        )?;
        if cost.fields > cost::MAX_EXPANDED_FIELDS {
            return Err(refuse(format!(
                "The document expands to {} fields through its fragments; this server accepts at most {}.",
                cost.fields,
                cost::MAX_EXPANDED_FIELDS
            )));
        }
        let max = self.limits.max_statements;
        if max > 0 && cost.statements > max {
            return Err(refuse(format!(
                "The document could run {} database statements; this server allows at most {max} per operation. \
                 Ask for fewer lists, counts or rows.",
                cost.statements
            )));
        }
        let max = self.limits.max_complexity;
        if max > 0 && cost.complexity > max as u64 {
            return Err(refuse(format!(
                "Query is too complex: its complexity is {}, and this server accepts at most {max}.",
                cost.complexity
            )));
        }
        Ok(())
    }

    async fn run(&self, prepared: Prepared, cx: &Context) -> Outcome {
        // async-graphql's own validation runs inside, then the resolvers (see `traced`).
        let execution = self
            .schema
            .execute(prepared.request)
            .instrument(tracing::debug_span!("graphql.execute"));
        let response = match tokio::time::timeout_at(cx.deadline, execution).await {
            Ok(response) => response,
            Err(_) => {
                // Dropping the execution future drops any query in flight; the database also
                // cancels it through `statement_timeout`, and an open transaction rolls back.
                return Refusal::one(
                    Failure::Timeout,
                    ErrorCode::Timeout,
                    "The request took longer than this server allows and was cancelled.",
                )
                .into();
            }
        };
        self.finish(response, &prepared.executed)
    }

    /// Applies the rules every response follows to what execution returned: error codes,
    /// database health, null rules. (With introspection off, async-graphql makes no
    /// suggestions: `build_schema` switches them off, and `validate` refuses the one kind it
    /// would make regardless, for a directive's arguments.)
    fn finish(&self, mut response: Response, executed: &Executed) -> Outcome {
        // Set by `ValidateOnce` when async-graphql refused the document before running it;
        // those errors already carry their codes.
        let refused = executed.admitted.refused.load(Ordering::Acquire);
        response.errors.iter_mut().for_each(ensure_code);
        let trouble = response
            .errors
            .iter()
            .filter_map(|error| error.source::<DatabaseUnavailable>())
            .fold(None, |seen: Option<bool>, e| {
                Some(seen.unwrap_or(false) | e.connection_lost)
            });
        match trouble {
            Some(true) => self.health.connection_lost(),
            // The pool stayed busy: overload, or a database that refuses connections (sqlx
            // retries those until the acquire timeout). A probe tells which.
            Some(false) => self.health.suspect(),
            None => {}
        }
        if !refused && (executed.admitted.plan.marked() || !response.errors.is_empty()) {
            self.complete(&mut response, executed);
        }
        Outcome {
            response,
            failure: refused.then_some(Failure::Document),
        }
    }

    /// Applies the spec's null rules to an executed response (see `nulls`), walking the
    /// document as parsed, which the plan keeps.
    fn complete(&self, response: &mut Response, executed: &Executed) {
        let plan = &executed.admitted.plan;
        let Ok(operation) = plan.operation(executed.operation_name.as_deref()) else {
            return;
        };
        let error_paths = response
            .errors
            .iter()
            .map(|error| error.path.clone())
            .collect();
        nulls::complete(
            &mut response.data,
            plan.doc(),
            operation,
            nulls::root_of(operation),
            &self.shape,
            &executed.variables,
            error_paths,
        );
    }
}

/// What the metrics need of an operation, learned as the pipeline goes.
struct Seen {
    started: std::time::Instant,
    /// The operation's name: the one asked for, else the document's only operation's.
    name: Option<String>,
    kind: &'static str,
    /// Whether it passed every check and ran, for a verified caller.
    ran: bool,
}

impl Seen {
    fn new(params: &Params) -> Self {
        Self {
            started: std::time::Instant::now(),
            name: params.operation_name.clone(),
            kind: "unknown",
            ran: false,
        }
    }

    fn record(&self, outcome: &Outcome) {
        let code = outcome.response.errors.first().map_or("OK", |error| {
            ErrorCode::of(error).map_or("INTERNAL_SERVER_ERROR", ErrorCode::as_str)
        });
        self.observe(code);
    }

    fn observe(&self, code: &'static str) {
        crate::metrics::get().operation(
            self.name.as_deref(),
            self.kind,
            code,
            self.ran,
            self.started.elapsed(),
        );
    }
}

struct Prepared {
    request: async_graphql::Request,
    /// Whether the operation is a subscription (a stream of results, not one).
    subscription: bool,
    executed: Executed,
}

/// What [`Executor::finish`] needs to know of the operation whose response it completes.
struct Executed {
    admitted: Arc<Admitted>,
    /// The operation and its variables, for the null rules after execution.
    operation_name: Option<String>,
    variables: Map<String, Json>,
}

/// Request data shared with [`ValidateOnce`]: the plan whose verdict it may answer with or
/// remember, and whether async-graphql refused the document before running it.
struct Admitted {
    plan: Arc<Plan>,
    /// Whether async-graphql gets the plan's own document (not one rewritten for omitted
    /// variables), so that its validation verdict holds for every request with the text.
    shared: bool,
    refused: AtomicBool,
}

/// async-graphql's validation, once per document text: a plan's cached verdict answers
/// without running its rules. Only a pass is remembered, and only for a document that is
/// the same for every request ([`Admitted::shared`]); what in that validation depends on
/// variables (their values at arguments, complexity) taskql checks per request before
/// async-graphql runs (`validate::check_variables`, `cost`).
///
/// Errors it reports are classified here, where they are raised: at an argument fed by a
/// variable, the client's input (`BAD_USER_INPUT`); else a broken document.
pub struct ValidateOnce;

impl ExtensionFactory for ValidateOnce {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ValidateOnce)
    }
}

impl ValidateOnce {
    fn refuse(admitted: Option<&Arc<Admitted>>, errors: &mut [ServerError]) {
        for error in errors.iter_mut() {
            if code_of(error).is_some() {
                continue;
            }
            let from_variable = admitted.is_some_and(|admitted| {
                error
                    .locations
                    .iter()
                    .any(|pos| admitted.plan.variable_positions.contains(pos))
            });
            set_code(
                error,
                if from_variable {
                    ErrorCode::BadUserInput
                } else {
                    ErrorCode::GraphqlValidationFailed
                },
            );
        }
        if let Some(admitted) = admitted {
            admitted.refused.store(true, Ordering::Release);
        }
    }
}

/// Request data that stops an operation after validation: start-up's check of a trusted
/// document runs nothing.
struct DryRun;

#[async_graphql::async_trait::async_trait]
impl Extension for ValidateOnce {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if ctx.data_opt::<DryRun>().is_some() {
            return Response::new(Value::Null);
        }
        next.run(ctx, operation_name).await
    }

    /// The parse step checks recursion depth and the number of directives.
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables).await.map_err(|mut error| {
            Self::refuse(
                ctx.data_opt::<Arc<Admitted>>(),
                std::slice::from_mut(&mut error),
            );
            error
        })
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let admitted = ctx.data_opt::<Arc<Admitted>>();
        let shared = admitted.filter(|admitted| admitted.shared);
        if let Some(result) = shared.and_then(|admitted| admitted.plan.validated()) {
            return Ok(result);
        }
        match next.run(ctx).await {
            Ok(result) => {
                if let Some(admitted) = shared {
                    admitted.plan.remember_validated(result);
                }
                Ok(result)
            }
            Err(mut errors) => {
                Self::refuse(admitted, &mut errors);
                Err(errors)
            }
        }
    }
}

/// Reads `extensions.persistedQuery` (version 1, the only one APQ defines).
fn persisted_query_hash(extensions: &Map<String, Json>) -> Result<Option<String>, Refusal> {
    let Some(persisted) = extensions.get("persistedQuery") else {
        return Ok(None);
    };
    let bad = |message: &str| Refusal::one(Failure::BadParams, ErrorCode::BadRequest, message);
    let persisted = persisted
        .as_object()
        .ok_or_else(|| bad("extensions.persistedQuery must be an object"))?;
    if persisted.get("version").and_then(Json::as_i64) != Some(1) {
        return Err(bad(
            "Unsupported persisted query version; only version 1 is supported.",
        ));
    }
    let hash = persisted
        .get("sha256Hash")
        .and_then(Json::as_str)
        .filter(|hash| trusted::is_sha256_hex(hash))
        .ok_or_else(|| bad("extensions.persistedQuery.sha256Hash must be a SHA-256 hex digest"))?;
    Ok(Some(hash.to_ascii_lowercase()))
}

/// The parser's message is a multi-line source excerpt ending in `= expected …`; clients show
/// messages on one line and already get the position in `locations`.
fn syntax_error_message(parser_message: &str) -> String {
    let reason = parser_message
        .lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("= "))
        .unwrap_or_else(|| parser_message.trim());
    format!("Syntax error: {reason}.")
}
