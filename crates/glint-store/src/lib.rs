//! Glint store (to be written).
