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
