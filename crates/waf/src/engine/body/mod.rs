//! Request body processors, chosen the way libmodsecurity3 chooses them: `URLENCODED` and
//! `MULTIPART` by the `Content-Type` header, `JSON` and `XML` only when a rule says
//! `ctl:requestBodyProcessor=...` (as the recommended `modsecurity.conf` does).
//!
//! Each processor turns the body bytes into plain data (arguments, files, flags, XML text) and
//! never panics: malformed input becomes an error message, which the transaction exposes as
//! `REQBODY_ERROR` / `REQBODY_ERROR_MSG`, exactly as libmodsecurity3 does.

pub mod json;
pub mod multipart;
pub mod urlencoded;
pub mod xml;

/// The bytes of a name or a value, kept in place up to [`TEXT_INLINE`] bytes (most header and
/// parameter names and values), so that loading a request allocates for its long strings only.
pub type Text = smallvec::SmallVec<[u8; TEXT_INLINE]>;

/// How many bytes a [`Text`] keeps in place.
pub const TEXT_INLINE: usize = 40;

/// A name and a value.
pub type Pair = (Text, Text);

#[cfg(test)]
mod tests;
