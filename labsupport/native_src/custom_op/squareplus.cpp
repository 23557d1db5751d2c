// A custom operator kernel for ONNX Runtime (lab 13): SquarePlus in the domain ai.onnx.labsupport.
//
//   Y = (X + sqrt(X * X + b)) / 2        float32 tensor of any shape; attribute b (float, default 4)
//
// SquarePlus is a smooth ReLU: about 0 for very negative X, about X for large X, and sqrt(b)/2 at 0.
// NumPy's reference: (x + np.sqrt(x * x + b)) / 2.
//
// The library is loaded by a session (SessionOptions.register_custom_ops_library in Python,
// SessionOptions::RegisterCustomOpsLibrary in C++), which calls RegisterCustomOps with its own API.

// No static initializer: the API table comes from the session that loads this library.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <cmath>
#include <string>

namespace {

constexpr const char* kDomain = "ai.onnx.labsupport";
constexpr float kDefaultB = 4.0f;

struct SquarePlusKernel {
  explicit SquarePlusKernel(const OrtKernelInfo* info) {
    // An absent attribute is not an error: b keeps its default
    OrtStatus* status = Ort::GetApi().KernelInfoGetAttribute_float(info, "b", &b_);
    if (status != nullptr) {
      Ort::GetApi().ReleaseStatus(status);
      b_ = kDefaultB;
    }
  }

  void Compute(OrtKernelContext* raw_context) {
    Ort::KernelContext context(raw_context);
    Ort::ConstValue input = context.GetInput(0);
    const auto info = input.GetTensorTypeAndShapeInfo();
    const size_t count = info.GetElementCount();
    const float* x = input.GetTensorData<float>();
    float* y = context.GetOutput(0, info.GetShape()).GetTensorMutableData<float>();
    for (size_t i = 0; i < count; ++i) y[i] = 0.5f * (x[i] + std::sqrt(x[i] * x[i] + b_));
  }

  float b_ = kDefaultB;
};

struct SquarePlusOp : Ort::CustomOpBase<SquarePlusOp, SquarePlusKernel> {
  void* CreateKernel(const OrtApi& /*api*/, const OrtKernelInfo* info) const { return new SquarePlusKernel(info); }
  const char* GetName() const { return "SquarePlus"; }
  size_t GetInputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetInputType(size_t /*index*/) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t /*index*/) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

}  // namespace

// The one symbol ONNX Runtime looks up (dlsym) in the library. Hidden visibility is the default
// for this library, so it is exported explicitly; extern "C" keeps its name unmangled.
extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    // The runtime is older than these headers: it cannot serve API ORT_API_VERSION. Version 1 of
    // the table still has CreateStatus, in the same place, so the error reaches the caller in words.
    const std::string message = "the custom-op library was built with headers of C API " +
                                std::to_string(ORT_API_VERSION) + ", newer than this ONNX Runtime (" +
                                api_base->GetVersionString() + "); rebuild it against older headers";
    return api_base->GetApi(1)->CreateStatus(ORT_FAIL, message.c_str());
  }
  Ort::InitApi(api);
  static SquarePlusOp op;  // lives as long as the library: sessions keep pointers to it
  try {
    Ort::CustomOpDomain domain(kDomain);
    domain.Add(&op);
    Ort::ThrowOnError(api->AddCustomOpDomain(options, domain));
    // The session options keep a pointer to the domain: it must outlive every session made
    // with them, so it is deliberately never released (a few bytes per registration).
    domain.release();
  } catch (const Ort::Exception& error) {
    return api->CreateStatus(error.GetOrtErrorCode(), error.what());
  }
  return nullptr;
}
