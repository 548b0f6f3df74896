//! The user-facing tasks, shared by the CLI and the browser: understand (image
//! + prompt → streamed text); generation and editing build on it.

mod understand;

pub use understand::{prepare, understand, Answer, Prompt, UnderstandRequest};
