// Small pieces the KJ front ends (serve/rpc_server, serve/rpc_router) share.
//   send_text: one complete plain-text HTTP reply (200 gets the Prometheus content type).
//   is_metrics_get: whether a request is GET /metrics (optionally with a query).
//   start_loop_thread: runs `body` (an event loop) on `thread` and waits until it sets `ready`;
//   when it fails first, joins the thread and throws Error(error_prefix + ": " + its message).
//   run_loop_body: runs a loop thread's body, catching what it throws (std::exception,
//   kj::Exception, anything else) as a plain message: before `listening` is set it becomes
//   `ready`'s exception (start_loop_thread rethrows it on the caller's thread), afterwards it
//   is logged as an error prefixed by `who`. Only strings cross threads: KJ aborts when a
//   kj::Exception is destroyed on a thread other than the one that threw it.
//   LoggedTaskErrors: a kj::TaskSet error handler that logs a failed task as a warning,
//   prefixed by `who`, and keeps the loop running.
#pragma once

#include <kj/async.h>
#include <kj/compat/http.h>

#include <functional>
#include <future>
#include <string>
#include <thread>

namespace tandem::serve {

kj::Promise<void> send_text(kj::HttpService::Response& response, const kj::HttpHeaderTable& table,
                            unsigned code, kj::StringPtr status, const std::string& text);
void start_loop_thread(std::thread& thread, std::promise<void>& ready, std::function<void()> body,
                       const std::string& error_prefix);
void run_loop_body(std::promise<void>& ready, const bool& listening, const char* who,
                   const std::function<void()>& body);
bool is_metrics_get(kj::HttpMethod method, kj::StringPtr url);
constexpr const char* kMetricsNotFound = "not found: GET /metrics serves the Prometheus text\n";

class LoggedTaskErrors final : public kj::TaskSet::ErrorHandler {
 public:
  explicit LoggedTaskErrors(const char* who) : who_(who) {}
  void taskFailed(kj::Exception&& e) override;

 private:
  const char* who_;
};

}  // namespace tandem::serve
