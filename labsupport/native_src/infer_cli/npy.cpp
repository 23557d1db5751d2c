#include "npy.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

namespace npy {
namespace {

struct TypeEntry {
  ONNXTensorElementDataType type;
  const char* descr;
  const char* name;
  size_t size;
};

const TypeEntry kTypes[] = {
    {ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, "<f4", "float32", 4},
    {ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE, "<f8", "float64", 8},
    {ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, "<f2", "float16", 2},
    {ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, "<i8", "int64", 8},
    {ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32, "<i4", "int32", 4},
    {ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8, "|i1", "int8", 1},
    {ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8, "|u1", "uint8", 1},
    {ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL, "|b1", "bool", 1},
};

const TypeEntry* find_type(ONNXTensorElementDataType type) {
  for (const auto& entry : kTypes) {
    if (entry.type == type) return &entry;
  }
  return nullptr;
}

// The value of 'key' in the header's Python dict literal, e.g. "'<f4'" or "(3, 64)".
std::string header_field(const std::string& header, const std::string& key, const std::string& path) {
  std::smatch match;
  const std::regex pattern("'" + key + "'\\s*:\\s*('[^']*'|\\([^)]*\\)|True|False)");
  if (!std::regex_search(header, match, pattern)) {
    throw Error(path + " is not a .npy file NumPy wrote: its header has no '" + key + "'");
  }
  return match[1].str();
}

}  // namespace

std::string descr_of(ONNXTensorElementDataType type) {
  const TypeEntry* entry = find_type(type);
  return entry ? entry->descr : "";
}

size_t element_size(ONNXTensorElementDataType type) {
  const TypeEntry* entry = find_type(type);
  return entry ? entry->size : 0;
}

std::string type_name(ONNXTensorElementDataType type) {
  const TypeEntry* entry = find_type(type);
  return entry ? entry->name : "element type " + std::to_string(static_cast<int>(type));
}

Array load(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw Error("cannot open input file " + path + ": " + std::strerror(errno));
  char magic[8] = {};
  file.read(magic, 8);
  if (!file || std::memcmp(magic, "\x93NUMPY", 6) != 0) {
    throw Error(path + " is not a .npy file (save the array with np.save)");
  }
  const int major = static_cast<unsigned char>(magic[6]);
  uint32_t header_length = 0;
  if (major == 1) {
    unsigned char length[2] = {};
    file.read(reinterpret_cast<char*>(length), 2);
    header_length = length[0] | (length[1] << 8);
  } else if (major == 2 || major == 3) {
    unsigned char length[4] = {};
    file.read(reinterpret_cast<char*>(length), 4);
    header_length = length[0] | (length[1] << 8) | (length[2] << 16) | (static_cast<uint32_t>(length[3]) << 24);
  } else {
    throw Error(path + " uses .npy format version " + std::to_string(major) + ", which this program cannot read");
  }
  std::string header(header_length, '\0');
  file.read(header.data(), header_length);
  if (!file) throw Error(path + " is truncated: its header is incomplete");

  Array array;
  const std::string descr = header_field(header, "descr", path);
  for (const auto& entry : kTypes) {
    if (descr == std::string("'") + entry.descr + "'") array.type = entry.type;
  }
  if (array.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED) {
    throw Error(path + " holds dtype " + descr + ", which this program does not read (use float32, float64, "
                "int64, int32, int8, uint8 or bool, little-endian)");
  }
  if (header_field(header, "fortran_order", path) != "False") {
    throw Error(path + " is in Fortran order; save np.ascontiguousarray(array) instead");
  }
  std::string shape_text = header_field(header, "shape", path);
  std::stringstream dims(shape_text.substr(1, shape_text.size() - 2));
  std::string dim;
  size_t count = 1;
  while (std::getline(dims, dim, ',')) {
    if (dim.find_first_not_of(' ') == std::string::npos) continue;
    array.shape.push_back(std::stoll(dim));
    count *= static_cast<size_t>(array.shape.back());
  }
  array.bytes.resize(count * element_size(array.type));
  file.read(array.bytes.data(), static_cast<std::streamsize>(array.bytes.size()));
  if (!file) throw Error(path + " is truncated: it holds fewer elements than its shape says");
  return array;
}

void save(const std::string& path, ONNXTensorElementDataType type, const std::vector<int64_t>& shape,
          const void* data, size_t byte_count) {
  const std::string descr = descr_of(type);
  if (descr.empty()) throw Error("cannot write " + type_name(type) + " to " + path + ": .npy output supports numbers");
  std::string shape_text = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) shape_text += ", ";
    shape_text += std::to_string(shape[i]);
  }
  shape_text += shape.size() == 1 ? ",)" : ")";
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape_text + ", }";
  const size_t unpadded = 10 + header.size() + 1;  // magic, version, length, header, newline
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::ofstream file(path, std::ios::binary);
  if (!file) throw Error("cannot write " + path + ": " + std::strerror(errno));
  const uint16_t length = static_cast<uint16_t>(header.size());
  const char prefix[] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<char>(length & 0xff),
                         static_cast<char>(length >> 8)};
  file.write(prefix, sizeof(prefix));
  file.write(header.data(), static_cast<std::streamsize>(header.size()));
  file.write(static_cast<const char*>(data), static_cast<std::streamsize>(byte_count));
  if (!file) throw Error("cannot write " + path + ": the disk may be full");
}

}  // namespace npy
