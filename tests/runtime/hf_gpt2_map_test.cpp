// Hugging Face GPT-2 mapping: names and order, exact Conv1D transposes, bitwise round trips
// in memory and through a model directory, config.json, and the errors for missing, unknown,
// misshapen and untied tensors.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include "tests/support/host_tensors.h"
#include "tests/support/temp_dir.h"
#include "ckpt/safetensors.h"
#include "runtime/core/error.h"
#include "runtime/model/hf_gpt2_map.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;
using ckpt::HostTensor;

using tandem::testing::TempDir;
using tandem::testing::expect_bitwise_equal;

void expect_error(const std::function<void()>& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown; expected one mentioning " << *parts.begin();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "missing \"" << p << "\" in: " << msg;
  }
}

ModelOptions small() {
  ModelOptions m;
  m.layers = 2;
  m.dim = 8;
  m.heads = 2;
  m.vocab = 11;
  m.seq_len = 5;
  return m;
}

// Tandem tensors in canonical order with random values.
std::vector<HostTensor> random_tandem(const ModelOptions& m, unsigned seed = 7) {
  const int64_t C = m.dim;
  std::vector<std::pair<std::string, std::vector<int64_t>>> spec = {{"wte", {m.vocab, C}},
                                                                   {"wpe", {m.seq_len, C}}};
  for (int l = 0; l < m.layers; ++l) {
    const std::string p = "h." + std::to_string(l) + ".";
    for (auto [n, s] : std::vector<std::pair<std::string, std::vector<int64_t>>>{
             {"ln1.w", {C}}, {"ln1.b", {C}}, {"attn.qkv.w", {3 * C, C}}, {"attn.qkv.b", {3 * C}},
             {"attn.proj.w", {C, C}}, {"attn.proj.b", {C}}, {"ln2.w", {C}}, {"ln2.b", {C}},
             {"mlp.fc.w", {4 * C, C}}, {"mlp.fc.b", {4 * C}}, {"mlp.proj.w", {C, 4 * C}},
             {"mlp.proj.b", {C}}})
      spec.emplace_back(p + n, s);
  }
  spec.push_back({"lnf.w", {C}});
  spec.push_back({"lnf.b", {C}});
  std::mt19937 gen(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<HostTensor> out;
  for (auto& [n, s] : spec) {
    HostTensor t{n, s, std::vector<float>(static_cast<size_t>(ckpt::shape_numel(s)))};
    for (float& v : t.data) v = nd(gen);
    out.push_back(std::move(t));
  }
  return out;
}

const HostTensor& by_name(const std::vector<HostTensor>& ts, const std::string& name) {
  for (const HostTensor& t : ts)
    if (t.name == name) return t;
  throw Error("test: no tensor " + name);
}

HostTensor* find(std::vector<HostTensor>& ts, const std::string& name) {
  for (HostTensor& t : ts)
    if (t.name == name) return &t;
  return nullptr;
}

TEST(HfGpt2Map, NamesShapesAndOrder) {
  const ModelOptions m = small();
  const auto hf = tandem_to_hf(random_tandem(m), m);
  ASSERT_EQ(hf.size(), 2u + 12u * m.layers + 2u);
  EXPECT_EQ(hf[0].name, "transformer.wte.weight");
  EXPECT_EQ(hf[1].name, "transformer.wpe.weight");
  const std::vector<std::string> layer = {
      "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
      "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
      "mlp.c_proj.weight", "mlp.c_proj.bias"};
  for (int l = 0; l < m.layers; ++l)
    for (size_t k = 0; k < layer.size(); ++k)
      EXPECT_EQ(hf[2 + 12 * l + k].name, "transformer.h." + std::to_string(l) + "." + layer[k]);
  EXPECT_EQ(hf[hf.size() - 2].name, "transformer.ln_f.weight");
  EXPECT_EQ(hf.back().name, "transformer.ln_f.bias");
  using S = std::vector<int64_t>;
  EXPECT_EQ(by_name(hf, "transformer.wte.weight").shape, (S{11, 8}));
  EXPECT_EQ(by_name(hf, "transformer.wpe.weight").shape, (S{5, 8}));
  EXPECT_EQ(by_name(hf, "transformer.h.1.attn.c_attn.weight").shape, (S{8, 24}));
  EXPECT_EQ(by_name(hf, "transformer.h.1.attn.c_attn.bias").shape, (S{24}));
  EXPECT_EQ(by_name(hf, "transformer.h.1.attn.c_proj.weight").shape, (S{8, 8}));
  EXPECT_EQ(by_name(hf, "transformer.h.1.mlp.c_fc.weight").shape, (S{8, 32}));
  EXPECT_EQ(by_name(hf, "transformer.h.1.mlp.c_proj.weight").shape, (S{32, 8}));
  for (const HostTensor& t : hf) EXPECT_EQ(t.name.find("lm_head"), std::string::npos);
}

TEST(HfGpt2Map, ConvWeightsAreExactTransposesOthersCopied) {
  const ModelOptions m = small();
  const auto tandem = random_tandem(m);
  const auto hf = tandem_to_hf(tandem, m);
  const std::vector<std::pair<std::string, std::string>> conv = {
      {"attn.qkv.w", "attn.c_attn.weight"}, {"attn.proj.w", "attn.c_proj.weight"},
      {"mlp.fc.w", "mlp.c_fc.weight"}, {"mlp.proj.w", "mlp.c_proj.weight"}};
  for (int l = 0; l < m.layers; ++l) {
    const std::string p = "h." + std::to_string(l) + ".";
    for (const auto& [tn, hn] : conv) {
      const HostTensor& t = by_name(tandem, p + tn);
      const HostTensor& h = by_name(hf, "transformer." + p + hn);
      const int64_t out = t.shape[0], in = t.shape[1];
      ASSERT_EQ(h.shape, (std::vector<int64_t>{in, out}));
      for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i)
          ASSERT_EQ(t.data[o * in + i], h.data[i * out + o]) << p + tn << " (" << o << ", " << i << ")";
    }
    EXPECT_EQ(by_name(tandem, p + "attn.qkv.b").data, by_name(hf, "transformer." + p + "attn.c_attn.bias").data);
    EXPECT_EQ(by_name(tandem, p + "ln2.w").data, by_name(hf, "transformer." + p + "ln_2.weight").data);
  }
  EXPECT_EQ(by_name(tandem, "wte").data, by_name(hf, "transformer.wte.weight").data);
  EXPECT_EQ(by_name(tandem, "lnf.b").data, by_name(hf, "transformer.ln_f.bias").data);
}

