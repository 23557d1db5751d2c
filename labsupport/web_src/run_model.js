// labsupport's page script (lab 15): run one ONNX model with onnxruntime-web on tensors sent from Python.
//
// Python (labsupport/web.py) calls runModel(request) through Playwright. Tensors travel as base64 of
// their little-endian bytes (strings as a list), so every value arrives exactly, int64 beyond 2**53
// included. runModel never throws: it resolves to {outputs, ...} or to {error}.
'use strict';

const TYPED_ARRAYS = {
  float32: Float32Array, float64: Float64Array, float16: Uint16Array, int8: Int8Array, uint8: Uint8Array,
  int16: Int16Array, uint16: Uint16Array, int32: Int32Array, uint32: Uint32Array, int64: BigInt64Array,
  uint64: BigUint64Array, bool: Uint8Array,
};

function fromBase64(text, type) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) {
    bytes[i] = binary.charCodeAt(i);
  }
  const ArrayType = TYPED_ARRAYS[type];
  return new ArrayType(bytes.buffer, 0, bytes.length / ArrayType.BYTES_PER_ELEMENT);
}

function toBase64(typedArray) {
  const bytes = new Uint8Array(typedArray.buffer, typedArray.byteOffset, typedArray.byteLength);
  let binary = '';
  for (let start = 0; start < bytes.length; start += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(start, start + 0x8000));
  }
  return btoa(binary);
}

function toTensor(spec) {
  const data = spec.type === 'string' ? spec.data : fromBase64(spec.data, spec.type);
  return new ort.Tensor(spec.type, data, spec.dims);
}

function fromTensor(tensor) {
  const data = tensor.type === 'string' ? Array.from(tensor.data) : toBase64(tensor.data);
  return {type: tensor.type, dims: Array.from(tensor.dims), data};
}

async function runModel(request) {
  const status = document.getElementById('status');
  status.textContent = `Running ${request.modelUrl}`;
  try {
    // Set before the first session: the backend loads its .mjs and .wasm from here, once per page.
    ort.env.wasm.wasmPaths = request.wasmPaths;
    // Threads need SharedArrayBuffer, which only a cross-origin-isolated page has; this one is not.
    ort.env.wasm.numThreads = 1;
    ort.env.logLevel = 'error';
    const started = performance.now();
    const session = await ort.InferenceSession.create(request.modelUrl, {executionProviders: ['wasm']});
    const created = performance.now();
    const feeds = {};
    for (const [name, spec] of Object.entries(request.feeds)) {
      feeds[name] = toTensor(spec);
    }
    const results = await session.run(feeds);
    const finished = performance.now();
    const outputs = {};
    for (const name of session.outputNames) {
      outputs[name] = fromTensor(results[name]);
    }
    await session.release();
    status.textContent = `Ran ${request.modelUrl}: outputs ${session.outputNames.join(', ')}`;
    return {
      outputs, ortWebVersion: ort.env.versions.web, threads: ort.env.wasm.numThreads,
      sessionMs: created - started, runMs: finished - created,
    };
  } catch (error) {
    const message = String((error && error.message) || error);
    status.textContent = `Failed: ${message}`;
    return {error: message};
  }
}
