//! Glint endpoint proxy (to be written).
