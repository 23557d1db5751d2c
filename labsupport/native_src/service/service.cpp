// onnx_service: an ONNX model behind HTTP on 127.0.0.1, with dynamic batching (lab 14).
//
//   onnx_service MODEL.onnx [--port N] [--max-batch ROWS] [--max-wait-ms MS] [--queue-capacity REQUESTS]
//                [--max-body-bytes BYTES] [--http-threads N] [--intra-op-threads N] [--parent-pid PID]
//
// Endpoints
//   POST /v1/predict  {"inputs": {NAME: {"shape": [rows, ...], "data": [flat, row-major], "dtype": "float32"}}}
//                     -> {"outputs": {NAME: {"dtype", "shape", "data"}}, "batch_rows", "queue_ms", "model_ms"}
//   GET  /healthz     200 {"status": "ok", the model's inputs and outputs, the settings}; 503 while stopping
//   GET  /metrics     Prometheus text: requests by status code, rows per batch, latency histograms, queue depth
//
// How a request travels: an HTTP thread parses and validates it (400 with what was expected
// when it is wrong), then puts it in a bounded queue (503 at once when the queue is full) and
// waits. One batcher thread takes requests from the queue and runs them as one batch when it
// holds --max-batch rows or when the oldest has waited --max-wait-ms, whichever comes first;
// it concatenates their rows, runs the model once, and hands each request its own rows back.
//
// It listens on 127.0.0.1 only (no option changes that). The first line on stdout is
// "listening on http://127.0.0.1:PORT"; --port 0 (the default) lets the system pick a free port.
// SIGTERM or SIGINT stops it cleanly: the port is closed to new connections, requests already
// received are answered, then it exits 0. Start-up errors print one "error:" line and exit 2.

#include <onnxruntime_cxx_api.h>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <future>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char *kHost = "127.0.0.1";

struct Settings {
  std::string model;
  int port = 0;
  int64_t max_batch = 32;
  double max_wait_ms = 2.0;
  size_t queue_capacity = 64;
  size_t max_body_bytes = 1 << 20;
  size_t http_threads = 128;
  int intra_op_threads = 1;
  long parent_pid = 0;
};

[[noreturn]] void fail(const std::string &message) {
  std::cerr << "error: " << message << std::endl;
  std::exit(2);
}

const char *kUsage =
    "usage: onnx_service MODEL.onnx [--port N] [--max-batch ROWS] [--max-wait-ms MS] [--queue-capacity REQUESTS]\n"
    "                   [--max-body-bytes BYTES] [--http-threads N] [--intra-op-threads N] [--parent-pid PID]\n"
    "Serves MODEL.onnx on http://127.0.0.1:PORT (POST /v1/predict, GET /healthz, GET /metrics).\n"
    "  --port N               0 (default): any free port; the first line printed names it\n"
    "  --max-batch ROWS       run a batch once it holds this many rows (default 32)\n"
    "  --max-wait-ms MS       ... or once its oldest request has waited this long (default 2)\n"
    "  --queue-capacity N     requests that may wait; one more gets 503 at once (default 64)\n"
    "  --max-body-bytes N     larger request bodies get 400 (default 1048576)\n"
    "  --http-threads N       connections served at once (default 128)\n"
    "  --intra-op-threads N   ONNX Runtime's threads per run (default 1)\n"
    "  --parent-pid PID       stop (as on SIGTERM) when the thread that started this process ends;\n"
    "                         PID is the starter's process id (Linux; a crashed notebook leaves no server)\n";

double parse_number(const std::string &flag, const char *text, double low, double high) {
  char *end = nullptr;
  errno = 0;
  const double value = std::strtod(text, &end);
  if (errno != 0 || end == text || *end != '\0' || !(value >= low && value <= high)) {
    std::ostringstream message;
    message << flag << " " << text << " is not a number from " << low << " to " << high << "; run with --help";
    fail(message.str());
  }
  return value;
}

