// Reading NumPy .npy files (format versions 1-3, little-endian float32/int64/int32, C order).
#pragma once

#include <string>

#include "vslim/client.h"

namespace vslim {

// Throws vslim::Error (kInput) naming the file and what is wrong with it.
Tensor ReadNpy(const std::string& path);

}  // namespace vslim
