use clap::Parser;

use blockhost::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            init_tracing(&args.log_level);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    tracing::error!("cannot start the async runtime: {err}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            match runtime.block_on(blockhost::run::run(args)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!("blockhost stopped: {err:#}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}

/// Our own lines at the chosen level; wasmtime and cranelift only when they warn.
fn init_tracing(level: &str) {
    let level = if level == "fatal" { "error" } else { level };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("warn,blockhost={level}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