Settings parse_arguments(int argc, char **argv) {
  Settings settings;
  for (int i = 1; i < argc; ++i) {
    const std::string argument = argv[i];
    if (argument == "--help" || argument == "-h") {
      std::cout << kUsage;
      std::exit(0);
    }
    if (argument.rfind("--", 0) != 0) {
      if (!settings.model.empty()) fail("more than one model given (" + argument + "); run with --help");
      settings.model = argument;
      continue;
    }
    if (i + 1 >= argc) fail(argument + " needs a value; run with --help");
    const char *value = argv[++i];
    if (argument == "--port") {
      settings.port = static_cast<int>(parse_number(argument, value, 0, 65535));
    } else if (argument == "--max-batch") {
      settings.max_batch = static_cast<int64_t>(parse_number(argument, value, 1, 1 << 20));
    } else if (argument == "--max-wait-ms") {
      settings.max_wait_ms = parse_number(argument, value, 0, 60000);
    } else if (argument == "--queue-capacity") {
      settings.queue_capacity = static_cast<size_t>(parse_number(argument, value, 1, 1 << 20));
    } else if (argument == "--max-body-bytes") {
      settings.max_body_bytes = static_cast<size_t>(parse_number(argument, value, 64, 1 << 30));
    } else if (argument == "--http-threads") {
      settings.http_threads = static_cast<size_t>(parse_number(argument, value, 1, 4096));
    } else if (argument == "--intra-op-threads") {
      settings.intra_op_threads = static_cast<int>(parse_number(argument, value, 0, 1024));
    } else if (argument == "--parent-pid") {
      settings.parent_pid = static_cast<long>(parse_number(argument, value, 1, 1 << 30));
    } else {
      fail("unknown option " + argument + "; run with --help");
    }
  }
  if (settings.model.empty()) fail("no model given; usage: onnx_service MODEL.onnx [options] (--help lists them)");
  return settings;
}

// ---------------------------------------------------------------------------
// Element types: the four a JSON number can carry without loss of meaning
// ---------------------------------------------------------------------------

struct ElementType {
  ONNXTensorElementDataType onnx;
  const char *name;  // NumPy's spelling, as clients write it
  size_t size;
  bool integral;
};

const ElementType kElementTypes[] = {
    {ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, "float32", 4, false},
    {ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE, "float64", 8, false},
    {ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32, "int32", 4, true},
    {ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, "int64", 8, true},
};

const ElementType *find_element_type(ONNXTensorElementDataType type) {
  for (const auto &known : kElementTypes) {
    if (known.onnx == type) return &known;
  }
  return nullptr;
}

// ---------------------------------------------------------------------------
// The model's signature: every input and output must have a batch axis first
// ---------------------------------------------------------------------------

struct TensorSpec {
  std::string name;
  const ElementType *type;
  std::vector<int64_t> row_dims;  // the dimensions after the batch axis
  size_t row_elements = 1;

  std::string shape_text() const {
    std::string text = "[rows";
    for (const auto dim : row_dims) text += ", " + std::to_string(dim);
    return text + "]";
  }
};

TensorSpec describe_tensor(const std::string &kind, const std::string &name, const Ort::TypeInfo &info) {
  if (info.GetONNXType() != ONNX_TYPE_TENSOR) {
    fail(kind + " '" + name + "' is not a tensor; this service serves models whose inputs and outputs are tensors");
  }
  const auto tensor = info.GetTensorTypeAndShapeInfo();
  TensorSpec spec{name, find_element_type(tensor.GetElementType()), {}, 1};
  if (spec.type == nullptr) {
    fail(kind + " '" + name + "' has an element type this service does not carry in JSON; it serves float32, "
         "float64, int32 and int64 tensors");
  }
  const auto dims = tensor.GetShape();
  if (dims.empty() || dims[0] >= 0) {
    fail(kind + " '" + name + "' has no dynamic first (batch) dimension, so requests cannot be batched; "
         "export the model with a dynamic batch axis (lab 04) or make it dynamic (lab 12)");
  }
  for (size_t axis = 1; axis < dims.size(); ++axis) {
    if (dims[axis] < 0 && kind == "input") {
      fail("input '" + name + "' has a dynamic dimension " + std::to_string(axis) + " besides the batch axis; "
           "this service batches rows of one fixed shape: fix that dimension in the model first");
    }
    spec.row_dims.push_back(dims[axis]);
    spec.row_elements *= static_cast<size_t>(std::max<int64_t>(dims[axis], 1));
  }
  return spec;
}

std::string signature_text(const std::vector<TensorSpec> &specs) {
  std::string text;
  for (const auto &spec : specs) {
    if (!text.empty()) text += ", ";
    text += "'" + spec.name + "' " + spec.type->name + " " + spec.shape_text();
  }
  return text;
}

// ---------------------------------------------------------------------------
// Metrics (Prometheus text exposition format)
// ---------------------------------------------------------------------------

