// Error formatting: "file:line: check `cond` failed: message".
#include "runtime/core/error.h"

#include <cstring>

namespace tandem::detail {

void throw_check(const char* file, int line, const char* cond, const std::string& msg) {
  const char* base = std::strrchr(file, '/');
  throw Error(fmt::format("{}:{}: check `{}` failed: {}", base ? base + 1 : file, line, cond, msg));
}

}  // namespace tandem::detail
