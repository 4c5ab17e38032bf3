//! ring (under construction)
