// `tandem ckpt inspect|export-hf|import-hf` (contract in ckpt_command.h).
#include "launch/ckpt_command.h"

#include <mpi.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "ckpt/checkpoint_dir.h"
#include "ckpt/tensor_file.h"
#include "launch/config.h"
#include "runtime/model/hf_gpt2_map.h"
#include "runtime/train/checkpointer.h"

namespace tandem {

namespace {

constexpr const char* kCkptUsage =
    "usage: tandem ckpt inspect DIR|FILE\n"
    "       tandem ckpt export-hf DIR|FILE OUT_DIR\n"
    "       tandem ckpt import-hf IN DIR\n";

std::string human(double bytes) {
  const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) bytes /= 1024, ++u;
  return fmt::format("{:.1f} {}", bytes, unit[u]);
}

// A root attribute as inspect shows it: "(none)" when absent.
std::string shown(const ckpt::TensorFileReader& r, const char* name) {
  const auto v = r.attr(name);
  if (!v) return "(none)";
  if (v->kind == "string") return v->text;
  if (v->kind == "int") return v->too_wide ? fmt::format("{}", static_cast<uint64_t>(v->value)) : fmt::format("{}", v->value);
  return fmt::format("(a {} attribute)", v->kind);
}

// Prints what the file holds, then everything a load would refuse; 1 when there is any.
int inspect(const std::string& where) {
  const std::string file = ckpt::resolve_checkpoint(where);
  ckpt::TensorFileReader r(MPI_COMM_SELF, file);
  auto s = [&](const char* k) { return shown(r, k); };
  std::printf("checkpoint: %s (%s on disk)\n", file.c_str(), human(static_cast<double>(std::filesystem::file_size(file))).c_str());
  std::printf("format: %s version %s | written by Tandem %s | layout: %s\n", s("format").c_str(),
              s("format_version").c_str(), s("tandem_version").c_str(), s("layout").c_str());
  std::printf("step %s | weights version %s | data position %s | adam step %s | seed %s | optimizer state %s | "
              "master weights %s\n", s("step").c_str(), s("weights_version").c_str(), s("data_position").c_str(),
              s("adam_step").c_str(), s("seed").c_str(), s("has_optimizer_state") == "1" ? "yes" : "no",
              s("has_master_weights") == "1" ? "yes" : "no");
  std::printf("model: layers=%s dim=%s heads=%s vocab=%s seq_len=%s\n", s("model_layers").c_str(),
              s("model_dim").c_str(), s("model_heads").c_str(), s("model_vocab").c_str(), s("model_seq_len").c_str());
  std::printf("config:\n");
  std::string cfg = s("config");
  for (size_t a = 0; a < cfg.size();) {
    size_t b = cfg.find('\n', a);
    if (b == std::string::npos) b = cfg.size();
    std::printf("  %s\n", cfg.substr(a, b - a).c_str());
    a = b + 1;
  }
  std::vector<std::string> problems;
  try {
    const CheckpointHeader head = read_checkpoint_header(r);
    for (const std::string& p : dataset_problems(r, head.model, head.has_optimizer_state))
      problems.push_back(p + " (for the file's own model sizes)");
  } catch (const ckpt::CheckpointError& e) {
    problems.push_back(e.what());
  }
  const auto names = r.datasets();
  int64_t elems = 0;
  int bad = 0;
  std::printf("tensors (%zu):\n", names.size());
  for (const std::string& n : names) {
    const ckpt::DatasetInfo inf = r.info(n);
    std::string status;
    uint64_t sum = 0;
    if (inf.dtype == "float32") {
      std::vector<float> data(static_cast<size_t>(ckpt::dims_numel(inf.shape)));
      const ckpt::Piece all = ckpt::whole_tensor(inf.shape);
      r.read_tensor(n, inf.shape, {ckpt::Segment{data.data(), {all}, {}}});
      sum = ckpt::pieces_checksum(data.data(), {all}, inf.shape);
      status = !inf.checksum ? "no stored checksum" : *inf.checksum == sum ? "ok" : "MISMATCH";
      if (status != "ok") ++bad;
    } else {
      status = "not float32";
      ++bad;
    }
    elems += ckpt::dims_numel(inf.shape);
    std::printf("  %-44s %-8s %-16s checksum %016llx %s\n", n.c_str(), inf.dtype.c_str(), ckpt::dims_str(inf.shape).c_str(),
                static_cast<unsigned long long>(sum), status.c_str());
  }
  std::printf("%zu tensors, %lld elements; %s\n", names.size(), static_cast<long long>(elems),
              bad ? fmt::format("{} tensor(s) FAIL their checksum", bad).c_str() : "every checksum matches");
  if (bad) problems.push_back(fmt::format("{} tensor(s) fail their checksum", bad));
  if (problems.empty()) return 0;
  std::printf("REFUSED: a load would refuse this checkpoint (%zu problem(s)):\n", problems.size());
  for (const std::string& p : problems) std::printf("  - %s\n", p.c_str());
  return 1;
}

int export_hf(const std::string& where, const std::string& out) {
  const std::string file = ckpt::resolve_checkpoint(where);
  ModelOptions m;
  std::vector<ckpt::HostTensor> tensors = read_model_tensors(file, &m);
  ckpt::TensorFileReader r(MPI_COMM_SELF, file);
  const CheckpointHeader head = read_checkpoint_header(r);
  std::map<std::string, std::string> meta = {{"tandem_checkpoint", file},
                                             {"tandem_step", fmt::format("{}", head.step)},
                                             {"tandem_version", head.tandem_version}};
  write_hf_dir(out, tensors, m, meta);
  std::printf("exported %s (step %lld, %zu tensors) to %s/model.safetensors and %s/config.json\n", file.c_str(),
              static_cast<long long>(head.step), tensors.size(), out.c_str(), out.c_str());
  return 0;
}

int import_hf(const std::string& in, const std::string& dir) {
  auto [m, tensors] = read_hf_dir(in);
  RunConfig cfg;
  cfg.model = m;
  CheckpointMeta meta;
  meta.step = 0;
  meta.seed = cfg.train.seed;
  meta.config_yaml = config_to_yaml(cfg);
  meta.layout = fmt::format("imported from Hugging Face GPT-2 {}", in);
  const std::string path = write_model_checkpoint(dir, m, tensors, meta);
  std::printf("imported %s (layers=%d dim=%d heads=%d vocab=%d seq_len=%d) as %s; start a run from it with "
              "`tandem train CONFIG --resume --set train.checkpoint.dir=%s`\n",
              in.c_str(), m.layers, m.dim, m.heads, m.vocab, m.seq_len, path.c_str(), dir.c_str());
  return 0;
}

}  // namespace

int ckpt_command(int argc, char** argv) {
  const std::string sub = argc > 0 ? argv[0] : "";
  if (sub == "inspect" && argc == 2) return inspect(argv[1]);
  if (sub == "export-hf" && argc == 3) return export_hf(argv[1], argv[2]);
  if (sub == "import-hf" && argc == 3) return import_hf(argv[1], argv[2]);
  throw ConfigError(fmt::format("{}{}", sub.empty() ? "tandem ckpt needs a subcommand\n"
                                                    : fmt::format("tandem ckpt: bad arguments for '{}'\n", sub),
                                kCkptUsage));
}

}  // namespace tandem
