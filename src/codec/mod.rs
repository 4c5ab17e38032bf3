//! codec (under construction)
