//! The optimizer side: AdamW from burn-optim, the learning-rate schedule
//! (linear warmup, then cosine to zero) and global gradient-norm clipping.
//!
//! Burn's own `GradientClippingConfig::Norm` clips every parameter tensor by its
//! own norm; the paper (through Prismatic and HF) clips the norm of all
//! gradients together (`torch.nn.utils.clip_grad_norm_`), so that is done here
//! before the step and Burn's per-tensor clipping is left off.

use super::config::TrainConfig;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;

/// AdamW with the run's hyper-parameters (no per-tensor clipping, see module docs).
pub fn adamw(cfg: &TrainConfig) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_beta_1(cfg.beta1 as f32)
        .with_beta_2(cfg.beta2 as f32)
        .with_epsilon(cfg.eps as f32)
        .with_weight_decay(cfg.weight_decay as f32)
        .init()
}

/// Learning rate for optimizer step `step` (0-based) of `total`: linear warmup over
/// `ceil(warmup_ratio · total)` steps from `peak / warmup` up to `peak`, then a cosine from
/// `peak` down to 0 at the last step (HF's `get_cosine_schedule_with_warmup`, evaluated
/// at the step being taken plus one during warmup so that the first step does not have lr 0).
pub fn lr_at(step: usize, total: usize, warmup_ratio: f64, peak: f64) -> f64 {
    let warmup = (warmup_ratio * total as f64).ceil() as usize;
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let decay_steps = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f64 / decay_steps as f64).min(1.0);
    peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// The L2 norm of all gradients of `module` together.
pub fn grad_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    struct Norm<'a> {
        grads: &'a GradientsParams,
        sum: f64,
    }
    impl ModuleVisitor for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                self.sum += f64::from(g.square().sum().into_scalar::<f32>());
            }
        }
    }
    let mut v = Norm { grads, sum: 0.0 };
    module.visit(&mut v);
    v.sum.sqrt()
}

/// Multiply every gradient of `module` by `factor`.
pub fn scale_grads<M: Module>(module: &M, grads: GradientsParams, factor: f64) -> GradientsParams {
    struct Scale {
        grads: GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads.register::<D>(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    let mut v = Scale { grads, factor };
    module.visit(&mut v);
    v.grads
}

/// Clip the gradients to a global norm of at most `max_norm` (no-op when 0).
/// Returns the gradients and their norm before clipping.
pub fn clip_global<M: Module>(module: &M, grads: GradientsParams, max_norm: f64) -> (GradientsParams, f64) {
    let norm = grad_norm(module, &grads);
    if max_norm > 0.0 && norm > max_norm {
        // PyTorch: clip_coef = max_norm / (total_norm + 1e-6), applied when < 1.
        let coef = max_norm / (norm + 1e-6);
        return (scale_grads(module, grads, coef), norm);
    }
    (grads, norm)
}

/// Move the gradients of `part`'s parameters out of `grads` into their own set, so that
/// the optimizer can step that part at another learning rate (parameters without a
/// gradient are left as they are by a step).
pub fn take_grads<M: Module>(part: &M, grads: &mut GradientsParams) -> GradientsParams {
    struct Take<'a> {
        from: &'a mut GradientsParams,
        into: GradientsParams,
    }
    impl ModuleVisitor for Take<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.from.remove::<D>(param.id) {
                self.into.register::<D>(param.id, g);
            }
        }
    }
    let mut v = Take { from: grads, into: GradientsParams::new() };
    part.visit(&mut v);
    v.into
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        // 100 steps, 3 % warmup: 3 warmup steps.
        let lr = |s| lr_at(s, 100, 0.03, 1.0);
        assert!((lr(0) - 1.0 / 3.0).abs() < 1e-12);
        assert!((lr(2) - 1.0).abs() < 1e-12);
        assert!((lr(3) - 1.0).abs() < 1e-12);
        // Halfway through the decay the cosine is at one half.
        let mid = 3 + 97 / 2;
        assert!((lr_at(50, 103, 0.0, 1.0) - 0.5 * (1.0 + (std::f64::consts::PI * 50.0 / 103.0).cos())).abs() < 1e-12);
        assert!(lr(mid) > 0.45 && lr(mid) < 0.55, "{}", lr(mid));
        assert!(lr(99) < 1e-3 && lr(99) > 0.0);
        // Monotone after warmup.
        for s in 3..99 {
            assert!(lr(s + 1) <= lr(s));
        }
        // No warmup: starts at the peak.
        assert_eq!(lr_at(0, 10, 0.0, 2.0), 2.0);
    }

    #[test]
    fn global_clipping_matches_torch_semantics() {
        use burn::nn::LinearConfig;
        use burn::tensor::Device;
        let device = Device::flex().autodiff();
        let layer = LinearConfig::new(3, 2).init(&device);
        let x = Tensor::<2>::ones([4, 3], &device);
        let loss = layer.forward(x).sum().mul_scalar(10.0);
        let grads = GradientsParams::from_grads(loss.backward(), &layer);
        let before = grad_norm(&layer, &grads);
        // d/dW = 10·4 per entry (6 entries), d/db = 10·4 per entry (2 entries): norm 40·√8.
        assert!((before - 40.0 * 8f64.sqrt()).abs() < 1e-3, "{before}");
        let (clipped, reported) = clip_global(&layer, grads, 1.0);
        assert_eq!(reported, before);
        let after = grad_norm(&layer, &clipped);
        assert!((after - 1.0).abs() < 1e-4, "{after}");
    }

    /// Stepping a part at `k × lr` from its own gradients moves it as far as one AdamW
    /// step at that rate would, and leaves the rest where one step at `lr` puts it.
    #[test]
    fn a_part_steps_at_its_own_rate() {
        use burn::nn::{Linear, LinearConfig};
        use burn::tensor::Device;
        #[derive(Module, Debug)]
        struct Two {
            a: Linear,
            b: Linear,
        }
        let device = Device::flex().autodiff();
        let two = Two { a: LinearConfig::new(3, 3).init(&device), b: LinearConfig::new(3, 2).init(&device) };
        let x = Tensor::<2>::ones([4, 3], &device);
        let grads_of = |m: &Two| GradientsParams::from_grads(m.b.forward(m.a.forward(x.clone())).sum().backward(), m);
        let cfg = TrainConfig { weight_decay: 0.0, ..TrainConfig::default() };
        // Adam's first step moves every weight by lr (its sign, ε aside).
        let moved = |before: &Linear, after: &Linear| {
            let d = after.weight.val().sub(before.weight.val()).abs().into_data();
            d.try_to_vec::<f32>().unwrap().into_iter().fold(0f32, f32::max)
        };
        let mut grads = grads_of(&two);
        let b_grads = take_grads(&two.b, &mut grads);
        assert!(grads.get::<2>(two.b.weight.id).is_none() && b_grads.get::<2>(two.b.weight.id).is_some());
        let mut optim = adamw(&cfg);
        let stepped = optim.step(1e-2, two.clone(), grads);
        let stepped = optim.step(3e-2, stepped, b_grads);
        assert!((moved(&two.a, &stepped.a) - 1e-2).abs() < 1e-4, "{}", moved(&two.a, &stepped.a));
        assert!((moved(&two.b, &stepped.b) - 3e-2).abs() < 1e-4, "{}", moved(&two.b, &stepped.b));
    }
}
