//! `train-native`: the GenLLaVA command line. Chat with, generate and edit
//! images with, benchmark and train the model natively (CPU by default).

mod bench;
mod bench_kernels;
mod bench_train;
mod chat;
mod device;
mod diffuse;
mod export_web;
mod files;
mod imagine;
mod pretrain;
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
    /// Draw an image from a description with a GenLLaVA model.
    Generate(imagine::GenerateArgs),
    /// Edit an image as an instruction says with a GenLLaVA model.
    Edit(imagine::EditArgs),
    /// Stable Diffusion text-to-image from given embeddings and noise (safetensors files).
    Diffuse(diffuse::DiffuseArgs),
    /// Stable Diffusion text-to-image from a prompt with the folder's CLIP text encoder.
    GenerateSd(diffuse::GenerateSdArgs),
    /// Time the decoder, UNet and VAE (optionally against PyTorch); prints a markdown table.
    Bench(bench::BenchArgs),
    /// Instruction-tune a model (single stage), resumably; see `train --help`.
    Train(train::TrainArgs),
    /// Score a model on the held-out shapes world (the evaluation a training run ends with).
    Eval(train::EvalArgs),
    /// Write the shapes world (understanding, generation, editing, text) to a folder.
    Data(pretrain::data::DataArgs),
    /// Pre-train the Stable Diffusion stand-in on the shapes world (diffusers folder).
    PretrainSd(pretrain::PretrainArgs),
    /// Score a diffusers folder's generations of held-out captions.
    EvalSd(pretrain::EvalArgs),
    /// Pre-train the small SigLIP vision tower on the shapes world (sigmoid image-text loss).
    PretrainVision(pretrain::vision::VisionArgs),
    /// Pre-train the small language model on the shapes world's text (transformers MistralForCausalLM folder).
    PretrainLlm(pretrain::llm::LlmArgs),
    /// Write a checkpoint in the web format: per-submodule shards (q8/q4 matmul weights), manifest.json.
    ExportWeb(export_web::ExportWebArgs),
}

fn main() {
    // A bug must still end in one line, not a trace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("internal error (please report): {info}");
    }));
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Chat(args)) => chat::run(args),
        Some(Command::Generate(args)) => imagine::run_generate(args),
        Some(Command::Edit(args)) => imagine::run_edit(args),
        Some(Command::Diffuse(args)) => diffuse::run(args),
        Some(Command::GenerateSd(args)) => diffuse::run_generate(args),
        Some(Command::Bench(args)) => bench::run(args),
        Some(Command::Train(args)) => train::run(args),
        // The main job: single-stage instruction tuning with the default config.
        None => train::run(train::TrainArgs {
            config: train::ConfigArgs::default(),
            resume: false,
            print_config: false,
            device: device::DeviceArg::Cpu,
            devices: None,
            understanding_only: false,
        }),
        Some(Command::Eval(args)) => train::run_eval(args),
        Some(Command::Data(args)) => pretrain::data::run(args),
        Some(Command::PretrainSd(args)) => pretrain::folder::run_pretrain(args),
        Some(Command::EvalSd(args)) => pretrain::eval::run(args),
        Some(Command::PretrainVision(args)) => pretrain::vision::run(args),
        Some(Command::PretrainLlm(args)) => pretrain::llm::run(args),
        Some(Command::ExportWeb(args)) => export_web::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
