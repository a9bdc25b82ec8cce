#include "vslim/client.h"

#include <grpcpp/grpcpp.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "general_model_config.pb.h"
#include "general_model_service.grpc.pb.h"

namespace vslim {
namespace {

namespace config_pb = baidu::paddle_serving::configure;
namespace service_pb = baidu::paddle_serving::predictor::general_model;

constexpr int kMaxMessageBytes = 512 << 20;
constexpr char kClientConf[] = "serving_client_conf.prototxt";
constexpr char kClientSuffix[] = "_serving_client";
constexpr char kServerSuffix[] = "_serving_server";

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

bool IsDirectory(const std::string& path) {
  struct stat info {};
  return stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

bool EndsWith(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The *_serving_client folder `path` stands for: itself, the one inside a bundle folder, or the twin of a
// *_serving_server folder. Unresolvable paths come back as they are; Load then names the missing file.
std::string ClientFolder(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path dir(path);
  if (fs::is_regular_file(dir / kClientConf, ec)) return path;
  fs::path clean = dir.lexically_normal();
  if (!clean.has_filename()) clean = clean.parent_path();  // "folder/"
  const std::string name = clean.filename().string();
  if (EndsWith(name, kServerSuffix)) {
    const fs::path twin =
        clean.parent_path() / (name.substr(0, name.size() - std::strlen(kServerSuffix)) + kClientSuffix);
    if (fs::is_directory(twin, ec)) return twin.string();
  }
  std::vector<std::string> inside;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_directory(ec) && EndsWith(entry.path().filename().string(), kClientSuffix)) {
      inside.push_back(entry.path().string());
    }
  }
  if (inside.size() > 1) {
    std::sort(inside.begin(), inside.end());
    std::string names;
    for (const auto& p : inside) names += (names.empty() ? "" : ", ") + fs::path(p).filename().string();
    throw Error(Error::Kind::kConfig, "bundle folder " + path + " holds " + std::to_string(inside.size()) +
                                          " client folders (" + names + "); give --bundle one of them");
  }
  return inside.empty() ? path : inside.front();
}

std::string Lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// A short reason when a gRPC UNAVAILABLE message says the connection itself failed (nothing listening,
// unknown host), empty otherwise (a server's own UNAVAILABLE, a TLS mismatch: something did answer).
std::string ConnectCause(const std::string& message) {
  const std::string low = Lower(message);
  const std::pair<const char*, const char*> causes[] = {
      {"connection refused", "connection refused"},       {"dns resolution failed", "host name not found"},
      {"errors resolving", "host name not found"},        {"domain name not found", "host name not found"},
      {"name or service not known", "host name not found"}, {"no route to host", "no route to host"},
      {"network is unreachable", "network unreachable"},  {"connection timed out", "connection timed out"}};
  for (const auto& [needle, cause] : causes) {
    if (low.find(needle) != std::string::npos) return cause;
  }
  if (low.find("failed to connect to remote host") != std::string::npos) {
    const auto colon = low.rfind(": ");
    return colon == std::string::npos ? "connection failed" : low.substr(colon + 2);
  }
  return "";
}

// Collects TextFormat parse errors instead of letting protobuf print them to stderr.
class ParseErrors : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column, const std::string& message) override {
    if (first_.empty()) first_ = "line " + std::to_string(line + 1) + ", column " + std::to_string(column + 1) + ": " + message;
  }
  const std::string& first() const { return first_; }

 private:
  std::string first_;
};

DType ToDType(int code, const std::string& var, const std::string& path) {
  switch (code) {
    case 0: return DType::kInt64;
    case 1: return DType::kFloat32;
    case 2: return DType::kInt32;
    default:
      throw Error(Error::Kind::kConfig, path + ": variable '" + var + "' has type code " + std::to_string(code) +
                                            ", which this client does not support (float32, int64, int32)");
  }
}

template <typename Var>
VarInfo ToVarInfo(const Var& var, int code, const std::string& path) {
  VarInfo info;
  info.name = var.name();
  info.alias = var.alias_name().empty() ? var.name() : var.alias_name();
  info.dtype = ToDType(code, var.name(), path);
  for (int d : var.shape()) info.shape.push_back(d);
  return info;
}

const char* StatusName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "UNKNOWN";
  }
}

void CheckFeed(const std::string& key, const Tensor& t, const VarInfo& var) {
  if (t.dtype != var.dtype) {
    throw Error(Error::Kind::kInput, "feed '" + key + "' must be " + DTypeName(var.dtype) + ", got " +
                                         DTypeName(t.dtype));
  }
  std::vector<int64_t> want{-1};
  want.insert(want.end(), var.shape.begin(), var.shape.end());
  bool ok = t.shape.size() == want.size() && !t.shape.empty() && t.shape[0] > 0;
  for (size_t i = 1; ok && i < want.size(); ++i) ok = want[i] < 0 || want[i] == t.shape[i];
  if (!ok) {
    throw Error(Error::Kind::kInput, "feed '" + key + "' has shape " + ShapeText(t.shape) +
                                         " but the model expects " + ShapeText(want) + " (-1: any batch size)");
  }
  if (t.NumValues() != t.NumElements()) {
    throw Error(Error::Kind::kInput, "feed '" + key + "' holds " + std::to_string(t.NumValues()) +
                                         " values but its shape needs " + std::to_string(t.NumElements()));
  }
}

