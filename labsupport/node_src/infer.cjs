// Run an ONNX model with onnxruntime-node: the Node.js half of labsupport.node (lab 13).
//
//   node infer.cjs MODEL.onnx REQUEST.json RESPONSE.json
//
// REQUEST.json holds the input tensors, RESPONSE.json receives the output tensors, both as
//   {"pixels": {"type": "float32", "dims": [1, 1, 8, 8], "data": [0.25, 0.5, ...]}, ...}
// with "data" flattened in row-major order. 64-bit integers travel as strings, because a JSON
// number is a double and would round them. RESPONSE.json also says which Node.js and which
// onnxruntime-node ran the model.
//
// `require('onnxruntime-node')` finds the package through NODE_PATH, which labsupport.node points
// at the folder `python -m labsupport node setup` installed it into.
'use strict';

const fs = require('node:fs');
const ort = require('onnxruntime-node');

const ARRAY_TYPES = {
  float32: Float32Array,
  float64: Float64Array,
  int8: Int8Array,
  uint8: Uint8Array,
  int32: Int32Array,
  int64: BigInt64Array,
  bool: Uint8Array,
};

function toTensor(name, { type, dims, data }) {
  const ArrayType = ARRAY_TYPES[type];
  if (ArrayType === undefined) {
    throw new Error(`input ${name} has the element type ${type}, which this script does not handle`);
  }
  const values = type === 'int64' ? ArrayType.from(data, BigInt) : ArrayType.from(data);
  return new ort.Tensor(type, values, dims);
}

function fromTensor(tensor) {
  const data = tensor.type === 'int64' ? Array.from(tensor.data, String) : Array.from(tensor.data);
  return { type: tensor.type, dims: tensor.dims, data };
}

async function main() {
  const [modelPath, requestPath, responsePath] = process.argv.slice(2);
  const request = JSON.parse(fs.readFileSync(requestPath, 'utf8'));
  const session = await ort.InferenceSession.create(modelPath, { executionProviders: ['cpu'] });
  const feeds = {};
  for (const [name, tensor] of Object.entries(request)) {
    feeds[name] = toTensor(name, tensor);
  }
  const results = await session.run(feeds);
  const outputs = {};
  for (const name of session.outputNames) {
    outputs[name] = fromTensor(results[name]);
  }
  const response = { node: process.version, onnxruntime_node: ort.env.versions.node, outputs };
  fs.writeFileSync(responsePath, JSON.stringify(response));
}

main().catch((error) => {
  console.error(error.message);
  process.exit(1);
});
