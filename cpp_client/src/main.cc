// vslim_cpp_client: classify a clip stored as .npy through a vslim (or Paddle Serving) server.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "vslim/client.h"
#include "vslim/npy.h"
#include "vslim/stats.h"

namespace {

// Exit statuses (stable; listed in --help).
constexpr int kUsageError = 2;   // bad flags, bundle config or input
constexpr int kServerError = 3;  // no server at the address, or the server refused or failed the request

const char kUsage[] =
    "usage: vslim_cpp_client --bundle PATH --input FILE.npy [--address HOST[:PORT]] [--top-k 1]\n"
    "                        [--fetch NAME] [--repeat 1] [--warmup 3] [--timeout-ms 30000] [--no-softmax]\n"
    "                        [--json] [--tls-ca CA.pem] [--auth-token-file FILE]\n";

const char kHelp[] =
    "\n"
    "Classify preprocessed clips (.npy) through a vslim-serve (or Paddle Serving) server, over gRPC\n"
    "(Paddle Serving's GeneralModelService).\n"
    "\n"
    "  --bundle PATH       the bundle folder vslim-package --target serving wrote, its *_serving_client\n"
    "                      folder or that folder's serving_client_conf.prototxt (required; alias --client-conf)\n"
    "  --input FILE.npy    a .npy clip: [batch, ...feed shape] or [...feed shape], float32/int64/int32 (required)\n"
    "  --address HOST[:PORT]  the server: HOST, HOST:PORT, [IPv6] or [IPv6]:PORT; without a port, 9393\n"
    "                      (vslim-serve's default) (default 127.0.0.1:9393; alias --host)\n"
    "  --port PORT         the server's port, 1-65535, when --address names none (default 9393)\n"
    "  --fetch NAME        output to read (default: the first fetch var, 'outputs' in vslim bundles)\n"
    "  --top-k K           classes to print per sample, >= 1 (default 1; alias --topk); scores are softmax\n"
    "                      probabilities of the logits unless --no-softmax\n"
    "  --repeat N          send the request N times and print latency p50/p90/p99, >= 1 (default 1)\n"
    "  --warmup N          untimed requests before the timed ones when --repeat > 1, >= 0 (default 3)\n"
    "  --timeout-ms MS     deadline of each request in milliseconds, >= 1 (default 30000)\n"
    "  --no-softmax        print the output values as they are (default: softmax of the logits)\n"
    "  --json              print one JSON object instead of PaddleVideo-style lines\n"
    "  --tls-ca CA.pem     PEM certificate(s) to trust: talk TLS to a server started with --tls-cert\n"
    "                      (default: plaintext)\n"
    "  --auth-token-file FILE  file holding the server's bearer token (--auth-token-file of vslim-serve;\n"
    "                      default: none)\n"
    "  -h, --help          print this help and exit\n"
    "\n"
    "exit status: 0 success; 2 bad flags, bundle or input; 3 no server at the address (\"no server at\n"
    "HOST:PORT \u2014 is vslim-serve running? (cause)\"), or the server refused or failed the request\n";

struct Options {
  vslim::Address address;
  std::string conf;
  std::string input;
  std::string fetch;
  size_t topk = 1;
  int repeat = 1;
  int warmup = 3;
  long timeout_ms = 30000;
  bool softmax = true;
  bool json = false;
  std::string tls_ca;
  std::string token_file;
};

[[noreturn]] void UsageError(const std::string& message) {
  std::cerr << "vslim_cpp_client: error: " << message << "\n" << kUsage << "(--help lists every flag)\n";
  std::exit(kUsageError);
}

long ParseNumber(const std::string& flag, const std::string& text, long min) {
  char* end = nullptr;
  long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || value < min) {
    UsageError(flag + " needs a whole number >= " + std::to_string(min) + ", got '" + text + "'");
  }
  return value;
}

Options Parse(int argc, char** argv) {
  Options o;
  std::string address = "127.0.0.1";
  std::string address_flag = "--address";
  long port = 0;  // 0: not given
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << kUsage << kHelp;
      std::exit(0);
    }
    if (flag == "--no-softmax") {
      o.softmax = false;
      continue;
    }
    if (flag == "--json") {
      o.json = true;
      continue;
    }
    if (i + 1 >= argc) UsageError(flag + " needs a value");
    const std::string value = argv[++i];
    if (flag == "--address" || flag == "--host") {
      address = value;
      address_flag = flag;
    } else if (flag == "--port") {
      port = ParseNumber(flag, value, 1);
    } else if (flag == "--bundle" || flag == "--client-conf") {
      o.conf = value;
    } else if (flag == "--input") {
      o.input = value;
    } else if (flag == "--fetch") {
      o.fetch = value;
    } else if (flag == "--top-k" || flag == "--topk") {
      o.topk = static_cast<size_t>(ParseNumber(flag, value, 1));
    } else if (flag == "--repeat") {
      o.repeat = static_cast<int>(ParseNumber(flag, value, 1));
    } else if (flag == "--warmup") {
      o.warmup = static_cast<int>(ParseNumber(flag, value, 0));
    } else if (flag == "--timeout-ms") {
      o.timeout_ms = ParseNumber(flag, value, 1);
    } else if (flag == "--tls-ca") {
      o.tls_ca = value;
    } else if (flag == "--auth-token-file") {
      o.token_file = value;
    } else {
      UsageError("unknown flag " + flag);
    }
  }
  if (o.conf.empty()) UsageError("--bundle is required (the bundle folder or its *_serving_client folder)");
  if (o.input.empty()) UsageError("--input is required");
  try {
    o.address = vslim::ParseAddress(address);
  } catch (const vslim::Error& e) {
    UsageError(address_flag + ": " + e.what());
  }
  if (port > 65535) UsageError("--port must be 1-65535");
  if (port != 0) {
    if (o.address.port_given && o.address.port != port) {
      UsageError(address_flag + " " + address + " and --port " + std::to_string(port) +
                 " name different ports; give the port once");
    }
    o.address.port = static_cast<int>(port);
  }
  return o;
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

