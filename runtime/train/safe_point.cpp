// Names of the safe-point kinds (runtime/train/safe_point.h), for logs and stats.
#include "runtime/train/safe_point.h"

namespace tandem {

const char* safe_point_name(SafePointKind kind) {
  switch (kind) {
    case SafePointKind::BetweenSteps: return "between_steps";
    case SafePointKind::BetweenActions: return "between_actions";
    case SafePointKind::InForward: return "in_forward";
    case SafePointKind::InBackward: return "in_backward";
    case SafePointKind::InHead: return "in_head";
  }
  return "unknown";
}

}  // namespace tandem