std::string format_number(double value) {
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.9g", value);
  return buffer;
}

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

  void observe(double value) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
    ++counts_[static_cast<size_t>(bucket)];
    sum_ += value;
    ++count_;
  }

  static void write_header(std::ostream &out, const std::string &name, const std::string &help) {
    out << "# HELP " << name << " " << help << "\n# TYPE " << name << " histogram\n";
  }

  // ``labels`` is empty or a list such as ``code="200"``; every sample gets them.
  void write_samples(std::ostream &out, const std::string &name, const std::string &labels = "") const {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::string prefix = labels.empty() ? "" : labels + ",";
    const std::string braces = labels.empty() ? "" : "{" + labels + "}";
    uint64_t cumulative = 0;
    for (size_t i = 0; i < bounds_.size(); ++i) {
      cumulative += counts_[i];
      out << name << "_bucket{" << prefix << "le=\"" << format_number(bounds_[i]) << "\"} " << cumulative << "\n";
    }
    out << name << "_bucket{" << prefix << "le=\"+Inf\"} " << count_ << "\n";
    out << name << "_sum" << braces << " " << format_number(sum_) << "\n"
        << name << "_count" << braces << " " << count_ << "\n";
  }

  void write(std::ostream &out, const std::string &name, const std::string &help) const {
    write_header(out, name, help);
    write_samples(out, name);
  }

 private:
  mutable std::mutex mutex_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;

 public:
  uint64_t count() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return count_;
  }
};

std::vector<double> batch_bounds(int64_t max_batch) {
  std::vector<double> bounds;
  for (int64_t rows = 1; rows < max_batch; rows *= 2) bounds.push_back(static_cast<double>(rows));
  bounds.push_back(static_cast<double>(max_batch));
  return bounds;
}

const std::vector<double> kSecondsBounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                            0.025,  0.05,    0.1,    0.25,  0.5,   1,     2.5};

struct Metrics {
  explicit Metrics(int64_t max_batch) : batch_rows(batch_bounds(max_batch)) {
    for (const int code : {200, 400, 503}) answer_seconds(code);
  }

  // One answer to POST /v1/predict with ``code``, ``seconds`` after its request was read.
  void record(int code, double seconds) { answer_seconds(code).observe(seconds); }

  // One answer with no duration: a body refused for its size, before the handler read it.
  void count_only(int code) {
    std::lock_guard<std::mutex> lock(mutex);
    ++unread[code];
    answer_seconds_locked(code);
  }

  void write_answers(std::ostream &out) {
    std::lock_guard<std::mutex> lock(mutex);
    out << "# HELP onnx_service_requests_total Answers to POST /v1/predict, by HTTP status code.\n"
        << "# TYPE onnx_service_requests_total counter\n";
    for (const auto &[code, histogram] : seconds_by_code) {
      out << "onnx_service_requests_total{code=\"" << code << "\"} " << histogram->count() + unread[code] << "\n";
    }
    Histogram::write_header(out, "onnx_service_request_duration_seconds",
                            "Time from reading a request to its answer, by HTTP status code (a body refused for "
                            "its size is counted in onnx_service_requests_total only).");
    for (const auto &[code, histogram] : seconds_by_code) {
      histogram->write_samples(out, "onnx_service_request_duration_seconds", "code=\"" + std::to_string(code) + "\"");
    }
  }

  Histogram batch_rows;
  Histogram queue_seconds{kSecondsBounds};
  Histogram inference_seconds{kSecondsBounds};

 private:
  Histogram &answer_seconds(int code) {
    std::lock_guard<std::mutex> lock(mutex);
    return answer_seconds_locked(code);
  }

  Histogram &answer_seconds_locked(int code) {
    auto &slot = seconds_by_code[code];
    if (!slot) slot = std::make_unique<Histogram>(kSecondsBounds);
    return *slot;
  }

  std::mutex mutex;
  std::map<int, std::unique_ptr<Histogram>> seconds_by_code;
  std::map<int, uint64_t> unread;
};

// ---------------------------------------------------------------------------
// Requests, the bounded queue and the batcher
// ---------------------------------------------------------------------------

struct BatchOutputs {
  std::vector<Ort::Value> values;
  int64_t rows = 0;
};

struct Result {
  int status = 200;
  std::string error;
  std::shared_ptr<BatchOutputs> outputs;  // shared by every request of the batch
  int64_t first_row = 0;
  double queue_ms = 0;
  double model_ms = 0;
};

