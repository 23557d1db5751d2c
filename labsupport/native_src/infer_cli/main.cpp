// infer_cli: ONNX Runtime from C++ (lab 13).
//
//   infer_cli MODEL                                    print the model's inputs and outputs
//   infer_cli MODEL --input [NAME=]FILE.npy ... --output-dir DIR
//                                                      run one batch, write DIR/<output name>.npy
//   infer_cli MODEL --time N [--warmup W] [--input ...]
//                                                      time N calls at batch 1, print each call's latency
//   options: --threads N (intra-op threads; 0 = ONNX Runtime's choice), --custom-op-library LIB.so, --version
//
// A missing file, a bad model, a wrong shape or type: one "error:" line on stderr, exit 2.
// A run that fails: one "error:" line, exit 1.

// The API table is fetched by hand (not by a static initializer) so that a library older than
// these headers is reported in words instead of crashing on a null pointer.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "npy.hpp"

namespace {

constexpr int kBadInput = 2;
constexpr int kRunFailed = 1;
constexpr const char* kUsage =
    "usage: infer_cli MODEL                      print the model's inputs and outputs\n"
    "       infer_cli MODEL --input [NAME=]FILE.npy ... [--output-dir DIR]\n"
    "                                            run one batch; write DIR/<output name>.npy\n"
    "       infer_cli MODEL --time N [--warmup W] [--input ...]\n"
    "                                            time N calls at batch 1 (zeros unless --input: its first row)\n"
    "options: --threads N (intra-op threads, 0 = ONNX Runtime's choice), --custom-op-library LIB.so,\n"
    "         --version (the headers' C API version and the library's version), --help\n";

// Bad command line or input: the message is the whole story, exit 2.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string model;
  std::vector<std::pair<std::string, std::string>> inputs;  // (name or "", file)
  std::string output_dir;
  std::string custom_op_library;
  int threads = 0;
  long time_calls = 0;
  long warmup = 10;
  bool version = false;
  bool help = false;
};

struct TensorInfo {
  std::string name;
  bool is_tensor = true;
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  std::vector<int64_t> shape;  // -1 where the dimension is not fixed
  std::vector<std::string> symbols;
};

std::string first_line(const std::string& text) {
  const size_t end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

long parse_count(const std::string& option, const std::string& text, long minimum) {
  char* end = nullptr;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || value < minimum) {
    throw InputError(option + " needs a whole number >= " + std::to_string(minimum) + ", got '" + text + "'");
  }
  return value;
}

Options parse_options(int argc, char** argv) {
  Options options;
  std::vector<std::string> arguments(argv + 1, argv + argc);
  for (size_t i = 0; i < arguments.size(); ++i) {
    const std::string& argument = arguments[i];
    auto value = [&]() -> const std::string& {
      if (i + 1 >= arguments.size()) throw InputError(argument + " needs a value");
      return arguments[++i];
    };
    if (argument == "--help" || argument == "-h") {
      options.help = true;
    } else if (argument == "--version") {
      options.version = true;
    } else if (argument == "--input") {
      const std::string& spec = value();
      const size_t equals = spec.find('=');
      if (equals == std::string::npos) {
        options.inputs.emplace_back("", spec);
      } else {
        options.inputs.emplace_back(spec.substr(0, equals), spec.substr(equals + 1));
      }
    } else if (argument == "--output-dir") {
      options.output_dir = value();
    } else if (argument == "--custom-op-library") {
      options.custom_op_library = value();
    } else if (argument == "--threads") {
      options.threads = static_cast<int>(parse_count(argument, value(), 0));
    } else if (argument == "--time") {
      options.time_calls = parse_count(argument, value(), 1);
    } else if (argument == "--warmup") {
      options.warmup = parse_count(argument, value(), 0);
    } else if (argument.rfind("--", 0) == 0) {
      throw InputError("unknown option " + argument);
    } else if (options.model.empty()) {
      options.model = argument;
    } else {
      throw InputError("one model only; pass inputs with --input NAME=FILE.npy, got '" + argument + "'");
    }
  }
  if (options.model.empty() && !options.version && !options.help) throw InputError("no model given");
  return options;
}

std::string shape_text(const std::vector<int64_t>& shape, const std::vector<std::string>& symbols = {}) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ", ";
    if (shape[i] >= 0) {
      text += std::to_string(shape[i]);
    } else {
      text += i < symbols.size() && !symbols[i].empty() ? symbols[i] : "?";
    }
  }
  return text + "]";
}

TensorInfo describe(const std::string& name, const Ort::TypeInfo& type_info) {
  TensorInfo info;
  info.name = name;
  if (type_info.GetONNXType() != ONNX_TYPE_TENSOR) {
    info.is_tensor = false;
    return info;
  }
  auto tensor = type_info.GetTensorTypeAndShapeInfo();
  info.type = tensor.GetElementType();
  info.shape = tensor.GetShape();
  std::vector<const char*> symbols(info.shape.size(), nullptr);
  tensor.GetSymbolicDimensions(symbols.data(), symbols.size());
  for (const char* symbol : symbols) info.symbols.emplace_back(symbol ? symbol : "");
  return info;
}

