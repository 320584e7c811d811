//! The Glint language (to be written): source text in, a compiled
//! [`glint_model::Environment`] and diagnostics out. Pure: no IO.
