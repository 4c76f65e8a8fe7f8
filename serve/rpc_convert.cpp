// capnp <-> C++ serving API conversions (contract in rpc_convert.h).
#include "serve/rpc_convert.h"

#include <spdlog/fmt/fmt.h>

namespace tandem::serve {

namespace {

void to_capnp(const LatencySummary& l, rpc::Latency::Builder b) {
  b.setP50(l.p50);
  b.setP90(l.p90);
  b.setP99(l.p99);
  b.setCount(l.count);
}

LatencySummary from_capnp(rpc::Latency::Reader r) {
  return LatencySummary{r.getP50(), r.getP90(), r.getP99(), r.getCount()};
}

}  // namespace

std::string text_of(capnp::Text::Reader t) { return std::string(t.begin(), t.size()); }
capnp::Text::Reader as_text(const std::string& s) { return capnp::Text::Reader(s.data(), s.size()); }

GenerateRequest from_capnp(rpc::GenerateParams::Reader p) {
  GenerateRequest r;
  auto prompt = p.getPrompt();
  if (prompt.isText()) {
    r.prompt_text = text_of(prompt.getText());
  } else if (prompt.isTokens()) {
    auto ids = prompt.getTokens();
    r.prompt_tokens.reserve(ids.size());
    for (int32_t id : ids) r.prompt_tokens.push_back(id);
  } else {
    throw ServeError(ErrorKind::InvalidRequest, "the prompt is neither text nor tokens (an unknown union member)");
  }
  r.max_tokens = p.getMaxTokens();
  r.temperature = p.getTemperature();
  r.top_k = p.getTopK();
  r.top_p = p.getTopP();
  r.seed = p.getSeed();
  for (auto s : p.getStop()) r.stop.push_back(text_of(s));
  const auto priority = static_cast<uint16_t>(p.getPriority());
  if (priority >= kNumPriorities)
    throw ServeError(ErrorKind::InvalidRequest, fmt::format("priority {} is not realtime (0) or batch (1)", priority));
  r.priority = static_cast<Priority>(priority);
  r.deadline_s = p.getDeadlineS();
  return r;
}

void to_capnp(const GenerateRequest& r, rpc::GenerateParams::Builder p) {
  if (!r.prompt_tokens.empty()) {
    auto t = p.getPrompt().initTokens(static_cast<unsigned>(r.prompt_tokens.size()));
    for (size_t i = 0; i < r.prompt_tokens.size(); ++i) t.set(static_cast<unsigned>(i), r.prompt_tokens[i]);
  } else {
    p.getPrompt().setText(as_text(r.prompt_text));
  }
  p.setMaxTokens(r.max_tokens);
  p.setTemperature(r.temperature);
  p.setTopK(r.top_k);
  p.setTopP(r.top_p);
  p.setSeed(r.seed);
  auto stop = p.initStop(static_cast<unsigned>(r.stop.size()));
  for (size_t i = 0; i < r.stop.size(); ++i) stop.set(static_cast<unsigned>(i), as_text(r.stop[i]));
  p.setPriority(r.priority == Priority::Realtime ? rpc::Priority::REALTIME : rpc::Priority::BATCH);
  p.setDeadlineS(r.deadline_s);
}

void to_capnp(const GenerateResult& r, rpc::Result::Builder b) {
  b.setFinish(static_cast<rpc::FinishReason>(r.finish));
  b.setPromptTokens(r.prompt_tokens);
  b.setOutputTokens(r.output_tokens);
  b.setTtftS(r.ttft_s);
  b.setTotalS(r.total_s);
  b.setWeightsVersion(r.weights_version);
  b.setReplica(r.replica);
}

GenerateResult from_capnp(rpc::Result::Reader r) {
  GenerateResult g;
  g.finish = static_cast<FinishReason>(r.getFinish());
  g.prompt_tokens = r.getPromptTokens();
  g.output_tokens = r.getOutputTokens();
  g.ttft_s = r.getTtftS();
  g.total_s = r.getTotalS();
  g.weights_version = r.getWeightsVersion();
  g.replica = r.getReplica();
  return g;
}

void to_capnp(const StatsSnapshot& s, rpc::Stats::Builder b) {
  auto classes = b.initClasses(kNumPriorities);
  for (int p = 0; p < kNumPriorities; ++p) {
    auto c = classes[p];
    c.setPriority(p == 0 ? rpc::Priority::REALTIME : rpc::Priority::BATCH);
    c.setQueueDepth(s.queue_depth[p]);
    to_capnp(s.ttft[p], c.initTtft());
    to_capnp(s.tpot[p], c.initTpot());
  }
  b.setActiveSequences(s.active_sequences);
  b.setKvBlocksUsed(s.kv_blocks_used);
  b.setKvBlocksFree(s.kv_blocks_free);
  b.setKvBlocksTotal(s.kv_blocks_total);
  b.setTokensPerS(s.tokens_per_s);
  b.setWeightsVersion(s.weights_version);
  b.setRequestsFinished(s.requests_finished);
  b.setRequestsCancelled(s.requests_cancelled);
  auto rej = b.initRejections(5);
  for (int k = 0; k < 5; ++k) {
    rej[k].setKind(static_cast<rpc::ErrorKind>(k));
    rej[k].setCount(s.rejected[k]);
  }
  b.setPromptTokensTotal(s.prompt_tokens_total);
  b.setOutputTokensTotal(s.output_tokens_total);
  b.setTrainingVersion(s.training_version);
  b.setWindowsOpened(s.windows_opened);
  b.setStaleness(s.staleness);
  b.setWeightSyncs(s.weight_syncs);
  b.setBusySeconds(s.busy_s);
  if (!s.replicas.empty()) {
    auto reps = b.initReplicas(static_cast<unsigned>(s.replicas.size()));
    for (unsigned i = 0; i < reps.size(); ++i) to_capnp(s.replicas[i], reps[i]);
  }
}

StatsSnapshot from_capnp(rpc::Stats::Reader r) {
  StatsSnapshot s;
  for (auto c : r.getClasses()) {
    const int p = c.getPriority() == rpc::Priority::REALTIME ? 0 : 1;
    s.queue_depth[p] = c.getQueueDepth();
    s.ttft[p] = from_capnp(c.getTtft());
    s.tpot[p] = from_capnp(c.getTpot());
  }
  s.active_sequences = r.getActiveSequences();
  s.kv_blocks_used = r.getKvBlocksUsed();
  s.kv_blocks_free = r.getKvBlocksFree();
  s.kv_blocks_total = r.getKvBlocksTotal();
  s.tokens_per_s = r.getTokensPerS();
  s.weights_version = r.getWeightsVersion();
  s.requests_finished = r.getRequestsFinished();
  s.requests_cancelled = r.getRequestsCancelled();
  s.training_version = r.getTrainingVersion();
  s.windows_opened = r.getWindowsOpened();
  s.staleness = r.getStaleness();
  s.weight_syncs = r.getWeightSyncs();
  s.busy_s = r.getBusySeconds();
  for (auto j : r.getRejections()) {
    const auto k = static_cast<int>(j.getKind());
    if (k >= 0 && k < 5) s.rejected[k] = j.getCount();
  }
  s.prompt_tokens_total = r.getPromptTokensTotal();
  s.output_tokens_total = r.getOutputTokensTotal();
  for (auto rep : r.getReplicas()) s.replicas.push_back(from_capnp(rep));
  return s;
}

void to_capnp(const ModelInfo& m, rpc::ModelInfo::Builder b) {
  b.setName(as_text(m.name));
  b.setLayers(m.layers);
  b.setDim(m.dim);
  b.setHeads(m.heads);
  b.setVocab(m.vocab);
  b.setSeqLen(m.seq_len);
  b.setDp(m.dp);
  b.setTp(m.tp);
  b.setPp(m.pp);
  b.setLayout(as_text(m.layout));
  b.setKvBlockTokens(m.kv_block_tokens);
  b.setKvBlocks(m.kv_blocks);
  b.setWeightsVersion(m.weights_version);
}

ModelInfo from_capnp(rpc::ModelInfo::Reader r) {
  ModelInfo m;
  m.name = text_of(r.getName());
  m.layers = r.getLayers();
  m.dim = r.getDim();
  m.heads = r.getHeads();
  m.vocab = r.getVocab();
  m.seq_len = r.getSeqLen();
  m.dp = r.getDp();
  m.tp = r.getTp();
  m.pp = r.getPp();
  m.layout = text_of(r.getLayout());
  m.kv_block_tokens = r.getKvBlockTokens();
  m.kv_blocks = r.getKvBlocks();
  m.weights_version = r.getWeightsVersion();
  return m;
}

void to_capnp(const std::vector<TokenPiece>& pieces, capnp::List<rpc::Token>::Builder b) {
  for (size_t i = 0; i < pieces.size(); ++i) {
    b[static_cast<unsigned>(i)].setId(pieces[i].id);
    b[static_cast<unsigned>(i)].setText(as_text(pieces[i].text));
  }
}

}  // namespace tandem::serve
