//! LoRA on the language model: PEFT adapter folders read and written, and the
//! adapters attached to a [`Llama`] through Burn's own reparameterization.
//!
//! An adapter of rank `r` on a projection with Burn weight `W` (`[in, out]`)
//! makes its effective weight `W + scale · A·B`, `A` `[in, r]`, `B` `[r, out]`,
//! `scale = alpha / r` (or `alpha / √r` with rsLoRA). Burn's [`LoraAdapter`]
//! holds `A`, `B` and `scale` on the weight's [`Param`]: `Linear::forward`
//! then reads the effective weight, gradients reach `A` and `B`, and
//! [`Module::materialize`] folds them into `W`.
//!
//! On disk this is PEFT's layout (`adapter_config.json`,
//! `adapter_model.safetensors`): `base_model.model.<module>.lora_A.weight`
//! `[r, in]` and `…lora_B.weight` `[out, r]`, torch's `[out, in]` orientation.
//! [`LlavaCheckpoint::load`](crate::llava::LlavaCheckpoint::load) merges an
//! adapter found beside the weights, so a LoRA checkpoint loads like any other.

use crate::checkpoint::{self, FileSource};
use crate::error::{Error, Result};
use crate::export::NamedTensor;
use crate::llama::Llama;
use crate::weights::{VarBuilder, WeightMap};
use burn::module::{LoraAdapter, Module, ModuleVisitor, Param, ParamId, Reparameterizer};
use burn::tensor::{Device, Distribution, Tensor};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The projections of a decoder layer an adapter may sit on (PEFT module names).
pub const TARGETS: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// Where the language model's layers live in PEFT keys of a LLaVA
/// (`base_model.model.` + the transformers module path).
pub const PEFT_PREFIX: &str = "base_model.model.model.language_model.";

/// The adapter file names of a PEFT folder.
pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_STEM: &str = "adapter_model";

/// `adapter_config.json`: the fields this crate reads; anything it cannot honour is refused.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdapterConfig {
    #[serde(default = "lora_type")]
    pub peft_type: String,
    /// Rank.
    pub r: usize,
    pub lora_alpha: f64,
    /// `alpha / √r` instead of `alpha / r`.
    #[serde(default)]
    pub use_rslora: bool,
    /// The modules adapters were put on: PEFT's list of names or a regex; kept
    /// for PEFT. (Loading follows the adapter's tensor names.)
    #[serde(default)]
    pub target_modules: serde_json::Value,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    #[serde(default)]
    pub use_dora: bool,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default = "bias_none")]
    pub bias: String,
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
}

fn lora_type() -> String {
    "LORA".into()
}

fn bias_none() -> String {
    "none".into()
}

impl AdapterConfig {
    /// An adapter of rank `r` and `alpha` on `targets` of the language model's layers.
    pub fn new(r: usize, lora_alpha: f64, targets: &[String]) -> Self {
        let pattern = format!(r".*language_model.*\.({})", targets.join("|"));
        Self {
            peft_type: lora_type(),
            r,
            lora_alpha,
            use_rslora: false,
            target_modules: pattern.into(),
            base_model_name_or_path: None,
            use_dora: false,
            fan_in_fan_out: false,
            bias: bias_none(),
            rank_pattern: BTreeMap::new(),
            alpha_pattern: BTreeMap::new(),
            modules_to_save: None,
        }
    }

    /// Parse and check `adapter_config.json` (`name` is used in errors).
    pub fn from_json(name: &str, bytes: &[u8]) -> Result<Self> {
        let cfg: Self = serde_json::from_slice(bytes).map_err(|e| Error::config(name, e.to_string()))?;
        let refuse = |why: String| Err(Error::config(name, why));
        if cfg.peft_type != "LORA" {
            return refuse(format!("peft_type `{}`: only LORA adapters are supported", cfg.peft_type));
        }
        if cfg.r == 0 {
            return refuse("r must be at least 1".into());
        }
        if cfg.use_dora {
            return refuse("use_dora: DoRA adapters are not supported".into());
        }
        if cfg.fan_in_fan_out {
            return refuse("fan_in_fan_out: only torch Linear ([out, in]) adapters are supported".into());
        }
        if cfg.bias != "none" {
            return refuse(format!("bias `{}`: only bias \"none\" is supported", cfg.bias));
        }
        if !cfg.rank_pattern.is_empty() || !cfg.alpha_pattern.is_empty() {
            return refuse("rank_pattern / alpha_pattern: per-module ranks are not supported".into());
        }
        if cfg.modules_to_save.as_ref().is_some_and(|m| !m.is_empty()) {
            return refuse("modules_to_save: fully trained modules belong in model.safetensors".into());
        }
        Ok(cfg)
    }

    /// The factor the product `A·B` is scaled by.
    pub fn scale(&self) -> f64 {
        if self.use_rslora { self.lora_alpha / (self.r as f64).sqrt() } else { self.lora_alpha / self.r as f64 }
    }
}

