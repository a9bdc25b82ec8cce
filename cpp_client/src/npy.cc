#include "vslim/npy.h"

#include <cstring>
#include <fstream>
#include <sstream>

namespace vslim {
namespace {

[[noreturn]] void Fail(const std::string& path, const std::string& why) {
  throw Error(Error::Kind::kInput, "input " + path + ": " + why);
}

// The value text of `'key': value` in the .npy header's Python dict literal.
std::string HeaderValue(const std::string& header, const std::string& key, const std::string& path) {
  const std::string quoted = "'" + key + "'";
  size_t pos = header.find(quoted);
  if (pos == std::string::npos) Fail(path, "the .npy header has no " + quoted);
  pos = header.find(':', pos + quoted.size());
  if (pos == std::string::npos) Fail(path, "the .npy header is malformed near " + quoted);
  size_t start = header.find_first_not_of(' ', pos + 1);
  if (start == std::string::npos) Fail(path, "the .npy header is malformed near " + quoted);
  size_t end;
  if (header[start] == '(') {
    end = header.find(')', start);
    if (end == std::string::npos) Fail(path, "the .npy shape is not closed");
    return header.substr(start, end - start + 1);
  }
  if (header[start] == '\'') {
    end = header.find('\'', start + 1);
    if (end == std::string::npos) Fail(path, "the .npy header is malformed near " + quoted);
    return header.substr(start + 1, end - start - 1);
  }
  end = header.find_first_of(",}", start);
  return header.substr(start, end - start);
}

std::vector<int64_t> ParseShape(const std::string& text, const std::string& path) {
  std::vector<int64_t> shape;
  std::string inner = text.substr(1, text.size() - 2);
  std::stringstream items(inner);
  std::string item;
  while (std::getline(items, item, ',')) {
    size_t a = item.find_first_not_of(' ');
    if (a == std::string::npos) continue;
    try {
      size_t used = 0;
      long long d = std::stoll(item.substr(a), &used);
      if (d < 0) Fail(path, "negative dimension in shape " + text);
      shape.push_back(d);
    } catch (const std::logic_error&) {
      Fail(path, "cannot read shape " + text);
    }
  }
  return shape;
}

template <typename T>
void ReadValues(const std::string& data, size_t offset, size_t count, std::vector<T>* out, const std::string& path) {
  if (data.size() - offset != count * sizeof(T)) {
    Fail(path, "holds " + std::to_string(data.size() - offset) + " data bytes but its shape needs " +
                   std::to_string(count * sizeof(T)));
  }
  out->resize(count);
  if (count) std::memcpy(out->data(), data.data() + offset, count * sizeof(T));
}

}  // namespace

Tensor ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) Fail(path, "cannot be opened (missing file?)");
  const std::streamoff size = in.tellg();
  if (size < 0) Fail(path, "cannot be read");
  std::string data(static_cast<size_t>(size), '\0');
  in.seekg(0);
  if (!in.read(data.data(), size)) Fail(path, "cannot be read");
  static const char kMagic[] = "\x93NUMPY";
  if (data.size() < 10 || data.compare(0, 6, kMagic, 6) != 0) Fail(path, "is not a .npy file (bad magic)");
  const unsigned char major = static_cast<unsigned char>(data[6]);
  size_t header_len, offset;
  if (major == 1) {
    header_len = static_cast<unsigned char>(data[8]) | static_cast<size_t>(static_cast<unsigned char>(data[9])) << 8;
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (data.size() < 12) Fail(path, "is truncated");
    header_len = 0;
    for (int i = 0; i < 4; ++i) header_len |= static_cast<size_t>(static_cast<unsigned char>(data[8 + i])) << (8 * i);
    offset = 12;
  } else {
    Fail(path, "has .npy format version " + std::to_string(major) + ", expected 1, 2 or 3");
  }
  if (data.size() < offset + header_len) Fail(path, "is truncated inside its header");
  const std::string header = data.substr(offset, header_len);
  offset += header_len;

  const std::string descr = HeaderValue(header, "descr", path);
  if (HeaderValue(header, "fortran_order", path).find("True") != std::string::npos) {
    Fail(path, "is in Fortran order; save it with numpy.ascontiguousarray");
  }
  Tensor t;
  t.shape = ParseShape(HeaderValue(header, "shape", path), path);
  size_t count = 1;
  for (int64_t d : t.shape) count *= static_cast<size_t>(d);
  if (descr == "<f4") {
    t.dtype = DType::kFloat32;
    ReadValues(data, offset, count, &t.f32, path);
  } else if (descr == "<i8") {
    t.dtype = DType::kInt64;
    ReadValues(data, offset, count, &t.i64, path);
  } else if (descr == "<i4") {
    t.dtype = DType::kInt32;
    ReadValues(data, offset, count, &t.i32, path);
  } else {
    Fail(path, "has dtype '" + descr + "'; this client reads float32 ('<f4'), int64 ('<i8') and int32 ('<i4')"
               " — convert with array.astype(numpy.float32)");
  }
  return t;
}

}  // namespace vslim