Tensor FromProto(const service_pb::Tensor& pt) {
  Tensor t;
  for (int d : pt.shape()) t.shape.push_back(d);
  switch (pt.elem_type()) {
    case 0:
      t.dtype = DType::kInt64;
      t.i64.assign(pt.int64_data().begin(), pt.int64_data().end());
      break;
    case 1:
      t.dtype = DType::kFloat32;
      t.f32.assign(pt.float_data().begin(), pt.float_data().end());
      break;
    case 2:
      t.dtype = DType::kInt32;
      t.i32.assign(pt.int_data().begin(), pt.int_data().end());
      break;
    default:
      throw Error(Error::Kind::kServer, "output '" + pt.alias_name() + "' has type code " +
                                            std::to_string(pt.elem_type()) + ", which this client does not read");
  }
  if (t.NumValues() != t.NumElements()) {
    throw Error(Error::Kind::kServer, "output '" + pt.alias_name() + "' holds " + std::to_string(t.NumValues()) +
                                          " values for shape " + ShapeText(t.shape));
  }
  return t;
}

}  // namespace

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kInt64: return "int64";
    case DType::kFloat32: return "float32";
    case DType::kInt32: return "int32";
  }
  return "unknown";
}

size_t Tensor::NumElements() const {
  size_t n = shape.empty() ? 0 : 1;
  for (int64_t d : shape) n *= d > 0 ? static_cast<size_t>(d) : 0;
  return n;
}

size_t Tensor::NumValues() const {
  switch (dtype) {
    case DType::kInt64: return i64.size();
    case DType::kFloat32: return f32.size();
    case DType::kInt32: return i32.size();
  }
  return 0;
}

std::string Address::ToString() const {
  const std::string shown = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return shown + ":" + std::to_string(port);
}

Address ParseAddress(const std::string& text) {
  const std::string usage = "address '" + text + "' is not valid; give HOST[:PORT], e.g. 127.0.0.1:9393, "
                            "localhost or [::1]:9393 (port 1-65535, default 9393)";
  Address address;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos) throw Error(Error::Kind::kConfig, usage);
    address.host = text.substr(1, close - 1);
    const std::string rest = text.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') throw Error(Error::Kind::kConfig, usage);
    if (!rest.empty()) {
      address.port_given = true;
      port = rest.substr(1);
    }
  } else if (std::count(text.begin(), text.end(), ':') > 1) {  // a bare IPv6 address: no port to tell apart
    address.host = text;
  } else {
    const auto colon = text.find(':');
    address.host = text.substr(0, colon);
    if (colon != std::string::npos) {
      address.port_given = true;
      port = text.substr(colon + 1);
    }
  }
  if (address.host.empty()) throw Error(Error::Kind::kConfig, usage);
  if (address.port_given) {
    const bool digits = !port.empty() && port.size() <= 5 &&
                        std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    address.port = digits ? std::stoi(port) : 0;
    if (address.port < 1 || address.port > 65535) throw Error(Error::Kind::kConfig, usage);
  }
  return address;
}

ClientConfig ClientConfig::Load(const std::string& path) {
  const std::string folder = IsDirectory(path) ? ClientFolder(path) : "";
  const std::string file = folder.empty() ? path : folder + "/" + kClientConf;
  std::ifstream in(file);
  if (!in) {
    throw Error(Error::Kind::kConfig, "client config " + file +
                                          " cannot be read; give --bundle the bundle folder, its *_serving_client "
                                          "folder or that folder's serving_client_conf.prototxt");
  }
  std::stringstream text;
  text << in.rdbuf();
  config_pb::GeneralModelConfig conf;
  ParseErrors errors;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text.str(), &conf)) {
    throw Error(Error::Kind::kConfig, "client config " + file + " is not a valid GeneralModelConfig: " +
                                          errors.first());
  }
  if (conf.feed_var_size() == 0 || conf.fetch_var_size() == 0) {
    throw Error(Error::Kind::kConfig, "client config " + file + " declares no feed_var or no fetch_var");
  }
  ClientConfig config;
  for (const auto& v : conf.feed_var()) config.feeds_.push_back(ToVarInfo(v, v.feed_type(), file));
  for (const auto& v : conf.fetch_var()) config.fetches_.push_back(ToVarInfo(v, v.fetch_type(), file));
  return config;
}

const VarInfo* ClientConfig::FindFeed(const std::string& key) const {
  for (const auto& v : feeds_) {
    if (v.alias == key || v.name == key) return &v;
  }
  return nullptr;
}

const VarInfo* ClientConfig::FindFetch(const std::string& key) const {
  for (const auto& v : fetches_) {
    if (v.alias == key || v.name == key) return &v;
  }
  return nullptr;
}