TEST(HfGpt2Map, RoundTripIsBitwiseInAnyInputOrder) {
  const ModelOptions m = small();
  const auto tandem = random_tandem(m);
  auto hf = tandem_to_hf(tandem, m);
  std::reverse(hf.begin(), hf.end());
  expect_bitwise_equal(hf_to_tandem(hf, m), tandem);
  auto shuffled = tandem;
  std::reverse(shuffled.begin(), shuffled.end());
  expect_bitwise_equal(hf_to_tandem(tandem_to_hf(shuffled, m), m), tandem);
}

TEST(HfGpt2Map, ImportAcceptsUnprefixedNamesAndIgnoresBuffersAndTiedHead) {
  const ModelOptions m = small();
  const auto tandem = random_tandem(m);
  auto hf = tandem_to_hf(tandem, m);
  for (size_t k = 0; k < hf.size(); k += 2) hf[k].name = hf[k].name.substr(12);  // mix both forms
  hf.push_back({"transformer.h.0.attn.bias", {1, 1, 5, 5}, std::vector<float>(25, 1.0f)});
  hf.push_back({"h.1.attn.masked_bias", {}, {-1e4f}});
  HostTensor head = by_name(hf, "wte.weight");
  head.name = "lm_head.weight";
  hf.push_back(head);
  expect_bitwise_equal(hf_to_tandem(hf, m), tandem);
}

TEST(HfGpt2Map, UntiedOrMisshapenLmHeadIsAnError) {
  const ModelOptions m = small();
  auto hf = tandem_to_hf(random_tandem(m), m);
  HostTensor head = hf[0];
  head.name = "lm_head.weight";
  head.data[17] += 1.0f;
  hf.push_back(head);
  expect_error([&] { hf_to_tandem(hf, m); }, {"lm_head.weight", "differs", "transformer.wte.weight"});
  hf.back() = {"lm_head.weight", {12, 8}, std::vector<float>(96)};
  expect_error([&] { hf_to_tandem(hf, m); }, {"lm_head.weight", "[12, 8]"});
}

