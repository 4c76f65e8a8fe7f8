// WeightSync: moves the trainers' weights to ranks set apart for serving (serve.mode
// dedicated), resharded between the two parallel layouts, over MPI, without a file.
//
// Roles. Every rank of the job takes one: Sender (the training ranks of data-parallel replica
// 0: after the optimizer step and the ZeRO-1 gather every replica holds the whole model, so
// one replica suffices), Receiver (every serving rank), or Idle (the other training ranks).
// At construction (collective over `world`) each rank describes what it holds through the
// checkpoint's name -> hyperslab map (ckpt/reshard_plan.h), the descriptions are gathered,
// and every rank derives the messages it sends or receives: one per (sender, receiver) pair
// that share elements, its elements in (tensor, stored index) order. A receiver whose
// elements no sender covers (a different model) makes every rank throw before any transfer.
//
// A sync of version v: every sender packs its segments into its own send buffers (so training
// may change its weights while the bytes travel) and posts them; each receiver has its
// receives posted into a second set of buffers (staged; the serving weights stay untouched).
// poll() tells a receiver whether version v has fully arrived; flip() waits for the rest of
// this rank's messages, unpacks them into the serving replica between two engine steps, sets
// its weights version, and posts the receives of the next version. Senders may start a new
// sync only once their previous one has been taken (all_senders_ready(), collective over the
// senders), so a slow server makes the trainers skip syncs (staleness) rather than wait.
// Announcements: sender 0 tells every serving replica leader the trainers' current version and,
// at the end, that no more versions follow (announce(); poll_announcement()).
//
// Contract: CPU replicas (host memory; the GPU path, NCCL, is not built). Called from the
// thread that initialised MPI. Waits use the MPI communicator's watchdog (timeout_s).
#pragma once

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "ckpt/reshard_plan.h"
#include "parallel/communicator.h"
#include "runtime/model/model_replica.h"

namespace tandem::serve {

enum class SyncRole { Idle = 0, Sender = 1, Receiver = 2 };

struct WeightSyncStats {
  int64_t syncs = 0;           // versions posted (sender) or flipped in (receiver)
  int64_t bytes_per_sync = 0;  // payload this rank sends (sender) or receives (receiver) per sync
  int64_t messages = 0;        // messages per sync on this rank
  double pack_s = 0.0;         // sender: packing and posting, summed (training time lost)
  double flip_s = 0.0;         // receiver: waiting for the rest and unpacking, summed
  double probe_gbs = 0.0;      // measured point-to-point bandwidth, sender 0 -> receiver 0 (GB/s)
};

class WeightSync {
 public:
  // replica: the training replica (Sender), the serving replica (Receiver), or null (Idle).
  // leader: a Receiver that leads its serving replica (gets the announcements).
  WeightSync(MPI_Comm world, SyncRole role, ModelReplica* replica, bool leader, double timeout_s);
  ~WeightSync();
  WeightSync(const WeightSync&) = delete;
  WeightSync& operator=(const WeightSync&) = delete;

  SyncRole role() const { return role_; }

  // Sender. all_senders_ready(): collective over the senders; true when every sender's last
  // sync has been taken. post(): packs and posts version `version` (after all_senders_ready()).
  // progress(): drives MPI (cheap; call often). wait_sent(): blocks until the last is taken.
  bool all_senders_ready();
  void post(int64_t version);
  void progress();
  void wait_sent();
  int64_t last_posted() const { return posted_version_; }
  // Sender 0 only (no-op on the others): tells the serving leaders the trainers' version;
  // `final`: no later version will be posted.
  void announce(int64_t version, bool final);

  // Receiver. poll(): the version staged completely on this rank, or -1. flip(): completes
  // this rank's staged version (blocking), unpacks it into the replica, sets its weights
  // version, reposts the receives. poll_announcement(): the leader's latest announcement.
  int64_t poll();
  void flip();
  struct Announcement {
    int64_t version = -1;
    bool final = false;
  };
  bool poll_announcement(Announcement* a);

  const WeightSyncStats& stats() const { return stats_; }

 private:
  struct Message {
    int peer = 0;                       // world rank of the other side
    std::vector<ckpt::Segment> segs;    // in travel order
    Tensor buf;                         // 2 header floats (the version) + payload
    std::unique_ptr<Request> req;
  };
  void probe_bandwidth();
  void post_receives();
  float* local(int32_t buffer, int64_t offset);

  SyncRole role_;
  ModelReplica* replica_;
  bool leader_;
  double timeout_s_;
  std::unique_ptr<Communicator> comm_;  // a duplicate of `world` for this traffic alone
  MPI_Comm senders_ = MPI_COMM_NULL;    // the senders (for all_senders_ready)
  int first_sender_ = -1, first_receiver_ = -1;
  std::vector<int> leaders_;            // world ranks of the serving replica leaders
  std::vector<Message> msgs_;
  int64_t posted_version_ = -1;
  // Announcements: outgoing (sender 0) and the leader's posted receive.
  std::vector<std::pair<Tensor, std::unique_ptr<Request>>> out_notes_;
  Tensor in_note_;
  std::unique_ptr<Request> in_note_req_;
  WeightSyncStats stats_;
};

}  // namespace tandem::serve
