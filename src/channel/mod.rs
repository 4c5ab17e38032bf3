//! channel (under construction)
