//! `generate` and `edit`: the whole GenLLaVA path (LLM → head → diffusion).

use crate::device::DeviceArg;
use crate::diffuse::SchedulerArg;
use crate::files;
use anyhow::Context;
use genllava::image::RgbImage;
use genllava::pipeline::{GenLlava, ImageOptions};
use genllava::sd::pixels::encode_png;
use genllava::shapes::{self, Scene};
use std::path::{Path, PathBuf};

/// Where the trained default model ships.
pub fn default_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/genllava-shapes")
}

/// The `--model` folder of `chat`, `generate` and `edit`: the one given, else the shipped
/// default, which must be there.
pub fn model_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    match given {
        Some(dir) => Ok(dir.to_path_buf()),
        None => {
            let dir = default_model();
            anyhow::ensure!(dir.is_dir(), "no --model given and no default model at {}", dir.display());
            Ok(dir)
        }
    }
}

/// Options shared by `generate` and `edit`.
#[derive(clap::Args)]
pub struct ImageArgs {
    /// GenLLaVA folder (LLaVA files + genllava.json + gen_head/ + sd/); default: the shipped model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Where to write the PNG.
    #[arg(long)]
    pub out: PathBuf,
    /// Denoising steps (default: the model's).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Classifier-free guidance (default: the model's).
    #[arg(long)]
    pub guidance: Option<f32>,
    /// Scheduler (default: the model's).
    #[arg(long, value_enum)]
    pub scheduler: Option<SchedulerArg>,
    /// Seed of the initial noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compute device.
    #[arg(long, value_enum, default_value_t)]
    pub device: DeviceArg,
    /// Also print what the shapes world's exact evaluator reads in the picture and whether
    /// it is what the prompt asks for (for shapes-world models).
    #[arg(long)]
    pub check: bool,
}

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// What to draw.
    #[arg(long)]
    pub prompt: String,
    #[command(flatten)]
    pub common: ImageArgs,
}

#[derive(clap::Args)]
pub struct EditArgs {
    /// The image to edit (PNG or JPEG).
    #[arg(long)]
    pub image: PathBuf,
    /// The instruction ("make the circle blue").
    #[arg(long)]
    pub prompt: String,
    /// img2img strength, for a model that edits by img2img (default: the model's).
    #[arg(long, conflicts_with = "image_guidance")]
    pub strength: Option<f32>,
    /// InstructPix2Pix image guidance, for a model that edits that way (default: the model's).
    #[arg(long)]
    pub image_guidance: Option<f32>,
    #[command(flatten)]
    pub common: ImageArgs,
}

fn load(args: &ImageArgs) -> anyhow::Result<(GenLlava, ImageOptions)> {
    let dir = model_dir(args.model.as_deref())?;
    let device = args.device.device()?;
    let model = GenLlava::load(files::open_model(&dir, &device)?.as_ref(), &device)?;
    let d = &model.config.diffusion;
    let scheduler = match args.scheduler {
        Some(s) => s.into(),
        None => genllava::scheduler::SchedulerKind::from_name(&d.scheduler)?,
    };
    let options = ImageOptions {
        steps: args.steps.unwrap_or(d.steps),
        guidance: args.guidance.unwrap_or(d.guidance),
        scheduler,
        seed: args.seed,
        edit: None,
    };
    Ok((model, options))
}

fn save(image: &RgbImage, out: &Path) -> anyhow::Result<()> {
    files::write_atomic(out, &encode_png(image)?)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

fn progress(i: usize, n: usize) {
    eprint!("\rstep {i}/{n}");
    if i == n {
        eprintln!();
    }
}

/// `--check`: the evaluator's reading of `image` and its verdict against `want` (the
/// scene the prompt asks for, or why there is none).
fn check(image: &RgbImage, want: genllava::Result<Scene>) {
    match (shapes::parse_image(&image.data, image.width, image.height), want) {
        (Err(e), _) => println!("evaluator: no scene in the picture ({e})"),
        (Ok(got), Err(e)) => println!("evaluator reads: \"{}\" (nothing to compare with: {e})", shapes::caption(&got)),
        (Ok(got), Ok(want)) => {
            let verdict = if shapes::SceneMatch::of(&got, &want).exact() { "exact" } else { "differs" };
            println!(
                "evaluator reads: \"{}\"; wanted: \"{}\": {verdict}",
                shapes::caption(&got),
                shapes::caption(&want)
            );
        }
    }
}

/// `train-native generate …`.
pub fn run_generate(args: GenerateArgs) -> anyhow::Result<()> {
    let (model, options) = load(&args.common)?;
    let image = model.generate(&args.prompt, &options, &mut progress)?;
    save(&image, &args.common.out)?;
    if args.common.check {
        check(&image, shapes::parse_caption(&args.prompt));
    }
    Ok(())
}

/// `train-native edit …`.
pub fn run_edit(args: EditArgs) -> anyhow::Result<()> {
    let (model, mut options) = load(&args.common)?;
    let source = RgbImage::decode(&files::read(&args.image)?).with_context(|| args.image.display().to_string())?;
    let mode = model.config.diffusion.edit;
    options.edit = Some(mode.with_setting(args.strength, args.image_guidance, ("--strength", "--image-guidance"))?);
    let prompt = model.edit_prompt(&args.prompt);
    let answer = model.edit_answer(&prompt, &source)?;
    if model.config.describe_edits {
        println!("description: {}", model.answer_text(&answer)?);
    }
    let image = model.finish_drawing(model.start_edit_answer(&prompt, &answer, &source, &options)?, &mut progress)?;
    save(&image, &args.common.out)?;
    if args.common.check {
        check(&image, shapes::edit_target_of_image(&source.data, source.width, source.height, &args.prompt));
    }
    Ok(())
}
