// Names of the serving API's enums (contract in serving_api.h).
#include "serve/serving_api.h"

namespace tandem::serve {

const char* priority_name(Priority p) {
  switch (p) {
    case Priority::Realtime: return "realtime";
    case Priority::Batch: return "batch";
  }
  return "unknown";
}

const char* error_kind_name(ErrorKind k) {
  switch (k) {
    case ErrorKind::InvalidRequest: return "invalid_request";
    case ErrorKind::Overloaded: return "overloaded";
    case ErrorKind::DeadlineExceeded: return "deadline_exceeded";
    case ErrorKind::ShuttingDown: return "shutting_down";
    case ErrorKind::Internal: return "internal";
  }
  return "unknown";
}

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Length: return "length";
    case FinishReason::Stop: return "stop";
    case FinishReason::EndOfText: return "end_of_text";
    case FinishReason::ContextFull: return "context_full";
  }
  return "unknown";
}

}  // namespace tandem::serve
