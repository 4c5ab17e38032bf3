//! sync (under construction)
