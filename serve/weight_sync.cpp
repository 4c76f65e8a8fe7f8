// Weight transfer between the training and the serving layouts (contract in weight_sync.h).
#include "serve/weight_sync.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>

#include "parallel/mpi_communicator.h"
#include "runtime/core/error.h"
#include "runtime/model/param_store.h"

namespace tandem::serve {

namespace {

constexpr int kTagData = 71, kTagNote = 72, kTagProbe = 73;
constexpr int kFields = 5;  // a Run on the wire: name, begin, len, buffer, offset
constexpr int64_t kHeader = 2;  // floats holding the int64 version at the head of a message

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::vector<ckpt::Run> replica_runs(ModelReplica& r) {
  std::vector<ckpt::Run> runs;
  for (int c = 0; c < r.num_chunks(); ++c)
    for (const Param& p : r.chunk(c).params().all())
      for (const ckpt::Piece& piece : ParamStore::pieces(p)) {
        std::vector<ckpt::Run> v = ckpt::slab_runs(piece, stored_shape(p.spec), hash_name(p.spec.name), c, p.offset);
        runs.insert(runs.end(), v.begin(), v.end());
      }
  ckpt::sort_runs(runs);
  return runs;
}

void put_version(Tensor& buf, int64_t v) { std::memcpy(buf.f32(), &v, sizeof v); }
int64_t get_version(const Tensor& buf) {
  int64_t v = 0;
  std::memcpy(&v, buf.f32(), sizeof v);
  return v;
}

}  // namespace

WeightSync::WeightSync(MPI_Comm world, SyncRole role, ModelReplica* replica, bool leader, double timeout_s)
    : role_(role), replica_(replica), leader_(leader && role == SyncRole::Receiver), timeout_s_(timeout_s) {
  TANDEM_CHECK((role == SyncRole::Idle) == (replica == nullptr),
               "weight sync: role {} needs a replica exactly when it sends or receives", static_cast<int>(role));
  comm_ = make_mpi_communicator(world, "weight_sync", timeout_s);
  int me = 0, n = 0;
  MPI_Comm_rank(world, &me);
  MPI_Comm_size(world, &n);

  // Who is what, and what each sender and receiver holds.
  int mine[2] = {static_cast<int>(role), leader_ ? 1 : 0};
  std::vector<int> roles(2 * static_cast<size_t>(n));
  TANDEM_MPI_CHECK(MPI_Allgather(mine, 2, MPI_INT, roles.data(), 2, MPI_INT, world));
  std::vector<ckpt::Run> own;
  std::string local_error;
  if (replica) {
    for (int c = 0; c < replica->num_chunks(); ++c)
      if (!replica->chunk(c).params().values().is_cpu())
        local_error = "serve.mode dedicated moves weights through host memory over MPI; this rank's replica "
                      "is on a GPU and the NCCL transfer is not built yet";
    own = replica_runs(*replica);
  }
  std::vector<int64_t> flat;
  for (const ckpt::Run& r : own)
    flat.insert(flat.end(), {static_cast<int64_t>(r.name), r.begin, r.len, r.buffer, r.offset});
  int count = static_cast<int>(flat.size());
  std::vector<int> counts(static_cast<size_t>(n)), displs(static_cast<size_t>(n));
  TANDEM_MPI_CHECK(MPI_Allgather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, world));
  int total = 0;
  for (int i = 0; i < n; ++i) {
    displs[i] = total;
    total += counts[i];
  }
  std::vector<int64_t> all(static_cast<size_t>(std::max(total, 1)));
  TANDEM_MPI_CHECK(MPI_Allgatherv(flat.data(), count, MPI_INT64_T, all.data(), counts.data(), displs.data(),
                                  MPI_INT64_T, world));
  std::vector<std::vector<ckpt::Run>> runs(static_cast<size_t>(n));
  std::vector<int> senders, receivers;
  for (int i = 0; i < n; ++i) {
    for (int k = displs[i]; k < displs[i] + counts[i]; k += kFields)
      runs[i].push_back({static_cast<uint64_t>(all[k]), all[k + 1], all[k + 2], static_cast<int32_t>(all[k + 3]),
                         all[k + 4]});
    if (roles[2 * i] == static_cast<int>(SyncRole::Sender)) senders.push_back(i);
    if (roles[2 * i] == static_cast<int>(SyncRole::Receiver)) {
      receivers.push_back(i);
      if (roles[2 * i + 1]) leaders_.push_back(i);
    }
  }
  if (senders.empty() || receivers.empty())
    local_error = fmt::format("weight sync: {} senders and {} receivers; dedicated serving needs both",
                              senders.size(), receivers.size());
  first_sender_ = senders.empty() ? -1 : senders[0];
  first_receiver_ = receivers.empty() ? -1 : receivers[0];

