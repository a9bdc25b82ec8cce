// vslim C++ client: Paddle Serving's GeneralModelService over gRPC.
//
//   vslim::ClientConfig config = vslim::ClientConfig::Load("model_serving_client");
//   vslim::Client client("127.0.0.1", 9393, config, std::chrono::seconds(30));
//   auto outputs = client.Predict({{"data_batch_0", clip}}, {"outputs"});
//
// Against a server started with --tls-cert/--tls-key and --auth-token-file:
//   vslim::Security security{vslim::ReadTextFile("ca.pem"), "the-token"};
//   vslim::Client client("127.0.0.1", 9393, config, std::chrono::seconds(30), security);
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace vslim {

// Paddle Serving's type codes for the tensor types this client sends and receives.
enum class DType : int { kInt64 = 0, kFloat32 = 1, kInt32 = 2 };

const char* DTypeName(DType dtype);

// A dense tensor, batch dimension first. Exactly one of the value vectors is used, by dtype.
struct Tensor {
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  std::vector<float> f32;
  std::vector<int64_t> i64;
  std::vector<int32_t> i32;

  // Elements the shape describes.
  size_t NumElements() const;
  // Elements actually held in the vector of this dtype.
  size_t NumValues() const;
};

// Every failure the client reports; kind() tells which side is at fault. kUnreachable: nothing
// answered at the address (refused, unknown host), as opposed to a server that answered with an error.
class Error : public std::runtime_error {
 public:
  enum class Kind { kConfig, kInput, kRpc, kServer, kUnreachable };
  Error(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

// A feed or fetch variable as the bundle's client config declares it.
struct VarInfo {
  std::string name;
  std::string alias;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;  // without the batch dimension
};

// vslim-serve's port: what an address without a port means (gRPC alone would take 443).
constexpr int kDefaultPort = 9393;

// A server address: "HOST", "HOST:PORT", "[IPv6]", "[IPv6]:PORT" or a bare IPv6 address.
struct Address {
  std::string host;        // without brackets
  int port = kDefaultPort;
  bool port_given = false;  // the text named a port

  // "host:port", with brackets around an IPv6 host: what gRPC and the messages use.
  std::string ToString() const;
};

// Error(kConfig) naming the text and the accepted forms when it is not an address.
Address ParseAddress(const std::string& text);

// The feed/fetch declaration of a model, read from serving_client_conf.prototxt.
class ClientConfig {
 public:
  // `path` is a bundle folder (vslim-package --out), its *_serving_client folder or that folder's
  // serving_client_conf.prototxt; a *_serving_server folder leads to its *_serving_client twin.
  static ClientConfig Load(const std::string& path);

  const std::vector<VarInfo>& feeds() const { return feeds_; }
  const std::vector<VarInfo>& fetches() const { return fetches_; }
  // By alias or name; nullptr when unknown.
  const VarInfo* FindFeed(const std::string& key) const;
  const VarInfo* FindFetch(const std::string& key) const;

 private:
  std::vector<VarInfo> feeds_;
  std::vector<VarInfo> fetches_;
};

// How to reach a server that uses TLS and/or a bearer token; empty fields mean off.
struct Security {
  std::string tls_ca_pem;  // PEM certificate(s) to trust; non-empty switches the channel to TLS
  std::string token;       // sent as "authorization: Bearer <token>" metadata on every call
};

// A whole small text file (a certificate, a token); Error(kConfig) naming the file when unreadable.
std::string ReadTextFile(const std::string& path, const std::string& what);

// A token file's content without surrounding whitespace; Error(kConfig) when empty.
std::string ReadTokenFile(const std::string& path);

class Client {
 public:
  // `host` may be an IPv6 address, bracketed or not. Predict() throws Error(kUnreachable) with
  // "no server at HOST:PORT — is vslim-serve running? (cause)" when nothing answers there.
  Client(const std::string& host, int port, ClientConfig config, std::chrono::milliseconds deadline,
         Security security = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // One inference request. Feeds are keyed by alias (or name) and checked against the
  // config before sending; outputs come back keyed by fetch alias. Empty `fetch` = all.
  std::map<std::string, Tensor> Predict(const std::map<std::string, Tensor>& feeds,
                                        const std::vector<std::string>& fetch) const;

  const ClientConfig& config() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vslim