std::string ReadTextFile(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in || IsDirectory(path)) throw Error(Error::Kind::kConfig, what + " " + path + " cannot be read");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string ReadTokenFile(const std::string& path) {
  const std::string text = ReadTextFile(path, "token file");
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) throw Error(Error::Kind::kConfig, "token file " + path + " is empty");
  const auto last = text.find_last_not_of(" \t\r\n");
  std::string token = text.substr(first, last - first + 1);
  // gRPC metadata values must be printable ASCII; anything else would abort inside gRPC.
  for (char c : token) {
    if (c <= ' ' || c > '~') {
      throw Error(Error::Kind::kConfig, "token file " + path +
                                            " must hold one line of printable ASCII without spaces, as "
                                            "vslim-serve --auth-token-file requires");
    }
  }
  return token;
}

struct Client::Impl {
  std::string address;
  ClientConfig config;
  std::chrono::milliseconds deadline;
  std::string token;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<service_pb::GeneralModelService::Stub> stub;
};

Client::Client(const std::string& host, int port, ClientConfig config, std::chrono::milliseconds deadline,
               Security security)
    : impl_(new Impl) {
  Address address;
  address.host = host.size() > 1 && host.front() == '[' && host.back() == ']' ? host.substr(1, host.size() - 2) : host;
  address.port = port;
  impl_->address = address.ToString();
  impl_->config = std::move(config);
  impl_->deadline = deadline;
  impl_->token = std::move(security.token);
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!security.tls_ca_pem.empty()) {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = security.tls_ca_pem;
    credentials = grpc::SslCredentials(tls);
  }
  impl_->channel = grpc::CreateCustomChannel(impl_->address, credentials, args);
  impl_->stub = service_pb::GeneralModelService::NewStub(impl_->channel);
}

Client::~Client() = default;

const ClientConfig& Client::config() const { return impl_->config; }

std::map<std::string, Tensor> Client::Predict(const std::map<std::string, Tensor>& feeds,
                                              const std::vector<std::string>& fetch) const {
  const ClientConfig& config = impl_->config;
  service_pb::Request request;
  for (const auto& [key, tensor] : feeds) {
    const VarInfo* var = config.FindFeed(key);
    if (var == nullptr) {
      std::string known;
      for (const auto& v : config.feeds()) known += (known.empty() ? "" : ", ") + v.alias;
      throw Error(Error::Kind::kInput, "unknown feed '" + key + "'; the model takes " + known);
    }
    CheckFeed(key, tensor, *var);
    service_pb::Tensor* pt = request.add_tensor();
    pt->set_name(var->name);
    pt->set_alias_name(var->alias);
    pt->set_elem_type(static_cast<int>(tensor.dtype));
    for (int64_t d : tensor.shape) pt->add_shape(static_cast<int32_t>(d));
    switch (tensor.dtype) {
      case DType::kFloat32: pt->mutable_float_data()->Add(tensor.f32.begin(), tensor.f32.end()); break;
      case DType::kInt64: pt->mutable_int64_data()->Add(tensor.i64.begin(), tensor.i64.end()); break;
      case DType::kInt32: pt->mutable_int_data()->Add(tensor.i32.begin(), tensor.i32.end()); break;
    }
  }
  for (const auto& name : fetch) {
    if (config.FindFetch(name) == nullptr) {
      throw Error(Error::Kind::kInput, "unknown fetch '" + name + "'");
    }
    request.add_fetch_var_names(name);
  }
  if (fetch.empty()) {
    for (const auto& v : config.fetches()) request.add_fetch_var_names(v.alias);
  }

  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + impl_->deadline);
  if (!impl_->token.empty()) context.AddMetadata("authorization", "Bearer " + impl_->token);
  service_pb::Response response;
  grpc::Status status = impl_->stub->inference(&context, request, &response);
  if (!status.ok()) {
    std::string err_no;
    const auto& trailers = context.GetServerTrailingMetadata();
    auto it = trailers.find("err_no");
    if (it != trailers.end()) err_no = " (err_no " + std::string(it->second.data(), it->second.size()) + ")";
    const std::string cause = status.error_code() == grpc::StatusCode::UNAVAILABLE
                                  ? ConnectCause(status.error_message()) : "";
    if (!cause.empty()) {
      throw Error(Error::Kind::kUnreachable,
                  "no server at " + impl_->address + " \u2014 is vslim-serve running? (" + cause + ")");
    }
    std::string where = status.error_code() == grpc::StatusCode::UNAVAILABLE ? "server " + impl_->address +
                                                                                   " is unreachable or unavailable: "
                                                                             : "server " + impl_->address + ": ";
    throw Error(Error::Kind::kRpc, where + "gRPC " + StatusName(status.error_code()) + err_no + ": " +
                                       status.error_message());
  }
  if (response.err_no() != 0) {
    throw Error(Error::Kind::kServer, "server error " + std::to_string(response.err_no()) + ": " + response.err_msg());
  }
  std::map<std::string, Tensor> outputs;
  for (const auto& model_output : response.outputs()) {
    for (const auto& pt : model_output.tensor()) {
      outputs[pt.alias_name().empty() ? pt.name() : pt.alias_name()] = FromProto(pt);
    }
  }
  return outputs;
}

}  // namespace vslim
