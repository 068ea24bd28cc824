//! The one rule every piece of client text obeys before it reaches PostgreSQL, whether it is
//! stored (titles, names) or only compared (filters, search, idempotency keys).

/// Why a text cannot be used.
pub const NUL_MESSAGE: &str = "Text may not contain the NUL character (U+0000).";

/// PostgreSQL's `text` cannot hold U+0000: a bound parameter containing it fails the whole
/// statement. Refusing it here names the input field instead.
pub fn check_storable(text: &str) -> Result<(), String> {
    if text.contains('\0') {
        Err(NUL_MESSAGE.to_owned())
    } else {
        Ok(())
    }
}
