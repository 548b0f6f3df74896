//! Small bridges to JavaScript values: the model's files, the chat options,
//! JSON results, error text and yielding to the event loop.

use crate::options::{ChatOptions, ImageRequest};
use js_sys::{Array, ArrayBuffer, Function, Object, Promise, Reflect, Uint8Array};
use std::collections::BTreeMap;
use wasm_bindgen::{JsCast, JsError, JsValue};

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    pub fn console_error(s: &str);
}

/// File name → bytes from a `Map` or a plain object whose values are
/// `Uint8Array`s or `ArrayBuffer`s.
pub fn files(files: &JsValue) -> Result<BTreeMap<String, Vec<u8>>, JsError> {
    let entries: Array = if let Some(map) = files.dyn_ref::<js_sys::Map>() {
        Array::from(&map.entries())
    } else if files.is_object() {
        Object::entries(files.unchecked_ref())
    } else {
        return Err(JsError::new("model files must be a Map or an object of name → Uint8Array"));
    };
    let mut out = BTreeMap::new();
    for entry in entries.iter() {
        let pair: Array = entry.unchecked_into();
        let name = pair.get(0).as_string().ok_or_else(|| JsError::new("a model file name is not a string"))?;
        let value = pair.get(1);
        let bytes = if let Some(a) = value.dyn_ref::<Uint8Array>() {
            a.to_vec()
        } else if value.is_instance_of::<ArrayBuffer>() {
            Uint8Array::new(&value).to_vec()
        } else {
            return Err(JsError::new(&format!("model file `{name}` is not a Uint8Array or ArrayBuffer")));
        };
        out.insert(name, bytes);
    }
    Ok(out)
}

/// Parse the chat options object (`undefined`/`null`: all defaults).
pub fn chat_options(options: &JsValue) -> Result<ChatOptions, JsError> {
    let present = options.is_object();
    ChatOptions::from_fields(|key| {
        if !present {
            return Ok(None);
        }
        let v = Reflect::get(options, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED);
        if v.is_undefined() || v.is_null() {
            return Ok(None);
        }
        v.as_f64().map(Some).ok_or_else(|| format!("option `{key}` must be a number"))
    })
    .map_err(|e| JsError::new(&e))
}

/// A JSON value as a JS object.
pub fn json(value: &serde_json::Value) -> Result<JsValue, JsError> {
    js_sys::JSON::parse(&value.to_string()).map_err(|e| JsError::new(&describe(&e)))
}

/// Readable text of a thrown JS value.
pub fn describe(e: &JsValue) -> String {
    if let Some(err) = e.dyn_ref::<js_sys::Error>() {
        return String::from(err.message());
    }
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

/// Let the event loop run (a `setTimeout(0)` turn), so queued messages are handled.
pub async fn yield_now() {
    let promise = Promise::new(&mut |resolve, _reject| {
        let global = js_sys::global();
        let set_timeout =
            Reflect::get(&global, &JsValue::from_str("setTimeout")).ok().and_then(|f| f.dyn_into::<Function>().ok());
        match set_timeout {
            Some(f) => {
                let _ = f.call2(&global, &resolve, &JsValue::from(0));
            }
            None => {
                let _ = resolve.call0(&JsValue::NULL);
            }
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// A plain JS object of `fields`.
pub fn object(fields: &[(&str, JsValue)]) -> Result<JsValue, JsError> {
    let obj = Object::new();
    for (key, value) in fields {
        Reflect::set(&obj, &JsValue::from_str(key), value).map_err(|e| JsError::new(&describe(&e)))?;
    }
    Ok(obj.into())
}

/// Parse the image options object (`undefined`/`null`: the model's defaults).
pub fn image_options(options: &JsValue) -> Result<ImageRequest, JsError> {
    let present = options.is_object();
    let field = |key: &str| {
        if !present {
            return JsValue::UNDEFINED;
        }
        Reflect::get(options, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    };
    let scheduler = field("scheduler");
    let scheduler = if scheduler.is_undefined() || scheduler.is_null() {
        None
    } else {
        Some(scheduler.as_string().ok_or_else(|| JsError::new("option `scheduler` must be a string"))?)
    };
    ImageRequest::from_fields(
        |key| {
            let v = field(key);
            if v.is_undefined() || v.is_null() {
                return Ok(None);
            }
            v.as_f64().map(Some).ok_or_else(|| format!("option `{key}` must be a number"))
        },
        scheduler,
    )
    .map_err(|e| JsError::new(&e))
}

/// A core error as a JavaScript error, its message unchanged.
pub fn err(e: genllava::Error) -> JsError {
    JsError::new(&e.to_string())
}
