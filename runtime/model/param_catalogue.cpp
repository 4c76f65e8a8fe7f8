// The model-wide parameter catalogue (contract in the header).
#include "runtime/model/param_catalogue.h"

#include "runtime/model/gpt.h"

namespace tandem {

std::string param_path(const std::string& name) {
  std::string out;
  size_t i = 0;
  if (name.rfind("h.", 0) == 0) {
    out = "blocks/";
    i = 2;
  }
  std::vector<std::string> parts;
  std::string cur;
  for (; i <= name.size(); ++i) {
    if (i == name.size() || name[i] == '.') {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += name[i];
    }
  }
  if (parts.size() == 1) parts.push_back("weight");  // wte, wpe
  else if (parts.back() == "w") parts.back() = "weight";
  else if (parts.back() == "b") parts.back() = "bias";
  for (size_t k = 0; k < parts.size(); ++k) out += (k ? "/" : "") + parts[k];
  return out;
}

std::vector<CatalogueEntry> param_catalogue(const ModelOptions& opt) {
  StageLayout whole{0, opt.layers, true, true};
  std::vector<CatalogueEntry> out;
  for (const ParamSpec& s : Gpt::stage_specs(opt, whole, 1, 0))
    out.push_back(CatalogueEntry{s.name, param_path(s.name), stored_shape(s), s.logical});
  return out;
}

}  // namespace tandem
