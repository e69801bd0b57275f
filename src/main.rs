//! The `barbican` command: `run` serves, `validate` checks a config file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use barbican::{Gateway, Source};
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "barbican", version, about = "A security-edge gateway")]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve until SIGTERM or SIGINT; SIGHUP reloads the config.
    Run {
        /// The config file; without it, the embedded default config is served.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A Unix socket on which this process hands its listening sockets to a successor.
        #[arg(long)]
        upgrade_socket: Option<PathBuf>,
        /// Take the listening sockets over from the process serving on `--upgrade-socket`.
        #[arg(long, requires = "upgrade_socket")]
        takeover: bool,
    },
    /// Check a config file: exit 0 when it would load, else print every error and exit 1.
    Validate { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `validate` answers with its errors and warnings: progress (rule sets compiled) stays out.
    let level = if matches!(cli.command, Command::Validate { .. }) { "warn" } else { "info" };
    init_logging(cli.log_format, level);
    match cli.command {
        Command::Validate { file } => validate(&file),
        Command::Run { config, upgrade_socket, takeover } => match run(config, upgrade_socket, takeover) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("barbican: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Logs to stderr, filtered by `RUST_LOG`, else at `level` and above.
fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(config: Option<PathBuf>, upgrade_socket: Option<PathBuf>, takeover: bool) -> anyhow::Result<()> {
    let source = match &config {
        Some(path) => Source::read(path).map_err(barbican::StartError::Config)?,
        None => {
            tracing::info!("no --config given: serving the embedded default (see README)");
            Source::embedded()
        }
    };
    let takeover = match (&upgrade_socket, takeover) {
        (Some(path), true) => Some(
            barbican::server::upgrade::Takeover::request(path)
                .with_context(|| format!("cannot take over from the process on {}", path.display()))?,
        ),
        _ => None,
    };
    let (inherited, confirm) = match takeover {
        Some(mut takeover) => (std::mem::take(&mut takeover.sockets), Some(takeover)),
        None => (Default::default(), None),
    };
    let gateway = Gateway::start_with(source, inherited).context("cannot start")?;
    if let Some(takeover) = confirm {
        takeover.confirm().context("cannot tell the previous process to drain")?;
        tracing::info!("took over the listening sockets; the previous process drains");
    }
    if let Some(path) = upgrade_socket {
        gateway.offer_upgrades(path).context("cannot open the upgrade socket")?;
    }
    gateway.run_until_signal().context("signal handling failed")?;
    Ok(())
}

fn validate(file: &std::path::Path) -> ExitCode {
    match barbican::config::check(file) {
        Ok(warnings) => {
            for warning in &warnings {
                eprintln!("warning: {warning}");
            }
            println!("{}: ok", file.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for error in &errors {
                eprintln!("{error}");
            }
            eprintln!("{}: {} error{}", file.display(), errors.len(), if errors.len() == 1 { "" } else { "s" });
            ExitCode::FAILURE
        }
    }
}
