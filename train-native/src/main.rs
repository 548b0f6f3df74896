//! `train-native`: the GenLLaVA command line. Chat with, generate and edit
//! images with, benchmark and train the model natively (CPU by default).

mod chat;
mod device;
mod files;
mod pretrain;

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
    /// Write the shapes world (understanding, generation, editing, text) to a folder.
    Data(pretrain::data::DataArgs),
    /// Pre-train the Stable Diffusion stand-in on the shapes world (diffusers folder).
    PretrainSd(pretrain::PretrainArgs),
    /// Score a diffusers folder's generations of held-out captions.
    EvalSd(pretrain::EvalArgs),
}

fn main() {
    // A bug must still end in one line, not a trace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("internal error (please report): {info}");
    }));
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Chat(args)) => chat::run(args),
        Some(Command::Data(args)) => pretrain::data::run(args),
        Some(Command::PretrainSd(args)) => pretrain::folder::run_pretrain(args),
        Some(Command::EvalSd(args)) => pretrain::eval::run(args),
        None => chat::run_default(),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
