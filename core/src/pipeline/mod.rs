//! The user-facing tasks, shared by the CLI and the browser: understand (image
//! + prompt → streamed text), generate, edit, and chat that may draw.

mod imagine;
mod understand;

pub use imagine::{gaussian, GenLlava, ImageOptions, Reply};
pub use understand::{prepare, understand, Answer, Prompt, UnderstandRequest};
