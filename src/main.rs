//! `caffe-loss`: runs, checks and times Caffe nets made of loss layers.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use caffe_loss::ErrorKind;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(error) => {
            use clap::error::ErrorKind as ClapKind;
            if matches!(
                error.kind(),
                ClapKind::DisplayHelp | ClapKind::DisplayVersion
            ) {
                print!("{error}");
                return ExitCode::SUCCESS;
            }
            eprintln!("caffe-loss: {}", usage_error_line(&error));
            return ExitCode::from(2);
        }
    };
    match cli::execute(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("caffe-loss: {}", one_line(&error.to_string()));
            if error.kind() == ErrorKind::Usage {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// Condenses a clap error to one line: its message with the lines that
/// clap puts under it (the missing argument, the possible values, a tip),
/// without the usage summary and the `--help` hint that follow.
fn usage_error_line(error: &clap::Error) -> String {
    if error.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return "a command is required: run, check, time or kernels (see caffe-loss --help)"
            .to_string();
    }
    let text = error.to_string();
    let mut parts: Vec<&str> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.trim_start_matches("error: "));
        }
    }
    if parts.is_empty() {
        "invalid usage (see caffe-loss --help)".to_string()
    } else {
        parts.join(" ")
    }
}

/// Folds a multi-line message (an NVRTC compile log) into one line: the
/// summary and the first diagnostic, joined by " | ".
fn one_line(text: &str) -> String {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default().trim_end_matches(':');
    match lines.next() {
        Some(detail) => format!("{first}: {detail}"),
        None => first.to_string(),
    }
}
