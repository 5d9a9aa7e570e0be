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
            let text = error.to_string();
            let line = text.lines().next().unwrap_or("invalid usage");
            eprintln!("caffe-loss: {}", line.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    match cli::execute(args) {
        Ok(code) => code,
        Err(error) => {
            let text = error.to_string();
            // One line: a kernel compile log is summarised by its first line.
            eprintln!("caffe-loss: {}", text.lines().next().unwrap_or_default());
            if error.kind() == ErrorKind::Usage {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
