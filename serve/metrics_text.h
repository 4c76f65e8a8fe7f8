// prometheus_text: the serving statistics in the Prometheus text exposition format (0.0.4),
// served at GET /metrics by serve/rpc_server. Names are prefixed tandem_; per-class series
// carry class="realtime|batch", latency quantiles quantile="0.5|0.9|0.99", rejections
// kind="<error kind>".
#pragma once

#include <string>

#include "serve/serving_api.h"

namespace tandem::serve {

std::string prometheus_text(const StatsSnapshot& s, const ModelInfo& m);

}  // namespace tandem::serve
