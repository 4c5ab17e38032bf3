//! Passing handles to child processes (under construction).