struct Pending {
  int64_t rows = 0;
  std::vector<std::vector<char>> inputs;  // one buffer per model input, in the model's order
  Clock::time_point enqueued;
  std::promise<Result> result;
};

class Batcher {
 public:
  Batcher(Ort::Session &session, const std::vector<TensorSpec> &inputs, const std::vector<TensorSpec> &outputs,
          const Settings &settings, Metrics &metrics)
      : session_(session), inputs_(inputs), outputs_(outputs), settings_(settings), metrics_(metrics),
        max_wait_(std::chrono::microseconds(static_cast<int64_t>(settings.max_wait_ms * 1000))) {
    for (const auto &spec : inputs_) input_names_.push_back(spec.name.c_str());
    for (const auto &spec : outputs_) output_names_.push_back(spec.name.c_str());
  }

  // False when the queue is full: the caller answers 503 at once.
  bool try_enqueue(const std::shared_ptr<Pending> &pending) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (queue_.size() >= settings_.queue_capacity) return false;
      pending->enqueued = Clock::now();
      queue_.push_back(pending);
      queued_rows_ += pending->rows;
      depth_peak_ = std::max(depth_peak_, queue_.size());
    }
    wake_.notify_one();
    return true;
  }

  size_t depth() {
    std::lock_guard<std::mutex> lock(mutex_);
    return queue_.size();
  }

  size_t depth_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    return depth_peak_;
  }

  // Stop waiting for batches to fill: SIGTERM arrived, run what is queued now.
  void drain() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      draining_ = true;
    }
    wake_.notify_all();
  }

  // The HTTP server has stopped; run what is left and return from run().
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      draining_ = stopping_ = true;
    }
    wake_.notify_all();
  }

  void run() {
    for (;;) {
      std::vector<std::shared_ptr<Pending>> batch;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return !queue_.empty() || stopping_; });
        if (queue_.empty()) return;
        const auto deadline = queue_.front()->enqueued + max_wait_;
        wake_.wait_until(lock, deadline, [&] { return draining_ || queued_rows_ >= settings_.max_batch; });
        int64_t rows = 0;
        while (!queue_.empty() && rows + queue_.front()->rows <= settings_.max_batch) {
          rows += queue_.front()->rows;
          queued_rows_ -= queue_.front()->rows;
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      run_batch(batch);
    }
  }

 private:
  void run_batch(std::vector<std::shared_ptr<Pending>> &batch) {
    const auto started = Clock::now();
    int64_t rows = 0;
    for (const auto &pending : batch) rows += pending->rows;
    auto memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    std::vector<std::vector<char>> buffers(inputs_.size());
    std::vector<Ort::Value> tensors;
    for (size_t i = 0; i < inputs_.size(); ++i) {
      for (const auto &pending : batch) {
        buffers[i].insert(buffers[i].end(), pending->inputs[i].begin(), pending->inputs[i].end());
      }
      std::vector<int64_t> shape{rows};
      shape.insert(shape.end(), inputs_[i].row_dims.begin(), inputs_[i].row_dims.end());
      tensors.push_back(Ort::Value::CreateTensor(memory, buffers[i].data(), buffers[i].size(), shape.data(),
                                                 shape.size(), inputs_[i].type->onnx));
    }
    auto outputs = std::make_shared<BatchOutputs>();
    outputs->rows = rows;
    std::string error;
    const auto model_started = Clock::now();
    try {
      outputs->values = session_.Run(Ort::RunOptions{nullptr}, input_names_.data(), tensors.data(), tensors.size(),
                                     output_names_.data(), output_names_.size());
      for (size_t i = 0; i < outputs->values.size() && error.empty(); ++i) {
        const auto shape = outputs->values[i].GetTensorTypeAndShapeInfo().GetShape();
        if (shape.empty() || shape[0] != rows) {
          error = "output '" + outputs_[i].name + "' does not have one row per input row, so it cannot be split "
                  "between requests";
        }
      }
    } catch (const std::exception &exception) {  // Ort::Exception, or running out of memory
      error = std::string("the model failed on a batch of ") + std::to_string(rows) + " rows: " + exception.what();
    }
    const auto finished = Clock::now();
    const double model_ms = std::chrono::duration<double, std::milli>(finished - model_started).count();
    metrics_.batch_rows.observe(static_cast<double>(rows));
    metrics_.inference_seconds.observe(model_ms / 1000);
    int64_t first_row = 0;
    for (auto &pending : batch) {
      Result result;
      result.queue_ms = std::chrono::duration<double, std::milli>(started - pending->enqueued).count();
      metrics_.queue_seconds.observe(result.queue_ms / 1000);
      result.model_ms = model_ms;
      if (error.empty()) {
        result.outputs = outputs;
        result.first_row = first_row;
      } else {
        result.status = 500;
        result.error = error;
      }
      first_row += pending->rows;
      pending->result.set_value(std::move(result));
    }
  }

  Ort::Session &session_;
  const std::vector<TensorSpec> &inputs_;
  const std::vector<TensorSpec> &outputs_;
  const Settings &settings_;
  Metrics &metrics_;
  const Clock::duration max_wait_;
  std::vector<const char *> input_names_;
  std::vector<const char *> output_names_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Pending>> queue_;
  int64_t queued_rows_ = 0;
  size_t depth_peak_ = 0;
  bool draining_ = false;
  bool stopping_ = false;
};

