//! Opaque keyset cursors, sealed with a server key.
//!
//! A cursor holds a row's sort values and id: a position in one list. It is encrypted and
//! authenticated with AES-256-GCM-SIV under a server key, with the list it belongs to (the
//! caller, the order, the filter) as associated data. So a cursor reveals nothing (sort values
//! include task titles, and urql sends cursors in GET URLs that end up in access logs), and
//! one that was altered, forged, or taken from another list or user fails to open and is
//! refused with `BAD_USER_INPUT`, instead of silently paging somewhere else.
//!
//! GCM-SIV stays safe if a random nonce ever repeats, which plain GCM does not: a busy server
//! seals millions of cursors a day under one key.
//!
//! Keys: the first of [`CursorKeys`] seals, every one of them opens, so a new key can be put
//! first while the old one stays listed for as long as cursors made with it should work
//! (`CURSOR_SECRET=new,old`).

use aws_lc_rs::aead::{AES_256_GCM_SIV, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Datelike as _, Utc};
use serde_json::{Value as Json, json};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::{
    auth::UserId,
    domain::query::{Filter, Order, Position, SortField, SortValue},
    error::{AppError, Result},
};

/// The format version, first byte of every cursor, so a later format can tell them apart.
const VERSION: u8 = 1;
/// The longest cursor accepted: a 200-character title in 4-byte characters, sealed.
const MAX_CURSOR_BYTES: usize = 2048;

/// The keys cursors are sealed and opened with.
pub struct CursorKeys {
    keys: Vec<LessSafeKey>,
}

impl std::fmt::Debug for CursorKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CursorKeys")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl CursorKeys {
    /// Keys derived from secrets (the first seals). A secret is stretched into a key by
    /// SHA-256 under a label of its own, so a secret shared with another purpose (the HS256
    /// token secret) yields an unrelated key.
    pub fn from_secrets<'a>(secrets: impl IntoIterator<Item = &'a [u8]>) -> anyhow::Result<Self> {
        let keys = secrets
            .into_iter()
            .map(|secret| {
                let mut hasher = Sha256::new();
                hasher.update(b"taskql cursor key v1\0");
                hasher.update(secret);
                key(&hasher.finalize())
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!keys.is_empty(), "no cursor key");
        Ok(Self { keys })
    }

    /// A key of this process alone: cursors then last as long as the process.
    pub fn random() -> anyhow::Result<Self> {
        let mut bytes = [0_u8; 32];
        getrandom::fill(&mut bytes).map_err(|err| anyhow::anyhow!("no randomness: {err}"))?;
        Ok(Self {
            keys: vec![key(&bytes)?],
        })
    }

    /// Seals `position` for the list `scope`. Fails only if the system has no randomness
    /// or the key refuses to seal: an internal error, never a cursor that opens wrongly.
    pub fn seal(&self, position: &Position, scope: &Scope<'_>) -> Result<String> {
        let values: Vec<Json> = position.values.iter().map(encode_value).collect();
        let mut sealed = json!([values, position.id.to_string()])
            .to_string()
            .into_bytes();
        let mut nonce = [0_u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|err| {
            AppError::Internal(anyhow::anyhow!("no randomness for a cursor's nonce: {err}"))
        })?;
        let aad = scope.digest();
        self.keys[0]
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut sealed,
            )
            .map_err(|_| AppError::Internal(anyhow::anyhow!("a cursor could not be sealed")))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens a cursor given as the argument `field` for the list `scope`.
    pub fn open(&self, cursor: &str, field: &'static str, scope: &Scope<'_>) -> Result<Position> {
        let refuse = |why: &str| AppError::invalid(field, format!("Invalid cursor: {why}."));
        let foreign =
            "it was not made for this list (another order, filter or user), or was altered";
        if cursor.len() > MAX_CURSOR_BYTES {
            return Err(refuse("too long"));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| refuse("not a cursor this API made"))?;
        let Some((&VERSION, rest)) = bytes.split_first() else {
            return Err(refuse("not a cursor this API made"));
        };
        if rest.len() < NONCE_LEN {
            return Err(refuse("not a cursor this API made"));
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let aad = scope.digest();
        let plain = self
            .keys
            .iter()
            .find_map(|key| {
                let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
                let mut buffer = sealed.to_vec();
                let plain = key.open_in_place(nonce, Aad::from(aad), &mut buffer).ok()?;
                Some(plain.to_vec())
            })
            .ok_or_else(|| refuse(foreign))?;
        let Ok(Json::Array(parts)) = serde_json::from_slice::<Json>(&plain) else {
            return Err(refuse(foreign));
        };
        let [Json::Array(values), Json::String(id)] = parts.as_slice() else {
            return Err(refuse(foreign));
        };
        let id = Uuid::parse_str(id).map_err(|_| refuse("bad id"))?;
        let keys = scope.order.keys();
        if values.len() != keys.len() {
            return Err(refuse("it does not match orderBy"));
        }
        let values = keys
            .iter()
            .zip(values)
            .map(|(key, value)| {
                decode_value(key.field, value).ok_or_else(|| refuse("its values are out of range"))
            })
            .collect::<Result<_>>()?;
        Ok(Position { values, id })
    }
}

fn key(bytes: &[u8]) -> anyhow::Result<LessSafeKey> {
    let unbound = UnboundKey::new(&AES_256_GCM_SIV, bytes)
        .map_err(|_| anyhow::anyhow!("could not make a cursor key"))?;
    Ok(LessSafeKey::new(unbound))
}

/// The list a cursor belongs to.
pub struct Scope<'a> {
    pub user: &'a UserId,
    pub order: &'a Order,
    pub filter: &'a Filter,
}