TEST(HfGpt2Map, ImportNamesEveryMissingUnknownAndMisshapenTensor) {
  const ModelOptions m = small();
  auto hf = tandem_to_hf(random_tandem(m), m);
  hf.erase(std::remove_if(hf.begin(), hf.end(), [](const HostTensor& t) {
             return t.name == "transformer.h.1.ln_2.bias" || t.name == "transformer.ln_f.weight";
           }), hf.end());
  hf.push_back({"transformer.h.0.attn.q_proj.weight", {2}, {1, 2}});
  hf.push_back({"lm_head.bias", {1}, {0}});
  HostTensor* wpe = find(hf, "transformer.wpe.weight");
  wpe->shape = {4, 8};
  wpe->data.resize(32);
  HostTensor* qkv = find(hf, "transformer.h.0.attn.c_attn.weight");
  qkv->shape = {24, 8};  // Tandem's [out, in], not Conv1D's [in, out]
  expect_error([&] { hf_to_tandem(hf, m); },
               {"missing tensors: transformer.h.1.ln_2.bias, transformer.ln_f.weight",
                "transformer.wpe.weight expected [5, 8] found [4, 8]",
                "transformer.h.0.attn.c_attn.weight expected [8, 24] found [24, 8]",
                "unknown tensors:", "transformer.h.0.attn.q_proj.weight", "lm_head.bias",
                "layers=2 dim=8"});
  // The same tensor under both spellings.
  auto dup = tandem_to_hf(random_tandem(m), m);
  HostTensor again = dup[3];
  again.name = again.name.substr(12);
  dup.push_back(again);
  expect_error([&] { hf_to_tandem(dup, m); }, {"given twice", again.name});
}

TEST(HfGpt2Map, ExportChecksTandemTensors) {
  const ModelOptions m = small();
  auto tandem = random_tandem(m);
  HostTensor* wte = find(tandem, "wte");
  wte->shape = {128, 8};  // padded table: the caller must drop the padding rows
  wte->data.resize(128 * 8);
  tandem.erase(tandem.begin() + 5);  // h.0.attn.qkv.b
  tandem.push_back({"h.2.ln1.w", {8}, std::vector<float>(8)});
  HostTensor* lnf = find(tandem, "lnf.b");
  lnf->data.pop_back();
  expect_error([&] { tandem_to_hf(tandem, m); },
               {"missing tensors: h.0.attn.qkv.b", "wte expected [11, 8] found [128, 8]",
                "unknown tensors: h.2.ln1.w", "lnf.b has shape [8] but 7 values"});
}

TEST(HfGpt2Map, ConfigJsonRoundTrip) {
  const ModelOptions m = small();
  const HfGpt2Config c = hf_config_for(m);
  EXPECT_EQ(c.n_layer, 2);
  EXPECT_EQ(c.n_embd, 8);
  EXPECT_EQ(c.n_head, 2);
  EXPECT_EQ(c.vocab_size, 11);
  EXPECT_EQ(c.n_positions, 5);
  const std::string text = hf_config_json(c);
  for (const char* part : {"\"model_type\": \"gpt2\"", "\"architectures\": [\"GPT2LMHeadModel\"]",
                           "\"activation_function\": \"gelu_new\"", "\"layer_norm_epsilon\": 1e-05",
                           "\"n_ctx\": 5", "\"n_positions\": 5", "\"tie_word_embeddings\": true",
                           "\"torch_dtype\": \"float32\"", "\"vocab_size\": 11"})
    EXPECT_NE(text.find(part), std::string::npos) << part << " not in " << text;
  EXPECT_EQ(text.find("eos_token_id"), std::string::npos);  // vocab 11 is not GPT-2 BPE
  const HfGpt2Config back = parse_hf_config_json(text);
  EXPECT_EQ(back.n_layer, c.n_layer);
  EXPECT_EQ(back.n_embd, c.n_embd);
  EXPECT_EQ(back.n_head, c.n_head);
  EXPECT_EQ(back.vocab_size, c.vocab_size);
  EXPECT_EQ(back.n_positions, c.n_positions);
  const ModelOptions m2 = model_options_from_hf(back);
  EXPECT_EQ(m2.layers, m.layers);
  EXPECT_EQ(m2.dim, m.dim);
  EXPECT_EQ(m2.heads, m.heads);
  EXPECT_EQ(m2.vocab, m.vocab);
  EXPECT_EQ(m2.seq_len, m.seq_len);
  EXPECT_NE(hf_config_json({12, 768, 12, 50257, 1024}).find("\"eos_token_id\": 50256"), std::string::npos);
}

TEST(HfGpt2Map, ParsesTheGpt2HubConfig) {
  // config.json of the `gpt2` model on the Hugging Face Hub.
  const std::string hub = R"({
  "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
  "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
  "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768,
  "n_head": 12, "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1,
  "summary_activation": null, "summary_first_dropout": 0.1, "summary_proj_to_labels": true,
  "summary_type": "cls_index", "summary_use_proj": true,
  "task_specific_params": {"text-generation": {"do_sample": true, "max_length": 50}},
  "vocab_size": 50257
})";
  const HfGpt2Config c = parse_hf_config_json(hub);
  EXPECT_EQ(c.n_layer, 12);
  EXPECT_EQ(c.n_embd, 768);
  EXPECT_EQ(c.n_head, 12);
  EXPECT_EQ(c.vocab_size, 50257);
  EXPECT_EQ(c.n_positions, 1024);
}

