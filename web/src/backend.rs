//! Choosing the compute device: WebGPU when the browser has it, else the CPU.

use burn::tensor::Device;

/// Which backend the engine runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Burn's wgpu backend on the browser's WebGPU.
    WebGpu,
    /// Burn's CPU backend (flex), inside the wasm module.
    Cpu,
}

impl Backend {
    /// The name the page shows and tests check: `webgpu` or `cpu`.
    pub fn id(self) -> &'static str {
        match self {
            Backend::WebGpu => "webgpu",
            Backend::Cpu => "cpu",
        }
    }
}

/// The device to use, its backend, and why the CPU was chosen if WebGPU was asked for.
pub async fn pick(prefer_webgpu: bool) -> (Device, Backend, String) {
    if !prefer_webgpu {
        return (Device::flex(), Backend::Cpu, "WebGPU was not requested".into());
    }
    match webgpu().await {
        Ok(device) => (device, Backend::WebGpu, String::new()),
        Err(why) => {
            log::warn!("{why}; running on the CPU");
            (Device::flex(), Backend::Cpu, why)
        }
    }
}

#[cfg(target_arch = "wasm32")]
thread_local! {
    /// Burn registers the wgpu runtime once per thread: a second engine reuses it.
    static WEBGPU: std::cell::RefCell<Option<Device>> = const { std::cell::RefCell::new(None) };
}

/// A WebGPU device, or a plain sentence saying why there is none.
#[cfg(target_arch = "wasm32")]
async fn webgpu() -> Result<Device, String> {
    use js_sys::{Function, Promise, Reflect};
    use wasm_bindgen::{JsCast, JsValue};

    if let Some(device) = WEBGPU.with(|d| d.borrow().clone()) {
        return Ok(device);
    }
    let get = |obj: &JsValue, key: &str| Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED);
    let navigator = get(&js_sys::global(), "navigator");
    let gpu = if navigator.is_object() { get(&navigator, "gpu") } else { JsValue::UNDEFINED };
    if !gpu.is_object() {
        return Err("this browser has no WebGPU (navigator.gpu is missing)".into());
    }
    let request = get(&gpu, "requestAdapter")
        .dyn_into::<Function>()
        .map_err(|_| "this browser's WebGPU has no requestAdapter".to_string())?;
    let promise = request
        .call0(&gpu)
        .ok()
        .and_then(|p| p.dyn_into::<Promise>().ok())
        .ok_or_else(|| "WebGPU requestAdapter failed".to_string())?;
    let adapter = wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map_err(|e| format!("WebGPU requestAdapter failed: {}", crate::js::describe(&e)))?;
    if !adapter.is_object() {
        return Err("WebGPU is present but offers no adapter (GPU blocked or unsupported)".into());
    }
    // wgpu names a browser's adapter by `info.description` alone, which chromium leaves empty;
    // vendor and architecture (`google`, `swiftshader`) tell the kernels which product to run.
    let info = get(&adapter, "info");
    if info.is_object() {
        let words: Vec<String> = ["vendor", "architecture", "device", "description"]
            .iter()
            .filter_map(|k| get(&info, k).as_string())
            .filter(|w| !w.trim().is_empty())
            .collect();
        genllava::kernels::set_adapter_description(&words.join(" "));
    }
    let device = Device::wgpu_options().init_async().await.map_err(|e| format!("WebGPU device setup failed: {e:?}"))?;
    WEBGPU.with(|d| *d.borrow_mut() = Some(device.clone()));
    Ok(device)
}

/// Natively this crate is built and tested without WebGPU.
#[cfg(not(target_arch = "wasm32"))]
async fn webgpu() -> Result<Device, String> {
    Err("WebGPU exists only in the browser build".into())
}

/// Print Rust panics to the console instead of a bare `unreachable`.
pub fn install_panic_hook() {
    #[cfg(target_arch = "wasm32")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| crate::js::console_error(&format!("genllava-web panicked: {info}"))));
        });
    }
}

/// In the browser (wasm-bindgen-test in headless chromium): the WebGPU path is taken, not
/// assumed, and Burn's kernels on it agree with the CPU backend.
#[cfg(all(test, target_arch = "wasm32"))]
mod browser_tests {
    use super::*;
    use burn::tensor::{Tensor, TensorData};
    use wasm_bindgen_test::wasm_bindgen_test;

    wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

    fn values(n: usize, k: u32) -> Vec<f32> {
        (0..n).map(|i| ((i as u32 * 2654435761u32.wrapping_add(k)) % 1000) as f32 / 500.0 - 1.0).collect()
    }

    #[wasm_bindgen_test]
    async fn picks_webgpu_and_matches_the_cpu() {
        let (device, backend, why) = pick(true).await;
        assert_eq!(backend, Backend::WebGpu, "WebGPU was not used: {why}");
        let (m, k, n) = (33, 70, 17);
        let run = |device: &Device| {
            let a = Tensor::<2>::from_data(TensorData::new(values(m * k, 1), [m, k]), device);
            let b = Tensor::<2>::from_data(TensorData::new(values(k * n, 2), [k, n]), device);
            burn::tensor::activation::softmax(a.matmul(b).div_scalar(4.0), 1)
        };
        let gpu: Vec<f32> = run(&device).into_data_async().await.expect("read back").try_to_vec::<f32>().expect("f32");
        let cpu: Vec<f32> = run(&Device::flex()).into_data().try_to_vec::<f32>().expect("f32");
        let worst = gpu.iter().zip(&cpu).map(|(g, c)| (g - c).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-5, "WebGPU and CPU differ by {worst}");
    }

    #[wasm_bindgen_test]
    async fn the_cpu_path_is_labelled() {
        let (_, backend, why) = pick(false).await;
        assert_eq!(backend, Backend::Cpu);
        assert_eq!(backend.id(), "cpu");
        assert!(!why.is_empty());
    }
}
