//! The file system side of checkpoint loading: a directory as a [`FileSource`].

use burn::tensor::Device;
use genllava::checkpoint::FileSource;
use genllava::web::{self, Residency, WebFolder};
use genllava::{Error, Result};
use std::path::{Path, PathBuf};

/// A checkpoint directory on disk.
pub struct DirSource {
    pub root: PathBuf,
}

impl DirSource {
    /// A directory that must exist.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        if !root.is_dir() {
            anyhow::bail!("{}: not a directory (expected a model folder)", root.display());
        }
        Ok(Self { root: root.to_path_buf() })
    }
}

impl FileSource for DirSource {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.root.join(name);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::config(path.display().to_string(), e.to_string())),
        }
    }
    fn describe(&self, name: &str) -> String {
        self.root.join(name).display().to_string()
    }
}

/// A model folder: a checkpoint as is, or a web folder (`export-web`, it has a
/// `manifest.json`) verified and decoded onto `device` (block weights dequantized to f32).
pub fn open_model(root: &Path, device: &Device) -> anyhow::Result<Box<dyn FileSource>> {
    let dir = DirSource::open(root)?;
    if web::is_web_folder(&dir)? {
        return Ok(Box::new(WebFolder::load(dir, device, Residency::F32)?));
    }
    Ok(Box::new(dir))
}

/// Read a whole file, naming it in the error.
pub fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Write a file atomically: a temporary sibling, fsync, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("out")));
    let mut f = std::fs::File::create(&tmp).map_err(|e| anyhow::anyhow!("{}: {e}", tmp.display()))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| anyhow::anyhow!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(())
}