// ---------------------------------------------------------------------------
// Parsing and answering one request
// ---------------------------------------------------------------------------

const char *json_kind(const json &value) {
  if (value.is_null()) return "null";
  if (value.is_boolean()) return "a boolean";
  if (value.is_string()) return "a string";
  if (value.is_array()) return "a list";
  if (value.is_object()) return "an object";
  return "a number";
}

std::string shape_text(const std::vector<int64_t> &shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

template <typename T>
void store(std::vector<char> &buffer, size_t index, T value) {
  std::memcpy(buffer.data() + index * sizeof(T), &value, sizeof(T));
}

// Fills ``pending`` from the request body, or returns what is wrong with it.
std::string parse_request(const std::string &body, const std::vector<TensorSpec> &inputs, const Settings &settings,
                          Pending &pending) {
  const std::string expected_form =
      "send {\"inputs\": {NAME: {\"shape\": [rows, ...], \"data\": [numbers, flat in row-major order]}}} "
      "with the model's inputs " + signature_text(inputs);
  json request;
  try {
    request = json::parse(body);
  } catch (const json::parse_error &error) {
    return "the body is not valid JSON (byte " + std::to_string(error.byte) + "); " + expected_form;
  }
  if (!request.is_object() || !request.contains("inputs") || !request["inputs"].is_object()) {
    return "the body has no \"inputs\" object; " + expected_form;
  }
  const auto &given = request["inputs"];
  for (const auto &item : given.items()) {
    const bool known = std::any_of(inputs.begin(), inputs.end(), [&](const TensorSpec &spec) {
      return spec.name == item.key();
    });
    if (!known) return "the model has no input '" + item.key() + "'; its inputs are " + signature_text(inputs);
  }
  pending.inputs.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto &spec = inputs[i];
    const std::string named = "input '" + spec.name + "'";
    if (!given.contains(spec.name)) return named + " is missing; the model's inputs are " + signature_text(inputs);
    const auto &tensor = given[spec.name];
    if (!tensor.is_object() || !tensor.contains("shape") || !tensor.contains("data")) {
      return named + " must be an object with \"shape\" and \"data\"; " + expected_form;
    }
    if (tensor.contains("dtype") && !(tensor["dtype"].is_string() && tensor["dtype"] == spec.type->name)) {
      const std::string given_type = tensor["dtype"].is_string() ? tensor["dtype"].get<std::string>() : "not a string";
      return named + " has dtype " + given_type + "; the model expects " + spec.type->name;
    }
    const auto &shape_json = tensor["shape"];
    std::vector<int64_t> shape;
    bool shape_ok = shape_json.is_array();
    for (const auto &dim : shape_ok ? shape_json : json::array()) {
      if (!dim.is_number_integer() || dim.get<int64_t>() < 0) {
        shape_ok = false;
        break;
      }
      shape.push_back(dim.get<int64_t>());
    }
    const std::string wanted = "the model expects " + spec.shape_text() + " with 1 <= rows <= " +
                               std::to_string(settings.max_batch) + " (--max-batch)";
    if (!shape_ok) return named + " has a \"shape\" that is not a list of whole numbers; " + wanted;
    bool matches = shape.size() == spec.row_dims.size() + 1 && shape[0] >= 1 && shape[0] <= settings.max_batch;
    for (size_t axis = 1; matches && axis < shape.size(); ++axis) matches = shape[axis] == spec.row_dims[axis - 1];
    if (!matches) return named + " has shape " + shape_text(shape) + "; " + wanted;
    if (i > 0 && shape[0] != pending.rows) {
      return named + " has " + std::to_string(shape[0]) + " rows but '" + inputs[0].name + "' has " +
             std::to_string(pending.rows) + "; every input needs the same number of rows";
    }
    pending.rows = shape[0];
    const auto &data = tensor["data"];
    const size_t count = static_cast<size_t>(shape[0]) * spec.row_elements;
    if (!data.is_array()) return named + " has \"data\" that is " + json_kind(data) + "; send a flat list of numbers";
    if (data.size() != count) {
      return named + " has " + std::to_string(data.size()) + " values in \"data\"; its shape " + shape_text(shape) +
             " needs " + std::to_string(count) + " (a flat list, row-major)";
    }
    auto &buffer = pending.inputs[i];
    buffer.resize(count * spec.type->size);
    for (size_t k = 0; k < count; ++k) {
      const auto &value = data[k];
      const bool right_kind = spec.type->integral ? value.is_number_integer() : value.is_number();
      if (!right_kind) {
        const std::string what = value.is_number() ? "the number " + value.dump() : std::string(json_kind(value));
        return named + " has " + what + " at data[" + std::to_string(k) + "]; the model expects " +
               (spec.type->integral ? "whole numbers (" : "numbers (") + spec.type->name + ")";
      }
      switch (spec.type->onnx) {
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: store(buffer, k, static_cast<float>(value.get<double>())); break;
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: store(buffer, k, value.get<double>()); break;
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: store(buffer, k, value.get<int64_t>()); break;
        default: {
          const auto wide = value.get<int64_t>();
          if (wide < std::numeric_limits<int32_t>::min() || wide > std::numeric_limits<int32_t>::max()) {
            return named + " has " + value.dump() + " at data[" + std::to_string(k) + "], outside int32's range";
          }
          store(buffer, k, static_cast<int32_t>(wide));
        }
      }
    }
  }
  return "";
}

