//! The one error type of the model crate. Every variant names what is wrong
//! (file, tensor, shape, field) so that a user can act on it.

/// Errors raised while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A safetensors blob that cannot be parsed.
    #[error("{source_name}: not a valid safetensors file: {reason}")]
    Safetensors { source_name: String, reason: String },
    /// A tensor the model needs is absent from the checkpoint.
    #[error("missing tensor `{name}` (expected shape {expected:?}) in {source_name}")]
    MissingTensor {
        name: String,
        expected: Vec<usize>,
        source_name: String,
    },
    /// A tensor is present with a shape the config does not allow.
    #[error(
        "tensor `{name}`: expected shape {expected:?}, found {found:?} (does the config match the weights?)"
    )]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A tensor stored in a dtype this crate cannot read.
    #[error("tensor `{name}`: unsupported dtype {dtype}")]
    Dtype { name: String, dtype: String },
    /// A config file or config field that is invalid.
    #[error("config {file}: {reason}")]
    Config { file: String, reason: String },
    /// Tokenizer problems (file or encoding).
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Image decoding or preprocessing problems.
    #[error("image: {0}")]
    Image(String),
    /// An input tensor with the wrong shape or content.
    #[error("input `{name}`: {reason}")]
    Input { name: String, reason: String },
    /// A tensor could not be read back from the device.
    #[error("device read-back failed: {0}")]
    Readback(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for a config error.
    pub fn config(file: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            file: file.into(),
            reason: reason.into(),
        }
    }
    /// Shorthand for an input error.
    pub fn input(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Input {
            name: name.into(),
            reason: reason.into(),
        }
    }
}
