// Checkpoint root attributes: writing, reading, cross-checks (contract in the header).
#include "runtime/train/checkpoint_header.h"

#include <spdlog/fmt/fmt.h>

#include <map>
#include <set>
#include <variant>

#include "runtime/model/param_catalogue.h"

namespace tandem {

const char* const kTandemVersion = "0.7.0";
const char* const kCheckpointStates[3] = {"m", "v", "master"};

const std::vector<std::string> kChecksummedRootAttrs = {
    "format",    "format_version",      "tandem_version",     "step",      "weights_version", "data_position",
    "seed",      "rng",                 "config",             "layout",    "has_optimizer_state",
    "has_master_weights", "adam_step",  "model_layers",       "model_dim", "model_heads",     "model_vocab",
    "model_seq_len"};

namespace {

using ckpt::CheckpointError;
using Value = std::variant<int64_t, std::string>;

std::string attr_line(const std::string& name, const Value& v) {
  if (const int64_t* i = std::get_if<int64_t>(&v)) return fmt::format("{}={}\n", name, *i);
  return name + "=" + std::get<std::string>(v) + "\n";
}

}  // namespace

void write_checkpoint_attrs(ckpt::TensorFileWriter& w, const ModelOptions& m, const CheckpointMeta& meta,
                            bool has_optimizer_state, bool has_master) {
  const std::map<std::string, Value> attrs = {
      {"format", std::string("tandem-checkpoint")},
      {"format_version", kCheckpointFormatVersion},
      {"tandem_version", std::string(kTandemVersion)},
      {"step", meta.step},
      {"weights_version", meta.step},
      {"data_position", meta.step},
      {"seed", static_cast<int64_t>(meta.seed)},
      {"rng", std::string("counter-based: every random draw is a pure function of (seed, step, index)")},
      {"config", meta.config_yaml},
      {"layout", meta.layout},
      {"has_optimizer_state", int64_t{has_optimizer_state ? 1 : 0}},
      {"has_master_weights", int64_t{has_master ? 1 : 0}},
      {"adam_step", has_optimizer_state ? meta.step : int64_t{0}},
      {"model_layers", int64_t{m.layers}},
      {"model_dim", int64_t{m.dim}},
      {"model_heads", int64_t{m.heads}},
      {"model_vocab", int64_t{m.vocab}},
      {"model_seq_len", int64_t{m.seq_len}}};
  std::string text;
  for (const std::string& name : kChecksummedRootAttrs) {
    const Value& v = attrs.at(name);
    if (const int64_t* i = std::get_if<int64_t>(&v)) w.attr(name, *i);
    else w.attr(name, std::get<std::string>(v));
    text += attr_line(name, v);
  }
  w.attr_uint64("attrs_checksum", ckpt::text_checksum(text));
}

CheckpointHeader read_checkpoint_header(const ckpt::TensorFileReader& r) {
  const std::string& file = r.path();
  const auto fmt_attr = r.attr("format");
  if (!fmt_attr || fmt_attr->kind != "string" || fmt_attr->text != "tandem-checkpoint")
    throw CheckpointError(fmt::format("checkpoint {}: no format attribute \"tandem-checkpoint\" (not a Tandem "
                                      "checkpoint?)", file));
  const auto fv = r.attr("format_version");
  if (!fv || fv->kind != "int")
    throw CheckpointError(fmt::format("checkpoint {}: no integer format_version attribute (not a Tandem checkpoint?)",
                                      file));
  if (fv->too_wide || fv->value < kOldestCheckpointFormatVersion || fv->value > kCheckpointFormatVersion)
    throw CheckpointError(fmt::format("checkpoint {}: format version {} is unknown (this Tandem {} reads versions {} "
                                      "to {})", file, fv->too_wide ? static_cast<uint64_t>(fv->value) : fv->value,
                                      kTandemVersion, kOldestCheckpointFormatVersion, kCheckpointFormatVersion));
  CheckpointHeader h;
  h.format_version = fv->value;
  std::vector<std::string> problems;
  std::string text;
  std::map<std::string, int64_t> ints;
  std::map<std::string, std::string> strings;
  const std::set<std::string> string_attrs = {"format", "tandem_version", "rng", "config", "layout"};
  for (const std::string& name : kChecksummedRootAttrs) {
    const auto a = r.attr(name);
    const bool want_string = string_attrs.count(name) > 0;
    if (!a) {
      problems.push_back(fmt::format("no {} attribute", name));
      continue;
    }
    if (a->kind != (want_string ? "string" : "int")) {
      problems.push_back(fmt::format("attribute {} is a {}, not a{}", name, a->kind, want_string ? " string" : "n integer"));
      continue;
    }
    if (want_string) {
      strings[name] = a->text;
      text += attr_line(name, a->text);
    } else if (a->too_wide) {
      problems.push_back(fmt::format("attribute {} = {} does not fit a signed 64-bit integer", name,
                                     static_cast<uint64_t>(a->value)));
      text += fmt::format("{}={}\n", name, static_cast<uint64_t>(a->value));
    } else {
      ints[name] = a->value;
      text += attr_line(name, a->value);
    }
  }
  if (h.format_version >= 2) {
    const auto stored = r.attr("attrs_checksum");
    const uint64_t computed = ckpt::text_checksum(text);
    if (!stored || stored->kind != "int")
      problems.push_back("no integer attrs_checksum attribute (format version 2 has one)");
    else if (static_cast<uint64_t>(stored->value) != computed)
      problems.push_back(fmt::format("the root attributes fail their checksum (attrs_checksum {:016x}, the "
                                     "attributes hash to {:016x}): an attribute was changed after the save",
                                     static_cast<uint64_t>(stored->value), computed));
  }
  auto get = [&](const char* k) { return ints.count(k) ? ints[k] : int64_t{0}; };
  h.step = get("step");
  h.weights_version = get("weights_version");
  h.data_position = get("data_position");
  h.adam_step = get("adam_step");
  h.seed = get("seed");
  if (ints.count("step") && (h.step < 0 || h.step > kMaxCheckpointStep))
    problems.push_back(fmt::format("step {} is outside [0, {}] (steps count in 32 bits)", h.step, kMaxCheckpointStep));
  for (const char* k : {"has_optimizer_state", "has_master_weights"})
    if (ints.count(k) && ints[k] != 0 && ints[k] != 1) problems.push_back(fmt::format("{} is {}, not 0 or 1", k, ints[k]));
  h.has_optimizer_state = get("has_optimizer_state") == 1;
  h.has_master_weights = get("has_master_weights") == 1;
  if (ints.count("step")) {
    for (const char* k : {"weights_version", "data_position"})
      if (ints.count(k) && ints[k] != h.step)
        problems.push_back(fmt::format("{} is {} but step is {} (they are always equal)", k, ints[k], h.step));
    const int64_t want_adam = h.has_optimizer_state ? h.step : 0;
    if (ints.count("adam_step") && h.adam_step != want_adam)
      problems.push_back(fmt::format("adam_step is {} but {} (step {}, has_optimizer_state {})", h.adam_step,
                                     h.has_optimizer_state ? "equals step" : "is 0 without optimizer state", h.step,
                                     h.has_optimizer_state ? 1 : 0));
  }
  if (h.has_master_weights && !h.has_optimizer_state)
    problems.push_back("has_master_weights is 1 but has_optimizer_state is 0");
  std::pair<const char*, int*> sizes[] = {{"model_layers", &h.model.layers}, {"model_dim", &h.model.dim},
                                          {"model_heads", &h.model.heads},   {"model_vocab", &h.model.vocab},
                                          {"model_seq_len", &h.model.seq_len}};
  for (auto [k, dst] : sizes) {
    if (!ints.count(k)) continue;
    if (ints[k] < 1 || ints[k] > INT32_MAX) problems.push_back(fmt::format("{} is {}, outside [1, {}]", k, ints[k], INT32_MAX));
    else *dst = static_cast<int>(ints[k]);
  }
  h.tandem_version = strings["tandem_version"];
  h.config = strings["config"];
  h.layout = strings["layout"];
  if (!problems.empty())
    throw CheckpointError(fmt::format("checkpoint {}: its root attributes are not to be trusted: {}", file,
                                      fmt::join(problems, "; ")));
  return h;
}

std::vector<std::string> dataset_problems(const ckpt::TensorFileReader& r, const ModelOptions& m, bool with_optimizer) {
  std::vector<std::string> problems;
  std::set<std::string> expected;
  auto check = [&](const std::string& name, const ckpt::Dims& shape) {
    expected.insert(name);
    if (!r.has(name)) {
      problems.push_back(fmt::format("missing dataset {}", name));
      return;
    }
    const ckpt::DatasetInfo inf = r.info(name);
    if (inf.shape != shape || inf.dtype != "float32")
      problems.push_back(fmt::format("dataset {} is {} {}, the config expects float32 {}", name, inf.dtype,
                                     ckpt::dims_str(inf.shape), ckpt::dims_str(shape)));
  };
  const auto cat = param_catalogue(m);
  for (const CatalogueEntry& e : cat) check("model/" + e.path, e.shape);
  if (with_optimizer)
    for (int s = 0; s < 2; ++s)
      for (const CatalogueEntry& e : cat) check(fmt::format("optimizer/{}/{}", kCheckpointStates[s], e.path), e.shape);
  for (const std::string& d : r.datasets())
    if (d.rfind("model/", 0) == 0 && !expected.count(d))
      problems.push_back(fmt::format("dataset {} is not part of this model", d));
  return problems;
}

}  // namespace tandem