// Python's json module reads NaN and Infinity, which strict JSON has no spelling for.
template <typename T>
void append_number(std::string &out, T value) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(value)) {
      out += "NaN";
      return;
    }
    if (std::isinf(value)) {
      out += value > 0 ? "Infinity" : "-Infinity";
      return;
    }
  }
  char buffer[32];
  // Shortest text that reads back as the same value of T (float32 stays float32)
  const auto written = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, written.ptr);
}

template <typename T>
void append_rows(std::string &out, const Ort::Value &value, int64_t first_row, int64_t rows, size_t row_elements) {
  const T *data = value.GetTensorData<T>() + first_row * static_cast<int64_t>(row_elements);
  const size_t count = static_cast<size_t>(rows) * row_elements;
  for (size_t k = 0; k < count; ++k) {
    if (k) out += ',';
    append_number(out, data[k]);
  }
}

std::string response_body(const Result &result, int64_t rows, const std::vector<TensorSpec> &outputs) {
  std::string out = "{\"outputs\":{";
  for (size_t i = 0; i < outputs.size(); ++i) {
    const auto &value = result.outputs->values[i];
    const auto info = value.GetTensorTypeAndShapeInfo();
    auto shape = info.GetShape();
    const size_t row_elements = static_cast<size_t>(info.GetElementCount() / result.outputs->rows);
    shape[0] = rows;
    out += (i ? "," : "") + json(outputs[i].name).dump() + ":{\"dtype\":\"" + outputs[i].type->name +
           "\",\"shape\":" + json(shape).dump() + ",\"data\":[";
    switch (outputs[i].type->onnx) {
      case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: append_rows<float>(out, value, result.first_row, rows, row_elements); break;
      case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: append_rows<double>(out, value, result.first_row, rows, row_elements); break;
      case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: append_rows<int32_t>(out, value, result.first_row, rows, row_elements); break;
      default: append_rows<int64_t>(out, value, result.first_row, rows, row_elements);
    }
    out += "]}";
  }
  out += "},\"batch_rows\":" + std::to_string(result.outputs->rows) + ",\"queue_ms\":" +
         format_number(result.queue_ms) + ",\"model_ms\":" + format_number(result.model_ms) + "}";
  return out;
}

std::string error_body(const std::string &message) { return json{{"error", message}}.dump(); }

json signature_json(const std::vector<TensorSpec> &specs) {
  json described = json::object();
  for (const auto &spec : specs) {
    json shape = json::array({"rows"});
    for (const auto dim : spec.row_dims) shape.push_back(dim >= 0 ? json(dim) : json(nullptr));
    described[spec.name] = {{"dtype", spec.type->name}, {"shape", shape}};
  }
  return described;
}

