// MetricsWriter: appends one JSON object per line to a file (per step, per evaluation).
//
// Contract: disabled when constructed with an empty path (every call is then a no-op).
// Values are numbers (NaN/inf written as null) or strings; each record is flushed so scripts
// can tail the file during a run. Only the rank that owns the writer writes. A file that cannot
// be opened or appended to (a full disk) throws Error naming the OS error: no line is lost in silence.
#pragma once

#include <cstdio>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace tandem {

using MetricValue = std::variant<double, int64_t, std::string>;

class MetricsWriter {
 public:
  explicit MetricsWriter(const std::string& path);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  bool enabled() const { return f_ != nullptr; }
  void write(const std::vector<std::pair<std::string, MetricValue>>& fields);

 private:
  std::FILE* f_ = nullptr;
  std::string path_;
};

}  // namespace tandem