  // The plan: disjoint ownership among the senders, then one message per sharing pair.
  std::vector<std::vector<ckpt::Run>> sender_runs;
  for (int s : senders) sender_runs.push_back(runs[s]);
  const std::vector<std::vector<ckpt::Run>> owned = ckpt::own_disjoint(sender_runs);
  if (role == SyncRole::Sender) {
    const size_t i = static_cast<size_t>(std::find(senders.begin(), senders.end(), me) - senders.begin());
    for (int r : receivers) {
      std::vector<ckpt::Segment> segs = ckpt::segments(owned[i], runs[r]);
      if (!segs.empty()) msgs_.push_back({r, std::move(segs), {}, nullptr});
    }
  } else if (role == SyncRole::Receiver) {
    int64_t reached = 0;
    for (size_t k = 0; k < senders.size(); ++k) {
      std::vector<ckpt::Segment> segs = ckpt::segments(owned[k], own);
      reached += ckpt::segments_numel(segs);
      if (!segs.empty()) msgs_.push_back({senders[k], std::move(segs), {}, nullptr});
    }
    if (reached != ckpt::runs_numel(own) && local_error.empty())
      local_error = fmt::format("weight sync: the training ranks hold {} of the {} weights serving rank {} needs "
                                "(do the trainers and the servers run the same model?)",
                                reached, ckpt::runs_numel(own), me);
  }
  // Every rank fails together, before any transfer, when one rank's plan is wrong.
  // The lowest failing rank's message goes to all, so every rank's error names the problem.
  int bad = local_error.empty() ? n : me, first_bad = n;
  TANDEM_MPI_CHECK(MPI_Allreduce(&bad, &first_bad, 1, MPI_INT, MPI_MIN, world));
  if (first_bad < n) {
    int len = me == first_bad ? static_cast<int>(local_error.size()) : 0;
    TANDEM_MPI_CHECK(MPI_Bcast(&len, 1, MPI_INT, first_bad, world));
    std::string msg(static_cast<size_t>(len), ' ');
    if (me == first_bad) msg = local_error;
    TANDEM_MPI_CHECK(MPI_Bcast(msg.data(), len, MPI_CHAR, first_bad, world));
    throw Error(me == first_bad ? msg : fmt::format("{} (reported by rank {})", msg, first_bad));
  }

  for (Message& m : msgs_) {
    const int64_t payload = ckpt::segments_numel(m.segs);
    m.buf = Tensor::allocate(replica->backend().host_allocator(), DeviceKind::CPU, {kHeader + payload}, DType::F32);
    stats_.bytes_per_sync += payload * 4;
  }
  stats_.messages = static_cast<int64_t>(msgs_.size());
  TANDEM_MPI_CHECK(MPI_Comm_split(world, role == SyncRole::Sender ? 0 : MPI_UNDEFINED, me, &senders_));
  probe_bandwidth();
  if (role == SyncRole::Receiver) post_receives();
  if (leader_) {
    in_note_ = Tensor::allocate(replica->backend().host_allocator(), DeviceKind::CPU, {4}, DType::F32);
    in_note_req_ = comm_->irecv(in_note_, first_sender_, kTagNote);
  }
}

WeightSync::~WeightSync() {
  in_note_req_.reset();
  out_notes_.clear();
  msgs_.clear();  // pending receives are cancelled, sends waited for (Request's contract)
  if (senders_ != MPI_COMM_NULL) MPI_Comm_free(&senders_);
}

float* WeightSync::local(int32_t buffer, int64_t offset) {
  return replica_->chunk(buffer).params().values().f32() + offset;
}

void WeightSync::probe_bandwidth() {
  // Three round trips of 16 MB from sender 0 to receiver 0 (the best one counts).
  const int me = comm_->rank();
  if (me != first_sender_ && me != first_receiver_) return;
  const int64_t n = int64_t{4} << 20;
  Tensor big = Tensor::allocate(replica_->backend().host_allocator(), DeviceKind::CPU, {n}, DType::F32);
  Tensor ack = Tensor::allocate(replica_->backend().host_allocator(), DeviceKind::CPU, {1}, DType::F32);
  std::memset(big.f32(), 0, static_cast<size_t>(n) * 4);
  double best = 1e30;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = Clock::now();
    if (me == first_sender_) {
      comm_->send(big, first_receiver_, kTagProbe);
      comm_->recv(ack, first_receiver_, kTagProbe);
    } else {
      comm_->recv(big, first_sender_, kTagProbe);
      comm_->send(ack, first_sender_, kTagProbe);
    }
    best = std::min(best, since(t0));
  }
  stats_.probe_gbs = static_cast<double>(n) * 4 / best / 1e9;
}