std::string signature(const TensorInfo& info) {
  if (!info.is_tensor) return info.name + ": not a tensor (sequence or map)";
  return info.name + ": " + npy::type_name(info.type) + " " + shape_text(info.shape, info.symbols);
}

// The file given for each model input, in the model's order.
std::vector<std::string> match_inputs(const Options& options, const std::vector<TensorInfo>& inputs) {
  std::vector<std::string> files(inputs.size());
  for (const auto& [name, file] : options.inputs) {
    if (name.empty()) {
      if (inputs.size() != 1) {
        throw InputError("the model has " + std::to_string(inputs.size()) +
                         " inputs: name each one, --input NAME=FILE.npy");
      }
      files[0] = file;
      continue;
    }
    auto found = std::find_if(inputs.begin(), inputs.end(), [&](const TensorInfo& info) { return info.name == name; });
    if (found == inputs.end()) {
      std::string names;
      for (const auto& info : inputs) names += (names.empty() ? "" : ", ") + info.name;
      throw InputError("the model has no input named '" + name + "'; its inputs are " + names);
    }
    files[static_cast<size_t>(found - inputs.begin())] = file;
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (files[i].empty()) throw InputError("no file for input '" + inputs[i].name + "'; add --input " +
                                           inputs[i].name + "=FILE.npy");
  }
  return files;
}

void check_array(const TensorInfo& info, const npy::Array& array, const std::string& file) {
  if (!info.is_tensor) throw InputError("input '" + info.name + "' is not a tensor; this program feeds tensors only");
  const std::string expected = npy::type_name(info.type) + " " + shape_text(info.shape, info.symbols);
  const std::string got = npy::type_name(array.type) + " " + shape_text(array.shape);
  if (array.type != info.type) {
    throw InputError("input '" + info.name + "' expects " + expected + ", but " + file + " holds " + got +
                     "; convert it with .astype(np." + npy::type_name(info.type) + ")");
  }
  bool fits = array.shape.size() == info.shape.size();
  for (size_t i = 0; fits && i < info.shape.size(); ++i) fits = info.shape[i] < 0 || info.shape[i] == array.shape[i];
  if (!fits) throw InputError("input '" + info.name + "' expects " + expected + ", but " + file + " holds " + got);
}

// The first row of an array (batch 1), for timing.
npy::Array first_row(const npy::Array& array, const std::string& file) {
  if (array.shape.empty() || array.shape[0] < 1) throw InputError(file + " has no first row to time at batch 1");
  npy::Array row = array;
  row.shape[0] = 1;
  row.bytes.resize(array.bytes.size() / static_cast<size_t>(array.shape[0]));
  return row;
}

// Zeros of the input's shape with every dynamic dimension set to 1.
npy::Array zeros_for(const TensorInfo& info) {
  if (!info.is_tensor || npy::element_size(info.type) == 0) {
    throw InputError("input '" + info.name + "' is " + npy::type_name(info.type) +
                     ", which cannot be made up: give a file with --input");
  }
  npy::Array array;
  array.type = info.type;
  size_t count = 1;
  for (int64_t dim : info.shape) {
    array.shape.push_back(dim < 0 ? 1 : dim);
    count *= static_cast<size_t>(array.shape.back());
  }
  array.bytes.assign(count * npy::element_size(info.type), 0);
  return array;
}

std::string safe_file_name(const std::string& name) {
  std::string safe = name;
  for (char& c : safe) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') c = '_';
  }
  return safe.empty() ? "output" : safe;
}

