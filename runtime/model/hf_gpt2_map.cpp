// Tandem <-> Hugging Face GPT-2: names, Conv1D transposes, config.json (contract in the header).
#include "runtime/model/hf_gpt2_map.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "ckpt/json_lite.h"
#include "runtime/core/error.h"
#include "runtime/core/file_io.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;
using ckpt::HostTensor;
using ckpt::Json;
using Shape = std::vector<int64_t>;

const std::string kPrefix = "transformer.";

// One parameter: its Tandem name and shape, its HF name (without "transformer.") and whether
// HF stores it transposed (Conv1D weights, [in, out]).
struct Slot {
  std::string tandem, hf;
  Shape shape;
  bool transposed = false;
  Shape hf_shape() const { return transposed ? Shape{shape[1], shape[0]} : shape; }
};

std::vector<Slot> slots(const ModelOptions& m) {
  const int64_t C = m.dim;
  std::vector<Slot> s = {{"wte", "wte.weight", {m.vocab, C}},
                         {"wpe", "wpe.weight", {m.seq_len, C}}};
  for (int l = 0; l < m.layers; ++l) {
    const std::string t = fmt::format("h.{}.", l), h = t;
    s.push_back({t + "ln1.w", h + "ln_1.weight", {C}});
    s.push_back({t + "ln1.b", h + "ln_1.bias", {C}});
    s.push_back({t + "attn.qkv.w", h + "attn.c_attn.weight", {3 * C, C}, true});
    s.push_back({t + "attn.qkv.b", h + "attn.c_attn.bias", {3 * C}});
    s.push_back({t + "attn.proj.w", h + "attn.c_proj.weight", {C, C}, true});
    s.push_back({t + "attn.proj.b", h + "attn.c_proj.bias", {C}});
    s.push_back({t + "ln2.w", h + "ln_2.weight", {C}});
    s.push_back({t + "ln2.b", h + "ln_2.bias", {C}});
    s.push_back({t + "mlp.fc.w", h + "mlp.c_fc.weight", {4 * C, C}, true});
    s.push_back({t + "mlp.fc.b", h + "mlp.c_fc.bias", {4 * C}});
    s.push_back({t + "mlp.proj.w", h + "mlp.c_proj.weight", {C, 4 * C}, true});
    s.push_back({t + "mlp.proj.b", h + "mlp.c_proj.bias", {C}});
  }
  s.push_back({"lnf.w", "ln_f.weight", {C}});
  s.push_back({"lnf.b", "ln_f.bias", {C}});
  return s;
}

std::string describe(const ModelOptions& m) {
  return fmt::format("GPT-2 layers={} dim={} heads={} vocab={} seq_len={}", m.layers, m.dim,
                     m.heads, m.vocab, m.seq_len);
}

std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string s;
  for (size_t k = 0; k < v.size(); ++k) s += (k ? sep : "") + v[k];
  return s;
}

// Matches (canonical name, tensor) pairs against the expected names and shapes. Returns the
// tensor for every expected name, or throws one Error listing every problem. `shown` turns a
// canonical name into the name reported as missing.
std::vector<const HostTensor*> match(
    const std::vector<std::pair<std::string, const HostTensor*>>& given,
    const std::vector<std::pair<std::string, Shape>>& want, const std::string& what,
    const std::string& missing_prefix) {
  std::map<std::string, const HostTensor*> by_name;
  std::vector<std::string> dup, unknown, missing, misshapen;
  std::set<std::string> expected;
  for (const auto& [n, s] : want) expected.insert(n);
  for (const auto& [n, t] : given) {
    if (!expected.count(n)) unknown.push_back(t->name);
    else if (!by_name.emplace(n, t).second) dup.push_back(t->name);
  }
  std::vector<const HostTensor*> out;
  for (const auto& [n, shape] : want) {
    auto it = by_name.find(n);
    if (it == by_name.end()) {
      missing.push_back(missing_prefix + n);
      continue;
    }
    const HostTensor& t = *it->second;
    if (t.shape != shape)
      misshapen.push_back(fmt::format("{} expected {} found {}", t.name, ckpt::shape_str(shape),
                                      ckpt::shape_str(t.shape)));
    else if (static_cast<int64_t>(t.data.size()) != ckpt::shape_numel(shape))
      misshapen.push_back(fmt::format("{} has shape {} but {} values", t.name,
                                      ckpt::shape_str(shape), t.data.size()));
    out.push_back(&t);
  }
  std::vector<std::string> problems;
  if (!missing.empty()) problems.push_back("missing tensors: " + join(missing));
  if (!misshapen.empty()) problems.push_back("shape mismatches: " + join(misshapen));
  if (!unknown.empty()) problems.push_back("unknown tensors: " + join(unknown));
  if (!dup.empty()) problems.push_back("tensors given twice: " + join(dup));
  if (!problems.empty()) throw Error(fmt::format("{}: {}", what, join(problems, "; ")));
  return out;
}

