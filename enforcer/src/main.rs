fn main() -> std::process::ExitCode {
    let cli = enforcer::cli::parse();
    match enforcer::cmd::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("enforcer: error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