std::string model_file_name(const std::string &path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

int main(int argc, char **argv) {
  const Settings settings = parse_arguments(argc, argv);

  // Signals are handled by sigwait in this thread: block them before any other thread starts
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  if (settings.parent_pid != 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != settings.parent_pid) fail("the process that started this one has already ended");
  }

  Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "onnx_service");
  Ort::SessionOptions options;
  options.SetIntraOpNumThreads(settings.intra_op_threads);
  options.SetInterOpNumThreads(1);
  options.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
  std::unique_ptr<Ort::Session> session;
  try {
    session = std::make_unique<Ort::Session>(env, settings.model.c_str(), options);
  } catch (const Ort::Exception &exception) {
    std::string message = exception.what();
    message = message.substr(0, message.find('\n'));
    fail("cannot load the model " + settings.model + ": " + message);
  }
  Ort::AllocatorWithDefaultOptions allocator;
  std::vector<TensorSpec> inputs, outputs;
  for (size_t i = 0; i < session->GetInputCount(); ++i) {
    inputs.push_back(describe_tensor("input", session->GetInputNameAllocated(i, allocator).get(),
                                     session->GetInputTypeInfo(i)));
  }
  for (size_t i = 0; i < session->GetOutputCount(); ++i) {
    outputs.push_back(describe_tensor("output", session->GetOutputNameAllocated(i, allocator).get(),
                                      session->GetOutputTypeInfo(i)));
  }

  Metrics metrics(settings.max_batch);
  Batcher batcher(*session, inputs, outputs, settings, metrics);
  std::thread batcher_thread([&] { batcher.run(); });
  std::atomic<bool> stopping{false};
  std::atomic<uint64_t> answered{0};

  httplib::Server server;
  const size_t http_threads = settings.http_threads;
  server.new_task_queue = [http_threads] { return new httplib::ThreadPool(http_threads); };
  server.set_keep_alive_max_count(std::numeric_limits<int>::max());
  server.set_tcp_nodelay(true);  // answers are small: do not let Nagle's algorithm hold them back
  // httplib 0.11's default sets SO_REUSEPORT, which would let another process of the same user
  // listen on this port too and take a share of its connections; SO_REUSEADDR only lets a new
  // service take the port over while old connections linger in TIME_WAIT.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  server.set_payload_max_length(settings.max_body_bytes);

  const auto reply = [&](httplib::Response &response, int status, const std::string &body,
                         Clock::time_point started) {
    response.status = status;
    response.set_content(body, "application/json");
    metrics.record(status, std::chrono::duration<double>(Clock::now() - started).count());
    ++answered;
  };

  server.Post("/v1/predict", [&](const httplib::Request &request, httplib::Response &response) {
    const auto started = Clock::now();
    if (stopping) {
      reply(response, 503, error_body("the service is stopping; send the request to another replica"), started);
      return;
    }
    auto pending = std::make_shared<Pending>();
    const std::string problem = parse_request(request.body, inputs, settings, *pending);
    if (!problem.empty()) {
      reply(response, 400, error_body(problem), started);
      return;
    }
    auto future = pending->result.get_future();
    if (!batcher.try_enqueue(pending)) {
      response.set_header("Retry-After", "1");
      reply(response, 503, error_body("the queue is full (" + std::to_string(settings.queue_capacity) +
                                      " requests waiting, --queue-capacity); retry later"),
            started);
      return;
    }
    const Result result = future.get();
    if (result.status != 200) {
      reply(response, result.status, error_body(result.error), started);
      return;
    }
    reply(response, 200, response_body(result, pending->rows, outputs), started);
  });

  server.Get("/healthz", [&](const httplib::Request &, httplib::Response &response) {
    json health = {{"status", stopping ? "stopping" : "ok"},
                   {"model", model_file_name(settings.model)},
                   {"inputs", signature_json(inputs)},
                   {"outputs", signature_json(outputs)},
                   {"max_batch_rows", settings.max_batch},
                   {"max_wait_ms", settings.max_wait_ms},
                   {"queue_capacity", settings.queue_capacity},
                   {"onnxruntime", Ort::GetVersionString()}};
    response.status = stopping ? 503 : 200;
    response.set_content(health.dump(), "application/json");
  });

  server.Get("/metrics", [&](const httplib::Request &, httplib::Response &response) {
    std::ostringstream out;
    metrics.write_answers(out);
    metrics.batch_rows.write(out, "onnx_service_batch_rows", "Rows in each batch the model ran.");
    metrics.queue_seconds.write(out, "onnx_service_queue_wait_seconds",
                                "Time a request waited in the queue before its batch started.");
    metrics.inference_seconds.write(out, "onnx_service_inference_duration_seconds",
                                    "Time of each model run (one batch).");
    out << "# HELP onnx_service_queue_depth Requests waiting in the queue now.\n"
        << "# TYPE onnx_service_queue_depth gauge\nonnx_service_queue_depth " << batcher.depth() << "\n"
        << "# HELP onnx_service_queue_depth_peak The most requests that waited at once since the start.\n"
        << "# TYPE onnx_service_queue_depth_peak gauge\nonnx_service_queue_depth_peak " << batcher.depth_peak() << "\n"
        << "# HELP onnx_service_queue_capacity Requests that may wait before the service answers 503.\n"
        << "# TYPE onnx_service_queue_capacity gauge\nonnx_service_queue_capacity " << settings.queue_capacity
        << "\n# HELP onnx_service_max_batch_rows Rows at which a batch runs without waiting longer.\n"
        << "# TYPE onnx_service_max_batch_rows gauge\nonnx_service_max_batch_rows " << settings.max_batch
        << "\n# HELP onnx_service_max_wait_seconds How long the oldest request may wait for a batch to fill.\n"
        << "# TYPE onnx_service_max_wait_seconds gauge\nonnx_service_max_wait_seconds "
        << format_number(settings.max_wait_ms / 1000) << "\n";
    response.set_content(out.str(), "text/plain; version=0.0.4; charset=utf-8");
  });

  // httplib answers some requests itself (unknown path, a body over the limit, a malformed
  // request line); give those a JSON message too. An oversized body is a client error like
  // any other bad request here, so it is answered 400 (HTTP's specific code would be 413).
  server.set_error_handler(httplib::Server::HandlerWithResponse([&](const httplib::Request &request,
                                                                   httplib::Response &response) {
    if (!response.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    if (response.status == 413) {
      response.status = 400;
      response.set_content(error_body("the body is larger than " + std::to_string(settings.max_body_bytes) +
                                      " bytes (--max-body-bytes); send fewer rows per request"),
                           "application/json");
      if (request.path == "/v1/predict") {
        metrics.count_only(400);
        ++answered;
      }
    } else if (response.status == 404) {
      response.set_content(error_body("no such endpoint: " + request.method + " " + request.path +
                                      "; this service has POST /v1/predict, GET /healthz and GET /metrics"),
                           "application/json");
    } else {
      response.set_content(error_body("the request is not valid HTTP (status " + std::to_string(response.status) +
                                      "); send POST /v1/predict with a JSON body"),
                           "application/json");
    }
    return httplib::Server::HandlerResponse::Handled;
  }));

  const int port = settings.port == 0 ? server.bind_to_any_port(kHost)
                                      : (server.bind_to_port(kHost, settings.port) ? settings.port : -1);
  if (port < 0) fail("cannot listen on " + std::string(kHost) + ":" + std::to_string(settings.port) +
                     " (is the port in use?); choose another with --port, or 0 for any free one");
  std::atomic<bool> http_ended{false};
  std::thread http_thread([&] {
    server.listen_after_bind();
    http_ended = true;
    if (!stopping) kill(getpid(), SIGTERM);  // the server ended on its own: let main shut down
  });
  while (!server.is_running() && !http_ended) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (http_ended) {
    http_thread.join();
    batcher.stop();
    batcher_thread.join();
    fail("the HTTP server stopped as it started; run again, or choose another --port");
  }
  std::cout << "listening on http://" << kHost << ":" << port << " (model " << model_file_name(settings.model)
            << ", max batch " << settings.max_batch << " rows, max wait " << settings.max_wait_ms
            << " ms, queue capacity " << settings.queue_capacity << ")" << std::endl;

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  stopping = true;
  batcher.drain();  // run what is queued now instead of waiting for batches to fill
  server.stop();    // close the port; requests already received are still answered
  http_thread.join();
  batcher.stop();
  batcher_thread.join();
  std::cout << "stopped on " << (signal_number == SIGINT ? "SIGINT" : "SIGTERM") << " after " << answered.load()
            << " answers to /v1/predict" << std::endl;
  return 0;
}
