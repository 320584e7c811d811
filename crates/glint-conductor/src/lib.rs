//! Glint conductor (to be written).
