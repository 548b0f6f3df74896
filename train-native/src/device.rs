//! `--device cpu|wgpu|cuda`.

use burn::tensor::Device;

/// The compute device a command runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum DeviceArg {
    /// Burn's CPU backend (flex).
    #[default]
    Cpu,
    /// Native wgpu (Vulkan, Metal, DX12); build with `--features wgpu`.
    Wgpu,
    /// NVIDIA CUDA; build with `--features cuda`.
    Cuda,
}

impl DeviceArg {
    /// Create the device, or say which cargo feature is missing.
    pub fn device(self) -> anyhow::Result<Device> {
        match self {
            DeviceArg::Cpu => Ok(Device::flex()),
            DeviceArg::Wgpu => wgpu(),
            DeviceArg::Cuda => cuda(),
        }
    }
}

#[cfg(feature = "wgpu")]
fn wgpu() -> anyhow::Result<Device> {
    Device::wgpu_options().init().map_err(|e| anyhow::anyhow!("no wgpu adapter: {e:?}"))
}
#[cfg(not(feature = "wgpu"))]
fn wgpu() -> anyhow::Result<Device> {
    anyhow::bail!("this binary was built without wgpu support: rebuild with `--features wgpu`")
}

#[cfg(feature = "cuda")]
fn cuda() -> anyhow::Result<Device> {
    // burn-cuda opens the driver and NVRTC lazily, on a worker thread that panics when one is
    // missing; ask first, so that a machine without them gets one line saying which.
    // SAFETY: each call only tries to open the library under its usual names.
    let (driver, nvrtc) = unsafe { (cudarc::driver::sys::is_culib_present(), cudarc::nvrtc::sys::is_culib_present()) };
    anyhow::ensure!(
        driver,
        "--device cuda: the CUDA driver library (libcuda.so) could not be loaded: install the NVIDIA driver or put its folder on LD_LIBRARY_PATH"
    );
    anyhow::ensure!(
        nvrtc,
        "--device cuda: NVRTC (libnvrtc.so), which compiles burn-cuda's kernels at run time, could not be loaded: put the CUDA toolkit's library folder on LD_LIBRARY_PATH"
    );
    Ok(Device::cuda(0))
}
#[cfg(not(feature = "cuda"))]
fn cuda() -> anyhow::Result<Device> {
    anyhow::bail!("this binary was built without CUDA support: rebuild with `--features cuda`")
}
