// Errors, tier 1 and 2 (see docs/architecture.md).
//
// Contract: library code never calls exit(); it throws tandem::Error (or a subclass) whose
// message names the values involved and the source location. One place in launch/ catches,
// logs with the rank, and aborts the whole job.
//   TANDEM_CHECK(cond, "fmt {}", args...)  -> precondition with formatted values
//   TANDEM_CHECK_EQ(a, b) etc.              -> prints both operands
#pragma once

#include <spdlog/fmt/fmt.h>

#include <stdexcept>
#include <string>

namespace tandem {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// A user-facing configuration mistake (bad key, bad value, bad layout). Reported without a
// stack of internals: the message alone must tell the user what to change.
class ConfigError : public Error {
 public:
  explicit ConfigError(const std::string& what) : Error(what) {}
};

// A collective or point-to-point operation that did not complete within its watchdog.
class TimeoutError : public Error {
 public:
  explicit TimeoutError(const std::string& what) : Error(what) {}
};

namespace detail {
[[noreturn]] void throw_check(const char* file, int line, const char* cond, const std::string& msg);
}  // namespace detail

}  // namespace tandem

#define TANDEM_CHECK(cond, ...)                                                          \
  do {                                                                                   \
    if (!(cond)) [[unlikely]]                                                            \
      ::tandem::detail::throw_check(__FILE__, __LINE__, #cond, fmt::format(__VA_ARGS__)); \
  } while (0)

#define TANDEM_CHECK_OP_(a, b, op)                                                           \
  do {                                                                                       \
    const auto& tandem_a_ = (a);                                                             \
    const auto& tandem_b_ = (b);                                                             \
    if (!(tandem_a_ op tandem_b_)) [[unlikely]]                                              \
      ::tandem::detail::throw_check(__FILE__, __LINE__, #a " " #op " " #b,                   \
                                    fmt::format("{} vs {}", tandem_a_, tandem_b_));          \
  } while (0)

#define TANDEM_CHECK_EQ(a, b) TANDEM_CHECK_OP_(a, b, ==)
#define TANDEM_CHECK_LE(a, b) TANDEM_CHECK_OP_(a, b, <=)
#define TANDEM_CHECK_LT(a, b) TANDEM_CHECK_OP_(a, b, <)
#define TANDEM_CHECK_GE(a, b) TANDEM_CHECK_OP_(a, b, >=)
#define TANDEM_CHECK_GT(a, b) TANDEM_CHECK_OP_(a, b, >)