/// The factors of an adapter read from a file: `(A [in, r], B [r, out])` (Burn's
/// orientation) by module path under the language model (`layers.0.self_attn.q_proj`).
pub type Factors = BTreeMap<String, (Tensor<2>, Tensor<2>)>;

/// Attaches adapters to the targeted projection weights while a module is mapped:
/// loaded factors when given, else fresh ones (`A` as PEFT draws it, uniform in
/// ±1/√in; `B` zero, so a fresh adapter starts as the identity).
struct Attach<'a> {
    cfg: &'a AdapterConfig,
    targets: &'a [String],
    loaded: Option<&'a mut Factors>,
    attached: &'a mut usize,
    error: &'a mut Option<Error>,
}

impl Reparameterizer for Attach<'_> {
    type Reparam = LoraAdapter;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<LoraAdapter>) {
        let Some(module) = path.strip_suffix(".weight") else { return (param, None) };
        let leaf = module.rsplit('.').next().unwrap_or(module);
        if D != 2 || !module.starts_with("layers.") || !self.targets.iter().any(|t| t == leaf) {
            return (param, None);
        }
        let shape = param.shape();
        let (d_in, d_out) = (shape[0], shape[1]);
        let device = param.device();
        let (a, b) = match self.loaded.as_deref_mut() {
            Some(loaded) => match loaded.remove(module) {
                Some((a, b)) if a.dims() == [d_in, self.cfg.r] && b.dims() == [self.cfg.r, d_out] => (a, b),
                Some((a, b)) => {
                    self.error.get_or_insert(Error::ShapeMismatch {
                        name: format!("{PEFT_PREFIX}{module}.lora_A/lora_B"),
                        expected: vec![d_in, self.cfg.r, d_out],
                        found: vec![a.dims()[0], a.dims()[1], b.dims()[1]],
                    });
                    return (param, None);
                }
                // Not every target needs an adapter (PEFT may have skipped a layer).
                None => return (param, None),
            },
            None => {
                let bound = 1.0 / (d_in as f64).sqrt();
                let a = Tensor::<2>::random([d_in, self.cfg.r], Distribution::Uniform(-bound, bound), &device);
                (a, Tensor::<2>::zeros([self.cfg.r, d_out], &device))
            }
        };
        *self.attached += 1;
        let adapter = LoraAdapter {
            a: Param::initialized(ParamId::new(), a),
            b: Param::initialized(ParamId::new(), b),
            scale: self.cfg.scale(),
        };
        (param, Some(adapter))
    }
}

/// Attach adapters of `cfg` to the language model: `loaded` factors (all must
/// find their projection), or fresh ones on every target in `targets`.
/// Returns the model and the number of adapters attached.
pub fn attach(
    llama: Llama,
    cfg: &AdapterConfig,
    targets: &[String],
    loaded: Option<Factors>,
) -> Result<(Llama, usize)> {
    for t in targets {
        if !TARGETS.contains(&t.as_str()) {
            return Err(Error::config("lora targets", format!("`{t}` is not one of {TARGETS:?}")));
        }
    }
    let (mut loaded, mut attached, mut error) = (loaded, 0, None);
    let attach = Attach { cfg, targets, loaded: loaded.as_mut(), attached: &mut attached, error: &mut error };
    let llama = llama.apply_reparameterization(attach);
    if let Some(e) = error {
        return Err(e);
    }
    if let Some(left) = loaded.filter(|l| !l.is_empty()) {
        let names: Vec<String> = left.keys().map(|k| format!("{PEFT_PREFIX}{k}")).collect();
        return Err(Error::config(
            "adapter_model.safetensors",
            format!("adapters on modules the language model does not adapt: {}", names.join(", ")),
        ));
    }
    Ok((llama, attached))
}

