//! Thin wrappers over the system calls the upper layers need. The only place, with
//! `region`, `sync` and `ring`, where `unsafe` may appear.
