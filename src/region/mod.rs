//! region (under construction)
