//! Policy language tests: every field, every error message, precedence, includes, compiler
//! output, and property tests against a naive matcher.

mod chains;
mod compile_output;
mod conditions;
mod errors;
mod fields;
mod inputs;
mod naive;
mod precedence;
mod properties;

use super::{
    compile,
    eval::{evaluate, Decision, Request, Verdict},
    load_sources, CompiledPolicy, PolicySet, ResolvedHosts,
};

/// Load in-memory files, panicking with the rendered diagnostics if they are invalid.
fn load(files: &[(&str, &str)]) -> PolicySet {
    load_sources(files).unwrap_or_else(|d| panic!("policies should be valid, got:\n{d}"))
}

/// Load and compile, panicking with the diagnostics on any error.
fn compiled(files: &[(&str, &str)]) -> CompiledPolicy {
    compiled_with(files, &ResolvedHosts::new())
}

fn compiled_with(files: &[(&str, &str)], hosts: &ResolvedHosts) -> CompiledPolicy {
    let set = load(files);
    compile(&set, hosts).unwrap_or_else(|d| panic!("policies should compile, got:\n{d}"))
}

/// The error headlines (`file:line:col: message`) of an invalid load or compile.
fn errors(files: &[(&str, &str)]) -> Vec<String> {
    match load_sources(files) {
        Err(d) => d.headlines(),
        Ok(set) => match compile(&set, &ResolvedHosts::new()) {
            Err(d) => d.headlines(),
            Ok(_) => panic!("expected errors, but the policies are valid: {files:?}"),
        },
    }
}

/// One agent `a` in `a.toml` with `body` after the `[agent]` table.
fn agent(body: &str) -> String {
    format!("[agent]\nname = \"a\"\n{body}")
}

fn open_read(path: &str) -> Request {
    Request::Open {
        path: path.into(),
        read: true,
        write: false,
    }
}
fn open_write(path: &str) -> Request {
    Request::Open {
        path: path.into(),
        read: false,
        write: true,
    }
}
fn exec(path: &str) -> Request {
    Request::Exec { path: path.into() }
}

/// Evaluate for agent 1 and name the deciding rule by its text id ("" for rule 0).
fn decide(p: &CompiledPolicy, r: &Request) -> (Verdict, String) {
    let Decision { verdict, rule, .. } = evaluate(p, 1, r);
    (
        verdict,
        p.rule(rule).map_or(String::new(), |r| r.text_id.clone()),
    )
}
