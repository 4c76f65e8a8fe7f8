// Small pieces the KJ front ends (serve/rpc_server, serve/rpc_router) share.
//   send_text: one complete plain-text HTTP reply (200 gets the Prometheus content type).
//   is_metrics_get: whether a request is GET /metrics (optionally with a query).
//   start_loop_thread: runs `body` (an event loop) on `thread` and waits until it sets `ready`;
//   when it fails first, joins the thread and throws Error(error_prefix + ": " + its message).
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
