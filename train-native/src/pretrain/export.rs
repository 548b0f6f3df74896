//! Round trip of the exporter (`genllava::export`) through core's loaders.

#[cfg(test)]
mod tests {
    use crate::pretrain::diffusion::{UnetSize, unet_config_json};
    use crate::pretrain::vae::{VaeSize, vae_config_json};
    use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
    use genllava::clip_text::{ClipTextConfig, ClipTextModel};
    use genllava::export::{named_tensors, safetensors_bytes};
    use genllava::sd::unet::{UNet2DConditionConfig, UNet2DConditionModel};
    use genllava::sd::vae::{AutoencoderKL, AutoencoderKLConfig};
    use genllava::weights::{VarBuilder, WeightMap};
    use std::sync::Arc;

    /// Export `module`, reload it with core's loader, and return the reloaded copy.
    fn round_trip<M: burn::module::Module, T>(
        module: &M,
        prefix: &str,
        load: impl FnOnce(&VarBuilder) -> genllava::Result<T>,
    ) -> T {
        let bytes = safetensors_bytes(&named_tensors(module, prefix), false);
        let map = Arc::new(WeightMap::from_safetensors("exported", bytes).expect("parse"));
        let out = load(&VarBuilder::from_map(map.clone(), &Device::flex())).expect("reload");
        assert!(map.unused().is_empty(), "unused: {:?}", map.unused());
        out
    }

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        a.sub(b).abs().max().into_data().try_into_vec_as::<f32>().expect("f32")[0]
    }

    #[test]
    fn exported_modules_reload_with_core_loaders_to_the_same_function() {
        let device = Device::flex();
        let vb = VarBuilder::init(0.2, &device);
        let tcfg = ClipTextConfig::from_json(
            r#"{"vocab_size": 11, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2,
                "num_attention_heads": 2, "max_position_embeddings": 6}"#,
        )
        .expect("text config");
        let text = ClipTextModel::load(&tcfg, &vb).expect("text");
        let back = round_trip(&text, "text_model.", |vb| ClipTextModel::load(&tcfg, &vb.pp("text_model")));
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 3, 5, 1, 1, 1], [1, 6]), &device);
        let ctx = text.forward(ids.clone()).expect("fwd");
        assert!(max_diff(ctx.clone(), back.forward(ids).expect("fwd")) < 1e-5);

        let size = VaeSize { channels: vec![8, 16], groups: 4, latent_channels: 4, attention: true };
        let vcfg = AutoencoderKLConfig::from_json(&vae_config_json(&size, 16, 1.0).to_string()).expect("vae config");
        let vae = AutoencoderKL::load(&vcfg, &vb).expect("vae");
        let back = round_trip(&vae, "", |vb| AutoencoderKL::load(&vcfg, vb));
        let x = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
        let (a, b) = (vae.encode(x.clone()).expect("enc").mean, back.encode(x).expect("enc").mean);
        assert!(max_diff(a.clone(), b) < 1e-4);
        assert!(max_diff(vae.decode(a.clone()).expect("dec"), back.decode(a).expect("dec")) < 1e-4);

        let size = UnetSize { channels: vec![8, 16], groups: 4, heads: 2, layers: 1 };
        let ucfg =
            UNet2DConditionConfig::from_json(&unet_config_json(&size, 4, 8, 8).to_string()).expect("unet config");
        let unet = UNet2DConditionModel::load(&ucfg, &vb).expect("unet");
        let back = round_trip(&unet, "", |vb| UNet2DConditionModel::load(&ucfg, vb));
        let z = Tensor::<4>::random([1, 4, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        let a = unet.forward_at(z.clone(), 300.0, ctx.clone()).expect("unet");
        let b = back.forward_at(z, 300.0, ctx).expect("unet");
        assert!(max_diff(a, b) < 1e-4);

        let hcfg = genllava::head::GenHeadConfig::tiny();
        let head = genllava::head::GenHead::load(&hcfg, &vb).expect("head");
        let back = round_trip(&head, "", |vb| genllava::head::GenHead::load(&hcfg, vb));
        let x = Tensor::<3>::random([2, hcfg.num_img_tokens, hcfg.d_llm], Distribution::Normal(0.0, 1.0), &device);
        assert!(max_diff(head.forward(x.clone()), back.forward(x)) < 1e-4);
    }

    #[test]
    fn half_precision_export_round_trips() {
        let t = genllava::export::NamedTensor {
            name: "w".into(),
            shape: vec![4],
            data: vec![1.0, -2.0, 0.333_333_34, 1e6],
        };
        let map = genllava::safetensors::parse("f16", safetensors_bytes(&[t], true)).expect("parse");
        assert_eq!(map["w"].dtype, genllava::safetensors::Dtype::F16);
        assert_eq!(map["w"].to_f32(), vec![1.0, -2.0, 0.333_251_95, f32::INFINITY]);
    }
}