bool WeightSync::all_senders_ready() {
  TANDEM_CHECK(role_ == SyncRole::Sender, "weight sync: all_senders_ready on a rank that does not send");
  int ready = 1;
  for (Message& m : msgs_)
    if (m.req && !m.req->test()) ready = 0;
  int all = 0;
  TANDEM_MPI_CHECK(MPI_Allreduce(&ready, &all, 1, MPI_INT, MPI_MIN, senders_));
  return all == 1;
}

void WeightSync::post(int64_t version) {
  TANDEM_CHECK(role_ == SyncRole::Sender, "weight sync: post on a rank that does not send");
  const auto t0 = Clock::now();
  for (Message& m : msgs_) {
    TANDEM_CHECK(!m.req || m.req->test(), "weight sync: version {} posted before version {} was taken by rank {}",
                 version, posted_version_, m.peer);
    m.req.reset();
    put_version(m.buf, version);
    float* out = m.buf.f32() + kHeader;
    for (const ckpt::Segment& s : m.segs) {
      std::memcpy(out, local(s.src_buffer, s.src_offset), static_cast<size_t>(s.len) * 4);
      out += s.len;
    }
    m.req = comm_->isend(m.buf, m.peer, kTagData);
  }
  posted_version_ = version;
  ++stats_.syncs;
  stats_.pack_s += since(t0);
}

void WeightSync::progress() {
  for (Message& m : msgs_)
    if (m.req && role_ == SyncRole::Sender && m.req->test()) m.req.reset();
  for (auto it = out_notes_.begin(); it != out_notes_.end();)
    it = it->second->test() ? out_notes_.erase(it) : it + 1;
}

void WeightSync::wait_sent() {
  for (Message& m : msgs_)
    if (m.req) {
      m.req->wait();
      m.req.reset();
    }
  for (auto& note : out_notes_) note.second->wait();
  out_notes_.clear();
}

void WeightSync::announce(int64_t version, bool final) {
  if (role_ != SyncRole::Sender || comm_->rank() != first_sender_) return;
  progress();
  for (int leader : leaders_) {
    Tensor t = Tensor::allocate(replica_->backend().host_allocator(), DeviceKind::CPU, {4}, DType::F32);
    const int64_t words[2] = {version, final ? 1 : 0};
    std::memcpy(t.f32(), words, sizeof words);
    out_notes_.emplace_back(t, comm_->isend(t, leader, kTagNote));
  }
}

void WeightSync::post_receives() {
  for (Message& m : msgs_) m.req = comm_->irecv(m.buf, m.peer, kTagData);
}

int64_t WeightSync::poll() {
  TANDEM_CHECK(role_ == SyncRole::Receiver, "weight sync: poll on a rank that does not receive");
  for (Message& m : msgs_)
    if (!m.req->test()) return -1;
  return msgs_.empty() ? -1 : get_version(msgs_[0].buf);
}

void WeightSync::flip() {
  TANDEM_CHECK(role_ == SyncRole::Receiver, "weight sync: flip on a rank that does not receive");
  const auto t0 = Clock::now();
  for (Message& m : msgs_) m.req->wait();
  const int64_t version = msgs_.empty() ? replica_->weights_version() : get_version(msgs_[0].buf);
  for (Message& m : msgs_) {
    TANDEM_CHECK(get_version(m.buf) == version, "weight sync: rank {} sent version {} while rank {} sent {}",
                 m.peer, get_version(m.buf), msgs_[0].peer, version);
    const float* in = m.buf.f32() + kHeader;
    for (const ckpt::Segment& s : m.segs) {
      std::memcpy(local(s.dst_buffer, s.dst_offset), in, static_cast<size_t>(s.len) * 4);
      in += s.len;
    }
  }
  replica_->set_weights_version(version);
  post_receives();
  ++stats_.syncs;
  stats_.flip_s += since(t0);
}

bool WeightSync::poll_announcement(Announcement* a) {
  if (!leader_) return false;
  bool got = false;
  while (in_note_req_->test()) {
    int64_t words[2];
    std::memcpy(words, in_note_.f32(), sizeof words);
    a->version = words[0];
    a->final = words[1] != 0;
    got = true;
    in_note_req_ = comm_->irecv(in_note_, first_sender_, kTagNote);
  }
  return got;
}

}  // namespace tandem::serve
