// JSON-lines metrics output.
#include "runtime/train/metrics.h"

#include <cerrno>
#include <cmath>

#include "runtime/core/error.h"
#include "runtime/core/file_io.h"

namespace tandem {

MetricsWriter::MetricsWriter(const std::string& path) : path_(path) {
  if (path.empty()) return;
  f_ = std::fopen(path.c_str(), "a");
  TANDEM_CHECK(f_ != nullptr, "cannot open metrics file '{}' for appending: {}", path, os_error(errno));
}

MetricsWriter::~MetricsWriter() {
  if (f_) std::fclose(f_);
}

namespace {
std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\', out += c;
    else if (static_cast<unsigned char>(c) < 0x20) out += fmt::format("\\u{:04x}", c);
    else out += c;
  }
  return out;
}
}  // namespace

void MetricsWriter::write(const std::vector<std::pair<std::string, MetricValue>>& fields) {
  if (!f_) return;
  std::string line = "{";
  for (size_t i = 0; i < fields.size(); ++i) {
    const auto& [key, value] = fields[i];
    line += fmt::format("{}\"{}\": ", i ? ", " : "", json_escape(key));
    if (const double* d = std::get_if<double>(&value)) {
      line += std::isfinite(*d) ? fmt::format("{:.17g}", *d) : "null";
    } else if (const int64_t* n = std::get_if<int64_t>(&value)) {
      line += std::to_string(*n);
    } else {
      line += '"';
      line += json_escape(std::get<std::string>(value));
      line += '"';
    }
  }
  line += "}\n";
  if (std::fputs(line.c_str(), f_) < 0 || std::fflush(f_) != 0)
    throw Error(fmt::format("cannot append to metrics file '{}': {}", path_, os_error(errno)));
}

}  // namespace tandem
