// Reading and writing NumPy .npy files (format versions 1 to 3, little-endian, C order): the
// arrays the notebook saves with np.save and reads back with np.load.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

// Only the C header: the C++ API header is included once, by main.cpp, with ORT_API_MANUAL_INIT
#include <onnxruntime_c_api.h>

namespace npy {

// A bad or unreadable file; what() is one line naming the file and what is wrong.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Array {
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  std::vector<int64_t> shape;
  std::vector<char> bytes;  // the elements, C order
};

// The NumPy type string ("<f4") of an ONNX element type, or "" when .npy cannot hold it here.
std::string descr_of(ONNXTensorElementDataType type);
// The size in bytes of one element, 0 when unsupported.
size_t element_size(ONNXTensorElementDataType type);
// "float32", "int64"…: the names NumPy prints.
std::string type_name(ONNXTensorElementDataType type);

Array load(const std::string& path);
void save(const std::string& path, ONNXTensorElementDataType type, const std::vector<int64_t>& shape,
          const void* data, size_t byte_count);

}  // namespace npy