/// Read the factors of an adapter: `weights` holds PEFT's tensors; every one must
/// be a `lora_A`/`lora_B` pair on a projection of the language model's layers
/// (either LLaVA key layout), of rank `cfg.r`.
pub fn read_factors(weights: WeightMap, cfg: &AdapterConfig, device: &Device) -> Result<Factors> {
    let source = weights.source.clone();
    let mut modules: BTreeMap<String, [Option<String>; 2]> = BTreeMap::new();
    for name in weights.names() {
        let module = name
            .strip_prefix("base_model.model.")
            .and_then(|rest| {
                ["model.language_model.", "language_model.model.", "model."].iter().find_map(|p| rest.strip_prefix(p))
            })
            .filter(|m| m.starts_with("layers."));
        let (module, slot) = match module {
            Some(m) if m.ends_with(".lora_A.weight") => (m.trim_end_matches(".lora_A.weight"), 0),
            Some(m) if m.ends_with(".lora_B.weight") => (m.trim_end_matches(".lora_B.weight"), 1),
            _ => {
                return Err(Error::config(
                    &source,
                    format!("tensor `{name}` is not a lora_A/lora_B factor of a language-model layer"),
                ));
            }
        };
        modules.entry(module.to_string()).or_default()[slot] = Some(name.clone());
    }
    let shape = |n: &str| -> Result<[usize; 2]> {
        match weights.shape(n) {
            Some(&[x, y]) => Ok([x, y]),
            other => Err(Error::ShapeMismatch {
                name: n.into(),
                expected: vec![cfg.r, 0],
                found: other.map(<[usize]>::to_vec).unwrap_or_default(),
            }),
        }
    };
    let mut pairs = Vec::new();
    for (module, [a, b]) in modules {
        let (Some(a), Some(b)) = (a, b) else {
            return Err(Error::config(&source, format!("`{module}` has only one of lora_A and lora_B")));
        };
        let (sa, sb) = (shape(&a)?, shape(&b)?);
        pairs.push((module, a, sa, b, sb));
    }
    let vb = VarBuilder::from_map(Arc::new(weights), device);
    let mut factors = Factors::new();
    for (module, a, sa, b, sb) in pairs {
        if sa[0] != cfg.r {
            return Err(Error::ShapeMismatch { name: a, expected: vec![cfg.r, sa[1]], found: sa.to_vec() });
        }
        if sb[1] != cfg.r {
            return Err(Error::ShapeMismatch { name: b, expected: vec![sb[0], cfg.r], found: sb.to_vec() });
        }
        // PEFT stores torch's [out, in] orientation: A is [r, in], B is [out, r].
        let ta: Tensor<2> = vb.get(&a, sa)?;
        let tb: Tensor<2> = vb.get(&b, sb)?;
        factors.insert(module, (ta.transpose(), tb.transpose()));
    }
    Ok(factors)
}

/// The adapter of a folder, if it has one: its config and factors.
pub fn load_folder(src: &dyn FileSource, device: &Device) -> Result<Option<(AdapterConfig, Factors)>> {
    let Some(bytes) = src.read(CONFIG_FILE)? else { return Ok(None) };
    let cfg = AdapterConfig::from_json(&src.describe(CONFIG_FILE), &bytes)?;
    let weights = checkpoint::load_weights(src, WEIGHTS_STEM)?;
    let factors = read_factors(weights, &cfg, device)?;
    Ok(Some((cfg, factors)))
}

/// Merge the adapter of a folder (if any) into `llama`: the effective weights
/// become plain weights. Returns whether there was one.
pub fn merge_folder(src: &dyn FileSource, llama: &mut Llama, device: &Device) -> Result<bool> {
    let Some((cfg, factors)) = load_folder(src, device)? else { return Ok(false) };
    let targets: Vec<String> = TARGETS.iter().map(|t| t.to_string()).collect();
    let (adapted, n) = attach(llama.clone(), &cfg, &targets, Some(factors))?;
    log::info!("merged {n} LoRA adapters of rank {} from {}", cfg.r, src.describe(CONFIG_FILE));
    *llama = adapted.materialize();
    Ok(true)
}

/// How many adapters sit on `llama` (no tensor is read).
pub fn count(llama: &Llama) -> usize {
    struct Count {
        path: Vec<String>,
        n: usize,
    }
    impl ModuleVisitor for Count {
        fn enter_module(&mut self, name: &str, _kind: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _kind: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<D>>) {
            // Each adapter is visited as `<module>.weight.lora.{a,b}`: count its `a`.
            if self.path.ends_with(&["lora".to_string(), "a".to_string()]) {
                self.n += 1;
            }
        }
    }
    let mut c = Count { path: Vec::new(), n: 0 };
    llama.visit(&mut c);
    c.n
}

/// The adapters of `llama` as PEFT tensors (`base_model.model.model.language_model.…`,
/// `lora_A.weight` `[r, in]`, `lora_B.weight` `[out, r]`), f32.
pub fn adapter_tensors(llama: &Llama) -> Vec<NamedTensor> {
    struct Collect {
        path: Vec<String>,
        out: Vec<NamedTensor>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _kind: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _kind: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            // Inside an adapter the path ends `<module>.weight.lora.{a,b}`.
            let n = self.path.len();
            if D != 2 || n < 4 || self.path[n - 2] != "lora" || self.path[n - 3] != "weight" {
                return;
            }
            let module = self.path[..n - 3].join(".");
            let which = if self.path[n - 1] == "a" { "lora_A" } else { "lora_B" };
            let t = param.val().transpose();
            let shape = t.dims().to_vec();
            let data = t.into_data().try_into_vec_as::<f32>().unwrap_or_default();
            self.out.push(NamedTensor { name: format!("{PEFT_PREFIX}{module}.{which}.weight"), shape, data });
        }
    }
    let mut c = Collect { path: Vec::new(), out: Vec::new() };
    llama.visit(&mut c);
    c.out
}
