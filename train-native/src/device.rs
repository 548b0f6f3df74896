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

    /// The devices of a data-parallel run, `--devices LIST` (comma-separated, the first
    /// is the main one): CUDA device indices (`0,1,2,3`), or wgpu adapters by kind
    /// (`default`, `cpu`, `discrete:N`, `integrated:N`, `virtual:N`; two kinds that land
    /// on one adapter are two devices with their own queues). The CPU backend has one
    /// device; its micro-batches share the cores through `parallel_micro_batches` instead.
    pub fn devices(self, list: &str) -> anyhow::Result<Vec<Device>> {
        let names: Vec<&str> = list.split(',').map(str::trim).collect();
        anyhow::ensure!(names.iter().all(|n| !n.is_empty()), "--devices {list:?}: an empty device name");
        for (i, n) in names.iter().enumerate() {
            anyhow::ensure!(!names[..i].contains(n), "--devices {list:?}: {n} is named twice");
        }
        let devices: Vec<Device> = match self {
            DeviceArg::Cpu => anyhow::bail!(
                "--devices {list:?} with --device cpu: the CPU backend is one device (parallel_micro_batches spreads a step over its cores); use --device cuda or wgpu"
            ),
            DeviceArg::Cuda => names
                .iter()
                .map(|n| {
                    let index: usize = n
                        .parse()
                        .map_err(|_| anyhow::anyhow!("--devices {list:?}: {n:?} is not a CUDA device index"))?;
                    cuda_at(index)
                })
                .collect::<anyhow::Result<_>>()?,
            DeviceArg::Wgpu => names.iter().map(|n| wgpu_named(n)).collect::<anyhow::Result<_>>()?,
        };
        for (i, d) in devices.iter().enumerate() {
            if let Some(j) = devices[..i].iter().position(|e| e == d) {
                anyhow::bail!(
                    "--devices {list:?}: {} and {} are one device (the same adapter and queue)",
                    names[j],
                    names[i]
                );
            }
        }
        Ok(devices)
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_named(name: &str) -> anyhow::Result<Device> {
    use burn::tensor::DeviceKind;
    let index = |rest: &str| {
        rest.parse::<usize>()
            .map_err(|_| anyhow::anyhow!("--devices: {name:?}: expected an adapter index after the colon"))
    };
    let kind = match name.split_once(':') {
        None if name == "default" => DeviceKind::DefaultDevice,
        None if name == "cpu" => DeviceKind::Cpu,
        Some(("discrete", i)) => DeviceKind::DiscreteGpu(index(i)?),
        Some(("integrated", i)) => DeviceKind::IntegratedGpu(index(i)?),
        Some(("virtual", i)) => DeviceKind::VirtualGpu(index(i)?),
        _ => anyhow::bail!(
            "--devices: {name:?} is not a wgpu device (default, cpu, discrete:N, integrated:N, virtual:N)"
        ),
    };
    Device::wgpu_options()
        .device_kind(kind)
        .init()
        .map_err(|e| anyhow::anyhow!("--devices: no wgpu adapter for {name}: {e:?}"))
}
#[cfg(not(feature = "wgpu"))]
fn wgpu_named(_: &str) -> anyhow::Result<Device> {
    wgpu()
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

/// CUDA device `index`, after the same library checks as `--device cuda` and a check
/// that the machine has that many devices.
#[cfg(feature = "cuda")]
fn cuda_at(index: usize) -> anyhow::Result<Device> {
    cuda()?;
    let count = cudarc::driver::result::init()
        .and_then(|()| cudarc::driver::result::device::get_count())
        .map_err(|e| anyhow::anyhow!("--devices: the CUDA driver could not count the devices: {e:?}"))?;
    anyhow::ensure!(index < count as usize, "--devices: CUDA device {index} does not exist (this machine has {count})");
    Ok(Device::cuda(index))
}
#[cfg(not(feature = "cuda"))]
fn cuda_at(_: usize) -> anyhow::Result<Device> {
    cuda()
}