HostTensor convert(const HostTensor& src, std::string name, const Shape& out_shape,
                   bool transpose) {
  HostTensor t{std::move(name), out_shape, {}};
  if (!transpose) {
    t.data = src.data;
    return t;
  }
  // src is [rows, cols] row-major; out[c][r] = src[r][c].
  const int64_t rows = src.shape[0], cols = src.shape[1];
  t.data.resize(src.data.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) t.data[c * rows + r] = src.data[r * cols + c];
  return t;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TANDEM_CHECK(in.good(), "cannot open {}: {}", path, std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

HfGpt2Config hf_config_for(const ModelOptions& m) {
  return {m.layers, m.dim, m.heads, m.vocab, m.seq_len};
}

ModelOptions model_options_from_hf(const HfGpt2Config& c) {
  TANDEM_CHECK(c.n_layer > 0 && c.n_embd > 0 && c.n_head > 0 && c.vocab_size > 0 &&
                   c.n_positions > 0,
               "GPT-2 config sizes must be positive: n_layer={} n_embd={} n_head={} "
               "vocab_size={} n_positions={}", c.n_layer, c.n_embd, c.n_head, c.vocab_size,
               c.n_positions);
  TANDEM_CHECK(c.n_embd % c.n_head == 0, "GPT-2 config: n_embd {} is not a multiple of n_head {}",
               c.n_embd, c.n_head);
  ModelOptions m;
  m.layers = c.n_layer;
  m.dim = c.n_embd;
  m.heads = c.n_head;
  m.vocab = c.vocab_size;
  m.seq_len = c.n_positions;
  return m;
}

std::string hf_config_json(const HfGpt2Config& c) {
  // Keys sorted, as transformers' save_pretrained writes them.
  Json j = Json::object();
  j.set("activation_function", "gelu_new");
  j.set("architectures", Json::array({Json("GPT2LMHeadModel")}));
  j.set("attn_pdrop", 0.0);
  if (c.vocab_size > 50256) {  // GPT-2 BPE: <|endoftext|> is 50256
    j.set("bos_token_id", 50256);
  }
  j.set("embd_pdrop", 0.0);
  if (c.vocab_size > 50256) j.set("eos_token_id", 50256);
  j.set("initializer_range", 0.02);
  j.set("layer_norm_epsilon", 1e-5);
  j.set("model_type", "gpt2");
  j.set("n_ctx", c.n_positions);
  j.set("n_embd", c.n_embd);
  j.set("n_head", c.n_head);
  j.set("n_inner", Json());
  j.set("n_layer", c.n_layer);
  j.set("n_positions", c.n_positions);
  j.set("reorder_and_upcast_attn", false);
  j.set("resid_pdrop", 0.0);
  j.set("scale_attn_by_inverse_layer_idx", false);
  j.set("scale_attn_weights", true);
  j.set("tie_word_embeddings", true);
  j.set("torch_dtype", "float32");
  j.set("use_cache", true);
  j.set("vocab_size", c.vocab_size);
  return ckpt::to_json(j, 2) + "\n";
}

namespace {

HfGpt2Config parse_config(const std::string& text, const std::string& what) {
  const Json j = ckpt::parse_json(text, what);
  TANDEM_CHECK(j.type() == Json::Type::Object, "{} is a JSON {}, expected an object", what,
               j.type_name());
  std::vector<std::string> missing, bad;
  auto get_int = [&](const char* key) {
    const Json* v = j.find(key);
    if (!v) {
      missing.push_back(key);
      return 0;
    }
    if (!v->is_int() || v->as_int() <= 0 || v->as_int() > std::numeric_limits<int>::max()) {
      bad.push_back(fmt::format("{} is {}, expected a positive integer", key, ckpt::to_json(*v)));
      return 0;
    }
    return static_cast<int>(v->as_int());
  };
  HfGpt2Config c;
  c.n_layer = get_int("n_layer");
  c.n_embd = get_int("n_embd");
  c.n_head = get_int("n_head");
  c.vocab_size = get_int("vocab_size");
  c.n_positions = get_int("n_positions");

  // Settings Tandem computes differently: reject rather than load a silently different model.
  auto check = [&](const char* key, auto ok, const char* want) {
    const Json* v = j.find(key);
    if (v && !ok(*v)) bad.push_back(fmt::format("{} is {}, Tandem needs {}", key, ckpt::to_json(*v), want));
  };
  using T = Json::Type;
  check("model_type", [](const Json& v) { return v.type() == T::String && v.as_string() == "gpt2"; },
        "\"gpt2\"");
  check("activation_function", [](const Json& v) {
    return v.type() == T::String && (v.as_string() == "gelu_new" || v.as_string() == "gelu_pytorch_tanh");
  }, "\"gelu_new\" (tanh GELU)");
  check("layer_norm_epsilon", [](const Json& v) {
    return v.type() == T::Number && std::abs(v.as_double() - 1e-5) <= 1e-12;
  }, "1e-05");
  const int n_embd = c.n_embd;
  check("n_inner", [n_embd](const Json& v) {
    return v.is_null() || (v.is_int() && v.as_int() == 4 * static_cast<int64_t>(n_embd));
  }, "null (4 * n_embd)");
  check("tie_word_embeddings", [](const Json& v) { return v.type() == T::Bool && v.as_bool(); }, "true");
  check("scale_attn_weights", [](const Json& v) { return v.type() == T::Bool && v.as_bool(); }, "true");
  check("scale_attn_by_inverse_layer_idx",
        [](const Json& v) { return v.type() == T::Bool && !v.as_bool(); }, "false");

  std::vector<std::string> problems;
  if (!missing.empty()) problems.push_back("missing keys: " + join(missing));
  problems.insert(problems.end(), bad.begin(), bad.end());
  if (!problems.empty()) throw Error(what + ": " + join(problems, "; "));
  return c;
}

}  // namespace

HfGpt2Config parse_hf_config_json(const std::string& text) {
  return parse_config(text, "config.json");
}

std::vector<HostTensor> tandem_to_hf(const std::vector<HostTensor>& tandem, const ModelOptions& m) {
  const std::vector<Slot> s = slots(m);
  std::vector<std::pair<std::string, const HostTensor*>> given;
  for (const HostTensor& t : tandem) given.emplace_back(t.name, &t);
  std::vector<std::pair<std::string, Shape>> want;
  for (const Slot& x : s) want.emplace_back(x.tandem, x.shape);
  const auto found = match(given, want, "tandem_to_hf (" + describe(m) + ")", "");
  std::vector<HostTensor> out;
  out.reserve(s.size());
  for (size_t k = 0; k < s.size(); ++k)
    out.push_back(convert(*found[k], kPrefix + s[k].hf, s[k].hf_shape(), s[k].transposed));
  return out;
}

std::vector<HostTensor> hf_to_tandem(const std::vector<HostTensor>& hf, const ModelOptions& m) {
  const std::vector<Slot> s = slots(m);
  const std::string what = "hf_to_tandem (" + describe(m) + ")";
  std::vector<std::pair<std::string, const HostTensor*>> given;
  const HostTensor* lm_head = nullptr;
  for (const HostTensor& t : hf) {
    std::string n = t.name.rfind(kPrefix, 0) == 0 ? t.name.substr(kPrefix.size()) : t.name;
    if (n == "lm_head.weight") {
      TANDEM_CHECK(!lm_head, "{}: lm_head.weight given twice", what);
      lm_head = &t;
      continue;
    }
    // Causal-mask buffers some exports carry: h.<l>.attn.bias and h.<l>.attn.masked_bias.
    const bool buffer = n.rfind("h.", 0) == 0 &&
                        (ends_with(n, ".attn.bias") || ends_with(n, ".attn.masked_bias"));
    if (!buffer) given.emplace_back(std::move(n), &t);
  }
  std::vector<std::pair<std::string, Shape>> want;
  for (const Slot& x : s) want.emplace_back(x.hf, x.hf_shape());
  const auto found = match(given, want, what, kPrefix);

  if (lm_head) {
    const HostTensor& wte = *found[0];
    TANDEM_CHECK(lm_head->shape == wte.shape && lm_head->data.size() == wte.data.size() &&
                     std::memcmp(lm_head->data.data(), wte.data.data(),
                                 wte.data.size() * sizeof(float)) == 0,
                 "{}: {} (shape {}) differs from {} (shape {}); Tandem ties the LM head to the "
                 "token embedding and cannot load an untied head", what, lm_head->name,
                 ckpt::shape_str(lm_head->shape), wte.name, ckpt::shape_str(wte.shape));
  }
  std::vector<HostTensor> out;
  out.reserve(s.size());
  for (size_t k = 0; k < s.size(); ++k)
    out.push_back(convert(*found[k], s[k].tandem, s[k].shape, s[k].transposed));
  return out;
}

void write_hf_dir(const std::string& out_dir, const std::vector<HostTensor>& tandem,
                  const ModelOptions& m, const std::map<std::string, std::string>& metadata) {
  const std::vector<HostTensor> hf = tandem_to_hf(tandem, m);  // check before touching disk
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  TANDEM_CHECK(!ec, "cannot create directory {}: {}", out_dir, ec.message());
  std::map<std::string, std::string> meta = metadata;
  meta.emplace("format", "pt");  // transformers refuses safetensors files without it
  ckpt::write_safetensors((fs::path(out_dir) / "model.safetensors").string(), hf, meta);
  write_file_atomic((fs::path(out_dir) / "config.json").string(),
                    hf_config_json(hf_config_for(m)));
}

std::pair<ModelOptions, std::vector<HostTensor>> read_hf_dir(const std::string& in) {
  fs::path weights, dir;
  if (fs::is_directory(in)) {
    dir = in;
    weights = dir / "model.safetensors";
    if (!fs::exists(weights)) {
      const char* hint = fs::exists(dir / "model.safetensors.index.json")
                             ? " (sharded safetensors checkpoints are not supported)"
                         : fs::exists(dir / "pytorch_model.bin")
                             ? " (only safetensors can be read, not pytorch_model.bin)"
                             : "";
      throw Error(fmt::format("{}: no model.safetensors in this directory{}", in, hint));
    }
  } else if (fs::is_regular_file(in) && fs::path(in).extension() == ".safetensors") {
    weights = in;
    dir = fs::path(in).parent_path();
    if (dir.empty()) dir = ".";
  } else {
    throw Error(fmt::format("{}: not a directory holding model.safetensors, nor a .safetensors file "
                            "(exists: {})", in, fs::exists(in)));
  }
  const fs::path cfg_path = dir / "config.json";
  TANDEM_CHECK(fs::exists(cfg_path), "{}: no config.json beside {}", cfg_path.string(),
               weights.string());
  const ModelOptions m =
      model_options_from_hf(parse_config(slurp(cfg_path.string()), cfg_path.string()));
  std::vector<HostTensor> tensors = hf_to_tandem(ckpt::read_safetensors(weights.string()), m);
  return {m, std::move(tensors)};
}

}  // namespace tandem
