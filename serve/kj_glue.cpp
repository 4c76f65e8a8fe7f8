// Shared KJ front-end pieces (contract in kj_glue.h).
#include "serve/kj_glue.h"

#include <spdlog/spdlog.h>

#include <stdexcept>

#include "runtime/core/error.h"

namespace tandem::serve {

kj::Promise<void> send_text(kj::HttpService::Response& response, const kj::HttpHeaderTable& table,
                            unsigned code, kj::StringPtr status, const std::string& text) {
  kj::HttpHeaders headers(table);
  headers.set(kj::HttpHeaderId::CONTENT_TYPE, code == 200 ? "text/plain; version=0.0.4" : "text/plain");
  auto body = kj::heapString(text.data(), text.size());
  auto stream = response.send(code, status, headers, body.size());
  auto p = stream->write(body.begin(), body.size());
  return p.attach(kj::mv(stream), kj::mv(body));
}

void start_loop_thread(std::thread& thread, std::promise<void>& ready, std::function<void()> body,
                       const std::string& error_prefix) {
  auto fut = ready.get_future();
  thread = std::thread(std::move(body));
  try {
    fut.get();
  } catch (const std::exception& e) {
    thread.join();
    throw Error(error_prefix + ": " + e.what());
  }
}

void run_loop_body(std::promise<void>& ready, const bool& listening, const char* who,
                   const std::function<void()>& body) {
  std::string what;
  try {
    body();
    return;
  } catch (const std::exception& e) {
    what = e.what();
  } catch (const kj::Exception& e) {
    what = e.getDescription().cStr();
  } catch (...) {
    what = "unknown exception";
  }
  if (!listening) ready.set_exception(std::make_exception_ptr(std::runtime_error(what)));
  else spdlog::error("{}: the event loop failed: {}", who, what);
}

bool is_metrics_get(kj::HttpMethod method, kj::StringPtr url) {
  return method == kj::HttpMethod::GET && (url == "/metrics" || url.startsWith("/metrics?"));
}

void LoggedTaskErrors::taskFailed(kj::Exception&& e) {
  spdlog::warn("{}: {}", who_, e.getDescription().cStr());
}

}  // namespace tandem::serve
