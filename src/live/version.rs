//! The version string clients hold: where in a user's change feed they stand.
//!
//! It carries the feed's epoch and version number, and a check digest over both and the user
//! id. Clients treat it as opaque; the server reads it back without any key, so it stays valid
//! across restarts, instances and key rotations. The digest is no secret: a client that
//! computes one for itself can only ask for its own changes from a number of its choosing,
//! which any version already lets it do. What it catches is the string of another user (or
//! one altered by accident), refused as bad input rather than answered with a feed that means
//! nothing to the client.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest as _, Sha256};

use crate::{auth::UserId, db::changes::Stamp};

/// The format, first byte of every version, so a later format can tell them apart.
const FORMAT: u8 = 1;
/// Bytes of the digest kept: enough that a string made for another user passes by chance
/// once in 2^64.
const CHECK_BYTES: usize = 8;
/// The encoded length: format, epoch, version and check, in base64url without padding.
const ENCODED_LEN: usize = ((1 + 8 + 8 + CHECK_BYTES) * 4).div_ceil(3);

/// Why a version string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadVersion {
    /// Not a version this API made.
    Malformed,
    /// Made for another user, or altered.
    Foreign,
}

impl BadVersion {
    /// What the client is told.
    pub fn message(self) -> &'static str {
        match self {
            Self::Malformed => "Invalid version: not a version this API made.",
            Self::Foreign => {
                "Invalid version: it was made for another user, or was altered. Use a version \
                 this API gave the signed-in user."
            }
        }
    }
}

/// `stamp` as the version string of `user`.
pub fn encode(user: &UserId, stamp: Stamp) -> String {
    let mut bytes = Vec::with_capacity(1 + 16 + CHECK_BYTES);
    bytes.push(FORMAT);
    bytes.extend_from_slice(&stamp.epoch.to_be_bytes());
    bytes.extend_from_slice(&stamp.version.to_be_bytes());
    bytes.extend_from_slice(&check(user, stamp));
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Reads a version string `user` sent.
pub fn decode(user: &UserId, text: &str) -> Result<Stamp, BadVersion> {
    if text.len() != ENCODED_LEN {
        return Err(BadVersion::Malformed);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| BadVersion::Malformed)?;
    let [FORMAT, rest @ ..] = bytes.as_slice() else {
        return Err(BadVersion::Malformed);
    };
    let (epoch, rest) = rest.split_first_chunk::<8>().ok_or(BadVersion::Malformed)?;
    let (version, given) = rest.split_first_chunk::<8>().ok_or(BadVersion::Malformed)?;
    let stamp = Stamp {
        epoch: i64::from_be_bytes(*epoch),
        version: i64::from_be_bytes(*version),
    };
    if stamp.version < 0 {
        return Err(BadVersion::Malformed);
    }
    if given != check(user, stamp) {
        return Err(BadVersion::Foreign);
    }
    Ok(stamp)
}

fn check(user: &UserId, stamp: Stamp) -> [u8; CHECK_BYTES] {
    let mut hasher = Sha256::new();
    hasher.update(b"taskql version v1\0");
    hasher.update(user.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(stamp.epoch.to_be_bytes());
    hasher.update(stamp.version.to_be_bytes());
    let digest = hasher.finalize();
    let mut check = [0; CHECK_BYTES];
    check.copy_from_slice(&digest[..CHECK_BYTES]);
    check
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(epoch: i64, version: i64) -> Stamp {
        Stamp { epoch, version }
    }

    #[test]
    fn a_version_reads_back_for_its_user_only() {
        let alice = UserId::for_tests("alice");
        let bob = UserId::for_tests("bob");
        for given in [
            stamp(0, 0),
            stamp(42, 7),
            stamp(i64::MAX, i64::MAX),
            stamp(-5, 1),
        ] {
            let text = encode(&alice, given);
            assert_eq!(text.len(), ENCODED_LEN);
            assert_eq!(decode(&alice, &text), Ok(given));
            assert_eq!(decode(&bob, &text), Err(BadVersion::Foreign));
        }
    }

    #[test]
    fn altered_and_malformed_versions_are_refused() {
        let alice = UserId::for_tests("alice");
        let text = encode(&alice, stamp(9, 1234));
        let mut bytes = URL_SAFE_NO_PAD.decode(&text).expect("base64");
        // The version number, changed by one.
        bytes[16] ^= 1;
        assert_eq!(
            decode(&alice, &URL_SAFE_NO_PAD.encode(&bytes)),
            Err(BadVersion::Foreign)
        );
        for bad in [
            "",
            "1",
            "not a version",
            &text[1..],
            &format!("{text}A"),
            &"*".repeat(ENCODED_LEN),
        ] {
            assert_eq!(decode(&alice, bad), Err(BadVersion::Malformed), "{bad:?}");
        }
        let mut other_format = URL_SAFE_NO_PAD.decode(&text).expect("base64");
        other_format[0] = 2;
        assert_eq!(
            decode(&alice, &URL_SAFE_NO_PAD.encode(&other_format)),
            Err(BadVersion::Malformed)
        );
    }
}