int run(const Options& options) {
  const OrtApi* api = OrtGetApiBase()->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    std::cerr << "error: this program was built with headers of C API " << ORT_API_VERSION << ", but the library "
              << OrtGetApiBase()->GetVersionString() << " serves less; rebuild against headers no newer than it\n";
    return kRunFailed;
  }
  Ort::InitApi(api);
  std::cout.setf(std::ios::fixed);
  std::cout.precision(3);
  if (options.version) {
    std::cout << "headers ORT_API_VERSION " << ORT_API_VERSION << ", library onnxruntime "
              << OrtGetApiBase()->GetVersionString() << "\n";
    if (options.model.empty()) return 0;
  }

  namespace fs = std::filesystem;
  std::error_code status;
  if (!fs::is_regular_file(options.model, status)) {
    throw InputError("no model file " + options.model + (fs::exists(options.model) ? " (it is a folder)" : "") +
                     "; check the path");
  }
  Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "infer_cli");
  Ort::SessionOptions session_options;
  session_options.SetIntraOpNumThreads(options.threads);
  if (!options.custom_op_library.empty()) {
    if (!fs::is_regular_file(options.custom_op_library, status)) {
      throw InputError("no custom-op library " + options.custom_op_library + "; build it first");
    }
    try {
      session_options.RegisterCustomOpsLibrary(options.custom_op_library.c_str());
    } catch (const Ort::Exception& error) {
      throw InputError("cannot register " + options.custom_op_library + ": " + first_line(error.what()));
    }
  }
  std::unique_ptr<Ort::Session> session;
  try {
    session = std::make_unique<Ort::Session>(env, options.model.c_str(), session_options);
  } catch (const Ort::Exception& error) {
    throw InputError("ONNX Runtime cannot load " + options.model + ": " + first_line(error.what()));
  }

  Ort::AllocatorWithDefaultOptions allocator;
  std::vector<TensorInfo> inputs, outputs;
  for (size_t i = 0; i < session->GetInputCount(); ++i) {
    inputs.push_back(describe(session->GetInputNameAllocated(i, allocator).get(), session->GetInputTypeInfo(i)));
  }
  for (size_t i = 0; i < session->GetOutputCount(); ++i) {
    outputs.push_back(describe(session->GetOutputNameAllocated(i, allocator).get(), session->GetOutputTypeInfo(i)));
  }
  std::cout << "model  " << options.model << "\n";
  for (const auto& info : inputs) std::cout << "input  " << signature(info) << "\n";
  for (const auto& info : outputs) std::cout << "output " << signature(info) << "\n";
  if (options.inputs.empty() && options.time_calls == 0) return 0;

  std::vector<npy::Array> arrays;
  if (!options.inputs.empty()) {
    const std::vector<std::string> files = match_inputs(options, inputs);
    for (size_t i = 0; i < inputs.size(); ++i) {
      npy::Array array = npy::load(files[i]);
      check_array(inputs[i], array, files[i]);
      arrays.push_back(options.time_calls > 0 ? first_row(array, files[i]) : std::move(array));
    }
  } else {
    for (const auto& info : inputs) arrays.push_back(zeros_for(info));
  }

  Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  std::vector<Ort::Value> values;
  std::vector<const char*> input_names, output_names;
  for (size_t i = 0; i < inputs.size(); ++i) {
    values.push_back(Ort::Value::CreateTensor(memory, arrays[i].bytes.data(), arrays[i].bytes.size(),
                                              arrays[i].shape.data(), arrays[i].shape.size(), arrays[i].type));
    input_names.push_back(inputs[i].name.c_str());
  }
  for (const auto& info : outputs) output_names.push_back(info.name.c_str());
  auto call = [&]() {
    return session->Run(Ort::RunOptions{nullptr}, input_names.data(), values.data(), values.size(),
                        output_names.data(), output_names.size());
  };

  std::vector<Ort::Value> results;
  try {
    if (options.time_calls > 0) {
      for (long i = 0; i < options.warmup; ++i) call();
      std::vector<double> latencies_us;
      for (long i = 0; i < options.time_calls; ++i) {
        const auto start = std::chrono::steady_clock::now();
        results = call();
        const auto stop = std::chrono::steady_clock::now();
        latencies_us.push_back(std::chrono::duration<double, std::micro>(stop - start).count());
      }
      std::cout << "timed " << options.time_calls << " calls at batch 1 after " << options.warmup
                << " warm-up calls, intra-op threads " << options.threads << "\nlatency_us";
      for (double latency : latencies_us) std::cout << " " << latency;
      std::vector<double> sorted = latencies_us;
      std::sort(sorted.begin(), sorted.end());
      std::cout << "\nmedian_us " << sorted[sorted.size() / 2] << "\n";
      return 0;
    }
    const auto start = std::chrono::steady_clock::now();
    results = call();
    const auto stop = std::chrono::steady_clock::now();
    std::cout << "ran in " << std::chrono::duration<double, std::milli>(stop - start).count() << " ms\n";
  } catch (const Ort::Exception& error) {
    std::cerr << "error: the run failed: " << first_line(error.what()) << "\n";
    return kRunFailed;
  }

  if (!options.output_dir.empty()) fs::create_directories(options.output_dir, status);
  for (size_t i = 0; i < results.size(); ++i) {
    if (!results[i].IsTensor()) {
      std::cout << "output " << outputs[i].name << " is not a tensor; not written\n";
      continue;
    }
    auto info = results[i].GetTensorTypeAndShapeInfo();
    const auto shape = info.GetShape();
    std::cout << "output " << outputs[i].name << ": " << npy::type_name(info.GetElementType()) << " "
              << shape_text(shape);
    if (options.output_dir.empty()) {
      std::cout << "\n";
      continue;
    }
    const std::string path = (fs::path(options.output_dir) / (safe_file_name(outputs[i].name) + ".npy")).string();
    npy::save(path, info.GetElementType(), shape, results[i].GetTensorRawData(),
              info.GetElementCount() * npy::element_size(info.GetElementType()));
    std::cout << " -> " << path << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  try {
    options = parse_options(argc, argv);
  } catch (const InputError& error) {
    std::cerr << "error: " << error.what() << "; run infer_cli --help for the usage\n";
    return kBadInput;
  }
  if (options.help) {
    std::cout << kUsage;
    return 0;
  }
  try {
    return run(options);
  } catch (const InputError& error) {
    std::cerr << "error: " << error.what() << "\n";
    return kBadInput;
  } catch (const npy::Error& error) {
    std::cerr << "error: " << error.what() << "\n";
    return kBadInput;
  } catch (const std::exception& error) {
    std::cerr << "error: " << first_line(error.what()) << "\n";
    return kRunFailed;
  }
}
