//! The HTTP surface: routes, the middleware every request passes, and the shared state
//! handed to handlers.
//!
//! - [`admission`]: who may run what, for every transport: the caller's token, their rate,
//!   and what they hold at once (places in flight, sockets, downloads).
//! - [`params`]: a request's GraphQL parameters, from a POST body, a GET query string or a
//!   WebSocket `subscribe` payload.
//! - [`reply`]: every response the HTTP layer builds: an operation's status, every refusal.
//! - [`graphql`]: the `GET`/`POST /graphql` handlers (GraphQL over HTTP, batches).
//! - [`negotiate`]: `Accept` parsing for GraphQL responses and the playground.
//! - [`export`]: `GET /export`, a user's own data as one streamed download.
//! - [`graphiql`]: the self-hosted GraphiQL page and its assets.
//! - [`health`]: `/healthz` and `/readyz`.
//! - [`json`]: strict JSON for request bodies (no repeated keys).
//! - [`rate_limit`]: the per-caller request budget.
//! - [`settings`]: where the server listens, request and WebSocket limits, the budget.
//! - `/metrics`: the Prometheus exposition (here, or alone on `METRICS_ADDR`).
//! - [`ws`]: GraphQL over WebSocket (`graphql-transport-ws`, legacy `graphql-ws`) on `/graphql`.

pub mod admission;
pub mod export;
pub mod graphiql;
pub mod graphql;
pub mod health;
pub mod json;
pub mod negotiate;
pub mod params;
pub mod rate_limit;
pub mod reply;
pub mod settings;
pub mod ws;

use std::{ops::Deref, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::{MatchedPath, State},
    http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Redirect},
    routing::get,
};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    classify::ServerErrorsFailureClass,
    compression::CompressionLayer,
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    timeout::TimeoutLayer,
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::Level;

use crate::{
    auth::{AuthConfig, Verifier, dev},
    db::Database,
    graphql::pipeline::Executor,
};

/// What every handler can reach. Cheap to clone: one `Arc`.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

#[derive(Debug)]
pub struct Shared {
    pub config: settings::HttpConfig,
    /// The token rules, for the playground's development token.
    pub auth: AuthConfig,
    /// Whether `/metrics` is served on the API's port (no `METRICS_ADDR`).
    pub metrics_here: bool,
    pub db: Database,
    pub executor: Arc<Executor>,
    pub verifier: Verifier,
    pub rate_limit: rate_limit::RateLimit,
    pub sockets: ws::Sockets,
    /// `MAX_IN_FLIGHT`: one cap over every operation, whichever transport brought it.
    pub in_flight: admission::InFlight,
    /// Downloads (`/export`) running, one per user.
    pub downloads: admission::Holdings,
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }

    /// A working token for the playground, in development mode only.
    pub fn dev_token(&self) -> Option<String> {
        let secret = self.verifier.development_secret()?;
        let request = dev::TokenRequest {
            sub: "dev-user".to_owned(),
            email: "dev@example.com".to_owned(),
            name: Some("Developer".to_owned()),
            ttl: Duration::from_secs(12 * 3600),
            issuer: self.auth.issuer.clone(),
            audience: self.auth.audience.clone(),
        };
        dev::mint(secret, &request)
            .inspect_err(|err| tracing::warn!(error = %err, "could not mint a playground token"))
            .ok()
    }
}

/// The whole application as one `Router`, middleware included.
pub fn router(state: AppState) -> Router {
    let timeout = state.config.request_timeout;
    let cors = cors(&state.config.cors_allowed_origins);
    let metrics_here = state.metrics_here;
    // One cap over every route that runs database work (`/export` takes its place itself and
    // keeps it while its body streams; WebSocket operations take one each).
    let routes = Router::new()
        .route(
            "/graphql",
            get(graphql::get)
                .post(graphql::post)
                .route_layer(middleware::from_fn_with_state(
                    state.in_flight.clone(),
                    shed_load,
                )),
        )
        .route("/export", get(export::export))
        .route("/graphiql/{file}", get(graphiql::asset))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/", get(|| async { Redirect::temporary("/graphql") }));
    // With METRICS_ADDR set, the exposition is only there, off the public port.
    let routes = if metrics_here {
        routes.route("/metrics", get(metrics))
    } else {
        routes
    };
    routes
        .fallback(|| async { StatusCode::NOT_FOUND })
        // Inside the routes, where the matched route pattern is known.
        .layer(middleware::from_fn(observe))
        .with_state(state)
        // Layers listed first wrap the ones after them: a request passes them top to bottom.
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_response(DefaultOnResponse::new().level(Level::INFO))
                        .on_failure(log_failure),
                )
                .layer(middleware::from_fn(request_scope))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(CatchPanicLayer::custom(panic_response))
                // A backstop for requests stuck outside the GraphQL deadline (a body that
                // trickles in): the GraphQL handler answers its own timeouts first.
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    timeout + Duration::from_secs(2),
                ))
                .layer(cors)
                .layer(CompressionLayer::new())
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                )),
        )
}

