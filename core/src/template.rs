//! Conversation templates: LLaVA-1.5 (Vicuna v1), Mistral-instruct, and the
//! GenLLaVA task prompts of the paper's Figure A1.

/// The system prompt of the paper's Figure A1.
pub const SYSTEM: &str = "A chat between a curious user and an artificial intelligence assistant. \
The assistant gives helpful, detailed, and polite answers to the user's questions.";

/// The placeholder that marks where an image goes in a prompt.
pub const IMAGE: &str = "<image>";

/// Which chat format the language model was tuned with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ChatFormat {
    /// `SYSTEM USER: … ASSISTANT: …</s>` (LLaVA-1.5 / Vicuna v1).
    #[default]
    Vicuna,
    /// `[INST] … [/INST] …</s>` (Mistral-instruct, Prismatic).
    MistralInstruct,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Turn {
    /// `user` or `assistant`.
    pub role: String,
    pub text: String,
}

impl Turn {
    pub fn user(text: impl Into<String>) -> Self {
        Self { role: "user".into(), text: text.into() }
    }
    pub fn assistant(text: impl Into<String>) -> Self {
        Self { role: "assistant".into(), text: text.into() }
    }
}

/// Render a conversation, ending with the assistant's cue when the last turn is
/// the user's. `eos` closes every finished assistant turn.
pub fn render(format: ChatFormat, system: Option<&str>, turns: &[Turn], eos: &str) -> String {
    let mut s = String::new();
    match format {
        ChatFormat::Vicuna => {
            if let Some(sys) = system {
                s.push_str(sys);
                s.push(' ');
            }
            for t in turns {
                if t.role == "user" {
                    s.push_str("USER: ");
                    s.push_str(&t.text);
                    s.push_str(" ASSISTANT:");
                } else {
                    s.push(' ');
                    s.push_str(&t.text);
                    s.push_str(eos);
                }
            }
        }
        ChatFormat::MistralInstruct => {
            for (i, t) in turns.iter().enumerate() {
                if t.role == "user" {
                    s.push_str("[INST] ");
                    if i == 0
                        && let Some(sys) = system
                    {
                        s.push_str(sys);
                        s.push_str("\n\n");
                    }
                    s.push_str(&t.text);
                    s.push_str(" [/INST]");
                } else {
                    s.push(' ');
                    s.push_str(&t.text);
                    s.push_str(eos);
                }
            }
        }
    }
    s
}

/// User text of a short question about an image (Figure A1 a).
pub fn vqa_short(question: &str) -> String {
    format!("Based on the image, please answer the question. {IMAGE}\n{question} Please provide an accurate answer within one word.")
}

/// User text of a generation request (Figure A1 d).
pub fn generation(description: &str) -> String {
    format!("Generate an image with the following description. {description}")
}

/// User text of an editing request (Figure A1 e).
pub fn editing(instruction: &str) -> String {
    format!("Based on the image, please follow the instruction. {IMAGE}\nEdit the image according to the description. {instruction}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vicuna_matches_llava() {
        let t = [Turn::user("<image>\nWhat is it?"), Turn::assistant("A cat."), Turn::user("Colour?")];
        assert_eq!(
            render(ChatFormat::Vicuna, None, &t, "</s>"),
            "USER: <image>\nWhat is it? ASSISTANT: A cat.</s>USER: Colour? ASSISTANT:"
        );
    }

    #[test]
    fn mistral_instruct() {
        let t = [Turn::user("Hi"), Turn::assistant("Hello"), Turn::user("Bye")];
        assert_eq!(render(ChatFormat::MistralInstruct, None, &t, "</s>"), "[INST] Hi [/INST] Hello</s>[INST] Bye [/INST]");
    }
}
