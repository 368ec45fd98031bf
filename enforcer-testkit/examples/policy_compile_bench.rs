//! Times parsing + validating and compiling a synthetic policy (default 100,000 rules).
//! `cargo run --release -p enforcer-testkit --example policy_compile_bench [RULES]`

fn main() {
    let rules = match std::env::args().nth(1) {
        Some(n) => n
            .parse()
            .unwrap_or_else(|_| panic!("RULES must be a number, got `{n}`")),
        None => 100_000,
    };
    let (load, compile) = enforcer_testkit::synthetic::time_compile(rules);
    println!(
        "policy compile: {rules} rules: parse+validate {:.1} ms, compile {:.1} ms, total {:.1} ms",
        load.as_secs_f64() * 1e3,
        compile.as_secs_f64() * 1e3,
        (load + compile).as_secs_f64() * 1e3
    );
}
