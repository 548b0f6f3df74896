// Types of genllava-chat (index.js). The wasm engine's own types come from wasm-bindgen.
export { default as init, Engine } from './pkg/genllava_web.js';

/** The default file names fetched from a model folder. */
export declare const DEFAULT_MODEL_FILES: readonly string[];

/** What a loaded model is: as returned by `GenllavaClient.load` and `Engine.load_model`. */
export interface ModelInfo {
  label: string;
  /** `genllava` models can also draw and edit; `llava` models only answer. */
  kind: 'genllava' | 'llava';
  vocab_size: number;
  hidden_size: number;
  layers: number;
  image_size: number;
  image_tokens: number;
  has_image_processor: boolean;
  unused_tensors: string[];
  /** GenLLaVA: the side of the images it draws, in pixels. */
  output_size?: number;
  /** GenLLaVA: the diffusion defaults of its genllava.json. */
  diffusion?: { steps: number; guidance: number; scheduler: string; edit: unknown };
  /** An exported model (`load({manifest})`): `web`, its mode, shard count and where its weights live. */
  format?: 'web';
  quant?: 'q4' | 'q8' | 'f16' | 'f32';
  shards?: number;
  residency?: 'quantized' | 'f32';
  residency_note?: string;
  /** The export's q8 / q4 block scales (`null`: no block-quantized tensors). */
  scales?: 'f32' | 'f16' | null;
  /** The scales kept on the device: `f16` only where the adapter has `shader-f16` (`null`: none kept quantized). */
  device_scales?: 'f32' | 'f16' | null;
}

/** Drawing settings; every field is optional (the model's defaults) and checked by the engine. */
export interface ImageOptions {
  /** Denoising steps, 1 to 1000. */
  steps?: number;
  /** Classifier-free guidance scale, 0 to 100 (at most 1 turns it off). */
  guidance?: number;
  /** Seed of the initial noise. */
  seed?: number;
  scheduler?: 'ddim' | 'pndm' | 'euler';
  /** Edits only, for a model that edits by img2img: strength in (0, 1]. */
  strength?: number;
  /** Edits only, for a model that edits by InstructPix2Pix: image guidance in [0, 100]. */
  imageGuidance?: number;
}

/** The preview of one denoising step: the VAE decode of the current latents. */
export interface StepPreview {
  step: number;
  total: number;
  width: number;
  height: number;
  rgba: Uint8ClampedArray<ArrayBuffer>;
}

/** A finished (or stopped) drawing. */
export interface ImageResult {
  png: Blob;
  rgba: Uint8ClampedArray<ArrayBuffer>;
  width: number;
  height: number;
  /** Denoising steps of the run (an edit runs `strength × steps`). */
  steps: number;
  steps_done: number;
  previews: number;
  first_step_ms: number | null;
  total_ms: number;
  aborted: boolean;
}

export interface GenerateRequest {
  prompt: string;
  options?: ImageOptions;
  onStep?: ((preview: StepPreview) => void) | null;
}

export interface EditRequest {
  /** PNG or JPEG bytes (copied, not transferred). */
  image: ArrayBuffer;
  instruction: string;
  options?: ImageOptions;
  onStep?: ((preview: StepPreview) => void) | null;
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
  /** The picture a GenLLaVA model chose to draw (its answer ended in [SOI]), else null. */
  picture: ImageResult | null;
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
  /** How a GenLLaVA model draws when it answers with a picture. */
  imageOptions?: ImageOptions;
  onStep?: ((preview: StepPreview) => void) | null;
}

export interface LoadRequest {
  /** A model folder URL (relative to the document). */
  url?: string;
  /** File names in that folder (default DEFAULT_MODEL_FILES). */
  files?: string[];
  /** Or the files themselves, by name. */
  buffers?: Record<string, ArrayBuffer>;
  /** Or an exported model (train-native export-web): the URL of its manifest.json. */
  manifest?: string;
  /** With `manifest`: keep q8 / q4 weights block-quantized on the device, or dequantize to f32. */
  residency?: 'quantized' | 'f32';
  label?: string;
}

/** The engine in a dedicated module worker. */
export declare class GenllavaClient extends EventTarget {
  constructor(options?: { preferWebgpu?: boolean });
  /** `'webgpu'` or `'cpu'` once ready, else null. */
  backend: 'webgpu' | 'cpu' | null;
  /** Why the CPU is used when WebGPU was asked for. */
  backendNote: string;
  /** The WebGPU adapter as the browser describes it and the product the diffusion model takes
   * there (e.g. `SwiftShader Device (Subzero) (products: shaders/matmul.wgsl)`); empty on the CPU. */
  adapter: string;
  /** Resolves when the engine has picked its device. */
  ready: Promise<Event>;
  load(request: LoadRequest): Promise<ModelInfo>;
  checkImage(bytes: ArrayBuffer): Promise<{ width: number; height: number }>;
  chat(request: ChatRequest): Promise<ChatResult>;
  /** Draw with a GenLLaVA model. */
  generate(request: GenerateRequest): Promise<ImageResult>;
  /** Edit an image with a GenLLaVA model. */
  edit(request: EditRequest): Promise<ImageResult>;
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
