//! Who may run what, checked once for every transport (HTTP, WebSocket, downloads): the
//! caller's token (a missing one is anonymous; one that is present but unusable is refused,
//! never downgraded), their rate (per verified user, else per client address), and what they
//! hold at once: places among the operations in flight (`MAX_IN_FLIGHT`), WebSocket
//! connections per client address and per user (`WS_MAX_CONNECTIONS_PER_CLIENT`), downloads
//! per user (one). Each holding is a value that gives its place back when dropped.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use axum::{
    http::{HeaderMap, header},
    response::Response,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{
    AppState,
    negotiate::MediaType,
    rate_limit,
    reply::{rate_limited, unauthorized, unavailable},
};
use crate::{
    auth::{AuthError, Identity},
    graphql::schema::viewer::Viewer,
};

/// The caller of a request, authenticated and charged one operation.
pub(crate) struct Admitted {
    pub(crate) viewer: std::sync::Arc<Viewer>,
    /// The rate-limit key the request's operations are charged to.
    pub(crate) key: String,
}

/// Authenticates the caller and charges their rate limit. A missing token is anonymous; a
/// token that is present but unusable is refused outright, never downgraded to anonymous.
/// A token already verified is charged to its user alone (see [`identify`]).
pub(crate) async fn admit(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    media: MediaType,
) -> Result<Admitted, Response> {
    let client =
        rate_limit::client_addr(peer.ip(), headers, &state.config.rate_limit.trusted_proxies);
    let address_key = rate_limit::address_key(client, state.config.rate_limit.ipv6_prefix);
    let identity = match bearer_token(headers, media).map_err(|r| *r)? {
        None => None,
        Some(token) => Some(
            identify(state, token, &address_key)
                .await
                .map_err(|denied| denied.into_response(media))?,
        ),
    };
    let key = match &identity {
        Some(identity) => {
            tracing::Span::current().record("user_id", identity.user_id.as_str());
            format!("user:{}", identity.user_id)
        }
        None => address_key,
    };
    charge(state, &key, 1, media).map_err(|r| *r)?;
    let viewer = std::sync::Arc::new(Viewer::new(identity, state.db.clone()));
    Ok(Admitted { viewer, key })
}

/// Charges `operations` to `key`, or answers 429 with `Retry-After`.
pub(crate) fn charge(
    state: &AppState,
    key: &str,
    operations: u32,
    media: MediaType,
) -> Result<(), Box<Response>> {
    state
        .rate_limit
        .check(key, operations)
        .map_err(|retry_after| Box::new(rate_limited(media, retry_after)))
}

/// The bearer token of the request, if it has an `Authorization` header; a malformed header
/// is refused.
pub(crate) fn bearer_token(
    headers: &HeaderMap,
    media: MediaType,
) -> Result<Option<&str>, Box<Response>> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .filter(|_| values.next().is_none())
        .and_then(parse_bearer)
        .map(Some)
        .ok_or_else(|| Box::new(unauthorized(media, "invalid_request", BEARER_FORMAT)))
}

/// What a malformed `Authorization` value is told.
pub(crate) const BEARER_FORMAT: &str =
    "Send exactly one Authorization header of the form \"Bearer <token>\".";

/// The token of an `Authorization` value of the form `Bearer <token>`.
pub(crate) fn parse_bearer(value: &str) -> Option<&str> {
    value
        .trim()
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
}

/// Why a presented token did not admit its caller.
pub(crate) enum Denied {
    /// The client's address spent its budget of tokens not seen before.
    RateLimited(std::time::Duration),
    /// The keys could not be fetched (JWKS mode): not the token's fault.
    Unavailable(String),
    /// The token is not valid; the reason is safe to show.
    Invalid(AuthError),
}

impl Denied {
    pub(crate) fn into_response(self, media: MediaType) -> Response {
        match self {
            Self::RateLimited(retry_after) => rate_limited(media, retry_after),
            Self::Unavailable(message) => unavailable(media, &message, 5),
            Self::Invalid(err) => unauthorized(media, "invalid_token", &err.to_string()),
        }
    }
}