impl Scope<'_> {
    fn digest(&self) -> [u8; 32] {
        // The filter's Debug text is deterministic for equal filters, which is all a binding
        // needs; cursors are not meant to outlive a deployment's version.
        let mut hasher = Sha256::new();
        for part in [
            self.user.as_str(),
            &self.order.describe(),
            &format!("{:?}", self.filter),
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        hasher.finalize().into()
    }
}

fn encode_value(value: &SortValue) -> Json {
    match value {
        SortValue::Time(time) => time.map_or(Json::Null, |t| json!(t.timestamp_micros())),
        SortValue::Int(int) => json!(int),
        SortValue::Text(text) => json!(text),
        SortValue::Bool(flag) => json!(flag),
    }
}

/// One sort value, checked against what the column can hold: a time PostgreSQL and the API
/// can both represent (years 1–9999), a priority from 1 to 5.
fn decode_value(field: SortField, value: &Json) -> Option<SortValue> {
    let time = |micros: &Json| {
        micros
            .as_i64()
            .and_then(DateTime::<Utc>::from_timestamp_micros)
            .filter(|time| (1..=9999).contains(&time.year()))
    };
    Some(match (field, value) {
        (SortField::DueAt, Json::Null) => SortValue::Time(None),
        (SortField::CreatedAt | SortField::UpdatedAt | SortField::DueAt, micros) => {
            SortValue::Time(Some(time(micros)?))
        }
        (SortField::Priority, priority) => SortValue::Int(
            i16::try_from(priority.as_i64()?)
                .ok()
                .filter(|p| (1..=5).contains(p))?,
        ),
        (SortField::Title, Json::String(title)) if !title.contains('\0') => {
            SortValue::Text(title.clone())
        }
        (SortField::Completed, Json::Bool(flag)) => SortValue::Bool(*flag),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::query::Order;

    fn position(title: &str) -> Position {
        Position {
            values: vec![SortValue::Text(title.to_owned())],
            id: Uuid::nil(),
        }
    }

    fn title_order() -> Order {
        Order::parse(vec![crate::domain::query::SortKey {
            field: SortField::Title,
            descending: false,
        }])
        .expect("order")
    }

    #[test]
    fn cursors_are_opaque_and_bound_to_their_list() {
        let keys = CursorKeys::from_secrets([&b"a secret of at least thirty-two bytes"[..]])
            .expect("keys");
        let alice = crate::auth::UserId::for_tests("alice");
        let bob = crate::auth::UserId::for_tests("bob");
        let order = title_order();
        let filter = Filter::all();
        let scope = |user| Scope {
            user,
            order: &order,
            filter: &filter,
        };
        let cursor = keys
            .seal(&position("buy milk"), &scope(&alice))
            .expect("sealed");
        assert!(!cursor.contains("milk"));
        let raw = URL_SAFE_NO_PAD.decode(&cursor).expect("base64");
        assert!(!String::from_utf8_lossy(&raw).contains("milk"), "encrypted");
        assert_eq!(
            keys.open(&cursor, "after", &scope(&alice)).expect("opens"),
            position("buy milk")
        );
        assert!(
            keys.open(&cursor, "after", &scope(&bob)).is_err(),
            "other user"
        );

        let mut tampered = raw;
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(
            keys.open(&URL_SAFE_NO_PAD.encode(tampered), "after", &scope(&alice))
                .is_err()
        );
    }

    #[test]
    fn rotation_keeps_old_cursors_working_while_listed() {
        let old =
            CursorKeys::from_secrets([&b"old secret, thirty-two bytes or more"[..]]).expect("old");
        let rotated = CursorKeys::from_secrets([
            &b"new secret, thirty-two bytes or more"[..],
            &b"old secret, thirty-two bytes or more"[..],
        ])
        .expect("rotated");
        let dropped = CursorKeys::from_secrets([&b"new secret, thirty-two bytes or more"[..]])
            .expect("new only");
        let alice = crate::auth::UserId::for_tests("alice");
        let order = title_order();
        let filter = Filter::all();
        let scope = Scope {
            user: &alice,
            order: &order,
            filter: &filter,
        };
        let cursor = old.seal(&position("x"), &scope).expect("sealed");
        assert!(rotated.open(&cursor, "after", &scope).is_ok());
        assert!(dropped.open(&cursor, "after", &scope).is_err());
    }

    #[test]
    fn values_out_of_range_are_refused() {
        assert!(decode_value(SortField::CreatedAt, &json!(i64::MAX)).is_none());
        assert!(decode_value(SortField::CreatedAt, &json!(300_000_000_000_000_000_i64)).is_none());
        assert!(decode_value(SortField::Priority, &json!(9)).is_none());
        assert!(decode_value(SortField::CreatedAt, &json!(0)).is_some());
    }
}
