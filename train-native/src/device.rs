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
    Ok(Device::cuda(0))
}
#[cfg(not(feature = "cuda"))]
fn cuda() -> anyhow::Result<Device> {
    anyhow::bail!("this binary was built without CUDA support: rebuild with `--features cuda`")
}