/// The identity behind `token`. A token verified before costs a hash; one not seen before
/// costs a signature check, so the client's address (`address_key`) is charged for it first:
/// a flood of forged tokens runs out of budget like anonymous requests do. HTTP and
/// WebSocket both come through here, so both refuse the same tokens for the same reasons.
pub(crate) async fn identify(
    state: &AppState,
    token: &str,
    address_key: &str,
) -> Result<Identity, Denied> {
    if let Some(identity) = state.verifier.cached(token) {
        return Ok(identity);
    }
    state
        .rate_limit
        .check(address_key, 1)
        .map_err(Denied::RateLimited)?;
    match state.verifier.verify(token).await {
        Ok(identity) => Ok(identity),
        Err(err) if err.is_unavailable() => Err(Denied::Unavailable(err.to_string())),
        Err(err) => {
            // The reason is logged for operators; the token itself never is.
            tracing::info!(reason = ?err, "refused a token");
            Err(Denied::Invalid(err))
        }
    }
}

/// The cap on operations in flight; `None` when switched off (`MAX_IN_FLIGHT=0`).
#[derive(Debug, Clone)]
pub struct InFlight(Option<Arc<Semaphore>>);

/// A place among the operations in flight, held until dropped.
#[derive(Debug)]
pub struct Place {
    _permit: Option<OwnedSemaphorePermit>,
}

impl InFlight {
    pub fn new(max: usize) -> Self {
        Self((max > 0).then(|| Arc::new(Semaphore::new(max))))
    }

    /// A place, or `None` when every one is taken: the caller sheds the work at once (a quick
    /// "retry" serves clients better under overload than a queue whose every request times
    /// out).
    pub fn enter(&self) -> Option<Place> {
        match &self.0 {
            None => Some(Place { _permit: None }),
            Some(semaphore) => Arc::clone(semaphore)
                .try_acquire_owned()
                .ok()
                .map(|permit| Place {
                    _permit: Some(permit),
                }),
        }
    }
}

/// Holdings counted by key (a client address, a user), at most `max` per key. The table
/// holds only keys with holdings, so it is as large as what is held, not as what was seen.
#[derive(Debug, Clone)]
pub struct Holdings {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    max: usize,
}

/// One holding of a key; given back when dropped.
#[derive(Debug)]
pub struct Held {
    key: String,
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

impl Holdings {
    pub fn new(max: usize) -> Self {
        Self {
            counts: Arc::new(Mutex::new(HashMap::new())),
            max,
        }
    }

    /// The most one key may hold.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A holding of `key`, or `None` when it holds `max` already.
    pub fn take(&self, key: &str) -> Option<Held> {
        // Counts change by one under the lock: a poisoned lock still holds true counts.
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(key.to_owned()).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Held {
            key: key.to_owned(),
            counts: Arc::clone(&self.counts),
        })
    }

    /// How many holdings `key` has.
    #[cfg(test)]
    fn held(&self, key: &str) -> usize {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(key).copied().unwrap_or(0)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_at_most_max_and_gets_its_places_back() {
        let holdings = Holdings::new(2);
        let a = holdings.take("a").expect("first");
        let b = holdings.take("a").expect("second");
        assert!(holdings.take("a").is_none(), "a third is refused");
        assert!(holdings.take("b").is_some(), "other keys are not affected");
        drop(a);
        assert_eq!(holdings.held("a"), 1);
        let _c = holdings.take("a").expect("a place came back");
        drop(b);
        assert_eq!(holdings.counts.lock().map(|c| c.len()).unwrap_or(0), 1);
    }

    #[test]
    fn places_in_flight_are_bounded_unless_switched_off() {
        let in_flight = InFlight::new(1);
        let place = in_flight.enter().expect("one place");
        assert!(in_flight.enter().is_none());
        drop(place);
        assert!(in_flight.enter().is_some());
        let unbounded = InFlight::new(0);
        let _all: Vec<Place> = (0..1000).filter_map(|_| unbounded.enter()).collect();
        assert!(unbounded.enter().is_some());
    }
}