TEST(HfGpt2Map, ConfigErrors) {
  expect_error([] { parse_hf_config_json(R"({"n_layer": 2, "n_embd": 8, "n_positions": 5})"); },
               {"missing keys: n_head, vocab_size"});
  expect_error([] { parse_hf_config_json(R"({"n_layer": 2, "n_embd": 8.5, "n_head": 2,
      "vocab_size": -3, "n_positions": 5, "activation_function": "gelu", "layer_norm_epsilon": 1e-6,
      "n_inner": 64, "tie_word_embeddings": false, "model_type": "llama"})"); },
               {"n_embd is 8.5", "vocab_size is -3", "activation_function is \"gelu\"",
                "layer_norm_epsilon is 1e-06", "n_inner is 64", "tie_word_embeddings is false",
                "model_type is \"llama\""});
  expect_error([] { parse_hf_config_json("{\"n_layer\": 2,"); }, {"config.json", "invalid JSON"});
  expect_error([] { parse_hf_config_json("[]"); }, {"config.json", "array"});
  expect_error([] { model_options_from_hf({2, 10, 4, 11, 5}); }, {"n_embd 10", "n_head 4"});
  expect_error([] { model_options_from_hf({0, 8, 2, 11, 5}); }, {"n_layer=0"});
}

TEST(HfGpt2Map, DirectoryRoundTrip) {
  TempDir tmp;
  const ModelOptions m = small();
  const auto tandem = random_tandem(m);
  const std::string dir = tmp.file("export/gpt2");  // created, parents included
  write_hf_dir(dir, tandem, m, {{"tandem.step", "12"}});
  EXPECT_TRUE(fs::exists(dir + "/config.json"));
  std::map<std::string, std::string> meta;
  const auto raw = ckpt::read_safetensors(dir + "/model.safetensors", &meta);
  EXPECT_EQ(meta.at("format"), "pt");
  EXPECT_EQ(meta.at("tandem.step"), "12");
  EXPECT_EQ(raw.size(), 2u + 12u * m.layers + 2u);
  for (const std::string& in : {dir, dir + "/model.safetensors"}) {
    const auto [m2, back] = read_hf_dir(in);
    EXPECT_EQ(m2.layers, m.layers);
    EXPECT_EQ(m2.dim, m.dim);
    EXPECT_EQ(m2.heads, m.heads);
    EXPECT_EQ(m2.vocab, m.vocab);
    EXPECT_EQ(m2.seq_len, m.seq_len);
    expect_bitwise_equal(back, tandem);
  }
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_NE(e.path().extension(), ".tmp") << e.path();
}

TEST(HfGpt2Map, DirectoryErrors) {
  TempDir tmp;
  const ModelOptions m = small();
  expect_error([&] { read_hf_dir(tmp.file("none")); }, {"none", "not a directory"});
  fs::create_directories(tmp.file("empty"));
  expect_error([&] { read_hf_dir(tmp.file("empty")); }, {"empty", "no model.safetensors"});
  std::ofstream(tmp.file("empty/model.safetensors.index.json")) << "{}";
  expect_error([&] { read_hf_dir(tmp.file("empty")); }, {"sharded"});
  const std::string dir = tmp.file("d");
  write_hf_dir(dir, random_tandem(m), m);
  std::ofstream(dir + "/config.json") << R"({"n_layer": 3, "n_embd": 8, "n_head": 2,
      "vocab_size": 11, "n_positions": 5})";
  expect_error([&] { read_hf_dir(dir); }, {"layers=3", "missing tensors: transformer.h.2.ln_1.weight"});
  std::ofstream(dir + "/config.json") << R"({"n_layer": 2})";
  expect_error([&] { read_hf_dir(dir); }, {"config.json", "missing keys: n_embd, n_head"});
  fs::remove(dir + "/config.json");
  expect_error([&] { read_hf_dir(dir + "/model.safetensors"); }, {"no config.json"});
  expect_error([&] { write_hf_dir(tmp.file("bad"), {}, m); }, {"missing tensors: wte, wpe"});
  EXPECT_FALSE(fs::exists(tmp.file("bad")));
}

}  // namespace
}  // namespace tandem
