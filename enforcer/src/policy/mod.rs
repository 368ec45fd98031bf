//! The policy language: parse TOML, validate, compile to kernel map entries, evaluate.