/// `/metrics` alone, for `METRICS_ADDR`.
pub fn metrics_router() -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { StatusCode::NOT_FOUND })
}

/// The Prometheus exposition (OpenMetrics text).
async fn metrics() -> Response<Body> {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        crate::metrics::get().render(),
    )
        .into_response()
}

/// Counts every response by route pattern (never the raw path: ids in paths would make a
/// series per id), method and status, and its latency.
async fn observe(request: Request<Body>, next: Next) -> Response<Body> {
    let started = std::time::Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().clone();
    let mut response = next.run(request).await;
    // W3C Trace Context's response header: where the caller's trace continues here.
    if let Some(traceparent) = crate::telemetry::current_traceparent()
        && let Ok(value) = HeaderValue::from_str(&traceparent)
    {
        response
            .headers_mut()
            .insert(HeaderName::from_static("traceresponse"), value);
    }
    crate::metrics::get().http_request(
        route,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Sheds load past `MAX_IN_FLIGHT` operations with an immediate 503 and `Retry-After`: under
/// overload a quick "try again" serves clients better than a queue whose every request
/// times out, and it keeps memory bounded. Probes (`/healthz`, `/readyz`) are not counted.
async fn shed_load(
    State(in_flight): State<admission::InFlight>,
    request: Request<Body>,
    next: Next,
) -> Response<Body> {
    let Some(_place) = in_flight.enter() else {
        tracing::warn!("too many requests in flight; shedding load");
        crate::metrics::get().load_shed(crate::metrics::Transport::Http);
        return reply::unavailable(
            negotiate::MediaType::Json,
            "The server is at capacity; retry after the time in the Retry-After header.",
            1,
        );
    };
    next.run(request).await
}

/// Server errors are logged at ERROR, except 503: a database outage or shed load is a
/// condition to watch (WARN), not a fault in this process.
fn log_failure(class: ServerErrorsFailureClass, latency: Duration, _span: &tracing::Span) {
    let latency = format!("{} ms", latency.as_millis());
    match class {
        ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {
            tracing::warn!(%latency, "service unavailable");
        }
        class => tracing::error!(classification = %class, %latency, "response failed"),
    }
}

/// The span every log line of a request is written in. It carries the request id (also sent
/// back in `x-request-id`), and the user id once the token is verified. The query string is
/// left out: GET requests carry variables there, which are user data.
fn request_span(request: &Request<Body>) -> tracing::Span {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id,
        trace_id = tracing::field::Empty,
        caller_trace_id = tracing::field::Empty,
        user_id = tracing::field::Empty,
        websocket = tracing::field::Empty,
    );
    crate::telemetry::continue_trace(&span, request.headers());
    span
}

/// Runs a request in its telemetry scope (see `telemetry::in_request`): its trace ids, also
/// recorded on the request span for its log lines, and, for a GraphQL request, its statement
/// count. Inside the request span (to read the trace it continues) and outside the panic
/// catcher (so a panic's 500 carries the trace id too).
async fn request_scope(request: Request<Body>, next: Next) -> Response<Body> {
    let trace = crate::telemetry::request_trace(request.headers());
    let span = tracing::Span::current();
    if let Some(trace_id) = &trace.trace_id {
        span.record("trace_id", trace_id.as_str());
    }
    if let Some(caller) = &trace.caller_trace_id {
        span.record("caller_trace_id", caller.as_str());
    }
    let counted = request.uri().path() == "/graphql";
    crate::telemetry::in_request(trace.trace_id, counted, next.run(request)).await
}

/// Browser clients with credentials need an explicit origin (never `*`), the credentials
/// flag, and the headers Apollo Client and urql send. Preflights are cached for two hours.
fn cors(origins: &[HeaderValue]) -> CorsLayer {
    if origins.is_empty() {
        // Same-origin only: no CORS headers at all.
        return CorsLayer::new();
    }
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.iter().cloned()))
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("apollographql-client-name"),
            HeaderName::from_static("apollographql-client-version"),
            HeaderName::from_static("apollo-require-preflight"),
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("traceparent"),
            HeaderName::from_static("tracestate"),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("traceresponse"),
            // So a browser app can name the file `GET /export` offers.
            header::CONTENT_DISPOSITION,
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
        ])
        .max_age(Duration::from_secs(2 * 3600))
}

/// A panic in a handler becomes a masked 500 in the GraphQL error shape, logged once with an
/// id, instead of a dropped connection.
#[allow(
    clippy::needless_pass_by_value,
    reason = "the signature CatchPanicLayer requires"
)]
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    reply::internal_error(&format!("handler panicked: {detail}"))
}
