// Types of genllava-chat (index.js). The wasm engine's own types come from wasm-bindgen.
export { default as init, Engine } from './pkg/genllava_web.js';

/** The default file names fetched from a model folder. */
export declare const DEFAULT_MODEL_FILES: readonly string[];

/** What a loaded model is: as returned by `GenllavaClient.load` and `Engine.load_model`. */
export interface ModelInfo {
  label: string;
  vocab_size: number;
  hidden_size: number;
  layers: number;
  image_size: number;
  image_tokens: number;
  has_image_processor: boolean;
  unused_tensors: string[];
}

/** One turn of a conversation. */
export interface Turn {
  role: 'user' | 'assistant';
  text: string;
}

/** Generation settings; every field is optional and checked by the engine. */
export interface ChatOptions {
  max_new_tokens?: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  repetition_penalty?: number;
  seed?: number;
}

/** A finished answer. */
export interface ChatResult {
  text: string;
  ids: number[];
  prompt: string;
  first_token_ms: number | null;
  total_ms: number;
  aborted: boolean;
}

export interface ChatRequest {
  /** The conversation; the first user text starts with `<image>\n` when `image` is given. */
  turns?: Turn[];
  /** A prompt taken as written (template included) instead of `turns`. */
  prompt?: string;
  /** PNG or JPEG bytes (copied, not transferred). */
  image?: ArrayBuffer | null;
  format?: 'vicuna' | 'mistral_instruct';
  /** Start with the paper's system prompt. */
  system?: boolean;
  options?: ChatOptions;
  onToken?: ((delta: string, id: number) => void) | null;
}

export interface LoadRequest {
  /** A model folder URL (relative to the document). */
  url?: string;
  /** File names in that folder (default DEFAULT_MODEL_FILES). */
  files?: string[];
  /** Or the files themselves, by name. */
  buffers?: Record<string, ArrayBuffer>;
  label?: string;
}

/** The engine in a dedicated module worker. */
export declare class GenllavaClient extends EventTarget {
  constructor(options?: { preferWebgpu?: boolean });
  /** `'webgpu'` or `'cpu'` once ready, else null. */
  backend: 'webgpu' | 'cpu' | null;
  /** Why the CPU is used when WebGPU was asked for. */
  backendNote: string;
  /** Resolves when the engine has picked its device. */
  ready: Promise<Event>;
  load(request: LoadRequest): Promise<ModelInfo>;
  checkImage(bytes: ArrayBuffer): Promise<{ width: number; height: number }>;
  chat(request: ChatRequest): Promise<ChatResult>;
  abort(): void;
  terminate(): void;
}

/** `<genllava-chat model="folder/">`: the chat widget (Shadow DOM). */
export declare class GenllavaChat extends HTMLElement {
  /** Use a PNG/JPEG as the conversation's image; a refused image keeps the old one. */
  setImage(blob: Blob): Promise<void>;
  /** Ask a question (default: the text box); null when not ready or when it failed. */
  ask(question?: string): Promise<ChatResult | null>;
}

declare global {
  interface HTMLElementTagNameMap {
    'genllava-chat': GenllavaChat;
  }
  interface HTMLElementEventMap {
    'genllava-ready': CustomEvent<ModelInfo>;
    'genllava-answer': CustomEvent<ChatResult>;
  }
}