int Run(const Options& o) {
  vslim::ClientConfig config = vslim::ClientConfig::Load(o.conf);
  vslim::Tensor input = vslim::ReadNpy(o.input);
  const vslim::VarInfo& feed = config.feeds().front();
  if (input.shape.size() == feed.shape.size()) input.shape.insert(input.shape.begin(), 1);  // one sample
  const std::string fetch = o.fetch.empty() ? config.fetches().front().alias : o.fetch;
  vslim::Security security;
  if (!o.tls_ca.empty()) security.tls_ca_pem = vslim::ReadTextFile(o.tls_ca, "TLS CA certificate");
  if (!o.token_file.empty()) security.token = vslim::ReadTokenFile(o.token_file);
  vslim::Client client(o.address.host, o.address.port, config, std::chrono::milliseconds(o.timeout_ms), security);

  std::map<std::string, vslim::Tensor> outputs;
  for (int i = 0; o.repeat > 1 && i < o.warmup; ++i) client.Predict({{feed.alias, input}}, {fetch});
  std::vector<double> latencies_ms;
  for (int i = 0; i < o.repeat; ++i) {
    auto start = std::chrono::steady_clock::now();
    outputs = client.Predict({{feed.alias, input}}, {fetch});
    latencies_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  auto it = outputs.find(fetch);
  if (it == outputs.end() && !outputs.empty()) it = outputs.begin();
  if (it == outputs.end()) throw vslim::Error(vslim::Error::Kind::kServer, "the response holds no output");
  const vslim::Tensor& out = it->second;
  if (out.dtype != vslim::DType::kFloat32 || out.shape.size() != 2) {
    throw vslim::Error(vslim::Error::Kind::kServer, "output '" + it->first + "' is not a [batch, classes] float32 "
                                                                                "score matrix; cannot print top-k");
  }
  const size_t batch = static_cast<size_t>(out.shape[0]);
  const size_t classes = static_cast<size_t>(out.shape[1]);

  std::ostringstream json;
  json.precision(9);
  json << "{\"fetch\": " << JsonString(it->first) << ", \"shape\": [" << batch << ", " << classes
       << "], \"samples\": [";
  std::cout.precision(9);
  for (size_t b = 0; b < batch; ++b) {
    const float* row = out.f32.data() + b * classes;
    std::vector<float> scores = o.softmax ? vslim::Softmax(row, classes) : std::vector<float>(row, row + classes);
    auto top = vslim::TopK(scores, o.topk);
    json << (b ? ", " : "") << "{\"classes\": [";
    for (size_t j = 0; j < top.size(); ++j) json << (j ? ", " : "") << top[j].first;
    json << "], \"scores\": [";
    for (size_t j = 0; j < top.size(); ++j) json << (j ? ", " : "") << top[j].second;
    json << "]}";
    if (!o.json) {
      std::cout << "Current input: " << o.input << " (sample " << b << " of " << batch << ")\n";
      for (size_t j = 0; j < top.size(); ++j) {
        std::cout << "\ttop-" << j + 1 << " class: " << top[j].first << "\n"
                  << "\ttop-" << j + 1 << " score: " << top[j].second << "\n";
      }
    }
  }
  json << "]";
  const double p50 = vslim::Percentile(latencies_ms, 50), p90 = vslim::Percentile(latencies_ms, 90),
               p99 = vslim::Percentile(latencies_ms, 99);
  if (o.repeat > 1) {
    json << ", \"latency_ms\": {\"calls\": " << o.repeat << ", \"p50\": " << p50 << ", \"p90\": " << p90
         << ", \"p99\": " << p99 << "}";
    if (!o.json) {
      std::printf("latency over %d calls: p50 %.3f ms, p90 %.3f ms, p99 %.3f ms\n", o.repeat, p50, p90, p99);
    }
  }
  json << "}";
  if (o.json) std::cout << json.str() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = Parse(argc, argv);
  try {
    return Run(options);
  } catch (const vslim::Error& e) {
    std::cerr << "vslim_cpp_client: error: " << e.what() << "\n";
    const bool remote = e.kind() == vslim::Error::Kind::kRpc || e.kind() == vslim::Error::Kind::kServer ||
                        e.kind() == vslim::Error::Kind::kUnreachable;
    return remote ? kServerError : kUsageError;
  } catch (const std::exception& e) {
    std::cerr << "vslim_cpp_client: error: " << e.what() << "\n";
    return kServerError;
  }
}
