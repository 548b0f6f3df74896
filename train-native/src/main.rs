//! `train-native`: the GenLLaVA command line. Chat with, generate and edit
//! images with, benchmark and train the model natively (CPU by default).

mod chat;
mod device;
mod files;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "train-native", version, about = "GenLLaVA: understand, generate and edit images; train natively")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Answer a prompt (optionally about an image), streaming the text.
    Chat(chat::ChatArgs),
    /// Instruction-tune a model (single stage), resumably; see `train --help`.
    Train(train::TrainArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Chat(args)) => chat::run(args),
        Some(Command::Train(args)) => train::run(args),
        None => chat::run_default(),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
